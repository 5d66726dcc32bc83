"""init_from=PATH: a new run from a trained checkpoint's weights, configs and standardization."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from conftest import SAMPLE, copy_sample
from test_cli import run_main
from test_predict import IDS, TINY

from plgraph.training.checkpoint import read_checkpoint


@pytest.fixture(scope="module")
def pretrained(trained) -> tuple[Path, Path]:
    """The session's tiny model trained on 20 real complexes (conftest): (data root, its
    best.pt)."""
    root, run = trained
    return root, run / "checkpoints" / "best.pt"


@pytest.mark.slow
def test_a_fine_tuning_run_starts_from_the_checkpoints_weights_and_records_it(pretrained,
                                                                                tmp_path):
    _, best = pretrained
    # Other complexes (a new series, say), and a learning rate too small to move the weights:
    # what the run ends with is what it started from.
    other = sorted(p.name for p in SAMPLE.iterdir() if p.is_dir()
                   and p.name not in ("processed", "3qlb", *IDS))[:10]
    root = copy_sample(tmp_path / "other", tuple(other))
    result = run_main(f"data.root={root}", f"init_from={best}", "run_name=tuned",
                      "trainer.max_epochs=1", "trainer.batch_size=4", "trainer.lr=1e-12",
                      "tracking.enabled=false", f"output_root={tmp_path}",
                      "data.max_failure_fraction=0.5", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    source = read_checkpoint(best)
    tuned = read_checkpoint(tmp_path / "tuned" / "checkpoints" / "last.pt")
    for name, weight in source["model"].items():
        torch.testing.assert_close(tuned["model"][name], weight, atol=1e-6, rtol=0)
    labels = [float(line.split(",")[1]) for line in (root / "labels.csv").read_text().split()[1:]]
    assert abs(sum(labels) / len(labels) - float(source["model"]["target_mean"])) > 0.05
    # the checkpoint's small network, although the command line composed the default one
    assert tuned["model_config"] == source["model_config"] == TINY.to_dict()
    assert tuned["featurize_config"] == source["featurize_config"]
    for key in ("target_mean", "target_std"):  # standardization kept, not refitted
        assert torch.equal(tuned["model"][key], source["model"][key])
    origin = {"path": str(best.absolute()), "step": source["progress"]["global_step"],
              "sha256": hashlib.sha256(best.read_bytes()).hexdigest()}
    assert tuned["init_from"] == origin
    assert json.loads((tmp_path / "tuned" / "results.json").read_text())["init_from"] == origin
    # a new optimizer and schedule: AdamW has counted this run's steps only
    steps = tuned["progress"]["global_step"]
    assert steps > 0
    assert {float(s["step"]) for s in tuned["optimizer"]["state"].values()} == {float(steps)}
    assert "initialized from" in result.stdout + result.stderr


@pytest.mark.slow
def test_an_override_that_contradicts_the_checkpoint_is_refused_naming_the_key(pretrained,
                                                                                 tmp_path):
    root, best = pretrained
    result = run_main(f"data.root={root}", f"init_from={best}", "model.hidden_channels=32",
                      "tracking.enabled=false", f"output_root={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    assert "model.hidden_channels=32 (checkpoint: 16)" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    # the same value as the checkpoint's is no contradiction
    agreeing = run_main(f"data.root={root}", f"init_from={best}", "model.hidden_channels=16",
                        "prepare_only=true", f"output_root={tmp_path}", cwd=tmp_path)
    assert agreeing.returncode == 0, agreeing.stdout + agreeing.stderr
