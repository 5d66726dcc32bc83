"""The ligand: reading (SDF / mol2 / pdbqt with fallback) and its heavy-atom graph."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import Crippen, Descriptors, Lipinski, rdMolDescriptors

from plgraph import vocab
from plgraph.errors import FeaturizationError
from plgraph.featurize.pdbqt import FILE_INDEX, parse_pdbqt_ligand
from plgraph.runtime.files import plain_suffix, read_text

# RDKit would print every parse problem to stderr, where nobody connects it to a complex. Its log
# goes to a silent Python logger instead; parse_ligand_block collects the messages into the
# FeaturizationError, which ends up in meta.json.
rdBase.LogToPythonLogger()
_RDKIT_LOG = logging.getLogger("rdkit")
_RDKIT_LOG.propagate = False
_RDKIT_LOG.handlers = [logging.NullHandler()]  # replaces the stderr handler RDKit installs
_HALOGENS = frozenset(("F", "Cl", "Br", "I"))
_TIMESTAMP = re.compile(r"^\[\d\d:\d\d:\d\d\]\s*")

_HYBRIDIZATION_INDEX = {name: i for i, name in enumerate(vocab.HYBRIDIZATIONS)}
_CHIRALITY_INDEX = {name: i for i, name in enumerate(vocab.CHIRALITIES)}
_BOND_INDEX = {name: i for i, name in enumerate(vocab.BOND_TYPES)}
_CHARGE_INDEX = {charge: i for i, charge in enumerate(vocab.FORMAL_CHARGES)}
SUFFIX_FORMATS = {".sdf": "sdf", ".mol": "sdf", ".mol2": "mol2", ".pdbqt": "pdbqt"}  # and .gz
# Å: a pose spans more than this in z (any real 3D pose does, by far: the flattest ligand in
# data/sample, the PDBbind toy set and the FEP benchmark spans 1.17 Å); a 2D depiction written
# with a stray z (one atom at z = 0.001) does not.
FLAT_Z_TOLERANCE = 0.01
# Atom property: the atom's index in the input record, hydrogens counted (they are removed).
INPUT_INDEX = "plgraph_input_index"


def parse_ligand_block(text: str, fmt: str, source: str, first_line: int = 1) -> Chem.Mol:
    """Parse one ligand record (``sdf`` mol block, ``mol2`` or ``pdbqt``, whose first MODEL is
    taken), sanitize it and check its 3D pose.

    Args:
        text: the record's text.
        fmt: ``sdf``, ``mol2`` or ``pdbqt``.
        source: what to name in error messages (file, or file and record).
        first_line: the file line ``text`` starts on; RDKit counts lines from the record's start,
            and messages should name the line of the file.

    Raises:
        FeaturizationError: unparsable, failing sanitization, or without finite 3D coordinates.
    """
    readers = {"sdf": Chem.MolFromMolBlock, "mol2": Chem.MolFromMol2Block}
    if fmt == "pdbqt":
        mol = parse_pdbqt_ligand(text, source, first_line)
    elif fmt in readers:
        with rdkit_messages() as messages:
            mol = readers[fmt](text, sanitize=False, removeHs=False)
        if mol is None or mol.GetNumAtoms() == 0:
            said = f" ({_file_lines('; '.join(messages), first_line)})" if messages else ""
            raise FeaturizationError(f"{source}: RDKit cannot parse it as {fmt}{said}")
    else:
        raise ValueError(f"unknown ligand format {fmt!r}; valid: {sorted(readers)}, pdbqt")
    try:
        Chem.SanitizeMol(mol)
    except Exception as error:  # RDKit raises several MolSanitizeException subclasses
        raise FeaturizationError(f"{source}: fails RDKit sanitization: {error}") from None
    if mol.GetNumConformers():
        # R/S from the pose, on true stereo centres only: the reader tags every atom with four
        # neighbours in 3D CW or CCW, and a ligand posed from SMILES (or read from pdbqt) has
        # tags on its stereo centres alone; the chirality feature must mean one thing for all.
        Chem.AssignStereochemistryFrom3D(mol)
    hydrogens = mol.GetNumAtoms()
    # the file's numbering, for per-atom output (plgraph.inference.explain)
    for atom in mol.GetAtoms():
        atom.SetIntProp(INPUT_INDEX, atom.GetIntProp(FILE_INDEX) if atom.HasProp(FILE_INDEX)
                        else atom.GetIdx())
    if all(atom.GetAtomicNum() == 1 for atom in mol.GetAtoms()):
        raise FeaturizationError(f"{source}: ligand has only hydrogens ({hydrogens} atoms), no "
                                 "heavy atom")
    # Sanitized again, so that each heavy atom counts the hydrogens it lost as implicit ones
    # (unsanitized, an aromatic CH counted none, and only a CW/CCW-tagged atom kept its count).
    try:
        mol = Chem.RemoveAllHs(mol, sanitize=True)
    except Exception as error:  # RDKit raises several MolSanitizeException subclasses
        raise FeaturizationError(f"{source}: fails RDKit sanitization once its hydrogens are "
                                 f"removed: {error}") from None
    _check_pose(mol, source)
    return mol


def _file_lines(message: str, first_line: int) -> str:
    return re.sub(r"\bline (\d+)", lambda m: f"line {int(m.group(1)) + first_line - 1}", message)


@contextmanager
def rdkit_messages() -> Iterator[list[str]]:
    """Collect what RDKit logs inside the block."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(_TIMESTAMP.sub("", record.getMessage()).strip())

    handler = Collect()
    _RDKIT_LOG.addHandler(handler)
    try:
        yield messages
    finally:
        _RDKIT_LOG.removeHandler(handler)


def read_ligand_files(paths: Sequence[Path], source: str) -> Chem.Mol:
    """Read the first of ``paths`` that parses and sanitizes; the rest are the fallbacks.

    The format comes from each file's suffix (.sdf, .mol, .mol2, each optionally .gz). When every
    file fails, the error lists each reason.
    """
    reasons = []
    for path in paths:
        if not path.exists():
            reasons.append(f"{path.name}: file not found")
            continue
        try:
            fmt = SUFFIX_FORMATS.get(plain_suffix(path))
            if fmt is None:
                raise FeaturizationError(f"{path.name}: unknown ligand file type; valid: "
                                         f"{sorted(SUFFIX_FORMATS)}, each optionally .gz")
            return parse_ligand_block(read_text(path), fmt, path.name)
        except FeaturizationError as error:
            reasons.append(str(error))
    raise FeaturizationError(f"{source}: no usable ligand file: " + "; ".join(reasons))


def _check_pose(mol: Chem.Mol, source: str) -> None:
    if mol.GetNumConformers() == 0:
        raise FeaturizationError(f"{source}: ligand has no coordinates")
    pos = mol.GetConformer().GetPositions()
    if not np.isfinite(pos).all():
        raise FeaturizationError(f"{source}: ligand has NaN or infinite coordinates")
    if mol.GetNumAtoms() > 1 and np.ptp(pos[:, 2]) < FLAT_Z_TOLERANCE:
        raise FeaturizationError(f"{source}: ligand has no 3D coordinates (all z within "
                                 f"{FLAT_Z_TOLERANCE} Å: a 2D depiction, not a pose)")


def ligand_atom_features(mol: Chem.Mol) -> np.ndarray:
    """Categorical atom features, one row per heavy atom, columns as ``LIGAND_ATOM_FEATURES``."""
    centres = dict(Chem.FindMolChiralCenters(mol, includeUnassigned=False,
                                             useLegacyImplementation=False))
    rows = [
        (
            vocab.element_index(atom.GetSymbol()),
            min(atom.GetDegree(), vocab.DEGREES - 1),
            _CHARGE_INDEX.get(atom.GetFormalCharge(), 0),
            _HYBRIDIZATION_INDEX.get(str(atom.GetHybridization()), 0),
            int(atom.GetIsAromatic()),
            min(atom.GetTotalNumHs(), vocab.TOTAL_HS - 1),
            int(atom.IsInRing()),
            _CHIRALITY_INDEX.get(centres.get(atom.GetIdx(), "none"), 0),
        )
        for atom in mol.GetAtoms()
    ]
    return np.asarray(rows, dtype=np.int64).reshape(-1, len(vocab.LIGAND_ATOM_FEATURES))


def ligand_bonds(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
    """Covalent bonds in both directions: ``edge_index`` [2, 2B] and categorical attributes."""
    pairs, attrs = [], []
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        attr = (_BOND_INDEX.get(str(bond.GetBondType()), 0), int(bond.GetIsConjugated()),
                int(bond.IsInRing()))
        pairs += [(i, j), (j, i)]
        attrs += [attr, attr]
    edge_index = np.asarray(pairs, dtype=np.int64).reshape(-1, 2).T
    edge_attr = np.asarray(attrs, dtype=np.int64).reshape(-1, len(vocab.LIGAND_BOND_FEATURES))
    return np.ascontiguousarray(edge_index), edge_attr


def ligand_positions(mol: Chem.Mol) -> np.ndarray:
    return mol.GetConformer().GetPositions()


def ligand_descriptors(mol: Chem.Mol) -> np.ndarray:
    """The whole-molecule descriptors of ``vocab.LIGAND_DESCRIPTORS`` (float32, in its order) of
    a sanitized, hydrogen-free molecule: RDKit's Crippen logP and molar refractivity, TPSA,
    Lipinski donors and acceptors, rotatable bonds, aromatic and all rings, fraction of sp3
    carbons, average molecular weight, net formal charge and halogen count. They depend on the
    molecule alone, never on its pose, so a ligand's every pose has the same ones."""
    values = {
        "crippen_logp": Crippen.MolLogP(mol),
        "tpsa": rdMolDescriptors.CalcTPSA(mol),
        "h_donors": Lipinski.NumHDonors(mol),
        "h_acceptors": Lipinski.NumHAcceptors(mol),
        "rotatable_bonds": rdMolDescriptors.CalcNumRotatableBonds(mol),
        "aromatic_rings": rdMolDescriptors.CalcNumAromaticRings(mol),
        "fraction_csp3": rdMolDescriptors.CalcFractionCSP3(mol),
        "molecular_weight": Descriptors.MolWt(mol),
        "formal_charge": Chem.GetFormalCharge(mol),
        "halogens": sum(atom.GetSymbol() in _HALOGENS for atom in mol.GetAtoms()),
        "rings": rdMolDescriptors.CalcNumRings(mol),
        "crippen_mr": Crippen.MolMR(mol),
    }
    assert tuple(values) == vocab.LIGAND_DESCRIPTORS, "keep vocab.LIGAND_DESCRIPTORS in step"
    return np.array([values[name] for name in vocab.LIGAND_DESCRIPTORS], np.float32)
