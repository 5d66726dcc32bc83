"""Record-level numbers and identities: ΔG → pK, and the input fingerprint behind cache reuse."""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import SAMPLE, missing_shared

from plgraph.data.records import ComplexRecord, ReadResult, dg_to_pk


def test_dg_of_minus_12_kcal_per_mol_is_pk_8_796():
    assert dg_to_pk(-12.0) == pytest.approx(8.796, abs=5e-4)
    assert dg_to_pk(-1.364) == pytest.approx(1.0, abs=1e-3)  # RT ln10 at 298.15 K


def test_an_edit_in_place_that_keeps_the_size_changes_the_fingerprint(tmp_path):
    pocket = tmp_path / "1h1d_pocket.pdb"
    shutil.copy2(SAMPLE / "1h1d" / "1h1d_pocket.pdb", pocket)
    pocket.chmod(0o644)
    inputs = ReadResult([ComplexRecord("1h1d", pocket, (SAMPLE / "1h1d" / "1h1d_ligand.sdf",))])
    before = inputs.fingerprint()
    text = pocket.read_text()
    pocket.write_text(text.replace(" 1.00 ", " 0.50 ", 1))  # an occupancy: same size
    stat = pocket.stat()
    os.utime(pocket, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert pocket.stat().st_size == len(text.encode())
    assert inputs.fingerprint() != before


def test_missing_shared_data_fails_under_ci_and_skips_elsewhere(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must provide"):
        missing_shared(tmp_path / "absent")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        missing_shared(tmp_path / "absent")
