"""Checkpoints keep their bytes across the house plan's move: a checkpoint written by the code of
commit 620404f (before the trainer was carved up) resumes under today's code and ends on the
very weights the old code reached, and today's code writes the same state at the same step.
tests/data/checkpoint-620404f/make.py made the files with that commit's trainer and checkpoint
code and today's featurization (DATA_PROCESSING_VERSION 8; in 6, 5 of the 20 complexes, 1hte,
2b1i, 2p3a, 2pv2, 2w8w, gained the atoms of their repeated residues; 7 changed posing, which
these posed ligands do not use, and its config; 8 added the ligand descriptors, which this
model does not read). The checkpoint format is what is
under test; a checkpoint of version 5, as 620404f itself wrote it, is refused on resume."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

from plgraph.config import FeaturizeConfig, ModelConfig, SplitConfig
from plgraph.data import prepare_data
from plgraph.training.checkpoint import CheckpointError, read_checkpoint
from plgraph.training.run_dir import RunDirectory
from plgraph.training.trainer import Trainer

OLD = REPO / "tests" / "data" / "checkpoint-620404f"
sys.path.insert(0, str(OLD))
from make import config  # noqa: E402  (the old run's exact config)


def train(config) -> None:
    prepared = prepare_data(config.data, FeaturizeConfig(), SplitConfig())
    with RunDirectory(config.run_dir) as run:
        Trainer(config, prepared, run, "python main.py").fit()


@pytest.fixture(scope="module")
def twenty_root(tmp_path_factory) -> Path:
    from conftest import SAMPLE_IDS, copy_sample

    return copy_sample(tmp_path_factory.mktemp("compat") / "twenty", SAMPLE_IDS[:20])


@pytest.mark.slow
def test_an_old_checkpoint_resumes_to_the_old_runs_exact_weights(twenty_root, tmp_path):
    app = config(twenty_root, tmp_path / "outputs")
    checkpoints = app.run_dir / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name in ("step_00000003.pt", "best.pt"):  # as the old run's were at step 3
        shutil.copy(OLD / name, checkpoints / name)
    train(app)
    final = read_checkpoint(checkpoints / "last.pt")["model"]
    expected = torch.load(OLD / "final_model.pt", weights_only=True)
    assert final.keys() == expected.keys()
    for name in final:
        assert torch.equal(final[name], expected[name]), name


def test_a_checkpoint_of_version_5_is_refused_saying_what_to_do(twenty_root, tmp_path):
    # the step-3 checkpoint as unmodified 620404f wrote it (graphs of DATA_PROCESSING_VERSION 5)
    app = config(twenty_root, tmp_path / "outputs")
    checkpoints = app.run_dir / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(OLD / "step_00000003.version5.pt", checkpoints / "step_00000003.pt")
    assert read_checkpoint(checkpoints / "step_00000003.pt")["data_processing_version"] == 5
    with pytest.raises(CheckpointError, match=r"step_00000003.pt was trained on graphs of "
                       r"DATA_PROCESSING_VERSION 5, this code featurizes with version 8\. "
                       r"Start over with fresh=true"):
        train(app)


@pytest.mark.slow
def test_todays_code_writes_the_old_state_at_the_same_step(twenty_root, tmp_path):
    app = config(twenty_root, tmp_path / "outputs")
    train(app)
    new = read_checkpoint(app.run_dir / "checkpoints" / "step_00000003.pt")
    old = read_checkpoint(OLD / "step_00000003.pt")
    assert list(new) == list(old)  # the same keys in the same order
    for key in ("model", "grads", "target_normalization", "sampler", "data_processing_version",
                "split_fingerprint", "ligand_heavy_atoms", "world_size", "format", "kind",
                "init_from"):
        assert_same(new[key], old[key], key)
    for key, schema in (("model_config", ModelConfig), ("featurize_config", FeaturizeConfig)):
        assert_same(without_later_defaults(new[key], old[key], schema), old[key], key)
    assert_same(new["optimizer"], old["optimizer"], "optimizer")
    assert_same(new["rng_by_rank"], old["rng_by_rank"], "rng")
    timeless = {k: v for k, v in new["progress"].items() if k != "wall_seconds"}
    assert timeless == {k: v for k, v in old["progress"].items() if k != "wall_seconds"}


def without_later_defaults(new: dict, old: dict, schema) -> dict:
    """``new`` less the keys added since 620404f (``model.vina_readout``,
    ``featurize.vina_terms``) where they hold their default, which keeps the old behaviour: a
    key added at any other value is still a difference."""
    defaults = schema().to_dict()
    return {k: v for k, v in new.items() if k in old or v != defaults[k]}


def assert_same(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{index}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
