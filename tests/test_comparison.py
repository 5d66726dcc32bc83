"""The experiment's paired comparison, its budget cut and its physics reference, on real data."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, data_config

from plgraph.config import AppConfig, FeaturizeConfig, SplitConfig
from plgraph.data import capped_training, prepare_data
from plgraph.data.records import dg_to_pk
from plgraph.data.split import split_fingerprint
from plgraph.experiments.comparison import (
    bootstrap_interval,
    format_mean_std,
    mean_std,
    paired_differences,
)
from plgraph.experiments.few_shot import METHODS as FEW_SHOT_METHODS
from plgraph.experiments.report import markdown, summarize
from plgraph.experiments.run import fep_reference, heavy_atom_baseline


def test_paired_differences_pair_the_same_series_of_the_same_seed_only():
    per_seed = {
        0: {"full": {"per_series_spearman": {"a": 0.5, "b": 0.1, "only_full": 0.9}},
            "heavy_atoms": {"per_series_spearman": {"a": 0.2, "b": 0.3}}},
        1: {"full": {"per_series_spearman": {"a": 0.4}},
            "heavy_atoms": {"per_series_spearman": {"a": 0.4, "c": 0.1}}},
    }
    assert paired_differences(per_seed, "full", "heavy_atoms") == pytest.approx(
        [0.3, -0.2, 0.0])
    assert paired_differences(per_seed, "full", "fep") == []


def test_bootstrap_interval_is_seeded_and_excludes_zero_only_for_a_clear_difference():
    rng = np.random.default_rng(1)
    clear = list(0.3 + 0.1 * rng.standard_normal(40))
    unclear = list(0.3 * rng.standard_normal(40))
    first = bootstrap_interval(clear)
    assert first == bootstrap_interval(clear)
    assert first["mean"] == pytest.approx(np.mean(clear))
    assert 0 < first["low"] < first["mean"] < first["high"]
    wide = bootstrap_interval(unclear)
    assert wide["low"] < 0 < wide["high"]
    assert bootstrap_interval([0.2])["low"] is None


def one_seed_results() -> dict:
    """A one-seed experiment's per-seed results, with a few-shot arm and a learning curve."""
    figures = {"pearson": 0.5, "rmse": 1.25, "series_spearman": 0.2, "series_evaluated": 2}
    per_series = {"a": 0.1, "b": 0.3}
    result = {method: {**figures, "per_series_spearman": per_series}
              for method in ("full", "ligand_only", "heavy_atoms")}
    result["few_shot"] = {2: {method: {"series_spearman": 0.2, "per_series": per_series}
                              for method in FEW_SHOT_METHODS}}
    result["learning_curve"] = {"0.5": {"train_targets": 2, "train_complexes": 9, **figures}}
    return {0: {"test_series": ["a", "b"], "test_complexes": 8, **result}}


def test_one_seed_reports_each_figure_without_a_standard_deviation(tmp_path):
    from plgraph.experiments.few_shot import LABELS
    from plgraph.experiments.learning_curve import FIGURES
    from plgraph.training.plots import plot_few_shot, plot_learning_curve

    report = summarize(AppConfig(), one_seed_results(), 1.0)
    assert report["summary"]["full"]["rmse"] == {"mean": 1.25, "std": None, "values": [1.25]}
    json.dumps(report, allow_nan=False)  # results.json: valid JSON, null for the std
    text = markdown(report)
    assert "nan" not in text
    assert "| 0.500 (1 seed) | 1.250 (1 seed) | 0.200 (1 seed) |" in text
    assert "| 0.200 (1 seed) |" in text.split("after k measured ligands")[1]
    assert "| 0.500 (1 seed) | 0.200 (1 seed) |" in text.split("Learning curve")[1]
    plot_few_shot(report["few_shot"], LABELS, tmp_path / "few_shot.png")  # no error bar, no error
    plot_learning_curve(report["learning_curve"], FIGURES, {"pearson": 0.1},
                        tmp_path / "curve.png")


def test_one_seed_with_one_test_series_prints_no_interval_instead_of_nan():
    results = one_seed_results()
    for method in ("full", "ligand_only", "heavy_atoms"):
        results[0][method]["per_series_spearman"] = {"a": 0.1}
    for figures in results[0]["few_shot"][2].values():
        figures["per_series"] = {"a": 0.1}
    report = summarize(AppConfig(), results, 1.0)
    json.dumps(report, allow_nan=False)
    text = markdown(report)
    assert "nan" not in text
    assert "| 1 | +0.000 | no interval | no |" in text
    assert "| +0.000 no interval (n=1) |" in text.split("after k measured ligands")[1]


def test_the_heavy_atom_baseline_reads_the_cache_and_rebuilds_no_graph(twenty_prepared,
                                                                        monkeypatch):
    _, prepared = twenty_prepared

    def counts(part: str) -> np.ndarray:
        dataset = prepared.part(part)
        return np.array([len(dataset[i]["ligand"].x) for i in range(len(dataset))], float)

    train, test = counts("train"), counts("test")
    labels = {p: [float(prepared.part(p)[i].y) for i in range(len(prepared.split.parts[p]))]
              for p in ("train", "test")}
    slope, intercept = np.polyfit(train, labels["train"], 1)

    def rebuilt(self, index):
        raise AssertionError(f"graph {index} was rebuilt from the cache")

    monkeypatch.setattr(type(prepared.cache), "__getitem__", rebuilt)
    found = heavy_atom_baseline(prepared)
    assert found["ids"] == prepared.split.parts["test"]
    assert found["measured"].tolist() == labels["test"]
    assert np.allclose(found["predicted"], slope * test + intercept)


def test_two_seeds_report_mean_and_standard_deviation():
    assert format_mean_std(mean_std([0.4, 0.6])) == "0.500 ± 0.141"
    assert format_mean_std(mean_std([])) == "none"


@pytest.fixture(scope="module")
def posed_series(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("series") / "uni-fep"
    return Path(shutil.copytree(REPO / "tests" / "data" / "uni-fep-mini", root))


@pytest.mark.slow
def test_the_budget_cut_trains_on_few_ligands_per_series_and_keeps_val_and_test(posed_series):
    split = SplitConfig(strategy="random", train=0.6, val=0.2, test=0.2)
    data = prepare_data(data_config(posed_series, layout="reference"), FeaturizeConfig(), split)
    cut = capped_training(data, 2, seed=0)
    series_of = {e.id: e.group for e in data.cache.entries}
    train = cut.split.parts["train"]
    assert set(train) < set(data.split.parts["train"])
    assert max(sum(series_of[i] == s for i in train) for s in set(series_of.values())) == 2
    assert cut.split.parts["val"] == data.split.parts["val"]
    assert cut.split.parts["test"] == data.split.parts["test"]
    assert cut.split.fingerprint == split_fingerprint(cut.split.parts)
    assert cut.split.fingerprint != data.split.fingerprint
    assert capped_training(data, 2, seed=0).split == cut.split
    assert capped_training(data, 0, seed=0) is data

    physics = fep_reference(data)
    test = data.split.parts["test"]
    assert physics["ids"] == [e.id for e in data.cache.entries if e.id in set(test)]
    entry = next(e for e in data.cache.entries if e.id == physics["ids"][0])
    assert physics["predicted"][0] == pytest.approx(dg_to_pk(entry.extras["fep_dG (kcal/mol)"]))
    assert physics["measured"][0] == pytest.approx(entry.label)


def test_out_of_fold_rows_name_series_and_ligands_as_the_input_does():
    from plgraph.experiments.run import input_names

    assert input_names("unifep:ChEMBL|ADK|CHEMBL642224/CHEMBL356141_4.0_nM",
                       "unifep:ChEMBL|ADK|CHEMBL642224") == ("ChEMBL|ADK|CHEMBL642224",
                                                             "CHEMBL356141_4.0_nM")
    assert input_names("opls_stress/chk1_set1/17", "opls_stress/chk1_set1") == (
        "opls_stress/chk1_set1", "17")
    assert input_names("1a30", "") == ("", "1a30")


def test_out_of_fold_predictions_are_the_ensemble_s_where_there_is_one(tmp_path):
    from plgraph.experiments.run import write_out_of_fold

    def found(values):
        return {"ids": ["opls_stress/chk1_set1/17", "opls_stress/chk1_set1/18"],
                "predicted": np.array(values), "measured": np.array([6.0, 7.0])}

    series_of = {"opls_stress/chk1_set1/17": "opls_stress/chk1_set1",
                 "opls_stress/chk1_set1/18": "opls_stress/chk1_set1"}
    path = tmp_path / "out_of_fold_predictions.csv"
    for points, expected in (
            ({"0-fold0": {"full": found([5.0, 6.5])}}, ["5.0000", "6.5000"]),
            ({"0-fold0": {"full": found([5.0, 6.5]), "full_ensemble": found([5.5, 6.0])}},
             ["5.5000", "6.0000"])):
        write_out_of_fold(points, series_of, path)
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [row["model_pk"] for row in rows] == expected
        assert [row["ligand_name"] for row in rows] == ["17", "18"]
