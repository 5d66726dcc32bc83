"""Input readers, one per layout users actually have; each returns records and failures.

- ``pdbbind``: ``<root>/<id>/<id>_pocket.pdb`` (or ``_protein.pdb``, cut around the ligand; or
  either as AutoDock ``.pdbqt``) and ``<id>_ligand.sdf`` / ``.mol2`` (``.pdbqt`` where
  ``featurize.ligand_formats`` lists it); labels from an INDEX file or CSV.
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
from dataclasses import replace
from pathlib import Path

from plgraph.config import DataConfig, FeaturizeConfig, ReferenceLayoutConfig, SourceConfig
from plgraph.data.labels import (
    Label,
    drop_implausible,
    exclude_relative_series,
    parse_label,
    read_labels,
)
from plgraph.data.libraries import read_sdf_records
from plgraph.data.records import (
    ComplexRecord,
    Failure,
    ReadResult,
    dg_to_pk,
    find_duplicates,
    implausible_label,
)
from plgraph.errors import FeaturizationError, InputError
from plgraph.runtime.files import plain_suffix, read_text

LIGAND_SUFFIXES = {"sdf": ".sdf", "mol2": ".mol2", "pdbqt": ".pdbqt"}
# A complex directory's protein: the first of these that exists.
PROTEIN_SUFFIXES = ("_pocket.pdb", "_protein.pdb", "_pocket.pdbqt", "_protein.pdbqt")


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
        protein = next((p for p in (folder / f"{complex_id}{suffix}"
                                    for suffix in PROTEIN_SUFFIXES) if p.is_file()), None)
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
    """Every ``*_ligands.sdf`` under ``root`` with the ``*_protein.pdb`` (or ``.pdbqt``) beside
    it."""
    result = ReadResult()
    sdfs = sorted(p for p in root.rglob("*_ligands.sdf") if "processed" not in p.parts)
    if not sdfs:
        raise InputError(f"{root}: no <system>_ligands.sdf files found for data.layout=series")
    for sdf in sdfs:
        system = sdf.relative_to(root).as_posix().removesuffix("_ligands.sdf")
        stem = sdf.name.removesuffix("_ligands.sdf")
        protein = next((p for p in (sdf.with_name(f"{stem}_protein{suffix}")
                                    for suffix in (".pdb", ".pdbqt")) if p.is_file()),
                       sdf.with_name(f"{stem}_protein.pdb"))  # missing: its reader says so
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
        label = parse_label(raw)
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
                       for value in [parse_label(row.get(column))] if value is not None)
        result.records.append(ComplexRecord(
            id=complex_id, protein=folder, smiles=smiles, ligand_name=name,
            ligand_source=where, label=label, group=folder.name, extras=extras))
    if require_labels and label_kind == "dg_kcal_mol":
        exclude_relative_series(result, table)
    drop_implausible(result)
    return result


def read_manifest(manifest: Path, require_labels: bool = True) -> ReadResult:
    """A CSV with columns ``id, protein, ligand`` and optional ``label, group``.

    Excel's "CSV UTF-8" (a byte-order mark) is read, and spaces around header names ignored.
    A ligand ``x.sdf`` falls back to a sibling ``x.mol2`` (and the other way round) when it does
    not parse, as in the PDBbind layout.
    """
    text = read_text(manifest, InputError).lstrip("\ufeff")  # Excel's "CSV UTF-8" BOM
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    rows = list(reader)
    missing = {"id", "protein", "ligand"} - set(header)
    if missing:
        raise InputError(f"{manifest}:1: manifest needs columns id, protein, ligand (and label "
                         f"for training); missing {sorted(missing)} (the header read is "
                         f"{header})")
    result = ReadResult()
    for line, row in enumerate(rows, start=2):
        complex_id = (row["id"] or "").strip()
        label = parse_label(row.get("label"))
        where = f"{manifest}:{line}"
        problem = (_manifest_problem(manifest.parent, row, complex_id, label, require_labels)
                   or implausible_label(label))
        if problem:
            result.failures.append(Failure(complex_id or f"line{line}", f"{where}: {problem}"))
            continue
        ligand = manifest.parent / row["ligand"].strip()
        result.records.append(ComplexRecord(
            id=complex_id, protein=manifest.parent / row["protein"].strip(),
            ligand_files=_with_sibling(ligand),
            ligand_name=Path(ligand.name.removesuffix(".gz")).stem, label=label,
            group=(row.get("group") or "").strip()))
    return _drop_duplicates(result)


def _with_sibling(ligand: Path) -> tuple[Path, ...]:
    """``ligand`` and, when present, the same name in the other ligand format as a fallback."""
    suffix = plain_suffix(ligand)
    other = {".sdf": ".mol2", ".mol2": ".sdf"}.get(suffix)
    if other is None:
        return (ligand,)
    base = ligand.name[:ligand.name.lower().rfind(suffix)]
    siblings = [ligand.with_name(base + other + gz) for gz in ("", ".gz")]
    return (ligand, *[p for p in siblings if p.is_file()][:1])


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
