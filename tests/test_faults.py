"""Faults a cluster user meets (issue 26), each met for real in processes of their own: what
the product leaves in TMPDIR, a cache-build worker killed as the out-of-memory killer kills it,
and a disk that fills while a checkpoint, the cache or the predictions are written (a real tmpfs
of a few MB, mounted where the tests run as root; skipped with the reason elsewhere)."""

from __future__ import annotations

import errno
import getpass
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FEP, MAIN_ARGS, REPO, copy_sample, main_command, missing_shared
from test_main_resume import assert_identical, final_parameters, wait_for
from test_stop import alive, assert_no_cache, pool_workers, product_processes

from plgraph.training.checkpoint import read_checkpoint

ONE_EPOCH = [*[o for o in MAIN_ARGS if not o.startswith("trainer.max_epochs")],
             "trainer.max_epochs=1"]
# torch creates its own compile cache in TMPDIR on import (torch._inductor's cache_dir():
# /tmp/torchinductor_<user>, or TORCHINDUCTOR_CACHE_DIR): one reused directory, not litter.
TORCH_CACHE = f"torchinductor_{getpass.getuser()}"


def run_with(command: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, **environment})
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def litter(tmp: Path) -> list[str]:
    """What is in ``tmp`` besides torch's own reused cache directory."""
    return sorted(p.name for p in tmp.iterdir() if p.name != TORCH_CACHE)


def generated_modules(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "plgraph" / "pyg").glob("*.py"))


@pytest.mark.slow
def test_a_training_and_a_prediction_leave_nothing_in_tmpdir(sixteen_prepared, tmp_path):
    tmp, cache = tmp_path / "tmp", tmp_path / "cache"
    tmp.mkdir()
    environment = {"TMPDIR": str(tmp), "XDG_CACHE_HOME": str(cache)}
    outputs = tmp_path / "outputs"
    run_with([sys.executable, str(REPO / "main.py"), f"data.root={sixteen_prepared}",
              f"output_root={outputs}", "run_name=tmp", *ONE_EPOCH,
              "trainer.loader_workers=1"], environment)
    assert litter(tmp) == []
    generated = generated_modules(cache)
    assert [name.split("-")[0] for name in generated] == [
        "plgraph.model.layers_ViSLayer_edge_updater", "plgraph.model.layers_ViSLayer_propagate"]

    run_with([sys.executable, str(REPO / "predict.py"),
              f"checkpoint={outputs / 'tmp' / 'checkpoints' / 'best.pt'}",
              f"root={sixteen_prepared}", f"output={tmp_path / 'predictions.csv'}"], environment)
    assert generated_modules(cache) == generated, "the second process did not reuse the files"
    assert litter(tmp) == []


@pytest.mark.slow  # a Python process of its own: this one may have built the layer already
def test_the_layer_propagates_with_pygs_generated_code_kept_in_the_cache_directory(tmp_path):
    code = ("import inspect; from plgraph.model.layers import ViSLayer; ViSLayer(2, 16, 5.0); "
            "print(ViSLayer.propagate.__module__, inspect.getsourcefile(ViSLayer.propagate), "
            "ViSLayer._orig_propagate is not ViSLayer.propagate)")
    result = run_with([sys.executable, "-c", code], {"XDG_CACHE_HOME": str(tmp_path)})
    module, source, replaced = result.stdout.split()
    assert module == "plgraph.model.layers_ViSLayer_propagate" and replaced == "True"
    assert Path(source).parent == tmp_path / "plgraph" / "pyg"


# --- a cache-build worker killed with SIGKILL -------------------------------------------------
def in_user_code(pid: int) -> bool:
    """Whether process ``pid``, once stopped, is computing (featurizing) rather than in a
    system call (a worker waiting for its next chunk, sending a result or reading a file)."""
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        time.sleep(0.001)
    return Path(f"/proc/{pid}/syscall").read_text().split()[0] == "-1"  # -1: in user space


def kill_while_featurizing(pid: int, deadline: float) -> None:
    """SIGKILL worker ``pid`` at an instant when it is featurizing a complex: stopped and looked
    at until it is caught in its own code, so that the test does not rest on luck."""
    while time.monotonic() < deadline:
        os.kill(pid, signal.SIGSTOP)
        if in_user_code(pid):
            os.kill(pid, signal.SIGKILL)
            return
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)
    pytest.fail(f"worker {pid} was never caught featurizing")


def fep_ids() -> set[str]:
    from plgraph.config import DataConfig, FeaturizeConfig
    from plgraph.data.layouts import read_inputs

    data = DataConfig(root=str(FEP), layout="series", workers=1)
    return {record.id for record in read_inputs(data, FeaturizeConfig()).records}


@pytest.mark.slow
def test_a_cache_build_worker_killed_with_sigkill_names_the_complexes_it_held(tmp_path):
    if not FEP.is_dir():
        missing_shared(FEP)
    processed = tmp_path / "processed"
    log = tmp_path / "build.log"
    command = [sys.executable, str(REPO / "main.py"), f"data.root={FEP}", "data.layout=series",
               f"data.processed_dir={processed}", "data.workers=2", "prepare_only=true",
               f"output_root={tmp_path / 'outputs'}"]
    with open(log, "w") as output:
        product = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    deadline = time.monotonic() + 300
    # Both workers featurizing: the first chunks are back (the progress bar counts them).
    while not re.search(r"\| *[1-9]\d*/\d+", log.read_text()):
        assert product.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "no chunk was ever featurized"
        time.sleep(0.1)
    workers = pool_workers(product.pid)
    children = product_processes(product.pid)
    kill_while_featurizing(workers[0], deadline)
    assert product.wait(timeout=120) != 0
    text = log.read_text()
    named = re.search(rf"pid {workers[0]} killed by SIGKILL while featurizing '([^']+)';", text)
    assert named, text
    assert named.group(1) in fep_ids(), text
    assert "nothing was cached" in text and "Traceback" not in text
    assert_no_cache(processed)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in children if alive(pid)], "a process outlived the build"


# --- a full disk --------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 64 MB tmpfs at ``tmp_path/disk``, unmounted after the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (a real full disk, not a mock)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=True)  # lazy: a failed test's process


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte with one file; remove it to free the space."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (2**20, 4096, 1):
            try:
                while os.write(descriptor, b"\0" * size):
                    pass
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
    finally:
        os.close(descriptor)
    return filler


def assert_full_disk_message(output: str, path: Path) -> None:
    assert re.search(rf"{re.escape(str(path))}\S*: No space left on device while writing it; "
                     r"the write needs (about|more than the) [\d.]+ MB", output), output
    assert "is free on that filesystem" in output and "Traceback" not in output, output


def staged_leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if ".tmp-" in p.name
                  or ".partial-" in p.name)


@pytest.mark.slow
def test_a_full_disk_while_saving_a_checkpoint_keeps_the_last_one_and_resumes_exactly(
        sixteen_prepared, small_disk, straight_run):
    command = main_command(sixteen_prepared, small_disk, "full")
    run = subprocess.Popen(command, cwd=REPO, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    checkpoints = small_disk / "full" / "checkpoints"
    wait_for(lambda: checkpoints.is_dir() and any(checkpoints.glob("*.pt")), run)
    run.send_signal(signal.SIGSTOP)
    try:
        saved = {p.name: p.read_bytes() for p in checkpoints.glob("*.pt")}
        filler = fill(small_disk)
    finally:
        run.send_signal(signal.SIGCONT)
    output = run.communicate(timeout=300)[0]
    assert run.returncode != 0, output
    assert_full_disk_message(output, small_disk / "full")
    assert {p.name: p.read_bytes() for p in checkpoints.glob("*.pt")} == saved
    for name in saved:
        read_checkpoint(checkpoints / name)
    assert staged_leftovers(small_disk) == []

    filler.unlink()
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "resuming from" in rerun.stdout + rerun.stderr
    straight = read_checkpoint(straight_run / "checkpoints" / "last.pt")["model"]
    assert_identical(final_parameters(small_disk, "full"), straight)


@pytest.mark.slow
def test_a_full_disk_while_writing_predictions_keeps_the_previous_csv(trained, small_disk):
    root, run_dir = trained
    output = small_disk / "predictions.csv"
    command = [sys.executable, str(REPO / "predict.py"),
               f"checkpoint={run_dir / 'checkpoints' / 'best.pt'}", f"root={root}",
               f"output={output}"]
    previous = assert_a_full_disk_keeps_the_previous_file(command, output, small_disk)
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and output.read_bytes() == previous


def assert_a_full_disk_keeps_the_previous_file(command: list[str], output: Path,
                                               disk: Path) -> bytes:
    """Run ``command`` once to write ``output`` on ``disk``, again with ``disk`` full: the run
    fails naming ``output``, which is untouched, and nothing staged is left. The disk is freed
    at the end; returns the first run's bytes."""
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    previous = output.read_bytes()
    filler = fill(disk)
    full = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert full.returncode != 0
    assert_full_disk_message(full.stdout + full.stderr, output)
    assert output.read_bytes() == previous and staged_leftovers(disk) == []
    filler.unlink()
    return previous


@pytest.mark.slow
def test_a_full_disk_while_building_the_cache_leaves_no_cache_and_the_next_run_builds_it(
        tmp_path, small_disk):
    root = copy_sample(tmp_path / "four", ("1pum", "2w9r", "1h1d", "2ohk"))
    processed = small_disk / "processed"
    command = [sys.executable, str(REPO / "main.py"), f"data.root={root}",
               f"data.processed_dir={processed}", "data.workers=1", "prepare_only=true",
               f"output_root={tmp_path / 'outputs'}", "split.train=0.5", "split.val=0.25",
               "split.test=0.25"]
    filler = fill(small_disk)
    # A few pages left: the lock file's line fits, the shards do not.
    os.truncate(filler, filler.stat().st_size - 4 * 4096)
    full = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert full.returncode != 0
    assert_full_disk_message(full.stdout + full.stderr, processed)
    assert_no_cache(processed)
    filler.unlink()
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (processed / "meta.json").is_file()


@pytest.mark.slow
def test_a_disk_too_full_for_the_lock_file_stops_before_any_work(tmp_path, small_disk):
    root = copy_sample(tmp_path / "two", ("1pum", "2w9r"))
    processed = small_disk / "processed"
    filler = fill(small_disk)
    full = subprocess.run(
        [sys.executable, str(REPO / "main.py"), f"data.root={root}",
         f"data.processed_dir={processed}", "prepare_only=true",
         f"output_root={tmp_path / 'outputs'}"], cwd=REPO, capture_output=True, text=True,
        timeout=600)
    output = full.stdout + full.stderr
    assert full.returncode != 0
    assert re.search(rf"{re.escape(str(small_disk))}\S*\.lock: No space left on device while "
                     r"writing the lock file of", output), output
    assert "Traceback" not in output and "featurizing" not in output, output
    filler.unlink()


@pytest.mark.slow
def test_a_full_disk_while_writing_poses_keeps_the_previous_sdf(trained, tmp_path, small_disk):
    _, run = trained
    series = REPO / "tests" / "data" / "uni-fep-mini" / "WaterSet|Brd4(1)-ASH106"
    lines = (series / "result_dG.csv").read_text().splitlines()[1:3]
    smiles = [line.split(",")[0] for line in lines]
    library = tmp_path / "library.smi"
    library.write_text("".join(f"{s} ligand{i}\n" for i, s in enumerate(smiles)))
    poses = small_disk / "posed.sdf"
    command = [sys.executable, str(REPO / "predict.py"),
               f"checkpoint={run / 'checkpoints' / 'best.pt'}",
               f"protein='{series / 'protein.pdb'}'",
               f"reference='{series / 'ref_ligand.sdf'}'", f"ligands={library}",
               f"output={tmp_path / 'predictions.csv'}", f"poses={poses}"]
    assert_a_full_disk_keeps_the_previous_file(command, poses, small_disk)
