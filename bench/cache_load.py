"""Processed-cache load time against build time, peak memory and cache size on disk.

For ``data/sample`` (and the FEP+ benchmark with ``--fep``), into a fresh temporary processed dir:
- build: ``prepare_data`` with no cache (read inputs, featurize, write shards, make the split);
- load: ``prepare_data`` again with the cache in place (re-reads the inputs' names and sizes for
  the fingerprint, opens meta.json, checks the shards, loads and verifies the split), and
  iterating every complex (``cache[i]`` for all i: shards memory-mapped, graphs rebuilt, every
  tensor read once so the mapped pages are really touched);
- the ratio build / load (target: loading at least 50x faster than building), for three loads:
  ``prepare_data`` alone (median), plus iterating every complex, and what a fresh process pays
  (its first ``prepare_data``, which may include a one-off garbage-collection pass, plus the
  first iteration);
- peak memory (``ru_maxrss``) of build and of load, each in its own fresh subprocess so neither
  pollutes the other; the figure after imports alone is shown as the baseline. For a build with
  a worker pool, the largest worker's peak is shown too.

The shards were just written, so loads read them from the OS page cache (a warm load).

Run from the repo root: ``python bench/cache_load.py [--fep] [--fep-limit N] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import fep_config, fep_root, max_rss_mib, pocket_config, print_table, timed, tree_bytes

from plgraph.config import DataConfig, FeaturizeConfig, SplitConfig
from plgraph.data import prepare_data

TARGET_RATIO = 50.0
RESULT = "RESULT "


def run_build(data: DataConfig) -> dict:
    """Child process: build the cache through prepare_data; timings and peak memory."""
    baseline = max_rss_mib()
    seconds, prepared = timed(lambda: prepare_data(data, FeaturizeConfig(), SplitConfig()))
    return {"seconds": seconds, "build_cache_seconds": prepared.cache.meta["build"]["seconds"],
            "complexes": len(prepared.cache), "baseline_mib": baseline, "peak_mib": max_rss_mib(),
            "worker_peak_mib": max_rss_mib(resource.RUSAGE_CHILDREN)}


def read_graph(graph) -> int:
    """Read every tensor of ``graph`` (pages the mapped shard in, as a training epoch would)."""
    return sum(value.sum().item() != 0 for store in graph.stores for value in store.values()
               if isinstance(value, torch.Tensor))


def iterate_all(cache) -> int:
    """Rebuild every graph of the cache with ``cache[i]`` and read all its tensors."""
    return sum(read_graph(cache[i]) for i in range(len(cache)))


def run_load(data: DataConfig, repeats: int) -> dict:
    """Child process: open the existing cache ``repeats`` times, then read every complex twice."""
    baseline = max_rss_mib()
    opens = [timed(lambda: prepare_data(data, FeaturizeConfig(), SplitConfig())) for _ in
             range(repeats)]
    cache = opens[-1][1].cache
    first_pass, _ = timed(lambda: iterate_all(cache))
    second_pass, _ = timed(lambda: iterate_all(cache))
    seconds = [s for s, _ in opens]
    return {"open_first": seconds[0], "open_median": statistics.median(seconds),
            "iterate_first": first_pass, "iterate_second": second_pass,
            "complexes": len(cache), "baseline_mib": baseline, "peak_mib": max_rss_mib()}


def in_child(phase: str, data: DataConfig, repeats: int) -> dict:
    """Run one phase in a fresh interpreter; its stderr (progress bars) passes through."""
    command = [sys.executable, __file__, "--phase", phase, "--repeats", str(repeats),
               "--data", json.dumps(dataclasses.asdict(data))]
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    line = next(x for x in output.splitlines() if x.startswith(RESULT))
    return json.loads(line.removeprefix(RESULT))


def bench_input(name: str, data: DataConfig, repeats: int) -> dict:
    build = in_child("build", data, repeats)
    load = in_child("load", data, repeats)
    return {"input": name, "build": build, "load": load,
            "disk_bytes": tree_bytes(data.processed_path)}


def load_seconds(load: dict) -> dict[str, float]:
    """The three loads compared with the build."""
    return {"open": load["open_median"],
            "open + iterate all": load["open_median"] + load["iterate_first"],
            "fresh process (1st open + iterate all)": load["open_first"] + load["iterate_first"]}


def time_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for r in results:
        build, load = r["build"], r["load"]
        ratios = [f"{build['seconds'] / s:.0f}x" for s in load_seconds(load).values()]
        rows.append([r["input"], str(build["complexes"]), f"{build['seconds']:.2f}",
                     f"{build['build_cache_seconds']:.2f}", f"{load['open_first']:.3f}",
                     f"{load['open_median']:.3f}", f"{load['iterate_first']:.3f}",
                     f"{load['iterate_second']:.3f}", *ratios])
    return rows


TIME_HEADER = ["input", "complexes", "build s", "(build_cache s)", "open 1st s", "open med s",
               "iterate 1st s", "iterate 2nd s", "build/open", "build/(open+iter)",
               "build/(1st open+iter)"]


def memory_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for r in results:
        build, load = r["build"], r["load"]
        rows.append([r["input"], f"{build['baseline_mib']:.0f}", f"{build['peak_mib']:.0f}",
                     f"{build['worker_peak_mib']:.0f}" if build["worker_peak_mib"] else "-",
                     f"{load['baseline_mib']:.0f}",
                     f"{load['peak_mib']:.0f}", f"{r['disk_bytes'] / 2**20:.2f}"])
    return rows


MEMORY_HEADER = ["input", "build: imports MiB", "build peak MiB", "worker peak MiB",
                 "load: imports MiB", "load peak MiB", "cache on disk MiB"]


def verdict(results: list[dict]) -> None:
    print(f"\nTarget: loading >= {TARGET_RATIO:.0f}x faster than building")
    for r in results:
        for what, seconds in load_seconds(r["load"]).items():
            ratio = r["build"]["seconds"] / seconds
            met = "MET" if ratio >= TARGET_RATIO else "NOT MET"
            print(f"  {r['input']}, {what}: {ratio:.1f}x: {met}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fep", action="store_true", help="also measure the FEP+ benchmark")
    parser.add_argument("--fep-limit", type=int, default=None, metavar="N",
                        help="with --fep: use only the first N FEP systems (default: all)")
    parser.add_argument("--workers", type=int, default=0,
                        help="featurization processes for the build; 0 = all cores (default)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="times the existing cache is opened; the median is shown (default 5)")
    parser.add_argument("--phase", choices=["build", "load"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    return parser.parse_args()


def child_main(args: argparse.Namespace) -> None:
    data = DataConfig(**json.loads(args.data))
    result = run_build(data) if args.phase == "build" else run_load(data, args.repeats)
    print(RESULT + json.dumps(result), flush=True)


def parent_main(args: argparse.Namespace) -> None:
    print(f"cores: {os.cpu_count()}, build workers: {args.workers or os.cpu_count()}, "
          f"load average at start: {os.getloadavg()[0]:.2f}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="plgraph-bench-") as tmp:
        scratch = Path(tmp)
        results = [bench_input("pocket", pocket_config(scratch / "pocket" / "processed",
                                                       args.workers), args.repeats)]
        if args.fep:
            data = fep_config(fep_root(args.fep_limit, scratch), scratch / "fep" / "processed",
                              args.workers)
            results.append(bench_input("full protein (FEP)", data, args.repeats))
    print(f"\nTimes (open: prepare_data with the cache in place, median of {args.repeats}; "
          "iterate: cache[i] for every i, all tensors read)")
    print_table(TIME_HEADER, time_rows(results))
    print("\nPeak memory (ru_maxrss; build and load each in a fresh process) and cache size")
    print_table(MEMORY_HEADER, memory_rows(results))
    verdict(results)
    print(f"\n{time.perf_counter() - started:.0f} s in all; load average at end: "
          f"{os.getloadavg()[0]:.2f}")


def main() -> None:
    args = parse_args()
    if args.phase:
        child_main(args)
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
