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

from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import scatter

from plgraph.config import TrainConfig
from plgraph.errors import PlgraphError
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


def pairwise_logistic_loss(prediction: Tensor, target: Tensor, series: Tensor) -> Tensor | None:
    r"""RankNet's loss on the ordered pairs of one series: ``sum w_ij softplus(-(p_i - p_j))
    / sum w_ij`` over the pairs with ``t_i > t_j``, ``w_ij = t_i - t_j``.

    The squared error on differences asks for each difference's size, which a family-split
    model cannot learn for a new protein (its scale is the protein's); the order is what a
    chemist uses. Weighting each pair by its measured gap keeps pairs within assay noise (a
    near tie whose order is a coin toss) from counting as much as a clear one. ``None`` where
    the batch has no ordered pair of one series.

    Args:
        prediction, target: standardized, ``[num_graphs]``.
        series: an integer code of each graph's series ``[num_graphs]``.
    """
    same = series[:, None] == series[None, :]
    gap = target[:, None] - target[None, :]
    ordered = same & (gap > 0)
    if not bool(ordered.any()):
        return None
    weight = gap[ordered]
    margin = (prediction[:, None] - prediction[None, :])[ordered]
    return (weight * F.softplus(-margin)).sum() / weight.sum()


def relative_loss(kind: str, prediction: Tensor, target: Tensor, series: Tensor,
                  absolute_weight: float) -> Tensor:
    """The within-series loss of ``trainer.relative_loss``: ``squared`` (differences,
    :func:`within_series_loss`), ``pairwise_logistic`` (order, :func:`pairwise_logistic_loss`)
    or ``both`` (their sum), each beside ``absolute_weight`` times the absolute error."""
    if kind == "squared":
        return within_series_loss(prediction, target, series, absolute_weight)
    # None where no two ligands of one series differ: then only the other part is left (under
    # ``both`` the squared part, which still asks tied ligands for equal predictions).
    ranking = pairwise_logistic_loss(prediction, target, series)
    if kind == "both":
        squared = within_series_loss(prediction, target, series, absolute_weight)
        return squared if ranking is None else squared + (1 - absolute_weight) * ranking
    absolute = F.mse_loss(prediction, target)
    return absolute if ranking is None else (
        (1 - absolute_weight) * ranking + absolute_weight * absolute)


def training_loss(objective: str, prediction: Tensor, target: Tensor, series: list[str],
                  absolute_weight: float, relative: str = "squared") -> Tensor:
    """The batch's loss under ``trainer.objective``: plain MSE, or the within-series loss
    (``trainer.relative_loss``) on each complex's ``series`` (one name per complex of the
    batch)."""
    if objective == "absolute":
        return F.mse_loss(prediction, target)
    codes = {name: code for code, name in enumerate(sorted(set(series)))}
    series_codes = torch.tensor([codes[name] for name in series], device=prediction.device)
    return relative_loss(relative, prediction, target, series_codes, absolute_weight)


def decoy_margin_loss(pose: Tensor, decoy: Tensor, margin: float) -> Tensor:
    r"""``trainer.decoy_weight``'s term: ``mean max(0, margin - (p_pose - p_decoy))``, each
    modelled pose's prediction against its decoy's (:mod:`plgraph.featurize.decoys`), both
    standardized like ``margin``. A hinge, not a logistic: a decoy already scored ``margin``
    below its pose adds nothing, so the term does not keep pushing the two apart (the pose's
    own pK is the labels' business).

    Args:
        pose, decoy: standardized predictions ``[num_graphs]``, decoy ``i`` of pose ``i``.
        margin: the gap asked for, in standardized units (pK / the labels' std).
    """
    return F.relu(margin - (pose - decoy)).mean()


def check_series(config: TrainConfig, series_by_part: dict[str, list[str]],
                 min_series_size: int) -> None:
    """The within-series objective and the series monitor need to know each complex's series,
    and enough of them to compare: refuse before any work, saying what to change.

    Args:
        config: the trainer config (objective, monitor).
        series_by_part: the series of each complex of the ``train`` and ``val`` parts, with
            the ids: ``{part: [(id, series), ...]}``.
        min_series_size: ``experiment.min_series_size``, the smallest series ranked.
    """
    needs = [f"trainer.{key}={value}" for key, value, default in (
        ("objective", config.objective, "absolute"),
        ("monitor", config.monitor, "rmse")) if value != default]
    if not needs:
        return
    knob = " and ".join(needs)
    for part in ("train", "val"):
        members = series_by_part[part]
        unknown = [i for i, name in members if not name]
        if unknown:
            raise PlgraphError(
                f"{knob} needs the congeneric series of every complex, and {len(unknown)} "
                f"of the {len(members)} {part} complexes have none (e.g. {unknown[0]}). Series "
                "come from the series and reference layouts, or a manifest's group column; "
                "otherwise use trainer.objective=absolute trainer.monitor=rmse")
    sizes = Counter(name for _, name in series_by_part["train"])
    if config.objective == "within_series" and max(sizes.values()) < 2:
        raise PlgraphError(f"trainer.objective=within_series: no training series has two "
                           f"complexes ({len(sizes)} series of one), so there is no "
                           "difference to learn; use trainer.objective=absolute")
    validation = Counter(name for _, name in series_by_part["val"])
    if config.monitor == "series_spearman" and max(validation.values()) < min_series_size:
        raise PlgraphError(f"trainer.monitor=series_spearman: no validation series has "
                           f"{min_series_size} complexes (experiment.min_series_size), so "
                           "there is no ranking to monitor; use trainer.monitor=rmse")
