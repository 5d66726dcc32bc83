"""Checkpoints: complete or absent, found by recorded step, loaded without unpickling code.

A checkpoint is a dict of tensors and plain Python values (``torch.load(weights_only=True)``
reads it). It is written to a temporary file, fsynced, read back and checked, and only then
renamed over its predecessor, so a ``kill -9`` at any instant leaves the previous good file.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from plgraph.errors import PlgraphError
from plgraph.runtime.atomic import replace_atomically

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
REQUIRED_KEYS = ("format", "model", "optimizer", "progress", "rng", "config",
                 "data_processing_version", "split_fingerprint")


class CheckpointError(PlgraphError):
    """A checkpoint is unreadable, of another format, or does not fit this run."""


def save_checkpoint(state: dict, path: Path) -> None:
    """Write ``state`` to ``path`` atomically, after reading the written bytes back."""

    def write_and_verify(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            torch.save(state, handle)
        if read_checkpoint(temporary)["progress"] != state["progress"]:
            raise CheckpointError(f"{temporary}: read back a different state than was written")

    replace_atomically(path, write_and_verify)


def read_checkpoint(path: Path) -> dict:
    """Load a checkpoint to CPU without executing pickled code; check its format and keys."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, bad pickle, unsafe global, ...
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(error).__name__}: "
                              f"{_reason(error)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: checkpoint format {found}, this code reads "
                              f"{CHECKPOINT_FORMAT}")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {missing}")
    return state


def _reason(error: Exception) -> str:
    """The informative line of a load error (torch's weights-only errors open with advice)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if "Unsupported global" in line]
    return (named or lines or [""])[0]


@dataclass(frozen=True)
class FoundCheckpoint:
    path: Path
    state: dict

    @property
    def step(self) -> int:
        return self.state["progress"]["global_step"]


def find_latest_checkpoint(directory: Path) -> FoundCheckpoint | None:
    """The valid checkpoint with the highest recorded position (not the newest file time).

    Unreadable or truncated files are skipped with a warning naming them. Ties (the same state
    saved under several names) go to the one saved last within the step (the largest batch count).
    """
    best: FoundCheckpoint | None = None
    for path in sorted(directory.glob("*.pt")) if directory.is_dir() else []:
        try:
            state = read_checkpoint(path)
        except CheckpointError as error:
            log.warning("skipping %s", error)
            continue
        found = FoundCheckpoint(path, state)
        if best is None or _position(found) > _position(best):
            best = found
    return best


def _position(found: FoundCheckpoint) -> tuple[int, int, int]:
    progress = found.state["progress"]
    return progress["global_step"], progress["batches_seen"], progress["epoch"]


def capture_rng() -> dict:
    """Every random state as tensors and plain values (weights_only-safe)."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": list(mt_state), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached": cached},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng(state: dict) -> None:
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        if len(state["cuda"]) != torch.cuda.device_count():
            log.warning("checkpoint has CUDA RNG states of %d devices, this machine %d: CUDA "
                        "random streams will differ", len(state["cuda"]), torch.cuda.device_count())
        else:
            torch.cuda.set_rng_state_all(state["cuda"])


def prune_periodic(directory: Path, keep: int) -> None:
    """Keep the ``keep`` periodic checkpoints with the highest step numbers."""
    periodic = sorted(directory.glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    for path in periodic[:max(len(periodic) - keep, 0)]:
        path.unlink()

