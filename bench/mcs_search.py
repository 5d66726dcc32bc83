"""How long posing's common-substructure search takes on every Uni-FEP ligand, in seconds and
in rdFMCS's own progress reports (its steps), one core.

Until DATA_PROCESSING_VERSION 7, posing (``plgraph.featurize.posing``) stopped the search at 2 s
and failed the ligand. A limit on time makes the set of posed ligands depend on the machine's
speed and load: two builds of the transfer cache by the same code on the same inputs kept 8,007
complexes (the machine busy) and 8,034 (idle). This measures, on an idle machine, where the
ligands lie against such a limit and how many steps their searches take, which is what
posing's limit on steps (``featurize.posing.mcs_steps``, the same on every machine) is set from.

For each ligand: the RASCAL seed search and the seeded rdFMCS search, exactly as posing runs
them (``seed_fragment``, ``mcs_parameters``), each given ``--limit`` seconds and no limit on
steps; posing's own callback (``StepLimit``) counts the rdFMCS search's progress reports.

    python bench/mcs_search.py [--limit 10] [--json bench/results/mcs_search.json]
    python bench/mcs_search.py --summarize bench/results/mcs_search.json
    python bench/mcs_search.py --repeat bench/results/mcs_search.json [--slowest 0.5]

``--repeat`` runs the slow searches of a JSON written before again (another machine, another
load) and compares their step counts, which is what makes the step limit the same everywhere.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
from _common import REPO
from rdkit import Chem, RDLogger
from rdkit.Chem import rdFMCS

from plgraph.config import PosingConfig
from plgraph.errors import FeaturizationError
from plgraph.featurize.ligand import read_ligand_files
from plgraph.featurize.posing import (
    PosingSite,
    StepLimit,
    mcs_parameters,
    parse_smiles,
    seed_fragment,
)

UNI_FEP = REPO.parent / "shared" / "data" / "uni-fep"


def measure_system(system: Path, config: PosingConfig,
                   only: set[str] | None = None) -> list[dict]:
    """Every ligand's row, or only those named in ``only``; each search is given
    ``config.mcs_timeout`` seconds and no limit on steps."""
    reference = read_ligand_files([system / "ref_ligand.sdf"], "reference ligand")
    Chem.GetSymmSSSR(reference)
    # The search reads the reference only: no protein is parsed for the site.
    site = PosingSite(reference, str(system / "ref_ligand.sdf"), clash_tree=None)
    rows = []
    with (system / "result_dG.csv").open(newline="") as handle:
        for record in csv.DictReader(handle):
            if only is not None and record["ligand_name"] not in only:
                continue
            try:
                ligand = parse_smiles(record["ligand_smiles"], record["ligand_name"])
            except FeaturizationError:
                continue  # not a search: the cache records these as parse failures
            row = {"system": system.name, "ligand": record["ligand_name"],
                   "ligand_atoms": ligand.GetNumAtoms(), "reference_atoms": reference.GetNumAtoms()}
            started = time.perf_counter()
            try:
                seed = seed_fragment(ligand, site, config, record["ligand_name"])
                row["seed"] = "ok"
            except FeaturizationError:
                seed, row["seed"] = None, "timeout"
            row["seed_seconds"] = round(time.perf_counter() - started, 4)
            row["search_seconds"], row["steps"], row["search"] = 0.0, 0, "skipped"
            if row["seed"] == "ok":
                params = mcs_parameters(config)
                if seed is not None:
                    params.InitialSeed = seed
                progress = StepLimit(steps=float("inf"), seconds=config.mcs_timeout)
                params.ProgressCallback = progress
                started = time.perf_counter()
                result = rdFMCS.FindMCS([reference, ligand], params)
                row["search_seconds"] = round(time.perf_counter() - started, 4)
                row["steps"] = progress.reports
                row["search"] = "stopped" if result.canceled else "ok"
            rows.append(row)
    return rows


def summarize(rows: list[dict]) -> None:
    total = np.array([r["seed_seconds"] + r["search_seconds"] for r in rows])
    seed_seconds = np.array([r["seed_seconds"] for r in rows])
    steps = np.array([r["steps"] for r in rows])
    finished = np.array([r["search"] == "ok" for r in rows])
    stopped = np.array([r["search"] == "stopped" for r in rows])
    seed_out = sum(r["seed"] == "timeout" for r in rows)
    print(f"{len(rows)} ligands of {len({r['system'] for r in rows})} systems; the seed search "
          f"ran out of time on {seed_out}, the core search on {stopped.sum()}")
    print("\nseconds (seed + core search) | ligands | of which the seed search alone")
    for low, high in [(0, .1), (.1, .5), (.5, 1), (1, 2), (2, 4), (4, 10), (10, np.inf)]:
        print(f"  [{low}, {high}) | {((total >= low) & (total < high)).sum()} | "
              f"{((seed_seconds >= low) & (seed_seconds < high)).sum()}")
    percentiles = np.percentile(steps[finished], [50, 90, 99, 99.9])
    print("\ncore-search steps of the finished searches: median, 90th, 99th, 99.9th "
          f"percentile, max: {', '.join(str(int(x)) for x in percentiles)}, "
          f"{steps[finished].max()}")
    busy = finished & (steps > 1000)
    rate = np.array([r["search_seconds"] for r in rows])[busy] / steps[busy]
    print(f"seconds per step (finished searches over 1,000 steps): median {np.median(rate):.1e}, "
          f"max {rate.max():.1e}")
    print("\na limit on steps | finished searches it would stop | stopped searches it stops first")
    for limit in (10_000, 20_000, 50_000, 100_000, 160_000, 200_000, 500_000, 1_000_000):
        print(f"  {limit:,} | {(finished & (steps >= limit)).sum()} | "
              f"{(stopped & (steps >= limit)).sum()} of {stopped.sum()}")
    near = finished & (total >= 0.5)
    print(f"\nfinished, but in 0.5 s or more ({near.sum()}): twice as slow a machine puts them "
          "at or past a 1-2 s limit")
    for r in sorted((r for r, n in zip(rows, near, strict=True) if n),
                    key=lambda r: -(r["seed_seconds"] + r["search_seconds"])):
        print(f"  {r['system']}/{r['ligand']}: {r['ligand_atoms']} atoms, seed "
              f"{r['seed_seconds']} s, core {r['search_seconds']} s, {r['steps']} steps")


def repeat(rows: list[dict], limit: float, slowest: float) -> None:
    """Run again the core searches that finished in ``slowest`` s or more in ``rows`` (from
    --json, on another machine or under another load) and compare their steps: a count that
    does not depend on the machine gives the same number every time, whatever the seconds."""
    chosen = [r for r in rows if r["search"] == "ok" and r["search_seconds"] >= slowest]
    by_system: dict[str, set[str]] = {}
    for r in chosen:
        by_system.setdefault(r["system"], set()).add(r["ligand"])
    config = PosingConfig(mcs_timeout=limit)
    again = {}
    for system, names in sorted(by_system.items()):
        for row in measure_system(UNI_FEP / system, config, names):
            again[row["system"], row["ligand"]] = row
    done = [r for r in chosen if again[r["system"], r["ligand"]]["search"] == "ok"]
    same = sum(again[r["system"], r["ligand"]]["steps"] == r["steps"] for r in done)
    ratio = np.array([again[r["system"], r["ligand"]]["search_seconds"] / r["search_seconds"]
                      for r in done])
    print(f"{len(chosen)} core searches of {slowest} s or more run again; {len(done)} finished "
          f"within {limit} s again, {same} of them in the same number of steps; seconds now / "
          f"then: median {np.median(ratio):.2f}, range {ratio.min():.2f} to {ratio.max():.2f}")
    for r in chosen:
        now = again[r["system"], r["ligand"]]
        if now["search"] != "ok":
            print(f"  out of time now: {r['system']}/{r['ligand']} ({r['steps']} steps in "
                  f"{r['search_seconds']} s then, stopped at {now['steps']} now)")
        elif now["steps"] != r["steps"]:
            print(f"  differs: {r['system']}/{r['ligand']}: {r['steps']} steps then, "
                  f"{now['steps']} now")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=float, default=10.0, help="seconds per search")
    parser.add_argument("--json", type=Path, help="write every ligand's row here")
    parser.add_argument("--summarize", type=Path, help="summarize a --json written before")
    parser.add_argument("--repeat", type=Path, help="run again the slow searches of a --json "
                        "written before and compare their steps")
    parser.add_argument("--slowest", type=float, default=0.5,
                        help="with --repeat: the searches of at least this many seconds")
    args = parser.parse_args()
    if args.summarize:
        summarize(json.loads(args.summarize.read_text()))
        return
    RDLogger.DisableLog("rdApp.*")
    if args.repeat:
        repeat(json.loads(args.repeat.read_text()), args.limit, args.slowest)
        return
    config = PosingConfig(mcs_timeout=args.limit)
    rows = []
    for system in sorted(p for p in UNI_FEP.iterdir() if (p / "result_dG.csv").is_file()):
        rows += measure_system(system, config)
        if args.json:  # kept as it goes: an interrupted run leaves what it measured
            args.json.write_text(json.dumps(rows) + "\n")
    summarize(rows)


if __name__ == "__main__":
    main()
