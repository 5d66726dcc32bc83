"""The receptor as AutoDock pdbqt for Vina: the pocket around a ligand, AutoDock-typed.

Vina reads a receptor only as pdbqt. The usual writers are Open Babel (GPL, and it types the
backbone N of every residue after a chain break, and both ring N of a histidine, as acceptors)
and Meeko's receptor preparation (which refuses residues its templates do not know, and PDBbind
pockets are cut mid-chain). This writer is small because Vina uses little of the AutoDock type:
its own X-Score typing takes the element, whether an N is an acceptor (``NA``), which heavy atoms
carry a polar hydrogen (``HD``, found by distance) and, from distances again, which carbons are
bonded to a heteroatom. Charges are not used by Vina (written as 0). So the rules are:

1. Only the first model; of alternate locations the first (as :mod:`plgraph.featurize.protein`).
2. Waters are dropped: Vina's weights were fitted on dry complexes.
3. A hetero group with an atom within ``LIGAND_COPY_DISTANCE`` of the ligand is a copy of it and
   is dropped (it would be scored as a clash).
4. Only residues with an atom within ``POCKET_RADIUS`` of the ligand are written: exact for the
   in-place score and for an optimization that stays in the box (see ``POCKET_RADIUS``).
5. Hydrogens: one whose nearest heavy atom is N, O or S is ``HD``; the others (on carbon) are
   dropped, as AutoDock merges them. A pocket without any hydrogen is refused: Vina would see no
   donor at all.
6. Heavy atoms: O -> ``OA``, S -> ``SA``; aromatic ring carbons of PHE/TYR/TRP/HIS -> ``A``,
   other C -> ``C``; N -> ``N``, except an N without hydrogen and at most two heavy neighbours in
   a histidine ring or a hetero group -> ``NA`` (a backbone N at a chain break is not an
   acceptor); other elements by ``_ELEMENT_TYPES``, and an element Vina has no type for is a
   failure naming it.
7. The ligand must touch the pocket (``MIN_CONTACT_FRACTION``), or it is not in a binding site.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from Bio.PDB import MMCIFParser
from scipy.spatial import cKDTree

from plgraph import vocab
from plgraph.errors import FeaturizationError
from plgraph.featurize.protein import LIGAND_COPY_DISTANCE, MMCIF_SUFFIXES, record_element
from plgraph.runtime.files import plain_suffix, read_text

# Å: Vina's pair cutoff (8 Å) plus the half-width margin the optimization box gives the ligand
# beyond its own extent (vina_terms.BOX_PADDING / 2 = 4 Å): no atom farther than this from every
# ligand atom can contribute, in place or after a local optimization inside the box.
POCKET_RADIUS = 12.0
# Å: a hydrogen is bonded to its nearest heavy atom; a heavy atom with a hydrogen this close has
# one (N-H 1.01, O-H 0.96, S-H 1.34 Å).
_X_H_BOND = 1.4
_HEAVY_BOND = 1.9  # Å: heavy-atom neighbours of an N (C-N 1.47, the longest usual bond to N)
_AROMATIC_CARBONS = {
    "PHE": {"CG", "CD1", "CD2", "CE1", "CE2", "CZ"},
    "TYR": {"CG", "CD1", "CD2", "CE1", "CE2", "CZ"},
    "TRP": {"CG", "CD1", "CD2", "CE2", "CE3", "CZ2", "CZ3", "CH2"},
    "HIS": {"CG", "CD2", "CE1"},
}
_HIS_RING_N = {"ND1", "NE2"}
# A ligand in a binding site touches it: at least this share of its heavy atoms lies within
# CONTACT_DISTANCE (Å) of a protein heavy atom. The crystal poses of data/sample (PDBbind) have at
# least 0.21 (median about 0.8); the same ligands moved 30 Å have 0.11 at most. Without this
# rule a ligand beside the protein scores a harmless -1 and looks like a weak binder.
CONTACT_DISTANCE = 4.5
MIN_CONTACT_FRACTION = 0.15
# Elements (upper case) -> AutoDock type, for the ones Vina 1.2 reads beside C, N, O, S, H
# (checked against vina 1.2.7: B and Sr, among others, are refused).
_ELEMENT_TYPES = {
    "P": "P", "F": "F", "CL": "Cl", "BR": "Br", "I": "I", "SI": "Si", "SE": "Se", "ZN": "Zn",
    "MG": "Mg", "CA": "Ca", "MN": "Mn", "FE": "Fe", "CU": "Cu", "CO": "Co", "NI": "Ni",
    "NA": "Na", "K": "K", "HG": "Hg", "CD": "Cd",
}


@dataclass(frozen=True)
class _Atom:
    name: str
    residue: str  # residue name, upper case
    residue_key: int  # one value per residue
    hetero: bool  # a HETATM group that is not an amino acid
    element: str  # upper case
    xyz: np.ndarray


def receptor_pdbqt(path: Path | str, ligand_pos: np.ndarray, source: str) -> str:
    """The pocket of ``path`` around the ligand as pdbqt text that Vina reads.

    Args:
        path: a PDB or mmCIF protein or pocket file (optionally gzipped), with hydrogens.
        ligand_pos: [N, 3] ligand heavy-atom positions in Å, in the protein's frame.
        source: what to name in errors (the complex).

    Raises:
        FeaturizationError: unparsable file, no protein atom within ``POCKET_RADIUS`` of the
            ligand, no hydrogen in the pocket, or an element Vina has no type for.
    """
    atoms = _pocket(_read_atoms(Path(path), source), ligand_pos, source)
    heavy = [a for a in atoms if a.element not in ("H", "D")]
    hydrogens = [a for a in atoms if a.element in ("H", "D")]
    if not hydrogens:
        raise FeaturizationError(
            f"{source}: {Path(path).name} has no hydrogen near the ligand: Vina finds donors by "
            "their polar hydrogens; protonate the protein (e.g. reduce, PDBFixer) first")
    heavy_pos = np.array([a.xyz for a in heavy])
    heavy_tree = cKDTree(heavy_pos)
    _, parent = heavy_tree.query(np.array([a.xyz for a in hydrogens]))
    polar = [h for h, p in zip(hydrogens, parent, strict=True)
             if heavy[p].element in ("N", "O", "S")]
    polar_tree = cKDTree(np.array([h.xyz for h in polar]).reshape(-1, 3))
    lines = []
    for atom in heavy:
        with_h = bool(polar_tree.query_ball_point(atom.xyz, _X_H_BOND))
        neighbours = len(heavy_tree.query_ball_point(atom.xyz, _HEAVY_BOND)) - 1  # less itself
        lines.append(_line(len(lines) + 1, atom, _type(atom, with_h, neighbours, source)))
    lines += [_line(len(lines) + 1, h, "HD") for h in polar]
    return "\n".join(lines) + "\n"


def _read_atoms(path: Path, source: str) -> list[_Atom]:
    """Every atom of the first model (first alternate location), waters left out."""
    if plain_suffix(path) not in MMCIF_SUFFIXES:
        return _read_pdb_atoms(path, source)
    try:
        text = read_text(path)
        structure = MMCIFParser(QUIET=True).get_structure(path.stem, io.StringIO(text))
        model = next(iter(structure))
    except FeaturizationError:
        raise
    except Exception as error:  # Biopython raises ValueError, PDBConstructionException, ...
        raise FeaturizationError(f"{source}: {path.name} is not a readable protein: "
                                 f"{type(error).__name__}: {error}") from None
    atoms = []
    for key, residue in enumerate(_first_of_each(model.get_residues())):
        name = residue.get_resname().strip().upper()
        if residue.id[0] == "W" or name in vocab.WATER_NAMES:
            continue
        residue_name = vocab.RESIDUE_ALIASES.get(name, name)
        hetero = residue.id[0].startswith("H_") and residue_name not in vocab.AMINO_ACIDS
        for atom in _first_of_each(residue.get_atoms()):
            element = (atom.element or atom.get_name()[:1]).strip().upper()
            atoms.append(_Atom(atom.get_name().strip().upper(), residue_name, key, hetero,
                               element, atom.get_coord().astype(np.float64)))
    return atoms


def _read_pdb_atoms(path: Path, source: str) -> list[_Atom]:
    """The PDB file's atom lines read by column. Not Biopython: PDBbind pockets hold several
    chains under one blank chain id with overlapping residue numbers, and Biopython keeps only
    the first residue of each number (2p3a lost half its pocket). A residue here is a run of
    lines with the same chain, number, insertion code and name."""
    atoms, key, previous, first_altloc = [], -1, None, {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if line.startswith("ENDMDL"):
            break
        if not line.startswith(("ATOM  ", "HETATM")):
            continue
        name = line[17:20].strip().upper()
        residue_id = (line[21], line[22:27], name)
        if residue_id != previous:
            key, previous = key + 1, residue_id
        if line[16] != " " and first_altloc.setdefault(key, line[16]) != line[16]:
            continue  # an alternate location after the residue's first one
        if name in vocab.WATER_NAMES:
            continue
        residue = vocab.RESIDUE_ALIASES.get(name, name)
        atom_name = line[12:16].strip().upper()
        element = record_element(line)
        try:
            xyz = np.array([float(line[30:38]), float(line[38:46]), float(line[46:54])])
        except ValueError:
            raise FeaturizationError(f"{source}: {path.name}, line {number}: unreadable "
                                     "coordinates (columns 31-54)") from None
        atoms.append(_Atom(atom_name, residue, key, line.startswith("HETATM")
                           and residue not in vocab.AMINO_ACIDS, element, xyz))
    return atoms


def _first_of_each(entities):
    """Biopython's disordered atoms / residues resolved to their first alternative."""
    for entity in entities:
        if entity.is_disordered() == 2:
            entity = entity.child_dict[entity.disordered_get_id_list()[0]]
        yield entity


def _pocket(atoms: list[_Atom], ligand_pos: np.ndarray, source: str) -> list[_Atom]:
    """The residues near the ligand (rule 4), less hetero copies of the ligand (rule 3)."""
    if not atoms:
        raise FeaturizationError(f"{source}: the protein has no atom besides waters")
    nearest, _ = cKDTree(ligand_pos).query(np.array([a.xyz for a in atoms]))
    copies = {a.residue_key for a, d in zip(atoms, nearest, strict=True)
              if a.hetero and d < LIGAND_COPY_DISTANCE}
    near = {a.residue_key for a, d in zip(atoms, nearest, strict=True)
            if d <= POCKET_RADIUS} - copies
    if not near:
        raise FeaturizationError(
            f"{source}: no protein atom within {POCKET_RADIUS} Å of the ligand (nearest "
            f"{nearest.min():.1f} Å): the pose is not in a binding site Vina could score (wrong "
            "protein, or another coordinate frame?)")
    pocket = [a for a in atoms if a.residue_key in near]
    _check_contact(pocket, ligand_pos, source)
    return pocket


def _check_contact(pocket: list[_Atom], ligand_pos: np.ndarray, source: str) -> None:
    """The rule of ``MIN_CONTACT_FRACTION``."""
    heavy = np.array([a.xyz for a in pocket if a.element not in ("H", "D")]).reshape(-1, 3)
    distance, _ = cKDTree(heavy).query(ligand_pos)
    touching = int((distance <= CONTACT_DISTANCE).sum())
    if touching < MIN_CONTACT_FRACTION * len(ligand_pos):
        raise FeaturizationError(
            f"{source}: only {touching} of the ligand's {len(ligand_pos)} heavy atoms lie within "
            f"{CONTACT_DISTANCE} Å of a protein heavy atom (at least {MIN_CONTACT_FRACTION:.0%} "
            "must): the ligand is not in a binding site")


def _type(atom: _Atom, with_h: bool, neighbours: int, source: str) -> str:
    """The AutoDock type of a heavy atom under rule 6."""
    if atom.element == "C":
        return "A" if atom.name in _AROMATIC_CARBONS.get(atom.residue, ()) else "C"
    if atom.element == "N":
        ring = atom.residue == "HIS" and atom.name in _HIS_RING_N
        return "NA" if (ring or atom.hetero) and not with_h and neighbours <= 2 else "N"
    if atom.element == "O":
        return "OA"
    if atom.element == "S":
        return "SA"
    if atom.element not in _ELEMENT_TYPES:
        raise FeaturizationError(
            f"{source}: receptor atom {atom.name} of {atom.residue} is element "
            f"{atom.element.capitalize()}, for which Vina has no atom type (it reads "
            f"C N O S H {' '.join(sorted(_ELEMENT_TYPES.values()))})")
    return _ELEMENT_TYPES[atom.element]


def _line(serial: int, atom: _Atom, autodock_type: str) -> str:
    """A pdbqt ATOM/HETATM line: PDB columns 1-66, charge in 71-76, type in 78-79."""
    record = "HETATM" if atom.hetero else "ATOM  "
    x, y, z = atom.xyz
    name = atom.name if len(atom.name) == 4 else f" {atom.name:<3}"
    return (f"{record}{serial % 100000:>5} {name} {atom.residue[:3]:>3} A"
            f"{atom.residue_key % 10000:>4}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00    "
            f"+0.000 {autodock_type:<2}")
