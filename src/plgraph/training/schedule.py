"""Learning rate as a pure function of the step, so a resumed run needs no scheduler object and a
changed ``trainer.lr`` or ``trainer.max_epochs`` takes effect from the resumed step on."""

from __future__ import annotations

import math

from plgraph.config import TrainConfig


def learning_rate(config: TrainConfig, step: int, total_steps: int, plateau_scale: float) -> float:
    """The learning rate for optimizer step ``step`` (0-based) of ``total_steps``.

    Linear warm-up over ``warmup_steps``; then ``cosine`` decays to ``min_lr_ratio * lr`` at
    ``total_steps``, ``plateau`` multiplies by ``plateau_scale`` (lowered by the trainer after
    epochs without improvement), ``constant`` stays.
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.scheduler == "cosine":
        span = max(total_steps - config.warmup_steps, 1)
        progress = min((step - config.warmup_steps) / span, 1.0)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)
    if config.scheduler == "plateau":
        return config.lr * plateau_scale
    return config.lr
