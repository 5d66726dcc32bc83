"""``python main.py`` as users run it: stopped by Ctrl-C or kill -9, run again, ends exactly where
an uninterrupted run ends."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import MAIN_ARGS, MAIN_IDS, REPO, main_command, run_main_py

from plgraph.training.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow

IDS = MAIN_IDS
TINY = MAIN_ARGS


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    """This module's output root: each test's runs under a run_name of their own."""
    return tmp_path_factory.mktemp("outputs")


def start(root: Path, outputs: Path, run_name: str) -> subprocess.Popen:
    return subprocess.Popen(main_command(root, outputs, run_name), cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for(condition, process: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"run ended early:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def final_parameters(outputs: Path, run_name: str) -> dict[str, torch.Tensor]:
    return read_checkpoint(outputs / run_name / "checkpoints" / "last.pt")["model"]


@pytest.fixture(scope="module")
def straight(straight_run) -> dict[str, torch.Tensor]:
    """The final parameters of the session's uninterrupted run (conftest)."""
    return read_checkpoint(straight_run / "checkpoints" / "last.pt")["model"]


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_ctrl_c_writes_interrupted_prints_the_resume_command_and_resumes_exactly(
        sixteen_prepared, outputs, straight):
    process = start(sixteen_prepared, outputs, "ctrl_c")
    checkpoints = outputs / "ctrl_c" / "checkpoints"
    wait_for(lambda: (checkpoints / "last.pt").exists(), process)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 130, output
    assert (checkpoints / "INTERRUPTED.pt").is_file()
    assert "Resume with:" in output and "run_name=ctrl_c" in output
    step = read_checkpoint(checkpoints / "INTERRUPTED.pt")["progress"]["global_step"]
    assert step >= 1, "interrupted before a step: a restart would look the same as a resume"
    resumed = run_main_py(sixteen_prepared, outputs, "ctrl_c")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert re.search(rf"resuming from \S+\.pt: step {step},", resumed.stdout + resumed.stderr)
    assert_identical(final_parameters(outputs, "ctrl_c"), straight)


def test_kill_9_as_soon_as_save_now_flag_is_gone_loses_nothing_and_resumes_exactly(
        sixteen_prepared, outputs, straight):
    """The README's protocol: touch the flag, wait until it is gone, then kill."""
    flag = outputs / "kill9" / "SAVE_NOW.flag"
    flag.parent.mkdir(parents=True)
    flag.touch()  # served after the first batch, before any scheduled checkpoint (every 2 steps)
    process = start(sixteen_prepared, outputs, "kill9")
    wait_for(lambda: not flag.exists(), process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    checkpoints = outputs / "kill9" / "checkpoints"
    assert not (checkpoints / "INTERRUPTED.pt").exists()
    step = read_checkpoint(checkpoints / "last.pt")["progress"]["global_step"]
    assert step >= 1, "the flag vanished before its checkpoint was written"
    resumed = run_main_py(sixteen_prepared, outputs, "kill9")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming from {checkpoints / 'last.pt'}: step {step}," in (resumed.stdout +
                                                                       resumed.stderr)
    assert_identical(final_parameters(outputs, "kill9"), straight)


def test_running_again_on_a_finished_run_says_it_is_finished(sixteen_prepared, outputs,
                                                             straight_run):
    shutil.copytree(straight_run, outputs / "finished")  # a copy: the session's run stays as is
    last = (outputs / "finished" / "checkpoints" / "last.pt").read_bytes()
    result = run_main_py(sixteen_prepared, outputs, "finished")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is finished (max_epochs, epoch 6)" in result.stdout + result.stderr
    assert (outputs / "finished" / "checkpoints" / "last.pt").read_bytes() == last


def test_fresh_true_moves_the_finished_run_aside_and_trains_it_again_from_the_start(
        sixteen_prepared, outputs, straight_run, straight):
    shutil.copytree(straight_run, outputs / "again")
    old_last = (outputs / "again" / "checkpoints" / "last.pt").read_bytes()
    result = run_main_py(sixteen_prepared, outputs, "again", "fresh=true")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "fresh=true: moved the previous checkpoints and results to" in log
    assert "starting run" in log and "resuming from" not in log
    (previous,) = (outputs / "again").glob("previous-*")
    assert (previous / "checkpoints" / "last.pt").read_bytes() == old_last  # nothing deleted
    assert_identical(final_parameters(outputs, "again"), straight)  # the same run, from step 0
