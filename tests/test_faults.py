"""Faults a cluster user meets (issue 26), each met for real in processes of their own: what
the product leaves in TMPDIR."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MAIN_ARGS, REPO

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
