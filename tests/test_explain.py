"""``predict.py explain=true``: per-atom contributions that sum to the prediction, with the input
file's atom numbers, and the contribution maps (plgraph.inference.explain)."""

from __future__ import annotations

import csv
from collections import defaultdict

import pytest
from conftest import FEP, missing_shared
from rdkit import Chem
from test_predict import run_predict

from plgraph.training.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow
SERIES = "jacs_set/tyk2"


def test_atom_contributions_sum_to_each_prediction_and_name_the_files_atoms(
        trained, tmp_path):
    _, run = trained
    if not (FEP / f"{SERIES}_ligands.sdf").is_file():
        missing_shared(FEP)
    # The file's hydrogens moved in front of the heavy atoms: heavy atom i of the graph is atom
    # i + (hydrogens) of the file, so an index that is not mapped back shows.
    ligands = tmp_path / "tyk2_hydrogens_first.sdf"
    with Chem.SDWriter(str(ligands)) as writer:
        for mol in Chem.SDMolSupplier(str(FEP / f"{SERIES}_ligands.sdf"), removeHs=False):
            order = sorted(range(mol.GetNumAtoms()),
                           key=lambda i: (mol.GetAtomWithIdx(i).GetAtomicNum() > 1, i))
            writer.write(Chem.RenumberAtoms(mol, order))
    checkpoints = [run / "checkpoints" / name for name in ("best.pt", "last.pt")]
    output = tmp_path / "tyk2.csv"
    result = run_predict(f"checkpoint={checkpoints[0]}", f"ensemble=[{checkpoints[1]}]",
                         f"protein={FEP / f'{SERIES}_protein.pdb'}", f"ligands={ligands}",
                         f"output={output}", "explain=true", "explain_top=4", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    predicted = {r["id"]: float(r["predicted_pk"]) for r in csv.DictReader(output.open())}
    atoms = defaultdict(list)
    for row in csv.DictReader((tmp_path / "tyk2_atoms.csv").open()):
        atoms[row["id"]].append(row)
    assert set(atoms) == set(predicted) and len(predicted) == 16
    # The ensemble's intercept: the members' mean target_mean (the same training here).
    intercept = sum(float(read_checkpoint(c)["model"]["target_mean"]) for c in checkpoints) / 2
    records = Chem.SDMolSupplier(str(ligands), removeHs=False)
    for index, (complex_id, rows) in enumerate(atoms.items()):
        total = sum(float(r["contribution_pk"]) for r in rows)
        rounding = 5e-5 * len(rows) + 1e-4  # both files round to 4 decimals
        assert total + intercept == pytest.approx(predicted[complex_id], abs=rounding)
        record = records[index]  # rows are in input order, the ligand's atoms in graph order
        heavy = [a.GetIdx() for a in record.GetAtoms() if a.GetAtomicNum() > 1]
        assert heavy[0] > 0  # hydrogens first
        assert sorted(int(r["atom_index"]) for r in rows) == heavy  # the file's numbers
        for row in rows:
            assert record.GetAtomWithIdx(int(row["atom_index"])).GetSymbol() == row["element"]
    maps = tmp_path / "tyk2_maps"
    assert len(list(maps.glob("*.png"))) == 16 + 1 and len(list(maps.glob("*.svg"))) == 16
    assert (maps / "top_4.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert next(maps.glob("*.svg")).read_text().lstrip().startswith("<?xml")
