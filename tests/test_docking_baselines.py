"""The docking baselines of experiment reports, from a real cache with Vina terms: Vina, Vina
optimized and Vinardo read as ΔG (a more negative score, a higher pK), the terms fitted on the
train part; and the one line a report gives when the cache has no terms."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
from conftest import SAMPLE
from rdkit import Chem
from scipy import stats

from plgraph import vocab
from plgraph.config import AppConfig, ExperimentConfig, FeaturizeConfig, SplitConfig
from plgraph.data import prepare_data
from plgraph.data.records import KCAL_PER_PK
from plgraph.experiments.report import DOCKING, DOCKING_NEEDS, LABELS, markdown, summarize
from plgraph.experiments.run import docking_baselines, evaluate, heavy_atom_baseline, labels_of
from plgraph.inference.docking_baselines import AUTO_LIMIT, MeasuredLigand
from plgraph.inference.docking_baselines import summarize as summarize_baselines
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


# --- predict.py's summary (plgraph.inference.docking_baselines) -------------------------------
def summary_ligands(prepared, model_pk=None) -> list[MeasuredLigand]:
    """The cache's complexes as predict.py's measured ligands, with their cached Vina terms."""
    ids = list(prepared.split.parts["train"]) + list(prepared.split.parts["test"])
    labels = np.concatenate([labels_of(prepared, "train"), labels_of(prepared, "test")])
    terms = np.concatenate([prepared.vina_terms("train"), prepared.vina_terms("test")])
    model = labels + np.linspace(-1, 1, len(ids)) if model_pk is None else model_pk
    return [MeasuredLigand(i, float(m), float(y), 20 + n, None, None, t)
            for n, (i, m, y, t) in enumerate(zip(ids, model, labels, terms, strict=True))]


def test_the_summary_ranks_the_measured_ligands_by_each_score(wide, caplog):
    ligands = summary_ligands(wide)
    caplog.set_level(logging.INFO, logger="plgraph.inference.docking_baselines")
    summarize_baselines(ligands, "auto")
    measured = np.array([x.measured_pk for x in ligands])
    model = np.array([x.model_pk for x in ligands])
    terms = np.array([x.vina for x in ligands])
    rho = {name: stats.spearmanr(values, measured)[0] for name, values in (
        ("model", model), ("size", [x.heavy_atoms for x in ligands]),
        ("vina", -terms[:, vocab.VINA_TERMS.index("vina_score")]),
        ("optimized", -terms[:, vocab.VINA_TERMS.index("vina_optimized")]),
        ("vinardo", -terms[:, vocab.VINA_TERMS.index("vinardo_score")]))}
    n = len(ligands)
    assert (f"ranking the {n} measured ligands (Spearman ρ against the measured pK): the model "
            f"{rho['model']:.3f}, the heavy-atom count {rho['size']:.3f}") in caplog.text
    assert (f"docking baselines on the {n} of them Vina scored: Vina in place {rho['vina']:.3f}, "
            f"Vina optimized {rho['optimized']:.3f}, Vinardo {rho['vinardo']:.3f}; the model "
            f"{rho['model']:.3f} on the same") in caplog.text


def test_the_summary_scores_with_vina_only_where_asked_and_affordable(wide, caplog):
    unscored = [replace(x, vina=None) for x in summary_ligands(wide)]
    caplog.set_level(logging.INFO, logger="plgraph.inference.docking_baselines")
    summarize_baselines(unscored, "off")
    assert "ranking the" in caplog.text and "docking baselines" not in caplog.text
    many = unscored * (AUTO_LIMIT // len(unscored) + 1)
    summarize_baselines(many, "auto")
    assert (f"docking baselines: not scored ({len(many)} measured ligands, about "
            f"{0.5 * len(many):.0f} s with Vina; docking_baselines=all scores them)"
            in caplog.text)


def test_a_ligand_vina_refuses_is_named_and_the_rest_are_scored(caplog):
    """Real poses, scored here: 2y2k carries boron (no Vina type), 1eve and 1h1d score."""
    def ligand(pdb_id: str) -> MeasuredLigand:
        mol = Chem.MolFromMolFile(str(SAMPLE / pdb_id / f"{pdb_id}_ligand.sdf"))
        return MeasuredLigand(pdb_id, 7.0, 6.0, mol.GetNumHeavyAtoms(),
                              SAMPLE / pdb_id / f"{pdb_id}_pocket.pdb", mol, None)

    ligands = [ligand("2y2k"), ligand("1eve"), ligand("1h1d")]
    ligands[1] = replace(ligands[1], measured_pk=8.0, model_pk=9.0)
    caplog.set_level(logging.INFO, logger="plgraph.inference.docking_baselines")
    summarize_baselines(ligands, "auto")
    assert "docking baselines: 2y2k: the ligand has B, for which Vina has no" in caplog.text
    # 1eve scores -10.4 in place, 1h1d -5.5: 1eve, measured higher, ranks first
    assert ("docking baselines on the 2 of them Vina scored: Vina in place 1.000, "
            "Vina optimized 1.000, Vinardo 1.000; the model 1.000 on the same") in caplog.text
