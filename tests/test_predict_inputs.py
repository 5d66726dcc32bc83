"""predict.py accounts for every input record with the training featurizer."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from plgraph.config import FeaturizeConfig
from plgraph.data.build import featurize_record
from plgraph.inference import featurize_all, read_protein_with_ligands


@pytest.fixture
def brd4_with_a_broken_record(fep_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    protein = tmp_path / "wagner_brd4_protein.pdb"
    shutil.copy(fep_root / "bayer_macrocycles" / protein.name, protein)
    records = (fep_root / "bayer_macrocycles" / "wagner_brd4_ligands.sdf").read_text()
    blocks = records.split("$$$$\n")
    lines = blocks[1].splitlines()
    lines[4] = "       nan" + lines[4][10:]  # the first atom's x coordinate
    blocks[1] = "\n".join(lines) + "\n"
    ligands = tmp_path / "wagner_brd4_ligands.sdf"
    ligands.write_text("$$$$\n".join(blocks))
    return protein, ligands


def test_prediction_inputs_match_the_training_featurizer(brd4_with_a_broken_record):
    protein, ligands = brd4_with_a_broken_record
    config = FeaturizeConfig()
    inputs = read_protein_with_ligands(protein, ligands)
    rows = list(featurize_all(inputs, config))
    assert [r.ligand_index for r in rows] == [0, 1, 2]
    assert rows[1].graph is None and "coordinates on line 133" in rows[1].error
    direct = featurize_record(inputs.records[0], config)
    assert rows[0].graph["ligand"].x.equal(direct["ligand"].x)
    assert rows[0].graph["protein", "contact", "protein"].edge_index.equal(
        direct["protein", "contact", "protein"].edge_index)


@pytest.mark.slow
def test_predict_py_writes_one_row_per_record_and_fails_when_one_failed(
        brd4_with_a_broken_record, tmp_path):
    protein, ligands = brd4_with_a_broken_record
    output = tmp_path / "status.csv"
    result = subprocess.run([sys.executable, str(REPO / "predict.py"), f"protein={protein}",
                             f"ligands={ligands}", f"output={output}"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    rows = list(csv.DictReader(output.open()))
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert "record 1" in rows[1]["error"] and "coordinates on line 133" in rows[1]["error"]
