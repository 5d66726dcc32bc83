"""``torchrun --nproc_per_node=2 main.py`` on CPU (gloo): train, stop, resume, finish exactly; the
ranks stop together; another world size resumes with a warning."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import MAIN_ARGS, REPO
from test_main_resume import assert_identical, wait_for

from plgraph.training.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def command(root: Path, outputs: Path, run_name: str, processes: int, *extra: str) -> list[str]:
    launcher = ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                 "--master_addr=127.0.0.1", f"--master_port={free_port()}"]
                if processes > 1 else [sys.executable])
    return [*launcher, str(REPO / "main.py"), f"data.root={root}", f"output_root={outputs}",
            f"run_name={run_name}", *MAIN_ARGS, *extra]


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args, **kwargs), cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def start(*args) -> subprocess.Popen:
    return subprocess.Popen(command(*args), cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def parameters(outputs: Path, run_name: str, name: str = "last.pt") -> dict:
    return read_checkpoint(outputs / run_name / "checkpoints" / name)["model"]


def worker_of_rank(launcher: subprocess.Popen, rank: int) -> int:
    """The pid of the torchrun worker process with RANK=rank."""
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
    for pid in children:
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environment:
            return int(pid)
    raise AssertionError(f"no worker with RANK={rank} among {children}")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    """This module's output root: each test's runs under a run_name of their own."""
    return tmp_path_factory.mktemp("outputs")


@pytest.fixture(scope="module")
def straight(sixteen_prepared, outputs) -> dict[str, torch.Tensor]:
    """The uninterrupted run on 2 processes: its final parameters."""
    result = run(sixteen_prepared, outputs, "ddp_straight", 2)
    assert result.returncode == 0, result.stdout + result.stderr
    results = (outputs / "ddp_straight" / "results.json").read_text()
    assert '"world_size": 2' in results
    return parameters(outputs, "ddp_straight")


def test_two_processes_train_on_halves_of_each_epoch(outputs, straight, straight_run):
    # straight_run (conftest): the same run in one process, trained once for the session.
    single = read_checkpoint(straight_run / "checkpoints" / "last.pt")
    history = single["progress"]
    two = read_checkpoint(outputs / "ddp_straight" / "checkpoints" / "last.pt")["progress"]
    # 12 training complexes, batch size 4: 3 steps per epoch alone, 2 per epoch on 2 ranks
    # (6 complexes each, padded by nothing); 6 epochs.
    assert (history["global_step"], two["global_step"]) == (18, 12)
    assert not all(torch.equal(a, b) for a, b in
                   zip(single["model"].values(), straight.values(), strict=True))


def test_a_signal_to_one_rank_stops_both_and_the_run_resumes_exactly(sixteen_prepared, outputs,
                                                                     straight):
    flag = outputs / "ddp_stop" / "SAVE_NOW.flag"
    flag.parent.mkdir(parents=True)
    flag.touch()
    launcher = start(sixteen_prepared, outputs, "ddp_stop", 2)
    wait_for(lambda: not flag.exists(), launcher)  # SAVE_NOW under DDP: agreed, saved, going on
    os.kill(worker_of_rank(launcher, 1), signal.SIGUSR1)
    output, _ = launcher.communicate(timeout=300)
    assert launcher.returncode != 0, output
    checkpoints = outputs / "ddp_stop" / "checkpoints"
    assert (checkpoints / "INTERRUPTED.pt").is_file(), output
    assert "SIGUSR1: stopped after step" in output
    stopped_at = read_checkpoint(checkpoints / "INTERRUPTED.pt")["progress"]["global_step"]
    assert stopped_at < 12, "the run finished before the signal; nothing was tested"

    resumed = run(sixteen_prepared, outputs, "ddp_stop", 2)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from" in resumed.stdout + resumed.stderr
    assert_identical(parameters(outputs, "ddp_stop"), straight)


def test_another_world_size_resumes_with_a_warning(sixteen_prepared, outputs):
    launcher = start(sixteen_prepared, outputs, "ddp_to_one", 2)
    checkpoints = outputs / "ddp_to_one" / "checkpoints"
    wait_for(lambda: (checkpoints / "last.pt").exists(), launcher)
    launcher.send_signal(signal.SIGTERM)  # torchrun forwards it to every worker
    output, _ = launcher.communicate(timeout=300)
    assert (checkpoints / "INTERRUPTED.pt").is_file(), output
    assert read_checkpoint(checkpoints / "INTERRUPTED.pt")["world_size"] == 2

    resumed = run(sixteen_prepared, outputs, "ddp_to_one", 1)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    output = resumed.stdout + resumed.stderr
    assert "written by 2 processes, this run has 1: the data order changes" in output
    assert read_checkpoint(checkpoints / "last.pt")["progress"]["epoch"] == 6


def test_a_torchrun_run_leaves_nothing_in_tmpdir(sixteen_prepared, tmp_path):
    """Two ranks each build the model: PyG's generated modules go to the reused cache directory
    (plgraph.model.generated), not TMPDIR. torchrun's own per-run log directory goes to
    ``--log-dir`` when given, as README says; torch's reused compile cache may stay."""
    tmp, cache = tmp_path / "tmp", tmp_path / "cache"
    tmp.mkdir()
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                "--master_addr=127.0.0.1", f"--master_port={free_port()}",
                f"--log-dir={tmp_path / 'torchrun-logs'}"]
    epoch = [o for o in MAIN_ARGS if not o.startswith("trainer.max_epochs")]
    result = subprocess.run(
        [*launcher, str(REPO / "main.py"), f"data.root={sixteen_prepared}",
         f"output_root={tmp_path / 'outputs'}", "run_name=tmp", *epoch, "trainer.max_epochs=1"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(cache)})
    assert result.returncode == 0, result.stdout + result.stderr
    left = sorted(p.name for p in tmp.iterdir() if not p.name.startswith("torchinductor_"))
    assert left == []
    assert len(list((cache / "plgraph" / "pyg").glob("*.py"))) == 2
