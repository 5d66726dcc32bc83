"""Prediction outputs: one CSV row per input record (its predicted pK or the reason it has
none), the rows of a docking output's poses, and the SMILES-made poses as an SDF. Each is
staged beside its target and renamed onto it only when complete (:class:`Staged`)."""

from __future__ import annotations

import csv
import io
import math
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rdkit import Chem

from plgraph.errors import InputError
from plgraph.inference.applicability import domain_warnings
from plgraph.inference.docking_baselines import MeasuredLigand, measured_ligand
from plgraph.inference.inputs import Featurized
from plgraph.runtime.atomic import Staged, reporting_full_disk

CSV_COLUMNS = ("id", "ligand_name", "ligand_index", "predicted_pk", "predicted_pk_std",
               "measured_pk", "status", "error", "warnings")
# Series mode (measured=): the central 68 and 95 % intervals of the predictive, the model alone,
# the most similar measured ligand, what to make next.
INTERVAL_LEVELS = (68, 95)
SERIES_COLUMNS = (*(f"predicted_pk_{side}{level}" for level in INTERVAL_LEVELS
                    for side in ("low", "high")),
                  "model_pk", "nearest_measured", "nearest_similarity")


@dataclass(frozen=True)
class SeriesColumns:
    """A row's series-mode values: ``measured_pk`` set marks a measured ligand (status
    ``measured``, not a prediction)."""

    model_pk: float | None = None
    # (low, high) of each of INTERVAL_LEVELS, in order; empty for a measured ligand
    intervals: tuple[tuple[float, float], ...] = ()
    nearest: str = ""
    similarity: float | None = None
    suggest_rank: int | None = None
    measured_pk: float | None = None



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



def interval_cells(intervals: tuple[tuple[float, float], ...]) -> list[str]:
    """The CSV cells of a row's intervals: low and high of each level, empty where none."""
    if not intervals:
        return [""] * 2 * len(INTERVAL_LEVELS)
    if len(intervals) != len(INTERVAL_LEVELS):
        raise ValueError(f"expected an interval for each of {INTERVAL_LEVELS}, got {intervals}")
    return [number(bound) for pair in intervals for bound in pair]


class PredictionWriter:
    """Writes one CSV row per input record and keeps what the summary and metrics need.

    Rows go to a temporary file beside ``path``, renamed onto it by ``close(complete=True)``: an
    earlier run's CSV at ``path`` is replaced whole or left as it was, never mixed with or
    mistaken for this run's. A predicted row outside the model's domain
    (:mod:`plgraph.inference.applicability`) has status ``out_of_domain`` and its reasons in
    ``warnings``.
    """

    def __init__(self, path: Path, training_sizes: Sequence[int] | None = None,
                 pose_column: bool = False, series: bool = False, suggest: bool = False):
        self.path = path
        self.staged = Staged(path)
        self._handle = open(self.staged.partial, "w", newline="")  # noqa: SIM115 (close())
        self._writer = csv.writer(self._handle)
        self.series, self.suggest = series, suggest
        self._writer.writerow(CSV_COLUMNS + (("pose_index",) if pose_column else ())
                              + (SERIES_COLUMNS if series else ())
                              + (("suggest_rank",) if suggest else ()))
        self.measured = 0
        self.training_sizes = training_sizes
        self.failures: list[Featurized] = []
        self.out_of_domain: list[tuple[Featurized, list[str]]] = []
        self.labelled: list[tuple[float, float]] = []  # (predicted, measured)
        # every row with a measured value, series mode's measured ligands included, for the
        # summary's baselines (plgraph.inference.docking_baselines)
        self.measured_ligands: list[MeasuredLigand] = []
        self.count = 0

    def write(self, row: Featurized, predicted: float | None, spread: float | None,
              pose_index: int | None = None, series: SeriesColumns | None = None) -> None:
        self.count += 1
        warnings: list[str] = []
        if series is not None and series.measured_pk is not None:
            self.measured += 1
            if series.model_pk is not None:
                self.measured_ligands.append(
                    measured_ligand(row, series.model_pk, series.measured_pk))
            self._row(row, None, None, series.measured_pk, "measured", [], pose_index, series)
            return
        if predicted is None:
            self.failures.append(row)
        else:
            warnings = domain_warnings(row.graph, predicted, self.training_sizes)
            if warnings:
                self.out_of_domain.append((row, warnings))
            if row.label is not None and math.isfinite(row.label):
                self.labelled.append((predicted, row.label))
                self.measured_ligands.append(measured_ligand(row, predicted, row.label))
        status = "failed" if predicted is None else "out_of_domain" if warnings else "ok"
        self._row(row, predicted, spread, row.label, status, warnings, pose_index, series)

    def _row(self, row: Featurized, predicted: float | None, spread: float | None,
             measured: float | None, status: str, warnings: list[str], pose_index: int | None,
             series: SeriesColumns | None) -> None:
        series = series or SeriesColumns()
        with reporting_full_disk(self.staged):  # a full disk names the CSV, not a bare OSError
            self._write_row(row, predicted, spread, measured, status, warnings, pose_index,
                            series)

    def _write_row(self, row: Featurized, predicted: float | None, spread: float | None,
                   measured: float | None, status: str, warnings: list[str],
                   pose_index: int | None, series: SeriesColumns) -> None:
        self._writer.writerow([
            row.id, row.ligand_name, row.ligand_index, number(predicted), number(spread),
            number(measured), status, row.error, "; ".join(warnings),
            *(() if pose_index is None else (pose_index,)),
            *((*interval_cells(series.intervals), number(series.model_pk), series.nearest,
               number(series.similarity)) if self.series else ()),
            *((series.suggest_rank or "",) if self.suggest else ())])

    def close(self, complete: bool) -> None:
        """Rename the rows onto ``path`` (durably) when ``complete``, else delete them. A disk
        that fills as the last rows are flushed raises DiskFullError; ``path`` stays as it was."""
        with reporting_full_disk(self.staged):
            self._handle.close()
            self.staged.finish(complete)



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



def number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"



class PoseWriter:
    """Writes the poses made from SMILES to an SDF, each with its prediction as properties, so
    that a chemist can look at them in any viewer. Written beside the target and renamed onto it
    when complete: an interrupted run never leaves a half file under the requested name. RDKit
    renders each record into memory and Python writes it: RDKit's own file stream does not
    report a full disk (a truncated SDF would be renamed into place), and through a Python file
    object the error comes back as a SystemError."""

    def __init__(self, path: Path):
        self.path = path
        self.staged = Staged(path)
        self._handle = self.staged.partial.open("w")
        self.count = 0

    def write(self, row: Featurized, predicted: float | None, spread: float | None) -> None:
        if row.pose is None or predicted is None:
            return
        mol = Chem.Mol(row.pose.mol)
        mol.SetProp("_Name", row.ligand_name or row.id)
        for name, value in (("plgraph_id", row.id), ("predicted_pk", number(predicted)),
                            ("predicted_pk_std", number(spread)),
                            ("pose_core_atoms", str(len(row.pose.core))),
                            ("pose_clashes", str(row.pose.clashes))):
            mol.SetProp(name, value)
        record = io.StringIO()
        with Chem.SDWriter(record) as writer:
            writer.write(mol)
        with reporting_full_disk(self.staged):
            self._handle.write(record.getvalue())
        self.count += 1

    def close(self, complete: bool) -> None:
        with reporting_full_disk(self.staged):
            self._handle.close()
            self.staged.finish(complete)
