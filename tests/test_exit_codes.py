"""Exit codes a script can trust: 2 for a usage or input error, named, without a traceback, and
before any work (no model loaded, nothing written)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SAMPLE

pytestmark = pytest.mark.slow  # each starts Python with torch: seconds

LIGANDS = f"ligands={SAMPLE / '1h1d' / '1h1d_ligand.sdf'}"
PROTEIN = f"protein={SAMPLE / '1h1d' / '1h1d_pocket.pdb'}"


def run(script: str, *arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *arguments], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_an_unwritable_output_exits_2_naming_it_before_any_work(tmp_path):
    """No checkpoint exists under tmp_path: reaching the model would be another error."""
    for output, said in ((tmp_path, "is a directory"),
                         (tmp_path / "missing" / "p.csv", "does not exist; create it first")):
        result = run("predict.py", PROTEIN, LIGANDS, f"output={output}", cwd=tmp_path)
        log = result.stdout + result.stderr
        assert result.returncode == 2, log
        assert f"output={output}" in log and said in log and "Traceback" not in log
        assert "no trained run" not in log


def test_a_value_hydra_cannot_parse_exits_2_with_how_to_quote_it(tmp_path):
    result = run("predict.py", "protein=/data/my file (1).pdb", LIGANDS, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "cannot read the argument 'protein=/data/my file (1).pdb'" in result.stderr
    assert """'protein="/data/my file (1).pdb"'""" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_wrong_type_on_main_py_exits_2_with_the_rule(tmp_path):
    result = run("main.py", "data.workers=many", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Value 'many' of type 'str' could not be converted to Integer" in result.stderr
    assert "data.workers" in result.stderr and "Traceback" not in result.stderr
