"""Predict pK: ``python predict.py [checkpoint=PATH] protein=P.pdb ligands=L.sdf``.

Also ``protein=P.pdb reference=REF.sdf ligands=library.smi`` (SMILES posed onto the reference
as in training; ``poses=posed.sdf`` writes the poses), ``root=DIR`` (PDBbind layout, optional
``labels=``) or ``manifest=CSV``, and
``ensemble=[a.pt,b.pt]`` for the mean and standard deviation of several models. The model and
its featurization are rebuilt from the checkpoint alone; every input record gets one row in
``output`` (predicted pK, or the reason there is none). Exit code 1 when any record failed.
Ctrl-C, SIGTERM and SIGUSR1 stop it between chunks, with exit code 128 + signal (plgraph.stop).
"""

# ruff: noqa: E402 (the stop handlers go in before the imports, which take seconds)
from __future__ import annotations

from plgraph.stop import STOP

STOP.install()

import logging
import sys
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from plgraph.allocator import keep_freed_memory
from plgraph.cli import register_configs, run_cli, to_config
from plgraph.config import PredictConfig
from plgraph.inference import (
    PoseWriter,
    PredictionWriter,
    chunks,
    featurize_all,
    read_prediction_inputs,
)
from plgraph.predictor import Predictor, latest_best_checkpoint
from plgraph.training.device import resolve_device
from plgraph.training.metrics import regression_metrics
from plgraph.training.reports import plot_scatter

log = logging.getLogger("plgraph")
register_configs()
keep_freed_memory()  # CPU steps reuse their large buffers: see plgraph.allocator


def predict(config: PredictConfig) -> int:
    checkpoints = [Path(config.checkpoint) if config.checkpoint
                   else latest_best_checkpoint(Path(config.output_root))]
    checkpoints += [Path(p) for p in config.ensemble]
    predictor = Predictor.load(checkpoints, resolve_device(config.device))
    log.info("model%s: %s", "s" if len(checkpoints) > 1 else "",
             ", ".join(map(str, checkpoints)))
    inputs = read_prediction_inputs(config, predictor.featurize)
    writer = PredictionWriter(Path(config.output))
    poses = PoseWriter(Path(config.poses)) if config.poses else None
    complete = False
    try:
        for chunk in chunks(featurize_all(inputs, predictor.featurize)):
            STOP.check(f"while predicting, after {writer.count} records: {config.output} holds "
                       "only those; run the same command again for all")
            good = [row for row in chunk if row.graph is not None]
            mean, spread = predictor.predict([row.graph for row in good], config.batch_size)
            value = {id(row): (float(m), float(s)) for row, m, s in zip(good, mean, spread,
                                                                        strict=True)}
            for row in chunk:
                writer.write(row, *value.get(id(row), (None, None)))
                if poses is not None:
                    poses.write(row, *value.get(id(row), (None, None)))
        complete = True
    finally:
        writer.close()
        if poses is not None:
            poses.close(complete)
    report(writer, config)
    if poses is not None:
        log.info("%d posed ligands with their predictions in %s", poses.count, config.poses)
    return 1 if writer.failures else 0


def report(writer: PredictionWriter, config: PredictConfig) -> None:
    log.info("predicted %d of %d records; one row each in %s", writer.count - len(writer.failures),
             writer.count, config.output)
    for row in writer.failures[:10]:
        log.warning("  failed %s: %s", row.id, row.error)
    if len(writer.labelled) >= 2:
        predicted, measured = (np.array(v) for v in zip(*writer.labelled, strict=True))
        metrics = regression_metrics(predicted, measured)
        scatter = Path(config.output).with_suffix(".scatter.png")
        plot_scatter(predicted, measured, metrics, scatter)
        log.info("against the measured values (%d): RMSE %.3f, Pearson %.3f, Spearman %.3f; %s",
                 len(predicted), metrics["rmse"], metrics["pearson"], metrics["spearman"],
                 scatter)


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    sys.exit(run_cli(lambda: predict(to_config(cfg))))


if __name__ == "__main__":
    main()
