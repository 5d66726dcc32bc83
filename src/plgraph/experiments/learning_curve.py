"""How the unseen-target figures grow with the number of training targets.

``experiment.learning_curve=[0.25,0.5]`` trains each seed's full model again on that fraction of
its training targets (the split's clusters: targets, or families with ``split.strategy=family``;
drawn with the seed, all complexes of a chosen target kept), validation and test unchanged, so
that every point is scored on the same unseen proteins. The whole training part is the curve's
last point (the experiment's own full model). More targets helping is the case for more data;
a flat curve says the model, not the data, is the limit.
"""

from __future__ import annotations

import numpy as np  # noqa: E402

from plgraph.data import PreparedData  # noqa: E402
from plgraph.experiments.comparison import format_mean_std, mean_std  # noqa: E402

FIGURES = {"pearson": "Pearson R", "series_spearman": "mean per-series Spearman ρ"}


def _cluster_of(data: PreparedData) -> dict[str, str]:
    """Each complex's target cluster; a split without them (a random split) uses its series."""
    return data.split.target_of or {e.id: e.group for e in data.cache.entries}


def fewer_targets(data: PreparedData, fraction: float, seed: int) -> PreparedData:
    """``data`` with its train part cut to ``fraction`` of its targets (at least one), drawn
    with ``seed``; a split without target clusters (a random split) is cut by series."""
    cluster_of = _cluster_of(data)
    train = data.split.parts["train"]
    clusters = sorted({cluster_of[i] for i in train})
    count = max(1, round(fraction * len(clusters)))
    rng = np.random.default_rng([seed, round(fraction * 1000)])
    chosen = {clusters[i] for i in rng.choice(len(clusters), count, replace=False)}
    parts = {**data.split.parts, "train": [i for i in train if cluster_of[i] in chosen]}
    return data.with_parts(parts)


def train_targets(data: PreparedData) -> int:
    cluster_of = _cluster_of(data)
    return len({cluster_of[i] for i in data.split.parts["train"]})


def summarize_learning_curve(per_seed: dict) -> dict:
    """Per fraction: training targets and complexes, and each figure, mean and std over seeds."""
    fractions = sorted({f for r in per_seed.values() for f in r.get("learning_curve", {})},
                       key=float)
    summary = {}
    for fraction in fractions:
        points = [r["learning_curve"][fraction] for r in per_seed.values()
                  if fraction in r.get("learning_curve", {})]
        entry = {"train_targets": float(np.mean([p["train_targets"] for p in points])),
                 "train_complexes": float(np.mean([p["train_complexes"] for p in points]))}
        for figure in FIGURES:
            values = [p[figure] for p in points]
            entry[figure] = mean_std(values)
        summary[fraction] = entry
    return summary


def learning_curve_markdown(summary: dict) -> list[str]:
    lines = ["## Learning curve: unseen-target figures against training targets", "",
             "The full model trained on a fraction of each seed's training targets, scored on the "
             "same test part (mean ± std over seeds; figure `learning_curve.png`):", "",
             "| fraction of targets | training targets | training complexes | Pearson R | "
             "mean per-series Spearman ρ |", "|---:|---:|---:|---:|---:|"]
    for fraction, entry in summary.items():
        cells = [format_mean_std(entry[k]) for k in FIGURES]
        lines.append(f"| {float(fraction):g} | {entry['train_targets']:.0f} | "
                     f"{entry['train_complexes']:.0f} | " + " | ".join(cells) + " |")
    return [*lines, ""]
