"""Series mode (issue 24) on Uni-FEP: how well each small-data learner ranks a series from k
measured ligands, how honest its std is, and how fast an acquisition finds the best ligand.

For each Uni-FEP series with at least 20 ligands (the first ``--max-series`` of a seeded pool of
60; ``--part dev`` runs the other series instead, where the design choices were made),
each k in 5, 10, 20 (only where at least 10 ligands are left to rank) and each of ``--draws``
draws, k ligands are drawn at random (seeded by the series, k and the draw) as "measured" and
every method predicts the rest, scored by Spearman rho on them. Methods
(:mod:`plgraph.inference.series` where not said otherwise):

- ``gp_alone``; ``rf``: scikit-learn random forest, 500 trees, on the same count fingerprints;
  ``heavy_atom_fit``: least-squares line pK ~ heavy atoms on the k; ``fep_alone``: Uni-FEP's own
  ``fep_dG`` as pK, the k unused;
- ``gp_prior``, ``anchored``, ``gp_anchored``, ``blend`` with these priors: ``ha`` =
  HEAVY_ATOM_SLOPE x heavy atoms (a weak, physics-free prior), ``fep`` = ``fep_dG`` as pK (a
  strong prior: what a good model would give); with ``--predictions CSV`` (columns series,
  ligand_name, model_pk) also ``model`` and ``model_alone``; with ``--random-prior`` also
  ``random`` (N(0, 0.8) pK per ligand: a useless prior, the test of a method's safety); with
  ``--vina CSV`` (bench/vina_series.py: the series posed and scored by Vina) also ``vina`` as a
  prior and ``vina_alone``, ``vina_optimized_alone``, ``vinardo_alone`` (the k unused), every
  method on the ligands Vina scored;
- ``auto[prior]``: what predict.py's default ``series_method=auto`` does with a model whose
  record is the prior's mean per-series rho on the dev part (``method_for_record``: the GP
  alone below 0.1, the guarded ``blend`` up to 0.5, ``blend`` mixing always above), paired
  also against ``blend`` with the same prior.

Reported: mean per-series rho per method and k (draws averaged within a series first; with
``--max-series 0`` also on the report pool alone, where no design choice was made); paired
per-series differences against ``gp_alone`` and ``rf`` with 95 % bootstrap intervals over series;
calibration (share of query ligands within 1 and 2 predicted std, pooled); and a simulated
campaign on the sampled series of at least 30 ligands: 5 random measured, then 15 rounds of one
ligand each picked by an arm (GP UCB / EI, greedy forest, greedy FEP, random); share of series
whose best ligand has been made, and rounds to make a ligand of the top 5 % (0 where the first 5
hold one; an arm that never gets there in 15 rounds counts 16).

Run from the repo root: ``python bench/series_mode.py [--max-series N] [--draws D]
[--campaign-series N] [--predictions CSV]``; prints the figures and writes
``bench/results/series_mode.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger
from scipy.stats import spearmanr
from sklearn.ensemble import RandomForestRegressor
from threadpoolctl import threadpool_limits

from plgraph.inference.series import (
    METHODS,
    count_fingerprints,
    heavy_atoms,
    method_for_record,
    suggest,
)
from plgraph.inference.writers import INTERVAL_LEVELS
from plgraph.training.plots import plot_few_shot
from plgraph.training.reports import write_json

REPO = Path(__file__).resolve().parent.parent
UNI_FEP = Path(os.environ.get("PLGRAPH_UNI_FEP") or REPO.parent / "shared" / "data" / "uni-fep")
RESULTS = REPO / "bench" / "results" / "series_mode.json"
FIGURE = REPO / "bench" / "figures" / "series_mode.png"
KCAL_PER_PK = 1.3637  # RT ln 10 at 298.15 K
# pK per heavy atom of the heavy-atom prior: the across-protein fit on plgraph's training parts
# measured 0.07-0.09 (bench/README.md, transfer experiments). Only ``anchored`` and
# ``gp_anchored`` see the scale; ``gp_prior`` fits its own.
HEAVY_ATOM_SLOPE = 0.08
KS = (5, 10, 20)
MIN_LIGANDS = 20
MIN_QUERIES = 10  # a Spearman rho on fewer ligands is mostly noise
RF_TREES = 500
CAMPAIGN_START, CAMPAIGN_ROUNDS, CAMPAIGN_MIN_LIGANDS = 5, 15, 30
CAMPAIGN_RF_TREES = 100  # 15 refits per series: 500 trees would take most of the time budget
BOOTSTRAP = 2000
REPORT_POOL = 60  # series sampled for reporting; the others are the dev part
RANDOM_PRIOR_STD = 0.8  # pK: the median spread of a Uni-FEP series
# Paired differences are taken against these (model_alone where --predictions gives it).
REFERENCES = ("gp_alone", "rf", "model_alone")
PRIOR_METHODS = ("gp_prior", "anchored", "gp_anchored", "blend")


@dataclass(frozen=True)
class Series:
    """One Uni-FEP series, the ligands that parsed and have numbers (pK units throughout)."""

    name: str
    ligand_names: tuple[str, ...]
    fps: np.ndarray
    heavy: np.ndarray
    pk: np.ndarray
    # "ha", "fep"; "model" where --predictions covers it, "random" with --random-prior, "vina"
    # with --vina
    priors: dict[str, np.ndarray]
    # Scores ranked as they are, the k unused ("vina", "vina_optimized", "vinardo" with --vina)
    baselines: dict[str, np.ndarray]


def seed_of(*parts) -> int:
    """A seed stable across processes (``hash`` of a str is salted per process)."""
    return zlib.crc32("|".join(map(str, parts)).encode())


def read_rows(path: Path) -> tuple[list, list[str]]:
    """(mol, name, pK, FEP pK) of each usable row of a result_dG.csv, and why the others were
    dropped."""
    rows, dropped = [], []
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            mol = Chem.MolFromSmiles(row["ligand_smiles"])
            try:
                pk = -float(row["exp_dG (kcal/mol)"]) / KCAL_PER_PK
                fep = -float(row["fep_dG (kcal/mol)"]) / KCAL_PER_PK
            except ValueError:
                dropped.append(f"{path}:{line}: exp_dG or fep_dG is not a number")
                continue
            if mol is None:
                dropped.append(f"{path}:{line}: RDKit cannot parse the SMILES")
                continue
            if not (math.isfinite(pk) and math.isfinite(fep)):
                dropped.append(f"{path}:{line}: exp_dG or fep_dG is not finite")
                continue
            rows.append((Chem.RemoveHs(mol), row["ligand_name"], pk, fep))
    return rows, dropped


def read_predictions(path: Path | None) -> dict[tuple[str, str], float]:
    if path is None:
        return {}
    with path.open(newline="") as handle:
        return {(row["series"], row["ligand_name"]): float(row["model_pk"])
                for row in csv.DictReader(handle)}


def read_vina(path: Path | None) -> dict[tuple[str, str], tuple[float, float, float]]:
    """{(series, ligand): pK of Vina in place, optimized, Vinardo} from bench/vina_series.py's
    CSV, the ligands it scored (a more negative score is a stronger binder: pK = -score / RT
    ln 10)."""
    if path is None:
        return {}
    with path.open(newline="") as handle:
        return {(row["series"], row["ligand_name"]): tuple(
                    -float(row[column]) / KCAL_PER_PK
                    for column in ("vina_score", "vina_optimized", "vinardo_score"))
                for row in csv.DictReader(handle) if not row["error"]}


def load_series(root: Path, predictions: dict, random_prior: bool = False,
                vina: dict | None = None) -> tuple[list[Series], list[str]]:
    """Every series of ``root`` with at least MIN_LIGANDS usable ligands, sorted by name."""
    found, dropped = [], []
    for folder in sorted(p for p in root.iterdir() if (p / "result_dG.csv").is_file()):
        rows, bad = read_rows(folder / "result_dG.csv")
        dropped += bad
        if predictions:  # every method on the same ligands: those the model predicted
            unpredicted = [row for row in rows if (folder.name, row[1]) not in predictions]
            dropped += [f"{folder.name}/{row[1]}: no model prediction (--predictions)"
                        for row in unpredicted]
            rows = [row for row in rows if (folder.name, row[1]) in predictions]
        if vina:  # likewise the ligands Vina scored
            unscored = [row for row in rows if (folder.name, row[1]) not in vina]
            dropped += [f"{folder.name}/{row[1]}: no Vina score (--vina)" for row in unscored]
            rows = [row for row in rows if (folder.name, row[1]) in vina]
        if len(rows) < MIN_LIGANDS:
            continue
        mols, names, pk, fep = zip(*rows, strict=True)
        heavy = heavy_atoms(mols)
        priors = {"ha": HEAVY_ATOM_SLOPE * heavy, "fep": np.array(fep)}
        if predictions:
            priors["model"] = np.array([predictions[(folder.name, name)] for name in names])
        baselines = {}
        if vina:
            scores = np.array([vina[(folder.name, name)] for name in names])
            priors["vina"] = scores[:, 0]
            baselines = dict(zip(("vina", "vina_optimized", "vinardo"), scores.T, strict=True))
        if random_prior:  # a useless prior at a series' pK spread: what safety must survive
            rng = np.random.default_rng(seed_of("random prior", folder.name))
            priors["random"] = rng.normal(0.0, RANDOM_PRIOR_STD, len(names))
        found.append(Series(folder.name, names, count_fingerprints(mols), heavy, np.array(pk),
                            priors, baselines))
    return found, dropped


def spearman(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Spearman rho; a constant prediction ranks nothing and scores 0."""
    if np.ptp(prediction) == 0:
        return 0.0
    return float(spearmanr(prediction, truth)[0])


def heavy_atom_fit(series: Series, measured, query) -> np.ndarray:
    counts, labels = series.heavy[measured], series.pk[measured]
    if np.ptp(counts) == 0:
        return np.full(len(query), labels.mean())
    slope, intercept = np.polyfit(counts, labels, 1)
    return slope * series.heavy[query] + intercept


def forest(series: Series, measured, query, trees: int, seed: int) -> np.ndarray:
    model = RandomForestRegressor(trees, random_state=seed, n_jobs=1)
    return model.fit(series.fps[measured], series.pk[measured]).predict(series.fps[query])


def predict_all(series: Series, measured, query, seed: int,
                prior_records: dict[str, float] | None = None) -> dict:
    """{method: (mean, its SeriesPrediction or None)} for one draw (None: a method without an
    uncertainty); ``auto[prior]`` for each prior with a record in ``prior_records``: the method
    its record earns (``method_for_record``)."""
    out = {"rf": (forest(series, measured, query, RF_TREES, seed), None),
           "heavy_atom_fit": (heavy_atom_fit(series, measured, query), None),
           "fep_alone": (series.priors["fep"][query], None)}
    fps, pk = series.fps, series.pk
    alone = METHODS["gp_alone"](fps[measured], pk[measured], fps[query])
    out["gp_alone"] = (alone.mean, alone)
    if "model" in series.priors:
        out["model_alone"] = (series.priors["model"][query], None)
    for name, values in series.baselines.items():
        out[f"{name}_alone"] = (values[query], None)
    for prior_name, prior in series.priors.items():
        for method in PRIOR_METHODS:
            result = METHODS[method](fps[measured], pk[measured], fps[query], prior[measured],
                                     prior[query])
            out[f"{method}[{prior_name}]"] = (result.mean, result)
        if prior_records and prior_name in prior_records:
            choice = method_for_record(prior_records[prior_name])
            result = METHODS[choice.method](fps[measured], pk[measured], fps[query],
                                            prior[measured], prior[query], **choice.options)
            out[f"auto[{prior_name}]"] = (result.mean, result)
    return out


def records_of_priors(series_list: list[Series]) -> dict[str, float]:
    """Each prior's record: its mean per-series rho over every ligand of ``series_list`` (the
    dev part: what a validation part would have said of it before the reported series)."""
    return {name: float(np.mean([spearman(s.priors[name], s.pk) for s in series_list]))
            for name in series_list[0].priors}


def every_draw(series_list: list[Series], draws: int):
    """(series, k, draw, seed, measured, query) of every draw: each k in KS with at least
    MIN_QUERIES ligands left to rank, k ligands drawn as measured (seeded by series, k and
    draw), the rest the queries. The ranking here and the dev-part scripts beside this one
    (series_mode_guard.py, series_calibration.py) score the same draws."""
    for series in series_list:
        for k in KS:
            if len(series.pk) - k < MIN_QUERIES:
                continue
            for draw in range(draws):
                seed = seed_of(series.name, k, draw)
                order = np.random.default_rng(seed).permutation(len(series.pk))
                yield series, k, draw, seed, order[:k], order[k:]


def dev_parser(description: str) -> argparse.ArgumentParser:
    """The options of a dev-part script: the model's predictions as a prior, the draws."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--predictions", type=Path, default=None,
                        help="CSV with columns series, ligand_name, model_pk")
    parser.add_argument("--draws", type=int, default=3)
    return parser


def run_ranking(series_list: list[Series], draws: int,
                prior_records: dict[str, float] | None = None) -> list[dict]:
    """One record per (series, k, draw, method): rho, the 1- and 2-std hits and the hits of
    the central 68 and 95 % intervals."""
    records = []
    for series, k, draw, seed, measured, query in every_draw(series_list, draws):
        truth = series.pk[query]
        for method, (mean, prediction) in predict_all(series, measured, query, seed,
                                                      prior_records).items():
            record = {"series": series.name, "k": k, "draw": draw, "method": method,
                      "rho": spearman(mean, truth), "queries": len(query)}
            if prediction is not None:
                error = np.abs(mean - truth)
                record["within_1"] = int((error <= prediction.std).sum())
                record["within_2"] = int((error <= 2 * prediction.std).sum())
                for level in INTERVAL_LEVELS:
                    low, high = prediction.interval(level / 100)
                    record[f"within_{level}"] = int(((low <= truth) & (truth <= high)).sum())
            records.append(record)
    return records


def bootstrap_mean(values: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Mean and its 95 % percentile bootstrap interval over the entries (series)."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (BOOTSTRAP, len(values)))].mean(axis=1)
    return float(values.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def per_series_rho(records: list[dict]) -> dict:
    """{(k, method): {series: rho averaged over draws}}."""
    sums = defaultdict(lambda: defaultdict(list))
    for record in records:
        sums[(record["k"], record["method"])][record["series"]].append(record["rho"])
    return {key: {s: float(np.mean(v)) for s, v in by.items()} for key, by in sums.items()}


def summarize_ranking(records: list[dict]) -> dict:
    """Mean rho, paired differences against the references, and calibration, per k."""
    rho = per_series_rho(records)
    summary = {}
    for (k, method), by_series in sorted(rho.items()):
        entry = {"series": len(by_series), "mean_rho": float(np.mean(list(by_series.values())))}
        references = REFERENCES + ((method.replace("auto[", "blend["),)
                                   if method.startswith("auto[") else ())
        for reference in references:
            other = rho.get((k, reference), {})
            shared = sorted(set(by_series) & set(other))
            if method != reference and shared:
                diff = np.array([by_series[s] - other[s] for s in shared])
                entry[f"minus_{reference}"] = bootstrap_mean(diff, seed_of(k, method, reference))
        hits = [r for r in records if r["k"] == k and r["method"] == method and "within_1" in r]
        if hits:
            total = sum(r["queries"] for r in hits)
            entry["within_1_std"] = sum(r["within_1"] for r in hits) / total
            entry["within_2_std"] = sum(r["within_2"] for r in hits) / total
            if all("within_68" in r for r in hits):  # records of runs before the intervals lack it
                for level in INTERVAL_LEVELS:
                    entry[f"within_{level}_interval"] = sum(r[f"within_{level}"]
                                                            for r in hits) / total
        summary[f"k={k}|{method}"] = entry
    return summary


def campaign_pick(series: Series, made: list[int], candidates: np.ndarray, arm: str,
                    rng: np.random.Generator) -> int:
    """The index (into ``candidates``) the arm makes next."""
    fps, pk, best = series.fps, series.pk, series.pk[made].max()
    if arm == "random":
        return int(rng.integers(len(candidates)))
    if arm == "rf_greedy":
        return int(np.argmax(forest(series, made, candidates, CAMPAIGN_RF_TREES, 0)))
    if arm == "fep_greedy":
        return int(np.argmax(series.priors["fep"][candidates]))
    method, prior_name, acquisition = arm.split(":")
    if prior_name == "none":
        result = METHODS[method](fps[made], pk[made], fps[candidates])
    else:
        prior = series.priors[prior_name]
        result = METHODS[method](fps[made], pk[made], fps[candidates], prior[made],
                                 prior[candidates])
    return int(suggest(result.mean, result.std, 1, best, acquisition)[0])


CAMPAIGN_ARMS = ("random", "rf_greedy", "fep_greedy", "gp_alone:none:ucb", "gp_alone:none:ei",
                 "gp_prior:ha:ucb", "gp_prior:fep:ucb", "gp_prior:fep:ei", "blend:fep:ucb",
                 "gp_prior:model:ucb", "blend:model:ucb")


def run_campaign(series: Series, arm: str, draw: int) -> dict:
    """One simulated campaign: whether the best ligand was made, rounds to the top 5 %."""
    n = len(series.pk)
    rng = np.random.default_rng(seed_of("campaign", series.name, draw))
    made = list(rng.permutation(n)[:CAMPAIGN_START])
    top = set(np.argsort(-series.pk, kind="stable")[:math.ceil(0.05 * n)].tolist())
    best = int(np.argmax(series.pk))
    reached = 0 if top & set(made) else None
    arm_rng = np.random.default_rng(seed_of("arm", series.name, draw, arm))
    for round_ in range(1, CAMPAIGN_ROUNDS + 1):
        candidates = np.setdiff1d(np.arange(n), made)
        made.append(int(candidates[campaign_pick(series, made, candidates, arm, arm_rng)]))
        if reached is None and made[-1] in top:
            reached = round_
    return {"series": series.name, "draw": draw, "arm": arm, "best_made": best in made,
            "rounds_to_top5": reached}


def summarize_campaign(runs: list[dict]) -> dict:
    summary = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = [r for r in runs if r["arm"] == arm]
        if not mine:
            continue
        rounds = [CAMPAIGN_ROUNDS + 1 if r["rounds_to_top5"] is None else r["rounds_to_top5"]
                  for r in mine]
        summary[arm] = {"campaigns": len(mine),
                        "best_made": float(np.mean([r["best_made"] for r in mine])),
                        "top5_reached": float(np.mean([r["rounds_to_top5"] is not None
                                                       for r in mine])),
                        "mean_rounds_to_top5": float(np.mean(rounds))}
    return summary


def print_ranking(summary: dict) -> None:
    print("\nranking: mean per-series Spearman rho; paired vs gp_alone and vs rf [95% bootstrap];"
          " calibration (share within 1 / 2 std; share inside the 68 / 95 % intervals)")
    for key, entry in summary.items():
        line = f"{key:36s} n={entry['series']:3d} rho={entry['mean_rho']:+.3f}"
        for name in entry:
            if name.startswith("minus_"):
                mean, low, high = entry[name]
                line += f"  -{name[6:]} {mean:+.3f} [{low:+.3f},{high:+.3f}]"
        if "within_1_std" in entry:
            line += f"  cal {entry['within_1_std']:.2f}/{entry['within_2_std']:.2f}"
        if "within_68_interval" in entry:
            line += f" int {entry['within_68_interval']:.2f}/{entry['within_95_interval']:.2f}"
        print(line)


def print_campaign(summary: dict) -> None:
    print(f"\ncampaign: {CAMPAIGN_START} random, then {CAMPAIGN_ROUNDS} rounds of one")
    for arm, entry in summary.items():
        print(f"{arm:20s} n={entry['campaigns']:3d} best made {entry['best_made']:.2f}  "
              f"top 5% reached {entry['top5_reached']:.2f}  mean rounds to top 5% "
              f"{entry['mean_rounds_to_top5']:.1f}")


# The methods the figure draws (rho against k), with their legend.
FIGURE_METHODS = {"gp_alone": "fingerprint GP alone", "rf": "random forest (count FP)",
                  "heavy_atom_fit": "heavy-atom fit on the k",
                  "gp_prior[ha]": "gp_prior, heavy-atom prior",
                  "anchored[ha]": "anchored, heavy-atom prior",
                  "fep_alone": "FEP alone (k unused)", "gp_prior[fep]": "gp_prior, FEP prior",
                  "blend[fep]": "blend, FEP prior",
                  "gp_anchored[fep]": "gp_anchored, FEP prior"}


# With --predictions, the figure is about the trained model: these instead (ten at most, so
# that no colour repeats).
MODEL_FIGURE_METHODS = {"gp_alone": "fingerprint GP alone", "rf": "random forest (count FP)",
                        "model_alone": "the model alone (k unused)",
                        "blend[model]": "blend (default), model prior",
                        "gp_prior[model]": "gp_prior, model prior",
                        "anchored[model]": "anchored, model prior",
                        "blend[random]": "blend, random prior",
                        "fep_alone": "FEP alone (k unused)",
                        "gp_anchored[fep]": "gp_anchored, FEP prior"}


def write_figure(ranking: dict, path: Path) -> None:
    """Mean per-series rho against k for FIGURE_METHODS (plgraph.training.plots draws it)."""
    ks = sorted({int(key.split("|")[0].removeprefix("k=")) for key in ranking})
    with_model = all(f"k={k}|blend[model]" in ranking for k in ks)
    methods = {m: label for m, label in (MODEL_FIGURE_METHODS if with_model
                                         else FIGURE_METHODS).items()
               if all(f"k={k}|{m}" in ranking for k in ks)}
    summary = {k: {"methods": {m: {"mean": ranking[f"k={k}|{m}"]["mean_rho"], "std": None}
                               for m in methods}} for k in ks}
    plot_few_shot(summary, methods, path)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-series", type=int, default=REPORT_POOL,
                        help=f"the first N of a seeded pool of {REPORT_POOL} eligible series "
                             "(0: every series, the dev part included)")
    parser.add_argument("--draws", type=int, default=3, help="random draws per series and k")
    parser.add_argument("--campaign-series", type=int, default=30,
                        help="campaign on at most this many of the sampled series of >= 30")
    parser.add_argument("--part", choices=("report", "dev"), default="report",
                        help="the sampled series, or the others (for design choices)")
    parser.add_argument("--predictions", type=Path, default=None,
                        help="CSV with columns series, ligand_name, model_pk")
    parser.add_argument("--random-prior", action="store_true",
                        help="also each prior method with a random prior (N(0, 0.8) pK per "
                             "ligand): a method safe by design stays level with gp_alone there")
    parser.add_argument("--vina", type=Path, default=None,
                        help="bench/vina_series.py's CSV: Vina as a prior and as baselines")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--figure", type=Path, default=FIGURE,
                        help="the figure of rho against k drawn from the results")
    parser.add_argument("--figure-only", action="store_true",
                        help="draw --figure from the existing --out, measure nothing")
    parser.add_argument("--resummarize", action="store_true",
                        help="recompute the summaries of the existing --out from its records "
                             "(and redraw --figure), measure nothing")
    return parser.parse_args()


def pool_indices(count: int) -> np.ndarray:
    """Indices (into the sorted eligible series) of the seeded report pool."""
    return np.random.default_rng(seed_of("series", REPORT_POOL)).choice(
        count, min(REPORT_POOL, count), replace=False)


def sample_series(series_list: list[Series], limit: int, part: str) -> list[Series]:
    """The reported series (``part="report"``): the first ``limit`` of a seeded pool of
    REPORT_POOL, all series where ``limit`` is 0; or the series outside the pool (``"dev"``),
    on which the design choices of :mod:`plgraph.inference.series` were made so that the
    reported figures are not tuned on."""
    pool = pool_indices(len(series_list))
    if part == "dev":
        return [s for i, s in enumerate(series_list) if i not in set(pool.tolist())]
    if limit <= 0:
        return series_list
    return [series_list[i] for i in sorted(pool[:limit].tolist())]


def report_pool_summary(records: list[dict], every_name: list[str]) -> dict:
    """The ranking summary on the report pool's series alone, where every series was run."""
    pool = set(np.array(every_name)[pool_indices(len(every_name))].tolist())
    return summarize_ranking([r for r in records if r["series"] in pool])


def resummarize(path: Path, figure: Path) -> None:
    """Summaries of an earlier run recomputed from its records (e.g. a new reference)."""
    results = json.loads(path.read_text())
    results["ranking"] = summarize_ranking(results["records"])
    print_ranking(results["ranking"])
    every = sorted(results["series"])
    if results["settings"]["max_series"] <= 0 and results["settings"]["part"] == "report":
        results["ranking_report_pool"] = report_pool_summary(results["records"], every)
        print("\nthe same on the report pool alone:")
        print_ranking(results["ranking_report_pool"])
    write_json(results, path)
    write_figure(results["ranking"], figure)
    print(f"wrote {path} and {figure}")


def main() -> None:
    args = parse_args()
    if args.figure_only:
        write_figure(json.loads(args.out.read_text())["ranking"], args.figure)
        print(f"wrote {args.figure}")
        return
    if args.resummarize:
        resummarize(args.out, args.figure)
        return
    RDLogger.DisableLog("rdApp.*")  # stereo warnings on Uni-FEP's SMILES: not our question
    started = time.perf_counter()
    every, dropped = load_series(UNI_FEP, read_predictions(args.predictions), args.random_prior,
                                 read_vina(args.vina))
    chosen = sample_series(every, args.max_series, args.part)
    loaded = time.perf_counter()
    print(f"{len(every)} series with >= {MIN_LIGANDS} ligands, {len(chosen)} sampled; "
          f"{len(dropped)} rows dropped; loaded in {loaded - started:.1f} s")
    prior_records = records_of_priors(sample_series(every, 0, "dev"))
    print("priors' records (mean per-series rho on the dev part): " + ", ".join(
        f"{name} {value:.3f}" for name, value in prior_records.items()))
    records = run_ranking(chosen, args.draws, prior_records)
    ranked = time.perf_counter()
    ranking = summarize_ranking(records)
    print_ranking(ranking)
    untouched = None
    if args.part == "report" and len(chosen) > REPORT_POOL:
        # Every series was run (the dev part too): the pool alone is what no choice was made on.
        untouched = report_pool_summary(records, [s.name for s in every])
        print(f"\nthe same on the {REPORT_POOL} series of the report pool alone (no design "
              "choice was made on them):")
        print_ranking(untouched)
    campaign_set = [s for s in chosen if len(s.pk) >= CAMPAIGN_MIN_LIGANDS][:args.campaign_series]
    arms = [arm for arm in CAMPAIGN_ARMS if ":model:" not in arm or args.predictions]
    runs = [run_campaign(series, arm, 0) for series in campaign_set for arm in arms]
    campaign = summarize_campaign(runs)
    print_campaign(campaign)
    finished = time.perf_counter()
    timing = {"load_s": loaded - started, "ranking_s": ranked - loaded,
              "campaign_s": finished - ranked, "total_s": finished - started}
    print(f"\ntime: load {timing['load_s']:.0f} s, ranking {timing['ranking_s']:.0f} s, "
          f"campaign {timing['campaign_s']:.0f} s, total {timing['total_s']:.0f} s")
    write_json({
        "settings": {"max_series": args.max_series, "part": args.part, "draws": args.draws,
                     "ks": KS, "min_queries": MIN_QUERIES, "heavy_atom_slope": HEAVY_ATOM_SLOPE,
                     "rf_trees": RF_TREES, "campaign_rf_trees": CAMPAIGN_RF_TREES,
                     "random_prior": args.random_prior, "prior_records": prior_records,
                     "vina": str(args.vina) if args.vina else None,
                     "predictions": str(args.predictions) if args.predictions else None},
        "series": [s.name for s in chosen], "campaign_series": [s.name for s in campaign_set],
        "dropped_rows": dropped, "timing": timing, "ranking": ranking,
        "ranking_report_pool": untouched, "campaign": campaign,
        "records": records, "campaign_runs": runs}, args.out)
    write_figure(ranking, args.figure)
    print(f"wrote {args.out} and {args.figure}")


if __name__ == "__main__":
    with threadpool_limits(1):  # one core, as budgeted: BLAS threads gain nothing on k x k
        main()
