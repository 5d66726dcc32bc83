"""``python main.py experiment=...``: seeds, baselines and the report, on 7 real FEP series."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TINY_MODEL_ARGS
from scipy import stats

from plgraph.training.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow

# 9 real series (49 ligands) of 7 proteins: CHK1 and FXa have two series each.
SERIES = ("opls_stress/chk1_set1", "opls_stress/chk1_set3", "opls_stress/fxa_set3",
          "opls_stress/fxa_set6", "charge_annhil/dlk", "charge_annhil/ephx2",
          "fragments/frag_mup1", "waterset/scyt_dehyd", "charge_annhil/cdk2")
TINY = [*TINY_MODEL_ARGS, "trainer.max_epochs=2", "trainer.batch_size=4", "trainer.warmup_steps=2",
        "data.workers=1", "tracking.enabled=false"]


def copy_series(root: Path) -> Path:
    """SERIES from the FEP+ benchmark, in its layout, under ``root``."""
    from conftest import FEP, missing_shared
    if not FEP.is_dir():
        missing_shared(FEP)
    for system in SERIES:
        (root / system).parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("_protein.pdb", "_ligands.sdf"):
            shutil.copy(FEP / f"{system}{suffix}", root / f"{system}{suffix}")
    return root


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = copy_series(tmp_path_factory.mktemp("experiment") / "fep")
    outputs = root.parent / "outputs"
    result = run(root, outputs)
    assert result.returncode == 0, result.stdout + result.stderr
    return outputs, result


def run(root: Path, outputs: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), "experiment=fep_grouped", f"data.root={root}",
         f"output_root={outputs}", "experiment.seeds=[0,1]", "split.train=0.5", "split.val=0.25",
         "split.test=0.25", *TINY, *extra],
        cwd=REPO, capture_output=True, text=True, timeout=900)


def test_every_seed_and_method_is_reported(experiment):
    outputs, _ = experiment
    report = json.loads((outputs / "fep_grouped" / "results.json").read_text())
    assert report["seeds"] == [0, 1]
    # the descriptors' fit is every cache's (DATA_PROCESSING_VERSION 8); the Vina fits need
    # featurize.vina_terms, which fep_grouped does not ask for
    assert set(report["summary"]) == {"full", "ligand_only", "heavy_atoms", "descriptors_fit"}
    for seed in ("0", "1"):
        for method in ("full", "ligand_only"):
            assert (outputs / f"fep_grouped-seed{seed}-{method}" / "results.json").is_file()
    markdown = (outputs / "fep_grouped" / "report.md").read_text()
    assert "heavy-atom count" in markdown and "±" in markdown
    # The verdict follows the means: the figures on which the full model is not the best of
    # the three, named in the report (or none, and it says it beats both baselines).
    summary = report["summary"]
    names = {"pearson": "Pearson R", "rmse": "RMSE", "series_spearman": "per-series Spearman"}
    losses = [names[f] for f, better in (("pearson", max), ("series_spearman", max),
                                          ("rmse", min))
              if better(summary[m][f]["mean"] for m in ("full", "ligand_only", "heavy_atoms"))
              != summary["full"][f]["mean"]]
    if losses:
        assert f"does not beat the baselines on: {', '.join(losses)}" in markdown
    else:
        assert "beats both baselines on every figure" in markdown


def test_seeds_split_differently_and_keep_proteins_whole(experiment):
    outputs, _ = experiment
    report = json.loads((outputs / "fep_grouped" / "results.json").read_text())
    tests = [set(report["per_seed"][s]["test_series"]) for s in ("0", "1")]
    assert tests[0] != tests[1]
    for series in tests:  # CHK1's two series (one protein) are both in test or both out
        assert len({s for s in series if "chk1" in s}) in (0, 2)


def test_figures_are_recomputed_from_the_runs_own_predictions(experiment):
    outputs, _ = experiment
    report = json.loads((outputs / "fep_grouped" / "results.json").read_text())
    with open(outputs / "fep_grouped-seed0-full" / "test_predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    predicted = np.array([float(r["predicted_pk"]) for r in rows])
    measured = np.array([float(r["measured_pk"]) for r in rows])
    full = report["per_seed"]["0"]["full"]
    assert full["rmse"] == pytest.approx(np.sqrt(np.mean((predicted - measured) ** 2)))
    assert full["pearson"] == pytest.approx(stats.pearsonr(predicted, measured)[0])
    spearman = full["per_series_spearman"]
    assert full["series_spearman"] == pytest.approx(np.mean(list(spearman.values())))
    values = report["summary"]["full"]["rmse"]["values"]
    assert report["summary"]["full"]["rmse"]["std"] == pytest.approx(np.std(values, ddof=1))


def test_the_paired_comparison_and_figures_come_from_the_per_series_figures(experiment):
    from plgraph.experiments.comparison import bootstrap_interval, paired_differences

    outputs, _ = experiment
    report = json.loads((outputs / "fep_grouped" / "results.json").read_text())
    paired = report["paired_series_spearman"]
    # no fep_dG in FEP+ series, no Vina terms in this cache
    assert set(paired) == {"full-ligand_only", "full-heavy_atoms", "full-descriptors_fit"}
    differences = paired_differences(report["per_seed"], "full", "heavy_atoms")
    assert paired["full-heavy_atoms"] == bootstrap_interval(differences)
    assert paired["full-heavy_atoms"]["n"] == sum(
        len(report["per_seed"][s]["full"]["per_series_spearman"]) for s in ("0", "1"))
    clusters = report["per_seed"]["0"]["clusters"]
    assert clusters["test"]["complexes"] == report["per_seed"]["0"]["test_complexes"]
    assert clusters["test"]["series"] == len(report["per_seed"]["0"]["test_series"])
    assert all(c["clusters"] >= 1 for c in clusters.values())
    for figure in ("series_spearman.png", "predicted_vs_measured.png"):
        assert (outputs / "fep_grouped" / figure).stat().st_size > 1000
    assert "95 % bootstrap interval" in (outputs / "fep_grouped" / "report.md").read_text()


def test_running_it_again_trains_nothing_and_reports_the_same(experiment):
    outputs, _ = experiment
    before = json.loads((outputs / "fep_grouped" / "results.json").read_text())
    again = run(outputs.parent / "fep", outputs)
    assert again.returncode == 0, again.stderr
    assert (again.stdout + again.stderr).count("is finished") == 4
    after = json.loads((outputs / "fep_grouped" / "results.json").read_text())
    assert after["summary"] == before["summary"]


def prediction_column(path: Path, column: str) -> np.ndarray:
    with open(path) as handle:
        return np.array([float(row[column]) for row in csv.DictReader(handle)])


def predictions_by_id(path: Path) -> dict[str, float]:
    with open(path) as handle:
        return {row["id"]: float(row["predicted_pk"]) for row in csv.DictReader(handle)}


def test_an_ensemble_trains_only_its_new_members_and_reports_their_mean(experiment, tmp_path):
    """experiment.ensemble=2 on a copy of the finished experiment: one more full model per seed
    (same split, its own trainer seed), the four finished runs reused, and full_ensemble is the
    mean of the two full models' test predictions, paired against the single model."""
    from plgraph.experiments.comparison import bootstrap_interval, paired_differences

    outputs = tmp_path / "outputs"
    shutil.copytree(experiment[0], outputs)
    result = run(experiment[0].parent / "fep", outputs, "experiment.ensemble=2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).count("is finished") == 4
    report = json.loads((outputs / "fep_grouped" / "results.json").read_text())
    for seed in ("0", "1"):
        member, full = (read_checkpoint(outputs / f"fep_grouped-seed{seed}-{name}" / "checkpoints"
                                        / "best.pt") for name in ("full-member1", "full"))
        assert member["config"]["seed"] == int(seed) + 1000
        assert member["config"]["split"]["name"] == full["config"]["split"]["name"]
        assert member["config"]["split"]["name"].endswith(f"-seed{seed}")
        runs = [outputs / f"fep_grouped-seed{seed}-{name}" / "test_predictions.csv"
                for name in ("full", "full-member1")]
        predicted = [prediction_column(path, "predicted_pk") for path in runs]
        assert not np.allclose(predicted[0], predicted[1])  # two trainings, not one twice
        measured = prediction_column(runs[0], "measured_pk")
        ensemble = report["per_seed"][seed]["full_ensemble"]
        mean = (predicted[0] + predicted[1]) / 2
        assert ensemble["rmse"] == pytest.approx(np.sqrt(np.mean((mean - measured) ** 2)))
    paired = report["paired_series_spearman"]
    assert paired["full_ensemble-full"] == bootstrap_interval(
        paired_differences(report["per_seed"], "full_ensemble", "full"))
    assert {"full_ensemble-heavy_atoms", "full_ensemble-ligand_only"} <= set(paired)
    assert "full-model ensemble" in (outputs / "fep_grouped" / "report.md").read_text()


def test_folds_test_every_series_once_and_write_the_out_of_fold_predictions(tmp_path):
    """With an ensemble of 2: each fold's second member trains on that fold's split, and the
    out-of-fold prior is the ensemble's mean."""
    root = copy_series(tmp_path / "fep")
    outputs = tmp_path / "outputs"
    result = run(root, outputs, "experiment.seeds=[0]", "experiment.folds=3",
                 "experiment.ligand_only_baseline=false", "experiment.ensemble=2")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((outputs / "fep_grouped" / "results.json").read_text())
    assert report["seeds"] == ["0-fold0", "0-fold1", "0-fold2"]
    with open(outputs / "fep_grouped" / "out_of_fold_predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    tested = [row["id"] for row in rows]
    assert len(tested) == len(set(tested))  # no complex tested twice
    members = {}
    for fold in range(3):
        runs = [outputs / f"fep_grouped-seed0-fold{fold}-{name}" for name in
                ("full", "full-member1")]
        fingerprints = {read_checkpoint(run / "checkpoints" / "best.pt")["split_fingerprint"]
                        for run in runs}
        assert len(fingerprints) == 1  # the member trained on its own fold's split
        predicted = [predictions_by_id(run / "test_predictions.csv") for run in runs]
        members.update({i: (predicted[0][i] + predicted[1][i]) / 2 for i in predicted[0]})
    assert all(float(row["model_pk"]) == pytest.approx(members[row["id"]], abs=1e-3)
               for row in rows)
    cached = read_checkpoint(outputs / "fep_grouped-seed0-fold0-full" / "checkpoints"
                             / "best.pt")["split_fingerprint"]
    assert cached  # each fold is an ordinary run with its own split
    splits = sorted(outputs.glob("processed/*/splits/*fold*.json"))
    parts = [json.loads(path.read_text())["parts"] for path in splits]
    every = {i for p in parts for part in p.values() for i in part}
    assert len(splits) == 3 and sorted(tested) == sorted(every)  # every complex tested once
    for row in rows:
        assert row["trial"] in report["seeds"]
        assert row["id"] == f"{row['series']}/{row['ligand_name']}"
        assert row["series"] in SERIES
        float(row["model_pk"]), float(row["measured_pk"])
    series_of_trial = {}
    for row in rows:  # a series (here, of one protein) is tested in one fold only
        assert series_of_trial.setdefault(row["series"], row["trial"]) == row["trial"]
