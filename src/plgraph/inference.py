"""Prediction inputs and output: every record featurized by the training featurizer and written
as one CSV row, with its predicted pK or the reason it has none. Nothing is dropped."""

from __future__ import annotations

import csv
import math
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from rdkit import Chem
from torch_geometric.data import HeteroData
from tqdm import tqdm

from plgraph.config import FeaturizeConfig, PredictConfig
from plgraph.data.build import featurize_record_with_pose
from plgraph.data.layouts import (
    read_manifest,
    read_pdbbind,
    read_sdf_records,
    read_smiles_library,
)
from plgraph.data.records import ComplexRecord, ReadResult
from plgraph.errors import FeaturizationError, InputError
from plgraph.featurize.posing import Pose

CSV_COLUMNS = ("id", "ligand_name", "ligand_index", "predicted_pk", "predicted_pk_std",
               "measured_pk", "status", "error")
CHUNK = 512  # records featurized and predicted together: memory stays bounded for any library


@dataclass(frozen=True)
class Featurized:
    id: str
    ligand_name: str
    ligand_index: int
    graph: HeteroData | None
    error: str = ""
    label: float | None = None
    pose: Pose | None = None  # the pose made for a SMILES record


def read_prediction_inputs(config: PredictConfig, featurize: FeaturizeConfig) -> ReadResult:
    """The records of whichever input ``config`` names; labels are optional."""
    for name in ("protein", "ligands", "reference", "root", "labels", "manifest"):
        value = getattr(config, name)
        if value and not Path(value).exists():
            raise InputError(f"{name}={value}: not found")
    if config.reference:
        return read_smiles_library(Path(config.ligands), Path(config.protein),
                                   Path(config.reference), config.smiles_column,
                                   config.name_column, config.label_property, config.label_kind)
    if config.protein and config.ligands:
        ligands = Path(config.ligands)
        return read_sdf_records(ligands, Path(config.protein), ligands.stem,
                                config.label_property, config.label_kind, require_labels=False)
    if config.root:
        return read_pdbbind(Path(config.root), Path(config.labels) if config.labels else None,
                            featurize)
    return read_manifest(Path(config.manifest), require_labels=False)


def read_protein_with_ligands(protein: Path, ligands: Path) -> ReadResult:
    """One protein and a multi-ligand SDF, without labels."""
    return read_sdf_records(ligands, protein, ligands.stem, None, "pk", require_labels=False)


def featurize_all(inputs: ReadResult, config: FeaturizeConfig) -> Iterator[Featurized]:
    """Featurize every record in input order (reader rejects first); each protein file is
    parsed once."""
    for failure in inputs.failures:
        yield Featurized(failure.id, "", -1, None, failure.reason)
    proteins: OrderedDict = OrderedDict()
    sites: OrderedDict = OrderedDict()
    for record in tqdm(inputs.records, unit="complex", desc="featurizing", mininterval=1.0):
        try:
            graph, pose = featurize_record_with_pose(record, config, proteins, sites)
        except FeaturizationError as error:
            yield _row(record, None, str(error))
            continue
        yield _row(record, graph, "", pose)


def _row(record: ComplexRecord, graph: HeteroData | None, error: str,
         pose: Pose | None = None) -> Featurized:
    return Featurized(record.id, record.ligand_name, record.ligand_index, graph, error,
                      record.label, pose)


def chunks(rows: Iterable[Featurized], size: int = CHUNK) -> Iterator[list[Featurized]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


class PredictionWriter:
    """Writes one CSV row per input record and keeps what the summary and metrics need."""

    def __init__(self, path: Path):
        self.path = path
        self._handle = open(path, "w", newline="")  # noqa: SIM115 (closed in close())
        self._writer = csv.writer(self._handle)
        self._writer.writerow(CSV_COLUMNS)
        self.failures: list[Featurized] = []
        self.labelled: list[tuple[float, float]] = []  # (predicted, measured)
        self.count = 0

    def write(self, row: Featurized, predicted: float | None, spread: float | None) -> None:
        self.count += 1
        if predicted is None:
            self.failures.append(row)
        elif row.label is not None and math.isfinite(row.label):
            self.labelled.append((predicted, row.label))
        self._writer.writerow([
            row.id, row.ligand_name, row.ligand_index, _number(predicted), _number(spread),
            _number(row.label), "ok" if predicted is not None else "failed", row.error])

    def close(self) -> None:
        self._handle.close()


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


class PoseWriter:
    """Writes the poses made from SMILES to an SDF, each with its prediction as properties, so
    that a chemist can look at them in any viewer. Written beside the target and renamed onto it
    when complete: an interrupted run never leaves a half file under the requested name."""

    def __init__(self, path: Path):
        self.path = path
        self._partial = path.with_name(f".{path.name}.partial")
        self._writer = Chem.SDWriter(str(self._partial))
        self.count = 0

    def write(self, row: Featurized, predicted: float | None, spread: float | None) -> None:
        if row.pose is None or predicted is None:
            return
        mol = Chem.Mol(row.pose.mol)
        mol.SetProp("_Name", row.ligand_name or row.id)
        for name, value in (("plgraph_id", row.id), ("predicted_pk", _number(predicted)),
                            ("predicted_pk_std", _number(spread)),
                            ("pose_core_atoms", str(len(row.pose.core))),
                            ("pose_clashes", str(row.pose.clashes))):
            mol.SetProp(name, value)
        self._writer.write(mol)
        self.count += 1

    def close(self, complete: bool) -> None:
        self._writer.close()
        if complete:
            os.replace(self._partial, self.path)
        else:
            self._partial.unlink(missing_ok=True)
