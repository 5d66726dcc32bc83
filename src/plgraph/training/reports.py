"""What a run leaves for people: metrics.csv, results.json, test predictions and two plots
(drawn by :mod:`plgraph.training.plots`).

Every file is rewritten whole from the trainer's state (history travels in the checkpoint), so a
resumed run never repeats or loses a row, whatever instant the previous process died at.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from plgraph.config import TrainConfig
from plgraph.data.split import Split
from plgraph.featurize import DATA_PROCESSING_VERSION
from plgraph.runtime.atomic import replace_atomically
from plgraph.training.plots import plot_scatter, plot_training_curve
from plgraph.training.state import Progress

log = logging.getLogger(__name__)


def write_metrics_csv(history: list[dict], path: Path) -> None:
    if not history:
        return

    def write(target: Path) -> None:
        with open(target, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)

    replace_atomically(path, write)


def json_safe(value):
    """``value`` with every NaN and infinity as None. JSON has no such numbers: ``json.dumps``
    would write ``NaN``, which jq, JavaScript and every strict parser refuse. A figure that
    is undefined (the Pearson R of one test complex, a Spearman ρ of constant predictions) is
    null in the file."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def write_json(payload: dict, path: Path) -> None:
    """``payload`` as strict JSON (non-finite numbers as null), replacing ``path`` atomically."""
    text = json.dumps(json_safe(payload), indent=1, allow_nan=False) + "\n"
    replace_atomically(path, lambda target: target.write_text(text))


def write_predictions_csv(ids: list[str], predicted: np.ndarray, measured: np.ndarray,
                          path: Path) -> None:
    def write(target: Path) -> None:
        with open(target, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "predicted_pk", "measured_pk"])
            writer.writerows(zip(ids, np.round(predicted, 4), np.round(measured, 4), strict=True))

    replace_atomically(path, write)


def read_predictions_csv(path: Path) -> dict:
    """What :func:`write_predictions_csv` wrote: ``ids`` (list), ``predicted`` and ``measured``
    (arrays)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {"ids": [row["id"] for row in rows],
            "predicted": np.array([float(row["predicted_pk"]) for row in rows]),
            "measured": np.array([float(row["measured_pk"]) for row in rows])}




def write_epoch_files(history: list[dict], run: Path) -> None:
    """What a run rewrites after every epoch: ``metrics.csv`` and ``learning_curve.png``."""
    write_metrics_csv(history, run / "metrics.csv")
    plot_training_curve(history, run / "learning_curve.png")


def results(run: Path, config: TrainConfig, progress: Progress, history: list[dict],
            test_metrics: dict, *, wall_seconds: float, sizes: dict[str, int],
            device: torch.device, precision: str, world_size: int, split: Split,
            origin: dict | None) -> dict:
    """The content of a finished run's ``results.json``: how it stopped, the best epoch's
    validation figures, the test figures of ``best.pt``, and what it ran on."""
    best_row = history[progress.best_epoch]
    return {
        "run": str(run), "stopped_by": progress.finished_by(config),
        "epochs": progress.epoch, "steps": progress.global_step,
        "best_epoch": progress.best_epoch + 1,
        "val": {k.removeprefix("val_"): v for k, v in best_row.items() if k.startswith("val_")},
        "test": test_metrics, "wall_seconds": round(wall_seconds, 2),
        "sizes": sizes, "device": str(device), "precision": precision,
        "world_size": world_size, "checkpoint": str(run / "checkpoints" / "best.pt"),
        "data_processing_version": DATA_PROCESSING_VERSION,
        "split": {"name": split.name, "fingerprint": split.fingerprint},
        "init_from": origin}


def write_test_files(results: dict, test: dict, run: Path) -> None:
    """``results.json``, ``test_predictions.csv`` and ``test_scatter.png`` of a finished run;
    ``test`` holds the test part's ``ids``, ``predicted``, ``measured`` and ``metrics``."""
    write_json(results, run / "results.json")
    write_predictions_csv(test["ids"], test["predicted"], test["measured"],
                          run / "test_predictions.csv")
    if len(test["ids"]):
        plot_scatter(test["predicted"], test["measured"], test["metrics"],
                     run / "test_scatter.png")


def read_json(path: Path) -> dict:
    """A JSON file plgraph wrote (a finished run's ``results.json``)."""
    return json.loads(path.read_text())


def log_epoch(row: dict, improved: bool) -> None:
    """One line per epoch: train loss and the validation figures (row of ``metrics.csv``)."""
    within = (f", mean per-series Spearman {row['val_series_spearman']:.3f}"
              if "val_series_spearman" in row else "")
    log.info("epoch %d: train loss %.4f, val RMSE %.3f, Pearson %.3f%s%s", row["epoch"],
             row["train_loss"], row["val_rmse"], row["val_pearson"], within,
             " (best)" if improved else "")


def log_finished(results: dict) -> None:
    """The closing line of a run: how it stopped, the best epoch, its test figures."""
    test = results["test"]
    figures = ("no test part (split.test=0)" if results["sizes"].get("test") == 0 else
               f"test RMSE {test['rmse']:.3f}, Pearson {test['pearson']:.3f}, Spearman "
               f"{test['spearman']:.3f}")
    log.info("finished (%s): best epoch %d, val RMSE %.3f; %s; results in %s",
             results["stopped_by"], results["best_epoch"], results["val"]["rmse"], figures,
             Path(results["run"]) / "results.json")


def finished_results(run: Path, progress: Progress, config: TrainConfig) -> dict | None:
    """A finished run's ``results.json`` content (logged with how to train on), or None while
    the run goes on or has not written it yet."""
    finished = progress.finished_by(config)
    path = run / "results.json"
    if not finished or not path.exists():
        return None
    knob = "trainer.max_epochs" if finished == "max_epochs" else "trainer.early_stopping_patience"
    log.info("run %s is finished (%s, epoch %d); results in %s. Raise %s to train on, or "
             "fresh=true to start over.", run, finished, progress.epoch, path, knob)
    return read_json(path)
