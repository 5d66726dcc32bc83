"""What a run leaves for people: metrics.csv, results.json, test predictions and two plots.

Every file is rewritten whole from the trainer's state (history travels in the checkpoint), so a
resumed run never repeats or loses a row, whatever instant the previous process died at.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless nodes: never look for a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from plgraph.runtime.atomic import replace_atomically  # noqa: E402


def save_png(figure, path: Path) -> None:
    """Lay ``figure`` out, write it to ``path`` atomically (a reader never sees half a PNG) and
    free it."""
    figure.tight_layout()
    replace_atomically(path, lambda target: figure.savefig(target, format="png", dpi=120))
    plt.close(figure)


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


def plot_learning_curve(history: list[dict], path: Path) -> None:
    epochs = [row["epoch"] for row in history]
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(epochs, [row["train_loss"] for row in history], label="train loss (MSE, std. units)")
    axis.plot(epochs, [row["val_rmse"] for row in history], label="validation RMSE (pK)")
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.legend()
    axis.grid(alpha=0.3)
    save_png(figure, path)


def draw_predicted_vs_measured(axis, predicted: np.ndarray, measured: np.ndarray,
                               size: float = 14, alpha: float = 0.7) -> None:
    """Predicted against measured pK on ``axis``, equal ranges, with the diagonal."""
    axis.scatter(measured, predicted, s=size, alpha=alpha)
    low = float(min(measured.min(), predicted.min())) - 0.5
    high = float(max(measured.max(), predicted.max())) + 0.5
    axis.plot([low, high], [low, high], color="grey", linewidth=1)
    axis.set_xlim(low, high)
    axis.set_ylim(low, high)
    axis.set_xlabel("measured pK")
    axis.set_ylabel("predicted pK")


def plot_scatter(predicted: np.ndarray, measured: np.ndarray, metrics: dict, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    draw_predicted_vs_measured(axis, predicted, measured)
    axis.set_title(f"test: RMSE {metrics['rmse']:.2f}, Pearson R {metrics['pearson']:.2f}")
    save_png(figure, path)
