"""Slurm without a cluster: the sbatch script hydra/launcher=slurm renders, and the requeue after
SIGUSR1 run against a fake ``scontrol`` that records its arguments."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir

from plgraph.cli import register_configs, to_config
from plgraph.runtime.slurm import requeue_after_preemption

JOB_ID = "4242"
SIGUSR1_EXIT = 128 + signal.SIGUSR1
FAKE_SCONTROL = """#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_SCONTROL_LOG"
if [ -n "$FAKE_SCONTROL_ERROR" ]; then echo "$FAKE_SCONTROL_ERROR" >&2; exit 1; fi
"""


def fake_executable(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def render_sbatch_script(tmp_path: Path, monkeypatch, *overrides: str) -> tuple[str, Path]:
    """The sbatch script of ``python main.py -m hydra/launcher=slurm <overrides>``, rendered by
    the launcher's own ``launch()`` and submitit, stopped just before anything is submitted."""
    import submitit
    from hydra.utils import instantiate

    # submitit refuses to build a Slurm executor unless srun is on PATH; this one never runs.
    fake_executable(tmp_path / "bin", "srun", "#!/bin/sh\nexit 1\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    executors = []
    monkeypatch.setattr(submitit.AutoExecutor, "map_array",
                        lambda executor, *arguments: executors.append(executor) or [])
    output_root = tmp_path / "outputs"
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True, overrides=[
            "hydra/launcher=slurm", f"output_root={output_root}", *overrides])
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config = cfg  # what Hydra's launcher.setup() stores; launch() reads the sweep dir
    launcher.launch([list(overrides)], initial_job_idx=0)
    [executor] = executors
    slurm = executor._executor
    return slurm._make_submission_file_text(slurm._submitit_command_str, "dry-run"), output_root


@pytest.mark.parametrize(("delay", "expected"), [(None, 180), (300, 300)])
def test_the_slurm_launcher_renders_a_requeueable_job_signalled_with_sigusr1(
        tmp_path, monkeypatch, delay, expected):
    overrides = ["run_name=big", "hydra.launcher.partition=gpu"]
    if delay is not None:
        overrides.append(f"hydra.launcher.signal_delay_s={delay}")
    script, output_root = render_sbatch_script(tmp_path, monkeypatch, *overrides)
    flags = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    # USR1, not submitit's USR2: the trainer's handler is the one that acts, exactly once.
    assert [f for f in flags if f.startswith("#SBATCH --signal")] == [
        f"#SBATCH --signal=USR1@{expected}"], script
    for flag in ("--requeue", "--time=720", "--gpus-per-node=1", "--cpus-per-task=8",
                 "--mem=64GB", "--ntasks-per-node=1", "--partition=gpu", "--job-name=big",
                 "--open-mode=append"):
        assert f"#SBATCH {flag}" in flags, (flag, script)
    # A requeued job keeps its id, so %j leads it back to the same pickled call and log files.
    folder = output_root / "slurm" / "%j"
    assert f"#SBATCH --output={folder}/%j_0_log.out" in flags, script
    assert script.rstrip().endswith(f"-m submitit.core._submit {folder}"), script


def test_each_slurm_job_logs_into_its_run_directory():
    register_configs()
    overrides = ["hydra/launcher=slurm", "run_name=seed${seed}", "seed=3"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        sweep = compose(config_name="config", overrides=overrides,
                        return_hydra_config=True).hydra.sweep
        config = to_config(compose(config_name="config", overrides=overrides))
    assert Path(sweep.dir) / sweep.subdir == config.run_dir == Path("outputs/seed3")


@pytest.fixture
def scontrol(tmp_path, monkeypatch) -> Path:
    """A fake ``scontrol`` first on PATH, in a process that is not in a Slurm job; returns the
    file where it writes one line of arguments per call."""
    calls = tmp_path / "scontrol-calls.txt"
    fake_executable(tmp_path / "bin", "scontrol", FAKE_SCONTROL)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SCONTROL_LOG", str(calls))
    for name in ("SLURM_JOB_ID", "SLURM_PROCID", "RANK", "FAKE_SCONTROL_ERROR"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_sigusr1_in_a_slurm_job_requeues_it(scontrol, monkeypatch, caplog):
    monkeypatch.setenv("SLURM_JOB_ID", JOB_ID)
    monkeypatch.setenv("SLURM_PROCID", "0")
    with caplog.at_level(logging.WARNING, logger="plgraph.runtime.slurm"):
        assert requeue_after_preemption(SIGUSR1_EXIT) is True
    assert scontrol.read_text().splitlines() == [f"requeue {JOB_ID}"]
    assert f"requeued job {JOB_ID}" in caplog.text


@pytest.mark.parametrize(("exit_code", "environment"), [
    (SIGUSR1_EXIT, {}),                                         # not in a Slurm job
    (128 + signal.SIGINT, {"SLURM_JOB_ID": JOB_ID}),            # Ctrl-C
    (128 + signal.SIGTERM, {"SLURM_JOB_ID": JOB_ID}),           # scancel or preemption
    (0, {"SLURM_JOB_ID": JOB_ID}),                              # finished
    (SIGUSR1_EXIT, {"SLURM_JOB_ID": JOB_ID, "SLURM_PROCID": "1"}),  # another srun task
    (SIGUSR1_EXIT, {"SLURM_JOB_ID": JOB_ID, "RANK": "1"}),      # another torchrun rank
], ids=["outside-slurm", "sigint", "sigterm", "finished", "procid-1", "rank-1"])
def test_no_requeue_unless_sigusr1_stopped_the_first_process_of_a_slurm_job(
        scontrol, monkeypatch, exit_code, environment):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert requeue_after_preemption(exit_code) is False
    assert not scontrol.exists()


def test_a_failing_scontrol_is_reported_with_its_message(scontrol, monkeypatch, caplog):
    monkeypatch.setenv("SLURM_JOB_ID", JOB_ID)
    error = f"scontrol: error: Requested operation is presently disabled for job {JOB_ID}"
    monkeypatch.setenv("FAKE_SCONTROL_ERROR", error)
    with caplog.at_level(logging.ERROR, logger="plgraph.runtime.slurm"):
        assert requeue_after_preemption(SIGUSR1_EXIT) is False
    assert scontrol.read_text().splitlines() == [f"requeue {JOB_ID}"]
    assert error in caplog.text
    assert "submit the same command again" in caplog.text


def test_a_missing_scontrol_is_reported(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no scontrol anywhere
    monkeypatch.setenv("SLURM_JOB_ID", JOB_ID)
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    with caplog.at_level(logging.ERROR, logger="plgraph.runtime.slurm"):
        assert requeue_after_preemption(SIGUSR1_EXIT) is False
    assert f"could not requeue Slurm job {JOB_ID}" in caplog.text
    assert "scontrol" in caplog.text
