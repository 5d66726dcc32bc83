"""``trainer.objective=within_series`` and ``trainer.monitor=series_spearman``: batches of series
groups, a loss of the differences inside them, selection by the validation series' ranking, on
real FEP+ series; exact resume as for any run."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import GOOD_IDS, TINY_MODEL, copy_sample, data_config
from test_experiment import copy_series
from test_training import assert_identical, fit, interrupt_when

from plgraph.config import AppConfig, FeaturizeConfig, SplitConfig, TrackingConfig, TrainConfig
from plgraph.data import prepare_data
from plgraph.errors import PlgraphError
from plgraph.training.checkpoint import read_checkpoint
from plgraph.training.distributed import Ranks, rank_batches
from plgraph.training.objective import (
    pairwise_logistic_loss,
    relative_loss,
    series_batch_count,
    series_batches,
    series_chunks,
    within_series_loss,
)
from plgraph.training.trainer import TrainingInterrupted

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def series_data(tmp_path_factory):
    """9 real FEP+ series (49 ligands, 7 proteins), split by series: half of them train."""
    root = copy_series(tmp_path_factory.mktemp("within") / "fep")
    config = data_config(root, layout="series", label_property="r_exp_dg",
                         label_kind="dg_kcal_mol")
    split = SplitConfig(strategy="grouped", train=0.5, val=0.25, test=0.25)
    return config, prepare_data(config, FeaturizeConfig(), split)


def within_config(series_data, tmp_path: Path, run_name: str, **trainer) -> AppConfig:
    settings = {"max_epochs": 3, "batch_size": 4, "warmup_steps": 2,
                "checkpoint_every_n_steps": 2, "objective": "within_series",
                "series_group_size": 2, "monitor": "series_spearman", **trainer}
    return AppConfig(data=series_data[0], model=dataclasses.replace(TINY_MODEL, dropout=0.1),
                     trainer=TrainConfig(**settings), tracking=TrackingConfig(enabled=False),
                     run_name=run_name, output_root=str(tmp_path))


def train_series(series_data) -> list[str]:
    prepared = series_data[1]
    series_of = {entry.id: entry.group for entry in prepared.cache.entries}
    return [series_of[i] for i in prepared.split.parts["train"]]


def test_a_series_is_cut_into_near_equal_groups():
    sizes = [len(c) for c in series_chunks(["a"] * 9 + ["b"] * 8 + ["c"] + ["d"] * 5, 4)]
    assert sizes == [3, 3, 3, 4, 4, 1, 3, 2]


def test_an_epoch_holds_every_training_complex_once_in_whole_groups_of_one_series(series_data):
    series = train_series(series_data)
    assert len(set(series)) >= 3 and len(series) >= 12
    epochs = [series_batches(series, group_size=4, batch_size=8, seed=0, epoch=e)
              for e in range(3)]
    total = Counter(series)
    for batches in epochs:
        assert len(batches) == series_batch_count(series, 4, 8)
        assert sorted(i for batch in batches for i in batch) == list(range(len(series)))
        for batch in batches:
            # two groups per batch, so at most two series, each with >= 2 ligands (a group of
            # one only where the series has one ligand)
            counts = Counter(series[i] for i in batch)
            assert len(batch) <= 8 and len(counts) <= 2
            assert all(n >= 2 or total[name] == 1 for name, n in counts.items())
    assert epochs[0] != epochs[1]  # reshuffled every epoch ...
    assert epochs[0] == series_batches(series, 4, 8, seed=0, epoch=0)  # ... as a function of it
    assert epochs[0] != series_batches(series, 4, 8, seed=1, epoch=0)


def test_ranks_share_the_batches_evenly_and_together_see_them_all():
    batches = [[i] for i in range(7)]
    shares = [rank_batches(batches, Ranks(rank, 3, rank)) for rank in range(3)]
    # 7 batches over 3 ranks: the first two are repeated so that each rank takes 3
    assert shares == [[[0], [3], [6]], [[1], [4], [0]], [[2], [5], [1]]]
    assert rank_batches(batches, Ranks()) == batches


def test_the_loss_is_blind_to_a_series_offset_and_sees_a_swap_inside_the_series():
    target = torch.tensor([1.0, 2.0, 3.0, 10.0, 12.0, 5.0])
    series = torch.tensor([0, 0, 0, 1, 1, 2])
    shifted = target + torch.tensor([4.0, 4.0, 4.0, -3.0, -3.0, 0.5])
    assert within_series_loss(shifted, target, series, 0.0).item() == pytest.approx(0.0, abs=1e-6)
    absolute = torch.nn.functional.mse_loss(shifted, target).item()
    assert within_series_loss(shifted, target, series, 0.25).item() == pytest.approx(
        0.25 * absolute)
    swapped = target[[1, 0, 2, 3, 4, 5]]  # ligands 0 and 1 of series 0 exchanged
    # p - t = (1, -1, 0) in series 0, whose mean error is 0; 0 in series 1; the lone ligand of
    # series 2 has no difference to compare
    expected = (1 + 1 + 0 + 0 + 0) / 5
    assert within_series_loss(swapped, target, series, 0.0).item() == pytest.approx(expected)
    alone = torch.tensor([0, 1, 2, 3, 4, 5])  # no series twice: the absolute loss alone
    assert within_series_loss(shifted, target, alone, 0.0).item() == pytest.approx(absolute)


def test_training_selects_by_the_validation_series_ranking_and_resumes_exactly(series_data,
                                                                                tmp_path):
    straight = within_config(series_data, tmp_path, "straight")
    results = fit(straight, series_data)
    history = read_checkpoint(straight.run_dir / "checkpoints" / "last.pt")["history"]
    ranking = [row["val_series_spearman"] for row in history]
    assert all(np.isfinite(ranking))
    assert results["best_epoch"] == 1 + int(np.argmax(ranking))  # the first best, not by RMSE
    assert read_checkpoint(straight.run_dir / "checkpoints" / "best.pt")["progress"][
        "best_metric"] == -max(ranking)
    assert "series_spearman" in results["test"]
    assert "val_series_spearman" in (straight.run_dir / "metrics.csv").read_text()

    stopped = within_config(series_data, tmp_path, "stopped")
    last = stopped.run_dir / "checkpoints" / "last.pt"
    interrupt_when(last.exists)
    with pytest.raises(TrainingInterrupted):
        fit(stopped, series_data)
    step = read_checkpoint(stopped.run_dir / "checkpoints" / "INTERRUPTED.pt")["progress"][
        "global_step"]
    assert 0 < step < results["steps"]
    fit(stopped, series_data)
    assert_identical(read_checkpoint(straight.run_dir / "checkpoints" / "last.pt")["model"],
                     read_checkpoint(last)["model"])
    assert read_checkpoint(last)["history"][-1]["val_series_spearman"] == ranking[-1]


def test_the_differences_inside_the_groups_drive_the_training(series_data, tmp_path):
    """Same batches, same seed: only the loss's share of differences changes the weights."""
    mostly_relative = within_config(series_data, tmp_path, "relative", max_epochs=1)
    only_absolute = within_config(series_data, tmp_path, "absolute", max_epochs=1,
                                  absolute_weight=1.0)
    fit(mostly_relative, series_data)
    fit(only_absolute, series_data)
    a, b = (read_checkpoint(c.run_dir / "checkpoints" / "last.pt")["model"]
            for c in (mostly_relative, only_absolute))
    assert any(not torch.equal(a[name], b[name]) for name in a)


def test_complexes_without_series_are_refused_before_any_work(tmp_path):
    root = copy_sample(tmp_path / "sample", GOOD_IDS + ("2l1r",))
    config = data_config(root)
    prepared = (config, prepare_data(config, FeaturizeConfig(), SplitConfig(train=0.6, val=0.2,
                                                                            test=0.2)))
    for trainer, knob in (({"objective": "within_series"}, "trainer.objective=within_series"),
                          ({"objective": "absolute"}, "trainer.monitor=series_spearman")):
        config = within_config(prepared, tmp_path, "refused", **trainer)
        with pytest.raises(PlgraphError, match=f"{knob}.*have none") as refusal:
            fit(config, prepared)
        assert "trainer.objective=absolute trainer.monitor=rmse" in str(refusal.value)
        assert not (config.run_dir / "checkpoints" / "last.pt").exists()


def test_a_batch_size_that_cuts_a_group_is_refused():
    with pytest.raises(ValueError, match="multiple of trainer.series_group_size"):
        TrainConfig(objective="within_series", batch_size=6, series_group_size=4)
    with pytest.raises(ValueError, match="trainer.monitor must be one of"):
        TrainConfig(monitor="pearson")


def test_the_ranking_loss_sees_order_not_scale_and_weighs_clear_pairs_over_near_ties():
    target = torch.tensor([1.0, 2.0, 3.0, 10.0, 12.0, 5.0])
    series = torch.tensor([0, 0, 0, 1, 1, 2])
    right = target * 4 + torch.tensor([7.0, 7.0, 7.0, -2.0, -2.0, 0.0])  # same order, wider
    wrong = -right
    assert pairwise_logistic_loss(right, target, series) < 0.01
    assert pairwise_logistic_loss(wrong, target, series) > 5.0
    # one pair swapped: the clear pair (gap 2) costs more than the near tie (gap 0.1)
    near_tie = torch.tensor([0.0, 0.1, 5.0])
    pair_codes = torch.tensor([0, 0, 0])
    swap_tie = torch.tensor([1.0, 0.0, 9.0])
    swap_clear = torch.tensor([0.0, 9.0, 1.0])
    assert (pairwise_logistic_loss(swap_tie, near_tie, pair_codes)
            < pairwise_logistic_loss(swap_clear, near_tie, pair_codes))
    # no two of one series: no ordered pair, and the relative loss falls back to the absolute
    alone = torch.tensor([0, 1, 2, 3, 4, 5])
    assert pairwise_logistic_loss(right, target, alone) is None
    absolute = torch.nn.functional.mse_loss(right, target)
    assert relative_loss("pairwise_logistic", right, target, alone, 0.1) == pytest.approx(
        absolute.item())
    # "both" is the squared loss plus the ranking term; "squared" is the former loss exactly
    squared = within_series_loss(right, target, series, 0.1)
    assert relative_loss("squared", right, target, series, 0.1) == squared
    ranking = pairwise_logistic_loss(right, target, series)
    assert relative_loss("both", right, target, series, 0.1).item() == pytest.approx(
        (squared + 0.9 * ranking).item())
    # A batch of ties only (no ordered pair): "both" keeps its squared part, which still asks
    # the tied pair for equal predictions; the ranking loss alone has nothing to rank.
    tied = torch.tensor([2.0, 2.0, 4.0, 4.0])
    tied_codes = torch.tensor([0, 0, 1, 1])
    kept_tie = torch.tensor([5.0, 5.0, 4.0, 4.0])  # the tie kept, one series' level off by 3
    broken_tie = torch.tensor([1.0, 3.0, 4.0, 4.0])  # the levels right, the tie broken
    assert pairwise_logistic_loss(broken_tie, tied, tied_codes) is None
    assert relative_loss("both", broken_tie, tied, tied_codes, 0.1) == within_series_loss(
        broken_tie, tied, tied_codes, 0.1)
    assert (relative_loss("both", kept_tie, tied, tied_codes, 0.1)
            < relative_loss("both", broken_tie, tied, tied_codes, 0.1))
    assert (relative_loss("pairwise_logistic", kept_tie, tied, tied_codes, 0.1)
            > relative_loss("pairwise_logistic", broken_tie, tied, tied_codes, 0.1))
    with pytest.raises(ValueError, match="trainer.relative_loss must be one of"):
        TrainConfig(relative_loss="listwise")
