"""The heavy-atom fit, as a baseline and as the starting point of an anchored model.

Within a congeneric series, larger ligands tend to bind more tightly; across unseen proteins a
straight line in the ligand's heavy-atom count ranks a series better than a network that has
memorized its training proteins (bench/README.md). ``model.anchor=heavy_atoms`` starts the
network exactly on that line, fitted on the run's train part, so that what it learns is the
residual: training can only take it away from the baseline as far as the data (and early
stopping on validation) allow.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)


def heavy_atom_fit(counts, labels) -> tuple[float, float]:
    """``(slope, intercept)`` of the least-squares line pK = slope * heavy atoms + intercept.
    Where every ligand has the same size the slope is 0 and the intercept the mean label (a
    line through one x is undetermined; this is the fit's least-norm answer)."""
    counts, labels = np.asarray(counts, float), np.asarray(labels, float)
    if len(labels) == 0:
        raise ValueError("the heavy-atom fit needs at least one labelled complex")
    if np.ptp(counts) == 0:
        return 0.0, float(labels.mean())
    slope, intercept = np.polyfit(counts, labels, 1)
    return float(slope), float(intercept)


def start_on_heavy_atom_line(model, counts, labels) -> None:
    """Start ``model`` as the heavy-atom fit on the train part (``model.anchor=heavy_atoms``):
    ``counts`` and ``labels`` of the train complexes."""
    slope, intercept = heavy_atom_fit(counts, labels)
    model.anchor_to_heavy_atoms(slope, intercept)
    log.info("model.anchor=heavy_atoms: starting as pK = %.4f * heavy atoms + %.3f (the "
             "least-squares line on %d train complexes)", slope, intercept, len(counts))


def start_new_model(model, train_labels: list[float], train_sizes: list[int]) -> None:
    """A new run's model: its output standardized on the train part's labels, and started on
    the heavy-atom line where ``model.anchor=heavy_atoms``."""
    labels = torch.tensor(train_labels)
    std = labels.std().item() if len(labels) > 1 else 1.0
    model.set_target_normalization(labels.mean().item(), std if std > 0 else 1.0)
    if model.config.anchor == "heavy_atoms":
        start_on_heavy_atom_line(model, train_sizes, labels.numpy())
