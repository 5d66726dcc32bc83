"""``trainer.coordinate_noise``: Gaussian noise on the training batches' atom positions, on real
complexes; the cached pose is never touched, and a run with noise resumes exactly."""

from __future__ import annotations

import pytest
import torch
from test_training import check_it_changes_the_training_and_resumes_exactly
from torch_geometric.loader import DataLoader

from plgraph.config import TrainConfig
from plgraph.model.graph import LIGAND, PROTEIN
from plgraph.training.augment import jitter_positions


@pytest.fixture(scope="module")
def prepared(twenty_prepared):
    return twenty_prepared


def first_batch(prepared, size: int = 4):
    dataset = prepared[1].part("train")
    return next(iter(DataLoader([dataset[i] for i in range(size)], batch_size=size)))


def test_every_atom_moves_by_the_asked_spread_and_the_cached_pose_stays(prepared):
    batch = first_batch(prepared)
    before = {t: batch[t].pos.clone() for t in (LIGAND, PROTEIN)}
    edges = {t: batch[t].num_nodes for t in (LIGAND, PROTEIN)}
    torch.manual_seed(0)
    jittered = jitter_positions(batch, 0.3)
    for node_type, pos in before.items():
        moved = jittered[node_type].pos - pos
        assert (moved != 0).all(), node_type  # every coordinate of every atom
        # hundreds of pocket atoms, dozens of ligand atoms: the sample spread is close to 0.3
        assert moved.std().item() == pytest.approx(0.3, rel=0.15), node_type
        assert abs(moved.mean().item()) < 0.1, node_type
        assert jittered[node_type].num_nodes == edges[node_type]
    fresh = first_batch(prepared)  # the dataset's graphs still hold the featurized pose
    for node_type, pos in before.items():
        assert torch.equal(fresh[node_type].pos, pos), node_type


def test_no_noise_leaves_the_batch_as_it_is(prepared):
    batch = first_batch(prepared)
    ligand = batch[LIGAND].pos
    assert jitter_positions(batch, 0.0)[LIGAND].pos is ligand


def test_a_negative_spread_is_refused():
    with pytest.raises(ValueError, match=r"trainer.coordinate_noise must be >= 0 \(got -0.1\)"):
        TrainConfig(coordinate_noise=-0.1)


@pytest.mark.slow
def test_noise_changes_the_training_and_a_noisy_run_resumes_exactly(prepared, tmp_path):
    check_it_changes_the_training_and_resumes_exactly(prepared, tmp_path, coordinate_noise=0.2)
