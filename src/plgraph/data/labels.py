"""Label and id files: PDBbind INDEX files, ``id,pK`` CSVs, id lists. Errors name file:line."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from plgraph.data.records import (
    KCAL_PER_PK,
    ComplexRecord,
    Failure,
    ReadResult,
    implausible_label,
)
from plgraph.errors import InputError
from plgraph.runtime.files import read_text

ID_COLUMNS = ("id", "pdbid", "pdb_id", "pdb", "complex_id", "name")
LABEL_COLUMNS = ("pk", "label", "-logkd/ki", "affinity", "y")


@dataclass(frozen=True)
class Label:
    value: float
    where: str  # "file:line", for messages
    group: str = ""


def read_labels(path: Path | str) -> tuple[dict[str, Label], list[Failure]]:
    """Read pK labels from a CSV (``.csv``: header, id column, pK column, optional ``group``) or a
    PDBbind INDEX file (``1a61  2.20  1998   7.12  Ki=76nM  // ...``: pK is the 4th field).

    A line with a missing or non-numeric label, or an id given twice, becomes a Failure naming
    file:line; the other lines are used.

    Raises:
        InputError: the file is missing, not UTF-8, or has no usable structure at all.
    """
    path = Path(path)
    text = read_text(path, InputError)
    rows = _csv_rows(path, text) if path.suffix.lower() == ".csv" else _index_rows(path, text)
    labels: dict[str, Label] = {}
    failures = []
    for line, complex_id, raw_value, group in rows:
        where = f"{path}:{line}"
        if complex_id in labels:
            failures.append(Failure(complex_id, f"{where}: duplicate id (first at "
                                                f"{labels[complex_id].where})"))
            continue
        value = parse_label(raw_value)
        if value is None:
            failures.append(Failure(complex_id, f"{where}: label {raw_value!r} is missing or "
                                                "not a finite number"))
            continue
        if implausible_label(value):
            failures.append(Failure(complex_id, f"{where}: {implausible_label(value)}"))
            continue
        labels[complex_id] = Label(value, where, group)
    duplicates = {f.id for f in failures if "duplicate id" in f.reason}
    for complex_id in duplicates & labels.keys():  # ambiguous: use neither copy
        first = labels.pop(complex_id)
        failures.append(Failure(complex_id, f"{first.where}: id given more than once"))
    return labels, failures


def parse_label(raw: str | None) -> float | None:
    """The finite number ``raw`` holds, or None (missing, non-numeric, NaN or infinite)."""
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    if value is None:
        return None
    return value if math.isfinite(value) else None


def _index_rows(path: Path, text: str):
    rows = []
    for line, content in enumerate(text.splitlines(), start=1):
        content = content.split("//")[0].strip()
        if not content or content.startswith("#"):
            continue
        fields = content.split()
        if len(fields) < 4:
            raise InputError(f"{path}:{line}: expected a PDBbind INDEX line 'PDBID resolution "
                             f"year pK ...', got {content!r}")
        rows.append((line, fields[0].lower(), fields[3], ""))
    if not rows:
        raise InputError(f"{path}: no label lines found (a PDBbind INDEX file, or a .csv)")
    return rows


def _csv_rows(path: Path, text: str):
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or len(header) < 2:
        raise InputError(f"{path}:1: expected a header with an id and a pK column, got {header}")
    names = [h.strip().lower() for h in header]
    id_col = next((names.index(n) for n in ID_COLUMNS if n in names), 0)
    label_col = next((names.index(n) for n in LABEL_COLUMNS if n in names), 1)
    group_col = names.index("group") if "group" in names else None
    rows = []
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(id_col, label_col):
            raise InputError(f"{path}:{line}: expected {len(header)} columns, got {len(row)}")
        group = row[group_col].strip() if group_col is not None and group_col < len(row) else ""
        rows.append((line, row[id_col].strip(), row[label_col].strip(), group))
    return rows


def read_id_list(path: Path | str) -> list[tuple[str, str]]:
    """Ids, one per line (``#`` comments and blank lines ignored), each with its ``file:line``.

    A CASF ``CoreSet.dat`` works as is: the first field of each line is taken.
    """
    path = Path(path)
    ids = []
    for line, content in enumerate(read_text(path, InputError).splitlines(), start=1):
        content = content.split("#")[0].strip()
        if content and content.split()[0].lower() not in ("code", "pdbid", "id"):
            ids.append((content.split()[0], f"{path}:{line}"))
    if not ids:
        raise InputError(f"{path}: no ids found (one id per line expected)")
    return ids


def plausible(record: ComplexRecord) -> ComplexRecord | Failure:
    """The record, or its failure when its label cannot be a measured pK."""
    problem = implausible_label(record.label)
    if problem is None:
        return record
    return Failure(record.id, f"{record.ligand_source or record.id}: {problem}",
                   record.ligand_name, record.ligand_index)


def drop_implausible(result: ReadResult) -> None:
    """Move the records whose label cannot be a measured pK (:func:`plausible`) to failures."""
    checked = [plausible(record) for record in result.records]
    result.failures += [item for item in checked if isinstance(item, Failure)]
    result.records = [item for item in checked if isinstance(item, ComplexRecord)]


def exclude_relative_series(result: ReadResult, sdf: Path) -> None:
    pks = [r.label for r in result.records]
    if pks and min(pks) < 0:  # pK < 0 <=> ΔG > 0
        dgs = [-pk * KCAL_PER_PK for pk in pks]
        reason = (f"{sdf}: ΔG values span {min(dgs):.1f} to {max(dgs):+.1f} kcal/mol; a positive "
                  "ΔG is no absolute binding free energy, so the series carries relative values "
                  "and is excluded")
        result.failures += [Failure(r.id, reason) for r in result.records]
        result.records.clear()
