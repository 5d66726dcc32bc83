"""Stop signals from the first line to the last: Ctrl-C, SIGTERM and SIGUSR1 before the training
loop (cache build, resume load, MLflow setup, preflight) and after it (test evaluation) stop at
the next safe point with a message and exit code 128 + signal; nothing partial is left, no
process outlives the product, and the next run goes on from there. Under torchrun every rank
stops at the same point. The loop's own stop (INTERRUPTED.pt) is in test_training.py and
test_main_resume.py."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    FEP,
    MAIN_ARGS,
    MAIN_IDS,
    REPO,
    SAMPLE,
    copy_sample,
    data_config,
    missing_shared,
)
from stop_during import ENVIRONMENT, signal_at_start
from test_distributed import free_port
from test_slurm import FAKE_SCONTROL, JOB_ID, fake_executable
from test_training import app_config, fit

from plgraph.cli import resume_command, run_cli, torchrun_command
from plgraph.config import FeaturizeConfig, TrackingConfig
from plgraph.runtime.lock import exclusive_lock
from plgraph.runtime.stop import STOP, StopRequested, StopRequests
from plgraph.training.checkpoint import read_checkpoint
from plgraph.training.tracking import local_store_uri

DRIVER = REPO / "tests" / "stop_during.py"
ONE_EPOCH = [*[o for o in MAIN_ARGS if not o.startswith("trainer.max_epochs")],
             "trainer.max_epochs=1"]


# --- the flag and the entry point's message -------------------------------------------------
def test_a_check_raises_the_signal_that_arrived_with_its_exit_code():
    with StopRequests() as stop:
        stop.check("while nothing happens")
        os.kill(os.getpid(), signal.SIGUSR1)
        with pytest.raises(StopRequested) as raised:
            stop.check("while building the cache")
    assert raised.value.exit_code == 128 + signal.SIGUSR1
    assert str(raised.value) == "SIGUSR1: stopped while building the cache."


def test_nested_installs_share_one_flag_and_the_outermost_restores_the_handlers():
    stop = StopRequests()
    with stop:
        os.kill(os.getpid(), signal.SIGTERM)
        with stop:  # the trainer inside an entry point that installed them already
            assert stop.signal == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM).__self__ is stop  # its handler, still installed
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert stop.signal is None, "the stop was answered inside; nothing is pending outside"
    stop.check("after the stop was answered")


def test_a_stop_signal_ends_the_wait_for_a_cache_another_process_is_building(tmp_path):
    lock = tmp_path / "processed.lock"
    with exclusive_lock(lock, "the cache", wait=False), STOP:  # the other build
        os.kill(os.getpid(), signal.SIGTERM)
        with (pytest.raises(StopRequested, match="SIGTERM: stopped while waiting for the cache"),
              exclusive_lock(lock, "the cache", wait=True)):
            pytest.fail("the lock was taken while another holder had it")


def test_the_entry_point_turns_a_stop_into_one_message_and_128_plus_the_signal(caplog):
    def job() -> int:
        raise StopRequested(signal.SIGTERM, "after the preflight")

    with caplog.at_level(logging.WARNING, logger="plgraph"):
        assert run_cli(job, "python main.py run_name=x") == 128 + signal.SIGTERM
    assert ("SIGTERM: stopped after the preflight. Resume with: python main.py run_name=x"
            in caplog.text)


# --- the resume command under torchrun -------------------------------------------------------
TORCHRUN_ENVIRONMENT = {"TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}


@pytest.mark.parametrize(("launcher", "expected"), [
    (["/venv/bin/python3", "/venv/bin/torchrun", "--nproc_per_node=4", "--nnodes=2", "main.py",
      "run_name=big", "fresh=true"], "torchrun --nproc_per_node=4 --nnodes=2 main.py run_name=big"),
    (["/usr/bin/python3", "-m", "torch.distributed.run", "--nproc_per_node=4", "main.py",
      "run_name=big"], "python3 -m torch.distributed.run --nproc_per_node=4 main.py run_name=big"),
    ([], "torchrun --nnodes=2 --nproc_per_node=4 main.py run_name=big"),  # launcher unreadable
], ids=["torchrun-script", "python-m", "rebuilt"])
def test_the_resume_command_under_torchrun_is_the_torchrun_command(launcher, expected):
    argv = ["main.py", "run_name=big", "fresh=true"]
    assert resume_command(argv, TORCHRUN_ENVIRONMENT, launcher) == expected
    assert torchrun_command(launcher, argv, TORCHRUN_ENVIRONMENT)[0] in ("torchrun", "python3")


def test_the_resume_command_outside_torchrun_is_this_command_without_fresh():
    command = resume_command(["main.py", "run_name=x", "fresh=true"], {})
    assert command == f"{Path(sys.executable).name} main.py run_name=x"


# --- the trainer's phases, in this process ---------------------------------------------------
@pytest.fixture(scope="module")
def prepared(twenty_prepared):
    """The session's 20 prepared complexes (conftest): 16 train, 2 val, 2 test."""
    return twenty_prepared


def stopped(config, prepared, caplog) -> tuple[int, str]:
    """Run the training as main.py does: the exit code and the log."""
    def train() -> int:
        fit(config, prepared)
        return 0

    caplog.clear()
    with caplog.at_level(logging.INFO):
        code = run_cli(train, "RESUME")
    return code, caplog.text


def checkpoint_files(config) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (config.run_dir / "checkpoints").glob("*")}


@pytest.mark.slow
def test_a_signal_in_the_preflight_or_the_mlflow_setup_stops_before_training_and_the_next_run_starts(  # noqa: E501
        prepared, tmp_path, monkeypatch, caplog):
    from mlflow.tracking import MlflowClient

    # Tracking on: the MLflow setup is one of the phases stopped here.
    config = dataclasses.replace(app_config(prepared, tmp_path, max_epochs=1),
                                 tracking=TrackingConfig(enabled=True))
    with monkeypatch.context() as patch:
        signal_at_start("preflight", signal.SIGINT, patch.setattr)
        code, log = stopped(config, prepared, caplog)
    assert code == 130
    assert ("SIGINT: stopped after the preflight, before the first training step, so nothing "
            "needed saving. Resume with: RESUME") in log
    assert checkpoint_files(config) == {}

    with monkeypatch.context() as patch:
        signal_at_start("mlflow", signal.SIGTERM, patch.setattr)
        code, log = stopped(config, prepared, caplog)
    assert code == 143 and "SIGTERM: stopped after setting up MLflow tracking" in log
    assert checkpoint_files(config) == {}
    run_id = json.loads((config.run_dir / "mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(local_store_uri(tmp_path))
    assert client.get_run(run_id).info.status == "KILLED"

    code, log = stopped(config, prepared, caplog)
    assert code == 0 and "starting run" in log and "resuming from" not in log
    assert read_checkpoint(config.run_dir / "checkpoints" / "last.pt")["progress"]["epoch"] == 1


@pytest.mark.slow
def test_a_signal_in_the_test_evaluation_or_the_resume_load_loses_nothing_and_the_next_run_only_evaluates(  # noqa: E501
        prepared, tmp_path, monkeypatch, caplog):
    config = app_config(prepared, tmp_path, max_epochs=1)
    with monkeypatch.context() as patch:
        signal_at_start("test", signal.SIGUSR1, patch.setattr)
        code, log = stopped(config, prepared, caplog)
    assert code == 128 + signal.SIGUSR1
    assert "SIGUSR1: stopped during the test evaluation of best.pt" in log
    assert not (config.run_dir / "results.json").exists()
    assert not (config.run_dir / "test_predictions.csv").exists()
    trained = checkpoint_files(config)
    assert set(trained) == {"best.pt", "last.pt"}  # no INTERRUPTED.pt: the training was complete
    steps = read_checkpoint(config.run_dir / "checkpoints" / "last.pt")["progress"]["global_step"]

    with monkeypatch.context() as patch:
        signal_at_start("resume", signal.SIGTERM, patch.setattr)
        code, log = stopped(config, prepared, caplog)
    assert code == 143 and "SIGTERM: stopped after looking for a checkpoint to resume" in log
    assert checkpoint_files(config) == trained

    code, log = stopped(config, prepared, caplog)
    assert code == 0 and f": step {steps}, epoch 2, batch 0" in log and "resuming from" in log
    results = (config.run_dir / "results.json").read_text()
    assert f'"steps": {steps}' in results


@pytest.mark.slow
def test_a_signal_while_predict_py_featurizes_stops_it_before_predicting(prepared, tmp_path):
    config = dataclasses.replace(app_config(prepared, tmp_path, max_epochs=1),
                                 tracking=TrackingConfig(enabled=False))
    fit(config, prepared)
    output = tmp_path / "predictions.csv"
    result = run([sys.executable, str(DRIVER), "predict.py",
                  f"checkpoint={config.run_dir / 'checkpoints' / 'best.pt'}",
                  f"root={prepared[0].root}", f"output={output}"], "predict:SIGTERM")
    log = result.stdout + result.stderr
    assert result.returncode == 143, log
    assert ("SIGTERM: stopped while predicting, after 0 records: nothing was written to "
            f"{output}") in log
    assert not output.exists()
    assert "Traceback" not in log


# --- main.py and torchrun, as users and schedulers stop them ---------------------------------
def product_processes(pid: int, *pattern: str) -> list[int]:
    """The child processes of ``pid`` (whose command line matches ``pattern``)."""
    found = subprocess.run(["pgrep", "-P", str(pid), *pattern], capture_output=True, text=True)
    return [int(child) for child in found.stdout.split()]


def pool_workers(pid: int) -> list[int]:
    return product_processes(pid, "-f", "spawn_main")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def assert_lock_is_free(lock: Path) -> None:
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if still held


def assert_no_cache(processed: Path) -> None:
    assert not processed.exists()
    assert not list(processed.parent.glob(f"{processed.name}.partial-*"))
    assert_lock_is_free(processed.with_name(f"{processed.name}.lock"))


def test_a_cancelled_build_worker_returns_before_its_next_complex():
    """The pool is ended by asking its workers to return, not by killing them: a worker killed
    while it sends a chunk's result leaves half a message in the pipe, on which the pool's
    manager thread then waits forever (the Uni-FEP build hung so on a SIGTERM)."""
    import multiprocessing

    from plgraph.data import build
    from plgraph.data.layouts import read_inputs

    records = read_inputs(data_config(SAMPLE), FeaturizeConfig()).records[:3]
    cancel = multiprocessing.get_context("spawn").Event()
    try:
        build.init_worker(FeaturizeConfig(), pool_worker=False, cancel=cancel)
        assert len(build.featurize_chunk(records)) == 3
        cancel.set()
        assert build.featurize_chunk(records) == []
    finally:
        build.init_worker(FeaturizeConfig(), pool_worker=False)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "to_group"), [("SIGTERM", False), ("SIGINT", True)],
                         ids=["sigterm-to-main", "ctrl-c-to-the-process-group"])
def test_a_signal_during_a_cache_build_with_two_workers_leaves_no_cache_and_no_process(
        tmp_path, name, to_group):
    if not FEP.is_dir():
        missing_shared(FEP)
    processed = tmp_path / "processed"
    command = [sys.executable, str(REPO / "main.py"), f"data.root={FEP}", "data.layout=series",
               f"data.processed_dir={processed}", "data.workers=2", "prepare_only=true",
               f"output_root={tmp_path / 'outputs'}"]
    # A session of its own: Ctrl-C in a terminal reaches every process of the foreground group.
    product = subprocess.Popen(command, cwd=REPO, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(pool_workers(product.pid)) < 2:
        assert product.poll() is None, product.communicate()[0]
        assert time.monotonic() < deadline, "the pool never started"
        time.sleep(0.05)
    children = product_processes(product.pid)  # the workers and the resource tracker
    number = signal.Signals[name]
    if to_group:
        os.killpg(product.pid, number)
    else:
        product.send_signal(number)
    output, _ = product.communicate(timeout=120)
    assert product.returncode == 128 + number, output
    assert f"{name}: stopped while featurizing the inputs for the processed cache" in output
    assert "Resume with:" in output and "Traceback" not in output
    assert_no_cache(processed)
    deadline = time.monotonic() + 10  # the resource tracker exits once the product is gone
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in children if alive(pid)], "a process outlived the product"


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    """MAIN_IDS without a cache, for each test its own."""
    return copy_sample(tmp_path / "sixteen", MAIN_IDS)


def run(command: list[str], stop: str = "", **environment: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **environment, **({ENVIRONMENT: stop} if stop else {})}
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=env)


def printed_resume_command(output: str) -> list[str]:
    """The command after the last ``Resume with:``, runnable here (the interpreter it names is
    this one; it may not be on PATH)."""
    line = output.rsplit("Resume with: ", 1)[1].splitlines()[0]
    command = shlex.split(line)
    assert command[0] == Path(sys.executable).name
    return [sys.executable, *command[1:]]


@pytest.mark.slow
def test_sigusr1_in_a_slurm_job_during_the_cache_build_requeues_it_and_the_rerun_trains(
        small_dataset, tmp_path):
    bin_dir = tmp_path / "bin"
    fake_executable(bin_dir, "scontrol", FAKE_SCONTROL)
    calls = tmp_path / "scontrol-calls.txt"
    outputs = tmp_path / "outputs"
    command = [sys.executable, str(DRIVER), f"data.root={small_dataset}", f"output_root={outputs}",
               "run_name=slurm", *ONE_EPOCH]
    slurm = {"SLURM_JOB_ID": JOB_ID, "SLURM_PROCID": "0", "FAKE_SCONTROL_LOG": str(calls),
             "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = run(command, "build:SIGUSR1", **slurm)
    output = result.stdout + result.stderr
    assert result.returncode == 128 + signal.SIGUSR1, output
    assert "SIGUSR1: stopped while featurizing the inputs for the processed cache" in output
    assert f"requeued job {JOB_ID}" in output and "Traceback" not in output
    assert calls.read_text().splitlines() == [f"requeue {JOB_ID}"]
    assert_no_cache(small_dataset / "processed")

    rerun = run(printed_resume_command(output), **slurm)  # what the requeued job runs
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert (outputs / "slurm" / "results.json").is_file()


def torchrun(small_dataset: Path, outputs: Path, logs: Path) -> list[str]:
    """torchrun with 2 CPU processes; each worker's output in a file of its own under ``logs``,
    apart from torchrun's own report."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
            "--master_addr=127.0.0.1", f"--master_port={free_port()}", f"--log-dir={logs}",
            "--redirects=3", str(DRIVER), f"data.root={small_dataset}",
            f"output_root={outputs}", "run_name=ddp", *ONE_EPOCH]


def worker_outputs(logs: Path) -> list[str]:
    """Rank 0's output and rank 1's, stdout and stderr together."""
    return ["".join(f.read_text() for f in sorted(logs.rglob(f"attempt_*/{rank}/*.log")))
            for rank in (0, 1)]


@pytest.mark.slow
def test_under_torchrun_a_signal_to_rank_0_in_the_cache_build_stops_both_ranks_and_the_printed_command_resumes(  # noqa: E501
        small_dataset, tmp_path):
    outputs = tmp_path / "outputs"
    command = torchrun(small_dataset, outputs, tmp_path / "logs")
    result = run(command, "build:SIGTERM:0")  # rank 1 waits for rank 0's build meanwhile
    assert result.returncode != 0
    for rank, output in enumerate(worker_outputs(tmp_path / "logs")):
        assert ("SIGTERM: stopped while featurizing the inputs for the processed cache" in
                output), f"rank {rank}: {output}"
        assert "Traceback" not in output, f"rank {rank}: {output}"
        resume = printed_resume_command(output)
        assert resume == command, "Resume with: is not the torchrun command that ran"
    assert_no_cache(small_dataset / "processed")

    rerun = run(resume)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert '"world_size": 2' in (outputs / "ddp" / "results.json").read_text()


@pytest.mark.slow
def test_under_torchrun_a_signal_to_rank_1_in_the_preflight_stops_both_ranks_at_the_same_point(
        small_dataset, tmp_path):
    outputs = tmp_path / "outputs"
    result = run(torchrun(small_dataset, outputs, tmp_path / "logs"), "preflight:SIGUSR1:1")
    assert result.returncode != 0
    for rank, output in enumerate(worker_outputs(tmp_path / "logs")):
        assert "SIGUSR1: stopped after the preflight" in output, f"rank {rank}: {output}"
        assert "Traceback" not in output and "Connection closed" not in output, output
    assert not list((outputs / "ddp" / "checkpoints").glob("*.pt"))
