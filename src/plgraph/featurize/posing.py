"""Posing: 3D coordinates in the binding site for a ligand known only by its SMILES.

Most affinity data is a table of SMILES with one crystal (or modelled) reference ligand per target.
A structure-based model needs a pose for each ligand, so posing is part of featurization and
training and prediction pose the same way:

1. The maximum common substructure (MCS) of the ligand and the posed reference ligand (RDKit
   ``rdFMCS``; elements and bond orders match, ring atoms only match ring atoms, rings are taken
   whole) is the core. RDKit's RASCAL search (``rdRascalMCES``), fast on similar molecules,
   finds a common fragment first, and ``rdFMCS`` grows the core from it: on a congeneric series
   this takes milliseconds where the unseeded search takes seconds or times out. Too small a
   core (``min_core_atoms`` / ``min_core_fraction``) is a failure: the reference says nothing
   about where the rest of such a ligand goes.
2. ETKDG embeds the ligand's heavy atoms with the core's internal distances fixed to the reference's
   (``coordMap``), one seeded conformer at a time (after the first of each stage below without
   ETKDG's torsion knowledge, 3.5x cheaper), taking turns among up to four distinct ways
   the core matches the ligand (a substituted ring matched in another rotation puts the
   substituent elsewhere). Each is aligned onto the reference core; one whose stereo centres
   differ from the SMILES is dropped. The search stops at the first round that gives a pose
   without clashes, and after ``attempts`` embeddings at the latest.
3. The attempt with the fewest clashes between its new (non-core) heavy atoms and the protein's
   heavy atoms wins (ties: the smaller core deviation, then the earlier attempt). Its core atoms
   take the reference's coordinates exactly.
4. Hydrogens are added to it. Optionally (``relax``) MMFF94 relaxes the new atoms and the
   hydrogens with the core held fixed and the nearby protein heavy atoms as fixed points the new
   atoms are kept away from; the relaxed pose is kept unless it clashes more or has lost the
   SMILES' stereo.
5. A pose that still clashes (more than ``max_clashes`` pairs) is a failure.

Deterministic: every random choice is seeded from the config, RDKit runs single-threaded, and
the result depends on the inputs and config only, not on worker count or order. rdFMCS's search
is limited by a count of its steps (``mcs_steps``), not by time: which ligands reach it is the
same on every machine. The one exception is the backstop ``mcs_timeout`` (either search, ten
minutes by default): a search stopped by it is a failure whose occurrence depends on the
machine's speed, and a cache with such failures warns so at every start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDistGeom, rdFMCS, rdForceFieldHelpers, rdMolAlign, rdRascalMCES
from rdkit.Geometry import Point3D
from scipy.spatial import cKDTree

from plgraph import vocab
from plgraph.config import PosingConfig
from plgraph.errors import FeaturizationError
from plgraph.featurize.ligand import rdkit_messages
from plgraph.featurize.protein import LIGAND_COPY_DISTANCE, ProteinAtoms

_ION = vocab.RESIDUE_INDEX["ion"]

_RESIDUE_COLUMN = list(vocab.PROTEIN_ATOM_FEATURES).index("residue_type")


@dataclass(frozen=True)
class PosingSite:
    """A posed reference ligand and the protein atoms a new pose must not clash with.

    Built once per system and shared by every ligand posed into it.
    """

    reference: Chem.Mol  # heavy atoms, sanitized, one conformer (the reference pose)
    source: str  # the reference file, for messages
    clash_tree: cKDTree  # protein heavy atoms less ions and copies of the reference

    @classmethod
    def build(cls, reference: Chem.Mol, protein: ProteinAtoms, source: str) -> PosingSite:
        """``reference`` as read by :func:`plgraph.featurize.ligand.read_ligand_files`.

        Ions are left out of the clash partners (a metal-binding group sits 2 Å from its zinc by
        design), and so is a hetero group lying on the reference: a copy of the ligand that the
        protein file still carries.
        """
        reference = Chem.Mol(reference)
        # Ring-aware matching needs ring information, which a molecule read with hydrogens
        # removed unsanitized (as the ligand reader does) has not computed yet.
        Chem.GetSymmSSSR(reference)
        reference_pos = reference.GetConformer().GetPositions()
        nearest, _ = cKDTree(reference_pos).query(protein.pos)
        copy = np.isin(protein.residue_index, np.unique(
            protein.residue_index[protein.is_hetero_group & (nearest < LIGAND_COPY_DISTANCE)]))
        ion = protein.features[:, _RESIDUE_COLUMN] == _ION
        return cls(reference, source, cKDTree(protein.pos[~copy & ~ion]))


@dataclass(frozen=True)
class Pose:
    """A posed ligand: ``mol`` has explicit hydrogens and one conformer, ``core`` the
    (ligand atom, reference atom) pairs whose coordinates are the reference's, ``clashes`` the
    remaining close contacts with the protein."""

    mol: Chem.Mol
    core: tuple[tuple[int, int], ...]
    clashes: int

    @property
    def heavy(self) -> Chem.Mol:
        """The heavy-atom molecule featurization takes (hydrogens removed, pose kept)."""
        return Chem.RemoveHs(self.mol)


def parse_smiles(smiles: str, source: str) -> Chem.Mol:
    """The ligand as written: stereo, charges and protonation kept; hydrogens made implicit.

    Raises:
        FeaturizationError: RDKit cannot parse or sanitize it, or it has several fragments.
    """
    with rdkit_messages() as messages:
        mol = Chem.MolFromSmiles(smiles) if smiles.strip() else None
    if mol is None or mol.GetNumAtoms() == 0:
        said = f" ({'; '.join(messages)})" if messages else ""
        raise FeaturizationError(f"{source}: RDKit cannot parse the SMILES {smiles!r}{said}")
    fragments = Chem.GetMolFrags(mol)
    if len(fragments) > 1:
        raise FeaturizationError(f"{source}: the SMILES has {len(fragments)} disconnected parts "
                                 "(a salt or mixture?); give the ligand alone")
    return mol


def pose_ligand(ligand: Chem.Mol, site: PosingSite, config: PosingConfig, source: str) -> Pose:
    """Pose ``ligand`` (from :func:`parse_smiles`) onto ``site``'s reference; see the module doc.

    Raises:
        FeaturizationError: naming ``source`` and the rule: core too small, a search over its step
            limit or its time limit, no embedding, or a pose that still clashes.
    """
    cores = _cores(ligand, site, config, source)
    embedders = [_CoreEmbedder(ligand, core, site.reference, config) for core in cores]
    scored = []
    for round_number in range(max(1, config.attempts // len(cores))):
        for embedder in embedders:
            attempt = embedder.embed(round_number)
            if attempt is None:
                continue
            mol, conf_id, core, core_rmsd = attempt
            clashes = _clashes(mol, conf_id, _new_heavy_atoms(mol, core), site, config)
            scored.append((clashes, core_rmsd, len(scored), attempt))
        if scored and min(scored)[0] == 0:  # a clash-free pose: more attempts cannot beat it
            break
    if not scored:
        raise FeaturizationError(
            f"{source}: ETKDG found no 3D embedding with the stereo of the SMILES and the core of "
            f"{len(cores[0])} atoms fixed ({sum(e.tried for e in embedders)} seeded attempts)")
    clashes, _, _, (mol, best, core, _) = min(scored)
    # Chem.Mol(mol, confId=) keeps only the chosen conformer; hydrogens (where the embedding had
    # none) are appended, so the heavy-atom indices and the core pairs stay the same.
    posed = Chem.AddHs(Chem.Mol(mol, confId=best), addCoords=True)
    new_atoms = _new_heavy_atoms(posed, core)
    if config.relax and new_atoms:
        clashes = _relax(posed, core, new_atoms, site, config, clashes, _stereo(ligand, None))
    if clashes > config.max_clashes:
        raise FeaturizationError(
            f"{source}: the best of {len(scored)} poses still clashes with the protein: "
            f"{clashes} ligand-protein heavy-atom pairs closer than {config.clash_distance} Å "
            f"(featurize.posing.max_clashes={config.max_clashes})")
    return Pose(posed, core, clashes)


# The words of a failure that ran out of time: the one posing failure whose occurrence depends on
# the machine (its speed and load), not only on the inputs and config (bench/mcs_search.py).
OUT_OF_TIME = "did not finish within featurize.posing.mcs_timeout"
# The words of a core search stopped by its step limit: the same ligands on every machine.
OUT_OF_STEPS = "did not finish within featurize.posing.mcs_steps"


def ran_out_of_time(reason: str) -> bool:
    """Whether a failure's reason is a search stopped by ``mcs_timeout``."""
    return OUT_OF_TIME in reason


def out_of_time(source: str, site: PosingSite, config: PosingConfig) -> FeaturizationError:
    """The failure of either search (RASCAL's seed, rdFMCS's core) stopped by ``mcs_timeout``."""
    return FeaturizationError(f"{source}: the common-substructure search with the reference "
                              f"{site.source} {OUT_OF_TIME}={config.mcs_timeout} s")


class StepLimit(rdFMCS.MCSProgress):
    """rdFMCS's progress callback: counts the search's progress reports (its steps) and stops it
    at ``steps`` of them, or after ``seconds``, whichever comes first.

    The count is what makes the limit the same on every machine. The time is checked here too:
    a custom callback replaces rdFMCS's own, which is the one that applies ``Timeout``.
    """

    def __init__(self, steps: int | float, seconds: float) -> None:
        super().__init__()
        self.steps, self.seconds = steps, seconds
        self.reports, self.out_of_time = 0, False
        self.started = time.perf_counter()

    def __call__(self, stat, params) -> bool:  # True: go on
        self.reports += 1
        if time.perf_counter() - self.started >= self.seconds:
            self.out_of_time = True
            return False
        return self.reports < self.steps


# Ways the common substructure may lie on the ligand that are worth an embedding each: a
# substituted ring matched in another rotation puts the substituent elsewhere in the site.
MAX_CORE_MATCHES = 4


def mcs_parameters(config: PosingConfig) -> rdFMCS.MCSParameters:
    """rdFMCS's parameters for the core: elements and exact bond orders match, ring atoms only
    ring atoms, rings whole (no initial seed yet, and no limit: :class:`StepLimit`, the progress
    callback, limits the steps and the time; ``Timeout`` would only apply without one)."""
    params = rdFMCS.MCSParameters()
    params.AtomTyper = rdFMCS.AtomCompare.CompareElements
    # Exact: CompareOrder would let an aromatic bond match a single one (phenyl onto cyclohexyl).
    params.BondTyper = rdFMCS.BondCompare.CompareOrderExact
    params.AtomCompareParameters.RingMatchesRingOnly = True
    params.BondCompareParameters.RingMatchesRingOnly = True
    params.BondCompareParameters.CompleteRingsOnly = True
    return params


def _cores(ligand: Chem.Mol, site: PosingSite, config: PosingConfig,
           source: str) -> list[tuple[tuple[int, int], ...]]:
    """The (ligand atom, reference atom) pairs of the maximum common substructure, one tuple per
    distinct way it matches the ligand (symmetry-equivalent matches, such as the fluorines of a
    CF3 swapped, counted once), at most ``MAX_CORE_MATCHES``."""
    params = mcs_parameters(config)
    seed = seed_fragment(ligand, site, config, source)
    if seed is not None:
        params.InitialSeed = seed
    limit = StepLimit(config.mcs_steps, config.mcs_timeout)
    params.ProgressCallback = limit
    result = rdFMCS.FindMCS([site.reference, ligand], params)
    if result.canceled and limit.out_of_time:
        raise out_of_time(source, site, config)
    if result.canceled:
        raise FeaturizationError(
            f"{source}: the common-substructure search with the reference {site.source} "
            f"{OUT_OF_STEPS}={config.mcs_steps:,} steps: too costly a search to place "
            "it by the reference")
    needed = max(config.min_core_atoms,
                 int(np.ceil(config.min_core_fraction * ligand.GetNumAtoms())))
    if result.numAtoms < needed:
        raise FeaturizationError(
            f"{source}: shares {result.numAtoms} of its {ligand.GetNumAtoms()} heavy atoms with "
            f"the reference {site.source}; posing needs {needed} (featurize.posing."
            "min_core_atoms / min_core_fraction): too different to place by the reference")
    query = Chem.MolFromSmarts(result.smartsString)
    reference_match = site.reference.GetSubstructMatch(query)
    ligand_matches = ligand.GetSubstructMatches(query, uniquify=False, maxMatches=256)
    if not reference_match or not ligand_matches:  # rdFMCS's SMARTS always matches both inputs
        raise FeaturizationError(f"{source}: the common substructure found with "
                                 f"{site.source} does not match back (RDKit defect)")
    ranks = list(Chem.CanonicalRankAtoms(ligand, breakTies=False))
    cores, seen = [], set()
    for match in ligand_matches:
        signature = tuple(ranks[atom] for atom in match)
        if signature not in seen:
            seen.add(signature)
            cores.append(tuple(zip(match, reference_match, strict=True)))
        if len(cores) == MAX_CORE_MATCHES:
            break
    return cores


# RASCAL's set-up grows steeply with molecule size: 0.1 s for Uni-FEP's MCL1 ligands of 61-64
# heavy atoms, 15-31 s for its cyclic peptides of 79-100 (before its timeout applies). Larger
# ligands go to rdFMCS unseeded.
SEED_SEARCH_MAX_ATOMS = 70


def seed_fragment(ligand: Chem.Mol, site: PosingSite, config: PosingConfig,
                  source: str) -> str | None:
    """SMARTS of the largest connected common fragment by RASCAL (with whole rings and the MCS's
    ring rule, so that rdFMCS can grow it), or None for a ligand too large to search so.

    Over 202 Uni-FEP ligands the seeded rdFMCS found a core of the same size as the unseeded one
    in 194 of the 195 that both finished (one atom group larger in the last), in 26 ms on
    average against 670 ms, and finished 6 of the 7 that the unseeded search did not in 10 s.
    """
    if max(ligand.GetNumAtoms(), site.reference.GetNumAtoms()) > SEED_SEARCH_MAX_ATOMS:
        return None
    options = rdRascalMCES.RascalOptions()
    options.similarityThreshold = 0.0  # always search: the core-size rules judge the result
    options.ringMatchesRingOnly = True
    options.completeSmallestRings = True
    options.ignoreAtomAromaticity = False
    options.singleLargestFrag = True
    options.timeout = max(1, round(config.mcs_timeout))
    results = rdRascalMCES.FindMCES(site.reference, ligand, options)
    if results and results[0].timedOut:
        raise out_of_time(source, site, config)
    return results[0].smartsString if results and results[0].smartsString else None


# ETKDG retries a failed embedding up to this many times per conformer. Its default (10 per atom)
# makes a core whose geometry cannot hold the ligand's stereo cost seconds per ligand; a
# consistent core embeds in one or two tries.
EMBED_ITERATIONS = 5
# Embeddings a stage of _CoreEmbedder may fail in a row, having had no success, before the next.
STAGE_TRIES = 2


class _CoreEmbedder:
    """Seeded ETKDG embeddings of the ligand with one core's geometry fixed, one at a time, each
    aligned onto the reference core, its core atoms then set to the reference's coordinates; only
    those that keep the SMILES' stereo count.

    It goes through stages, each kept once it has given an embedding and left after
    ``STAGE_TRIES`` failures in a row without one:

    1. heavy atoms only, the whole core: ETKDG is 4x faster without the hydrogens (22 against
       90 ms per embedding on 148 Uni-FEP ligands) and finds nearly as many clash-free poses
       (57 against 65); the hydrogens are added to the chosen pose and relaxed with the rest;
    2. with hydrogens, the whole core: some cores embed only so (a fused ring's stereo centres
       with an implicit hydrogen);
    3. and 4. as 1. and 2. with the ligand's stereo centres and their neighbours taken out of the
       core: the reference holds a shared centre the other way round (when enough core is left).
    """

    def __init__(self, ligand: Chem.Mol, core: tuple[tuple[int, int], ...], reference: Chem.Mol,
                 config: PosingConfig) -> None:
        self.reference = reference
        self.reference_pos = reference.GetConformer().GetPositions()
        self.config = config
        self.expected_stereo = _stereo(ligand, None)
        freed = _without_stereo_centres(ligand, core, self.expected_stereo)
        heavy, with_hydrogens = Chem.Mol(ligand), Chem.AddHs(ligand)
        self.stages = [(heavy, core), (with_hydrogens, core)]
        if config.min_core_atoms <= len(freed) < len(core):  # else too little core is left
            self.stages += [(heavy, freed), (with_hydrogens, freed)]
        self.stage = 0
        self.failures_in_stage = 0
        self.tried_in_stage = 0
        self.stage_has_embedded = False
        self.tried = 0

    def embed(self, round_number: int
              ) -> tuple[Chem.Mol, int, tuple[tuple[int, int], ...], float] | None:
        """(molecule, conformer id, core, core RMSD in Å) of one more embedding, or None where it
        failed or broke the SMILES' stereo."""
        mol, core = self.stages[self.stage]
        attempt = self._embed_once(mol, core, round_number, knowledge=self.tried_in_stage == 0)
        self.tried += 1
        self.tried_in_stage += 1
        if attempt is not None:
            self.stage_has_embedded = True
            return mol, attempt[0], core, attempt[1]
        self.failures_in_stage += 1
        if (not self.stage_has_embedded and self.failures_in_stage >= STAGE_TRIES
                and self.stage + 1 < len(self.stages)):
            self.stage += 1
            self.failures_in_stage = 0
            self.tried_in_stage = 0
        return None

    def _embed_once(self, mol: Chem.Mol, core, round_number: int,
                    knowledge: bool) -> tuple[int, float] | None:
        params = rdDistGeom.ETKDGv3()
        params.randomSeed = self.config.seed + round_number
        if not knowledge:
            # A stage's first embedding has ETKDG's torsion preferences; the ones after it only
            # look for a pose the protein leaves room for, and plain distance geometry (the same
            # routine without the knowledge terms) is 3.5x cheaper per embedding
            # (bench/README.md: Uni-FEP ligands/s and FEP+ pose RMSD with and without).
            params.useExpTorsionAnglePrefs = False
            params.useBasicKnowledge = False
        params.numThreads = 1
        params.maxIterations = EMBED_ITERATIONS
        params.clearConfs = False  # attempts compete: keep the earlier ones
        # Eigenvalue starts, not random ones: on 63 Uni-FEP ligands 14 % faster and half the
        # clash and embedding failures (bench/README.md).
        params.useRandomCoords = False
        params.SetCoordMap({lig: Point3D(*self.reference_pos[ref]) for lig, ref in core})
        conf_ids = list(rdDistGeom.EmbedMultipleConfs(mol, 1, params))
        if not conf_ids:
            return None
        rmsd = rdMolAlign.AlignMol(mol, self.reference, prbCid=conf_ids[0], atomMap=list(core))
        _place_core(mol, conf_ids[0], core, self.reference_pos)
        # Checked after the core takes the reference's coordinates: coordMap fixes distances
        # only, so ETKDG may embed the core's mirror image to satisfy the SMILES' stereo, which
        # placing the core would invert again.
        if _stereo(mol, conf_ids[0]) != self.expected_stereo:
            mol.RemoveConformer(conf_ids[0])
            return None
        return conf_ids[0], rmsd


def _without_stereo_centres(ligand: Chem.Mol, core: tuple[tuple[int, int], ...],
                            stereo: list[tuple[int, str]]) -> tuple[tuple[int, int], ...]:
    centres = [ligand.GetAtomWithIdx(atom) for atom, _ in stereo]
    freed_atoms = {a.GetIdx() for a in centres} | {n.GetIdx() for a in centres
                                                   for n in a.GetNeighbors()}
    return tuple(pair for pair in core if pair[0] not in freed_atoms)


def _stereo(mol: Chem.Mol, conf_id: int | None) -> list[tuple[int, str]]:
    """CIP labels of the tetrahedral centres: of the SMILES (``conf_id`` None) or of a conformer."""
    copy = Chem.Mol(mol)
    if conf_id is not None:
        Chem.AssignStereochemistryFrom3D(copy, confId=conf_id)
    return sorted(Chem.FindMolChiralCenters(copy, includeUnassigned=False,
                                            useLegacyImplementation=False))


def _place_core(mol: Chem.Mol, conf_id: int, core, reference_pos: np.ndarray) -> None:
    conformer = mol.GetConformer(conf_id)
    for lig, ref in core:
        conformer.SetAtomPosition(lig, Point3D(*reference_pos[ref]))


def _new_heavy_atoms(mol: Chem.Mol, core) -> list[int]:
    in_core = {lig for lig, _ in core}
    return [a.GetIdx() for a in mol.GetAtoms()
            if a.GetAtomicNum() > 1 and a.GetIdx() not in in_core]


def _clashes(mol: Chem.Mol, conf_id: int, atoms: list[int], site: PosingSite,
             config: PosingConfig) -> int:
    """Pairs of the given ligand atoms and protein heavy atoms closer than ``clash_distance``."""
    if not atoms:
        return 0
    pos = mol.GetConformer(conf_id).GetPositions()[atoms]
    return int(sum(len(near) for near in site.clash_tree.query_ball_point(pos,
                                                                          config.clash_distance)))


# The relaxation keeps the new heavy atoms at least this far (Å) from every protein heavy atom
# that starts within PROTEIN_RANGE of one (a flat-bottomed restraint: no force beyond it), so that
# MMFF94, which knows only the ligand, moves a group out of the protein rather than into it.
PROTEIN_REPULSION_DISTANCE = 2.8
PROTEIN_RANGE = 5.0
PROTEIN_REPULSION_FORCE = 50.0  # kcal/mol/Å², MMFF94's units


def _relax(mol: Chem.Mol, core, new_atoms: list[int], site: PosingSite, config: PosingConfig,
           clashes: int, stereo: list[tuple[int, str]]) -> int:
    """MMFF94 on the new atoms (and all hydrogens), the core fixed and the protein's heavy atoms
    as fixed repulsive points; kept unless it clashes more or loses the ``stereo`` (the SMILES')."""
    properties = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol)
    if properties is None:  # an element or bonding MMFF94 has no parameters for: keep the pose
        return clashes
    field = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, properties)
    for lig, _ in core:
        field.AddFixedPoint(lig)
    before = mol.GetConformer().GetPositions()
    nearby = sorted({index for near in site.clash_tree.query_ball_point(before[new_atoms],
                                                                        PROTEIN_RANGE)
                     for index in near})
    # AddExtraPoint returns the number of points so far, so the new point's index is one less.
    points = [field.AddExtraPoint(*site.clash_tree.data[index], fixed=True) - 1
              for index in nearby]
    field.Initialize()
    for point in points:
        for atom in new_atoms:
            field.MMFFAddDistanceConstraint(atom, point, False, PROTEIN_REPULSION_DISTANCE,
                                            1e4, PROTEIN_REPULSION_FORCE)
    field.Minimize(maxIts=config.relax_iterations)
    relaxed = _clashes(mol, -1, new_atoms, site, config)
    # A strained start can pass a stereo centre through the plane: such a relaxation is undone.
    if relaxed <= clashes and _stereo(mol, -1) == stereo:
        return relaxed
    conformer = mol.GetConformer()
    for index, xyz in enumerate(before):
        conformer.SetAtomPosition(index, Point3D(*xyz))
    return clashes
