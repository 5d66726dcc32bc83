"""Comparing methods fairly: on the same test series, paired, pooled across seeds, with an
interval.

A mean of per-series Spearman ρ hides how much it moves from series to series: two methods whose
means differ by 0.05 can swap places on half the series. The acceptance test of an experiment
is therefore paired: for every test series that both methods rank, the difference in ρ (method
minus baseline), pooled over seeds, with a 95 % bootstrap interval over series. The interval
must exclude zero before a difference is called real.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000


def paired_differences(per_seed: dict, method: str, baseline: str) -> list[float]:
    """ρ(method) − ρ(baseline) for every (seed, test series) that both rank."""
    differences = []
    for result in per_seed.values():
        if method not in result or baseline not in result:
            continue
        ours, theirs = (result[m]["per_series_spearman"] for m in (method, baseline))
        differences += [ours[s] - theirs[s] for s in sorted(ours.keys() & theirs.keys())]
    return differences


def mean_std(values: list[float]) -> dict:
    """Mean and sample standard deviation of a figure over seeds. With one seed there is no
    spread to estimate: the std is None (null in results.json, which NaN would make invalid
    JSON); the mean is NaN only without any value."""
    return {"mean": float(np.mean(values)) if values else float("nan"),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else None}


def format_mean_std(entry: dict) -> str:
    """A report's cell for a ``mean_std`` entry: ``0.412 ± 0.031``, or ``0.412 (1 seed)``."""
    if entry["std"] is not None:
        return f"{entry['mean']:.3f} ± {entry['std']:.3f}"
    return f"{entry['mean']:.3f} (1 seed)" if np.isfinite(entry["mean"]) else "none"


def format_interval(entry: dict) -> str:
    """A report's cell for a :func:`bootstrap_interval`: ``[-0.120, +0.310]``, or ``no
    interval`` below two values (one test series in a one-seed experiment)."""
    if entry["low"] is None:
        return "no interval"
    return f"[{entry['low']:+.3f}, {entry['high']:+.3f}]"


def excludes_zero(entry: dict) -> bool:
    """Whether a :func:`bootstrap_interval` lies wholly on one side of 0 (False without one)."""
    return entry["low"] is not None and (entry["low"] > 0 or entry["high"] < 0)


def bootstrap_interval(values: list[float], seed: int = 0,
                       resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """Mean of ``values`` and its 95 % percentile-bootstrap interval (seeded, reproducible).
    Below two values there is no spread to resample: ``low`` and ``high`` are None (null in
    results.json), and the report says so instead of printing NaN."""
    data = np.asarray(values, dtype=float)
    if len(data) < 2:
        return {"n": len(data), "mean": float(data.mean()) if len(data) else float("nan"),
                "low": None, "high": None}
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"n": len(data), "mean": float(data.mean()), "low": float(low), "high": float(high)}


