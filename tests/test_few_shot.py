"""The experiment's few-shot arm (``plgraph.experiments.few_shot``): k measured ligands of a test
series,
the rest ranked, on real FEP series."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from test_experiment import copy_series, run

pytestmark = pytest.mark.slow

FEW_SHOT = ["experiment.few_shot_k=[2,3]", "experiment.few_shot_draws=2",
            "experiment.few_shot_max_series=2", "experiment.few_shot_epochs=2",
            "experiment.ligand_only_baseline=false", "experiment.min_series_size=2"]


@pytest.fixture(scope="module")
def few_shot(tmp_path_factory) -> Path:
    root = copy_series(tmp_path_factory.mktemp("few_shot") / "fep")
    outputs = root.parent / "outputs"
    result = run(root, outputs, "experiment.seeds=[0]", *FEW_SHOT)
    assert result.returncode == 0, result.stdout + result.stderr
    return outputs


def test_every_k_and_method_is_reported_with_the_paired_comparison(few_shot):
    report = json.loads((few_shot / "fep_grouped" / "results.json").read_text())
    summary = report["few_shot"]
    assert set(summary) == {"2", "3"}
    for entry in summary.values():
        assert set(entry["methods"]) == {"pretrained", "fine_tuned", "scratch", "heavy_atoms",
                                         "fingerprints"}
        assert all(-1 <= m["mean"] <= 1 for m in entry["methods"].values())
        assert set(entry["fine_tuned_minus"]) == {"pretrained", "scratch", "heavy_atoms",
                                                  "fingerprints"}
    assert "A new series after k measured ligands" in (few_shot / "fep_grouped"
                                                        / "report.md").read_text()
    assert (few_shot / "fep_grouped" / "few_shot.png").stat().st_size > 1000


def test_each_draw_trains_on_k_ligands_of_one_series_and_ranks_the_others(few_shot):
    report = json.loads((few_shot / "fep_grouped" / "results.json").read_text())
    full_test = _predictions(few_shot / "fep_grouped-seed0-full" / "test_predictions.csv")
    runs = sorted((few_shot / "fep_grouped-seed0-fewshot").iterdir())
    series_runs = [r for r in runs if r.name.endswith("-fine_tuned")]
    assert series_runs and len(runs) == 2 * len(series_runs)
    for run_dir in series_runs:
        k = int(run_dir.name.split("-k")[1].split("-")[0])
        query = _predictions(run_dir / "test_predictions.csv")
        series = {i.rsplit("/", 1)[0] for i in query}
        assert len(series) == 1  # the query is one series
        members = [i for i in full_test if i.rsplit("/", 1)[0] in series]
        assert len(query) == len(members) - k  # all of it but the k
        results = json.loads((run_dir / "results.json").read_text())
        assert results["init_from"]["path"].endswith("fep_grouped-seed0-full/checkpoints/best.pt")
        scratch = json.loads((Path(str(run_dir).replace("-fine_tuned", "-scratch"))
                              / "results.json").read_text())
        assert scratch["init_from"] is None
    per_series = report["per_seed"]["0"]["few_shot"]["2"]["fine_tuned"]["per_series"]
    assert 1 <= len(per_series) <= 2  # few_shot_max_series


def test_running_it_again_trains_nothing(few_shot):
    before = json.loads((few_shot / "fep_grouped" / "results.json").read_text())
    again = run(few_shot.parent / "fep", few_shot, "experiment.seeds=[0]", *FEW_SHOT)
    assert again.returncode == 0, again.stderr
    trainings = 1 + len(list((few_shot / "fep_grouped-seed0-fewshot").iterdir()))
    assert (again.stdout + again.stderr).count("is finished") == trainings
    after = json.loads((few_shot / "fep_grouped" / "results.json").read_text())
    assert after["few_shot"] == before["few_shot"]


def _predictions(path: Path) -> list[str]:
    with open(path, newline="") as handle:
        return [row["id"] for row in csv.DictReader(handle)]
