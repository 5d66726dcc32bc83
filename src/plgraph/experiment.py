"""A reproducible experiment: one training config on several seeds against two baselines, and a
report of what the protein and interaction graphs add.

Per seed: a split of its own (``<split.name>-seed<N>``, seeded with N, so the test targets change
with the seed), the full model, the same network on the ligand graph alone
(``model.use_protein=false``), and a linear fit of pK on the ligand's heavy-atom count on the
train part. Every training is an ordinary resumable run (``<run_name>-seed<N>-full`` and
``-ligand_only``): an interrupted experiment run again skips what is finished and resumes the
rest. The report is ``<run_name>/results.json`` and ``report.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from plgraph.atomic import replace_atomically
from plgraph.comparison import (
    bootstrap_interval,
    format_mean_std,
    mean_std,
    paired_differences,
    plot_predicted_vs_measured,
    plot_series_spearman,
)
from plgraph.config import AppConfig, SplitConfig
from plgraph.data import PreparedData, prepare_data
from plgraph.data.records import dg_to_pk
from plgraph.data.split import split_fingerprint
from plgraph.errors import PlgraphError
from plgraph.few_shot import few_shot_markdown, plot_few_shot, run_few_shot, summarize_few_shot
from plgraph.learning_curve import (
    fewer_targets,
    learning_curve_markdown,
    plot_learning_curve,
    summarize_learning_curve,
    train_targets,
)
from plgraph.stop import STOP
from plgraph.training.anchor import heavy_atom_fit
from plgraph.training.device import resolve_device
from plgraph.training.metrics import (
    mean_series_spearman,
    per_series_spearman,
    regression_metrics,
)
from plgraph.training.reports import write_json
from plgraph.training.trainer import fit_and_read_predictions

log = logging.getLogger(__name__)

METHODS = ("full", "full_ensemble", "ligand_only", "heavy_atoms", "fep")
BASELINES = ("ligand_only", "heavy_atoms")  # what the full model must beat
LABELS = {"full": "full model (ligand + pocket + interactions)",
          "full_ensemble": "full-model ensemble (mean of experiment.ensemble trainings)",
          "ligand_only": "ligand-only model (same network, ligand graph alone)",
          "heavy_atoms": "heavy-atom count (linear fit on train)",
          "fep": "Uni-FEP's FEP prediction (fep_dG; physics reference, its test series only)"}
FEP_COLUMN = "fep_dG (kcal/mol)"
FIGURES = ("pearson", "rmse", "series_spearman")
# An ensemble member's trainer seed is the experiment seed plus this times its number: apart from
# every experiment seed a user would pick, so no member repeats another seed's training.
ENSEMBLE_SEED_STRIDE = 1000


def run_experiment(config: AppConfig, resume_command: str) -> dict:
    """Train and evaluate every seed and method, then write the report; returns its content.

    A stop signal ends it at the next safe point with StopRequested (TrainingInterrupted in a
    training); finished trainings are kept and the next run skips them."""
    with STOP:  # main.py installed the handlers already; a library call installs them here
        return _run_experiment(config, resume_command)


def seed_split(config: AppConfig, seed: int) -> SplitConfig:
    """Seed ``seed``'s own split: ``<split.name>-seed<N>``, seeded with N."""
    return dataclasses.replace(config.split, name=f"{config.split.name}-seed{seed}", seed=seed)


def prepare_experiment(config: AppConfig) -> None:
    """Build the cache and every seed's split, and train nothing (``prepare_only=true``)."""
    with STOP:
        for seed in config.experiment.seeds:
            prepare_data(config.data, config.featurize, seed_split(config, seed))


def _run_experiment(config: AppConfig, resume_command: str) -> dict:
    experiment, started = config.experiment, time.monotonic()
    report_dir = config.run_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    per_seed, points = {}, {}
    for seed in experiment.seeds:
        split = seed_split(config, seed)
        data = capped_training(prepare_data(config.data, config.featurize, split),
                               experiment.max_train_per_series, seed)
        series_of = {entry.id: entry.group for entry in data.cache.entries}
        predictions = {"heavy_atoms": heavy_atom_baseline(data)}
        physics = fep_reference(data)
        if physics is not None:
            predictions["fep"] = physics
        variants = {"full": True, "ligand_only": False}
        if not experiment.ligand_only_baseline:
            del variants["ligand_only"]
        for variant, use_protein in variants.items():
            predictions[variant] = _train(config, data, seed, f"{config.run_name}-seed{seed}-"
                                          f"{variant}", use_protein, LABELS[variant],
                                          resume_command)
        if experiment.ensemble > 1:
            predictions["full_ensemble"] = _ensemble(config, data, seed, predictions["full"],
                                                     resume_command)
        points[seed] = predictions
        full_run = Path(config.output_root) / f"{config.run_name}-seed{seed}-full"
        few_shot = (run_few_shot(config, data, seed, full_run, predictions["full"],
                                 resume_command)
                    if experiment.few_shot_k else None)
        per_seed[seed] = {
            "test_series": sorted({series_of[i] for i in data.split["parts"]["test"]}),
            "test_complexes": len(data.split["parts"]["test"]),
            "clusters": cluster_counts(data),
            **{method: evaluate(found, series_of, experiment.min_series_size)
               for method, found in predictions.items()}}
        if few_shot is not None:
            per_seed[seed]["few_shot"] = few_shot
        if experiment.learning_curve:
            per_seed[seed]["learning_curve"] = _learning_curve(
                config, data, seed, per_seed[seed]["full"], series_of, resume_command)
    report = summarize(config, per_seed, time.monotonic() - started)
    write_report(report, report_dir)
    write_figures(report, points, report_dir)
    return report


def _train(config: AppConfig, data: PreparedData, seed: int, run_name: str, use_protein: bool,
           label: str, resume_command: str, init_seed: int | None = None) -> dict:
    """One training of the experiment on seed ``seed``'s split (skipped when finished, resumed
    when not), its trainer seeded with ``init_seed`` (default: ``seed``); its test
    predictions, with its wall time."""
    STOP.check(f"before the training {run_name}; finished trainings are kept, the next run "
               "skips them")
    run_config = dataclasses.replace(
        config, seed=seed if init_seed is None else init_seed, split=seed_split(config, seed),
        run_name=run_name,
        model=dataclasses.replace(config.model, use_protein=use_protein),
        experiment=dataclasses.replace(config.experiment, name=None))
    log.info("experiment %s, seed %d: %s", config.experiment.name, seed, label)
    results, found = fit_and_read_predictions(run_config, data, resume_command)
    found["wall_seconds"] = results["wall_seconds"]
    return found


def _ensemble(config: AppConfig, data: PreparedData, seed: int, first: dict,
              resume_command: str) -> dict:
    """The mean test prediction of ``experiment.ensemble`` full models on seed ``seed``'s split
    and training part: its own full model (``first``) and the others, trainer seeds
    ``seed + ENSEMBLE_SEED_STRIDE * member``. ``wall_seconds`` counts the added members only
    (the first is the full model's)."""
    size = config.experiment.ensemble
    members = [first]
    for member in range(1, size):
        members.append(_train(config, data, seed, f"{config.run_name}-seed{seed}-full-member"
                              f"{member}", True, f"full model, ensemble member {member + 1} of "
                              f"{size}", resume_command,
                              init_seed=seed + ENSEMBLE_SEED_STRIDE * member))
    for found in members[1:]:
        if list(found["ids"]) != list(first["ids"]):
            raise PlgraphError(f"seed {seed}: the ensemble members' test predictions are not of "
                               "the same complexes in the same order; each run's "
                               "test_predictions.csv must come from this split (rerun with "
                               "fresh=true)")
    return {"ids": first["ids"], "measured": first["measured"],
            "predicted": np.mean([found["predicted"] for found in members], axis=0),
            "wall_seconds": sum(found["wall_seconds"] for found in members[1:])}


def _learning_curve(config: AppConfig, data: PreparedData, seed: int, full: dict,
                    series_of: dict[str, str], resume_command: str) -> dict:
    """The full model on each fraction of the training targets (plgraph.learning_curve); the
    whole training part is the experiment's own full model."""
    curve = {"1.0": {"train_targets": train_targets(data),
                     "train_complexes": len(data.split["parts"]["train"]), **full}}
    for fraction in sorted(config.experiment.learning_curve):
        fewer = fewer_targets(data, fraction, seed)
        found = _train(config, fewer, seed, f"{config.run_name}-seed{seed}-targets{fraction:g}",
                       True, f"full model on {fraction:g} of the training targets",
                       resume_command)
        curve[f"{fraction:g}"] = {"train_targets": train_targets(fewer),
                                  "train_complexes": len(fewer.split["parts"]["train"]),
                                  **evaluate(found, series_of,
                                             config.experiment.min_series_size)}
    return curve


def capped_training(data: PreparedData, per_series: int, seed: int) -> PreparedData:
    """``data`` with its train part cut to ``per_series`` complexes of each series, drawn with
    ``seed`` (0: unchanged). Validation and test stay whole, so the figures stay comparable; the
    cut split has a fingerprint of its own, so a resumed training checks it like any other."""
    if not per_series:
        return data
    series_of = {entry.id: entry.group for entry in data.cache.entries}
    members: dict[str, list[str]] = defaultdict(list)
    for complex_id in data.split["parts"]["train"]:
        members[series_of[complex_id]].append(complex_id)
    rng = np.random.default_rng(seed)
    train = sorted(i for series in sorted(members) for i in
                   (members[series] if len(members[series]) <= per_series else
                    [members[series][k] for k in rng.choice(len(members[series]), per_series,
                                                            replace=False)]))
    parts = {**data.split["parts"], "train": train}
    log.info("experiment.max_train_per_series=%d: training on %d of %d train complexes",
             per_series, len(train), len(data.split["parts"]["train"]))
    return PreparedData(data.cache, {**data.split, "parts": parts,
                                     "fingerprint": split_fingerprint(parts)})


def fep_reference(data: PreparedData) -> dict | None:
    """The physics reference on the test complexes whose input gives Uni-FEP's FEP prediction
    (``fep_dG``, ΔG in kcal/mol, as pK): reported beside the models, never trained on."""
    test = set(data.split["parts"]["test"])
    entries = [e for e in data.cache.entries if e.id in test and FEP_COLUMN in e.extras]
    if not entries:
        return None
    return {"ids": [e.id for e in entries],
            "predicted": np.array([dg_to_pk(e.extras[FEP_COLUMN]) for e in entries]),
            "measured": np.array([e.label for e in entries])}


def cluster_counts(data: PreparedData) -> dict:
    """How many targets (or families, for ``split.strategy=family``) and series each part has."""
    cluster_of = data.split.get("target_of", {})
    group_of = {entry.id: entry.group for entry in data.cache.entries}
    return {part: {"complexes": len(ids), "series": len({group_of[i] for i in ids}),
                   "clusters": len({cluster_of[i] for i in ids}) if cluster_of else None}
            for part, ids in data.split["parts"].items()}


def heavy_atom_baseline(data: PreparedData) -> dict:
    """pK = a * heavy atoms + b, fitted by least squares on the train part, applied to test."""
    def counts_and_labels(part: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        dataset = data.part(part)
        graphs = [dataset[i] for i in range(len(dataset))]
        return (list(dataset.ids), np.array([g["ligand"].num_nodes for g in graphs], float),
                np.array([float(g.y) for g in graphs]))

    _, train_counts, train_labels = counts_and_labels("train")
    slope, intercept = heavy_atom_fit(train_counts, train_labels)
    ids, test_counts, test_labels = counts_and_labels("test")
    return {"ids": ids, "predicted": slope * test_counts + intercept, "measured": test_labels,
            "fit": {"slope": float(slope), "intercept": float(intercept)}}


def evaluate(found: dict, series_of: dict[str, str], min_series_size: int) -> dict:
    """Global Pearson R and RMSE, and the mean over test series (a congeneric series of one
    target) of the Spearman ρ within the series, for series with ``min_series_size`` ligands
    and more whose measured values are not all equal. A method that predicts one value for the
    whole series (the heavy-atom fit on same-size ligands) ranks nothing: ρ = 0 there, rather
    than leaving the series out and scoring the method on the easier rest."""
    metrics = regression_metrics(found["predicted"], found["measured"])
    spearman = per_series_spearman(found["predicted"], found["measured"],
                                   [series_of[i] for i in found["ids"]], min_series_size)
    result = {"pearson": metrics["pearson"], "rmse": metrics["rmse"],
              "series_spearman": mean_series_spearman(spearman),
              "series_evaluated": len(spearman), "per_series_spearman": spearman}
    for key in ("fit", "wall_seconds"):
        if key in found:
            result[key] = found[key]
    return result


def summarize(config: AppConfig, per_seed: dict, wall_seconds: float) -> dict:
    methods = [m for m in METHODS if all(m in seed for seed in per_seed.values())]
    summary = {}
    for method in methods:
        summary[method] = {}
        for figure in FIGURES:
            values = [per_seed[s][method][figure] for s in per_seed]
            summary[method][figure] = {**mean_std(values), "values": values}
    comparisons = [("full", other) for other in (*BASELINES, "fep")]
    comparisons += [("full_ensemble", other) for other in ("full", *BASELINES)]
    paired = {f"{method}-{other}": bootstrap_interval(paired_differences(per_seed, method,
                                                                         other))
              for method, other in comparisons
              if any(method in r and other in r for r in per_seed.values())}
    device = str(resolve_device(config.trainer.device))  # as the trainings resolved it
    return {"experiment": config.experiment.name, "seeds": list(per_seed),
            "device": device, "model": config.model.to_dict(),
            "data_root": config.data.root, "split_strategy": config.split.strategy,
            "wall_seconds": round(wall_seconds, 1),
            "training_seconds": round(sum(result[m].get("wall_seconds", 0.0)
                                          for result in per_seed.values() for m in methods), 1),
            "summary": summary, "paired_series_spearman": paired,
            **({"few_shot": summarize_few_shot(per_seed)}
               if any("few_shot" in r for r in per_seed.values()) else {}),
            **({"learning_curve": summarize_learning_curve(per_seed)}
               if any("learning_curve" in r for r in per_seed.values()) else {}),
            "per_seed": per_seed}


def write_report(report: dict, directory: Path) -> None:
    write_json(report, directory / "results.json")
    replace_atomically(directory / "report.md",
                       lambda path: path.write_text(markdown(report)))
    log.info("experiment report: %s", directory / "report.md")


def write_figures(report: dict, points: dict, directory: Path) -> None:
    """The per-series ρ of every method, and predicted against measured over all seeds."""
    methods = [m for m in METHODS if any(m in r for r in report["per_seed"].values())]
    short = {m: LABELS[m].split(" (")[0] for m in methods}
    plot_series_spearman(report["per_seed"], methods, short, directory / "series_spearman.png")
    pooled = {short[m]: tuple(np.concatenate([points[s][m][key] for s in points if m in points[s]])
                              for key in ("predicted", "measured")) for m in methods}
    plot_predicted_vs_measured(pooled, directory / "predicted_vs_measured.png")
    if "few_shot" in report:
        plot_few_shot(report["few_shot"], directory / "few_shot.png")
    if "learning_curve" in report:
        reference = {f: report["summary"]["heavy_atoms"][f]["mean"]
                     for f in ("pearson", "series_spearman")}
        plot_learning_curve(report["learning_curve"], reference,
                            directory / "learning_curve.png")


def markdown(report: dict) -> str:
    summary = report["summary"]
    lines = [f"# Experiment `{report['experiment']}`", "",
             f"Seeds {report['seeds']} (each with its own `{report['split_strategy']}` split), "
             f"device {report['device']}; training time {report['training_seconds'] / 60:.1f} min "
             f"(all runs, as recorded in their results.json), this invocation "
             f"{report['wall_seconds'] / 60:.1f} min (finished runs are not retrained).", "",
             "Mean ± standard deviation over seeds, on the test part:", "",
             "| method | Pearson R | RMSE (pK) | mean per-series Spearman ρ |",
             "|---|---:|---:|---:|"]
    for method, figures in summary.items():
        lines.append(f"| {LABELS[method]} | " + " | ".join(format_mean_std(figures[f])
                                                          for f in FIGURES) + " |")
    lines += ["", verdict(summary), ""]
    paired = report.get("paired_series_spearman", {})
    if paired:
        lines += ["Paired, on the test series both rank (all seeds pooled): one method's "
                  "Spearman ρ minus another's, mean and 95 % bootstrap interval over series:", "",
                  "| method | minus | series | mean Δρ | 95 % interval | excludes 0 |",
                  "|---|---|---:|---:|---:|---|"]
        for name, entry in paired.items():
            method, other = name.split("-", 1)
            excludes = entry["low"] > 0 or entry["high"] < 0
            lines.append(f"| {LABELS[method].split(' (')[0]} | {LABELS[other]} | {entry['n']} | "
                         f"{entry['mean']:+.3f} | [{entry['low']:+.3f}, {entry['high']:+.3f}] | "
                         f"{'yes' if excludes else 'no'} |")
        lines += ["", "Figures: `series_spearman.png` (per-series ρ of every method), "
                  "`predicted_vs_measured.png`.", ""]
    if "few_shot" in report:
        lines += few_shot_markdown(report["few_shot"])
    if "learning_curve" in report:
        lines += learning_curve_markdown(report["learning_curve"])
    lines += ["## Per seed", ""]
    for seed, result in report["per_seed"].items():
        lines.append(f"Seed {seed}: {result['test_complexes']} test complexes from "
                     f"{len(result['test_series'])} series "
                     f"({', '.join(result['test_series'])}).")
        clusters = result.get("clusters")
        if clusters:
            lines.append("Parts (complexes / series / targets or families): " + "; ".join(
                f"{part} {c['complexes']} / {c['series']} / {c['clusters']}"
                for part, c in clusters.items()) + ".")
        lines.append("")
        lines.append("| method | Pearson R | RMSE | per-series Spearman ρ (series) |")
        lines.append("|---|---:|---:|---:|")
        for method in (m for m in METHODS if m in result):
            m = result[method]
            lines.append(f"| {method} | {m['pearson']:.3f} | {m['rmse']:.3f} | "
                         f"{m['series_spearman']:.3f} ({m['series_evaluated']}) |")
        lines.append("")
    return "\n".join(lines) + "\n"


def verdict(summary: dict) -> str:
    """Plain words on whether the full model beats both baselines, figure by figure (means)."""
    if "full" not in summary:
        return ""
    better = {"pearson": max, "series_spearman": max, "rmse": min}
    names = {"pearson": "Pearson R", "rmse": "RMSE", "series_spearman": "per-series Spearman"}
    wins, losses = [], []
    for figure, best in better.items():
        full = summary["full"][figure]["mean"]
        others = [summary[m][figure]["mean"] for m in summary if m in BASELINES]
        (wins if best([full, *others]) == full else losses).append(names[figure])
    if not losses:
        return ("The full model beats both baselines on every figure (means; compare the "
                "spreads before calling a difference real).")
    return (f"The full model does not beat the baselines on: {', '.join(losses)}"
            + (f"; it does on: {', '.join(wins)}" if wins else "") + ".")
