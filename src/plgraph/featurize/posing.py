"""Posing: 3D coordinates in the binding site for a ligand known only by its SMILES.

Most affinity data is a table of SMILES with one crystal (or modelled) reference ligand per target.
A structure-based model needs a pose for each ligand, so posing is part of featurization and
training and prediction pose the same way:

1. The maximum common substructure (MCS) of the ligand and the posed reference ligand (RDKit
   ``rdFMCS``; elements and bond orders match, ring atoms only match ring atoms, rings are taken
   whole) is the core. Too small a core (``min_core_atoms`` / ``min_core_fraction``) is a failure:
   the reference says nothing about where the rest of such a ligand goes.
2. ETKDG embeds the ligand with the core's internal distances fixed to the reference's
   (``coordMap``), ``attempts`` times from seeded random starts, shared among up to four
   distinct ways the core matches the ligand (a substituted ring matched in another rotation
   puts the substituent elsewhere). Each attempt is aligned onto the reference core; an attempt
   whose stereo centres differ from the SMILES is dropped.
3. The attempt with the fewest clashes between its new (non-core) heavy atoms and the protein's
   heavy atoms wins (ties: the smaller core deviation, then the first attempt). Its core atoms
   take the reference's coordinates exactly.
4. Optionally (``relax``) MMFF94 relaxes the new atoms with the core held fixed; the relaxed pose
   is kept unless it clashes more.
5. A pose that still clashes (more than ``max_clashes`` pairs) is a failure.

Deterministic: every random choice is seeded from the config, RDKit runs single-threaded, and
the result depends on the inputs and config only, not on worker count or order. The one
exception is an MCS search that reaches ``mcs_timeout``: what it found by then depends on the
machine's speed, so such a ligand is a failure with that reason rather than a pose that could
differ between runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDistGeom, rdFMCS, rdForceFieldHelpers, rdMolAlign
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
        FeaturizationError: naming ``source`` and the rule: core too small, MCS timeout, no
            embedding, or a pose that still clashes.
    """
    cores = _cores(ligand, site, config, source)
    mol = Chem.AddHs(ligand)  # hydrogens are appended: heavy-atom indices stay the same
    reference_pos = site.reference.GetConformer().GetPositions()
    per_core = max(1, config.attempts // len(cores))
    scored = []
    for core in cores:
        used, attempts = _embed(mol, core, site.reference, per_core, config)
        new_atoms = _new_heavy_atoms(mol, used)
        for conf_id, core_rmsd in attempts:
            _place_core(mol, conf_id, used, reference_pos)
            scored.append((_clashes(mol, conf_id, new_atoms, site, config), core_rmsd, conf_id,
                           used))
    if not scored:
        raise FeaturizationError(
            f"{source}: ETKDG found no 3D embedding with the stereo of the SMILES and the core of "
            f"{len(cores[0])} atoms fixed ({per_core * len(cores)} seeded attempts)")
    clashes, _, best, core = min(scored)
    posed = Chem.Mol(mol, confId=best)  # keeps only the chosen conformer
    new_atoms = _new_heavy_atoms(posed, core)
    if config.relax and new_atoms:
        clashes = _relax(posed, core, new_atoms, site, config, clashes)
    if clashes > config.max_clashes:
        raise FeaturizationError(
            f"{source}: the best of {len(scored)} poses still clashes with the protein: "
            f"{clashes} ligand-protein heavy-atom pairs closer than {config.clash_distance} Å "
            f"(featurize.posing.max_clashes={config.max_clashes})")
    return Pose(posed, core, clashes)


# Ways the common substructure may lie on the ligand that are worth an embedding each: a
# substituted ring matched in another rotation puts the substituent elsewhere in the site.
MAX_CORE_MATCHES = 4


def _cores(ligand: Chem.Mol, site: PosingSite, config: PosingConfig,
           source: str) -> list[tuple[tuple[int, int], ...]]:
    """The (ligand atom, reference atom) pairs of the maximum common substructure, one tuple per
    distinct way it matches the ligand (symmetry-equivalent matches, such as the fluorines of a
    CF3 swapped, counted once), at most ``MAX_CORE_MATCHES``."""
    params = rdFMCS.MCSParameters()
    params.AtomTyper = rdFMCS.AtomCompare.CompareElements
    # Exact: CompareOrder would let an aromatic bond match a single one (phenyl onto cyclohexyl).
    params.BondTyper = rdFMCS.BondCompare.CompareOrderExact
    params.AtomCompareParameters.RingMatchesRingOnly = True
    params.BondCompareParameters.RingMatchesRingOnly = True
    params.BondCompareParameters.CompleteRingsOnly = True
    params.Timeout = max(1, round(config.mcs_timeout))
    result = rdFMCS.FindMCS([site.reference, ligand], params)
    if result.canceled:
        raise FeaturizationError(
            f"{source}: the common-substructure search with the reference {site.source} did not "
            f"finish within featurize.posing.mcs_timeout={config.mcs_timeout} s")
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


# ETKDG retries a failed embedding up to this many times per conformer. Its default (10 per atom)
# makes a core whose geometry cannot hold the ligand's stereo cost seconds per ligand; a
# consistent core embeds in one or two tries.
EMBED_ITERATIONS = 5


def _embed(mol: Chem.Mol, core: tuple[tuple[int, int], ...], reference: Chem.Mol,
           attempts: int, config: PosingConfig) -> tuple[tuple[tuple[int, int], ...],
                                                         list[tuple[int, float]]]:
    """Seeded ETKDG embeddings with the core's geometry fixed, each aligned onto the reference
    core, added to ``mol``'s conformers. Returns the core used and (conformer id, core RMSD in
    Å) of the embeddings that keep the SMILES' stereo (none: an empty list).

    When none does, the reference holds a shared stereo centre the other way round: the
    ligand's stereo centres and their neighbours are then taken out of the core and embedded
    free, once.
    """
    kept = _embed_core(mol, core, reference, attempts, config)
    if not kept:
        centres = [mol.GetAtomWithIdx(atom) for atom, _ in _stereo(mol, None)]
        freed_atoms = {a.GetIdx() for a in centres} | {n.GetIdx() for a in centres
                                                       for n in a.GetNeighbors()}
        freed = tuple(pair for pair in core if pair[0] not in freed_atoms)
        if config.min_core_atoms <= len(freed) < len(core):  # else too little core is left
            core, kept = freed, _embed_core(mol, freed, reference, attempts, config)
    return core, kept


def _embed_core(mol: Chem.Mol, core: tuple[tuple[int, int], ...], reference: Chem.Mol,
                attempts: int, config: PosingConfig) -> list[tuple[int, float]]:
    reference_pos = reference.GetConformer().GetPositions()
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = config.seed
    params.numThreads = 1
    params.maxIterations = EMBED_ITERATIONS
    params.clearConfs = False  # several cores' attempts compete: keep the earlier ones
    # Eigenvalue starts, not random ones: on 63 Uni-FEP ligands 14 % faster and half the
    # clash and embedding failures (bench/README.md).
    params.useRandomCoords = False
    params.SetCoordMap({lig: Point3D(*reference_pos[ref]) for lig, ref in core})
    conf_ids = list(rdDistGeom.EmbedMultipleConfs(mol, attempts, params))
    expected = _stereo(mol, None)
    kept = []
    for conf_id in conf_ids:
        rmsd = rdMolAlign.AlignMol(mol, reference, prbCid=conf_id, atomMap=list(core))
        if _stereo(mol, conf_id) == expected:
            kept.append((conf_id, rmsd))
    return kept


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


def _relax(mol: Chem.Mol, core, new_atoms: list[int], site: PosingSite, config: PosingConfig,
           clashes: int) -> int:
    """MMFF94 on the new atoms (and all hydrogens), the core fixed; kept unless it clashes more."""
    properties = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol)
    if properties is None:  # an element or bonding MMFF94 has no parameters for: keep the pose
        return clashes
    field = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, properties)
    for lig, _ in core:
        field.AddFixedPoint(lig)
    before = mol.GetConformer().GetPositions()
    field.Minimize(maxIts=config.relax_iterations)
    relaxed = _clashes(mol, -1, new_atoms, site, config)
    if relaxed <= clashes:
        return relaxed
    conformer = mol.GetConformer()
    for index, xyz in enumerate(before):
        conformer.SetAtomPosition(index, Point3D(*xyz))
    return clashes
