"""The trainer on real complexes: outputs, exact resume, refusals, one writer per run."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL

from plgraph.config import (
    AppConfig,
    ModelConfig,
    TrackingConfig,
    TrainConfig,
)
from plgraph.errors import NonFiniteLossError
from plgraph.runtime.stop import StopRequests
from plgraph.training.checkpoint import CheckpointError, find_latest_checkpoint, read_checkpoint
from plgraph.training.reports import write_json
from plgraph.training.run_dir import ConfigChangeError, RunDirectory
from plgraph.training.trainer import Trainer, TrainingInterrupted

TINY = dataclasses.replace(TINY_MODEL, dropout=0.1)


@pytest.fixture(scope="module")
def prepared(twenty_prepared):
    """The session's 20 prepared complexes (conftest): 16 train, 2 val, 2 test."""
    return twenty_prepared


def app_config(prepared, tmp_path: Path, run_name: str = "run", **trainer) -> AppConfig:
    data, _ = prepared
    settings = {"max_epochs": 3, "batch_size": 4, "warmup_steps": 2,
                "checkpoint_every_n_steps": 2, **trainer}
    return AppConfig(data=data, model=TINY, trainer=TrainConfig(**settings),
                     tracking=TrackingConfig(enabled=False),  # not what is tested here
                     run_name=run_name, output_root=str(tmp_path))


def fit(config: AppConfig, prepared) -> dict:
    with RunDirectory(config.run_dir) as run:
        return Trainer(config, prepared[1], run, "python main.py").fit()


def parameters(config: AppConfig) -> dict[str, torch.Tensor]:
    return read_checkpoint(config.run_dir / "checkpoints" / "last.pt")["model"]


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def interrupt_when(condition, timeout: float = 120.0) -> threading.Thread:
    """Send this process SIGINT once ``condition()`` holds: a user pressing Ctrl-C mid-run."""
    def watch() -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def check_it_changes_the_training_and_resumes_exactly(prepared, tmp_path: Path,
                                                      **setting) -> None:
    """A trainer ``setting`` that draws random numbers (noise, decoys): two epochs with it end
    on other weights than without, and a run with it stopped by Ctrl-C after its first
    checkpoint and resumed ends on exactly the weights of one that ran straight through."""
    plain = app_config(prepared, tmp_path, "plain", max_epochs=2)
    straight = app_config(prepared, tmp_path, "straight", max_epochs=2, **setting)
    fit(plain, prepared)
    fit(straight, prepared)
    assert any(not torch.equal(a, b) for a, b in zip(parameters(plain).values(),
                                                     parameters(straight).values(), strict=True))
    stopped = app_config(prepared, tmp_path, "stopped", max_epochs=2, **setting)
    last = stopped.run_dir / "checkpoints" / "last.pt"
    interrupt_when(last.exists)
    with pytest.raises(TrainingInterrupted):
        fit(stopped, prepared)
    fit(stopped, prepared)
    assert_identical(parameters(straight), parameters(stopped))


def test_training_writes_every_output(prepared, tmp_path):
    config = app_config(prepared, tmp_path)
    results = fit(config, prepared)
    run = config.run_dir
    for name in ("metrics.csv", "results.json", "learning_curve.png", "test_scatter.png",
                 "test_predictions.csv", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 3
    saved = json.loads((run / "results.json").read_text())
    assert saved == results and results["epochs"] == 3 and results["stopped_by"] == "max_epochs"
    assert set(results["test"]) == {"rmse", "mae", "pearson", "spearman"}
    assert results["sizes"] == {"train": 16, "val": 2, "test": 2}


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["cosine", "plateau"])
def test_resume_after_ctrl_c_matches_uninterrupted_run(prepared, tmp_path, scheduler):
    straight = app_config(prepared, tmp_path, "straight", max_epochs=4, scheduler=scheduler)
    fit(straight, prepared)
    stopped = app_config(prepared, tmp_path, "stopped", max_epochs=4, scheduler=scheduler)
    last = stopped.run_dir / "checkpoints" / "last.pt"
    interrupt_when(last.exists)
    with pytest.raises(TrainingInterrupted) as stop:
        fit(stopped, prepared)
    assert stop.value.exit_code == 128 + signal.SIGINT and "Resume with" in str(stop.value)
    interrupted = read_checkpoint(stopped.run_dir / "checkpoints" / "INTERRUPTED.pt")
    assert 0 < interrupted["progress"]["global_step"] < 16
    fit(stopped, prepared)
    assert_identical(parameters(straight), parameters(stopped))
    def without_time(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "wall_seconds"} for row in history]

    straight_history = read_checkpoint(straight.run_dir / "checkpoints" / "last.pt")["history"]
    assert without_time(read_checkpoint(last)["history"]) == without_time(straight_history)


@pytest.mark.slow
def test_resume_mid_accumulation_after_save_now_matches_uninterrupted_run(prepared, tmp_path):
    straight = app_config(prepared, tmp_path, "straight", grad_accumulation=3,
                          checkpoint_every_n_steps=100)
    fit(straight, prepared)
    stopped = app_config(prepared, tmp_path, "stopped", grad_accumulation=3,
                         checkpoint_every_n_steps=100)
    stopped.run_dir.mkdir(parents=True)
    flag = stopped.run_dir / "SAVE_NOW.flag"
    flag.touch()  # served after the first batch: one batch into a 3-batch accumulation
    interrupt_when(lambda: not flag.exists())
    with pytest.raises(TrainingInterrupted):
        fit(stopped, prepared)
    (stopped.run_dir / "checkpoints" / "INTERRUPTED.pt").unlink()  # recover from SAVE_NOW alone
    saved = read_checkpoint(stopped.run_dir / "checkpoints" / "last.pt")
    assert saved["progress"]["batches_seen"] % 3 != 0 and saved["grads"]
    fit(stopped, prepared)
    assert_identical(parameters(straight), parameters(stopped))


def test_a_corrupted_newest_checkpoint_is_skipped_with_a_warning(prepared, tmp_path, caplog):
    config = app_config(prepared, tmp_path, max_epochs=1)
    fit(config, prepared)
    checkpoints = config.run_dir / "checkpoints"
    newest = checkpoints / "INTERRUPTED.pt"
    newest.write_bytes((checkpoints / "last.pt").read_bytes()[:5000])
    found = find_latest_checkpoint(checkpoints)
    assert found is not None and found.path.name in ("last.pt", "best.pt")
    assert f"skipping {newest}: unreadable checkpoint" in caplog.text


def test_checkpoints_are_chosen_by_recorded_step_not_file_time(prepared, tmp_path):
    config = app_config(prepared, tmp_path, max_epochs=2)
    fit(config, prepared)
    checkpoints = config.run_dir / "checkpoints"
    old = checkpoints / "best.pt"
    os.utime(old, (time.time() + 3600, time.time() + 3600))  # newest file, older state
    found = find_latest_checkpoint(checkpoints)
    assert found is not None and found.step == read_checkpoint(checkpoints / "last.pt")[
        "progress"]["global_step"]


def test_a_checkpoint_with_a_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "payload": Path("/etc/passwd")}, path)
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        read_checkpoint(path)


def test_a_checkpoint_of_another_processing_version_is_refused(prepared, tmp_path):
    config = app_config(prepared, tmp_path, max_epochs=1)
    fit(config, prepared)
    path = config.run_dir / "checkpoints" / "last.pt"
    state = read_checkpoint(path)
    state["data_processing_version"] = -1
    torch.save(state, path)
    (config.run_dir / "checkpoints" / "best.pt").unlink()
    with pytest.raises(CheckpointError,
                       match=r"DATA_PROCESSING_VERSION -1, this code .*fresh=true"):
        fit(dataclasses.replace(config, trainer=dataclasses.replace(config.trainer,
                                                                    max_epochs=2)), prepared)


def test_changing_the_batch_size_mid_epoch_is_refused_and_a_new_lr_is_shown(prepared, tmp_path,
                                                                            caplog):
    config = app_config(prepared, tmp_path)
    (config.run_dir).mkdir(parents=True)
    (config.run_dir / "SAVE_NOW.flag").touch()
    interrupt_when(lambda: not (config.run_dir / "SAVE_NOW.flag").exists())
    with pytest.raises(TrainingInterrupted):
        fit(config, prepared)
    bigger = dataclasses.replace(config, trainer=dataclasses.replace(config.trainer, batch_size=8))
    with pytest.raises(ConfigChangeError, match=r"trainer.batch_size \(4 -> 8\).*fresh=true"):
        fit(bigger, prepared)
    slower = dataclasses.replace(config, trainer=dataclasses.replace(config.trainer, lr=5e-4))
    fit(slower, prepared)
    assert "resuming with a changed config: trainer.lr: 0.001 -> 0.0005" in caplog.text


def test_a_finished_run_says_so_and_more_epochs_train_on(prepared, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    config = app_config(prepared, tmp_path, max_epochs=1)
    fit(config, prepared)
    fit(config, prepared)
    assert "is finished (max_epochs, epoch 1)" in caplog.text
    longer = dataclasses.replace(config, trainer=dataclasses.replace(config.trainer,
                                                                     max_epochs=2))
    assert fit(longer, prepared)["epochs"] == 2


def test_a_second_process_on_the_same_run_is_refused_naming_it(prepared, tmp_path):
    config = app_config(prepared, tmp_path)
    second = ("import sys; from pathlib import Path; from plgraph.runtime.lock import LockedError; "
              "from plgraph.training.run_dir import RunDirectory\n"
              "try:\n    RunDirectory(Path(sys.argv[1])).__enter__()\n"
              "except LockedError as error:\n    print(error); sys.exit(3)\n")
    with RunDirectory(config.run_dir):
        result = subprocess.run([sys.executable, "-c", second, str(config.run_dir)],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"pid {os.getpid()}" in result.stdout


def test_fresh_moves_old_checkpoints_aside_and_deletes_nothing(prepared, tmp_path):
    config = app_config(prepared, tmp_path, max_epochs=1)
    fit(config, prepared)
    before = read_checkpoint(config.run_dir / "checkpoints" / "last.pt")["model"]
    with RunDirectory(config.run_dir) as run:
        moved = run.move_aside()
        assert moved is not None and not any(run.checkpoints.iterdir())
    assert_identical(read_checkpoint(moved / "checkpoints" / "last.pt")["model"], before)
    assert (moved / "results.json").is_file()


def test_a_non_finite_loss_stops_with_step_and_complexes(prepared, tmp_path):
    config = app_config(prepared, tmp_path, lr=1e30, warmup_steps=0, grad_clip=0.0,
                        checkpoint_every_n_steps=1)
    with pytest.raises(NonFiniteLossError, match=r"at step \d+, epoch 1, batch \d+; complexes "
                                                  r"in the batch: \['") as error:
        fit(config, prepared)
    failed_at = int(re.search(r"at step (\d+)", str(error.value)).group(1))
    last_good = read_checkpoint(config.run_dir / "checkpoints" / "last.pt")["progress"]
    # The message's step counts the steps done; one is saved after each: the last one stays.
    assert failed_at >= 1 and last_good["global_step"] == failed_at


def test_invalid_trainer_values_fail_before_any_work():
    with pytest.raises(ValueError, match=r"trainer.max_epochs must be >= 1 \(got 0\)"):
        TrainConfig(max_epochs=0)
    with pytest.raises(ValueError, match=r"model.cutoff \(4.0 Å\) must be >= the longest"):
        AppConfig(model=ModelConfig(cutoff=4.0))


def test_a_changed_model_config_is_refused_naming_the_key(prepared, tmp_path):
    config = app_config(prepared, tmp_path, max_epochs=1)
    fit(config, prepared)
    wider = dataclasses.replace(config, model=dataclasses.replace(TINY, hidden_channels=32),
                                trainer=dataclasses.replace(config.trainer, max_epochs=2))
    with pytest.raises(ConfigChangeError, match=r"model.hidden_channels \(16 -> 32\).*run_name"):
        fit(wider, prepared)


def test_a_state_dict_that_does_not_fit_lists_the_missing_keys(prepared, tmp_path):
    config = app_config(prepared, tmp_path, max_epochs=1)
    fit(config, prepared)
    for name in ("last.pt", "best.pt"):
        path = config.run_dir / "checkpoints" / name
        state = read_checkpoint(path)
        del state["model"]["head.output_network.0.vec1_proj.weight"]
        torch.save(state, path)
    longer = dataclasses.replace(config, trainer=dataclasses.replace(config.trainer, max_epochs=2))
    with pytest.raises(CheckpointError,
                       match=r"(?s)does not fit this model: .*Missing key.*vec1_proj"):
        fit(longer, prepared)


def test_the_first_signal_asks_to_stop_and_a_second_ctrl_c_aborts_at_once():
    with StopRequests() as stop:
        os.kill(os.getpid(), signal.SIGUSR1)  # Slurm's warning before the time limit
        assert stop.requested and stop.signal == signal.SIGUSR1
        os.kill(os.getpid(), signal.SIGTERM)  # more stop requests only repeat the request
        assert stop.signal == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt, match="second Ctrl-C"):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C once a stop is pending: abort now
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_key_added_by_a_newer_plgraph_at_its_default_does_not_block_a_resume():
    """An upgrade mid-chain (Slurm requeues) must resume: the checkpoint's config lacks the new
    key, whose default keeps the old behaviour; the same key set otherwise is a change."""
    from plgraph.training.run_dir import check_config_change

    current = dataclasses.asdict(AppConfig())
    saved = copy.deepcopy(current)
    del saved["data"]["duplicate_identity"], saved["featurize"]["posing"]
    assert check_config_change(saved, current, mid_epoch=True) == []
    current["data"]["duplicate_identity"] = 0.5
    with pytest.raises(ConfigChangeError, match=r"data.duplicate_identity \(None -> 0.5\)"):
        check_config_change(saved, current, mid_epoch=True)


def test_results_json_is_strict_json_with_undefined_figures_as_null(tmp_path):
    """A Pearson R of one test complex is NaN; results.json must still parse in jq or
    JavaScript, so it holds null there, never the non-JSON token NaN."""
    path = tmp_path / "results.json"
    write_json({"test": {"pearson": math.nan, "rmse": 0.5},
                "per_seed": [{"spearman": -math.inf}, 1.0], "name": "run"}, path)

    def refuse(token: str):
        pytest.fail(f"results.json holds the non-JSON number {token}")

    parsed = json.loads(path.read_text(), parse_constant=refuse)
    assert parsed == {"test": {"pearson": None, "rmse": 0.5},
                      "per_seed": [{"spearman": None}, 1.0], "name": "run"}
