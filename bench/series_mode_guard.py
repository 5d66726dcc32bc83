"""Series mode's blend guard (issue 24): where should ``blend`` stop mixing anchoring in?

``blend`` mixes reference anchoring into the fingerprint GP only where anchoring predicts the
measured ligands (leave one out) with at most ``guard`` times the GP's squared error. A low
guard protects against a useless prior and gives up the gain of a useful one. This script
measures the trade on the dev part of bench/series_mode.py (never the reported series): for each
series, k and draw it computes the error ratio once and both arms once, so every guard value is
scored on identical draws. Printed per prior (the model's out-of-fold predictions with
``--predictions``, a random prior, FEP, the heavy-atom prior), k and guard: mean per-series rho
minus gp_alone's with a 95 % bootstrap interval, and the share of draws that mixed. A second
table sweeps the scaled second chance (``SCALED_BLEND_GUARD``): where the first guard, at
``BLEND_GUARD``, fails, anchoring on the prior shrunk by its slope on the measured ligands
(``prior_slope``) is mixed in if its error ratio is at most the value swept. A third table
compares blend's mixtures at its default guards (``BLEND_MIXTURES``): equal halves against
anchoring weighted by the inverse of its leave-one-out error ratio.

Run from the repo root: ``python bench/series_mode_guard.py --predictions CSV``.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from rdkit import RDLogger
from series_mode import (
    UNI_FEP,
    bootstrap_mean,
    dev_parser,
    every_draw,
    load_series,
    read_predictions,
    sample_series,
    seed_of,
    spearman,
)
from threadpoolctl import threadpool_limits

from plgraph.inference.series import (
    BLEND_GUARD,
    BLEND_MIXTURES,
    SCALED_BLEND_GUARD,
    anchoring_error_ratio,
    blend,
    gp_alone,
    prior_slope,
)

GUARDS = (0.5, 0.7, 0.85, 1.0, 1.2, math.inf)
SCALED_GUARDS = (0.0, 0.5, 0.7, 0.85, 1.0)  # 0: no second chance (blend before it)


def measure(series_list, draws: int) -> dict:
    """{(prior, k): [(series, ratio, rho of gp_alone, rho of the mixture, ratio and rho of the
    mixture with the prior shrunk by its slope, then rho of blend at its default guards with
    each of BLEND_MIXTURES)]} over every draw."""
    found = defaultdict(list)
    for series, k, _, _, measured, query in every_draw(series_list, draws):
        fps, pk = series.fps, series.pk
        alone = spearman(gp_alone(fps[measured], pk[measured], fps[query]).mean, pk[query])
        for name, prior in series.priors.items():
            ratio = anchoring_error_ratio(fps[measured], pk[measured], prior[measured])
            mixed = blend(fps[measured], pk[measured], fps[query], prior[measured],
                          prior[query], guard=math.inf)
            slope = prior_slope(prior[measured], pk[measured])
            shrunk = slope * prior
            scaled_ratio = (anchoring_error_ratio(fps[measured], pk[measured], shrunk[measured])
                            if slope > 0 else math.inf)
            scaled = blend(fps[measured], pk[measured], fps[query], shrunk[measured],
                           shrunk[query], guard=math.inf) if slope > 0 else mixed
            mixtures = tuple(spearman(blend(fps[measured], pk[measured], fps[query],
                                            prior[measured], prior[query],
                                            mixture=mixture).mean, pk[query])
                             for mixture in BLEND_MIXTURES)
            found[(name, k)].append((series.name, ratio, alone, spearman(mixed.mean, pk[query]),
                                     scaled_ratio, spearman(scaled.mean, pk[query]), *mixtures))
    return found


def report(found: dict) -> None:
    print("prior   k  guard   mixed  rho-gp_alone [95% bootstrap over series]")
    for (name, k), rows in sorted(found.items()):
        for guard in GUARDS:
            _line(name, k, guard, rows, lambda row, g=guard: row[3] if row[1] <= g else None)
    print(f"\nthe scaled second chance where the first guard ({BLEND_GUARD}) fails")
    print("prior   k  scaled  mixed  rho-gp_alone [95% bootstrap over series]")
    for (name, k), rows in sorted(found.items()):
        for guard in SCALED_GUARDS:
            _line(name, k, guard, rows, lambda row, g=guard: (
                row[3] if row[1] <= BLEND_GUARD else row[5] if row[4] <= g else None))


    print(f"\nblend's mixtures at its default guards ({BLEND_GUARD}, {SCALED_BLEND_GUARD})")
    print("prior   k  mixture         rho-gp_alone [95% bootstrap]   minus equal")
    for (name, k), rows in sorted(found.items()):
        for column, mixture in enumerate(BLEND_MIXTURES, start=6):
            versus_gp = _paired(rows, lambda row, c=column: row[c] - row[2])
            versus_equal = _paired(rows, lambda row, c=column: row[c] - row[6])
            print(f"{name:7s} {k:2d}  {mixture:14s}  {_interval(versus_gp, name, k, column)}  "
                  f"{_interval(versus_equal, name, k, column + 10)}")


def _paired(rows: list, difference) -> np.ndarray:
    """Per series, the mean over its draws of ``difference(row)``."""
    by_series = defaultdict(list)
    for row in rows:
        by_series[row[0]].append(difference(row))
    return np.array([np.mean(v) for v in by_series.values()])


def _interval(diff: np.ndarray, *seed) -> str:
    mean, low, high = bootstrap_mean(diff, seed_of(*seed))
    return f"{mean:+.3f} [{low:+.3f},{high:+.3f}]"


def _line(name: str, k: int, guard: float, rows: list, choose) -> None:
    """One guard's row: ``choose(row)`` gives the mixture's rho, or None for the GP alone."""
    diff = _paired(rows, lambda row: 0.0 if choose(row) is None else choose(row) - row[2])
    mean, low, high = bootstrap_mean(diff, seed_of(name, k, guard))
    share = np.mean([choose(row) is not None for row in rows])
    print(f"{name:7s} {k:2d}  {guard:5.2f}  {share:5.2f}  {mean:+.3f} "
          f"[{low:+.3f},{high:+.3f}]  n={len(diff)}")


def main() -> None:
    args = dev_parser(__doc__.split("\n\n")[0]).parse_args()
    RDLogger.DisableLog("rdApp.*")
    every, _ = load_series(UNI_FEP, read_predictions(args.predictions), random_prior=True)
    chosen = sample_series(every, 0, "dev")
    print(f"dev part: {len(chosen)} series")
    report(measure(chosen, args.draws))


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
