"""``trainer.objective=within_series``: learn the differences inside a congeneric series.

Under the absolute objective most of the loss is the spread between proteins: one target's
series sits at pK 8, another's at pK 5. With a few hundred training proteins the network learns
that spread by recognizing the proteins, which says nothing about a new one (``bench/README.md``).
What a chemist ranks by, and what relative binding free-energy methods compute, is the
difference between ligands of one series on one target. So here the batches are made of groups
of ligands from one series, and the loss compares the predicted differences inside each group
with the measured ones (centred on the group's mean, which is the mean squared pairwise error up
to a constant factor), plus a small share of the absolute error so that predictions stay on the
pK scale and the heavy-atom trend keeps a global anchor.

The batches are a function of (seed, epoch), like the absolute objective's shuffled order, so a
resume continues them exactly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import scatter

from plgraph.training.metrics import positions_by_series


def series_chunks(series: list[str], group_size: int, rng: np.random.Generator | None = None,
                  ) -> list[np.ndarray]:
    """The positions of each series cut into near-equal groups of at most ``group_size``, in a
    random order within each series when ``rng`` is given (sorted otherwise). A series of 9
    with groups of 4 makes 3 + 3 + 3, not 4 + 4 + 1: a group of one has no difference to learn
    (with groups of 3 or more, only a series of one ligand makes one; with groups of 2, an odd
    series does)."""
    members = positions_by_series(series)
    chunks = []
    for name in sorted(members):
        positions = np.asarray(members[name])
        if rng is not None:
            positions = rng.permutation(positions)
        pieces = -(-len(positions) // group_size)  # ceil
        chunks += np.array_split(positions, pieces)
    return chunks


def series_batches(series: list[str], group_size: int, batch_size: int, seed: int,
                   epoch: int) -> list[list[int]]:
    """One epoch's batches: shuffled groups of one series (:func:`series_chunks`), a whole
    number of groups per batch (``batch_size // group_size``), seeded by (seed, epoch).

    Args:
        series: the series of each training complex, by position in the train part.
    """
    rng = np.random.default_rng([seed, epoch])
    chunks = series_chunks(series, group_size, rng)
    order = rng.permutation(len(chunks))
    per_batch = batch_size // group_size
    return [[int(i) for c in order[start:start + per_batch] for i in chunks[c]]
            for start in range(0, len(order), per_batch)]


def series_batch_count(series: list[str], group_size: int, batch_size: int) -> int:
    """Batches per epoch of :func:`series_batches`: the same every epoch."""
    chunks = len(series_chunks(series, group_size))
    return -(-chunks // (batch_size // group_size))


def within_series_loss(prediction: Tensor, target: Tensor, series: Tensor,
                       absolute_weight: float) -> Tensor:
    r"""``(1 - w) * mean over grouped ligands of ((p - mean_s p) - (t - mean_s t))^2
    + w * mean (p - t)^2``, where ``s`` is the ligand's series in this batch and ``w`` is
    ``absolute_weight``. Ligands alone of their series in the batch add only to the absolute
    part; a batch with no pair at all is the absolute loss alone.

    Args:
        prediction, target: standardized, ``[num_graphs]``.
        series: an integer code of each graph's series ``[num_graphs]``.
    """
    _, group = torch.unique(series, return_inverse=True)
    size = torch.bincount(group)
    centred = (prediction - scatter(prediction, group, dim=0, reduce="mean")[group]) - (
        target - scatter(target, group, dim=0, reduce="mean")[group])
    paired = size[group] >= 2
    absolute = F.mse_loss(prediction, target)
    if not bool(paired.any()):
        return absolute
    relative = centred[paired].square().mean()
    return (1 - absolute_weight) * relative + absolute_weight * absolute
