"""The docking baselines of experiment reports, from a real cache with Vina terms: Vina, Vina
optimized and Vinardo read as ΔG (a more negative score, a higher pK), the terms fitted on the
train part; and the one line a report gives when the cache has no terms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from plgraph import vocab
from plgraph.config import AppConfig, ExperimentConfig, FeaturizeConfig, SplitConfig
from plgraph.data import prepare_data
from plgraph.data.records import KCAL_PER_PK
from plgraph.experiments.report import DOCKING, DOCKING_NEEDS, LABELS, markdown, summarize
from plgraph.experiments.run import docking_baselines, evaluate, heavy_atom_baseline
from plgraph.training.anchor import vina_fit


@pytest.fixture(scope="module")
def wide(vina_prepared):
    """vina_prepared's cache with a split that tests 8 complexes."""
    data, featurize, _ = vina_prepared
    return prepare_data(data, featurize, SplitConfig(name="docking", train=0.5, val=0.1,
                                                     test=0.4))


def test_docking_scores_become_pk_with_the_sign_of_binding(wide):
    found = docking_baselines(wide)
    assert set(found) == set(DOCKING)
    test = list(wide.split.parts["test"])
    terms = wide.vina_terms("test")
    for method, column in (("vina", "vina_score"), ("vina_optimized", "vina_optimized"),
                           ("vinardo", "vinardo_score")):
        assert found[method]["ids"] == test
        expected = -terms[:, vocab.VINA_TERMS.index(column)] / KCAL_PER_PK
        np.testing.assert_allclose(found[method]["predicted"], expected, rtol=1e-4)
    labels = found["vina"]["measured"]
    one_series = {i: "all" for i in test}
    scored = evaluate(found["vina"], one_series, min_series_size=3)
    score = terms[:, vocab.VINA_TERMS.index("vina_score")]
    assert scored["series_spearman"] == pytest.approx(stats.spearmanr(-score, labels)[0])
    assert scored["series_spearman"] == pytest.approx(-stats.spearmanr(score, labels)[0])


def test_the_terms_fit_is_least_squares_on_train_applied_to_test(wide):
    fitted = docking_baselines(wide)["vina_terms_fit"]["predicted"]
    train = wide.vina_terms("train")
    labels = np.array([wide.label_of[i] for i in wide.split.parts["train"]], np.float32)
    coefficients, intercept = vina_fit(train, labels, range(len(vocab.VINA_TERMS)))
    std = np.where(train.std(axis=0) > 0, train.std(axis=0), 1.0)
    z = (wide.vina_terms("test") - train.mean(axis=0)) / std
    np.testing.assert_allclose(fitted, intercept + z @ coefficients, rtol=1e-9)


def per_seed(prepared) -> dict:
    series = prepared.series_of
    found = {"heavy_atoms": heavy_atom_baseline(prepared), **docking_baselines(prepared)}
    return {0: {"test_series": sorted({series[i] for i in prepared.split.parts["test"]}),
                "test_complexes": len(prepared.split.parts["test"]),
                **{m: evaluate(f, series, 3) for m, f in found.items()}}}


def test_a_report_lists_the_docking_baselines_when_the_cache_has_terms(wide, vina_prepared):
    data, featurize, _ = vina_prepared
    config = AppConfig(data=data, featurize=featurize,
                       experiment=ExperimentConfig(name="transfer", seeds=[0]))
    report = summarize(config, per_seed(wide), 1.0)
    assert set(DOCKING) <= set(report["summary"])
    text = markdown(report)
    for method in DOCKING:
        assert f"| {LABELS[method]} |" in text
    assert DOCKING_NEEDS not in text


def test_a_report_without_terms_says_what_the_docking_baselines_need(tmp_path):
    from conftest import copy_sample, data_config

    root = copy_sample(tmp_path / "four", ("1pum", "2w9r", "1h1d", "2ohk"))
    prepared = prepare_data(data_config(root), FeaturizeConfig(),
                            SplitConfig(train=0.5, val=0.25, test=0.25))
    assert docking_baselines(prepared) == {}
    config = AppConfig(data=data_config(root),
                       experiment=ExperimentConfig(name="transfer", seeds=[0]))
    text = markdown(summarize(config, per_seed(prepared), 1.0))
    assert DOCKING_NEEDS in text and "featurize.vina_terms=true" in text
    assert not any(f"| {LABELS[method]} |" in text for method in DOCKING)
