"""``featurize.vina_terms``: the processed cache with each pose's Vina terms, on real complexes:
the option is part of the cache's identity, a pose Vina cannot score is a recorded failure only
when the terms are asked for, and predict.py scores with Vina when the checkpoint was trained
with the terms."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, TINY_MODEL, copy_sample, data_config

from plgraph import vocab
from plgraph.config import AppConfig, FeaturizeConfig, SplitConfig, TrackingConfig, TrainConfig
from plgraph.data import prepare_data
from plgraph.data.records import ComplexRecord
from plgraph.errors import CacheError
from plgraph.featurize.vina_terms import vina_terms
from plgraph.training.run_dir import RunDirectory
from plgraph.training.trainer import Trainer

BORON = "2y2k"  # its ligand has a boron atom: Vina has no type for it
SCORABLE = ("1pum", "2w9r", "1h1d")
SPLIT = SplitConfig(train=0.5, val=0.25, test=0.25)


def test_an_unscorable_complex_fails_with_vinas_reason_only_when_terms_are_on(tmp_path):
    root = copy_sample(tmp_path / "four", (*SCORABLE, BORON))
    scored = prepare_data(data_config(root, processed_dir=str(tmp_path / "with")),
                          FeaturizeConfig(vina_terms=True), SPLIT).cache
    assert scored.meta["counts"]["failed"] == 1 and BORON not in scored.ids
    reason = scored.meta["failures"][0]
    assert reason["id"] == BORON and "has B, for which Vina has no ligand atom type" in (
        reason["reason"])
    terms = scored.vina_terms()
    assert terms.shape == (3, len(vocab.VINA_TERMS)) and torch.isfinite(terms).all()
    record = ComplexRecord(id="1pum", protein=root / "1pum" / "1pum_pocket.pdb",
                           ligand_files=(root / "1pum" / "1pum_ligand.sdf",))
    graph = scored[scored.ids.index("1pum")]
    direct = vina_terms(record.protein, _heavy_ligand(graph, record), "1pum").vector()
    assert graph.vina.double().numpy()[0] == pytest.approx(direct, abs=1e-4)

    plain = prepare_data(data_config(root, processed_dir=str(tmp_path / "without")),
                         FeaturizeConfig(), SPLIT).cache
    assert plain.meta["counts"]["failed"] == 0 and BORON in plain.ids
    assert "vina" not in plain[0] and "vina_terms" not in plain.meta
    with pytest.raises(CacheError, match="built without featurize.vina_terms=true"):
        plain.vina_terms()


def _heavy_ligand(graph, record):
    """The ligand the build featurized, read again as the featurizer reads it."""
    from plgraph.featurize import read_ligand_files

    ligand = read_ligand_files(record.ligand_files, record.id)
    assert ligand.GetNumAtoms() == graph["ligand"].num_nodes
    return ligand


def test_a_cache_built_without_terms_is_refused_for_a_config_that_needs_them(tmp_path):
    root = copy_sample(tmp_path / "two", SCORABLE[:2])
    data = data_config(root)
    prepare_data(data, FeaturizeConfig(), SPLIT)
    with pytest.raises(CacheError, match=r"featurize.vina_terms was False, now True.*rm -r"):
        prepare_data(data, FeaturizeConfig(vina_terms=True), SPLIT)


def test_a_cache_of_the_code_before_the_option_is_the_same_cache(tmp_path):
    """meta.json written before featurize.vina_terms existed lacks the key: those graphs are the
    default-off graphs (no version bump), so the cache is used, not rebuilt."""
    root = copy_sample(tmp_path / "two", SCORABLE[:2])
    data = data_config(root)
    prepare_data(data, FeaturizeConfig(), SPLIT)
    meta_file = data.processed_path / "meta.json"
    meta = json.loads(meta_file.read_text())
    del meta["featurize"]["vina_terms"]
    meta_file.write_text(json.dumps(meta))
    assert prepare_data(data, FeaturizeConfig(), SPLIT).cache.ids == sorted(SCORABLE[:2])
    with pytest.raises(CacheError, match="featurize.vina_terms was False, now True"):
        prepare_data(data, FeaturizeConfig(vina_terms=True), SPLIT)


@pytest.mark.slow
def test_predict_py_scores_with_vina_for_a_model_trained_with_the_terms(vina_prepared,
                                                                       tmp_path):
    """predict.py featurizes with the checkpoint's featurize config: the terms are computed
    (the model would refuse graphs without them), equal to the cache's (the trainer's test
    predictions come back), and a pose Vina cannot score gets its reason in its row."""
    data, featurize, prepared = vina_prepared
    config = AppConfig(data=data, featurize=featurize, output_root=str(tmp_path / "outputs"),
                       model=dataclasses.replace(TINY_MODEL, anchor="vina", vina_readout=True),
                       tracking=TrackingConfig(enabled=False),
                       trainer=TrainConfig(max_epochs=1, batch_size=4, warmup_steps=2))
    with RunDirectory(config.run_dir) as run:
        Trainer(config, prepared, run, "python main.py").fit()
    output = tmp_path / "predictions.csv"
    result = subprocess.run(
        [sys.executable, str(REPO / "predict.py"),
         f"checkpoint={config.run_dir / 'checkpoints' / 'best.pt'}", f"root={data.root}",
         f"output={output}", "device=cpu"], cwd=tmp_path, capture_output=True, text=True,
        timeout=300, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    rows = {r["id"]: r for r in csv.DictReader(output.open())}
    assert all(rows[i]["status"] != "failed" for i in prepared.cache.ids), result.stderr
    failures = prepared.cache.meta["failures"]
    assert failures, "the sample's first 20 hold poses Vina cannot score"
    for failure in failures:
        assert rows[failure["id"]]["status"] == "failed"
        assert failure["reason"] in rows[failure["id"]]["error"]
    assert result.returncode != 0  # failed records set the exit code, as for any failure
    trainer_rows = list(csv.DictReader((config.run_dir / "test_predictions.csv").open()))
    for row in trainer_rows:
        assert float(rows[row["id"]]["predicted_pk"]) == pytest.approx(
            float(row["predicted_pk"]), abs=2e-4)
