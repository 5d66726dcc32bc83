"""Every figure plgraph draws, and the only module that imports matplotlib: a run's training
curve and test scatter, predict.py's scatter, the experiment's comparisons, and the colour map of
the atom-contribution pictures. Headless (Agg), and each PNG written atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless nodes: never look for a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from plgraph.runtime.atomic import replace_atomically  # noqa: E402


def colormap(name: str):
    """A matplotlib colour map by name (``bwr`` for the contribution pictures)."""
    return colormaps[name]


def error_bar(entry: dict) -> float:
    """The std of a mean-and-std entry as a plot's error bar: none (0) with one seed."""
    return 0.0 if entry["std"] is None else entry["std"]



def save_png(figure, path: Path) -> None:
    """Lay ``figure`` out, write it to ``path`` atomically (a reader never sees half a PNG) and
    free it."""
    figure.tight_layout()
    replace_atomically(path, lambda target: figure.savefig(target, format="png", dpi=120))
    plt.close(figure)



def plot_training_curve(history: list[dict], path: Path) -> None:
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



def plot_series_spearman(per_seed: dict, methods: list[str], labels: dict[str, str],
                         path: Path) -> None:
    """Box plot of the per-series Spearman ρ of each method, every seed's test series pooled."""
    values = [[rho for result in per_seed.values() if method in result
               for rho in result[method]["per_series_spearman"].values()] for method in methods]
    figure, axis = plt.subplots(figsize=(1.6 * len(methods) + 2, 4))
    axis.boxplot(values, showmeans=True)
    axis.set_xticks(range(1, len(methods) + 1),
                    [f"{labels.get(m, m)}\n(n={len(v)})" for m, v in zip(methods, values,
                                                                         strict=True)],
                    fontsize=8)
    axis.axhline(0.0, color="grey", linewidth=1)
    axis.set_ylabel("Spearman ρ within a test series")
    axis.set_title("Ranking within congeneric series (all seeds)")
    save_png(figure, path)



def plot_predicted_vs_measured(points: dict[str, tuple[np.ndarray, np.ndarray]],
                               path: Path) -> None:
    """One panel per method: predicted against measured pK over every seed's test part."""
    figure, axes = plt.subplots(1, len(points), figsize=(3.6 * len(points), 3.8), squeeze=False)
    for axis, (method, (predicted, measured)) in zip(axes[0], points.items(), strict=True):
        draw_predicted_vs_measured(axis, predicted, measured, size=6, alpha=0.4)
        axis.set_title(method, fontsize=9)
    save_png(figure, path)



def plot_few_shot(summary: dict, labels: dict[str, str], path: Path) -> None:
    """Mean per-series Spearman ρ against k, one line per method of ``labels`` (bars: std over
    seeds)."""
    ks = sorted(summary)
    figure, axis = plt.subplots(figsize=(6, 4))
    for method in labels:
        means = [summary[k]["methods"][method]["mean"] for k in ks]
        spreads = [error_bar(summary[k]["methods"][method]) for k in ks]
        axis.errorbar(ks, means, yerr=spreads, marker="o", capsize=3, label=labels[method])
    axis.axhline(0.0, color="grey", linewidth=1)
    axis.set_xticks(ks)
    axis.set_xlabel("measured ligands of the new series (k)")
    axis.set_ylabel("mean per-series Spearman ρ on the rest")
    axis.legend(fontsize=7)
    save_png(figure, path)



def plot_learning_curve(summary: dict, figures: dict[str, str], reference: dict,
                        path: Path) -> None:
    """Each of ``figures`` (key: axis name) against the number of training targets; the
    heavy-atom fit on the whole training part as a dashed line for reference."""
    figure, axes = plt.subplots(1, len(figures), figsize=(4.2 * len(figures), 3.6))
    targets = [summary[f]["train_targets"] for f in summary]
    for axis, (key, name) in zip(axes, figures.items(), strict=True):
        axis.errorbar(targets, [summary[f][key]["mean"] for f in summary],
                      yerr=[error_bar(summary[f][key]) for f in summary],
                      marker="o", capsize=3, label="full model")
        if key in reference:
            axis.axhline(reference[key], linestyle="--", color="grey",
                         label="heavy-atom count (all train)")
        axis.set_xlabel("training targets (mean over seeds)")
        axis.set_ylabel(name)
        axis.legend(fontsize=7)
    save_png(figure, path)
