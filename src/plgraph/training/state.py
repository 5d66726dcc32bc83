"""The trainer's own state, saved like any other component, and the code it ran."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch_geometric

from plgraph.config import TrainConfig


@dataclass
class Progress:
    """Where training stands; with the RNG states, enough to continue at the exact next batch.

    Args:
        epoch: the epoch in progress (0-based); equals the number of finished epochs.
        batches_seen: batches of this epoch already trained on.
        global_step: optimizer steps taken.
        epoch_loss_sum / epoch_graphs: running training loss of the epoch in progress.
        best_metric / best_epoch: the best validation figure so far (``trainer.monitor``,
            lower is better: RMSE, or minus the mean per-series Spearman) and its epoch
            (0-based).
        bad_epochs: epochs since the last improvement (early stopping).
        plateau_bad_epochs / plateau_scale: the plateau scheduler's counter and LR factor.
        wall_seconds: training time over all sessions of this run.
    """

    epoch: int = 0
    batches_seen: int = 0
    global_step: int = 0
    epoch_loss_sum: float = 0.0
    epoch_graphs: int = 0
    best_metric: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    plateau_bad_epochs: int = 0
    plateau_scale: float = 1.0
    wall_seconds: float = 0.0

    def finished_by(self, config: TrainConfig) -> str:
        """Why training is over under ``config`` ("" while it goes on). Derived, not stored, so
        raising max_epochs or the patience on a finished run trains on."""
        if self.epoch >= config.max_epochs:
            return "max_epochs"
        if config.early_stopping_patience and self.bad_epochs >= config.early_stopping_patience:
            return "early_stopping"
        return ""


    def record_validation(self, score: float, config: TrainConfig) -> bool:
        """Count the epoch's validation ``score`` (lower is better) toward early stopping and
        the plateau schedule; True when it is the best so far."""
        if score < self.best_metric:
            self.best_metric, self.best_epoch = score, self.epoch
            self.bad_epochs = self.plateau_bad_epochs = 0
            return True
        self.bad_epochs += 1
        self.plateau_bad_epochs += 1
        if config.scheduler == "plateau" and self.plateau_bad_epochs >= config.plateau_patience:
            self.plateau_scale *= config.plateau_factor
            self.plateau_bad_epochs = 0
        return False

    def next_epoch(self) -> None:
        """The epoch is done: the next one starts at its first batch with no loss summed."""
        self.epoch += 1
        self.batches_seen = self.epoch_graphs = 0
        self.epoch_loss_sum = 0.0


def provenance() -> dict:
    """Code and library versions, stored in every checkpoint."""
    return {"git_commit": _git_commit(), "torch": str(torch.__version__),
            "torch_geometric": str(torch_geometric.__version__),
            "python": sys.version.split()[0]}


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
