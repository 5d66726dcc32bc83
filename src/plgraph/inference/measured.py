"""The measured ligands of a series (``predict.py measured=FILE``): read, checked, matched.

A CSV names each ligand by ``id`` (or ``name``: the library's ligand name or row id) or by
``smiles``, and gives its value as ``pK``, or as ``value`` and ``unit`` (``pK``, ``kcal/mol``
for a ΔG, or a concentration ``M``, ``mM``, ``uM``, ``nM``, ``pM`` for a Kd / Ki / IC50). An
SDF gives each ligand's pose and its value in the property ``measured_property`` (pK, or a ΔG
in kcal/mol with ``measured_kind=dg_kcal_mol``), as the data layer reads labels.

Every rule broken stops the run before any prediction, naming file, line and rule (exit 2):
unknown or missing columns, a value that is not a number, a unit not listed, a pK outside
-2..16. The same ligand measured twice is averaged in pK (replicates, the usual practice) and
the log says so.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from rdkit import Chem, RDLogger

from plgraph.data.labels import parse_label
from plgraph.data.records import dg_to_pk
from plgraph.errors import InputError
from plgraph.runtime.files import plain_suffix, read_text

log = logging.getLogger(__name__)

PK_RANGE = (-2.0, 16.0)
# pK = -log10(concentration in M); a concentration in unit u is value * UNITS[u] M.
CONCENTRATION_UNITS = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "nm": 1e-9, "pm": 1e-12}
ID_COLUMNS = ("id", "name")
KNOWN_COLUMNS = {"id", "name", "smiles", "pk", "value", "unit"}


@dataclass(frozen=True)
class Measured:
    """One measured ligand.

    Args:
        name: its id or name as the file gives it ("" where only a SMILES is given).
        pk: the measured pK (the mean of its replicates).
        where: ``file:line`` (or ``file: record N``), for messages.
        smiles: its structure as SMILES, where given.
        mol: its structure (with the pose, from an SDF), where given.
        replicates: how many measurements were averaged.
    """

    name: str
    pk: float
    where: str
    smiles: str = ""
    mol: Chem.Mol | None = None
    replicates: int = 1

    @functools.cached_property
    def structure_key(self) -> str | None:
        """The InChIKey without its protonation flag: the same ligand in another charge state
        or drawing matches. None where there is no structure."""
        mol = self.mol
        if mol is None and self.smiles:
            mol = Chem.MolFromSmiles(self.smiles)
        return structure_key(mol) if mol is not None else None


def structure_key(mol: Chem.Mol) -> str | None:
    """``mol``'s standard InChIKey up to its protonation flag (``XXXX-YYYY``), or None."""
    RDLogger.DisableLog("rdApp.*")  # InChI warnings on unusual valences are not ours to print
    try:
        key = Chem.MolToInchiKey(mol)
    finally:
        RDLogger.EnableLog("rdApp.*")
    return key[:25] if key else None


def read_measured(path: Path, sdf_property: str | None = None,
                  sdf_kind: str = "pk") -> list[Measured]:
    """The measured ligands of ``path`` (CSV or SDF), replicates averaged.

    Raises:
        InputError: the file is missing or breaks a rule (module doc), naming file:line.
    """
    if not path.exists():
        raise InputError(f"measured={path}: not found")
    suffix = plain_suffix(path)
    if suffix == ".csv":
        found = _read_csv(path)
    elif suffix == ".sdf":
        found = _read_sdf(path, sdf_property, sdf_kind)
    else:
        raise InputError(f"measured={path}: give a .csv (id or smiles, and pK or value + unit) "
                         "or an .sdf with measured_property=")
    return _average_replicates(found)


def _check_pk(value: float, where: str) -> float:
    if not PK_RANGE[0] <= value <= PK_RANGE[1]:
        raise InputError(f"{where}: pK {value:.2f} is outside {PK_RANGE[0]:g}..{PK_RANGE[1]:g} "
                         "(a unit or sign mistake?)")
    return value


def _number(raw: str, column: str, where: str) -> float:
    value = parse_label(raw.strip())
    if value is None:
        raise InputError(f"{where}: {column} {raw.strip()!r} is not a finite number")
    return value


def _to_pk(value: float, unit: str, where: str) -> float:
    unit = unit.strip().lower().replace("μ", "µ")
    if unit == "pk":
        return value
    if unit in ("kcal/mol", "kcal mol-1"):
        return dg_to_pk(value)
    if unit in CONCENTRATION_UNITS:
        if value <= 0:
            raise InputError(f"{where}: a concentration must be > 0 (got {value:g} {unit})")
        return -math.log10(value * CONCENTRATION_UNITS[unit])
    raise InputError(f"{where}: unit {unit!r} is not one of pK, kcal/mol, "
                     + ", ".join(u for u in CONCENTRATION_UNITS if u != "µm"))


def _read_csv(path: Path) -> list[Measured]:
    reader = csv.reader(io.StringIO(read_text(path, InputError).lstrip("\ufeff")))
    header = [h.strip() for h in next(reader, [])]
    names = [h.lower() for h in header]
    unknown = [h for h, n in zip(header, names, strict=True) if n not in KNOWN_COLUMNS]
    if unknown or not header:
        raise InputError(f"{path}:1: unknown column(s) {unknown or header}; the columns are "
                         "id or name or smiles, and pK or value + unit")
    key = next((n for n in (*ID_COLUMNS, "smiles") if n in names), None)
    if key is None:
        raise InputError(f"{path}:1: no id, name or smiles column (header {header})")
    if "pk" not in names and not {"value", "unit"} <= set(names):
        raise InputError(f"{path}:1: no pK column, nor value and unit columns (header {header})")
    column = {n: names.index(n) for n in names}
    found = []
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}:{line}"
        if len(row) != len(header):
            raise InputError(f"{where}: expected {len(header)} fields, got {len(row)}")
        cell = {n: row[i].strip() for n, i in column.items()}
        name = next((cell[n] for n in ID_COLUMNS if cell.get(n)), "")
        if not name and not cell.get("smiles"):
            raise InputError(f"{where}: neither an id nor a SMILES")
        if "pk" in cell:
            pk = _number(cell["pk"], "pK", where)
        else:
            pk = _to_pk(_number(cell["value"], "value", where), cell["unit"], where)
        found.append(Measured(name, _check_pk(pk, where), where, cell.get("smiles", "")))
    return found


def _read_sdf(path: Path, prop: str | None, kind: str) -> list[Measured]:
    if not prop:
        raise InputError(f"measured={path} is an SDF: name the property that holds the value "
                         "with measured_property= (pK, or a ΔG with measured_kind=dg_kcal_mol)")
    found = []
    supplier = Chem.SDMolSupplier(str(path), removeHs=False)
    for index, mol in enumerate(supplier):
        where = f"{path}: record {index + 1}"
        if mol is None:
            raise InputError(f"{where}: RDKit cannot read this molecule")
        if not mol.HasProp(prop):
            raise InputError(f"{where}: no property {prop!r} (measured_property=)")
        value = _number(mol.GetProp(prop), prop, where)
        pk = dg_to_pk(value) if kind == "dg_kcal_mol" else value
        name = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
        found.append(Measured(name, _check_pk(pk, where), where, mol=mol))
    if not found:
        raise InputError(f"measured={path}: no molecule in it")
    return found


def _average_replicates(found: list[Measured]) -> list[Measured]:
    """One entry per ligand (the same name, else the same structure), pK averaged."""
    groups: dict[str, list[Measured]] = defaultdict(list)
    for entry in found:
        groups[entry.name or f"structure:{entry.structure_key or entry.smiles}"].append(entry)
    result = []
    for entries in groups.values():
        if len(entries) == 1:
            result.append(entries[0])
            continue
        values = [e.pk for e in entries]
        mean = sum(values) / len(values)
        log.warning("%s measured %d times (%s): pK %s averaged to %.2f", entries[0].name
                    or entries[0].smiles, len(entries), ", ".join(e.where for e in entries),
                    ", ".join(f"{v:.2f}" for v in values), mean)
        first = entries[0]
        result.append(Measured(first.name, mean, first.where, first.smiles, first.mol,
                               len(entries)))
    return result
