"""Checkpoints: their bytes and their contents.

Bytes: complete or absent, found by recorded step, loaded without unpickling code. A checkpoint
is a dict of tensors and plain Python values (``torch.load(weights_only=True)`` reads it). It is
written to a temporary file, fsynced, read back and checked, and only then renamed over its
predecessor, so a ``kill -9`` at any instant leaves the previous good file.

Contents: the whole training state (model, optimizer, scaler, unfinished accumulation, progress,
history, every rank's RNG, config, data version, split) is assembled and restored here, and one
:func:`require_compatible` is the version check of every reader: resume, ``init_from`` and
``predict.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from plgraph.config import AppConfig
from plgraph.errors import PlgraphError
from plgraph.featurize import DATA_PROCESSING_VERSION
from plgraph.runtime.atomic import replace_atomically
from plgraph.training.device import gradient_scale
from plgraph.training.state import Progress, provenance

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
REQUIRED_KEYS = ("format", "model", "optimizer", "progress", "rng", "config",
                 "data_processing_version", "split_fingerprint")
# An inference-only checkpoint (kind "inference", :func:`inference_state`): what predict.py
# rebuilds a model from, without the optimizer, gradients and random states of a training.
INFERENCE_KEYS = ("format", "kind", "model", "model_config", "featurize_config",
                  "data_processing_version")


class CheckpointError(PlgraphError):
    """A checkpoint is unreadable, of another format, or does not fit this run."""


def save_checkpoint(state: dict, path: Path) -> None:
    """Write ``state`` to ``path`` atomically, after reading the written bytes back."""

    def write_and_verify(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            torch.save(state, handle)
        if read_checkpoint(temporary)["progress"] != state["progress"]:
            raise CheckpointError(f"{temporary}: read back a different state than was written")

    replace_atomically(path, write_and_verify, needed=_tensor_bytes(state))


def _tensor_bytes(state) -> int:
    """The bytes of the tensors in ``state``: about what its file takes, for a full disk's
    message."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(_tensor_bytes(value) for value in state.values())
    if isinstance(state, list | tuple):
        return sum(_tensor_bytes(value) for value in state)
    return 0


def read_checkpoint(path: Path, inference: bool = False) -> dict:
    """Load a checkpoint to CPU without executing pickled code; check its format and keys.

    ``inference``: an inference-only checkpoint (:func:`inference_state`) is accepted too (by
    predict.py; a training cannot resume from one)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, bad pickle, unsafe global, ...
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(error).__name__}: "
                              f"{_reason(error)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: checkpoint format {found}, this code reads "
                              f"{CHECKPOINT_FORMAT}")
    kind_ok = inference and state.get("kind") == "inference"
    missing = [k for k in (INFERENCE_KEYS if kind_ok else REQUIRED_KEYS) if k not in state]
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



# What each reader of a checkpoint of other graphs should do instead.
WAY_OUT = {
    "resume": "Start over with fresh=true (old checkpoints are moved aside) or use a new run_name.",
    "init_from": "Its weights would read other graphs: fine-tune a checkpoint of this version, or "
                 "train from scratch without init_from.",
    "predict": "Use a plgraph version that matches the checkpoint, or retrain.",
}


def require_compatible(state: dict, path: Path | str, use: str,
                       split_fingerprint: str | None = None) -> None:
    """Refuse a checkpoint whose graphs this code does not make (or, for a resume, of another
    split), saying what to do.

    Args:
        state: the checkpoint's content (:func:`read_checkpoint`).
        path: where it was read, for the message.
        use: who reads it: ``resume``, ``init_from`` or ``predict`` (the way out differs).
        split_fingerprint: the run's split, checked when given (a resume).
    """
    if state["data_processing_version"] != DATA_PROCESSING_VERSION:
        raise CheckpointError(f"{path} was trained on graphs of DATA_PROCESSING_VERSION "
                              f"{state['data_processing_version']}, this code featurizes with "
                              f"version {DATA_PROCESSING_VERSION}. {WAY_OUT[use]}")
    if split_fingerprint is not None and state["split_fingerprint"] != split_fingerprint:
        raise CheckpointError(f"{path} was trained on another split (fingerprint "
                              f"{state['split_fingerprint'][:12]}, now {split_fingerprint[:12]}): "
                              f"the data or split.* changed. {WAY_OUT[use]}")


def load_weights(model: torch.nn.Module, state: dict, path: Path | str) -> None:
    """The checkpoint's weights into ``model``, strictly; a mismatch names the file."""
    try:
        model.load_state_dict(state["model"], strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit this model: {error}") from None


@dataclass
class TrainingParts:
    """What a checkpoint saves besides the trainer's own bookkeeping."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler


def training_state(kind: str, parts: TrainingParts, progress: Progress, history: list[dict],
                   rng_by_rank: list[dict], world_size: int, config: AppConfig,
                   split_fingerprint: str, ligand_heavy_atoms: list[int],
                   origin: dict | None) -> dict:
    """The complete training state, as :func:`save_checkpoint` writes it."""
    model = parts.model
    grads = {n: p.grad.detach().cpu() for n, p in model.named_parameters()
             if p.grad is not None}
    return {
        "format": CHECKPOINT_FORMAT, "kind": kind,
        "model": model.state_dict(), "optimizer": parts.optimizer.state_dict(),
        "scaler": parts.scaler.state_dict(), "grads": grads,
        "progress": dataclasses.asdict(progress), "history": history,
        "rng": rng_by_rank[0], "rng_by_rank": rng_by_rank,
        "world_size": world_size,
        "sampler": {"seed": config.seed, "epoch": progress.epoch,
                    "batches_seen": progress.batches_seen, "world_size": world_size},
        "target_normalization": {"mean": model.target_mean.item(),
                                 "std": model.target_std.item()},
        "config": dataclasses.asdict(config),
        "model_config": config.model.to_dict(),
        "featurize_config": config.featurize.to_dict(),
        "data_processing_version": DATA_PROCESSING_VERSION,
        "split_fingerprint": split_fingerprint,
        "ligand_heavy_atoms": ligand_heavy_atoms,
        "provenance": provenance(),
        "init_from": origin,
    }


def inference_state(state: dict) -> dict:
    """The part of a training checkpoint ``state`` that prediction needs: the weights (with the
    target standardization, a buffer), the model and featurization configs, the data version,
    the training ligand sizes, and for the record the run's config, history, split fingerprint
    and provenance; no optimizer, scaler, gradients, progress or random states. Its ``kind`` is
    ``inference``: ``read_checkpoint(path, inference=True)`` reads it, a resume refuses it."""
    kept = ("format", "model", "model_config", "featurize_config", "data_processing_version",
            "target_normalization", "ligand_heavy_atoms", "config", "history",
            "split_fingerprint", "provenance", "init_from")
    return {**{key: state[key] for key in kept if key in state}, "kind": "inference",
            "source_kind": state.get("kind")}


def restore_training_state(state: dict, path: Path, parts: TrainingParts,
                           device: torch.device, weight_decay: float) -> Progress:
    """Weights, optimizer (with today's weight decay), scaler and the gradients of an unfinished
    accumulation from ``state``; returns its progress. The RNG is not restored here: that comes
    last, after everything that may draw random numbers."""
    load_weights(parts.model, state, path)
    parts.optimizer.load_state_dict(state["optimizer"])
    for group in parts.optimizer.param_groups:  # a changed weight decay takes effect now
        group["weight_decay"] = weight_decay
    if parts.scaler.is_enabled() and state["scaler"]:
        parts.scaler.load_state_dict(state["scaler"])
    # An unfinished accumulation carries the saved scale; a precision changed on resume
    # (fp16 <-> fp32 / bf16) brings the other scale, to which its gradients are brought.
    rescale = gradient_scale(parts.scaler.state_dict()) / gradient_scale(state["scaler"])
    for name, parameter in parts.model.named_parameters():
        grad = state["grads"].get(name)
        if grad is not None and rescale != 1.0:
            grad = grad * rescale
        parameter.grad = grad.to(device) if grad is not None else None
    return Progress(**state["progress"])


def adapt_to_world_size(progress: Progress, saved: int, world_size: int, batch_size: int,
                        accumulation: int, path: Path) -> bool:
    """Another number of processes than the checkpoint's (``path``): the epoch goes on from the
    same number of complexes seen, rounded down to a whole optimizer step, in another order.
    True when ``progress`` changed (a partial accumulation's gradients then no longer fit)."""
    if saved == world_size:
        return False
    batches = progress.batches_seen * batch_size * saved // (batch_size * world_size)
    progress.batches_seen = batches - batches % accumulation
    log.warning("%s was written by %d process%s, this run has %d: the data order changes from "
                "here on (an exact resume needs the same world size); epoch %d goes on at batch "
                "%d of this rank's share", path, saved, "es" if saved > 1 else "", world_size,
                progress.epoch + 1, progress.batches_seen)
    return True
