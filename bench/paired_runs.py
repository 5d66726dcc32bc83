"""Two or more experiment runs compared paired: the same method of each run, series by series.

An experiment's own report pairs its model with the baselines of the same run. A recipe choice
(``model.anchor=vina`` against ``heavy_atoms``, say) is two runs on the same cache and splits;
this script pairs their ``results.json``: for every (seed, test series) both rank, ρ(run) −
ρ(reference run), pooled over seeds, with the 95 % bootstrap interval of
:mod:`plgraph.experiments.comparison`. It refuses runs whose seeds test different series (not
the same splits: nothing to pair).

    python bench/paired_runs.py heavy_atoms=outputs/anchor_heavy vina=outputs/anchor_vina \
        vina_terms=outputs/anchor_vina_terms [--method full] [--json bench/results/x.json]

The first run is the reference. Printed: each run's mean per-series ρ (mean ± std over seeds),
each other run minus the reference, and each run's method against every baseline its report
holds (heavy-atom fit, docking scores, FEP), all paired, and against the heavy-atom fit seed by
seed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from plgraph.experiments.comparison import (
    bootstrap_interval,
    format_interval,
    format_mean_std,
    mean_std,
    paired_differences,
)

BASELINES = ("heavy_atoms", "vina", "vina_optimized", "vinardo", "vina_terms_fit", "fep")
PER_SEED_BASELINE = "heavy_atoms"


def load(spec: str) -> tuple[str, dict]:
    """``label=run_dir`` (or a results.json) → (label, its per-seed results)."""
    label, _, path = spec.partition("=")
    if not path:
        raise SystemExit(f"{spec!r}: give label=RUN_DIR")
    results = Path(path) if path.endswith(".json") else Path(path) / "results.json"
    if not results.is_file():
        raise SystemExit(f"{results}: no results.json (has the experiment finished?)")
    return label, json.loads(results.read_text())["per_seed"]


def check_same_splits(runs: dict[str, dict]) -> None:
    """Every run must test the same series under every seed (the same cache and splits)."""
    (first, reference), *others = runs.items()
    for label, per_seed in others:
        if per_seed.keys() != reference.keys():
            raise SystemExit(f"{label} ran seeds {sorted(per_seed)}, {first} {sorted(reference)}")
        for seed, result in per_seed.items():
            if result["test_series"] != reference[seed]["test_series"]:
                raise SystemExit(f"{label} and {first} test different series under seed {seed}: "
                                 "not the same splits (same cache and split config needed)")


def between_runs(reference: dict, other: dict, method: str) -> list[float]:
    """ρ(other's method) − ρ(reference's method) for every (seed, series) both rank."""
    merged = {seed: {"a": other[seed][method], "b": reference[seed][method]}
              for seed in reference if method in reference[seed] and method in other[seed]}
    return paired_differences(merged, "a", "b")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="label=RUN_DIR; the first is the reference")
    parser.add_argument("--method", default="full", help="the method compared (default full)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    runs = dict(load(spec) for spec in args.runs)
    check_same_splits(runs)
    reference_label = next(iter(runs))
    out: dict = {"method": args.method, "reference": reference_label, "runs": {}}
    print(f"{args.method}: mean per-series Spearman over seeds; paired intervals over "
          "(seed, series)")
    for label, per_seed in runs.items():
        rhos = [r[args.method]["series_spearman"] for r in per_seed.values()]
        entry = {"series_spearman": mean_std(rhos), "per_seed": rhos, "against": {}}
        print(f"\n{label}: {format_mean_std(entry['series_spearman'])}  "
              f"(per seed {', '.join(f'{x:.3f}' for x in rhos)})")
        if label != reference_label:
            interval = bootstrap_interval(between_runs(runs[reference_label], per_seed,
                                                       args.method))
            entry["minus_reference"] = interval
            print(f"  minus the run {reference_label}: {interval['mean']:+.3f} "
                  f"{format_interval(interval)} ({interval['n']} series)")
        for baseline in BASELINES:
            differences = paired_differences(per_seed, args.method, baseline)
            if not differences:
                continue
            interval = bootstrap_interval(differences)
            base_rho = mean_std([r[baseline]["series_spearman"] for r in per_seed.values()
                                 if baseline in r])
            entry["against"][baseline] = {**interval, "baseline": base_rho}
            print(f"  minus {baseline} ({format_mean_std(base_rho)}): {interval['mean']:+.3f} "
                  f"{format_interval(interval)} ({interval['n']} series)")
        # Issue 25's bar: above the heavy-atom fit on every seed, not only pooled.
        seeds = {seed: bootstrap_interval(paired_differences({seed: result}, args.method,
                                                              PER_SEED_BASELINE))
                 for seed, result in per_seed.items() if PER_SEED_BASELINE in result}
        if seeds:
            entry["per_seed_against"] = {PER_SEED_BASELINE: seeds}
            print(f"  minus {PER_SEED_BASELINE}, per seed: " + "; ".join(
                f"{seed} {i['mean']:+.3f} {format_interval(i)}" for seed, i in seeds.items()))
        out["runs"][label] = entry
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
        print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
