"""The shipped model (models/, plgraph.inference.shipped): exported inference-only, verified at
load, used by predict.py only where the user has no model of their own, and retrained whenever
the featurizer changes."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import GOOD_IDS, REPO, SAMPLE

from plgraph.config import FeaturizeConfig
from plgraph.data.libraries import read_sdf_records
from plgraph.featurize import DATA_PROCESSING_VERSION
from plgraph.inference.inputs import featurize_all
from plgraph.inference.predictor import Predictor
from plgraph.inference.shipped import (
    MANIFEST,
    MAX_BYTES,
    ShippedModelError,
    main,
    shipped_checkpoints,
)
from plgraph.runtime.files import sha256_of
from plgraph.training.checkpoint import CheckpointError, read_checkpoint

LIGAND = GOOD_IDS[0]  # its SDF parses (a docking output's format)
TRAINING_ONLY = ("optimizer", "scaler", "grads", "progress", "rng", "rng_by_rank", "sampler")


@pytest.fixture
def shipped(trained, tmp_path: Path) -> tuple[Path, Path]:
    """``trained``'s best.pt exported by the command line into a models directory of its own:
    (that directory, the source checkpoint)."""
    best = trained[1] / "checkpoints" / "best.pt"
    models = tmp_path / "models"
    assert main(["export", str(best), str(models)]) == 0
    return models, best


def graphs_of() -> list:
    inputs = read_sdf_records(SAMPLE / LIGAND / f"{LIGAND}_ligand.sdf",
                              SAMPLE / LIGAND / f"{LIGAND}_pocket.pdb", LIGAND, None, "pk",
                              require_labels=False)
    return [row.graph for row in featurize_all(inputs, FeaturizeConfig())]


def run_predict(cwd: Path, *arguments: str) -> subprocess.CompletedProcess:
    sample = SAMPLE / LIGAND
    return subprocess.run([sys.executable, str(REPO / "predict.py"),
                           f"protein={sample / f'{LIGAND}_pocket.pdb'}",
                           f"ligands={sample / f'{LIGAND}_ligand.sdf'}", *arguments],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def predicted(path: Path) -> list[float]:
    return [float(row["predicted_pk"]) for row in csv.DictReader(path.open())]


def test_the_export_is_inference_only_and_predicts_as_its_checkpoint(shipped):
    models, best = shipped
    manifest = json.loads((models / MANIFEST).read_text())
    [entry] = manifest["files"]
    exported = models / entry["file"]
    assert sorted(p.name for p in models.iterdir()) == sorted([MANIFEST, entry["file"]])
    assert entry["sha256"] == sha256_of(exported) and entry["bytes"] == exported.stat().st_size
    assert manifest["data_processing_version"] == DATA_PROCESSING_VERSION
    assert manifest["recipe"] == "python main.py experiment=shipped"
    state = torch.load(exported, map_location="cpu", weights_only=True)
    assert state["kind"] == "inference" and not set(TRAINING_ONLY) & state.keys()
    assert exported.stat().st_size < best.stat().st_size / 2
    with pytest.raises(CheckpointError, match="incomplete checkpoint"):
        read_checkpoint(exported)  # a training cannot resume from it
    graphs = graphs_of()
    device = torch.device("cpu")
    source, copy = (Predictor.load([path], device) for path in (best, exported))
    np.testing.assert_array_equal(copy.predict(graphs)[0], source.predict(graphs)[0])
    assert copy.training_sizes == source.training_sizes
    assert copy.featurize == source.featurize


def test_a_second_export_replaces_the_first_model_file(shipped, trained):
    models, _ = shipped
    first = json.loads((models / MANIFEST).read_text())["files"][0]["file"]
    assert main(["export", str(trained[1] / "checkpoints" / "last.pt"), str(models)]) == 0
    second = json.loads((models / MANIFEST).read_text())["files"][0]["file"]
    files = sorted(p.name for p in models.iterdir())
    assert files == sorted([MANIFEST, second]) and (first == second or first not in files)


def test_a_changed_byte_is_refused_naming_the_file_both_hashes_and_the_way_out(shipped):
    models, _ = shipped
    entry = json.loads((models / MANIFEST).read_text())["files"][0]
    path = models / entry["file"]
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))
    with pytest.raises(ShippedModelError) as refused:
        shipped_checkpoints(models)
    message = str(refused.value)
    assert str(path) in message and entry["sha256"] in message
    assert sha256_of(path) in message and "git checkout" in message
    path.unlink()
    with pytest.raises(ShippedModelError, match="which is missing: re-clone"):
        shipped_checkpoints(models)


def test_no_shipped_model_leaves_predict_py_s_old_error(tmp_path):
    assert shipped_checkpoints(tmp_path / "models") is None
    result = run_predict(tmp_path, f"shipped_dir={tmp_path / 'models'}")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no trained run with checkpoints/best.pt under outputs" in result.stdout + result.stderr


@pytest.mark.slow
def test_without_a_checkpoint_or_a_run_predict_py_uses_the_shipped_model_and_says_so_first(
        shipped, tmp_path):
    models, best = shipped
    work = tmp_path / "work"
    work.mkdir()
    result = run_predict(work, f"shipped_dir={models}", "output=shipped.csv")
    assert result.returncode == 0, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("no checkpoint= and no run of yours under outputs/: using the "
                            f"shipped model {models}/plgraph-v{DATA_PROCESSING_VERSION}-"), first
    assert f"card: {models / 'README.md'}" in first
    given = run_predict(work, f"checkpoint={best}", "output=given.csv")
    assert given.returncode == 0, given.stdout + given.stderr
    assert predicted(work / "shipped.csv") == predicted(work / "given.csv")

    damaged = models / json.loads((models / MANIFEST).read_text())["files"][0]["file"]
    damaged.write_bytes(damaged.read_bytes() + b"\0")
    refused = run_predict(work, f"shipped_dir={models}", "output=refused.csv")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"refusing the shipped model {damaged}" in refused.stdout + refused.stderr


@pytest.mark.slow
def test_a_run_of_ones_own_wins_over_the_shipped_model(shipped, tmp_path):
    models, best = shipped
    work = tmp_path / "work"
    own = work / "outputs" / "mine" / "checkpoints" / "best.pt"
    own.parent.mkdir(parents=True)
    shutil.copy(best, own)
    result = run_predict(work, f"shipped_dir={models}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "shipped" not in result.stdout
    assert "model: outputs/mine/checkpoints/best.pt" in result.stdout


def test_the_shipped_model_was_featurized_as_this_code_featurizes():
    """A featurizer change (a DATA_PROCESSING_VERSION bump) ships with a retrained model:
    python main.py experiment=shipped, then the export (models/README.md)."""
    directory = REPO / "models"
    if not (directory / MANIFEST).is_file():
        pytest.skip("no model shipped yet (models/shipped.json absent): nothing to check until "
                    "the export of python main.py experiment=shipped is committed")
    paths, manifest = shipped_checkpoints(directory)  # every file matches the card's sha256
    assert manifest["data_processing_version"] == DATA_PROCESSING_VERSION, (
        f"models/ holds a model of DATA_PROCESSING_VERSION {manifest['data_processing_version']}"
        f", the featurizer is at {DATA_PROCESSING_VERSION}: retrain it with python main.py "
        "experiment=shipped and export it (models/README.md)")
    for path in paths:
        assert read_checkpoint(path, inference=True)["data_processing_version"] == (
            DATA_PROCESSING_VERSION)
    assert sum(p.stat().st_size for p in directory.iterdir() if p.is_file()) <= MAX_BYTES
