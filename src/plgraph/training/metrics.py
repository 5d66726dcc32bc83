"""Regression metrics of predicted against measured pK."""

from __future__ import annotations

import math

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
