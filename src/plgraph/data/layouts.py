"""Input readers, one per layout users actually have; each returns records and failures.

- ``pdbbind``: ``<root>/<id>/<id>_pocket.pdb`` (or ``_protein.pdb``, cut around the ligand) and
  ``<id>_ligand.sdf`` / ``.mol2``; labels from an INDEX file or CSV.
- ``series``: ``<root>/**/<system>_protein.pdb`` + ``<system>_ligands.sdf``, the label an SDF
  property of each record (``data.label_property``), grouped by system.
- ``manifest``: a CSV with ``id,protein,ligand`` and optional ``label,group``; paths relative to
  the CSV.
- ``reference``: ``<root>/<system>/`` with a protein PDB, one posed reference ligand and a CSV of
  ligands as SMILES (``data.reference.*``); each ligand is posed onto the reference when it is
  featurized. Grouped by system.

``data.sources`` reads several of these as one dataset (``plgraph.data.sources``).
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import replace
from pathlib import Path

from plgraph.config import DataConfig, FeaturizeConfig, ReferenceLayoutConfig, SourceConfig
from plgraph.data.labels import Label, read_labels
from plgraph.data.records import (
    KCAL_PER_PK,
    ComplexRecord,
    Failure,
    ReadResult,
    dg_to_pk,
    find_duplicates,
)
from plgraph.errors import FeaturizationError, InputError, read_text

LIGAND_SUFFIXES = {"sdf": ".sdf", "mol2": ".mol2"}
_SDF_PROPERTY = re.compile(r"^>\s*<([^>]+)>")


def read_inputs(data: DataConfig, featurize: FeaturizeConfig,
                require_labels: bool = True) -> ReadResult:
    """Read the dataset described by ``data``: its one source, or every one of ``data.sources``
    (ids prefixed with the source's name, cross-source duplicates dropped)."""
    if not data.sources:
        return read_source(data, featurize, require_labels)
    from plgraph.data.sources import combine_sources

    return combine_sources([(source.name, read_source(source, featurize, require_labels))
                            for source in data.sources], data.duplicate_identity)


def read_source(data: SourceConfig, featurize: FeaturizeConfig,
                require_labels: bool = True) -> ReadResult:
    """Read one dataset directory; the layout chooses the reader."""
    root = data.root_path
    if not root.is_dir():
        raise InputError(f"data.root={root} is not a directory")
    if data.layout == "pdbbind":
        return read_pdbbind(root, _pdbbind_labels(data), featurize)
    if data.layout == "series":
        return read_series(root, data.label_property, data.label_kind, require_labels)
    if data.layout == "reference":
        return read_reference(root, data.reference, data.label_kind, featurize, require_labels)
    return read_manifest(Path(data.labels), require_labels)


def _pdbbind_labels(data: SourceConfig) -> Path:
    labels = Path(data.labels) if data.labels else data.root_path / "labels.csv"
    if not labels.is_file():
        raise InputError(f"labels file {labels} not found; set data.labels=FILE (a PDBbind INDEX "
                         "file or an id,pK CSV)")
    return labels


def read_pdbbind(root: Path, labels_file: Path | None, featurize: FeaturizeConfig) -> ReadResult:
    """Complexes of a PDBbind-layout directory that have a label, plus failures for the rest.

    Without a labels file (prediction), every complex directory, unlabelled.
    """
    directories = {p.name for p in root.iterdir() if p.is_dir() and not _is_ours(p.name)}
    if labels_file is None:
        labels: dict[str, Label | None] = dict.fromkeys(directories)
        result = ReadResult()
    else:
        labels, failures = read_labels(labels_file)
        result = ReadResult(failures=failures)
        failed = {f.id for f in failures}
        for complex_id in sorted(directories - labels.keys() - failed):
            result.failures.append(Failure(complex_id, f"{root / complex_id}: no label in "
                                                       f"{labels_file}"))
    for complex_id, label in sorted(labels.items()):
        folder = root / complex_id
        protein = next((p for p in (folder / f"{complex_id}_pocket.pdb",
                                    folder / f"{complex_id}_protein.pdb") if p.is_file()), None)
        ligands = tuple(folder / f"{complex_id}_ligand{LIGAND_SUFFIXES[fmt]}"
                        for fmt in featurize.ligand_formats)
        if protein is None or not any(p.is_file() for p in ligands):
            missing = "protein/pocket PDB" if protein is None else "ligand file"
            where = f" (labelled at {label.where})" if label else ""
            result.failures.append(Failure(complex_id, f"{folder}: missing {missing}{where}"))
            continue
        result.records.append(ComplexRecord(
            id=complex_id, protein=protein,
            ligand_files=tuple(p for p in ligands if p.is_file()), ligand_name=complex_id,
            label=label.value if label else None, group=label.group if label else ""))
    return result


def _is_ours(name: str) -> bool:
    """Directories plgraph writes into a data root (the cache and its temporaries)."""
    return name == "processed" or name.startswith(("processed.", "."))


def read_series(root: Path, label_property: str, label_kind: str,
                require_labels: bool = True) -> ReadResult:
    """Every ``*_ligands.sdf`` under ``root`` with the ``*_protein.pdb`` beside it."""
    result = ReadResult()
    sdfs = sorted(p for p in root.rglob("*_ligands.sdf") if "processed" not in p.parts)
    if not sdfs:
        raise InputError(f"{root}: no <system>_ligands.sdf files found for data.layout=series")
    for sdf in sdfs:
        system = sdf.relative_to(root).as_posix().removesuffix("_ligands.sdf")
        protein = sdf.with_name(sdf.name.removesuffix("_ligands.sdf") + "_protein.pdb")
        try:
            records = read_sdf_records(sdf, protein, system, label_property, label_kind,
                                       require_labels)
        except FeaturizationError as error:
            # Every ligand of an unreadable series counts against the failure fraction.
            count = max(sdf.read_bytes().count(b"$$$$"), 1)
            result.failures += [Failure(f"{system}/record{i}", str(error)) for i in range(count)]
            continue
        result.records += records.records
        result.failures += records.failures
    return _drop_duplicates(result)


def read_sdf_records(sdf: Path, protein: Path, system: str, label_property: str | None,
                     label_kind: str, require_labels: bool) -> ReadResult:
    """Split a multi-ligand SDF into records ``<system>/<ligand name>`` sharing one protein.

    With labels required, a record without a finite ``label_property`` is a failure, and a
    ``dg_kcal_mol`` series with any positive ΔG is excluded whole: binding free energies are
    negative, so positive values mean the series carries relative ΔG (e.g. FEP+ ``cr_bace``).
    """
    if not protein.is_file():
        raise FeaturizationError(f"{sdf}: no protein file {protein.name} beside it")
    result = ReadResult()
    for index, (block, first_line) in enumerate(_sdf_blocks(sdf)):
        name = block.split("\n", 1)[0].strip()
        complex_id = f"{system}/{name or f'record{index}'}"
        where = f"{sdf}: record {index} ({name or 'no name'}, from line {first_line})"
        raw = _sdf_properties(block).get(label_property) if label_property else None
        label = _finite(raw)
        if require_labels and label is None:
            problem = "no property" if raw is None else f"non-numeric {raw!r} in property"
            result.failures.append(Failure(complex_id, f"{where}: {problem} {label_property}"))
            continue
        if label is not None and label_kind == "dg_kcal_mol":
            label = dg_to_pk(label)
        result.records.append(ComplexRecord(
            id=complex_id, protein=protein, ligand_block=block + "$$$$\n", ligand_name=name,
            ligand_index=index, ligand_source=f"{sdf}: record {index} ({name or 'no name'})",
            ligand_line=first_line, label=label, group=system))
    if require_labels and label_kind == "dg_kcal_mol":
        _exclude_relative_series(result, sdf)
    return result


def _sdf_blocks(sdf: Path) -> list[tuple[str, int]]:
    """The records of a multi-molecule SDF with the file line each starts on."""
    blocks, first_line = [], 1
    for block in re.split(r"^\$\$\$\$[^\n]*\n", read_text(sdf), flags=re.M):
        if block.strip():
            blocks.append((block, first_line))
        first_line += block.count("\n") + 1
    if not blocks:
        raise FeaturizationError(f"{sdf}: no SDF records (empty file)")
    return blocks


def _exclude_relative_series(result: ReadResult, sdf: Path) -> None:
    pks = [r.label for r in result.records]
    if pks and min(pks) < 0:  # pK < 0 <=> ΔG > 0
        dgs = [-pk * KCAL_PER_PK for pk in pks]
        reason = (f"{sdf}: ΔG values span {min(dgs):.1f} to {max(dgs):+.1f} kcal/mol; a positive "
                  "ΔG is no absolute binding free energy, so the series carries relative values "
                  "and is excluded")
        result.failures += [Failure(r.id, reason) for r in result.records]
        result.records.clear()


def _sdf_properties(block: str) -> dict[str, str]:
    properties, lines = {}, block.splitlines()
    for i, line in enumerate(lines[:-1]):
        match = _SDF_PROPERTY.match(line)
        if match:
            properties[match.group(1).strip()] = lines[i + 1].strip()
    return properties


def _finite(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def read_reference(root: Path, layout: ReferenceLayoutConfig, label_kind: str,
                   featurize: FeaturizeConfig, require_labels: bool = True) -> ReadResult:
    """Every ``<root>/<system>/`` holding ``layout.table``: one record per CSV row, the ligand a
    SMILES to pose onto the system's reference ligand, grouped by system.

    A system without its protein or reference ligand fails every row; a row without a SMILES,
    or (training) without a finite label, fails alone. Other numeric columns become ``extras``.
    """
    systems = sorted(p for p in root.iterdir()
                     if p.is_dir() and not _is_ours(p.name) and (p / layout.table).is_file())
    if not systems:
        raise InputError(f"{root}: no <system>/{layout.table} found for data.layout=reference "
                         "(set data.reference.table to the CSV's name)")
    result = ReadResult()
    for folder in systems:
        records = _reference_rows(folder, layout, label_kind, require_labels)
        references = tuple(folder / name for name in layout.ligand
                           if Path(name).suffix.lower().lstrip(".") in featurize.ligand_formats)
        protein = folder / layout.protein
        missing = ("protein " + layout.protein if not protein.is_file() else
                   None if any(p.is_file() for p in references) else
                   "reference ligand " + " / ".join(layout.ligand))
        if missing:
            result.failures += records.failures
            result.failures += [Failure(r.id, f"{folder}: missing {missing}")
                                 for r in records.records]
            continue
        result.failures += records.failures
        result.records += [replace(r, protein=protein, reference_files=references)
                           for r in records.records]
    return _drop_duplicates(result)


def _reference_rows(folder: Path, layout: ReferenceLayoutConfig, label_kind: str,
                    require_labels: bool) -> ReadResult:
    table = folder / layout.table
    text = read_text(table, InputError).lstrip("\ufeff")  # Excel's "CSV UTF-8" starts with a BOM
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    needed = [layout.smiles_column] + ([layout.label_column] if require_labels else [])
    missing = [c for c in needed if c not in header]
    if missing:
        raise InputError(f"{table}:1: no column {missing} (the header read is {header}); set "
                         "data.reference.smiles_column / label_column / name_column")
    result = ReadResult()
    known = {layout.smiles_column, layout.name_column, layout.label_column}
    for line, row in enumerate(reader, start=2):
        name = (row.get(layout.name_column) or "").strip() or f"row{line}"
        complex_id = f"{folder.name}/{name}"
        smiles = (row.get(layout.smiles_column) or "").strip()
        raw = row.get(layout.label_column)
        label = _finite(raw)
        where = f"{table}:{line}"
        if not smiles:
            result.failures.append(Failure(complex_id, f"{where}: empty {layout.smiles_column}"))
            continue
        if require_labels and label is None:
            result.failures.append(Failure(complex_id, f"{where}: {layout.label_column} {raw!r} "
                                                       "is missing or not a finite number"))
            continue
        if label is not None and label_kind == "dg_kcal_mol":
            label = dg_to_pk(label)
        extras = tuple((column, value) for column in header if column not in known
                       for value in [_finite(row.get(column))] if value is not None)
        result.records.append(ComplexRecord(
            id=complex_id, protein=folder, smiles=smiles, ligand_name=name,
            ligand_source=where, label=label, group=folder.name, extras=extras))
    if require_labels and label_kind == "dg_kcal_mol":
        _exclude_relative_series(result, table)
    return result


def read_smiles_library(library: Path, protein: Path, reference: Path, smiles_column: str,
                        name_column: str, label_column: str | None = None,
                        label_kind: str = "pk") -> ReadResult:
    """A SMILES library to pose onto ``reference`` in ``protein``: one record per line, in order.

    ``.smi``: ``SMILES [name]`` per line (whitespace-separated; ``#`` lines and blank lines
    skipped). ``.csv``: a header with ``smiles_column`` and optionally ``name_column`` and
    ``label_column``. A line whose SMILES is bad becomes a record all the same: posing fails it
    with the reason, so every line gets its row.
    """
    text = read_text(library, InputError).lstrip("\ufeff")
    if library.suffix.lower() == ".csv":
        rows = _library_csv_rows(library, text, smiles_column, name_column, label_column)
    else:
        rows = [(line, *(content.split(None, 1) + [""])[:2], None)
                for line, content in enumerate(text.splitlines(), start=1)
                if content.strip() and not content.lstrip().startswith("#")]
    if not rows:
        raise InputError(f"{library}: no SMILES found")
    result = ReadResult()
    for index, (line, smiles, name, raw_label) in enumerate(rows):
        name = name.strip() or f"line{line}"
        label = _finite(raw_label)
        if label is not None and label_kind == "dg_kcal_mol":
            label = dg_to_pk(label)
        result.records.append(ComplexRecord(
            id=f"{library.stem}/{name}", protein=protein, smiles=smiles.strip(),
            reference_files=(reference,), ligand_name=name, ligand_index=index,
            ligand_source=f"{library}:{line}", ligand_line=line, label=label,
            group=library.stem))
    return result


def _library_csv_rows(library: Path, text: str, smiles_column: str, name_column: str,
                      label_column: str | None) -> list[tuple[int, str, str, str | None]]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    if smiles_column not in header:
        raise InputError(f"{library}:1: no column {smiles_column!r} (the header read is "
                         f"{header}); set smiles_column=")
    return [(line, row.get(smiles_column) or "", row.get(name_column) or "",
             row.get(label_column) if label_column else None)
            for line, row in enumerate(reader, start=2)]


def read_manifest(manifest: Path, require_labels: bool = True) -> ReadResult:
    """A CSV with columns ``id, protein, ligand`` and optional ``label, group``."""
    rows = list(csv.DictReader(io.StringIO(read_text(manifest, InputError))))
    header = set(rows[0]) if rows else set()
    missing = {"id", "protein", "ligand"} - header
    if missing:
        raise InputError(f"{manifest}:1: manifest needs columns id, protein, ligand (and label "
                         f"for training); missing {sorted(missing)}")
    result = ReadResult()
    for line, row in enumerate(rows, start=2):
        complex_id = (row["id"] or "").strip()
        label = _finite(row.get("label"))
        where = f"{manifest}:{line}"
        problem = _manifest_problem(manifest.parent, row, complex_id, label, require_labels)
        if problem:
            result.failures.append(Failure(complex_id or f"line{line}", f"{where}: {problem}"))
            continue
        result.records.append(ComplexRecord(
            id=complex_id, protein=manifest.parent / row["protein"].strip(),
            ligand_files=(manifest.parent / row["ligand"].strip(),),
            ligand_name=Path(row["ligand"].strip()).stem, label=label,
            group=(row.get("group") or "").strip()))
    return _drop_duplicates(result)


def _manifest_problem(base: Path, row: dict, complex_id: str, label: float | None,
                      require_labels: bool) -> str | None:
    if not complex_id:
        return "empty id"
    for column in ("protein", "ligand"):
        value = (row.get(column) or "").strip()
        if not value or not (base / value).is_file():
            return f"{column} file {value!r} not found (relative to {base})"
    if require_labels and label is None:
        return f"label {row.get('label')!r} is missing or not a finite number"
    return None


def _drop_duplicates(result: ReadResult) -> ReadResult:
    """An id given twice is ambiguous: every copy becomes a failure, none is used."""
    duplicates = find_duplicates(r.id for r in result.records)
    if not duplicates:
        return result
    kept = [r for r in result.records if r.id not in duplicates]
    failures = [Failure(r.id, f"duplicate id {r.id!r}: given more than once in the input")
                for r in result.records if r.id in duplicates]
    return ReadResult(kept, result.failures + failures)
