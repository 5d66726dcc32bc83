"""Featurization throughput in complexes/s, and per core, for pocket and full-protein input.

Inputs:
- pocket: ``data/sample`` (50 PDBbind complexes, ``*_pocket.pdb`` used as given);
- full protein: the FEP+ benchmark (``../shared/data/fep-benchmark``, layout ``series``: one full
  protein PDB and one multi-ligand SDF per system; the featurizer cuts the pocket).

Measured for each input:
- ``featurize_record`` called in a loop in this process, 1 core: the pure featurization cost (a
  fresh protein cache per repeat, as a fresh worker would have);
- ``build_cache`` into a fresh temporary processed dir with 1 worker (in-process, no pool) and
  with all cores (a spawn process pool): the whole build (featurize, pickle, shard, fsync);
- the all-cores pool once running: from its first result to its last (``build``'s own pool,
  shard writing excluded), i.e. the rate a large dataset approaches;
- the spawn pool's fixed start cost (start N workers that import plgraph, until a first task
  returns), so the pool overhead is visible apart from the featurization.

Rates count every record given to the featurizer, failures included. The stated target is
>= 50 complexes/s per core for pocket input.

Run from the repo root: ``python bench/featurize_throughput.py [--fep-limit N] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from _common import fep_config, fep_root, median_time, pocket_config, print_table, timed

from plgraph.config import DataConfig, FeaturizeConfig
from plgraph.data import build
from plgraph.data.featurizer import featurize_record
from plgraph.data.layouts import read_inputs
from plgraph.data.records import ReadResult
from plgraph.errors import FeaturizationError

TARGET_PER_CORE = 50.0
FEATURIZE = FeaturizeConfig()


@dataclass
class Measurement:
    input: str
    mode: str
    workers: int
    complexes: int
    failed: int | None  # None: not counted
    seconds: float

    @property
    def rate(self) -> float:
        return self.complexes / self.seconds

    def row(self) -> list[str]:
        return [self.input, self.mode, str(self.workers), str(self.complexes),
                "-" if self.failed is None else str(self.failed),
                f"{self.seconds:.2f}", f"{1000 * self.seconds / self.complexes:.1f}",
                f"{self.rate:.1f}", f"{self.rate / self.workers:.1f}"]


HEADER = ["input", "mode", "workers", "complexes", "failed", "seconds", "ms/complex",
          "complexes/s", "per core"]


def featurize_all(inputs: ReadResult) -> int:
    """Featurize every record in this process, as a worker does; return the number of failures."""
    proteins: OrderedDict = OrderedDict()
    failed = 0
    for record in inputs.records:
        try:
            featurize_record(record, FEATURIZE, proteins)
        except FeaturizationError:
            failed += 1
    return failed


def measure_in_process(name: str, inputs: ReadResult, repeats: int) -> Measurement:
    seconds, failed = median_time(lambda: featurize_all(inputs), repeats)
    return Measurement(name, "featurize_record loop", 1, len(inputs.records), failed, seconds)


def build_once(data: DataConfig, inputs: ReadResult, identity: dict) -> dict:
    """Build a cache at ``data.processed_path`` (a fresh dir), then delete it."""
    target = data.processed_path
    try:
        return build.build_cache(target, inputs, identity, data)
    finally:
        shutil.rmtree(target.parent, ignore_errors=True)


def measure_build(name: str, make_data, inputs: ReadResult, workers: int, repeats: int,
                  scratch: Path) -> Measurement:
    def one() -> dict:
        data = make_data(Path(tempfile.mkdtemp(dir=scratch)) / "processed", workers)
        return build_once(data, inputs, build.cache_identity(data, FEATURIZE, inputs))

    seconds, meta = median_time(one, repeats)
    failed = meta["counts"]["failed"] - len(inputs.failures)  # featurization failures only
    used = meta["build"]["workers"]  # below MIN_COMPLEXES_PER_WORKER per worker, no pool
    mode = "build_cache" + (f" (asked {workers}, no pool)" if used != workers else "")
    return Measurement(name, mode, used, len(inputs.records), failed, seconds)


def pool_start_seconds(workers: int) -> float:
    """Seconds until a spawn pool like build's (same initializer) answers a first trivial task."""
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    with context.Pool(workers, initializer=build.init_worker, initargs=(FEATURIZE, True)) as pool:
        pool.map(abs, range(workers), chunksize=1)
        return time.perf_counter() - started


def measure_pool_start(workers: int, repeats: int) -> list[float]:
    return sorted(pool_start_seconds(workers) for _ in range(repeats))


def first_and_last(inputs: ReadResult, workers: int) -> tuple[float, float]:
    """Seconds until build's worker pool yields its first graph, and its last."""
    started, first = time.perf_counter(), None
    for _ in build.featurize_in_order(inputs.records, FEATURIZE, workers):
        first = first if first is not None else time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started


def measure_steady(name: str, inputs: ReadResult, workers: int, repeats: int) -> Measurement:
    """The pool's rate once running: from its first result to its last, pool start excluded."""
    spans = sorted(last - first for first, last in
                   (first_and_last(inputs, workers) for _ in range(repeats)))
    return Measurement(name, "pool after 1st result", workers, len(inputs.records) - 1, None,
                       spans[len(spans) // 2])


def bench_input(name: str, make_data, repeats: int, scratch: Path) -> list[Measurement]:
    read_seconds, inputs = timed(lambda: read_inputs(make_data(scratch / "unused", 1), FEATURIZE))
    print(f"{name}: {len(inputs.records)} records to featurize, {len(inputs.failures)} rejected "
          f"by the reader, read in {read_seconds:.3f} s")
    featurize_all(ReadResult(inputs.records[:3]))  # warm-up: lazy imports, first-call caches
    results = [measure_in_process(name, inputs, repeats)]
    for workers in sorted({1, os.cpu_count() or 1}):
        results.append(measure_build(name, make_data, inputs, workers, repeats, scratch))
    if (os.cpu_count() or 1) > 1 and len(inputs.records) > 1:
        results.append(measure_steady(name, inputs, os.cpu_count() or 1, repeats))
    return results


def verdict(results: list[Measurement]) -> None:
    print(f"\nTarget: >= {TARGET_PER_CORE:.0f} complexes/s per core for pocket input")
    for m in results:
        if m.input == "pocket":
            met = "MET" if m.rate / m.workers >= TARGET_PER_CORE else "NOT MET"
            print(f"  {m.mode}, {m.workers} worker(s): {m.rate / m.workers:.1f}/s per core: {met}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fep-limit", type=int, default=None, metavar="N",
                        help="use only the first N FEP systems (default: all)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed repeats per measurement; the median is shown (default 3)")
    parser.add_argument("--no-fep", action="store_true", help="skip the full-protein input")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print(f"cores: {os.cpu_count()}, repeats: {args.repeats} (median shown), load average at "
          f"start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="plgraph-bench-") as tmp:
        scratch = Path(tmp)
        results = bench_input("pocket", pocket_config, args.repeats, scratch)
        if not args.no_fep:
            root = fep_root(args.fep_limit, scratch)
            results += bench_input("full protein (FEP)",
                                   lambda p, w: fep_config(root, p, w), args.repeats, scratch)
    workers = os.cpu_count() or 1
    starts = measure_pool_start(workers, args.repeats)
    print()
    print_table(HEADER, [m.row() for m in results])
    print(f"\nspawn pool start ({workers} workers importing plgraph, until a first task returns): "
          f"median {starts[len(starts) // 2]:.2f} s (min {starts[0]:.2f}, max {starts[-1]:.2f}); "
          "paid once per multi-worker build")
    verdict(results)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
