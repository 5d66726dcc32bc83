"""Posing plus featurization throughput on Uni-FEP (``../shared/data/uni-fep``), one core.

Each ligand of the ``reference`` layout goes through ``featurize_record_with_pose`` exactly as a
cache build does: SMILES parsed, posed onto its system's reference ligand in the protein, graphs
built. Proteins and posing sites are parsed once per system (as a worker does) and that time is
reported apart. Reported: ligands/s on one core, the per-ligand time distribution (median, 90th
and 99th percentile, max; MCS time varies with the ligand), the share of posing in it, and
failures by rule.

Target: >= 5 ligands/s per core.

Run from the repo root: ``python bench/posing_throughput.py [--systems N] [--per-system K]``
(default: every 4th system, its first 6 ligands).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, OrderedDict

import numpy as np
from _common import REPO, print_table
from pose_quality import _reason

from plgraph.config import DataConfig, FeaturizeConfig
from plgraph.data.featurizer import featurize_record_with_pose, pose_record, posing_site
from plgraph.data.layouts import read_inputs
from plgraph.errors import FeaturizationError
from plgraph.featurize import load_protein

UNI_FEP = REPO.parent / "shared" / "data" / "uni-fep"
TARGET_PER_CORE = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--every", type=int, default=4, help="every N-th system")
    parser.add_argument("--per-system", type=int, default=6, help="first K ligands of each")
    args = parser.parse_args()
    config = FeaturizeConfig()
    inputs = read_inputs(DataConfig(root=str(UNI_FEP), layout="reference"), config)
    systems = sorted({r.group for r in inputs.records})[::args.every]
    chosen = [r for system in systems
              for r in [x for x in inputs.records if x.group == system][:args.per_system]]
    proteins, sites = OrderedDict(), OrderedDict()
    setup, total, posed_total, posing, failures = [], [], [], [], Counter()
    for record in chosen:
        if str(record.protein) not in proteins:  # per-system setup, as a worker pays it once
            started = time.perf_counter()
            proteins[str(record.protein)] = load_protein(record.protein, config)
            posing_site(record, proteins[str(record.protein)], sites)
            setup.append(time.perf_counter() - started)
        started = time.perf_counter()
        try:
            featurize_record_with_pose(record, config, proteins, sites)
        except FeaturizationError as error:
            failures[_reason(str(error))] += 1
            continue
        finally:
            total.append(time.perf_counter() - started)
        started = time.perf_counter()
        try:  # posing alone, again: a search right at mcs_timeout may not finish this time
            pose_record(record, proteins[str(record.protein)], config, sites)
        except FeaturizationError:
            continue
        posing.append(time.perf_counter() - started)
        posed_total.append(total[-1])
    seconds = np.array(total)
    print_table(["figure", "value"], [
        ["systems / ligands", f"{len(systems)} / {len(chosen)}"],
        ["ligands/s on one core (pose + featurize)", f"{len(seconds) / seconds.sum():.1f} "
                                                     f"(target {TARGET_PER_CORE})"],
        ["s/ligand: median / p90 / p99 / max",
         " / ".join(f"{v:.3f}" for v in (np.median(seconds), *np.percentile(seconds, [90, 99]),
                                          seconds.max()))],
        ["posing share of a posed ligand's time", f"{sum(posing) / sum(posed_total):.0%}"],
        ["per-system setup s (protein + reference), median",
         f"{np.median(setup):.3f}"],
        ["failed", f"{sum(failures.values())} {dict(failures)}"],
    ])


if __name__ == "__main__":
    main()
