"""bench/gpu_check.sh, the one command a lent GPU runs, must not rot while no GPU is lent: its dry
run drives every benchmark it names at tiny sizes on CPU and writes the full report."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import FEP, REPO

SECTIONS = (
    "## Machine",
    "## 1. Mixed precision: bf16 and fp16 training, interrupted and resumed, against fp32",
    "## 2. Training throughput against PyG ViSNet, small model",
    "## 3. Training throughput against PyG ViSNet, large model",
    "## 4. Screening throughput (predict)",
    "## 5. The loader against the training step, 0, 2 and 4 workers",
    "## 6. Peak GPU memory",
    "## Summary",
)


def section(report: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of its level."""
    body = report.split(heading + "\n", 1)[1]
    return body.split("\n## ", 1)[0]


@pytest.mark.slow
def test_the_dry_run_drives_every_check_and_writes_every_section(tmp_path):
    environment = {**os.environ, "PYTHON": sys.executable, "PLGRAPH_FEP": str(FEP)}
    environment.pop("OUT", None)
    result = subprocess.run([str(REPO / "bench" / "gpu_check.sh"), "--dry-run", "--out",
                             str(tmp_path)], env=environment, capture_output=True, text=True,
                            timeout=1200)
    report = (tmp_path / "report.md").read_text()
    assert result.returncode == 0, report
    for heading in SECTIONS:
        assert heading in report, heading
    assert "mode: dry run (--dry-run)" in report
    fep = FEP.is_dir()
    expected = {"1.": "ok", "2.": "ok", "3.": "skipped", "4.": "ok" if fep else "skipped",
                "5.": "ok" if fep else "skipped"}
    for number, status in expected.items():
        heading = next(h for h in SECTIONS if h.startswith(f"## {number}"))
        assert section(report, heading).split("\n\n")[1].startswith(f"**{status}**"), heading
    precision = section(report, SECTIONS[1])
    for name in ("fp32", "bf16", "fp16"):
        assert f"\n{name} " in precision, name
    assert "resume bit-identical for every precision: yes" in precision
    assert "speed ratio plgraph / PyG ViSNet" in section(report, SECTIONS[2])
    if fep:
        assert "screen lig/s" in section(report, SECTIONS[4])
        assert "4 loader workers: loader / model" in section(report, SECTIONS[5])
    logs = {p.name for p in tmp_path.iterdir()}
    assert {"report.md", "precision.log", "train_small.log"} <= logs


def test_an_unknown_argument_is_refused_naming_the_valid_ones(tmp_path):
    result = subprocess.run([str(REPO / "bench" / "gpu_check.sh"), "--fast"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown argument '--fast' (--dry-run, --out DIR)" in result.stderr
