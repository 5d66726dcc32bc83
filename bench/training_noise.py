"""How far one training of a recipe moves from another: recipe comparisons against that noise.

``bench/paired_runs.py`` pairs two recipes by their per-series ρ, one training each, and its
bootstrap resamples series: it sees the series' noise, not the trainings'. An experiment run
with ``experiment.ensemble=N`` holds N trainings of one recipe on every split (the first with
the experiment's seed, the members ``<run>-seed<S>-full-member<M>`` with other trainer seeds).
From those this prints:

- each training's mean per-series ρ on each split, and their spread (how much a second
  training of the same recipe on the same split moves);
- each training against the mean of all N, paired over (split, series): how lucky or unlucky
  one training can be, the yardstick for any single-training comparison;
- the experiment's ensemble (the mean of the N trainings' predictions) against the mean of
  their per-series ρ: what averaging adds beyond the luck of one training;
- each other run given (same splits), by the mean of its own trainings (one, or its members
  too), paired against the mean of the N trainings rather than against the first alone.

    python bench/training_noise.py outputs/recipe_ranknet decoys=outputs/recipe_decoys ...

The per-series ρ is the experiment report's (``plgraph.experiments.run.evaluate``: series of at
least ``--min-series-size`` ligands, a constant prediction scores 0).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from paired_runs import check_same_splits, load

from plgraph.experiments.comparison import bootstrap_interval, format_interval
from plgraph.experiments.run import evaluate, full_model_run


def series_of_ids(ids: list[str], test_series: list[str]) -> dict[str, str]:
    """Each test complex's series: the longest test series its id starts with (``<series>/``)."""
    found = {}
    for complex_id in ids:
        owners = [s for s in test_series if complex_id.startswith(f"{s}/")]
        if not owners:
            raise SystemExit(f"{complex_id}: in no test series of the run")
        found[complex_id] = max(owners, key=len)
    return found


def training_rhos(run_dir: Path, test_series: list[str], min_size: int) -> dict:
    """{series: ρ} of the training in ``run_dir`` (its test_predictions.csv)."""
    path = run_dir / "test_predictions.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: missing (has the training finished?)")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    ids = [row["id"] for row in rows]
    found = {"ids": ids, "predicted": np.array([float(r["predicted_pk"]) for r in rows]),
             "measured": np.array([float(r["measured_pk"]) for r in rows])}
    return evaluate(found, series_of_ids(ids, test_series), min_size)["per_series_spearman"]


def trainings_of(report_dir: Path, per_seed: dict, min_size: int) -> dict[str, list[dict]]:
    """{seed: [{series: ρ} of each training]}, the first training first, then the ensemble
    members 1, 2, ... for as long as their run directories exist beside the report directory
    (``plgraph.experiments.run.full_model_run``)."""
    root, name = report_dir.parent, report_dir.name
    found = {}
    for seed, result in per_seed.items():
        runs = [root / full_model_run(name, seed)]
        while (member := root / full_model_run(name, seed, len(runs))).is_dir():
            runs.append(member)
        found[seed] = [training_rhos(run, result["test_series"], min_size) for run in runs]
    return found


def mean_over_trainings(trainings: list[dict]) -> dict[str, float]:
    shared = set.intersection(*(set(t) for t in trainings))
    return {s: float(np.mean([t[s] for t in trainings])) for s in sorted(shared)}


def paired(ours: dict[str, dict], theirs: dict[str, dict]) -> dict:
    """Bootstrap interval of ρ(ours) − ρ(theirs) over every (seed, series) both rank."""
    differences = [ours[seed][s] - theirs[seed][s] for seed in theirs
                   for s in sorted(ours[seed].keys() & theirs[seed].keys())]
    return bootstrap_interval(differences)


def line(label: str, interval: dict) -> str:
    return (f"  {label}: {interval['mean']:+.3f} {format_interval(interval)} "
            f"({interval['n']} series)")


def report_trainings(trainings: dict[str, list[dict]], means: dict, out: dict) -> None:
    """Each training's mean ρ per split, and each training against the mean of all."""
    rhos = {seed: [float(np.mean(list(r.values()))) for r in runs]
            for seed, runs in trainings.items()}
    for seed, values in rhos.items():
        out["per_seed"][seed] = {"trainings": values, "std": float(np.std(values, ddof=1))}
        print(f"  seed {seed}: " + ", ".join(f"{x:.3f}" for x in values)
              + f"  (mean {np.mean(values):.3f}, std {np.std(values, ddof=1):.3f})")
    count = min(len(values) for values in rhos.values())
    overall = [float(np.mean([values[i] for values in rhos.values()])) for i in range(count)]
    print("  over the splits, training by training: " + ", ".join(f"{x:.3f}" for x in overall)
          + f"; their mean {np.mean(overall):.3f}")
    print("\neach training minus the mean of all, paired over (seed, series):")
    for index in range(count):
        interval = paired({seed: runs[index] for seed, runs in trainings.items()}, means)
        out["trainings"][index] = interval
        print(line(f"training {index + 1}" + (" (the first)" if index == 0 else ""), interval))


def report_ensemble(per_seed: dict, means: dict, out: dict) -> None:
    """The experiment's ensemble, where it has one, against the mean of its trainings' ρ."""
    if not all("full_ensemble" in result for result in per_seed.values()):
        return
    ensemble = {seed: result["full_ensemble"]["per_series_spearman"]
                for seed, result in per_seed.items()}
    rho = float(np.mean([result["full_ensemble"]["series_spearman"]
                         for result in per_seed.values()]))
    interval = paired(ensemble, means)
    out["ensemble"] = {"series_spearman": rho, "minus_reference_mean": interval}
    print("\nthe ensemble (the mean of the trainings' predictions) minus the mean of their ρ:")
    print(line(f"ensemble ({rho:.3f})", interval))


def report_other(label: str, run_dir: Path, per_seed: dict, means: dict, min_size: int,
                 out: dict) -> None:
    """Another run, by the mean of its own trainings, against the reference's mean."""
    runs = trainings_of(run_dir, per_seed, min_size)
    ours = {seed: mean_over_trainings(runs[seed]) for seed in means}
    count = min(len(r) for r in runs.values())
    rho = float(np.mean([np.mean(list(o.values())) for o in ours.values()]))
    interval = paired(ours, means)
    out["others"][label] = {"trainings_per_split": count, "series_spearman": rho,
                            "minus_reference_mean": interval}
    print(line(f"{label} ({rho:.3f}" + (f", mean of {count} trainings)" if count > 1 else ")"),
               interval))


def run_dir_of(spec: str) -> Path:
    """The run directory of a ``label=RUN_DIR`` (or ``label=RUN_DIR/results.json``)."""
    path = Path(spec.partition("=")[2])
    return path.parent if path.suffix == ".json" else path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reference", type=Path, help="an experiment run with ensemble members")
    parser.add_argument("others", nargs="*", help="label=RUN_DIR, same splits")
    parser.add_argument("--min-series-size", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    _, per_seed = load(f"reference={args.reference}")
    others = dict(load(spec) for spec in args.others)
    check_same_splits({"reference": per_seed, **others})
    trainings = trainings_of(args.reference, per_seed, args.min_series_size)
    if min(len(runs) for runs in trainings.values()) < 2:
        raise SystemExit(f"{args.reference}: one training on some split; run the experiment "
                         "with experiment.ensemble=3 to measure the training noise")
    means = {seed: mean_over_trainings(runs) for seed, runs in trainings.items()}
    out: dict = {"reference": str(args.reference), "per_seed": {}, "trainings": {},
                 "others": {}}
    print(f"{args.reference}: mean per-series Spearman of each training, per split")
    report_trainings(trainings, means, out)
    report_ensemble(per_seed, means, out)
    if others:
        print("\nother runs minus the mean of the reference's trainings:")
    for spec, (label, other) in zip(args.others, others.items(), strict=True):
        report_other(label, run_dir_of(spec), other, means, args.min_series_size, out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
        print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
