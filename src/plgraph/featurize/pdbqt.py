"""AutoDock pdbqt, the format Vina reads and writes, for proteins and ligands.

A pdbqt file is PDB columns 1-66, a partial charge (columns 71-76) and an AutoDock atom type
(columns 78-79) instead of the element. Ligands carry no bond orders; two kinds of file give them
back reliably, and any other is a failure that says what to do:

- a file written by Meeko (``mk_prepare_ligand.py``, and Vina's output for it) carries the
  ligand's SMILES and the map of its atoms onto the file's (``REMARK SMILES`` /
  ``REMARK SMILES IDX``): the molecule is the SMILES, with the coordinates of the mapped atoms;
- a file with its non-polar hydrogens (a hydrogen on a carbon; kept by e.g. ``obabel -xh``):
  RDKit's ``rdDetermineBonds`` perceives connectivity and bond orders from the complete
  structure.

Without both, the hydrogens on carbon are merged into their atoms' charges (the default of Open
Babel and AutoDockTools), and bond orders and charges cannot be told apart (an amide from an
imidic acid, a carboxylate from a carboxylic acid): such a ligand is refused.

Several ``MODEL`` blocks are several poses of the ligand (Vina's output, best first); the remarks
before the first ``MODEL`` apply to every one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDetermineBonds
from rdkit.Geometry import Point3D

from plgraph import vocab
from plgraph.errors import FeaturizationError

# AutoDock 4 atom types (and the ones Meeko adds) -> element. A, NA, OA, SA: aromatic carbon and
# hydrogen-bond acceptors; HD, HS: polar hydrogens; N/O/S with a D or S suffix are donors.
AUTODOCK_ELEMENTS = {
    "C": "C", "A": "C", "N": "N", "NA": "N", "NS": "N", "O": "O", "OA": "O", "OS": "O",
    "S": "S", "SA": "S", "H": "H", "HD": "H", "HS": "H", "P": "P", "F": "F", "Cl": "Cl",
    "CL": "Cl", "Br": "Br", "BR": "Br", "I": "I", "Si": "Si", "B": "B", "Se": "Se",
    "Mg": "Mg", "MG": "Mg", "Ca": "Ca", "Mn": "Mn", "MN": "Mn", "Fe": "Fe", "FE": "Fe",
    "Zn": "Zn", "ZN": "Zn", "Cu": "Cu", "Co": "Co", "Ni": "Ni", "Na": "Na", "K": "K",
    "Cd": "Cd", "Hg": "Hg", "Sr": "Sr", "Ba": "Ba",
}
# Pseudo-atoms that are no part of the molecule: Meeko's macrocycle glue atoms (G0, CG0, ...) and
# the water beads of hydrated docking (W).
_PSEUDO_ATOM = re.compile(r"^(C?G\d*|W)$")
# Å: a hydrogen this close to a carbon is bonded to it.
_C_H_BOND = 1.25
# Net charges tried when perceiving bond orders.
_NET_CHARGES = (0, -1, 1, -2, 2)
# Formal charges a perceived ligand may carry (ammonium, amidinium, nitro, carboxylate, ...).
# rdDetermineBonds (xyz2mol) gets some sulfur heterocycles wrong, e.g. a benzothiophene
# carboxylate as a thiophenium with a carbanion: a charged C, S or O(+) marks such a failure.
_PLAUSIBLE_CHARGES = {("N", 1), ("N", -1), ("O", -1)}
_ION_ELEMENTS = vocab.METALS | vocab.HALIDE_IONS
# Atom property: the atom's index among the file's atom lines (pseudo-atoms left out).
FILE_INDEX = "pdbqt_file_index"


@dataclass(frozen=True)
class PdbqtAtom:
    line: str
    line_number: int  # in the file
    element: str
    xyz: tuple[float, float, float]
    charge: float

    @property
    def serial(self) -> int:
        return int(self.line[6:11])


def autodock_element(line: str, where: str) -> str | None:
    """The element of an ATOM/HETATM line's AutoDock type, or None for a pseudo-atom."""
    autodock_type = line[77:79].strip() if len(line) > 77 else ""
    if not autodock_type:
        raise FeaturizationError(f"{where}: no AutoDock atom type in columns 78-79: not a "
                                 "pdbqt atom line")
    if _PSEUDO_ATOM.match(autodock_type):
        return None
    if autodock_type not in AUTODOCK_ELEMENTS:
        raise FeaturizationError(f"{where}: unknown AutoDock atom type {autodock_type!r}; "
                                 f"known: {sorted(AUTODOCK_ELEMENTS)}")
    return AUTODOCK_ELEMENTS[autodock_type]


def pdbqt_to_pdb(text: str, source: str) -> str:
    """A receptor pdbqt as PDB text for Biopython: the atom lines cut to PDB's columns with the
    element (from the AutoDock type) in columns 77-78; pseudo-atoms and the torsion tree of
    flexible residues dropped."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        record = line[:6].strip()
        if record in ("ATOM", "HETATM"):
            element = autodock_element(line, f"{source}, line {number}")
            if element is not None:
                # Open Babel writes every atom as ATOM, and the protein rules know an ion by its
                # HETATM record (waters they know by name). Other hetero groups keep the record
                # the file gives them: ATOM is also how it writes terminal residues (NSER).
                ion = element.upper() in _ION_ELEMENTS and not _amino_acid(line[17:20].strip())
                record = "HETATM" if ion else line[:6]
                out.append(f"{record}{line[6:66]:<60}          {element.upper():>2}")
        elif record in ("MODEL", "ENDMDL", "TER", "END"):
            out.append(line)
    return "\n".join(out) + "\n"


def _amino_acid(name: str) -> bool:
    return vocab.RESIDUE_ALIASES.get(name, name) in vocab.AMINO_ACIDS


def pdbqt_models(text: str) -> list[tuple[str, int]]:
    """(text, first line) of each pose: each ``MODEL`` block with the file's remarks before the
    first ``MODEL`` put after it (they name the ligand and carry Meeko's SMILES); the whole text
    where there is no ``MODEL``. After, not in front: the block's own lines keep their places, so
    that its line ``i`` is the file's line ``first line + i - 1`` in error messages."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("MODEL")]
    if not starts:
        return [(text, 1)]
    header = "".join(line for line in lines[:starts[0]] if line.startswith("REMARK"))
    ends = [*starts[1:], len(lines)]
    blocks = ["".join(lines[start:end]) for start, end in zip(starts, ends, strict=True)]
    # A last line without its newline would run into the remarks.
    return [(block + ("" if block.endswith("\n") else "\n") + header, start + 1)
            for block, start in zip(blocks, starts, strict=True)]


def pdbqt_ligand_name(text: str) -> str:
    """The ``REMARK  Name = ...`` that Open Babel and AutoDockTools write, or ''."""
    found = re.search(r"^REMARK\s+Name\s*=\s*(.+?)\s*$", text, re.MULTILINE)
    return found.group(1) if found else ""


def parse_pdbqt_ligand(text: str, source: str, first_line: int = 1) -> Chem.Mol:
    """One ligand pose (the first ``MODEL`` where there are several) as an RDKit molecule, each
    atom's index among the file's atom lines in its ``FILE_INDEX`` property; not yet sanitized,
    its stereo not yet assigned from the pose (``parse_ligand_block`` does both, for every
    format).

    Raises:
        FeaturizationError: no atoms, an unknown atom type, a SMILES remark that does not map
            onto the atoms, or bond orders that cannot be perceived (see the module doc).
    """
    model, model_line = pdbqt_models(text)[0]
    atoms = _atoms(model, source, first_line + model_line - 1)
    if not atoms:
        raise FeaturizationError(f"{source}: no ATOM/HETATM lines: not a pdbqt ligand")
    smiles, pairs = _meeko_smiles(model)
    if smiles is not None:
        return _from_smiles(smiles, pairs, atoms, source)
    if _has_non_polar_hydrogens(atoms):
        return _perceived(atoms, source)
    raise FeaturizationError(
        f"{source}: a pdbqt ligand without Meeko's REMARK SMILES and without its non-polar "
        "hydrogens: its bond orders and charges cannot be perceived reliably. Write it with Meeko "
        "(mk_prepare_ligand.py), keep the hydrogens (obabel -xh), or give the ligand as SDF/mol2")


def _atoms(model: str, source: str, first_line: int) -> list[PdbqtAtom]:
    atoms = []
    for number, line in enumerate(model.splitlines(), start=first_line):
        if line[:6].strip() not in ("ATOM", "HETATM"):
            continue
        where = f"{source}, line {number}"
        element = autodock_element(line, where)
        if element is None:
            continue
        try:
            xyz = (float(line[30:38]), float(line[38:46]), float(line[46:54]))
            charge = float(line[70:76]) if line[70:76].strip() else 0.0
            int(line[6:11])
        except ValueError:
            raise FeaturizationError(f"{where}: unreadable serial, coordinates or charge "
                                     "(pdbqt columns 7-11, 31-54, 71-76)") from None
        atoms.append(PdbqtAtom(line, number, element, xyz, charge))
    return atoms


def _meeko_smiles(model: str) -> tuple[str | None, list[int]]:
    smiles, pairs = None, []
    for line in model.splitlines():
        fields = line.split()
        if fields[:3] == ["REMARK", "SMILES", "IDX"]:
            pairs += [int(value) for value in fields[3:]]
        elif fields[:2] == ["REMARK", "SMILES"] and len(fields) > 2:
            smiles = fields[2]
    return smiles, pairs


def _from_smiles(smiles: str, pairs: list[int], atoms: list[PdbqtAtom],
                 source: str) -> Chem.Mol:
    """The SMILES' molecule with each atom at the pdbqt atom that ``REMARK SMILES IDX`` maps it
    to (pairs of 1-based SMILES atom index and pdbqt serial); hydrogens the map leaves out (the
    non-polar ones Meeko merged) are left implicit."""
    template = Chem.MolFromSmiles(smiles, sanitize=True)
    if template is None:
        raise FeaturizationError(f"{source}: RDKit cannot parse the REMARK SMILES {smiles!r}")
    if len(pairs) % 2:
        raise FeaturizationError(f"{source}: REMARK SMILES IDX has an odd number of values")
    by_serial = {atom.serial: index for index, atom in enumerate(atoms)}
    placed = {}
    for smiles_index, serial in zip(pairs[::2], pairs[1::2], strict=True):
        if not 1 <= smiles_index <= template.GetNumAtoms() or serial not in by_serial:
            raise FeaturizationError(
                f"{source}: REMARK SMILES IDX maps SMILES atom {smiles_index} to atom serial "
                f"{serial}, which the SMILES ({template.GetNumAtoms()} atoms) or the file lacks")
        placed[smiles_index - 1] = by_serial[serial]
    unplaced = [a.GetIdx() for a in template.GetAtoms() if a.GetIdx() not in placed]
    if any(template.GetAtomWithIdx(i).GetAtomicNum() > 1 for i in unplaced):
        raise FeaturizationError(f"{source}: REMARK SMILES IDX leaves {len(unplaced)} SMILES "
                                 "atoms without a pdbqt atom")
    mol = Chem.RWMol(template)
    for index in sorted(unplaced, reverse=True):  # explicit [H] the map leaves out
        mol.RemoveAtom(index)
    kept = sorted(placed)  # the template's atoms left, in their order
    conformer = Chem.Conformer(mol.GetNumAtoms())
    for new_index, old_index in enumerate(kept):
        atom = atoms[placed[old_index]]
        if mol.GetAtomWithIdx(new_index).GetSymbol() != atom.element:
            raise FeaturizationError(
                f"{source}, line {atom.line_number}: REMARK SMILES IDX maps a "
                f"{mol.GetAtomWithIdx(new_index).GetSymbol()} of the SMILES onto a "
                f"{atom.element} atom")
        conformer.SetAtomPosition(new_index, Point3D(*atom.xyz))
        mol.GetAtomWithIdx(new_index).SetIntProp(FILE_INDEX, placed[old_index])
    mol.AddConformer(conformer, assignId=True)
    return mol.GetMol()


def _has_non_polar_hydrogens(atoms: list[PdbqtAtom]) -> bool:
    """Whether some hydrogen sits on a carbon: a file written with every hydrogen kept (AutoDock
    files otherwise keep only the polar ones, and the type of a hydrogen, H or HD, is not
    reliable: Open Babel types every kept hydrogen HD)."""
    hydrogens = np.array([a.xyz for a in atoms if a.element == "H"]).reshape(-1, 3)
    carbons = np.array([a.xyz for a in atoms if a.element == "C"]).reshape(-1, 3)
    if not len(hydrogens) or not len(carbons):
        return False
    distances = np.linalg.norm(hydrogens[:, None] - carbons[None], axis=-1)
    return bool((distances.min(axis=1) < _C_H_BOND).any())


def _perceived(atoms: list[PdbqtAtom], source: str) -> Chem.Mol:
    """Connectivity and bond orders by ``rdDetermineBonds`` from the complete structure, for each
    net charge of ``_NET_CHARGES``; of the valid structures, the one with the fewest charged atoms,
    then the most bonds (xyz2mol's rule: a nitro group is N(+)(=O)O(-), not N(O-)O-), then the
    net charge nearest the sum of the partial charges; structures with an implausible charge
    (``_PLAUSIBLE_CHARGES``) are discarded. (A valid structure exists for several net
    charges: an ammonium with every hydrogen also fits charge 0 as a zwitterion with a carbanion;
    Open Babel writes zero partial charges where the input had none.)"""
    summed = float(np.sum([atom.charge for atom in atoms]))
    unbonded = Chem.RWMol()
    conformer = Chem.Conformer(len(atoms))
    for index, atom in enumerate(atoms):
        rd_atom = Chem.Atom(atom.element)
        rd_atom.SetIntProp(FILE_INDEX, index)
        unbonded.AddAtom(rd_atom)
        conformer.SetAtomPosition(index, Point3D(*atom.xyz))
    unbonded.AddConformer(conformer, assignId=True)
    candidates, reasons = [], []
    for charge in _NET_CHARGES:
        mol = Chem.RWMol(unbonded)
        try:
            rdDetermineBonds.DetermineBonds(mol, charge=charge)
        except (ValueError, RuntimeError) as error:
            reasons.append(f"net charge {charge}: {error}")
            continue
        implausible = sorted({f"{a.GetSymbol()}{a.GetFormalCharge():+d}" for a in mol.GetAtoms()
                              if (a.GetSymbol(), a.GetFormalCharge()) not in _PLAUSIBLE_CHARGES
                              and a.GetFormalCharge()})
        if implausible:
            reasons.append(f"net charge {charge}: charged {', '.join(implausible)}")
            continue
        charged = sum(a.GetFormalCharge() != 0 for a in mol.GetAtoms())
        bond_order = sum(b.GetBondTypeAsDouble() for b in mol.GetBonds())
        candidates.append((charged, -bond_order, abs(charge - summed), len(candidates),
                           mol.GetMol()))
    if not candidates:
        raise FeaturizationError(
            f"{source}: RDKit's bond perception found no plausible structure ({'; '.join(reasons)})"
            ": give the ligand as SDF/mol2 or as a pdbqt written by Meeko")
    return min(candidates)[-1]
