"""Large data: a ~20k-complex processed cache trains in bounded memory, and the loader keeps up.

1. Input: the FEP+ benchmark replicated ``--copies`` times (default 21: 21 x 950 = 19,950
   complexes, PDBbind-general size) as a mirror of symlinks, ``rep00/<system>/...``,
   ``rep01/...``: series ids and groups come from the path below the root, so every copy's
   complexes have their own ids (``rep03/jacs_set/mcl1/<ligand>``).
2. Build: ``prepare_data`` (all cores by default) in a fresh subprocess; its time, peak memory
   (``ru_maxrss``, the pool workers' too) and the cache's size on disk.
3. Loader: the train part through the trainer's own DataLoader (``Trainer.loader`` with the
   epoch order of ``Trainer.epoch_batches``: batch sampler, ``trainer.loader_workers``,
   pin_memory on CUDA), every batch moved to the device, one full epoch (or ``--loader-batches``)
   per worker count: complexes/s. Each pass opens the cache afresh and starts with the shards
   read into the OS page cache (warm), or dropped from it with ``--cold``.
4. Model: ``Trainer.train_step`` (forward, MSE loss, backward, clipping, AdamW; bf16 autocast
   on CUDA) on batches from the same loader, ``--steps`` steps after ``--warmup``: complexes/s of
   the step alone (waiting for the loader excluded), the wait, and both together. The ratio
   loader / model >= 1 means the loader keeps up.
5. Memory: RssAnon (private) and RssFile (mapped shard pages: shared, clean, reclaimable) of this
   process and of the loader workers, from ``/proc/<pid>/status``, along the epoch (1 % ... 100 %)
   and during the training steps; the workers' Private_Dirty, and the anonymous memory of this
   process and its workers together (sum of Pss_Anon: a forked worker's RssAnon also counts
   pages it shares copy-on-write with the parent). ``keep_freed_memory()`` is on as in
   ``main.py``: RssAnon is the heap's peak, and it must not grow with the part of the dataset
   read. The loader passes run before any training step, whose heap the workers would inherit.

Everything goes to a temporary directory under /tmp, deleted at the end; ``--keep DIR`` uses and
keeps DIR instead, and a later run with the same ``--keep DIR`` reuses the cache built there.

Usage: ``python bench/large_data.py [--copies 21] [--keep DIR] [--workers 0,2] [--cold]
[--loader-batches N] [--steps 30] [--model small|large] [--device cpu|cuda]
[--precision auto|fp32|bf16|fp16] [--fep-limit N]``
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from _common import (
    FEP,
    add_precision_option,
    add_run_options,
    apply_allocator_option,
    fep_config,
    fep_systems,
    max_rss_mib,
    model_config,
    print_table,
    tree_bytes,
)

from plgraph.config import (
    AppConfig,
    DataConfig,
    FeaturizeConfig,
    SplitConfig,
    TrainConfig,
)
from plgraph.data import PreparedData, prepare_data
from plgraph.training.run_dir import RunDirectory
from plgraph.training.trainer import Trainer

RESULT = "RESULT "
EPOCH_MARKS = (0.01, 0.1, 0.25, 0.5, 0.75, 1.0)  # fractions of the pass where memory is sampled
MEMORY_KEYS = ("RssAnon", "RssFile", "RssShmem")


# --- input and cache ------------------------------------------------------------------------
def replicate_fep(copies: int, root: Path, limit: int | None = None) -> Path:
    """``root/repNN/<FEP path>`` symlinks to every system's SDF and protein (the first ``limit``
    systems), ``copies`` times."""
    shutil.rmtree(root, ignore_errors=True)
    for copy in range(copies):
        for sdf in fep_systems()[:limit]:
            protein = sdf.with_name(sdf.name.removesuffix("_ligands.sdf") + "_protein.pdb")
            for source in (sdf, protein):
                link = root / f"rep{copy:02d}" / source.relative_to(FEP)
                link.parent.mkdir(parents=True, exist_ok=True)
                if source.exists():
                    link.symlink_to(source)
    return root


def run_build(data: DataConfig) -> dict:
    """Child process: build the cache through prepare_data; time and peak memory."""
    baseline = max_rss_mib()
    started = time.perf_counter()
    prepared = prepare_data(data, FeaturizeConfig(), SplitConfig())
    return {"seconds": time.perf_counter() - started,
            "complexes": len(prepared.cache), "failed": prepared.cache.meta["counts"]["failed"],
            "workers": prepared.cache.meta["build"]["workers"], "baseline_mib": baseline,
            "peak_mib": max_rss_mib(), "worker_peak_mib": max_rss_mib(resource.RUSAGE_CHILDREN),
            "load_average": os.getloadavg()[0]}


def build_in_child(data: DataConfig, default_allocator: bool) -> dict:
    """Run the build in a fresh interpreter, so that its memory is its own; progress to stderr."""
    command = [sys.executable, __file__, "--phase", "build",
               "--data", json.dumps(dataclasses.asdict(data))]
    if default_allocator:
        command.append("--default-allocator")
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    line = next(x for x in output.splitlines() if x.startswith(RESULT))
    return json.loads(line.removeprefix(RESULT))


def cached_build(data: DataConfig) -> dict:
    """A cache kept from an earlier run: its recorded build time; memory unknown."""
    meta = json.loads((data.processed_path / "meta.json").read_text())
    return {"seconds": meta["build"]["seconds"], "complexes": meta["counts"]["processed"],
            "failed": meta["counts"]["failed"], "workers": meta["build"]["workers"],
            "baseline_mib": None, "peak_mib": None, "worker_peak_mib": None,
            "load_average": None, "reused": True}


# --- memory ---------------------------------------------------------------------------------
def rss_kib(pid: int | str = "self") -> dict[str, int]:
    """RssAnon, RssFile and RssShmem of a process in KiB (zeros once it has exited)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return dict.fromkeys(MEMORY_KEYS, 0)
    fields = dict(line.split(":", 1) for line in lines if line.startswith(MEMORY_KEYS))
    return {key: int(fields[key].split()[0]) for key in MEMORY_KEYS}


def child_pids() -> list[int]:
    """This process's child processes (the DataLoader workers while an iterator runs)."""
    pids = []
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def rollup_kib(pid: int | str = "self") -> dict[str, int]:
    """Private_Dirty and Pss_Anon of a process in KiB (``/proc/<pid>/smaps_rollup``).

    A forked worker's RssAnon also counts the parent's heap it shares copy-on-write;
    Private_Dirty is what the worker alone holds, and the sum of Pss_Anon over the parent and its
    workers is the anonymous memory the whole group really uses."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return {"Private_Dirty": 0, "Pss_Anon": 0}
    fields = dict(line.split(":", 1) for line in lines[1:])
    return {key: int(fields[key].split()[0]) for key in ("Private_Dirty", "Pss_Anon")}


def memory_sample() -> dict:
    """This process's memory and the sums over its children (MiB), and how many children."""
    pids = child_pids()
    children = [rss_kib(pid) | rollup_kib(pid) for pid in pids]
    main = rss_kib() | rollup_kib()
    sample = {f"main_{key}": main[key] / 1024 for key in MEMORY_KEYS}
    sample |= {f"workers_{key}": sum(c[key] for c in children) / 1024 for key in MEMORY_KEYS}
    sample["workers_private"] = sum(c["Private_Dirty"] for c in children) / 1024
    sample["group_pss_anon"] = (main["Pss_Anon"] + sum(c["Pss_Anon"] for c in children)) / 1024
    sample["workers"] = len(children)
    return sample


# --- loader and model -----------------------------------------------------------------------
@contextlib.contextmanager
def bench_trainer(prepared: PreparedData, data: DataConfig, args: argparse.Namespace,
                  scratch: Path, workers: int) -> Iterator[Trainer]:
    """A Trainer as main.py builds it (its own run directory), with ``workers`` loader workers."""
    trainer_config = TrainConfig(device=args.device, precision=args.precision,
                                 batch_size=args.batch_size, loader_workers=workers)
    app = AppConfig(data=data, model=model_config(args.model), trainer=trainer_config,
                    output_root=str(scratch / "outputs"), run_name=f"workers{workers}")
    with RunDirectory(app.run_dir) as run:
        yield Trainer(app, prepared, run, "bench")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_pass(trainer: Trainer, limit: int | None) -> dict:
    """The epoch's batches through the trainer's DataLoader to the device; memory along the way."""
    batches = trainer.epoch_batches()[:limit]
    marks = {max(1, round(len(batches) * f)): f for f in EPOCH_MARKS}
    samples, complexes, sampling = [], 0, 0.0
    started = time.perf_counter()
    for number, batch in enumerate(trainer.loader("train", batches, epoch=0), 1):
        batch = batch.to(trainer.device)
        complexes += batch.num_graphs
        if number in marks:
            sampled = time.perf_counter()
            samples.append({"fraction": marks[number], "complexes": complexes,
                            **memory_sample()})
            sampling += time.perf_counter() - sampled  # not the loader's time
    synchronize(trainer.device)
    seconds = time.perf_counter() - started - sampling
    return {"batches": len(batches), "complexes": complexes, "seconds": seconds,
            "rate": complexes / seconds, "samples": samples, "load_average": os.getloadavg()[0]}


def train_steps(trainer: Trainer, warmup: int, steps: int) -> dict:
    """``Trainer.train_step`` on the epoch's first batches, fed by the trainer's DataLoader;
    the step and the wait for the next batch timed apart; memory after the first timed step, the
    middle one and the last (outside the timed parts)."""
    epoch = trainer.epoch_batches()
    batches = epoch[:warmup + steps]
    sampled = {warmup + 1, warmup + (steps + 1) // 2, len(batches)}
    loader = iter(trainer.loader("train", batches, epoch=0))
    trainer.model.train()
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    step_seconds = wait_seconds = 0.0
    complexes, samples = 0, []
    for number in range(1, len(batches) + 1):
        started = time.perf_counter()
        batch = next(loader)
        fetched = time.perf_counter()
        trainer.train_step(batch, len(epoch))  # ends with loss.item(): the device is done
        done = time.perf_counter()
        if number > warmup:
            wait_seconds += fetched - started
            step_seconds += done - fetched
            complexes += batch.num_graphs
        if number in sampled:
            samples.append({"step": number, **memory_sample()})
    timed = len(batches) - warmup
    return {"steps": timed, "complexes": complexes, "step_rate": complexes / step_seconds,
            "wait_ms": 1e3 * wait_seconds / timed,
            "overall_rate": complexes / (step_seconds + wait_seconds), "samples": samples,
            "device_peak_mib": (torch.cuda.max_memory_allocated(trainer.device) / 2**20
                                if trainer.device.type == "cuda" else None),
            "load_average": os.getloadavg()[0]}


# --- report ---------------------------------------------------------------------------------
def mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def cached(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction:.0%}"


def print_build(build: dict, open_seconds: float, disk_bytes: int, shards: int) -> None:
    reused = " (reused: the time recorded in meta.json)" if build.get("reused") else ""
    print(f"\nBuild{reused}")
    print_table(["complexes", "failed", "build workers", "build s", "complexes/s",
                 "imports MiB", "build peak MiB", "pool worker peak MiB", "cache on disk GiB",
                 "shards", "open s"],
                [[str(build["complexes"]), str(build["failed"]), str(build["workers"]),
                  f"{build['seconds']:.1f}", f"{build['complexes'] / build['seconds']:.1f}",
                  mib(build["baseline_mib"]), mib(build["peak_mib"]),
                  mib(build["worker_peak_mib"]), f"{disk_bytes / 2**30:.2f}", str(shards),
                  f"{open_seconds:.2f}"]])


def print_throughput(results: dict[int, dict]) -> None:
    print("\nThroughput (complexes/s). Loader: the train part through the trainer's DataLoader "
          "to the device. Model: Trainer.train_step alone; with wait: fed by that loader")
    rows = []
    for workers, r in results.items():
        loader, model = r["loader"], r["model"]
        rows.append([str(workers), str(loader["complexes"]), f"{loader['seconds']:.1f}",
                     f"{loader['rate']:.0f}", f"{model['steps']}", f"{model['step_rate']:.1f}",
                     f"{model['wait_ms']:.1f}", f"{model['overall_rate']:.1f}",
                     mib(model["device_peak_mib"]),
                     f"{loader['rate'] / model['step_rate']:.1f}", cached(loader["page_cache"]),
                     f"{loader['load_average']:.2f} / {model['load_average']:.2f}"])
    print_table(["loader workers", "loader complexes", "loader s", "loader /s", "model steps",
                 "model /s", "wait ms/step", "model+wait /s", "GPU peak MiB", "loader / model",
                 "page cache at start", "load avg (loader / model)"], rows)


def memory_row(label: str, where: str, sample: dict) -> list[str]:
    workers = sample["workers"]
    worker_cells = [mib(sample[f"workers_{key}"]) if workers else "-"
                    for key in ("RssAnon", "private", "RssFile")]
    return [label, where, mib(sample["main_RssAnon"]), mib(sample["main_RssFile"]),
            mib(sample["main_RssShmem"]), str(workers), *worker_cells,
            mib(sample["group_pss_anon"])]


MEMORY_HEADER = ["phase", "where", "RssAnon", "RssFile", "RssShmem", "workers",
                 "workers' RssAnon", "workers' Private_Dirty", "workers' RssFile",
                 "all: Pss_Anon"]


def print_memory(opened: dict, results: dict[int, dict]) -> None:
    print("\nMemory (MiB) of this process and of its loader workers (sums over the workers), "
          "from /proc/<pid>/status and smaps_rollup; all: this process and its workers")
    rows = [memory_row("cache opened", "-", opened)]
    for workers, r in results.items():
        rows += [memory_row(f"loader pass, {workers} workers",
                            f"{s['fraction']:.0%} ({s['complexes']})", s)
                 for s in r["loader"]["samples"]]
    for workers, r in results.items():
        rows += [memory_row(f"training, {workers} workers", f"step {s['step']}", s)
                 for s in r["model"]["samples"]]
    print_table(MEMORY_HEADER, rows)


def print_verdict(results: dict[int, dict]) -> None:
    """Does the loader keep up, and does private memory stay flat along the epoch?"""
    print()
    for workers, r in results.items():
        ratio = r["loader"]["rate"] / r["model"]["step_rate"]
        samples = r["loader"]["samples"]
        first = next((s for s in samples if s["fraction"] >= 0.1), samples[0])
        last = samples[-1]
        growth = {key: last[key] - first[key] for key in
                  ("main_RssAnon", "group_pss_anon", "main_RssFile", "workers_RssFile")}
        verdict = "keeps up" if ratio >= 1 else "DOES NOT keep up"
        print(f"{workers} loader workers: loader / model = {ratio:.1f} ({verdict}); from "
              f"{first['fraction']:.0%} to 100% of the pass: RssAnon "
              f"{growth['main_RssAnon']:+.0f} MiB, anonymous memory of all processes (Pss_Anon) "
              f"{growth['group_pss_anon']:+.0f} MiB, RssFile {growth['main_RssFile']:+.0f} MiB "
              f"(workers' {growth['workers_RssFile']:+.0f} MiB)")


# --- main -----------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=21,
                        help="copies of the FEP set (950 complexes each; default 21)")
    parser.add_argument("--fep-limit", type=int, default=None, metavar="N",
                        help="copy only the first N FEP systems (a dry run's few complexes)")
    parser.add_argument("--keep", metavar="DIR",
                        help="work in DIR and keep it; a cache already built there is reused")
    parser.add_argument("--build-workers", type=int, default=0,
                        help="featurization processes; 0 = all cores (default)")
    parser.add_argument("--workers", default="0,2",
                        help="comma-separated DataLoader worker counts (default 0,2)")
    parser.add_argument("--loader-batches", type=int, default=None, metavar="N",
                        help="the loader pass reads only N batches (default: a full epoch)")
    parser.add_argument("--cold", action="store_true",
                        help="drop the shards from the OS page cache before each loader pass "
                        "(default: read them into it first)")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="training steps before timing")
    parser.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    add_run_options(parser)
    add_precision_option(parser)
    parser.add_argument("--phase", choices=["build"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    return parser.parse_args()


def open_cache(data: DataConfig) -> tuple[PreparedData, float]:
    """``prepare_data`` on the built cache: a fresh cache object, no shard mapped yet."""
    started = time.perf_counter()
    prepared = prepare_data(data, FeaturizeConfig(), SplitConfig())
    return prepared, time.perf_counter() - started


def page_cached(files: list[Path]) -> float | None:
    """The fraction of ``files`` in the OS page cache (util-linux ``fincore``; None without)."""
    if not shutil.which("fincore"):
        return None
    output = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "--output",
                             "RES,SIZE", *map(str, files)], check=True, stdout=subprocess.PIPE,
                            text=True).stdout
    sizes = [tuple(map(int, line.split())) for line in output.splitlines()]
    return sum(r for r, _ in sizes) / max(sum(s for _, s in sizes), 1)


def settle_page_cache(files: list[Path], cold: bool) -> float | None:
    """Every loader pass starts alike: the shards read once into the page cache (warm), or
    dropped from it (``--cold``: POSIX_FADV_DONTNEED, which leaves mapped pages alone)."""
    for file in files:
        with open(file, "rb") as handle:
            if cold:
                os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            else:
                while handle.read(16 * 2**20):
                    pass
    return page_cached(files)


def one_loader_pass(data: DataConfig, args: argparse.Namespace, scratch: Path,
                    workers: int) -> dict:
    """A loader pass on a freshly opened cache (nothing mapped by an earlier pass)."""
    prepared, _ = open_cache(data)
    files = [data.processed_path / shard["file"] for shard in prepared.cache.meta["shards"]]
    cached = settle_page_cache(files, args.cold)
    with bench_trainer(prepared, data, args, scratch, workers) as trainer:
        result = loader_pass(trainer, args.loader_batches)
    print(f"loader, {workers} workers: {result['complexes']} complexes in "
          f"{result['seconds']:.1f} s, {result['rate']:.0f}/s", flush=True)
    return result | {"page_cache": cached}


def one_training(data: DataConfig, args: argparse.Namespace, scratch: Path,
                 workers: int) -> dict:
    prepared, _ = open_cache(data)
    with bench_trainer(prepared, data, args, scratch, workers) as trainer:
        result = train_steps(trainer, args.warmup, args.steps)
    peak = result["device_peak_mib"]
    memory = "" if peak is None else f"; peak GPU memory {peak:,.0f} MiB"
    print(f"training, {workers} workers: {result['step_rate']:.1f}/s step alone, "
          f"{result['overall_rate']:.1f}/s with the wait{memory}", flush=True)
    return result


def measure(args: argparse.Namespace, scratch: Path) -> None:
    data = fep_config(replicate_fep(args.copies, scratch / "input", args.fep_limit),
                      scratch / "processed", args.build_workers)
    if (data.processed_path / "meta.json").is_file():
        build = cached_build(data)
    else:
        print(f"building the cache of {args.copies} FEP copies in {data.processed_path} ...")
        build = build_in_child(data, args.default_allocator)
    prepared, open_seconds = open_cache(data)
    opened = memory_sample()
    print_build(build, open_seconds, tree_bytes(data.processed_path),
                len(prepared.cache.meta["shards"]))
    sizes = {part: len(ids) for part, ids in prepared.split.parts.items()}
    print(f"split: {sizes}; batch size {args.batch_size}, model {args.model}, device {args.device}"
          f", page cache {'dropped (--cold)' if args.cold else 'warm'} before each loader pass")
    del prepared
    counts = [int(w) for w in args.workers.split(",")]
    results: dict[int, dict] = {w: {} for w in counts}
    # Every loader pass first, from a process that has only opened the cache; the training steps
    # after them (their heap peak would otherwise be inherited by the forked loader workers).
    for workers in counts:
        results[workers]["loader"] = one_loader_pass(data, args, scratch, workers)
        gc.collect()  # the pass's cache object and its mapped shards go before the next pass
    for workers in counts:
        results[workers]["model"] = one_training(data, args, scratch, workers)
    print_throughput(results)
    print_memory(opened, results)
    print_verdict(results)


def main() -> None:
    args = parse_args()
    apply_allocator_option(args)
    if args.phase == "build":
        print(RESULT + json.dumps(run_build(DataConfig(**json.loads(args.data)))), flush=True)
        return
    print(f"cores: {os.cpu_count()}, torch {torch.__version__}, load average at start: "
          f"{os.getloadavg()[0]:.2f}")
    started = time.perf_counter()
    scratch = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="plgraph-large-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        measure(args, scratch)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{time.perf_counter() - started:.0f} s in all; load average at end: "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
