"""main.py as users run it: composed configs, prepare_only, and errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir

from plgraph.cli import register_configs, to_config
from plgraph.config import AppConfig, PredictConfig, TrainConfig

# conf/experiment/ files that are one training (experiment.name null), not a comparison.
ONE_TRAINING = {"shipped"}
CONFIGS = sorted(p.stem for p in (REPO / "conf").glob("*.yaml"))
REQUIRED = {"predict": ["protein=P.pdb", "ligands=L.sdf"]}  # mandatory keys (???) of a config


def run_main(*overrides: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "main.py"), *overrides], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_composes_into_typed_dataclasses(name):
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        config = to_config(compose(config_name=name, overrides=REQUIRED.get(name, [])))
    assert isinstance(config, AppConfig | PredictConfig)


def test_an_override_of_the_wrong_type_is_refused():
    register_configs()
    with (initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"),
          pytest.raises(Exception, match="data.workers")):
        to_config(compose(config_name="config", overrides=["data.workers=many"]))


@pytest.mark.slow
def test_prepare_only_builds_the_cache_and_exits(sample_root, tmp_path):
    result = run_main(f"data.root={sample_root}", "prepare_only=true", "data.workers=1",
                      "data.max_failure_fraction=0.5", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr
    assert (sample_root / "processed" / "meta.json").is_file()
    assert (sample_root / "processed" / "splits" / "default.json").is_file()
    assert "data prepared (prepare_only=true)" in result.stdout + result.stderr


@pytest.mark.slow
def test_bad_config_fails_fast_with_the_rule_and_no_traceback(tmp_path):
    result = run_main("data.workers=-2", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "data.workers must be >= 0, 0 = all cores (got -2)" in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_a_missing_data_root_is_named(tmp_path):
    result = run_main(f"data.root={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert f"data.root={tmp_path / 'nowhere'} is not a directory" in result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "conf" / "experiment").glob(
    "*.yaml")))
def test_every_experiment_composes_into_typed_dataclasses(name):
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        config = to_config(compose(config_name="config", overrides=[f"experiment={name}"]))
    assert config.experiment.name == (None if name in ONE_TRAINING else name)


def test_the_shipped_recipe_is_one_training_of_transfer_budgets_model_on_all_the_data():
    """experiment=shipped trains what transfer_budget measured (so transfer_folds' figures are
    its recipe's), once, on both sources, with validation families and no test part."""
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        shipped, budget = (to_config(compose(config_name="config", overrides=[f"experiment={n}"]))
                           for n in ("shipped", "transfer_budget"))
    assert (shipped.model, shipped.trainer, shipped.featurize) == (
        budget.model, budget.trainer, budget.featurize)
    assert shipped.data == budget.data
    assert [s.name for s in shipped.data.sources] == ["fep", "unifep"]
    assert shipped.experiment.name is None and shipped.experiment.max_train_per_series == 4
    assert (shipped.split.strategy, shipped.split.test) == ("family", 0.0)
    assert shipped.split.val > 0
    assert shipped.run_name == "shipped"


@pytest.mark.parametrize("model", ["small", "large"])
def test_the_transfer_experiments_train_the_series_anchored_vina_reading_model_on_either_size(
        model):
    """What bench/README.md measured best on unseen families is what experiment=transfer and
    transfer_budget train, whichever model size is chosen on the command line: started on the
    within-series fit ("A within-series fit")."""
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for name in ("transfer", "transfer_budget", "transfer_folds"):
            config = to_config(compose(config_name="config",
                                       overrides=[f"experiment={name}", f"model={model}"]))
            assert (config.model.pair_energy, config.model.size_term, config.model.anchor) == (
                True, True, "vina_descriptors")
            assert config.model.vina_readout and config.featurize.vina_terms
            assert (config.trainer.objective, config.trainer.relative_loss,
                    config.trainer.monitor) == (
                "within_series", "pairwise_logistic", "series_spearman")
            assert config.model.hidden_channels == (256 if model == "large" else 48)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        plain = to_config(compose(config_name="config", overrides=["experiment=fep_grouped"]))
    assert (plain.model.anchor, plain.trainer.objective) == ("none", "absolute")


@pytest.mark.parametrize(("config", "key"), [
    (lambda device: PredictConfig(protein="p.pdb", ligands="l.sdf", device=device), "device"),
    (lambda device: TrainConfig(device=device), "trainer.device")])
def test_a_device_that_is_no_device_is_refused_naming_its_own_key(config, key):
    rule = rf"^{key} must be auto, cpu, cuda or cuda:N \(got 'gpu'\)"
    with pytest.raises(ValueError, match=rule):
        config("gpu")
    config("cuda:1")  # a valid name; whether the machine has it is asked when the run starts


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_predict_asking_for_a_missing_gpu_names_predicts_device_key(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "predict.py"), "device=cuda",
                             f"protein={tmp_path}/p.pdb", f"ligands={tmp_path}/l.sdf",
                             f"checkpoint={tmp_path}/none.pt"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert "device=cuda, but no CUDA device is visible here; use device=auto" in output
    assert "trainer.device" not in output
