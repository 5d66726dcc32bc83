"""Vina on Uni-FEP series (issue 27): does a docking score rank a series of an unseen target?

Each ligand of the chosen series is posed from its SMILES onto the series' reference ligand with
plgraph's own posing (as the cache does) and scored with :func:`plgraph.featurize.vina_terms.
vina_terms`: Vina in place, after local optimization, and Vinardo. One CSV row per ligand
(series, ligand_name, the three scores in kcal/mol, or the reason it could not be scored), the
input of ``bench/series_mode.py --vina``. Series are those of ``--predictions`` with >= 20
ligands (the series-mode bench's), the report pool of 60 by default (``--part all``: every one).

Run from the repo root: ``python bench/vina_series.py --predictions CSV [--part report|all]
[--workers 2] [--out bench/results/vina_series.csv]``.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import OrderedDict, defaultdict
from multiprocessing import Pool
from pathlib import Path

from rdkit import RDLogger
from series_mode import REPORT_POOL, UNI_FEP, load_series, read_predictions, sample_series

from plgraph.config import DataConfig, FeaturizeConfig
from plgraph.data.featurizer import pose_record
from plgraph.data.layouts import read_inputs
from plgraph.errors import FeaturizationError
from plgraph.featurize.protein import load_protein
from plgraph.featurize.vina_terms import vina_terms

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results" / "vina_series.csv"
COLUMNS = ("series", "ligand_name", "vina_score", "vina_optimized", "vinardo_score", "error")


def score_series(records: list) -> list[dict]:
    """Pose and score every record of one series (one protein, one reference)."""
    RDLogger.DisableLog("rdApp.*")
    config = FeaturizeConfig()
    rows, sites = [], OrderedDict()
    try:
        protein = load_protein(records[0].protein, config)
    except FeaturizationError as error:
        return [{"series": r.group, "ligand_name": r.ligand_name, "error": str(error)}
                for r in records]
    for record in records:
        row = {"series": record.group, "ligand_name": record.ligand_name}
        try:
            pose = pose_record(record, protein, config, sites)
            terms = vina_terms(record.protein, pose.mol, record.id)
            row.update(vina_score=terms.vina_score, vina_optimized=terms.vina_optimized,
                       vinardo_score=terms.vinardo_score)
        except FeaturizationError as error:
            row["error"] = str(error)
        rows.append(row)
    return rows


def chosen_series(predictions: dict, part: str) -> list[str]:
    """The series-mode bench's series (the same loading and rules), or its report pool."""
    every, _ = load_series(UNI_FEP, predictions)
    chosen = every if part == "all" else sample_series(every, REPORT_POOL, "report")
    return [series.name for series in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", type=Path, required=True,
                        help="the series-mode bench's CSV (series, ligand_name, model_pk)")
    parser.add_argument("--part", choices=("report", "all"), default="report")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    predictions = read_predictions(args.predictions)
    wanted = set(chosen_series(predictions, args.part))
    started = time.perf_counter()
    records = read_inputs(DataConfig(root=str(UNI_FEP), layout="reference",
                                     label_kind="dg_kcal_mol"), FeaturizeConfig()).records
    by_series = defaultdict(list)
    for record in records:
        if record.group in wanted and (record.group, record.ligand_name) in predictions:
            by_series[record.group].append(record)
    print(f"{len(by_series)} series, {sum(map(len, by_series.values()))} ligands")
    with Pool(args.workers) as pool:
        rows = [row for found in pool.imap_unordered(score_series, by_series.values())
                for row in found]
    elapsed = time.perf_counter() - started
    rows.sort(key=lambda row: (row["series"], row["ligand_name"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    failed = sum(1 for row in rows if row.get("error"))
    print(f"{len(rows)} ligands, {failed} not scored; {elapsed:.0f} s with {args.workers} "
          f"workers ({elapsed * args.workers / max(len(rows), 1):.2f} s per ligand and worker); "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
