"""Device and mixed precision: CUDA when present, bf16 autocast where supported, else fp16 with
a GradScaler; fp32 on CPU unless bf16 or fp16 is asked for.

CPU autocast runs both low precisions with every op of the model (PyG's ``ViS_MP`` message
passing and ``scatter`` included: their messages are promoted to fp32 by the fp32 edge lengths
and directions, the linear layers run in bf16/fp16), and ``torch.amp.GradScaler("cpu")`` scales
fp16 losses there as on CUDA. On a CPU without bf16/fp16 arithmetic that is slower than fp32: it
serves to prove the mixed-precision paths (their checkpoints, their exact resume, the scaler's
skipped steps) on machines without a GPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterable

import numpy as np
import torch

from plgraph.errors import NonFiniteLossError, PlgraphError

log = logging.getLogger(__name__)


def resolve_device(name: str, local_rank: int = 0, key: str = "trainer.device") -> torch.device:
    """``auto``: CUDA when present. Under torchrun, ``cuda`` means this process's GPU (its
    LOCAL_RANK), made the current device so that NCCL and the caching allocator use it.
    ``key`` is the setting the message names (``device`` for predict.py)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise PlgraphError(f"{key}={name}, but no CUDA device is visible here; use "
                           f"{key}=auto or cpu")
    if device.index is None:
        device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


def resolve_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for fp32, whether a GradScaler is needed).

    ``auto`` is fp32 on CPU (low precision is no faster there) and on CUDA bf16 where the GPU
    supports it, else fp16; an explicit ``bf16`` or ``fp16`` is honoured on either device."""
    if precision == "auto":
        if device.type != "cuda":
            return None, False
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "bf16":
        return torch.bfloat16, False
    if precision == "fp16":
        return torch.float16, True  # fp16 gradients underflow without loss scaling
    return None, False


def set_determinism(requested: bool | None, device: torch.device) -> bool:
    """Deterministic kernels when asked, or by default on CPU (bit-exact resume costs little
    there); on CUDA, kernels without a deterministic version warn instead of failing."""
    enabled = device.type == "cpu" if requested is None else requested
    torch.use_deterministic_algorithms(enabled, warn_only=device.type == "cuda")
    if enabled and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return enabled


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# fairseq's default ``--min-loss-scale``: a scale halved this far means the loss or the gradients
# are non-finite at any scale (divergence, a bad complex), no longer an fp16 overflow.
MIN_LOSS_SCALE = 1e-4


def scaled_step(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer,
                parameters: Iterable[torch.nn.Parameter], grad_clip: float) -> bool:
    """Unscale, clip, step and update the scale; whether the optimizer step was taken.

    With fp16 the GradScaler skips a step whose gradients hold an inf or NaN and halves its scale
    (the only case in which it lowers it), so a lower scale after the update means a skipped step.
    A disabled scaler (fp32, bf16) always steps.
    """
    scale = scaler.get_scale() if scaler.is_enabled() else None
    if grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return scale is None or scaler.get_scale() >= scale


def gradient_scale(scaler_state: dict) -> float:
    """The factor in gradients accumulated under a GradScaler with this ``state_dict()`` (1 for a
    disabled one, whose state is empty): a checkpoint's unfinished accumulation carries it."""
    return float(scaler_state.get("scale", 1.0)) if scaler_state else 1.0


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def precision_name(amp_dtype: torch.dtype | None) -> str:
    """How a run computes, as results.json and the log say it."""
    if amp_dtype is None:
        return "fp32"
    return "bf16" if amp_dtype == torch.bfloat16 else "fp16+GradScaler"


def check_loss_scale(scaler: torch.amp.GradScaler, progress, checkpoints) -> None:
    """fp16: the GradScaler found an inf or NaN gradient, skipped the step and halved its
    scale; the NaN guard is for non-finite values at any scale, hence the floor. ``progress``
    (the step and epoch) and ``checkpoints`` (where the last good one is) are for the message."""
    scale = scaler.get_scale()
    log.info("fp16: step %d skipped by the GradScaler (inf or NaN gradient); loss scale now %g",
             progress.global_step, scale)
    if scale < MIN_LOSS_SCALE:
        raise NonFiniteLossError(
            f"fp16: the loss scale fell to {scale:g} (below {MIN_LOSS_SCALE:g}) at step "
            f"{progress.global_step}, epoch {progress.epoch + 1}: the loss or the gradients are "
            "non-finite at any scale. Nothing was saved from these steps: the last good "
            f"checkpoint stays in {checkpoints}. Lower trainer.lr, try trainer.precision=bf16 or "
            "fp32, or check the complexes named above.")
