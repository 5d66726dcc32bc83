"""Predict pK: ``python predict.py [checkpoint=PATH] protein=P.pdb ligands=L.sdf``.

Also ``protein=P.pdb reference=REF.sdf ligands=library.smi`` (SMILES posed onto the reference
as in training; ``poses=posed.sdf`` writes the poses), ``root=DIR`` (PDBbind layout, optional
``labels=``) or ``manifest=CSV``, ``ensemble=[a.pt,b.pt]`` for the mean and standard deviation
of several models, and ``measured=FILE [suggest=N]`` to adjust the predictions to a series'
measured ligands (plgraph.inference.series_ranking). The model and its featurization are
rebuilt from the checkpoint alone; every input record gets one row in ``output`` (predicted pK,
or the reason there is none; ``out_of_domain`` and the reasons where the prediction is outside
the model's domain, see plgraph.inference.applicability). Exit codes: 0 every record
predicted, 1 some records failed (the CSV complete), 2 nothing done (a usage or input error,
named), 128 + signal when Ctrl-C, SIGTERM or SIGUSR1 stopped it between chunks
(plgraph.runtime.stop). The CSV appears at ``output`` only once complete.
"""

# ruff: noqa: E402 (the stop handlers go in before the imports, which take seconds)
from __future__ import annotations

from plgraph.runtime.stop import STOP

STOP.install()

import logging
import sys
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from plgraph.cli import register_configs, run_cli, run_entry, to_config
from plgraph.config import PredictConfig
from plgraph.inference.docking_baselines import summarize as summarize_baselines
from plgraph.inference.explain import ExplainWriter
from plgraph.inference.inputs import chunks, featurize_all, read_prediction_inputs
from plgraph.inference.measured import read_measured
from plgraph.inference.predictor import NoTrainedRunError, Predictor, latest_best_checkpoint
from plgraph.inference.series_ranking import SeriesRanking, measured_records
from plgraph.inference.shipped import describe, shipped_checkpoints
from plgraph.inference.writers import PoseAggregator, PoseWriter, PredictionWriter, check_output
from plgraph.runtime.allocator import keep_freed_memory
from plgraph.training.device import resolve_device
from plgraph.training.metrics import regression_metrics
from plgraph.training.plots import plot_scatter

log = logging.getLogger("plgraph")
SHIPPED_DIR = Path(__file__).resolve().parent / "models"  # the shipped model and its card
register_configs()
keep_freed_memory()  # CPU steps reuse their large buffers: see plgraph.runtime.allocator


def predict(config: PredictConfig) -> int:
    check_output(Path(config.output), "output")
    if config.poses:
        check_output(Path(config.poses), "poses")
    checkpoints = model_files(config)  # first: where the shipped model stands in, it says so
    # Series mode's file is checked next: a rule it breaks costs seconds, not a library's run.
    measured = (read_measured(Path(config.measured), config.measured_property,
                              config.measured_kind) if config.measured else None)
    predictor = Predictor.load(checkpoints, resolve_device(config.device, key="device"))
    log.info("model%s: %s", "s" if len(checkpoints) > 1 else "",
             ", ".join(map(str, checkpoints)))
    inputs = read_prediction_inputs(config, predictor.featurize)
    writer = PredictionWriter(Path(config.output), predictor.training_sizes,
                              series=measured is not None, suggest=config.suggest > 0)
    sink = writer
    if measured is not None:
        sink = SeriesRanking(
            writer, measured, config.series_method, predictor.series_record, config.suggest,
            config.acquisition,
            measured_records(Path(config.protein) if config.protein else None,
                             Path(config.reference) if config.reference else None),
            lambda records: list(predicted_rows(predictor, featurize_all(
                records, predictor.featurize), config.batch_size)))
    if config.ligands and not config.reference:  # a docking output may hold several poses
        output = Path(config.output)
        sink = PoseAggregator(sink, PredictionWriter(
            output.with_name(f"{output.with_suffix('').name}_poses.csv"),
            predictor.training_sizes, pose_column=True), config.pose_aggregation)
    poses = PoseWriter(Path(config.poses)) if config.poses else None
    explainer = ExplainWriter(Path(config.output), config.explain_top) if config.explain else None
    complete = False
    try:
        for chunk in chunks(featurize_all(inputs, predictor.featurize), config.chunk_size):
            STOP.check(f"while predicting, after {writer.count} records: nothing was written to "
                       f"{config.output}; run the same command again")
            rows = list(predicted_rows(predictor, chunk, config.batch_size))
            for row, predicted, spread in rows:
                sink.write(row, predicted, spread)
                if poses is not None:
                    poses.write(row, predicted, spread)
            if explainer is not None:
                good = [(row, predicted) for row, predicted, _ in rows if predicted is not None]
                for (row, predicted), atoms in zip(good, predictor.contributions(
                        [row.graph for row, _ in good], config.batch_size), strict=True):
                    explainer.write(row.id, row.ligand_name, row.ligand, predicted, atoms)
        complete = True
    finally:
        sink.close(complete)
        if poses is not None:
            poses.close(complete)
        if explainer is not None:
            explainer.close(complete)
        if not complete:
            earlier = (" (the file there is an earlier run's)" if Path(config.output).exists()
                       else "")
            log.warning("nothing was written to %s%s", config.output, earlier)
    report(writer, config)
    if poses is not None:
        log.info("%d posed ligands with their predictions in %s", poses.count, config.poses)
    if explainer is not None:
        log.info("atom contributions of %d ligands in %s, their maps in %s", explainer.count,
                 explainer.atoms_path, explainer.maps_path)
    return 1 if writer.failures else 0


def model_files(config: PredictConfig) -> list[Path]:
    """``checkpoint=`` (default: the latest run's best.pt) and ``ensemble=``; with neither and
    no run under ``output_root``, the shipped model, verified against its card's sha256 and
    named on the first log line (plgraph.inference.shipped)."""
    ensemble = [Path(p) for p in config.ensemble]
    if config.checkpoint:
        return [Path(config.checkpoint), *ensemble]
    try:
        return [latest_best_checkpoint(Path(config.output_root)), *ensemble]
    except NoTrainedRunError:
        directory = Path(config.shipped_dir) if config.shipped_dir else SHIPPED_DIR
        shipped = None if ensemble else shipped_checkpoints(directory)
        if shipped is None:
            raise
    paths, manifest = shipped
    log.info("no checkpoint= and no run of yours under %s/: using the shipped model %s "
             "(trained on %s; card: %s)", config.output_root.rstrip("/"),
             ", ".join(map(str, paths)), describe(manifest), directory / manifest["card"])
    return paths


def predicted_rows(predictor: Predictor, rows, batch_size: int):
    """Each featurized row with its predicted pK and ensemble spread (None, None where it
    failed), in order."""
    rows = list(rows)
    good = [row for row in rows if row.graph is not None]
    mean, spread = predictor.predict([row.graph for row in good], batch_size)
    value = {id(row): (float(m), float(s)) for row, m, s in zip(good, mean, spread, strict=True)}
    for row in rows:
        yield (row, *value.get(id(row), (None, None)))


def report(writer: PredictionWriter, config: PredictConfig) -> None:
    log.info("predicted %d of %d records; one row each in %s",
             writer.count - len(writer.failures) - writer.measured, writer.count, config.output)
    if writer.measured:
        log.info("%d rows are measured ligands (status measured, their value in measured_pk)",
                 writer.measured)
    for row in writer.failures[:10]:
        log.warning("  failed %s: %s", row.id, row.error)
    if writer.out_of_domain:
        log.warning("%d predictions are out of the model's domain (status out_of_domain, the "
                    "reasons in the warnings column)", len(writer.out_of_domain))
        for row, warnings in writer.out_of_domain[:10]:
            log.warning("  out of domain %s: %s", row.id, "; ".join(warnings))
    if len(writer.labelled) >= 2:
        predicted, measured = (np.array(v) for v in zip(*writer.labelled, strict=True))
        metrics = regression_metrics(predicted, measured)
        scatter = Path(config.output).with_suffix(".scatter.png")
        plot_scatter(predicted, measured, metrics, scatter)
        log.info("against the measured values (%d): RMSE %.3f, Pearson %.3f, Spearman %.3f; %s",
                 len(predicted), metrics["rmse"], metrics["pearson"], metrics["spearman"],
                 scatter)
    summarize_baselines(writer.measured_ligands, config.docking_baselines)


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    sys.exit(run_cli(lambda: predict(to_config(cfg))))


if __name__ == "__main__":
    run_entry(main)  # a command line Hydra refuses exits 2 too
