"""Prediction inputs and output: every record featurized by the training featurizer and written
as one CSV row, with its predicted pK or the reason it has none. Nothing is dropped."""

from __future__ import annotations

import csv
import math
import os
import statistics
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from rdkit import Chem
from torch_geometric.data import HeteroData
from tqdm import tqdm

from plgraph.applicability import domain_warnings
from plgraph.atomic import fsync_dir
from plgraph.config import FeaturizeConfig, PredictConfig
from plgraph.data.build import featurize_record_with_pose
from plgraph.data.layouts import read_manifest, read_pdbbind
from plgraph.data.libraries import iter_ligand_records, iter_smiles_library, read_sdf_records
from plgraph.data.records import ComplexRecord, Failure, ReadResult
from plgraph.errors import FeaturizationError, InputError, plain_stem
from plgraph.featurize.posing import Pose

CSV_COLUMNS = ("id", "ligand_name", "ligand_index", "predicted_pk", "predicted_pk_std",
               "measured_pk", "status", "error", "warnings")
CHUNK = 512  # records featurized and predicted together: memory stays bounded for any library
Inputs = ReadResult | Iterable[ComplexRecord | Failure]


@dataclass(frozen=True)
class Featurized:
    id: str
    ligand_name: str
    ligand_index: int
    graph: HeteroData | None
    error: str = ""
    label: float | None = None
    pose: Pose | None = None  # the pose made for a SMILES record
    ligand: Chem.Mol | None = None  # the featurized ligand: heavy atoms in the graph's order


def read_prediction_inputs(config: PredictConfig, featurize: FeaturizeConfig) -> Inputs:
    """The records of whichever input ``config`` names; labels are optional. A ligand library
    (SDF, mol2, SMILES) is read lazily, record by record, as the caller consumes it."""
    for name in ("protein", "ligands", "reference", "root", "labels", "manifest"):
        value = getattr(config, name)
        if value and not Path(value).exists():
            raise InputError(f"{name}={value}: not found")
    for name in ("protein", "ligands", "reference", "labels", "manifest"):
        value = getattr(config, name)
        if value and Path(value).is_dir():
            raise InputError(f"{name}={value} is a directory; give a file (root=DIR reads a "
                             "PDBbind-layout directory)")
    if config.reference:
        return iter_smiles_library(Path(config.ligands), Path(config.protein),
                                   Path(config.reference), config.smiles_column,
                                   config.name_column, config.label_property, config.label_kind)
    if config.protein and config.ligands:
        ligands = Path(config.ligands)
        return iter_ligand_records(ligands, Path(config.protein), plain_stem(ligands),
                                   config.label_property, config.label_kind)
    if config.root:
        return read_pdbbind(Path(config.root), Path(config.labels) if config.labels else None,
                            featurize)
    return read_manifest(Path(config.manifest), require_labels=False)


def check_output(path: Path, name: str) -> None:
    """Fail now, before any work, when ``path`` cannot be written (``name=`` for the message):
    a directory, a missing or read-only directory, or a read-only file."""
    where = f"{name}={path}"
    if path.is_dir():
        raise InputError(f"{where} is a directory; give a file name, e.g. {name}={path / 'x'}")
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"{where}: the directory {folder} does not exist; create it first")
    try:  # trying is the only test that also sees read-only mounts and ACLs
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise InputError(f"{where}: cannot write in {folder} ({error.strerror})") from None


def read_protein_with_ligands(protein: Path, ligands: Path) -> ReadResult:
    """One protein and a multi-ligand SDF, without labels."""
    return read_sdf_records(ligands, protein, ligands.stem, None, "pk", require_labels=False)


def featurize_all(inputs: Inputs, config: FeaturizeConfig) -> Iterator[Featurized]:
    """Featurize every record in input order, one at a time as ``inputs`` yields them (a
    ``ReadResult``: its reader rejects first); each protein file is parsed once."""
    if isinstance(inputs, ReadResult):
        inputs = [*inputs.failures, *inputs.records]
    proteins: OrderedDict = OrderedDict()
    sites: OrderedDict = OrderedDict()
    for record in tqdm(inputs, unit="complex", desc="featurizing", mininterval=1.0):
        if isinstance(record, Failure):
            yield Featurized(record.id, record.ligand_name, record.ligand_index, None,
                             record.reason)
            continue
        try:
            graph, ligand, pose = featurize_record_with_pose(record, config, proteins, sites)
        except FeaturizationError as error:
            yield _row(record, None, str(error))
            continue
        yield _row(record, graph, "", pose, ligand)


def _row(record: ComplexRecord, graph: HeteroData | None, error: str,
         pose: Pose | None = None, ligand: Chem.Mol | None = None) -> Featurized:
    return Featurized(record.id, record.ligand_name, record.ligand_index, graph, error,
                      record.label, pose, ligand)


def chunks(rows: Iterable[Featurized], size: int = CHUNK) -> Iterator[list[Featurized]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


class PredictionWriter:
    """Writes one CSV row per input record and keeps what the summary and metrics need.

    Rows go to a temporary file beside ``path``, renamed onto it by ``close(complete=True)``: an
    earlier run's CSV at ``path`` is replaced whole or left as it was, never mixed with or
    mistaken for this run's. A predicted row outside the model's domain
    (:mod:`plgraph.applicability`) has status ``out_of_domain`` and its reasons in ``warnings``.
    """

    def __init__(self, path: Path, training_sizes: Sequence[int] | None = None,
                 pose_column: bool = False):
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        self._handle = open(self.partial, "w", newline="")  # noqa: SIM115 (closed in close())
        self._writer = csv.writer(self._handle)
        self._writer.writerow(CSV_COLUMNS + (("pose_index",) if pose_column else ()))
        self.training_sizes = training_sizes
        self.failures: list[Featurized] = []
        self.out_of_domain: list[tuple[Featurized, list[str]]] = []
        self.labelled: list[tuple[float, float]] = []  # (predicted, measured)
        self.count = 0

    def write(self, row: Featurized, predicted: float | None, spread: float | None,
              pose_index: int | None = None) -> None:
        self.count += 1
        warnings: list[str] = []
        if predicted is None:
            self.failures.append(row)
        else:
            warnings = domain_warnings(row.graph, predicted, self.training_sizes)
            if warnings:
                self.out_of_domain.append((row, warnings))
            if row.label is not None and math.isfinite(row.label):
                self.labelled.append((predicted, row.label))
        status = "failed" if predicted is None else "out_of_domain" if warnings else "ok"
        self._writer.writerow([
            row.id, row.ligand_name, row.ligand_index, _number(predicted), _number(spread),
            _number(row.label), status, row.error, "; ".join(warnings),
            *(() if pose_index is None else (pose_index,))])

    def close(self, complete: bool) -> None:
        """Rename the rows onto ``path`` (durably) when ``complete``, else delete them."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        if complete:
            os.replace(self.partial, self.path)
            fsync_dir(self.path.parent)
        else:
            self.partial.unlink(missing_ok=True)


class PoseAggregator:
    """Groups consecutive rows with the same ligand name (the poses of one ligand, as Vina,
    GNINA, smina and Glide write them) into one row of ``ligands``, and writes every pose's row
    with its ``pose_index`` to ``poses`` (``X_poses.csv``, kept only when some ligand has several
    poses). The ligand's row is its ``first`` pose's, or that of its ``best`` (highest predicted
    pK) pose, or (``mean``) its first predicted pose's with the mean over its predicted poses of
    the prediction and of the ensemble spread; failed poses are left out, and a ligand whose
    every pose failed fails with the first pose's reason.
    """

    def __init__(self, ligands: PredictionWriter, poses: PredictionWriter, how: str):
        self.ligands, self.poses, self.how = ligands, poses, how
        self._group: list[tuple[Featurized, float | None, float | None]] = []
        self.several = False  # some ligand had more than one pose

    def write(self, row: Featurized, predicted: float | None, spread: float | None) -> None:
        same_ligand = bool(row.ligand_name) and row.ligand_name == (
            self._group[0][0].ligand_name if self._group else None)
        if self._group and not same_ligand:
            self._flush()
        self._group.append((row, predicted, spread))

    def close(self, complete: bool) -> None:
        if complete:
            self._flush()
        self.ligands.close(complete)
        self.poses.close(complete and self.several)
        if complete and not self.several:
            self.poses.path.unlink(missing_ok=True)  # an earlier run's poses: not this run's

    def _flush(self) -> None:
        group, self._group = self._group, []
        if not group:
            return
        self.several = self.several or len(group) > 1
        for index, entry in enumerate(group):
            self.poses.write(*entry, pose_index=index)
        predicted = [entry for entry in group if entry[1] is not None]
        if not predicted:
            self.ligands.write(*group[0])
        elif self.how == "first":
            self.ligands.write(*predicted[0])
        elif self.how == "best":
            self.ligands.write(*max(predicted, key=lambda entry: entry[1]))
        else:
            self.ligands.write(predicted[0][0], statistics.fmean(e[1] for e in predicted),
                               statistics.fmean(e[2] for e in predicted))


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
