"""Regression metrics of predicted against measured pK, globally and within series."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from scipy import stats

METRICS = ("rmse", "mae", "pearson", "spearman")


def regression_metrics(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, Pearson R and Spearman ρ; correlations are NaN for fewer than 2 points or
    constant values (undefined, not zero)."""
    predicted = np.asarray(predicted, dtype=np.float64)
    measured = np.asarray(measured, dtype=np.float64)
    error = predicted - measured
    result = {"rmse": float(np.sqrt(np.mean(error ** 2))) if error.size else math.nan,
              "mae": float(np.mean(np.abs(error))) if error.size else math.nan}
    defined = error.size >= 2 and np.ptp(predicted) > 0 and np.ptp(measured) > 0
    result["pearson"] = float(stats.pearsonr(predicted, measured)[0]) if defined else math.nan
    result["spearman"] = (float(stats.spearmanr(predicted, measured)[0]) if defined
                          else math.nan)
    return result


def positions_by_series(series: list[str]) -> dict[str, list[int]]:
    """The positions of each series' members in ``series`` (one series name per complex)."""
    members: dict[str, list[int]] = defaultdict(list)
    for position, name in enumerate(series):
        members[name].append(position)
    return members


def series_rho(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Spearman ρ of one series; 0 where a method ranks nothing (one value for every ligand),
    rather than leaving the series out and scoring the method on the easier rest."""
    return float(stats.spearmanr(predicted, measured)[0]) if np.ptp(predicted) > 0 else 0.0


def per_series_spearman(predicted: np.ndarray, measured: np.ndarray, series: list[str],
                        min_series_size: int) -> dict[str, float]:
    """Spearman ρ within each series (a congeneric series of one target) that has
    ``min_series_size`` ligands or more and measured values that are not all equal."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    return {name: series_rho(predicted[positions], measured[positions])
            for name, positions in sorted(positions_by_series(series).items())
            if len(positions) >= min_series_size and np.ptp(measured[positions]) > 0}


def mean_series_spearman(per_series: dict[str, float]) -> float:
    """The mean of :func:`per_series_spearman`'s figures: the headline per-series figure; NaN
    where no series qualifies (undefined, not zero)."""
    return float(np.mean(list(per_series.values()))) if per_series else math.nan


def score(predicted: np.ndarray, measured: np.ndarray, series: list[str] | None,
          min_series_size: int, per_series: bool = False) -> dict:
    """The figures of one method on one part: :func:`regression_metrics`, and where ``series``
    (one name per complex) is given the mean per-series Spearman ρ (``series_spearman``); with
    ``per_series`` also each series' ρ and how many series qualified. The trainer's validation
    and test and the experiment's methods are all scored here."""
    metrics = regression_metrics(predicted, measured)
    if series is not None:
        within = per_series_spearman(predicted, measured, series, min_series_size)
        metrics["series_spearman"] = mean_series_spearman(within)
        if per_series:
            metrics["series_evaluated"] = len(within)
            metrics["per_series_spearman"] = within
    return metrics


def monitored(monitor: str, validation: dict) -> float:
    """The validation figure ``trainer.monitor`` names, lower is better: RMSE, or minus the
    mean per-series Spearman ρ."""
    return validation["rmse"] if monitor == "rmse" else -validation["series_spearman"]
