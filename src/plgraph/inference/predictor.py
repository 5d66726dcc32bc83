"""A trained model rebuilt from its checkpoint alone, and batched pK prediction with it.

The checkpoint carries the model config, the featurization config and the
``DATA_PROCESSING_VERSION`` it was trained with; a checkpoint of another version is refused, so a
model never sees graphs featurized differently from its training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch_geometric.loader import DataLoader

from plgraph.config import FeaturizeConfig, ModelConfig
from plgraph.errors import PlgraphError
from plgraph.model import PLGraphNet
from plgraph.training.checkpoint import (
    CheckpointError,
    load_weights,
    read_checkpoint,
    require_compatible,
)


@dataclass
class Predictor:
    """One or more trained models (an ensemble) sharing one featurization config."""

    models: list[PLGraphNet]
    featurize: FeaturizeConfig
    sources: list[Path]
    device: torch.device
    # [smallest, largest] ligand heavy-atom count the models were trained on (over the ensemble);
    # None when a checkpoint predates storing it: then predict.py checks no ligand size.
    training_sizes: list[int] | None = None
    # The models' record on series of protein families they never saw (:func:`series_record`,
    # the ensemble's mean); None where a member has none. Series mode's method follows it.
    series_record: float | None = None

    @classmethod
    def load(cls, checkpoints: list[Path], device: torch.device) -> Predictor:
        """Rebuild each model from its checkpoint (``weights_only`` loading, strict state dict).

        Raises:
            CheckpointError: another DATA_PROCESSING_VERSION, or ensemble members featurized
                differently.
        """
        if not checkpoints:
            raise PlgraphError("no checkpoint given")
        models, featurize, sizes, records = [], None, [], []
        for path in checkpoints:
            state = read_checkpoint(path, inference=True)
            require_compatible(state, path, "predict")
            config = FeaturizeConfig(**state["featurize_config"])
            if featurize is not None and config != featurize:
                raise CheckpointError(f"{path} was featurized with {config.to_dict()}, the "
                                      f"ensemble's first member with {featurize.to_dict()}")
            featurize = config
            sizes.append(state.get("ligand_heavy_atoms") or None)
            records.append(series_record(state))
            model = PLGraphNet(ModelConfig(**state["model_config"]))
            load_weights(model, state, path)
            models.append(model.to(device).eval())
        assert featurize is not None
        known = None if None in sizes else [min(s[0] for s in sizes), max(s[1] for s in sizes)]
        record = None if None in records else float(np.mean(records))
        return cls(models, featurize, list(checkpoints), device, known, record)

    @torch.no_grad()
    def predict(self, graphs: list, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation over the ensemble of the predicted pK of each graph
        (the deviation is 0 for a single model)."""
        if not graphs:
            return np.zeros(0), np.zeros(0)
        per_model = []
        for model in self.models:
            values = [model.predict_pk(batch.to(self.device)).float().cpu()
                      for batch in DataLoader(graphs, batch_size=batch_size)]
            per_model.append(torch.cat(values).numpy())
        stacked = np.stack(per_model)
        return stacked.mean(axis=0), stacked.std(axis=0)

    @torch.no_grad()
    def contributions(self, graphs: list, batch_size: int = 32) -> list[np.ndarray]:
        """Per graph, each ligand heavy atom's contribution to the predicted pK, the mean over
        the ensemble (``PLGraphNet.atom_contributions``; with the models' mean intercept, they
        sum to the mean prediction)."""
        total: list[np.ndarray] | None = None
        for model in self.models:
            found = []
            for batch in DataLoader(graphs, batch_size=batch_size):
                values, owner = model.atom_contributions(batch.to(self.device))
                values, owner = values.float().cpu().numpy(), owner.cpu().numpy()
                found += [values[owner == g] for g in range(batch.num_graphs)]
            total = found if total is None else [t + f for t, f in zip(total, found, strict=True)]
        return [t / len(self.models) for t in total] if total else []


# Splits whose validation part holds protein families (or targets) kept out of training.
UNSEEN_PROTEIN_SPLITS = ("family", "target")


def series_record(state: dict) -> float | None:
    """A checkpoint's record on series of proteins it never saw: the mean per-series Spearman
    rho of its validation series at the last epoch its history holds (``best.pt``'s: the epoch
    it was kept at), where its split kept the validation proteins out of training (a family or
    target split); None otherwise: under a random split the validation series share their
    targets with training, and say nothing of a new protein."""
    split = (state.get("config") or {}).get("split") or {}
    history = state.get("history") or []
    if split.get("strategy") not in UNSEEN_PROTEIN_SPLITS or not history:
        return None
    value = history[-1].get("val_series_spearman")
    return float(value) if value is not None and np.isfinite(value) else None


class NoTrainedRunError(PlgraphError):
    """No run under the output root has a ``best.pt``."""


def latest_best_checkpoint(output_root: Path) -> Path:
    """``best.pt`` of the most recently trained run under ``output_root``.

    Raises:
        NoTrainedRunError: there is none.
    """
    candidates = sorted(output_root.glob("*/checkpoints/best.pt"),
                        key=lambda path: path.stat().st_mtime)
    if not candidates:
        raise NoTrainedRunError(f"no trained run with checkpoints/best.pt under {output_root}; "
                                "train one with python main.py, or give checkpoint=PATH")
    return candidates[-1]
