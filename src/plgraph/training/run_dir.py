"""The run directory ``outputs/<run_name>/``: one writer, fresh starts that delete nothing, and the
rules for resuming with a changed config."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from contextlib import ExitStack
from pathlib import Path

from plgraph.errors import PlgraphError
from plgraph.runtime.lock import exclusive_lock

log = logging.getLogger(__name__)

SAVE_NOW_FLAG = "SAVE_NOW.flag"
# Files a run writes; fresh=true moves them aside together with checkpoints/.
RUN_FILES = ("metrics.csv", "results.json", "learning_curve.png", "test_scatter.png",
             "test_predictions.csv", "mlflow_run.json")
# Config keys whose change keeps a resumed run meaningful; they take effect from the resumed step.
RESUMABLE_CHANGES = {"trainer.max_epochs", "trainer.lr", "trainer.weight_decay",
                     "trainer.warmup_steps", "trainer.min_lr_ratio", "trainer.plateau_patience",
                     "trainer.plateau_factor", "trainer.grad_clip",
                     "trainer.early_stopping_patience", "trainer.device", "trainer.precision",
                     "trainer.checkpoint_every_n_steps", "trainer.periodic_every_n_steps",
                     "trainer.keep_periodic", "trainer.loader_workers", "trainer.deterministic"}
# Safe at an epoch boundary, but would re-cut the batches of an epoch in progress.
EPOCH_BOUNDARY_CHANGES = {"trainer.batch_size", "trainer.grad_accumulation"}
# Everything else (model, featurization, split, data, seed, scheduler) makes another run.


class ConfigChangeError(PlgraphError):
    """The config changed in a way that would corrupt the resumed run."""


class RunDirectory:
    """``outputs/<run_name>/`` held by one process for its lifetime (``with`` block).

    ``writer=False`` is for the other ranks of a torchrun job: they read the checkpoints that
    rank 0, the run's one writer and lock holder, writes."""

    def __init__(self, path: Path, writer: bool = True):
        self.path, self.writer = path, writer
        self.checkpoints = path / "checkpoints"
        self.save_now_flag = path / SAVE_NOW_FLAG
        self._stack = ExitStack()

    def __enter__(self) -> RunDirectory:
        if not self.writer:
            return self
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self._stack.enter_context(exclusive_lock(self.path / "run.lock",
                                                 f"run directory {self.path}", wait=False))
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()

    def move_aside(self) -> Path | None:
        """fresh=true: move checkpoints and results to ``previous-<time>/``; delete nothing."""
        present = [p for p in [self.checkpoints, *(self.path / f for f in RUN_FILES)]
                   if p.exists()]
        if not any(self.checkpoints.iterdir()) and len(present) == 1:
            return None
        target = self.path / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
        target.mkdir()
        for path in present:
            path.rename(target / path.name)
        self.checkpoints.mkdir()
        log.info("fresh=true: moved the previous checkpoints and results to %s", target)
        return target

    def save_now_request(self) -> os.stat_result | None:
        """The ``SAVE_NOW.flag`` a user created (its stat), or None.

        The flag stays until :meth:`served_save_now`: its disappearance is what tells the user
        (or a wrapper script) that a checkpoint is durable and the job may be killed."""
        try:
            return self.save_now_flag.stat()
        except FileNotFoundError:
            return None

    def served_save_now(self, seen: os.stat_result) -> None:
        """Remove the flag ``seen`` by :meth:`save_now_request`, once its checkpoint is durable
        (written, fsynced, read back, renamed). A flag touched again meanwhile asks for another
        save after the next batch, so it stays."""
        try:
            now = self.save_now_flag.stat()
        except FileNotFoundError:
            return
        if (now.st_ino, now.st_mtime_ns) == (seen.st_ino, seen.st_mtime_ns):
            self.save_now_flag.unlink(missing_ok=True)


def flatten(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def check_config_change(saved: dict, current: dict, mid_epoch: bool) -> list[str]:
    """The changes from ``saved`` to ``current``, as lines for the log.

    Raises:
        ConfigChangeError: a change that would corrupt the run, with the way out.
    """
    old, new = flatten(saved), flatten(current)
    added = _keys_added_at_their_default(old, new)
    changed = sorted(k for k in old.keys() | new.keys()
                     if old.get(k) != new.get(k) and not _irrelevant(k) and k not in added)
    allowed = RESUMABLE_CHANGES | (set() if mid_epoch else EPOCH_BOUNDARY_CHANGES)
    refused = [k for k in changed if k not in allowed]
    lines = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed]
    if refused:
        why = " (the checkpoint is in the middle of an epoch)" if set(refused) <= (
            EPOCH_BOUNDARY_CHANGES) else ""
        raise ConfigChangeError(
            "cannot resume this run with a changed " + ", ".join(
                f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in refused) + f"{why}. Start "
            "over with fresh=true (old checkpoints are moved aside), or train under a new "
            "run_name=...")
    return lines


def _keys_added_at_their_default(old: dict, new: dict) -> set[str]:
    """Keys a newer plgraph added since the checkpoint was written, at their default value.

    A key's default keeps the behaviour the run had before the key existed, so an upgrade in the
    middle of a chain of jobs resumes; the same key set to another value is a real change.
    """
    from plgraph.config import AppConfig

    defaults = flatten(dataclasses.asdict(AppConfig()))
    return {k for k in new.keys() - old.keys() if k in defaults and new[k] == defaults[k]}


def _irrelevant(key: str) -> bool:
    """Keys that say how to run this process, not what the run is."""
    return key.startswith(("tracking.", "experiment.")) or key in {
        "fresh", "prepare_only", "data.workers", "data.processed_dir", "data.root", "data.labels",
        "output_root", "run_name"}
