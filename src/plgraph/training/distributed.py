"""Distributed data parallel under ``torchrun``: who this process is, and the few collectives the
trainer needs to keep every rank at the same step.

Rank 0 is the only writer (checkpoints, reports, the run lock); every other rank reads. Decisions
that end or pause the loop (a stop signal on any rank, SAVE_NOW.flag, a non-finite loss, early
stopping) are agreed by a collective after each batch, so all ranks stop together and none is
left waiting in an all-reduce. The phases before and after the loop (data preparation, resume
load, MLflow setup, preflight, test evaluation) end with :meth:`Collectives.agree` for the same
reason: a stop signal or an error on one rank ends every rank at the same point.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from plgraph.errors import PlgraphError
from plgraph.runtime.stop import STOP, StopRequested

log = logging.getLogger(__name__)
T = TypeVar("T")

# Long enough for rank 0 to validate and write a checkpoint while the others wait.
TIMEOUT = datetime.timedelta(minutes=60)
# The agreement after a phase waits as long as the phase: the others wait while the first rank
# builds the processed cache of a large dataset (hours on a few cores).
PHASE_TIMEOUT = datetime.timedelta(hours=24)
_phase_group: dist.ProcessGroup | None = None


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job; the defaults are a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> Ranks:
        """What ``torchrun`` set (RANK, WORLD_SIZE, LOCAL_RANK), or a single process."""
        if "WORLD_SIZE" not in os.environ:
            return cls()
        try:
            ranks = cls(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                        int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))
        except (KeyError, ValueError) as error:
            raise PlgraphError(f"WORLD_SIZE is set but RANK / LOCAL_RANK are not usable "
                               f"({error}); launch with torchrun --nproc_per_node=N main.py"
                               ) from None
        return ranks

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE_PROCESS = Ranks()


def start_process_group(ranks: Ranks, device: torch.device) -> None:
    """NCCL between GPUs, gloo on CPU; torchrun's environment gives the rendezvous."""
    if not ranks.enabled or dist.is_initialized():
        return
    global _phase_group
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT)
    # CPU objects, so gloo also beside NCCL; a group of its own for its long timeout.
    _phase_group = dist.new_group(backend="gloo", timeout=PHASE_TIMEOUT)
    log.info("process group: rank %d of %d (%s)", ranks.rank, ranks.world_size, backend)


def end_process_group() -> None:
    global _phase_group
    if dist.is_initialized():
        dist.destroy_process_group()
    _phase_group = None


class Collectives:
    """The trainer's view of the process group; every call is a no-op for a single process."""

    def __init__(self, ranks: Ranks, device: torch.device):
        self.ranks = ranks
        # NCCL reduces CUDA tensors only; gloo CPU tensors.
        self._device = device if device.type == "cuda" else torch.device("cpu")

    def barrier(self) -> None:
        if self.ranks.enabled:
            dist.barrier()

    def max_over_ranks(self, *values: int) -> list[int]:
        """Element-wise maximum over all ranks: a flag or signal number raised on any rank."""
        if not self.ranks.enabled:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.int64, device=self._device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor.tolist()

    def sum_over_ranks(self, *values: float) -> list[float]:
        if not self.ranks.enabled:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self._device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def collect_epoch_loss(self, progress) -> None:
        """Sum the ranks' running epoch loss (a :class:`Progress`) into rank 0 (the others keep
        none), so that the checkpoint and the epoch's train loss cover every rank."""
        if not self.ranks.enabled:
            return
        total, graphs = self.sum_over_ranks(progress.epoch_loss_sum, progress.epoch_graphs)
        main = self.ranks.is_main
        progress.epoch_loss_sum = total if main else 0.0
        progress.epoch_graphs = int(graphs) if main else 0

    def from_main(self, value: object) -> object:
        """Rank 0's ``value`` on every rank (plain Python values and tensors)."""
        if not self.ranks.enabled:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0, device=self._device)
        return holder[0]

    def gather(self, value: object) -> list:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.ranks.enabled:
            return [value]
        values: list = [None] * self.ranks.world_size
        dist.all_gather_object(values, value)
        return values

    def agree(self, what: str, work: Callable[[], T] | None = None, *, check: bool = True) -> T:
        """Run one phase on this rank, then go on only if every rank can.

        A :class:`StopRequested` or a plgraph error raised by ``work`` on any rank is raised on
        every rank, here, together: none is left waiting in a collective for a rank that has
        gone. With ``check``, a stop signal that arrived on any rank during the phase stops
        every rank too (a safe point). Every rank calls it at the same point of the program.

        Args:
            what: what a stop here cuts short, for the message.
            work: the phase on this rank (the caller decides what each rank does); None: none.
            check: False after the last phase, when a late signal has nothing left to stop.

        Returns:
            What ``work`` returned on this rank.
        """
        own: Exception | None = None
        try:
            result = work() if work is not None else None
        except (StopRequested, PlgraphError, ValueError) as error:
            if not self.ranks.enabled:
                raise
            own, result = error, None
        if not self.ranks.enabled:
            if check:
                STOP.check(what)
            return result
        reports: list = [None] * self.ranks.world_size
        dist.all_gather_object(reports, _report(own, what, check), group=_phase_group)
        _raise_agreed(reports, own)
        return result


def _report(failure: Exception | None, what: str, check: bool) -> tuple | None:
    """What this rank tells the others about a phase: plain values, pickled by gloo."""
    if isinstance(failure, StopRequested):
        return ("stop", int(failure.signal), failure.what)
    if failure is not None:
        return ("error", 0, str(failure))
    if check and STOP.signal is not None:
        return ("stop", int(STOP.signal), what)
    return None


def _raise_agreed(reports: list, own: Exception | None) -> None:
    """Raise the same outcome on every rank: an error before a stop, the lowest rank's first. A
    rank raises its own exception when it had one, so its message keeps its detail."""
    for kind in ("error", "stop"):
        found = [(rank, report) for rank, report in enumerate(reports)
                 if report is not None and report[0] == kind]
        if not found:
            continue
        if own is not None and (kind == "stop") == isinstance(own, StopRequested):
            raise own
        rank, (_, number, text) = found[0]
        if kind == "error":
            raise PlgraphError(f"rank {rank} stopped with an error: {text}")
        raise StopRequested(number, text)


def rank_order(size: int, seed: int, epoch: int, ranks: Ranks) -> list[int]:
    """This rank's share of an epoch's training order: PyTorch's ``DistributedSampler``, seeded
    per epoch. Every rank gets the same number of indices (the sampler repeats a few to even them
    out), so no rank waits for another's extra batch. With one process it is a seeded permutation
    of the whole epoch, the same as it always was."""
    sampler = DistributedSampler(range(size), num_replicas=ranks.world_size, rank=ranks.rank,
                                 shuffle=True, seed=seed * 1_000_003, drop_last=False)
    sampler.set_epoch(epoch)
    return list(sampler)


def rank_batches(batches: list[list[int]], ranks: Ranks) -> list[list[int]]:
    """This rank's share of an epoch's ready-made batches (``trainer.objective=within_series``,
    whose batches must keep a series' groups whole): every ``world_size``-th batch, the first few
    repeated so that every rank gets the same number, as :func:`rank_order` evens out indices."""
    if not ranks.enabled:
        return batches
    world = ranks.world_size
    padded = batches + batches[:(-len(batches)) % world]
    return padded[ranks.rank::world]
