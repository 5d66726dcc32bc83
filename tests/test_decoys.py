"""Decoy poses (``trainer.decoy_weight``): on real complexes, a decoy is the graph featurizing
its moved pose gives, keeps the ligand's shape, leaves the cached pose alone; the margin term
and its config rules; a run with decoys trains differently and resumes exactly."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import SAMPLE, SAMPLE_IDS
from rdkit.Geometry import Point3D
from test_training import app_config, check_it_changes_the_training_and_resumes_exactly
from torch_geometric.loader import DataLoader

from plgraph.config import AppConfig, FeaturizeConfig, TrainConfig
from plgraph.featurize import (
    BOND,
    CONTACT,
    INTERACTION,
    LIGAND,
    PROTEIN,
    featurize_complex,
    load_protein,
    read_ligand_files,
)
from plgraph.featurize.decoys import decoy_complex, with_decoys
from plgraph.training.objective import decoy_margin_loss
from plgraph.training.run_dir import RunDirectory
from plgraph.training.trainer import Trainer


def sample_complex(complex_id: str):
    """A bundled PDBbind complex: its ligand, its pocket (used as given, never cut) and graph."""
    config = FeaturizeConfig()
    folder = SAMPLE / complex_id
    ligand = read_ligand_files([folder / f"{complex_id}_ligand.sdf",
                                folder / f"{complex_id}_ligand.mol2"], complex_id)
    pocket = load_protein(folder / f"{complex_id}_pocket.pdb", config)
    return ligand, pocket, featurize_complex(ligand, pocket, config, complex_id,
                                             cut_pocket=False)


def distances(pos: torch.Tensor) -> torch.Tensor:
    """Every atom pair's distance, exactly (``torch.cdist``'s matrix product is not)."""
    return (pos[:, None] - pos[None, :]).norm(dim=-1)


def rmsd(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).square().sum(dim=1).mean().sqrt().item()


@pytest.mark.parametrize("complex_id", SAMPLE_IDS[:3])
def test_a_decoy_is_the_graph_that_featurizing_the_moved_pose_gives(complex_id):
    ligand, pocket, graph = sample_complex(complex_id)
    cutoff = FeaturizeConfig().interaction_cutoff
    decoy = decoy_complex(graph, 45.0, 2.0, cutoff, torch.Generator().manual_seed(1))
    conformer = ligand.GetConformer()
    for atom, (x, y, z) in enumerate(decoy[LIGAND].pos.double().tolist()):
        conformer.SetAtomPosition(atom, Point3D(x, y, z))
    featurized = featurize_complex(ligand, pocket, FeaturizeConfig(), complex_id,
                                   cut_pocket=False)
    assert torch.equal(decoy[INTERACTION].edge_index, featurized[INTERACTION].edge_index)
    assert torch.allclose(decoy[INTERACTION].distance, featurized[INTERACTION].distance,
                          atol=1e-4)
    assert not torch.equal(decoy[INTERACTION].edge_index, graph[INTERACTION].edge_index)
    for store, key in ((LIGAND, "x"), (PROTEIN, "x"), (PROTEIN, "pos"), (BOND, "edge_index"),
                       (BOND, "edge_attr"), (CONTACT, "edge_index"), (CONTACT, "edge_attr")):
        assert torch.equal(decoy[store][key], featurized[store][key]), (store, key)


def test_no_move_rebuilds_the_cached_edges_exactly():
    _, _, graph = sample_complex(SAMPLE_IDS[0])
    same = decoy_complex(graph, 0.0, 0.0, FeaturizeConfig().interaction_cutoff)
    assert torch.equal(same[INTERACTION].edge_index, graph[INTERACTION].edge_index)
    assert torch.allclose(same[INTERACTION].distance, graph[INTERACTION].distance, atol=1e-5)


def test_a_decoy_keeps_the_ligand_s_shape_and_lies_off_the_pose():
    torch.manual_seed(0)
    for complex_id in SAMPLE_IDS[:8]:
        _, _, graph = sample_complex(complex_id)
        pose = graph[LIGAND].pos.clone()
        decoy = decoy_complex(graph, 45.0, 2.0, 5.0)
        moved = decoy[LIGAND].pos
        assert torch.allclose(distances(moved), distances(pose), atol=1e-4)
        shift = (moved.mean(dim=0) - pose.mean(dim=0)).norm().item()
        assert shift == pytest.approx(2.0, abs=1e-4), complex_id
        assert rmsd(moved, pose) > 2.0, complex_id  # past docking's failure line
        assert torch.equal(graph[LIGAND].pos, pose)  # the featurized pose is not touched
        turned_only = decoy_complex(graph, 45.0, 0.0, 5.0)[LIGAND].pos
        assert turned_only.mean(dim=0) == pytest.approx(pose.mean(dim=0), abs=1e-4)
        assert rmsd(turned_only, pose) > 0.5, complex_id


def test_with_decoys_puts_each_decoy_after_the_batch(twenty_prepared):
    dataset = twenty_prepared[1].part("train")
    batch = next(iter(DataLoader([dataset[i] for i in range(4)], batch_size=4)))
    doubled = with_decoys(batch, 45.0, 2.0, 5.0, torch.Generator().manual_seed(0))
    assert doubled.num_graphs == 8
    assert list(doubled.complex_id) == list(batch.complex_id) * 2
    assert torch.equal(doubled.y, batch.y.repeat(2))
    for i in range(4):
        pose, decoy = doubled.get_example(i), doubled.get_example(i + 4)
        assert torch.equal(pose[LIGAND].pos, batch.get_example(i)[LIGAND].pos)
        assert torch.equal(decoy[LIGAND].x, pose[LIGAND].x)
        assert rmsd(decoy[LIGAND].pos, pose[LIGAND].pos) > 2.0


def test_the_margin_term_is_a_hinge_on_each_pose_against_its_decoy():
    pose = torch.tensor([1.0, 0.0, 2.0])
    decoy = torch.tensor([-1.0, 0.5, 1.5])  # beaten by 2, beaten by -0.5, by 0.5
    assert decoy_margin_loss(pose, decoy, 1.0).item() == pytest.approx((0 + 1.5 + 0.5) / 3)
    assert decoy_margin_loss(pose, pose - 1.0, 1.0).item() == 0.0


def test_decoy_settings_are_checked():
    with pytest.raises(ValueError, match=r"trainer.decoy_rotation must be in \[0, 180\]"):
        TrainConfig(decoy_rotation=200.0)
    with pytest.raises(ValueError, match=r"trainer.decoy_weight must be >= 0"):
        TrainConfig(decoy_weight=-1.0)
    with pytest.raises(ValueError, match="needs a decoy off the pose"):
        TrainConfig(decoy_weight=1.0, decoy_rotation=0.0, decoy_shift=0.0)
    with pytest.raises(ValueError, match=r"trainer.decoy_shift \(6.0 Å\) must be <= featurize"):
        AppConfig(trainer=TrainConfig(decoy_weight=1.0, decoy_shift=6.0))
    AppConfig(trainer=TrainConfig(decoy_shift=6.0))  # no decoys, no rule


def test_a_ligand_only_model_trains_without_decoys(twenty_prepared, tmp_path):
    """It reads no placement, so a decoy would score exactly as its pose: an experiment's
    ligand-only baseline, trained under the same trainer config, makes none."""
    dataset = twenty_prepared[1].part("train")
    batch = next(iter(DataLoader([dataset[i] for i in range(4)], batch_size=4)))
    for use_protein, graphs in ((True, 8), (False, 4)):
        config = app_config(twenty_prepared, tmp_path, f"protein-{use_protein}",
                            decoy_weight=1.0)
        config = dataclasses.replace(config, model=dataclasses.replace(
            config.model, use_protein=use_protein))
        with RunDirectory(config.run_dir) as run:
            trainer = Trainer(config, twenty_prepared[1], run, "python main.py")
            assert trainer.training_graphs(batch).num_graphs == graphs


@pytest.mark.slow
def test_decoys_change_the_training_and_a_run_with_decoys_resumes_exactly(twenty_prepared,
                                                                          tmp_path):
    check_it_changes_the_training_and_resumes_exactly(twenty_prepared, tmp_path,
                                                      decoy_weight=1.0)
