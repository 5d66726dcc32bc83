"""Inputs for prediction: every record featurized by the training featurizer, or its reason.

Nothing is dropped: each input record yields exactly one :class:`Featurized`, with a graph or with
the error that kept it from having one.
"""

from __future__ import annotations

import csv
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from torch_geometric.data import HeteroData

from plgraph.config import FeaturizeConfig
from plgraph.data.build import featurize_record
from plgraph.data.layouts import read_sdf_records
from plgraph.data.records import ComplexRecord, Failure, ReadResult
from plgraph.errors import FeaturizationError

CSV_COLUMNS = ("id", "ligand_name", "ligand_index", "status", "error")


@dataclass(frozen=True)
class Featurized:
    id: str
    ligand_name: str
    ligand_index: int
    graph: HeteroData | None
    error: str = ""


def read_protein_with_ligands(protein: Path, ligands: Path) -> ReadResult:
    """One protein and a multi-ligand SDF; labels are not needed (and not required)."""
    return read_sdf_records(ligands, protein, ligands.stem, None, "pk", require_labels=False)


def featurize_all(inputs: ReadResult, config: FeaturizeConfig) -> Iterator[Featurized]:
    """Featurize every record in input order; each protein file is parsed once."""
    for failure in inputs.failures:
        yield Featurized(failure.id, "", -1, None, failure.reason)
    proteins: OrderedDict = OrderedDict()
    for record in inputs.records:
        try:
            graph = featurize_record(record, config, proteins)
        except FeaturizationError as error:
            yield _row(record, None, str(error))
            continue
        yield _row(record, graph, "")


def _row(record: ComplexRecord, graph: HeteroData | None, error: str) -> Featurized:
    return Featurized(record.id, record.ligand_name, record.ligand_index, graph, error)


def write_status_csv(rows: Iterable[Featurized], path: Path) -> list[Failure]:
    """One CSV row per input record; returns the failures."""
    failures = []
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            status = "ok" if row.graph is not None else "failed"
            writer.writerow([row.id, row.ligand_name, row.ligand_index, status, row.error])
            if row.graph is None:
                failures.append(Failure(row.id, row.error))
    return failures
