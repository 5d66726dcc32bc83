"""Vina terms of a pose: the AutoDock Vina score of a posed ligand in its protein, and its parts.

A physics-based score of the very pose the graphs are built from is a cheap, independent signal
for the model (an anchor or a readout input, issue 27). This module computes it with the
maintained ``vina`` package (1.2) and promises:

- ``vina_score``: Vina's score of the pose as given (``score_only``), kcal/mol;
  ``vina_optimized``: after Vina's local BFGS optimization (``optimize``) in a box of the ligand's
  extent plus ``BOX_PADDING``, on Vina's default 0.375 Å grid; ``vinardo_score``: Vinardo's score
  as given (below). Both Vina scores come from the package; an in-place score uses the receptor
  atoms directly (Vina's default, no grid), so it does not depend on the box or the grid.
- the five unweighted intermolecular terms (``gauss1``, ``gauss2``, ``repulsion``,
  ``hydrophobic``, ``hbond``), Vinardo's score and Vina's rotatable-bond count, as the pairwise
  sums of :mod:`plgraph.featurize.vina_pairs` (Vina's typing, cutoff, tables and smoothing,
  re-implemented in numpy): the package returns only weighted totals, and getting each term from
  it (:func:`vina_terms_by_package`, kept as the reference) costs seven map computations. Each
  term is what the package gives with every other weight set to zero, so ``repulsion``, the only
  positive term, carries Vina's smoothing of positive per-atom energies (``e * 1000 / (1000 +
  e)``; under 1 % for a pose that passes the clash rule). On the 43 scoreable complexes of
  data/sample every value equals the package's within 0.0005, its rounding (bench/README.md);
  every call checks the weighted sum against the package's own in-place total (``AGREEMENT``).
- ``vina_score = vina_inter / (1 + 0.05846 * rotatable_bonds)``, Vina's rule;
  ``vina_inter`` and ``vina_intra`` (the ligand's internal energy) are the package's.

The receptor is the pocket around the ligand written by :mod:`plgraph.featurize.vina_receptor`;
the ligand is written by Meeko, hydrogens added (RDKit, with coordinates) where the molecule has
none: Vina types donors by their hydrogens but does not score hydrogen positions.

A pose Vina cannot score is a ``FeaturizationError`` naming the complex and the rule: an element
Vina has no type for, a ligand away from the protein or not touching it (the contact rule of
:mod:`plgraph.featurize.vina_receptor`), a clash (``CLASH_SCORE``), a non-finite number.
Deterministic: one thread, a fixed seed, and the optimization has no random step.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import numpy as np
from rdkit import Chem

from plgraph import vocab
from plgraph.errors import FeaturizationError
from plgraph.featurize.vina_pairs import pair_terms
from plgraph.featurize.vina_receptor import receptor_pdbqt

# Vina 1.2's default weights: gauss1, gauss2, repulsion, hydrophobic, hbond, glue (macrocycle
# closure, unused here: rigid macrocycles), rotatable-bond penalty.
VINA_WEIGHTS = (-0.035579, -0.005156, 0.840245, -0.035069, -0.587439, 50.0, 0.05846)
TERMS = ("gauss1", "gauss2", "repulsion", "hydrophobic", "hbond")
# Å added to the ligand's extent on each axis for the optimization box: Vina's autobox margin
# (4 Å each side), room for a local optimization and no more.
BOX_PADDING = 8.0
GRID_SPACING = 0.375  # Å, Vina's default; the optimization runs on this grid
# Å: the in-place scores never read the grid, yet Vina wants one computed; a coarse one is cheap.
SCORE_ONLY_SPACING = 1.0
# kcal/mol: an in-place score above this is a clash, not a pose. Crystal poses of real binders
# score about -5 to -12 and modelled poses with a close contact or two near 0; a positive score
# of several kcal/mol means repulsion outweighs every attraction (one heavy-atom pair 1 Å too
# close costs about 0.8), and the terms of such a pose describe the clash, not the binding.
CLASH_SCORE = 5.0
# kcal/mol: the pairwise sums must reproduce Vina's own in-place total this closely (the package
# rounds its numbers to 0.001; typing differences cost tenths).
AGREEMENT = 0.002
SEED = 42
# Elements Vina and Meeko type in a ligand (Vina refuses e.g. B; Meeko cannot type Se).
LIGAND_ELEMENTS = frozenset({"H", "C", "N", "O", "F", "P", "S", "Cl", "Br", "I"})


@dataclass(frozen=True)
class VinaTerms:
    """Vina's view of one pose; energies in kcal/mol, unweighted terms in Vina's units."""

    vina_score: float  # in place
    vina_optimized: float  # after a local optimization
    vinardo_score: float  # in place
    vina_inter: float  # weighted ligand-receptor sum, before the rotatable-bond division
    vina_intra: float  # weighted ligand-internal sum (cancels in vina_score)
    gauss1: float
    gauss2: float
    repulsion: float
    hydrophobic: float
    hbond: float
    rotatable_bonds: float  # Vina's count

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The order of :meth:`vector`."""
        return tuple(field.name for field in fields(cls))

    def vector(self) -> np.ndarray:
        """The values as float64 in the order of :meth:`names`, for the cache."""
        return np.asarray(astuple(self), dtype=np.float64)


# The model knows the terms by vocab.VINA_TERMS (it must not import this module): one order.
assert VinaTerms.names() == vocab.VINA_TERMS, "vocab.VINA_TERMS must follow VinaTerms' fields"


def vina_terms(protein: Path | str, ligand: Chem.Mol, source: str) -> VinaTerms:
    """Score ``ligand`` as posed in ``protein`` with Vina and Vinardo.

    One Vina object (maps at ``GRID_SPACING``) gives the in-place score, its intramolecular part
    and the optimized score; the unweighted terms, Vinardo and the rotatable-bond count are the
    pairwise sums of :mod:`plgraph.featurize.vina_pairs`, checked against the package's in-place
    total (``AGREEMENT``). The same numbers as :func:`vina_terms_by_package` within ``AGREEMENT``
    (the package rounds to 0.001), at a quarter of its cost.

    Args:
        protein: PDB or mmCIF file of the protein or its pocket, with hydrogens.
        ligand: the posed ligand, one conformer in the protein's frame; with or without
            explicit hydrogens (missing ones are added with coordinates).
        source: the complex, named in errors.

    Raises:
        FeaturizationError: an element Vina has no type for, a ligand not in contact with the
            protein, an in-place score above ``CLASH_SCORE``, a non-finite result, or pairwise
            sums that disagree with Vina's total (a typing difference, a bug to report).
    """
    receptor_text, ligand_text, box = _inputs(protein, ligand, source)
    with _scored(receptor_text, ligand_text, box, source) as (_, in_place, optimized):
        pass
    pairs = pair_terms(receptor_text, ligand_text, VINA_WEIGHTS, source)
    expected = pairs.vina_inter / (1.0 + VINA_WEIGHTS[-1] * pairs.rotatable_bonds)
    if (abs(pairs.vina_inter - in_place[1]) > AGREEMENT
            or abs(expected - in_place[0]) > AGREEMENT):
        raise FeaturizationError(
            f"{source}: the pairwise Vina sum {pairs.vina_inter:.4f} (score {expected:.4f}) "
            f"disagrees with the vina package's {in_place[1]:.3f} (score {in_place[0]:.3f}): "
            "plgraph.featurize.vina_pairs types an atom differently; report this complex")
    return _checked(VinaTerms(float(in_place[0]), float(optimized[0]), pairs.vinardo_score,
                              float(in_place[1]), float(in_place[5]), *pairs.terms,
                              pairs.rotatable_bonds), source)


def vina_terms_by_package(protein: Path | str, ligand: Chem.Mol, source: str) -> VinaTerms:
    """:func:`vina_terms` with every number from the ``vina`` package: each unweighted term is
    Vina's total with that weight alone, on maps recomputed per weight set, and Vinardo its own
    Vina object (seven map computations, ~2 s per complex). The reference the pairwise sums are
    tested against (tests, ``bench/vina_cost.py``); same arguments and errors."""
    receptor_text, ligand_text, box = _inputs(protein, ligand, source)
    with _scored(receptor_text, ligand_text, box, source) as (receptor, in_place, optimized):
        terms, rotatable = _unweighted_terms(receptor, ligand_text, box, source)
        vinardo = _scorer("vinardo", None, receptor, ligand_text, box,
                          SCORE_ONLY_SPACING).score()
    return _checked(VinaTerms(float(in_place[0]), float(optimized[0]), float(vinardo[0]),
                              float(in_place[1]), float(in_place[5]), *terms, rotatable), source)


@contextmanager
def _scored(receptor_text: str, ligand_text: str, box: tuple[np.ndarray, np.ndarray],
            source: str) -> Iterator[tuple[Path, np.ndarray, np.ndarray]]:
    """Inside: the receptor's pdbqt file (Vina reads a receptor only from a file; the temporary
    directory is removed on the way out, an exception or a stop included), Vina's in-place
    energies and its locally optimized ones, with the default weights."""
    with tempfile.TemporaryDirectory(prefix="plgraph-vina-") as folder:
        receptor = Path(folder) / "receptor.pdbqt"
        receptor.write_text(receptor_text)
        vina = _scorer("vina", VINA_WEIGHTS, receptor, ligand_text, box, GRID_SPACING)
        in_place = _in_place(vina, source)
        yield receptor, in_place, vina.optimize()


def _inputs(protein: Path | str, ligand: Chem.Mol,
            source: str) -> tuple[str, str, tuple[np.ndarray, np.ndarray]]:
    """Receptor and ligand pdbqt texts and the optimization box (centre, size in Å)."""
    ligand_text = ligand_pdbqt(ligand, source)
    pos = ligand.GetConformer().GetPositions()
    heavy = np.array([a.GetAtomicNum() > 1 for a in ligand.GetAtoms()])
    receptor_text = receptor_pdbqt(protein, pos[heavy], source)
    return receptor_text, ligand_text, (pos.mean(axis=0), np.ptp(pos, axis=0) + BOX_PADDING)


def _in_place(vina, source: str) -> np.ndarray:
    """Vina's in-place score (``score()``), refused above ``CLASH_SCORE``."""
    in_place = vina.score()
    if in_place[0] > CLASH_SCORE:
        raise FeaturizationError(
            f"{source}: Vina scores the pose {in_place[0]:+.1f} kcal/mol in place (above "
            f"+{CLASH_SCORE}): the ligand clashes with the protein")
    return in_place


def _checked(result: VinaTerms, source: str) -> VinaTerms:
    if not np.isfinite(result.vector()).all():
        raise FeaturizationError(f"{source}: Vina gave a non-finite value: {result}")
    return result


def ligand_pdbqt(ligand: Chem.Mol, source: str) -> str:
    """The ligand as pdbqt text by Meeko (rigid macrocycles, non-polar hydrogens merged).

    Raises:
        FeaturizationError: an element outside ``LIGAND_ELEMENTS``, several fragments, no
            conformer, or Meeko's own refusal (with its reason).
    """
    from meeko import MoleculePreparation, PDBQTWriterLegacy  # 1 s of imports, only when used

    untyped = sorted({a.GetSymbol() for a in ligand.GetAtoms()} - LIGAND_ELEMENTS)
    if untyped:
        raise FeaturizationError(f"{source}: the ligand has {', '.join(untyped)}, for which Vina "
                                 f"has no ligand atom type (it types {sorted(LIGAND_ELEMENTS)})")
    if ligand.GetNumConformers() != 1:
        raise FeaturizationError(f"{source}: the ligand has {ligand.GetNumConformers()} "
                                 "conformers; Vina scores one pose")
    plain = _without_queries(ligand, source) if ligand.HasQuery() else ligand
    mol = Chem.AddHs(plain, addCoords=True)
    try:
        setups = MoleculePreparation(rigid_macrocycles=True).prepare(mol)
        text, ok, why = PDBQTWriterLegacy.write_string(setups[0])
    except (ValueError, RuntimeError, KeyError) as error:  # Meeko's refusals
        raise FeaturizationError(f"{source}: Meeko cannot prepare the ligand for Vina: "
                                 f"{error}") from None
    if not ok:
        raise FeaturizationError(f"{source}: Meeko cannot write the ligand as pdbqt: "
                                 f"{why.strip()}")
    return text


def _without_queries(mol: Chem.Mol, source: str) -> Chem.Mol:
    """``mol`` rebuilt from plain atoms and bonds. A molfile's hydrogen-count or query fields
    (PDBbind's X-TOOL files set them) leave query atoms, which Meeko refuses."""
    plain = Chem.RWMol()
    for atom in mol.GetAtoms():
        copy = Chem.Atom(atom.GetAtomicNum())
        copy.SetFormalCharge(atom.GetFormalCharge())
        copy.SetNumExplicitHs(atom.GetTotalNumHs())
        copy.SetNoImplicit(True)
        copy.SetIsAromatic(atom.GetIsAromatic())
        copy.SetChiralTag(atom.GetChiralTag())
        plain.AddAtom(copy)
    for bond in mol.GetBonds():
        plain.AddBond(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), bond.GetBondType())
        plain.GetBondWithIdx(plain.GetNumBonds() - 1).SetIsAromatic(bond.GetIsAromatic())
    plain.AddConformer(Chem.Conformer(mol.GetConformer()), assignId=True)
    plain = plain.GetMol()
    try:  # aromaticity as the reader left it: a mol2's aromatic bonds may not kekulize
        Chem.SanitizeMol(plain, Chem.SANITIZE_ALL ^ Chem.SANITIZE_KEKULIZE
                         ^ Chem.SANITIZE_SETAROMATICITY)
    except Exception as error:  # RDKit raises several MolSanitizeException subclasses
        raise FeaturizationError(f"{source}: the ligand rebuilt without its molfile query "
                                 f"fields (for Meeko) fails sanitization: {error}") from None
    return plain


def _scorer(name: str, weights: tuple[float, ...] | None, receptor: Path, ligand_text: str,
            box: tuple[np.ndarray, np.ndarray], spacing: float):
    """A Vina object (scoring function ``name``, one thread) with receptor, ligand and maps."""
    from vina import Vina  # imported here: only this module needs it

    vina = Vina(sf_name=name, cpu=1, seed=SEED, verbosity=0)
    if weights is not None:
        vina.set_weights(list(weights))
    vina.set_receptor(str(receptor))
    vina.set_ligand_from_string(ligand_text)
    _maps(vina, box, spacing)
    return vina


def _maps(vina, box: tuple[np.ndarray, np.ndarray], spacing: float) -> None:
    """(Re)compute Vina's maps over ``box`` (centre, size in Å); they carry the weights."""
    vina.compute_vina_maps(center=[float(v) for v in box[0]],
                           box_size=[float(v) for v in box[1]], spacing=spacing)


def _unweighted_terms(receptor: Path, ligand_text: str, box: tuple[np.ndarray, np.ndarray],
                      source: str) -> tuple[list[float], float]:
    """Each of ``TERMS`` as Vina's intermolecular sum with that term's weight alone, and Vina's
    rotatable-bond count. Each weight is -1 for an attraction and +1 for repulsion, so that the
    per-atom sums keep their sign and Vina's smoothing of positive energies touches only the
    repulsion (see the module doc); the maps are recomputed per weight set, as Vina bakes the
    weights into them."""
    terms, rotatable = [], []
    vina = None
    for index, term in enumerate(TERMS):
        unit = 1.0 if term == "repulsion" else -1.0
        weights = [0.0] * len(TERMS) + list(VINA_WEIGHTS[len(TERMS):])
        weights[index] = unit
        if vina is None:
            vina = _scorer("vina", tuple(weights), receptor, ligand_text, box, SCORE_ONLY_SPACING)
        else:  # reading the ligand costs as much as the maps: only the weights change
            vina.set_weights(weights)
            _maps(vina, box, SCORE_ONLY_SPACING)
        score = vina.score()
        terms.append(float(score[1]) / unit + 0.0)  # + 0.0: no -0.0 in the cache
        if abs(score[0]) > 1.0:  # total = inter / (1 + w N): N from a total far from zero
            rotatable.append((score[1] / score[0] - 1.0) / VINA_WEIGHTS[-1])
    if not rotatable:
        raise FeaturizationError(f"{source}: no protein atom within Vina's 8 Å cutoff of the "
                                 "ligand: nothing to score")
    return terms, round(float(np.median(rotatable)), 2)
