"""Docking outputs for predict.py: several poses of a ligand (consecutive SDF records with one
name, as Vina, GNINA, smina and Glide write them) scored per pose and aggregated per ligand."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import FEP, missing_shared
from rdkit import Chem
from rdkit.Geometry import Point3D
from test_predict import run_predict

pytestmark = pytest.mark.slow
SERIES = "jacs_set/tyk2"


def rotated(mol: Chem.Mol, degrees: float) -> Chem.Mol:
    """The pose turned about the z axis through its centroid: another pose in the pocket."""
    out = Chem.Mol(mol)
    pos = out.GetConformer().GetPositions()
    centre = pos.mean(axis=0)
    angle = np.radians(degrees)
    turn = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                     [0, 0, 1]])
    for index, xyz in enumerate((pos - centre) @ turn.T + centre):
        out.GetConformer().SetAtomPosition(index, Point3D(*xyz))
    return out


@pytest.fixture
def docked(tmp_path):
    """A: two poses; B: one; C: two, the second with a NaN coordinate (it fails alone)."""
    if not (FEP / f"{SERIES}_ligands.sdf").is_file():
        missing_shared(FEP)
    given = list(Chem.SDMolSupplier(str(FEP / f"{SERIES}_ligands.sdf"), removeHs=False))[:3]
    path = tmp_path / "docked.sdf"
    with Chem.SDWriter(str(path)) as writer:
        for name, mol in (("A", given[0]), ("A", rotated(given[0], 25)), ("B", given[1]),
                          ("C", given[2]), ("C", rotated(given[2], 40))):
            mol.SetProp("_Name", name)
            writer.write(mol)
    text = path.read_text().split("$$$$\n")
    lines = text[4].splitlines()
    lines[4] = "       nan" + lines[4][10:]  # the second pose of C: its first atom's x
    text[4] = "\n".join(lines) + "\n"
    path.write_text("$$$$\n".join(text))
    return path


@pytest.mark.parametrize("how", ["mean", "best", "first"])
def test_each_pose_is_scored_and_each_ligand_gets_one_row(
        trained, docked, tmp_path, how):
    _, run = trained
    output = tmp_path / f"{how}.csv"
    result = run_predict(f"checkpoint={run / 'checkpoints' / 'best.pt'}",
                         f"protein={FEP / f'{SERIES}_protein.pdb'}", f"ligands={docked}",
                         f"output={output}", f"pose_aggregation={how}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr  # every ligand predicted
    ligands = list(csv.DictReader(output.open()))
    poses = list(csv.DictReader((tmp_path / f"{how}_poses.csv").open()))
    assert [r["ligand_name"] for r in ligands] == ["A", "B", "C"]
    assert [(r["ligand_name"], r["pose_index"], r["ligand_index"]) for r in poses] == [
        ("A", "0", "0"), ("A", "1", "1"), ("B", "0", "2"), ("C", "0", "3"), ("C", "1", "4")]
    assert [r["status"] for r in poses][-1] == "failed"  # every input record accounted for
    a = [float(r["predicted_pk"]) for r in poses[:2]]
    assert a[0] != a[1]  # the two poses are scored apart
    expected = {"mean": np.mean(a), "best": max(a), "first": a[0]}[how]
    assert float(ligands[0]["predicted_pk"]) == pytest.approx(expected, abs=1e-4)
    assert ligands[2]["predicted_pk"] == poses[3]["predicted_pk"]  # C: its one good pose


def test_single_pose_files_write_no_pose_table(trained, tmp_path):
    _, run = trained
    output = tmp_path / "tyk2.csv"
    result = run_predict(f"checkpoint={run / 'checkpoints' / 'best.pt'}",
                         f"protein={FEP / f'{SERIES}_protein.pdb'}",
                         f"ligands={FEP / f'{SERIES}_ligands.sdf'}", f"output={output}",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(list(csv.DictReader(output.open()))) == 16
    assert not (tmp_path / "tyk2_poses.csv").exists()


def test_series_mode_takes_each_docked_ligand_once_at_its_aggregated_value(
        trained, docked, tmp_path):
    """Docking output and measured= together: the poses are aggregated first, so a measured
    ligand with two poses is matched once, at its mean over the poses, and is not a query."""
    _, run = trained
    output = tmp_path / "ranked.csv"
    measured = tmp_path / "measured.csv"
    measured.write_text("id,pK\nA,7.10\nB,6.20\n")
    result = run_predict(f"checkpoint={run / 'checkpoints' / 'best.pt'}",
                         f"protein={FEP / f'{SERIES}_protein.pdb'}", f"ligands={docked}",
                         f"output={output}", f"measured={measured}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "already matched" not in result.stdout + result.stderr
    assert "series mode: 2 measured ligands" in result.stdout + result.stderr
    ligands = list(csv.DictReader(output.open()))
    poses = list(csv.DictReader((tmp_path / "ranked_poses.csv").open()))
    assert [r["ligand_name"] for r in ligands] == ["A", "B", "C"]
    assert len(poses) == 5  # every pose still scored on its own
    a, b, c = ligands
    assert [a["status"], b["status"]] == ["measured", "measured"]
    assert [float(a["measured_pk"]), float(b["measured_pk"])] == [7.10, 6.20]
    assert a["predicted_pk"] == "" and b["predicted_pk"] == ""
    pose_values = [float(r["predicted_pk"]) for r in poses[:2]]
    assert float(a["model_pk"]) == pytest.approx(np.mean(pose_values), abs=1e-4)
    assert c["status"] != "measured"
    assert float(c["model_pk"]) == pytest.approx(float(poses[3]["predicted_pk"]), abs=1e-4)
    assert c["nearest_measured"] in {"A", "B"}
    assert 0 < float(c["predicted_pk_std"]) < 3
