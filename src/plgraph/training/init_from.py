"""``init_from=PATH``: a new run that starts from a trained checkpoint's weights.

The regime chemists work in: a model pretrained on many targets, then fine-tuned on the 5-20
measured ligands of a new series. What carries over and what does not:

- the model and featurization configs come from the checkpoint (the weights only fit that
  network, and only graphs featurized the same way mean the same to it); an explicit command
  line override of a ``model.*`` or ``featurize.*`` key that disagrees is refused, naming it;
- the weights, and with them the target standardization (the buffers ``target_mean`` and
  ``target_std``): a few fine-tuning ligands would give a poor mean and std, and a new one would
  shift every prediction the pretrained head makes;
- not the optimizer, the schedule, the step count or the RNG: fine-tuning is a new run;
- the origin (path, step, SHA-256 of the file) goes into every checkpoint of the new run, its
  ``results.json`` and, as the ``init_from`` parameter, MLflow. A resumed fine-tuning run resumes
  from its own checkpoints, as exactly as any run.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from plgraph.config import AppConfig, FeaturizeConfig, ModelConfig
from plgraph.runtime.files import sha256_of
from plgraph.training.checkpoint import load_weights, read_checkpoint, require_compatible
from plgraph.training.run_dir import flatten

log = logging.getLogger(__name__)
GROUPS = ("model", "featurize")


def adopt_checkpoint_configs(config: AppConfig, overridden: set[str]) -> AppConfig:
    """``config`` with the model and featurization configs of ``config.init_from``.

    Args:
        config: the composed config, ``init_from`` set.
        overridden: the keys given on the command line (``model.hidden_channels``, or ``model``
            for a group choice such as ``model=large``).

    Raises:
        CheckpointError: the checkpoint is unreadable or of another DATA_PROCESSING_VERSION.
        ValueError: an override of a model or featurization key disagrees with the checkpoint.
    """
    path = Path(config.init_from)
    state = read_checkpoint(path)
    require_compatible(state, f"init_from={path}", "init_from")
    adopted = {"model": ModelConfig(**state["model_config"]),
               "featurize": FeaturizeConfig(**state["featurize_config"])}
    for group in GROUPS:
        ours = flatten({group: dataclasses.asdict(getattr(config, group))})
        theirs = flatten({group: dataclasses.asdict(adopted[group])})
        conflicts = sorted(k for k in ours if ours[k] != theirs.get(k) and (
            k in overridden or group in overridden))
        if conflicts:
            raise ValueError(
                f"init_from={path} brings its own {group} config; the command line sets "
                + ", ".join(f"{k}={ours[k]!r} (checkpoint: {theirs.get(k)!r})" for k in conflicts)
                + ". Drop the override, or train from scratch without init_from")
    return dataclasses.replace(config, **adopted)


def origin(path: Path, state: dict) -> dict:
    """What a fine-tuning run records of the checkpoint it started from."""
    return {"path": str(path.absolute()), "step": state["progress"]["global_step"],
            "sha256": sha256_of(path)}


def initialize_from(model: torch.nn.Module, path: Path) -> dict:
    """Weights and target standardization of the checkpoint ``init_from`` names, into
    ``model``; what the run records of its origin (:func:`origin`)."""
    state = read_checkpoint(path)
    require_compatible(state, f"init_from={path}", "init_from")
    load_weights(model, state, f"init_from={path}")
    found = origin(path, state)
    log.info("initialized from %s (step %d, sha256 %s...): weights and target standardization "
             "(mean %.3f, std %.3f) kept; optimizer and schedule new", path, found["step"],
             found["sha256"][:12], model.target_mean.item(), model.target_std.item())
    return found
