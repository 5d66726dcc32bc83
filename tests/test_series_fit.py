"""The within-series fit (``plgraph.training.anchor.series_fit``) and ``model.anchor=
vina_descriptors``: a fit of pK on the Vina terms, the ligand descriptors and the heavy-atom
count among the ligands of each series, on every train complex, where a new run starts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL
from test_vina_anchor import started, vina_config
from torch_geometric.loader import DataLoader

from plgraph import vocab
from plgraph.config import AppConfig, FeaturizeConfig, ModelConfig
from plgraph.data import UNCUT_TRAIN, capped_training
from plgraph.experiments.run import descriptor_baselines, labels_of
from plgraph.model import PLGraphNet
from plgraph.training.anchor import series_fit, series_fit_predict


def series_with_offsets() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Three series in which pK = 2 x1 - x2 plus a series offset that grows with the series'
    mean x1: an ordinary fit takes part of the offsets for a steeper x1 slope."""
    rng = np.random.default_rng(0)
    inputs, labels, series = [], [], []
    for index, name in enumerate(("a", "b", "c")):
        x = rng.normal(size=(6, 2)) + [3.0 * index, 0.0]
        inputs.append(x)
        labels.append(2.0 * x[:, 0] - x[:, 1] + 4.0 * index)
        series += [name] * 6
    return np.vstack(inputs), np.concatenate(labels), series


def test_the_series_fit_learns_the_slopes_within_series_that_an_ordinary_fit_misses():
    inputs, labels, series = series_with_offsets()
    coefficients, intercept = series_fit(inputs, labels, series)
    np.testing.assert_allclose(coefficients, [2.0, -1.0], atol=1e-9)
    ordinary = np.linalg.lstsq(np.hstack([inputs, np.ones((len(labels), 1))]), labels,
                               rcond=None)[0]
    assert ordinary[0] > 2.5  # the offsets leak into the slope across series
    # the intercept puts the mean prediction on the mean label
    assert (intercept + inputs @ coefficients).mean() == pytest.approx(labels.mean())
    predicted = series_fit_predict(inputs, labels, series, inputs[:4])
    np.testing.assert_allclose(predicted, intercept + inputs[:4] @ coefficients)


def test_the_series_fit_refuses_what_it_cannot_fit():
    inputs, labels, series = series_with_offsets()
    with pytest.raises(ValueError, match="one series name per label"):
        series_fit(inputs, labels, series[:-1])
    with pytest.raises(ValueError, match="at least two complexes that differ"):
        series_fit(inputs[:3], labels[:3], ["x", "y", "z"])  # one complex per series


def predicted_pk(model, dataset) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.cat([model.predict_pk(batch) for batch in DataLoader(dataset, batch_size=8)
                          ]).double().numpy()


SERIES_ANCHOR = {"anchor": "vina_descriptors", "size_term": True, "vina_readout": True}


def test_a_new_series_anchored_run_predicts_the_series_fit_for_every_part(vina_prepared,
                                                                          tmp_path):
    _, _, prepared = vina_prepared
    with started(vina_config(vina_prepared, tmp_path, **SERIES_ANCHOR), prepared) as trainer:
        for part in ("train", "val", "test"):
            expected = series_fit_predict(*prepared.series_fit_data("train"),
                                          prepared.series_fit_inputs(part))
            # float32 inside the model; a 24-input fit on 14 complexes has large coefficients
            np.testing.assert_allclose(predicted_pk(trainer.model, prepared.part(part)),
                                       expected, atol=5e-3)


def test_the_series_anchor_fits_on_the_train_complexes_a_cap_left_out(vina_prepared, tmp_path):
    _, _, prepared = vina_prepared
    cut = capped_training(prepared, 6, seed=0)  # the sample is one series (no groups): 6 left
    assert len(cut.split.parts["train"]) == 6
    assert cut.ids_of(UNCUT_TRAIN) == prepared.split.parts["train"]
    assert cut.with_parts(cut.split.parts).ids_of(UNCUT_TRAIN) == cut.split.parts["train"]
    with started(vina_config(vina_prepared, tmp_path, **SERIES_ANCHOR), cut) as trainer:
        predicted = predicted_pk(trainer.model, cut.part("test"))
    test = cut.series_fit_inputs("test")
    np.testing.assert_allclose(
        predicted, series_fit_predict(*cut.series_fit_data(UNCUT_TRAIN), test), atol=5e-3)
    assert not np.allclose(predicted, series_fit_predict(*cut.series_fit_data("train"), test),
                           atol=0.05)


def test_the_series_fit_baseline_reads_every_train_complex(vina_prepared):
    _, _, prepared = vina_prepared
    cut = capped_training(prepared, 6, seed=0)
    found = descriptor_baselines(cut)["series_fit"]
    assert found["ids"] == cut.split.parts["test"]
    np.testing.assert_allclose(found["measured"], labels_of(cut, "test"))
    np.testing.assert_allclose(found["predicted"], series_fit_predict(
        *cut.series_fit_data(UNCUT_TRAIN), cut.series_fit_inputs("test")))


def test_the_series_anchor_needs_the_size_term_and_the_vina_terms():
    with pytest.raises(ValueError, match="needs model.size_term=true"):
        ModelConfig(anchor="vina_descriptors")
    model = ModelConfig(anchor="vina_descriptors", size_term=True)
    assert model.uses_vina and model.uses_descriptors
    with pytest.raises(ValueError, match="need featurize.vina_terms=true"):
        AppConfig(model=model)
    AppConfig(model=model, featurize=FeaturizeConfig(vina_terms=True))


def test_only_a_series_anchored_model_takes_the_series_fit():
    coefficients = np.zeros(len(vocab.SERIES_FIT_INPUTS))
    other = PLGraphNet(dataclasses.replace(TINY_MODEL, anchor="vina_terms", size_term=True))
    with pytest.raises(ValueError, match="needs model.anchor=vina_descriptors"):
        other.anchor_to_series_fit(coefficients, 7.0)
    model = PLGraphNet(dataclasses.replace(TINY_MODEL, **SERIES_ANCHOR))
    with pytest.raises(ValueError, match=f"{len(coefficients)} finite coefficients"):
        model.anchor_to_series_fit(coefficients[:-1], 7.0)
    with pytest.raises(ValueError, match="finite coefficients"):
        model.anchor_to_series_fit(np.full(len(coefficients), np.nan), 7.0)
