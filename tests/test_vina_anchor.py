"""``model.anchor=vina`` / ``vina_terms`` and ``model.vina_readout`` on real complexes whose
cache holds their Vina terms: a new run starts exactly on the fit, the config refuses them
without the terms, and a run that reads the terms resumes exactly."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL
from torch_geometric.loader import DataLoader

from plgraph import vocab
from plgraph.config import AppConfig, FeaturizeConfig, ModelConfig, TrackingConfig, TrainConfig
from plgraph.training.anchor import vina_fit
from plgraph.training.checkpoint import read_checkpoint
from plgraph.training.run_dir import RunDirectory
from plgraph.training.trainer import Trainer, TrainingInterrupted

SCORE = vocab.VINA_TERMS.index("vina_score")


def vina_config(vina_prepared, tmp_path, run_name="run", **model) -> AppConfig:
    data, featurize, _ = vina_prepared
    return AppConfig(data=data, featurize=featurize, output_root=str(tmp_path),
                     model=dataclasses.replace(TINY_MODEL, pair_energy=True, **model),
                     tracking=TrackingConfig(enabled=False), run_name=run_name,
                     trainer=TrainConfig(max_epochs=2, batch_size=4, warmup_steps=2,
                                         checkpoint_every_n_steps=2))


def predictions(model, dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted pK, Vina terms and labels of ``dataset``, read from its graphs."""
    model.eval()
    predicted, terms, labels = [], [], []
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=8):
            predicted.append(model.predict_pk(batch))
            terms.append(batch.vina)
            labels.append(batch.y)
    return tuple(torch.cat(v).double().numpy() for v in (predicted, terms, labels))


@contextlib.contextmanager
def started(config: AppConfig, prepared) -> Iterator[Trainer]:
    """A trainer that has started a new run (standardized, anchored), not trained."""
    with RunDirectory(config.run_dir) as run:
        trainer = Trainer(config, prepared, run, "python main.py")
        trainer.start()
        yield trainer


def test_the_cache_holds_a_finite_row_of_every_term_per_complex(vina_prepared):
    _, _, prepared = vina_prepared
    terms = prepared.cache.vina_terms()
    assert terms.shape == (len(prepared.cache), len(vocab.VINA_TERMS))
    assert torch.isfinite(terms).all() and (terms[:, SCORE] < 0).all()
    assert prepared.cache.meta["vina_terms"] == list(vocab.VINA_TERMS)
    assert torch.equal(prepared.cache[3].vina, terms[3:4])


def test_a_new_vina_anchored_run_predicts_the_fitted_line_for_every_part(vina_prepared,
                                                                         tmp_path):
    _, _, prepared = vina_prepared
    with started(vina_config(vina_prepared, tmp_path, anchor="vina"), prepared) as trainer:
        _, train_terms, train_labels = predictions(trainer.model, prepared.part("train"))
        slope, intercept = np.polyfit(train_terms[:, SCORE], train_labels, 1)
        assert slope < 0  # a lower (better) Vina score goes with a higher pK on the sample
        for part in ("train", "val", "test"):
            predicted, terms, _ = predictions(trainer.model, prepared.part(part))
            np.testing.assert_allclose(predicted, intercept + slope * terms[:, SCORE],
                                       atol=1e-4)


def test_a_new_vina_terms_run_predicts_the_least_squares_fit_on_all_terms(vina_prepared,
                                                                         tmp_path):
    _, _, prepared = vina_prepared
    config = vina_config(vina_prepared, tmp_path, anchor="vina_terms", vina_readout=True)
    with started(config, prepared) as trainer:
        predicted, terms, labels = predictions(trainer.model, prepared.part("train"))
    columns = range(len(vocab.VINA_TERMS))
    coefficients, intercept = vina_fit(terms, labels, columns)
    z = (terms - terms.mean(axis=0)) / np.where(terms.std(axis=0) > 0, terms.std(axis=0), 1)
    # float32 inside the model: the terms reach 10^3 (gauss2) and the 12-parameter fit on 14
    # complexes has coefficients of several pK per standard deviation
    np.testing.assert_allclose(predicted, intercept + z @ coefficients, atol=5e-3)
    residual = np.abs(predicted - labels).mean()
    line = np.abs(np.polyval(np.polyfit(terms[:, SCORE], labels, 1), terms[:, SCORE]) - labels)
    assert residual < line.mean()  # eleven terms fit the train part closer than the score alone


def test_a_vina_anchor_or_readout_without_the_terms_is_refused_at_config_time():
    for model in (ModelConfig(anchor="vina"), ModelConfig(anchor="vina_terms"),
                  ModelConfig(vina_readout=True)):
        with pytest.raises(ValueError, match="need featurize.vina_terms=true"):
            AppConfig(model=model)
        AppConfig(model=model, featurize=FeaturizeConfig(vina_terms=True))
    ModelConfig(anchor="vina")  # no size term needed: the Vina term holds the slope
    with pytest.raises(ValueError, match="model.anchor must be one of none, heavy_atoms, vina"):
        ModelConfig(anchor="vinardo")


def test_a_model_that_reads_the_terms_refuses_graphs_without_them(vina_prepared, tmp_path):
    _, _, prepared = vina_prepared
    graph = prepared.part("test")[0]
    del graph.vina
    config = vina_config(vina_prepared, tmp_path, vina_readout=True)
    with started(config, prepared) as trainer, pytest.raises(ValueError,
                                                             match="featurize.vina_terms=true"):
        trainer.model.predict_pk(graph)


@pytest.mark.slow
def test_a_vina_terms_run_with_the_readout_resumes_to_the_uninterrupted_weights(vina_prepared,
                                                                               tmp_path):
    _, _, prepared = vina_prepared
    model = {"anchor": "vina_terms", "vina_readout": True}
    straight = vina_config(vina_prepared, tmp_path, "straight", **model)
    with RunDirectory(straight.run_dir) as run:
        Trainer(straight, prepared, run, "python main.py").fit()
    stopped = vina_config(vina_prepared, tmp_path, "stopped", **model)
    steps = []
    with RunDirectory(stopped.run_dir) as run:
        trainer = Trainer(stopped, prepared, run, "python main.py")
        original = trainer.train_step

        def step_then_stop(*args, **kwargs):
            result = original(*args, **kwargs)
            steps.append(1)
            if len(steps) == 3:
                os.kill(os.getpid(), signal.SIGINT)
            return result

        trainer.train_step = step_then_stop
        with pytest.raises(TrainingInterrupted):
            trainer.fit()
    with RunDirectory(stopped.run_dir) as run:
        Trainer(stopped, prepared, run, "python main.py").fit()
    final, expected = (read_checkpoint(c.run_dir / "checkpoints" / "last.pt")["model"]
                       for c in (stopped, straight))
    assert {"vina_mean", "vina_std", "vina_term.weight", "vina_embedding.weight"} <= set(final)
    assert final.keys() == expected.keys()
    for name in final:
        assert torch.equal(final[name], expected[name]), name
    assert final["head.output_network.1.update_net.2.weight"].abs().sum() > 0


def test_main_py_refuses_a_vina_anchor_without_the_terms_before_any_work(tmp_path):
    from conftest import REPO, copy_sample

    root = copy_sample(tmp_path / "two", ("1pum", "2w9r"))
    result = subprocess.run(
        [sys.executable, str(REPO / "main.py"), f"data.root={root}", "model.anchor=vina",
         f"output_root={tmp_path / 'outputs'}", "tracking.enabled=false"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "need featurize.vina_terms=true" in result.stdout + result.stderr
    assert not (root / "processed").exists()  # nothing was featurized
