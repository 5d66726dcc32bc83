"""The experiment's learning curve (``plgraph.experiments.learning_curve``): the full model on a
fraction of
the training targets, scored on the same unseen test proteins, on real FEP series."""

from __future__ import annotations

import csv
import json

import pytest
from test_experiment import copy_series, run

pytestmark = pytest.mark.slow


def test_fewer_training_targets_are_scored_on_the_same_test_part(tmp_path):
    root = copy_series(tmp_path / "fep")
    outputs = tmp_path / "outputs"
    result = run(root, outputs, "experiment.seeds=[0]", "experiment.ligand_only_baseline=false",
                 "experiment.learning_curve=[0.5]")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((outputs / "fep_grouped" / "results.json").read_text())
    curve = report["per_seed"]["0"]["learning_curve"]
    assert set(curve) == {"0.5", "1.0"}
    assert curve["0.5"]["train_targets"] == round(0.5 * curve["1.0"]["train_targets"])
    assert curve["0.5"]["train_complexes"] < curve["1.0"]["train_complexes"]
    assert curve["1.0"]["pearson"] == report["per_seed"]["0"]["full"]["pearson"]

    def test_ids(run_dir):
        with open(run_dir / "test_predictions.csv", newline="") as handle:
            return sorted(row["id"] for row in csv.DictReader(handle))

    assert test_ids(outputs / "fep_grouped-seed0-targets0.5") == test_ids(
        outputs / "fep_grouped-seed0-full")
    assert set(report["learning_curve"]) == {"0.5", "1.0"}
    assert "Learning curve" in (outputs / "fep_grouped" / "report.md").read_text()
    assert (outputs / "fep_grouped" / "learning_curve.png").stat().st_size > 1000
