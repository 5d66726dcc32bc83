"""Building the processed cache: featurize every record in parallel, publish atomically.

Complexes are featurized by a process pool but written in input order, so the cache is identical
for any number of workers. Everything is written into ``<processed>.partial-<pid>/`` and renamed to
``<processed>/`` only once ``meta.json`` is on disk: a build killed half way never leaves anything
that looks like a complete cache.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import pickle
import shutil
import signal
import time
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from multiprocessing.connection import wait
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import torch
from torch_geometric.data import HeteroData
from tqdm import tqdm

import plgraph
from plgraph import vocab
from plgraph.config import DataConfig, FeaturizeConfig, SourceConfig
from plgraph.data.cache import (
    CONTENT_FINGERPRINT,
    META_FILE,
    SHARD_FORMAT,
    pack_graphs,
    shard_name,
)
from plgraph.data.featurizer import featurize_record
from plgraph.data.records import ComplexRecord, Failure, ReadResult
from plgraph.errors import CacheError, FeaturizationError, TooManyFailuresError
from plgraph.featurize import DATA_PROCESSING_VERSION, ProteinAtoms
from plgraph.featurize.posing import PosingSite
from plgraph.runtime.atomic import Staged, replace_atomically, reporting_full_disk
from plgraph.runtime.stop import STOP, ignore_stop_signals_in_worker, stop_signals_blocked

log = logging.getLogger(__name__)
STOP_POLL_S = 0.2
# How long a dead worker may go unnoticed by the executor itself before the build breaks the pool
# (see _break_pool); the executor notices a plain death within milliseconds.
DEAD_WORKER_GRACE_S = 5.0
FEATURIZING = ("while featurizing the inputs for the processed cache; nothing was cached "
               "(the next run builds it)")


def cache_identity(data: DataConfig, featurize: FeaturizeConfig, inputs: ReadResult) -> dict:
    """What a cache must have been built with to be used for this config and these inputs."""
    sources = [_source_identity(source) for source in data.input_sources]
    return {
        "featurize": featurize.to_dict(),
        "source": sources if data.sources else sources[0],
        "inputs_fingerprint": inputs.fingerprint(),
    }


def content_identity(inputs: ReadResult) -> dict:
    """What a new cache records besides :func:`cache_identity`: the inputs' SHA-256
    fingerprint, for the day their times change but their content does not."""
    return {CONTENT_FINGERPRINT: inputs.fingerprint(content=True)}


def _source_identity(source: SourceConfig) -> dict:
    identity = {"layout": source.layout, "label_property": source.label_property,
                "label_kind": source.label_kind}
    if source.name:
        identity["name"] = source.name
    if source.layout == "reference":
        identity["reference"] = dataclasses.asdict(source.reference)
    return identity


# A worker process pays ~2 s to start (spawn, imports); below this many complexes per extra
# worker the pool costs more than it saves, and the build runs in the calling process.
MIN_COMPLEXES_PER_WORKER = 256
# Records travel to workers in chunks of MIN_CHUNK..MAX_CHUNK, cut only where the protein
# changes, so a series' protein is parsed once and one-protein-per-complex input (PDBbind) does
# not pay an inter-process round trip per complex.
MIN_CHUNK, MAX_CHUNK = 8, 64

_worker_config: FeaturizeConfig | None = None
_worker_proteins: OrderedDict[str, ProteinAtoms] = OrderedDict()
_worker_sites: OrderedDict[tuple, PosingSite] = OrderedDict()
_worker_cancel: EventType | None = None  # set by the caller: return from the chunk now
# Shared with the caller: for each record (by input position), the pid of the worker
# featurizing it now, 0 when none. Each slot has one writer at a time, so no lock: a worker
# killed mid-write can block no one.
_worker_in_flight = None


def init_worker(config: FeaturizeConfig, pool_worker: bool, cancel: EventType | None = None,
                in_flight=None) -> None:
    """Set up this process (a pool worker, or the caller for a serial build) to featurize
    ``config``'s graphs: empty protein and site caches, the cancel event to watch, the shared
    array in which it marks the record it is featurizing (see :class:`PoolWatch`)."""
    global _worker_config, _worker_cancel, _worker_in_flight
    _worker_config = config
    _worker_cancel = cancel
    _worker_in_flight = in_flight
    _worker_proteins.clear()  # a rebuild must not see proteins parsed before a file changed
    _worker_sites.clear()
    if pool_worker:
        torch.set_num_threads(1)  # one process per core already; never in the caller
        ignore_stop_signals_in_worker()  # the caller stops the build and ends the pool


def featurize_chunk(records: list[ComplexRecord], first: int = 0) -> list[bytes | Failure]:
    """Runs in a worker; ``first`` is the input position of ``records[0]``. Graphs travel as
    plain pickles: torch's shared-memory tensor passing would hold one file descriptor per
    tensor and run out of them on large datasets."""
    assert _worker_config is not None, "worker not initialized"
    results: list[bytes | Failure] = []
    for position, record in enumerate(records, first):
        if _worker_cancel is not None and _worker_cancel.is_set():
            return results  # the build is stopping: nobody reads this chunk
        _mark_in_flight(position, os.getpid())
        results.append(_featurize_one(record))
        _mark_in_flight(position, 0)
    return results


def _featurize_one(record: ComplexRecord) -> bytes | Failure:
    try:
        graph = featurize_record(record, _worker_config, _worker_proteins, _worker_sites)
    except FeaturizationError as error:
        return Failure(record.id, str(error))
    graph.y = torch.tensor([record.label], dtype=torch.float32)
    return pickle.dumps(graph)


def _mark_in_flight(position: int, pid: int) -> None:
    if _worker_in_flight is not None:
        _worker_in_flight[position] = pid


@dataclass
class PoolWatch:
    """The pool's workers and the record each is featurizing, so that a worker's death names
    the complexes it held: a complex named again on a rerun is a poison input, others named
    each time point to memory pressure.

    Args:
        records: the build's records, in input order.
        in_flight: shared with the workers (see ``_worker_in_flight``).
    """

    records: list[ComplexRecord]
    in_flight: object
    processes: list = field(default_factory=list)
    dead: dict[int, int | None] = field(default_factory=dict)  # pid -> exit code, first seen

    def note_deaths(self) -> bool:
        """Record the workers dead by now (before the build kills any); whether any is. A
        process's end is read from its sentinel, which reaps nothing: the executor's thread
        reaps the workers concurrently, and a race with it reads no exit code at all."""
        ended = wait([p.sentinel for p in self.processes], timeout=0)
        for process in self.processes:
            if process.sentinel in ended and process.pid not in self.dead:
                code = _exit_code(process)
                if code != 0:
                    self.dead[process.pid] = code
        return bool(self.dead)

    def held_by(self, pid: int) -> list[str]:
        return [r.id for r, holder in zip(self.records, self.in_flight, strict=True)
                if holder == pid]

    def death_message(self) -> str:
        """What died, of what, holding which complexes, and what to do about it."""
        deaths = [f"pid {pid} {_cause(code)} " + (
            f"while featurizing {', '.join(map(repr, held))}" if (held := self.held_by(pid)) else
            "with no complex in flight (starting, or sending finished results)")
                  for pid, code in self.dead.items()]
        return (f"a featurization worker died: {'; '.join(deaths) or 'unknown'}; nothing was "
                "cached. SIGKILL is what the kernel's out-of-memory killer sends: if a rerun "
                "names the same complexes, they are the cause (remove them from the inputs); "
                "if it names others, memory is short: run again with fewer data.workers.")


def _exit_code(process, patience_s: float = 1.0) -> int | None:
    """The exit code of an ended process, once whichever thread reaps it has recorded it."""
    deadline = time.monotonic() + patience_s
    while process.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return process.exitcode


def _cause(exit_code: int | None) -> str:
    if exit_code is None:
        return "died"
    if exit_code < 0:
        return f"killed by {signal.Signals(-exit_code).name}"
    return f"exited with code {exit_code}"


def _chunks(records: list[ComplexRecord]) -> Iterator[list[ComplexRecord]]:
    """Consecutive records, cut where the protein changes once a chunk is big enough."""
    chunk: list[ComplexRecord] = []
    for record in records:
        new_protein = bool(chunk) and record.protein != chunk[-1].protein
        if (new_protein and len(chunk) >= MIN_CHUNK) or len(chunk) == MAX_CHUNK:
            yield chunk
            chunk = []
        chunk.append(record)
    if chunk:
        yield chunk


def worker_count(requested: int, complexes: int) -> int:
    return max(1, min(requested, complexes // MIN_COMPLEXES_PER_WORKER))


def featurize_in_order(records: list[ComplexRecord], config: FeaturizeConfig,
                       workers: int) -> Iterator[bytes | Failure]:
    """The results in input order. A stop signal raises StopRequested between complexes, or
    while waiting for the pool's next chunk."""
    if workers <= 1:
        init_worker(config, pool_worker=False)
        for record in records:  # chunks only save round trips to a pool
            STOP.check(FEATURIZING)
            yield from featurize_chunk([record])
        return
    # spawn, not fork: the parent has torch loaded, and forking a process with OpenMP threads can
    # deadlock the children. An executor, not multiprocessing.Pool: when a worker is killed (out
    # of memory, kill -9) Pool waits forever for its result; the executor raises.
    context = multiprocessing.get_context("spawn")
    # The helper processes are born with the stop signals blocked, so that a Ctrl-C to the
    # process group cannot kill one while it starts. The resource tracker first: starting it
    # unblocks SIGINT and SIGTERM again (CPython's own guard for it, bpo-33613).
    with stop_signals_blocked():
        resource_tracker.ensure_running()
    cancel = context.Event()
    watch = PoolWatch(records, context.RawArray("i", len(records)))
    with stop_signals_blocked():  # the workers start on submit
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker,
                                   initargs=(config, True, cancel, watch.in_flight))
        futures = [pool.submit(featurize_chunk, chunk, first) for chunk, first in
                   _chunks_from(records)]
    watch.processes = _workers(pool)  # all spawned by now; none is ever replaced
    try:
        for future in futures:
            yield from _chunk_result(future, pool, watch)
        pool.shutdown(wait=True)
    except BrokenProcessPool:
        watch.note_deaths()
        raise CacheError(watch.death_message()) from None
    finally:
        _end_pool(pool, cancel)


def _chunks_from(records: list[ComplexRecord]) -> Iterator[tuple[list[ComplexRecord], int]]:
    """Each chunk with the input position of its first record."""
    first = 0
    for chunk in _chunks(records):
        yield chunk, first
        first += len(chunk)


def _chunk_result(future: Future, pool: ProcessPoolExecutor, watch: PoolWatch
                  ) -> list[bytes | Failure]:
    """Wait for a chunk, looking at the stop flag meanwhile (a chunk can take many seconds),
    and at the workers: one that died unnoticed by the executor breaks the pool."""
    died_at, broken = None, False
    while True:
        STOP.check(FEATURIZING)
        try:
            return future.result(timeout=STOP_POLL_S)
        except FuturesTimeout:
            if died_at is None and watch.note_deaths():
                died_at = time.monotonic()
            if not broken and died_at is not None and (
                    time.monotonic() - died_at > DEAD_WORKER_GRACE_S):
                _break_pool(pool)
                broken = True  # the executor now fails every future: BrokenProcessPool


def _workers(pool: ProcessPoolExecutor) -> list:
    """The pool's worker processes (a private attribute of the executor; none where missing)."""
    return list((getattr(pool, "_processes", None) or {}).values())


def _break_pool(pool: ProcessPoolExecutor) -> None:
    """A worker killed (out of memory, ``kill -9``) while it sent a chunk's result leaves half
    a message in the result pipe. CPython's executor (3.11-3.13) then reads the rest forever in
    its manager thread, so no future ever fails, and the interpreter would hang at exit joining
    that thread. Kill the other workers and close this process's end of the pipe: with no writer
    left the read ends (EOF), and the executor declares itself broken as for any dead worker.
    Private attributes of the executor; where they are missing, nothing is done here."""
    log.warning("a featurization worker died and the pool did not notice within %.0f s; "
                "stopping the other workers", DEAD_WORKER_GRACE_S)
    _kill_workers(pool)
    result_queue = getattr(pool, "_result_queue", None)
    if result_queue is not None:
        result_queue._writer.close()


def _end_pool(pool: ProcessPoolExecutor, cancel: EventType) -> None:
    """End the pool on every exit path (a stop, an error, a second Ctrl-C, the consumer giving
    up): cancel the chunks not started and tell the running ones to return after their current
    complex (seconds at most: posing has its timeouts), then join the workers.

    Not ``shutdown(wait=True)`` alone: it would featurize every submitted chunk first. And not
    killing the workers: one killed while it sends a chunk's result leaves half a message in the
    result pipe, and the pool's manager thread then waits for the rest forever (a SIGTERM during
    the Uni-FEP build hung the process so, holding the cache lock)."""
    cancel.set()
    if getattr(pool, "_broken", False):
        # A broken pool's manager thread SIGTERMs the workers left and joins them; ours ignore
        # SIGTERM (the build stops them), and one blocked sending a result that nobody reads
        # any more would never exit: the join, and so this shutdown, would wait forever.
        _kill_workers(pool)
    pool.shutdown(wait=True, cancel_futures=True)


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    processes = _workers(pool)
    for process in processes:
        if process.exitcode is None:
            process.kill()
    for process in processes:
        process.join(timeout=10)


def build_cache(target: Path, inputs: ReadResult, identity: dict, data: DataConfig) -> dict:
    """Featurize ``inputs`` into a new cache at ``target`` and return its meta.

    The caller holds the cache lock. Raises TooManyFailuresError (keeping nothing) when more than
    ``data.max_failure_fraction`` of the complexes fail.
    """
    for stale in target.parent.glob(f"{target.name}.partial-*"):
        log.warning("removing %s, left by an interrupted build", stale)
        shutil.rmtree(stale)
    staged = Staged(target, directory=True,
                    partial=target.with_name(f"{target.name}.partial-{os.getpid()}"))
    started = time.perf_counter()
    with reporting_full_disk(staged), staged:  # a full disk: DiskFullError, no partial left
        meta = write_shards(staged.partial, inputs, identity, data)
        meta["build"] = {"seconds": round(time.perf_counter() - started, 3),
                         "workers": worker_count(data.num_workers, len(inputs.records))}
        _write_json(staged.partial / META_FILE, meta)
        staged.commit()
    _failure_report(target).unlink(missing_ok=True)  # from an earlier, aborted build
    return meta


def write_shards(partial: Path, inputs: ReadResult, identity: dict, data: DataConfig) -> dict:
    """Featurize every record into shards under ``partial``, in input order; the cache's
    ``meta.json`` content. Raises TooManyFailuresError as soon as too many have failed."""
    records = inputs.records
    total = len(records) + len(inputs.failures)
    failures = list(inputs.failures)
    shards, complexes, pending = [], [], []
    by_id = {r.id: r for r in records}
    progress = tqdm(total=len(records), unit="complex", desc="featurizing", mininterval=1.0)
    workers = worker_count(data.num_workers, len(records))
    featurized = featurize_in_order(records, FeaturizeConfig(**identity["featurize"]), workers)
    # closing: an exception here (too many failures, a stop) ends the pool now, not at exit
    with closing(featurized):
        for result in featurized:
            progress.update()
            if isinstance(result, Failure):
                failures.append(result)
                _check_failures(failures, total, data, partial)
                continue
            graph = pickle.loads(result)
            record = by_id[graph.complex_id]
            complexes.append({"id": record.id, "group": record.group, "label": record.label,
                          **({"extras": dict(record.extras)} if record.extras else {})})
            pending.append(graph)
            if len(pending) == data.shard_size:
                shards.append(_write_shard(partial, len(shards), pending))
                pending = []
    progress.close()
    if pending:
        shards.append(_write_shard(partial, len(shards), pending))
    _check_failures(failures, total, data, partial, final=not complexes)
    return {"data_processing_version": DATA_PROCESSING_VERSION, "shard_format": SHARD_FORMAT,
            **identity, **content_identity(inputs), "versions": _versions(),
            "counts": {"inputs": total, "processed": len(complexes), "failed": len(failures),
                       "duplicates": len(inputs.duplicates)},
            "failures": [{"id": f.id, "reason": f.reason} for f in failures],
            "duplicates": [{"id": f.id, "reason": f.reason} for f in inputs.duplicates],
            **({"vina_terms": list(vocab.VINA_TERMS)} if identity["featurize"].get("vina_terms")
               else {}),
            "shards": shards, "complexes": complexes}


def _check_failures(failures: list[Failure], total: int, data: DataConfig, partial: Path,
                    final: bool = False) -> None:
    """Abort as soon as the failures already exceed the allowed fraction of all inputs."""
    if not final and len(failures) <= data.max_failure_fraction * total:
        return
    report = _failure_report(partial.with_name(partial.name.split(".partial-")[0]))
    _write_json(report, [{"id": f.id, "reason": f.reason} for f in failures])
    listed = "\n".join(f"  {f.id}: {f.reason}" for f in failures[:20])
    more = f"\n  ... and {len(failures) - 20} more" if len(failures) > 20 else ""
    rule = ("no complex could be featurized" if final else
            f"more than data.max_failure_fraction={data.max_failure_fraction}")
    raise TooManyFailuresError(
        f"{len(failures)} of {total} complexes failed featurization, {rule}; nothing was cached. "
        f"Full list: {report}\n{listed}{more}\nFix the inputs, or raise "
        "data.max_failure_fraction.")


def _failure_report(target: Path) -> Path:
    return target.with_name(f"{target.name}.failures.json")


def _write_shard(directory: Path, number: int, graphs: list[HeteroData]) -> dict:
    path = directory / shard_name(number)
    with open(path, "wb") as handle:  # fsynced with the directory by Staged.commit
        torch.save(pack_graphs(graphs), handle)
    return {"file": path.name, "count": len(graphs), "bytes": path.stat().st_size}


def _write_json(path: Path, payload) -> None:
    replace_atomically(path, lambda target: target.write_text(json.dumps(payload, indent=1)))


def _versions() -> dict:
    import Bio
    import rdkit
    import torch_geometric

    return {"plgraph": plgraph.__version__, "torch": torch.__version__,
            "torch_geometric": torch_geometric.__version__, "rdkit": rdkit.__version__,
            "biopython": Bio.__version__}
