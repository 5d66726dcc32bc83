"""The experiment's report: what each method is called, the summary over seeds with paired
intervals, ``results.json``, ``report.md`` and the figures. The method labels live here, not in
``run.py``, so the report reads them without importing the runs (no circle)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from plgraph.config import AppConfig
from plgraph.experiments.comparison import (
    bootstrap_interval,
    excludes_zero,
    format_interval,
    format_mean_std,
    mean_std,
    paired_differences,
)
from plgraph.experiments.few_shot import LABELS as FEW_SHOT_LABELS
from plgraph.experiments.few_shot import few_shot_markdown, summarize_few_shot
from plgraph.experiments.learning_curve import FIGURES as CURVE_FIGURES
from plgraph.experiments.learning_curve import (
    learning_curve_markdown,
    summarize_learning_curve,
)
from plgraph.runtime.atomic import replace_atomically
from plgraph.training.device import resolve_device
from plgraph.training.plots import (
    plot_few_shot,
    plot_learning_curve,
    plot_predicted_vs_measured,
    plot_series_spearman,
)
from plgraph.training.reports import write_json

log = logging.getLogger(__name__)

METHODS = ("full", "full_ensemble", "ligand_only", "heavy_atoms", "vina", "vina_optimized",
           "vinardo", "vina_terms_fit", "descriptors_fit", "vina_descriptors_fit", "series_fit",
           "fep")
DOCKING = ("vina", "vina_optimized", "vinardo", "vina_terms_fit")  # need featurize.vina_terms

BASELINES = ("ligand_only", "heavy_atoms")  # what the full model must beat

LABELS = {"full": "full model (ligand + pocket + interactions)",
          "full_ensemble": "full-model ensemble (mean of experiment.ensemble trainings)",
          "ligand_only": "ligand-only model (same network, ligand graph alone)",
          "heavy_atoms": "heavy-atom count (linear fit on train)",
          "vina": "Vina score of the pose in place (-score / RT ln 10 as pK)",
          "vina_optimized": "Vina score after a local optimization (-score / RT ln 10 as pK)",
          "vinardo": "Vinardo score of the pose in place (-score / RT ln 10 as pK)",
          "vina_terms_fit": "Vina terms (linear fit on train)",
          "descriptors_fit": "ligand descriptors and heavy-atom count (linear fit on train)",
          "vina_descriptors_fit": "Vina terms, ligand descriptors and heavy-atom count (linear "
                                  "fit on train)",
          "series_fit": "Vina terms, ligand descriptors and heavy-atom count (within-series "
                        "linear fit on every train complex)",
          "fep": "Uni-FEP's FEP prediction (fep_dG; physics reference, its test series only)"}

FIGURES = ("pearson", "rmse", "series_spearman")
DOCKING_NEEDS = ("Docking baselines (Vina in place, Vina optimized, Vinardo, the fitted Vina "
                 "terms) need `featurize.vina_terms=true`: this cache has no Vina terms.")



def summarize(config: AppConfig, per_seed: dict, wall_seconds: float) -> dict:
    methods = [m for m in METHODS if all(m in seed for seed in per_seed.values())]
    summary = {}
    for method in methods:
        summary[method] = {}
        for figure in FIGURES:
            values = [per_seed[s][method][figure] for s in per_seed]
            summary[method][figure] = {**mean_std(values), "values": values}
    comparisons = [("full", other) for other in (*BASELINES, "vina", "vina_terms_fit",
                                                 "descriptors_fit", "vina_descriptors_fit",
                                                 "series_fit", "fep")]
    comparisons += [("full_ensemble", other) for other in ("full", *BASELINES)]
    paired = {f"{method}-{other}": bootstrap_interval(paired_differences(per_seed, method,
                                                                         other))
              for method, other in comparisons
              if any(method in r and other in r for r in per_seed.values())}
    device = str(resolve_device(config.trainer.device))  # as the trainings resolved it
    return {"experiment": config.experiment.name, "seeds": list(per_seed),
            "device": device, "model": config.model.to_dict(),
            "data_root": config.data.root, "split_strategy": config.split.strategy,
            "vina_terms": config.featurize.vina_terms,
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
        plot_few_shot(report["few_shot"], FEW_SHOT_LABELS, directory / "few_shot.png")
    if "learning_curve" in report:
        reference = {f: report["summary"]["heavy_atoms"][f]["mean"]
                     for f in ("pearson", "series_spearman")}
        plot_learning_curve(report["learning_curve"], CURVE_FIGURES, reference,
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
    if not report.get("vina_terms"):
        lines += [DOCKING_NEEDS, ""]
    paired = report.get("paired_series_spearman", {})
    if paired:
        lines += ["Paired, on the test series both rank (all seeds pooled): one method's "
                  "Spearman ρ minus another's, mean and 95 % bootstrap interval over series:", "",
                  "| method | minus | series | mean Δρ | 95 % interval | excludes 0 |",
                  "|---|---|---:|---:|---:|---|"]
        for name, entry in paired.items():
            method, other = name.split("-", 1)
            lines.append(f"| {LABELS[method].split(' (')[0]} | {LABELS[other]} | {entry['n']} | "
                         f"{entry['mean']:+.3f} | {format_interval(entry)} | "
                         f"{'yes' if excludes_zero(entry) else 'no'} |")
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
