"""How long posing's common-substructure search takes on every Uni-FEP ligand, in seconds and
in rdFMCS's own progress reports (its steps), one core.

Posing (``plgraph.featurize.posing``) stops the search at ``featurize.posing.mcs_timeout``
(2 s) and fails the ligand. A limit on time makes the set of posed ligands depend on the
machine's speed and load: two builds of the transfer cache by the same code on the same inputs
kept 8,007 complexes (the machine busy) and 8,034 (idle). This measures, on an idle machine,
where the ligands lie against that limit and how many steps their searches take, which is what
a limit on steps (the same on every machine) would be set from.

For each ligand: the RASCAL seed search and the seeded rdFMCS search, exactly as posing runs
them (``seed_fragment``, ``mcs_parameters``), each given ``--limit`` seconds; the rdFMCS
search's progress reports are counted. (A custom progress callback replaces rdFMCS's own, which
is the one that checks ``Timeout``: the counting callback checks the time itself.)

    python bench/mcs_search.py [--limit 10] [--json bench/results/mcs_search.json]
    python bench/mcs_search.py --summarize bench/results/mcs_search.json
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
from plgraph.featurize.posing import PosingSite, mcs_parameters, parse_smiles, seed_fragment

UNI_FEP = REPO.parent / "shared" / "data" / "uni-fep"


class CountingProgress(rdFMCS.MCSProgress):
    """Counts rdFMCS's progress reports; stops the search after ``limit`` seconds."""

    def __init__(self, limit: float) -> None:
        super().__init__()
        self.limit, self.reports, self.started = limit, 0, time.perf_counter()

    def __call__(self, stat, params) -> bool:
        self.reports += 1
        return time.perf_counter() - self.started < self.limit


def measure_system(system: Path, config: PosingConfig, limit: float) -> list[dict]:
    reference = read_ligand_files([system / "ref_ligand.sdf"], "reference ligand")
    Chem.GetSymmSSSR(reference)
    # The search reads the reference only: no protein is parsed for the site.
    site = PosingSite(reference, str(system / "ref_ligand.sdf"), clash_tree=None)
    rows = []
    with (system / "result_dG.csv").open(newline="") as handle:
        for record in csv.DictReader(handle):
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
                progress = CountingProgress(limit)
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
    for limit in (10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000):
        print(f"  {limit:,} | {(finished & (steps >= limit)).sum()} | "
              f"{(stopped & (steps >= limit)).sum()} of {stopped.sum()}")
    near = finished & (total >= 0.5)
    print(f"\nfinished, but in 0.5 s or more ({near.sum()}): twice as slow a machine puts them "
          "at or past a 1-2 s limit")
    for r in sorted((r for r, n in zip(rows, near, strict=True) if n),
                    key=lambda r: -(r["seed_seconds"] + r["search_seconds"])):
        print(f"  {r['system']}/{r['ligand']}: {r['ligand_atoms']} atoms, seed "
              f"{r['seed_seconds']} s, core {r['search_seconds']} s, {r['steps']} steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=float, default=10.0, help="seconds per search")
    parser.add_argument("--json", type=Path, help="write every ligand's row here")
    parser.add_argument("--summarize", type=Path, help="summarize a --json written before")
    args = parser.parse_args()
    if args.summarize:
        summarize(json.loads(args.summarize.read_text()))
        return
    RDLogger.DisableLog("rdApp.*")
    config = PosingConfig(mcs_timeout=args.limit)
    rows = []
    for system in sorted(p for p in UNI_FEP.iterdir() if (p / "result_dG.csv").is_file()):
        rows += measure_system(system, config, args.limit)
        if args.json:  # kept as it goes: an interrupted run leaves what it measured
            args.json.write_text(json.dumps(rows) + "\n")
    summarize(rows)


if __name__ == "__main__":
    main()
