"""Series mode's uncertainty (issue 24): is ``predicted_pk_std`` as wide as the errors are?

On the dev part of bench/series_mode.py (never the reported series), for each series, k and draw
it predicts the queries with ``gp_alone`` and ``blend`` (the model's out-of-fold predictions as
the prior, with ``--predictions``; the heavy-atom prior otherwise) and keeps each query's error
in units of its predicted std, ``z = (measured - predicted) / std``. Printed per method and k:
the share of queries with ``|z|`` within 1 and 2 (the goal of a Gaussian std: 0.68 / 0.95), the
same with the std multiplied by each of MULTIPLIERS (how much wider would be right), and what
the Student-t that series mode's std belongs to (``predictive_dof(k)`` degrees of freedom)
expects within 1 and 2 of its std: a t's tails are heavier than a Gaussian's, so it holds more
than 0.68 within 1 std and about 0.95 within 2. Last, the share inside the predictive's
central 68 and 95 % intervals (``SeriesPrediction.interval``, the CSV's ``predicted_pk_low68``
... ``_high95``; the goal 0.68 / 0.95). ``blend[fep]`` is blend as a prior trusted by its
record gets it (``method_for_record(RECORD_TRUST)``: mixed always, as independent estimates),
with Uni-FEP's FEP as that prior; ``mixture`` the same with the equal mixture's std, and
``indep`` the guarded blend with the independent estimates' std: the candidates the choice
was made between.

Run from the repo root: ``python bench/series_calibration.py [--predictions CSV] [--part dev]``.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from rdkit import RDLogger
from scipy.stats import t as student_t
from series_mode import (
    UNI_FEP,
    dev_parser,
    every_draw,
    load_series,
    read_predictions,
    sample_series,
)
from threadpoolctl import threadpool_limits

from plgraph.inference.series import (
    RECORD_TRUST,
    blend,
    gp_alone,
    method_for_record,
    predictive_dof,
    student_t_std,
)

MULTIPLIERS = (0.9, 1.0, 1.1, 1.2, 1.3, 1.5)


def standardized_errors(series_list, draws: int, prior_name: str) -> dict:
    """{(method, k): (z, inside the 68 % interval, inside the 95 % one) over every query of
    every series and draw, as arrays}."""
    found = defaultdict(list)
    trusted = method_for_record(RECORD_TRUST).options
    for series, k, _, _, measured, query in every_draw(series_list, draws):
        fps, pk, prior = series.fps, series.pk, series.priors[prior_name]
        fep = series.priors["fep"]
        data = (fps[measured], pk[measured], fps[query])
        with_prior = (*data, prior[measured], prior[query])
        with_fep = (*data, fep[measured], fep[query])
        for method, result in (
                ("gp_alone", gp_alone(*data)),
                (f"blend[{prior_name}]", blend(*with_prior)),
                (f"blend[{prior_name}] indep", blend(*with_prior, independent=True)),
                ("blend[fep] trusted", blend(*with_fep, **trusted)),
                ("blend[fep] trusted mixture", blend(*with_fep, guard=trusted["guard"]))):
            truth = pk[query]
            inside = [(low <= truth) & (truth <= high)
                      for low, high in (result.interval(0.68), result.interval(0.95))]
            found[(method, k)].append(np.stack([(truth - result.mean) / result.std, *inside]))
    return {key: np.concatenate(values, axis=1) for key, values in found.items()}


def t_expects(k: int, stds: float) -> float:
    """The share of a Student-t with ``predictive_dof(k)`` degrees of freedom within ``stds`` of
    its std of its centre."""
    dof = predictive_dof(k)
    return float(2 * student_t.cdf(stds * student_t_std(dof), dof) - 1)


def report(errors: dict) -> None:
    heads = "  ".join(f"x{m:<4.2f}" for m in MULTIPLIERS)
    print(f"method                      k  queries  within 1 / 2 std at std times: {heads}"
          "   t expects   inside 68 / 95 % intervals")
    for (method, k), (z, inside_68, inside_95) in sorted(errors.items()):
        shares = "  ".join(f"{np.mean(np.abs(z) <= m):.2f}/{np.mean(np.abs(z) <= 2 * m):.2f}"
                           for m in MULTIPLIERS)
        print(f"{method:26s} {k:2d}  {len(z):7d}  {shares}   "
              f"{t_expects(k, 1):.2f}/{t_expects(k, 2):.2f}   "
              f"{inside_68.mean():.2f}/{inside_95.mean():.2f}")


def main() -> None:
    parser = dev_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("dev", "report"), default="dev")
    args = parser.parse_args()
    RDLogger.DisableLog("rdApp.*")
    every, _ = load_series(UNI_FEP, read_predictions(args.predictions))
    chosen = sample_series(every, 0, args.part)
    prior_name = "model" if args.predictions else "ha"
    print(f"{args.part} part: {len(chosen)} series, prior {prior_name}")
    report(standardized_errors(chosen, args.draws, prior_name))


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
