"""Multi-ligand files read record by record: SDF, mol2 and pdbqt poses (gzipped or not) and
SMILES libraries.

A screening library can hold millions of ligands: each reader yields one record (or the failure
that takes its place) at a time, in file order, so prediction streams it in chunks, and one bad
record (a byte that is not UTF-8, a broken atom block) costs that record alone.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from plgraph.data.labels import (
    drop_implausible,
    exclude_relative_series,
    parse_label,
    plausible,
)
from plgraph.data.records import ComplexRecord, Failure, ReadResult, dg_to_pk
from plgraph.errors import FeaturizationError, InputError
from plgraph.featurize.pdbqt import pdbqt_ligand_name, pdbqt_models
from plgraph.runtime.files import iter_lines, plain_stem, plain_suffix, read_text

log = logging.getLogger(__name__)
_SDF_PROPERTY = re.compile(r"^>\s*<([^>]+)>")
_PROPERTIES_LISTED = 20  # property names a warning lists


def read_sdf_records(sdf: Path, protein: Path, system: str, label_property: str | None,
                     label_kind: str, require_labels: bool) -> ReadResult:
    """Split a multi-ligand SDF into records ``<system>/<ligand name>`` sharing one protein.

    With labels required, a record without a finite ``label_property`` is a failure, and a
    ``dg_kcal_mol`` series with any positive ΔG is excluded whole: binding free energies are
    negative, so positive values mean the series carries relative ΔG (e.g. FEP+ ``cr_bace``).
    A label outside the plausible pK range fails its record.
    """
    result = ReadResult()
    for item in iter_sdf_records(sdf, protein, system, label_property, label_kind,
                                 require_labels, check_labels=False):
        (result.failures if isinstance(item, Failure) else result.records).append(item)
    if require_labels and label_kind == "dg_kcal_mol":
        exclude_relative_series(result, sdf)
    drop_implausible(result)
    return result


def iter_sdf_records(sdf: Path, protein: Path, system: str, label_property: str | None,
                     label_kind: str, require_labels: bool = False, check_labels: bool = True,
                     ) -> Iterator[ComplexRecord | Failure]:
    """The records of a multi-ligand SDF (gzipped or not) one at a time, in file order, each a
    record or the failure that takes its place: a library of any size streams.

    Records are split on the raw bytes before anything is decoded, and each is decoded alone: a
    byte that is not UTF-8 in a property the app does not read costs nothing, one in the atom
    block fails that record only. A ``label_property`` that no record has is warned about with
    the properties the records do have (a misspelling would otherwise give no measured values).
    """
    _check_protein_file(protein, sdf)
    seen: set[str] = set()
    labelled = count = 0
    for index, (raw, first_line) in enumerate(_sdf_blocks(sdf)):
        count += 1
        item = _sdf_record(raw, index, first_line, sdf, protein, system, label_property,
                           label_kind, require_labels)
        if isinstance(item, tuple):
            item, properties = item
            seen.update(list(properties)[:_PROPERTIES_LISTED])
            labelled += label_property in properties
            if check_labels and isinstance(item, ComplexRecord):
                item = plausible(item)
        yield item
    if label_property and count and not labelled:
        log.warning("%s: no record has the property %r (label_property=): no measured values; "
                    "the records have %s", sdf, label_property, sorted(seen)[:_PROPERTIES_LISTED])


def _check_protein_file(protein: Path, ligands: Path) -> None:
    if protein.is_dir():
        raise FeaturizationError(f"{ligands}: the protein {protein} is a directory; give its PDB "
                                 "or mmCIF file")
    if not protein.is_file():
        raise FeaturizationError(f"{ligands}: no protein file {protein.name} beside it")


def _sdf_record(raw: bytes, index: int, first_line: int, sdf: Path, protein: Path, system: str,
                label_property: str | None, label_kind: str, require_labels: bool):
    """One raw SDF record: (record or failure, its properties), or a failure alone when its
    molecule block cannot be decoded."""
    name = raw.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    complex_id = f"{system}/{name or f'record{index}'}"
    where = f"{sdf}: record {index} ({name or 'no name'}, from line {first_line})"
    try:
        block = _decode_sdf_record(raw)
    except UnicodeDecodeError as error:
        line = first_line + raw.count(b"\n", 0, error.start)
        return Failure(complex_id, f"{where}: line {line}: byte 0x{raw[error.start]:02x} in the "
                                   "molecule block is not valid UTF-8", name, index)
    properties = _sdf_properties(block)
    raw_label = properties.get(label_property) if label_property else None
    label = parse_label(raw_label)
    if require_labels and label is None:
        problem = "no property" if raw_label is None else f"non-numeric {raw_label!r} in property"
        return Failure(complex_id, f"{where}: {problem} {label_property}", name,
                       index), properties
    if label is not None and label_kind == "dg_kcal_mol":
        label = dg_to_pk(label)
    return ComplexRecord(
        id=complex_id, protein=protein, ligand_block=block + "$$$$\n", ligand_name=name,
        ligand_index=index, ligand_source=f"{sdf}: record {index} ({name or 'no name'})",
        ligand_line=first_line, label=label, group=system), properties


def _decode_sdf_record(raw: bytes) -> str:
    """The record as text: the connection table (counts line to ``M  END``) strictly UTF-8; the
    three header lines (title, program, comment) and the data items with any bad byte replaced
    (U+FFFD), as none of them decides the molecule. A label read from a damaged item is then
    non-numeric and fails that record with the reason."""
    end = raw.find(b"M  END")
    head, tail = (raw, b"") if end < 0 else (raw[:end], raw[end:])
    lines = head.split(b"\n")
    header, table = b"\n".join(lines[:3]), b"\n".join(lines[3:])
    joint = "\n" if len(lines) > 3 else ""
    try:
        text = table.decode("utf-8")
    except UnicodeDecodeError as error:  # its offsets made the record's, for the line number
        offset = len(header) + len(joint)
        raise UnicodeDecodeError("utf-8", raw, offset + error.start, offset + error.end,
                                 error.reason) from None
    return header.decode("utf-8", "replace") + joint + text + tail.decode("utf-8", "replace")


def _sdf_blocks(sdf: Path) -> Iterator[tuple[bytes, int]]:
    """The raw records of a multi-molecule SDF, one at a time, with the file line each starts on
    (line ends kept as they are: a CRLF record is the same text as before streaming)."""
    lines: list[bytes] = []
    first_line = number = 1
    found = False
    for number, line in enumerate(iter_lines(sdf), start=1):  # noqa: B007 (used after the loop)
        if line.startswith(b"$$$$"):
            block = b"".join(lines)
            if block.strip():
                found = True
                yield block, first_line
            lines, first_line = [], number + 1
        else:
            lines.append(line)
    block = b"".join(lines)
    if block.strip():
        found = True
        yield block, first_line
    if not found:
        raise FeaturizationError(f"{sdf}: no SDF records (empty file)")


def _sdf_properties(block: str) -> dict[str, str]:
    properties, lines = {}, block.splitlines()
    for i, line in enumerate(lines[:-1]):
        match = _SDF_PROPERTY.match(line)
        if match:
            properties[match.group(1).strip()] = lines[i + 1].strip()
    return properties


def iter_smiles_library(library: Path, protein: Path, reference: Path, smiles_column: str,
                        name_column: str, label_column: str | None = None,
                        label_kind: str = "pk") -> Iterator[ComplexRecord | Failure]:
    """A SMILES library to pose onto ``reference`` in ``protein``: one record per line, in order,
    read one line at a time (gzipped or not), so a library of any size streams.

    ``.smi``: ``SMILES [name]`` per line (whitespace-separated; ``#`` lines and blank lines
    skipped). ``.csv``: a header with ``smiles_column`` and optionally ``name_column`` and
    ``label_column``. A line whose SMILES is bad becomes a record all the same: posing fails it
    with the reason, so every line gets its row; a line that is not UTF-8 fails alone.
    """
    _check_protein_file(protein, library)
    rows = (_library_csv_rows(library, smiles_column, name_column, label_column)
            if plain_suffix(library) == ".csv" else _library_smi_rows(library))
    index = -1
    for index, row in enumerate(rows):
        if isinstance(row, Failure):
            yield replace(row, ligand_index=index)
            continue
        line, smiles, name, raw_label = row
        name = name.strip() or f"line{line}"
        label = parse_label(raw_label)
        if label is not None and label_kind == "dg_kcal_mol":
            label = dg_to_pk(label)
        yield plausible(ComplexRecord(
            id=f"{plain_stem(library)}/{name}", protein=protein, smiles=smiles.strip(),
            reference_files=(reference,), ligand_name=name, ligand_index=index,
            ligand_source=f"{library}:{line}", ligand_line=line, label=label,
            group=plain_stem(library)))
    if index < 0:
        raise InputError(f"{library}: no SMILES found")


def _library_smi_rows(library: Path) -> Iterator[tuple[int, str, str, None] | Failure]:
    for line, raw in enumerate(iter_lines(library, InputError), start=1):
        try:
            content = raw.decode("utf-8").lstrip("\ufeff")
        except UnicodeDecodeError as error:
            yield Failure(f"{plain_stem(library)}/line{line}", f"{library}:{line}: byte "
                          f"0x{raw[error.start]:02x} is not valid UTF-8", f"line{line}")
            continue
        if content.strip() and not content.lstrip().startswith("#"):
            smiles, name = (content.split(None, 1) + [""])[:2]
            yield line, smiles, name, None


def _library_csv_rows(library: Path, smiles_column: str, name_column: str,
                      label_column: str | None) -> Iterator[tuple[int, str, str, str | None]]:
    # A bad byte becomes U+FFFD: in a SMILES, posing fails that line with the reason.
    lines = (raw.decode("utf-8", "replace") for raw in iter_lines(library, InputError))
    reader = csv.DictReader(line.lstrip("\ufeff") if number == 0 else line
                            for number, line in enumerate(lines))
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    if smiles_column not in header:
        raise InputError(f"{library}:1: no column {smiles_column!r} (the header read is "
                         f"{header}); set smiles_column=")
    for row in reader:
        yield (reader.line_num, row.get(smiles_column) or "", row.get(name_column) or "",
               row.get(label_column) if label_column else None)


def iter_ligand_records(ligands: Path, protein: Path, system: str, label_property: str | None,
                        label_kind: str) -> Iterator[ComplexRecord | Failure]:
    """The records of a multi-ligand file in the format its name says (``.sdf``, ``.mol``,
    ``.mol2``, ``.pdbqt``, each optionally ``.gz``), for prediction (labels optional)."""
    suffix = plain_suffix(ligands)
    if suffix in (".sdf", ".sd", ".mol"):
        return iter_sdf_records(ligands, protein, system, label_property, label_kind)
    if suffix == ".mol2":
        if label_property:
            log.warning("%s: mol2 records carry no properties: label_property=%s is not read",
                        ligands, label_property)
        return iter_mol2_records(ligands, protein, system)
    if suffix == ".pdbqt":
        if label_property:
            log.warning("%s: pdbqt poses carry no properties: label_property=%s is not read",
                        ligands, label_property)
        return iter_pdbqt_records(ligands, protein, system)
    raise InputError(f"ligands={ligands}: unknown ligand file type {suffix!r}; valid: .sdf, .mol, "
                     ".mol2, .pdbqt (each optionally .gz), or .smi / .csv with reference=")


def iter_pdbqt_records(pdbqt: Path, protein: Path, system: str
                       ) -> Iterator[ComplexRecord | Failure]:
    """Each ``MODEL`` of a pdbqt file (Vina's output: the poses of one ligand, best first) as a
    record named after the ligand, so that prediction scores every pose and aggregates them as
    one ligand; a file without ``MODEL`` is one pose. A file is one ligand, so it is read whole."""
    _check_protein_file(protein, pdbqt)
    try:
        text = read_text(pdbqt)
    except FeaturizationError as error:
        yield Failure(f"{system}/{plain_stem(pdbqt)}", str(error), plain_stem(pdbqt), 0)
        return
    name = pdbqt_ligand_name(text) or plain_stem(pdbqt)
    for index, (block, first_line) in enumerate(pdbqt_models(text)):
        yield ComplexRecord(id=f"{system}/{name}", protein=protein, ligand_block=block,
                            ligand_format="pdbqt", ligand_name=name, ligand_index=index,
                            ligand_source=f"{pdbqt}: pose {index + 1} (MODEL from line "
                                          f"{first_line})", ligand_line=first_line, group=system)


def iter_mol2_records(mol2: Path, protein: Path, system: str) -> Iterator[ComplexRecord | Failure]:
    """The molecules of a multi-molecule mol2 file one at a time, in file order, each decoded
    alone (a bad byte fails its molecule only)."""
    _check_protein_file(protein, mol2)
    index = -1
    for index, (raw, first_line) in enumerate(_mol2_blocks(mol2)):
        lines = raw.split(b"\n")
        name = (lines[1] if len(lines) > 1 else b"").decode("utf-8", "replace").strip()
        complex_id = f"{system}/{name or f'record{index}'}"
        source = f"{mol2}: record {index} ({name or 'no name'})"
        try:
            block = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            line = first_line + raw.count(b"\n", 0, error.start)
            yield Failure(complex_id, f"{source}, line {line}: byte 0x{raw[error.start]:02x} is "
                                      "not valid UTF-8", name, index)
            continue
        yield ComplexRecord(id=complex_id, protein=protein, ligand_block=block,
                            ligand_format="mol2", ligand_name=name, ligand_index=index,
                            ligand_source=source, ligand_line=first_line, group=system)
    if index < 0:
        raise FeaturizationError(f"{mol2}: no @<TRIPOS>MOLECULE record")


def _mol2_blocks(mol2: Path) -> Iterator[tuple[bytes, int]]:
    lines: list[bytes] = []
    first_line = 1
    for number, line in enumerate(iter_lines(mol2), start=1):
        if line.startswith(b"@<TRIPOS>MOLECULE") and lines:
            if any(part.startswith(b"@<TRIPOS>MOLECULE") for part in lines):
                yield b"".join(lines), first_line
            lines, first_line = [], number
        lines.append(line)
    if any(part.startswith(b"@<TRIPOS>MOLECULE") for part in lines):
        yield b"".join(lines), first_line
