"""The protein: PDB parsing (Biopython), the water / ion / hetero rule, pocket cutting, edges.

Rules, applied in this order to every protein or pocket file:
1. Only the first model; of alternate locations only the first (altloc A before B).
2. Hydrogens are dropped: the graphs are heavy-atom graphs on both sides.
3. Waters (HOH, WAT, ...) are dropped unless ``featurize.keep_waters``.
4. Standard amino acids, their protonation-state names (HID, CYX, ...) and MSE are residues.
5. Other HETATM groups are kept unless ``featurize.keep_hetero`` is false: a single metal or
   halide atom is an ``ion``, anything else (cofactor, modified residue) is ``hetero``. A hetero
   group with an atom within 1 Å of a ligand atom is a copy of the ligand and is dropped.
6. A full protein is cut to the residues with an atom within ``featurize.pocket_cutoff`` of the
   ligand; a file named ``*_pocket.pdb`` is a pocket already and is used as given.

PDB and mmCIF files (``.cif``, what the PDB serves by default), each optionally gzipped, give the
same atoms: Biopython's two parsers build the same structure, and the rules read only that. An
AutoDock receptor ``.pdbqt`` is read as PDB with the elements of its atom types
(:mod:`plgraph.featurize.pdbqt`).

A PDB file keeps every atom of its first model, or is refused: Biopython (PERMISSIVE) drops an
atom whose residue is defined twice with a warning only. PDBbind's pockets of homodimers (HIV
protease: 2p3a, 2pv2, 1hte) give both chains a blank chain ID, without TER, numbering restarting
in the second: Biopython merged the second chain into the first and dropped every atom whose name
was taken (2p3a kept 248 of 471 heavy atoms). So a residue that recurs after other residues is
the start of a new chain (:func:`split_repeated_residues`), and a heavy atom that Biopython still
drops is a :class:`FeaturizationError` naming the record.
"""

from __future__ import annotations

import io
import re
import string
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from Bio.PDB import MMCIFParser, PDBParser
from Bio.PDB.PDBExceptions import PDBConstructionWarning
from scipy.spatial import cKDTree

from plgraph import vocab
from plgraph.config import FeaturizeConfig
from plgraph.errors import FeaturizationError
from plgraph.featurize.pdbqt import pdbqt_to_pdb
from plgraph.runtime.files import plain_suffix, read_text

LIGAND_COPY_DISTANCE = 1.0  # Å; closer than any real contact, so such a hetero group IS the ligand
_ROLE_HETERO, _ROLE_BACKBONE, _ROLE_SIDE_CHAIN = range(3)
MMCIF_SUFFIXES = (".cif", ".mmcif")
# Chain IDs for the chains that split_repeated_residues makes, in this order, skipping the file's.
_SPARE_CHAIN_IDS = string.ascii_uppercase + string.ascii_lowercase + string.digits


def is_pocket_file(path: Path | str) -> bool:
    """The one rule deciding whether a protein file is used as given or cut around the ligand:
    ``*_pocket.pdb`` (or ``.pdbqt``, ``.cif``, each optionally ``.gz``)."""
    name = Path(path).name.lower().removesuffix(".gz")
    return any(name.endswith(f"_pocket{suffix}")
               for suffix in (".pdb", ".pdbqt", *MMCIF_SUFFIXES))


@dataclass(frozen=True)
class ProteinAtoms:
    """Heavy atoms of a protein or pocket as parallel arrays (one row per atom)."""

    source: str
    pos: np.ndarray  # [N, 3] float64, Å
    features: np.ndarray  # [N, 4] int64, columns as vocab.PROTEIN_ATOM_FEATURES
    covalent_radius: np.ndarray  # [N] float64, Å
    residue_index: np.ndarray  # [N] int64, one value per residue
    is_hetero_group: np.ndarray  # [N] bool: atoms of ion / hetero groups

    def __len__(self) -> int:
        return len(self.pos)

    def select(self, mask: np.ndarray) -> ProteinAtoms:
        return ProteinAtoms(self.source, self.pos[mask], self.features[mask],
                            self.covalent_radius[mask], self.residue_index[mask],
                            self.is_hetero_group[mask])


def load_protein(path: Path | str, config: FeaturizeConfig) -> ProteinAtoms:
    """Parse a PDB or mmCIF file (optionally gzipped) into heavy atoms under the module's rules.

    Raises:
        FeaturizationError: the file is missing, a directory, not UTF-8, unparsable, truncated,
            or has no heavy atom (each its own reason).
    """
    path = Path(path)
    if path.is_dir():
        raise FeaturizationError(f"{path}: the protein is a directory; give its PDB or mmCIF file")
    text = read_text(path)
    if not text.strip():
        raise FeaturizationError(f"{path}: protein file is empty")
    mmcif = plain_suffix(path) in MMCIF_SUFFIXES
    if plain_suffix(path) == ".pdbqt":
        text = pdbqt_to_pdb(text, str(path))
    if not mmcif:
        _check_coordinate_columns(path, text)
        text = split_repeated_residues(text, str(path))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PDBConstructionWarning)
            parser = MMCIFParser(QUIET=True) if mmcif else PDBParser(QUIET=False)
            structure = parser.get_structure(path.stem, io.StringIO(text))
    except Exception as error:  # Biopython raises ValueError, PDBConstructionException, ...
        kind = "mmCIF" if mmcif else "PDB"
        raise FeaturizationError(f"{path}: unparsable {kind}: {error}") from None
    if not mmcif:
        _check_nothing_dropped(path, text, caught)
    rows = list(_heavy_atom_rows(structure, config))
    if not rows:
        raise FeaturizationError(f"{path}: {_why_no_atoms(structure, config)}")
    pos, features, radius, residue, hetero = zip(*rows, strict=True)
    pos = np.asarray(pos, dtype=np.float64)
    if not np.isfinite(pos).all():
        raise FeaturizationError(f"{path}: protein has NaN or infinite coordinates")
    return ProteinAtoms(str(path), pos, np.asarray(features, dtype=np.int64),
                        np.asarray(radius), np.asarray(residue, dtype=np.int64),
                        np.asarray(hetero, dtype=bool))


def _check_coordinate_columns(path: Path, text: str) -> None:
    """A file cut inside the z column would still parse, with a wrong last coordinate; one cut
    after it would parse with the rest of the protein missing. A last record without a line end
    that is shorter than the record before it is where the file was cut (some writers end a
    complete file without a line end: Uni-FEP's proteins, whose last record is full length)."""
    lines = text.splitlines()
    records = [(number, line.rstrip()) for number, line in enumerate(lines, start=1)
               if line.startswith(("ATOM  ", "HETATM"))]
    for number, line in records:
        if len(line) < 54:
            raise FeaturizationError(f"{path}: line {number}: ATOM/HETATM record ends before its "
                                     "coordinates do (columns 31-54): truncated file?")
    cut = (len(records) >= 2 and records[-1][0] == len(lines) and not text.endswith("\n")
           and len(records[-1][1]) < len(records[-2][1]))
    if cut:
        raise FeaturizationError(f"{path}: line {len(lines)}: the file ends inside an "
                                 "ATOM/HETATM record (shorter than the one before, no line end): "
                                 "truncated file?")


def split_repeated_residues(text: str, source: str) -> str:
    """PDB text in which no residue is defined twice in one chain: a residue that recurs after
    other residues of its chain starts a new chain, with a chain ID the file does not use.

    Biopython keys a residue by (chain, HETATM flag, resSeq, iCode) and treats a recurring key as
    the same residue (a point mutation), dropping each atom whose name the first copy already has.
    Files with two chains under one blank chain ID and restarted numbering (PDBbind's pockets of
    homodimers) lost half their atoms that way. What stays as it was: consecutive records of one
    residue (altlocs, also of a point mutation with two residue names), insertion codes (part of
    the key), and a recurring residue whose records all carry an altloc (the alternates of a
    residue listed apart from it: Biopython merges them into it, as before). A file without a
    recurring residue is returned unchanged.

    Raises:
        FeaturizationError: more new chains are needed than there are spare chain IDs.
    """
    lines = text.splitlines(keepends=True)
    runs = _residue_runs(lines)
    used = {line[21] for line in lines if line.startswith(("ATOM  ", "HETATM"))}
    spare = iter(c for c in _SPARE_CHAIN_IDS if c not in used)
    chain_of, seen, previous = {}, set(), None
    for run in runs:
        first = lines[run[0]]
        if first.startswith("MODEL"):  # Biopython starts every model afresh
            chain_of, seen, previous = {}, set(), None
            continue
        key = _residue_key(first)
        chain = chain_of.setdefault(first[21], first[21])
        alternates_only = all(lines[i][16] != " " for i in run)
        if (chain, key) in seen and (first[21], key) != previous and not alternates_only:
            chain = chain_of[first[21]] = next(spare, None)
            if chain is None:
                raise FeaturizationError(f"{source}: more chains restart their residue numbering "
                                         "than there are spare chain IDs")
        seen.add((chain, key))
        previous = (first[21], key)
        if chain != first[21]:
            for i in run:
                lines[i] = lines[i][:21] + chain + lines[i][22:]
    return "".join(lines)


def _residue_runs(lines: list[str]) -> list[list[int]]:
    """Line numbers (0-based) of each run of consecutive ATOM/HETATM records of one residue and
    chain, with each MODEL record a run of its own (other lines belong to no run)."""
    runs, current = [], None
    for number, line in enumerate(lines):
        if line.startswith("MODEL "):
            runs.append([number])
            current = None
        elif line.startswith(("ATOM  ", "HETATM")):
            identity = (line[21], _residue_key(line), line[17:20].strip())
            if identity != current:
                runs.append([])
                current = identity
            runs[-1].append(number)
    return runs


def _residue_key(line: str) -> tuple:
    """Biopython's residue id of an ATOM/HETATM record: (flag, resSeq, iCode), the flag ``W``
    for a water, ``H_<name>`` for another HETATM, blank for ATOM."""
    name = line[17:20].strip()
    flag = " "
    if line.startswith("HETATM"):
        flag = "W" if name in ("HOH", "WAT") else f"H_{name}"
    try:
        number = int(line[22:26])
    except ValueError:  # Biopython refuses the file; the key only has to be something
        number = line[22:26]
    return flag, number, line[26]


_DROPPED = re.compile(r"^PDBConstructionException: (.*) at line (\d+)\.", re.DOTALL)


def _check_nothing_dropped(path: Path, text: str, caught) -> None:
    """Refuse a file of which Biopython dropped a heavy atom (it only warns). A dropped hydrogen
    is harmless: the graphs drop hydrogens anyway (some FEP+ proteins name two hydrogens of a
    residue alike). A missing occupancy or B-factor is reported the same way and harmless too."""
    lines = text.splitlines()
    for warning in caught:
        found = _DROPPED.match(str(warning.message))
        if not found or "occupancy" in found[1] or "B factor" in found[1]:
            continue
        record = lines[int(found[2]) - 1] if int(found[2]) <= len(lines) else ""
        if record_element(record) in ("H", "D"):
            continue
        raise FeaturizationError(f"{path}: line {found[2]}: Biopython would drop this atom "
                                 f"({found[1]}): {record.strip()!r}; a residue may be defined "
                                 "once per chain (give each copy its own chain ID or number)")


def record_element(line: str) -> str:
    """The element of an ATOM/HETATM record: columns 77-78, else the atom name's first letter."""
    return (line[76:78].strip() or line[12:16].strip().lstrip("0123456789")[:1]).upper()


def _why_no_atoms(structure, config: FeaturizeConfig) -> str:
    """Why the rules left no atom: the reason for the file's actual content."""
    residues = [residue for model in list(structure)[:1] for residue in model.get_residues()]
    if not residues:
        return "no ATOM/HETATM records (empty or truncated file?)"
    waters = sum(r.id[0] == "W" or r.get_resname().strip().upper() in vocab.WATER_NAMES
                 for r in residues)
    if waters == len(residues):
        return (f"only waters ({waters} residues), and waters are dropped (featurize.keep_waters"
                "=false): not a protein file")
    return ("no protein heavy atom under the rules (hydrogens only, or only hetero groups with "
            "featurize.keep_hetero=false)")


def _heavy_atom_rows(structure, config: FeaturizeConfig):
    models = list(structure)
    if not models:
        return
    for residue_number, residue in enumerate(_first_of_each(models[0].get_residues())):
        hetflag = residue.id[0]
        name = residue.get_resname().strip().upper()
        if hetflag == "W" or name in vocab.WATER_NAMES:
            if not config.keep_waters:
                continue
            residue_type, hetero = vocab.RESIDUE_INDEX["water"], False
        else:
            residue_type, hetero = _residue_type(residue, hetflag, name)
            if hetero and not config.keep_hetero:
                continue
        for atom in _first_of_each(residue.get_atoms()):
            symbol = (atom.element or "").strip().upper()
            if symbol in ("H", "D"):
                continue
            atom_name = atom.get_name().strip().upper()
            if hetero or residue_type == vocab.RESIDUE_INDEX["water"]:
                role, name_index = _ROLE_HETERO, 0
            else:
                role = _ROLE_BACKBONE if atom_name in vocab.BACKBONE_NAMES else _ROLE_SIDE_CHAIN
                name_index = vocab.PROTEIN_ATOM_NAME_INDEX.get(atom_name, 0)
            features = (vocab.element_index(symbol), residue_type, role, name_index)
            radius = vocab.COVALENT_RADIUS.get(symbol, vocab.DEFAULT_COVALENT_RADIUS)
            yield atom.get_coord(), features, radius, residue_number, hetero


def _first_of_each(entities):
    """Resolve Biopython's disordered atoms / residues to their first alternative."""
    for entity in entities:
        if entity.is_disordered() == 2:  # a Disordered* wrapper holding the alternatives
            entity = entity.child_dict[entity.disordered_get_id_list()[0]]
        yield entity


def _residue_type(residue, hetflag: str, name: str) -> tuple[int, bool]:
    amino_acid = vocab.RESIDUE_ALIASES.get(name, name)
    if amino_acid in vocab.AMINO_ACIDS:
        return vocab.RESIDUE_INDEX[amino_acid], False
    if not hetflag.startswith("H_"):
        return vocab.RESIDUE_INDEX["other"], False  # an ATOM record of a non-standard residue
    heavy = [a for a in residue.get_atoms() if (a.element or "").upper() not in ("H", "D")]
    if len(heavy) == 1 and heavy[0].element.upper() in vocab.METALS | vocab.HALIDE_IONS:
        return vocab.RESIDUE_INDEX["ion"], True
    return vocab.RESIDUE_INDEX["hetero"], True


def cut_around_ligand(protein: ProteinAtoms, ligand_pos: np.ndarray, cut_pocket: bool,
                      config: FeaturizeConfig) -> ProteinAtoms:
    """Drop hetero groups that are a copy of the ligand; cut a full protein to the pocket."""
    nearest, _ = cKDTree(ligand_pos).query(protein.pos, distance_upper_bound=config.pocket_cutoff)
    copy_residues = np.unique(protein.residue_index[protein.is_hetero_group
                                                    & (nearest < LIGAND_COPY_DISTANCE)])
    keep = ~np.isin(protein.residue_index, copy_residues)
    if cut_pocket:
        near_residues = np.unique(protein.residue_index[nearest <= config.pocket_cutoff])
        keep &= np.isin(protein.residue_index, near_residues)
    return protein.select(keep)


def protein_edges(protein: ProteinAtoms, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Atom pairs within ``cutoff`` Å in both directions, sorted, with a covalent-bond flag.

    A pair is covalent when closer than the sum of covalent radii plus the usual 0.45 Å slack.
    """
    pairs = cKDTree(protein.pos).query_pairs(cutoff, output_type="ndarray")
    pairs = np.concatenate([pairs, pairs[:, ::-1]]).astype(np.int64)
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    src, dst = pairs[:, 0], pairs[:, 1]
    dist = np.linalg.norm(protein.pos[src] - protein.pos[dst], axis=1)
    bonded = dist < (protein.covalent_radius[src] + protein.covalent_radius[dst]
                     + vocab.COVALENT_TOLERANCE)
    return np.ascontiguousarray(pairs.T), bonded.astype(np.int64)[:, None]
