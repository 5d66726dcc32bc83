"""``model.anchor=heavy_atoms``: a new run starts exactly on the heavy-atom line fitted on its
train part (real complexes), and learns away from it; the fit itself; the config's rule."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL
from torch_geometric.loader import DataLoader

from plgraph.config import AppConfig, ModelConfig, TrackingConfig, TrainConfig
from plgraph.training.anchor import heavy_atom_fit
from plgraph.training.checkpoint import read_checkpoint
from plgraph.training.run_dir import RunDirectory
from plgraph.training.trainer import Trainer

ANCHORED = dataclasses.replace(TINY_MODEL, size_term=True, pair_energy=True, anchor="heavy_atoms")


def test_the_fit_is_the_least_squares_line():
    counts = np.array([12, 20, 25, 31, 40])
    labels = 0.07 * counts + 4.2 + np.array([0.1, -0.2, 0.05, 0.0, 0.05])
    slope, intercept = heavy_atom_fit(counts, labels)
    design = np.stack([counts, np.ones_like(counts)], axis=1).astype(float)
    expected = np.linalg.lstsq(design, labels, rcond=None)[0]
    assert (slope, intercept) == pytest.approx(tuple(expected), abs=1e-12)


def test_ligands_of_one_size_give_a_flat_line_through_their_mean():
    assert heavy_atom_fit([22, 22, 22], [5.0, 6.0, 7.5]) == (0.0, pytest.approx(6.166666666))
    with pytest.raises(ValueError, match="at least one"):
        heavy_atom_fit([], [])


def test_an_anchor_without_the_size_term_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="model.size_term=true"):
        ModelConfig(anchor="heavy_atoms")
    with pytest.raises(ValueError, match="model.anchor must be one of none, heavy_atoms"):
        ModelConfig(size_term=True, anchor="ligand_size")


def anchored_config(twenty_prepared, tmp_path, **trainer) -> AppConfig:
    data, _ = twenty_prepared
    return AppConfig(data=data, model=ANCHORED, output_root=str(tmp_path),
                     tracking=TrackingConfig(enabled=False),
                     trainer=TrainConfig(**{"max_epochs": 2, "batch_size": 4, "warmup_steps": 2,
                                            **trainer}))


def predictions_and_sizes(model, dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    model.eval()
    predicted, sizes, labels = [], [], []
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=8):
            predicted.append(model.predict_pk(batch))
            sizes.append(torch.bincount(batch["ligand"].batch))
            labels.append(batch.y)
    return tuple(torch.cat(values).double().numpy() for values in (predicted, sizes, labels))


def test_a_new_anchored_run_predicts_the_heavy_atom_line_for_every_part(twenty_prepared,
                                                                         tmp_path):
    config = anchored_config(twenty_prepared, tmp_path)
    prepared = twenty_prepared[1]
    with RunDirectory(config.run_dir) as run:
        trainer = Trainer(config, prepared, run, "python main.py")
        trainer.start()
        _, train_sizes, train_labels = predictions_and_sizes(trainer.model, prepared.part("train"))
        slope, intercept = np.polyfit(train_sizes, train_labels, 1)
        for part in ("train", "val", "test"):
            predicted, sizes, _ = predictions_and_sizes(trainer.model, prepared.part(part))
            np.testing.assert_allclose(predicted, slope * sizes + intercept, atol=1e-4)
        assert slope != pytest.approx(0.0)  # the sample's sizes do carry a trend to anchor


def test_training_moves_the_anchored_model_off_the_line_and_keeps_its_standardization(
        twenty_prepared, tmp_path):
    config = anchored_config(twenty_prepared, tmp_path)
    prepared = twenty_prepared[1]
    with RunDirectory(config.run_dir) as run:
        Trainer(config, prepared, run, "python main.py").fit()
    state = read_checkpoint(config.run_dir / "checkpoints" / "last.pt")
    assert state["config"]["model"]["anchor"] == "heavy_atoms"
    output = state["model"]["head.output_network.1.update_net.2.weight"]
    assert output.abs().sum() > 0  # the head was zero at the start: it learned a residual
    train = prepared.part("train")
    sizes = [g["ligand"].num_nodes for g in train]
    _, intercept = heavy_atom_fit(sizes, [float(g.y) for g in train])
    assert state["model"]["target_mean"].item() == pytest.approx(intercept, rel=1e-6)
