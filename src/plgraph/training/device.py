"""Device and mixed precision: CUDA when present, bf16 autocast where supported, else fp16 with
a GradScaler; fp32 on CPU."""

from __future__ import annotations

import contextlib
import os

import torch

from plgraph.errors import PlgraphError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when present. Under torchrun, ``cuda`` means this process's GPU (its
    LOCAL_RANK), made the current device so that NCCL and the caching allocator use it."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise PlgraphError(f"trainer.device={name}, but no CUDA device is visible here; use "
                           "trainer.device=auto or cpu")
    if device.index is None:
        device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


def resolve_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for fp32, whether a GradScaler is needed)."""
    if device.type != "cuda":
        if precision in ("fp16", "bf16"):
            raise PlgraphError(f"trainer.precision={precision} needs a CUDA device; on "
                               f"{device} use auto or fp32")
        return None, False
    if precision == "auto":
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
