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
(``prior_slope``) is mixed in if its error ratio is at most the value swept.

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
    anchoring_error_ratio,
    blend,
    gp_alone,
    prior_slope,
)

GUARDS = (0.5, 0.7, 0.85, 1.0, 1.2, math.inf)
SCALED_GUARDS = (0.0, 0.5, 0.7, 0.85, 1.0)  # 0: no second chance (blend before it)


def measure(series_list, draws: int) -> dict:
    """{(prior, k): [(series, ratio, rho of gp_alone, rho of the mixture, ratio and rho of the
    mixture with the prior shrunk by its slope)]} over every draw."""
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
            found[(name, k)].append((series.name, ratio, alone, spearman(mixed.mean, pk[query]),
                                     scaled_ratio, spearman(scaled.mean, pk[query])))
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


def _line(name: str, k: int, guard: float, rows: list, choose) -> None:
    """One guard's row: ``choose(row)`` gives the mixture's rho, or None for the GP alone."""
    by_series = defaultdict(list)
    for row in rows:
        chosen = choose(row)
        by_series[row[0]].append((row[2] if chosen is None else chosen) - row[2])
    diff = np.array([np.mean(v) for v in by_series.values()])
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
