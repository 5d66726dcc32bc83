"""The epoch plan: which complexes each batch of an epoch holds, and the DataLoader that feeds
them. Public, so that benchmarks measure the trainer's own plan and loader, not a copy.

The order is a function of (seed, epoch) and this rank alone; every DataLoader gets its own
generator, so creating one never draws from the global RNG, which belongs to the model (dropout)
and must continue exactly on resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch_geometric.loader import DataLoader

from plgraph.config import TrainConfig
from plgraph.runtime.stop import ignore_stop_signals_in_worker
from plgraph.training.distributed import SINGLE_PROCESS, Ranks, rank_batches, rank_order
from plgraph.training.objective import series_batch_count, series_batches


@dataclass(frozen=True)
class EpochPlan:
    """The batches of every epoch of one run's train part.

    Args:
        config: the trainer config (batch size, objective, series group size, accumulation).
        seed: the run's seed.
        train_series: the series of each train complex, in the part's order ("" where unknown;
            only the within-series objective reads them).
        ranks: this process's rank under torchrun.
    """

    config: TrainConfig
    seed: int
    train_series: list[str]
    ranks: Ranks = SINGLE_PROCESS

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch``, as indices into the train part."""
        size = self.config.batch_size
        if self.config.objective == "within_series":
            return rank_batches(series_batches(self.train_series, self.config.series_group_size,
                                               size, self.seed, epoch), self.ranks)
        order = rank_order(len(self.train_series), self.seed, epoch, self.ranks)
        return [order[i:i + size] for i in range(0, len(order), size)]

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch on this rank (the same every epoch)."""
        if self.config.objective == "within_series":
            batches = math.ceil(series_batch_count(self.train_series,
                                                   self.config.series_group_size,
                                                   self.config.batch_size)
                                / self.ranks.world_size)
        else:
            per_rank = math.ceil(len(self.train_series) / self.ranks.world_size)
            batches = math.ceil(per_rank / self.config.batch_size)
        return math.ceil(batches / self.config.grad_accumulation)


def in_order(size: int, batch_size: int) -> list[list[int]]:
    """Every index of a part of ``size`` complexes once, in order (evaluation)."""
    return [list(range(i, min(i + batch_size, size))) for i in range(0, size, batch_size)]


def loader(dataset, batches: list[list[int]], seed: int, epoch: int, workers: int,
           device: torch.device) -> DataLoader:
    """A DataLoader over ``batches`` of ``dataset`` with its own generator (seed + epoch)."""
    generator = torch.Generator().manual_seed(seed + epoch)
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                      worker_init_fn=ignore_stop_signals_in_worker if workers else None,
                      generator=generator, pin_memory=device.type == "cuda")
