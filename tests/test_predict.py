"""predict.py: the training featurizer, the model rebuilt from its checkpoint, every record."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, SAMPLE_IDS, TINY_MODEL, data_config

from plgraph.config import (
    FeaturizeConfig,
    SplitConfig,
)
from plgraph.data import prepare_data
from plgraph.data.featurizer import featurize_record
from plgraph.data.libraries import read_sdf_records
from plgraph.errors import PlgraphError
from plgraph.featurize import DATA_PROCESSING_VERSION
from plgraph.inference.inputs import featurize_all
from plgraph.inference.predictor import Predictor
from plgraph.training.checkpoint import CheckpointError, read_checkpoint

IDS = SAMPLE_IDS[:20]
TINY = TINY_MODEL


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
    inputs = read_sdf_records(ligands, protein, ligands.stem, None, "pk", require_labels=False)
    rows = list(featurize_all(inputs, config))
    assert [r.ligand_index for r in rows] == [0, 1, 2]
    assert rows[1].graph is None and "coordinates on line 133" in rows[1].error
    direct = featurize_record(inputs.records[0], config)
    stores = direct.node_types + direct.edge_types
    assert stores == rows[0].graph.node_types + rows[0].graph.edge_types
    tensors = [(store, attr) for store in stores for attr in direct[store]]
    assert len(tensors) == 10  # x and pos of 2 node types, 6 edge tensors: every one compared
    for store, attr in tensors:
        assert rows[0].graph[store][attr].equal(direct[store][attr]), (store, attr)


def run_predict(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "predict.py"), *arguments], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_predict_py_gives_the_trainers_test_predictions(trained, tmp_path):
    root, run = trained
    output = tmp_path / "predictions.csv"
    result = run_predict(f"checkpoint={run / 'checkpoints' / 'best.pt'}", f"root={root}",
                         f"labels={root / 'labels.csv'}", f"output={output}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    predicted = {r["id"]: r for r in csv.DictReader(output.open())}
    assert len(predicted) == 20 and {r["status"] for r in predicted.values()} == {"ok"}
    trainer_rows = list(csv.DictReader((run / "test_predictions.csv").open()))
    assert len(trainer_rows) == 2
    for row in trainer_rows:
        assert float(predicted[row["id"]]["predicted_pk"]) == pytest.approx(
            float(row["predicted_pk"]), abs=2e-4)
        assert float(predicted[row["id"]]["measured_pk"]) == pytest.approx(
            float(row["measured_pk"]), abs=1e-4)
    assert "RMSE" in result.stdout + result.stderr and output.with_suffix(".scatter.png").exists()
    # The labels' summary ranks them by Vina too (20 are under docking_baselines=auto's 50);
    # those Vina refuses (boron, mol2 bonds Meeko cannot kekulize) are named and left out.
    scored = re.search(r"docking baselines on the (\d+) of them Vina scored: Vina in place -?\d",
                       result.stdout + result.stderr)
    assert scored and 15 <= int(scored.group(1)) <= 20, result.stdout + result.stderr


def test_a_checkpoint_of_another_processing_version_is_refused_naming_both(trained, tmp_path):
    _, run = trained
    state = read_checkpoint(run / "checkpoints" / "best.pt")
    state["data_processing_version"] = DATA_PROCESSING_VERSION + 1
    old = tmp_path / "other_version.pt"
    torch.save(state, old)
    expected = (rf"DATA_PROCESSING_VERSION {DATA_PROCESSING_VERSION + 1}, this code featurizes "
                rf"with version {DATA_PROCESSING_VERSION}")
    with pytest.raises(CheckpointError, match=expected):
        Predictor.load([old], torch.device("cpu"))


def test_an_ensemble_predicts_the_mean_and_spread_of_its_members(trained, tmp_path):
    root, run = trained
    paths = [run / "checkpoints" / "best.pt", tmp_path / "scaled.pt"]  # not in the shared run
    state = read_checkpoint(run / "checkpoints" / "last.pt")
    state["model"] = {k: v * 1.01 if v.is_floating_point() and "target" not in k else v
                      for k, v in state["model"].items()}
    torch.save(state, paths[1])
    device = torch.device("cpu")
    graphs = [g for g in (r.graph for r in featurize_all(
        read_sdf_records(root / IDS[0] / f"{IDS[0]}_ligand.sdf",
                         root / IDS[0] / f"{IDS[0]}_pocket.pdb", IDS[0], None, "pk",
                         require_labels=False), FeaturizeConfig()))
              if g is not None]
    singles = [Predictor.load([p], device).predict(graphs)[0] for p in paths]
    mean, spread = Predictor.load(paths, device).predict(graphs)
    assert mean == pytest.approx((singles[0] + singles[1]) / 2, abs=1e-5)
    assert spread == pytest.approx(abs(singles[0] - singles[1]) / 2, abs=1e-5)
    assert (spread > 0).all()


@pytest.mark.slow
def test_every_sdf_record_gets_a_row_and_a_failure_sets_the_exit_code(
        trained, brd4_with_a_broken_record, tmp_path):
    _, run = trained
    protein, ligands = brd4_with_a_broken_record
    output = tmp_path / "preds.csv"
    result = run_predict(f"checkpoint={run / 'checkpoints' / 'best.pt'}", f"protein={protein}",
                         f"ligands={ligands}", "label_property=r_exp_dg", f"output={output}",
                         cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    rows = list(csv.DictReader(output.open()))
    assert [r["ligand_index"] for r in rows] == ["0", "1", "2"]
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert rows[1]["predicted_pk"] == "" and "coordinates on line 133" in rows[1]["error"]
    assert rows[0]["measured_pk"] and float(rows[0]["predicted_pk"])


def test_without_a_checkpoint_the_latest_runs_best_is_used_or_the_way_is_named(tmp_path):
    from plgraph.inference.predictor import latest_best_checkpoint

    with pytest.raises(PlgraphError, match="no trained run with checkpoints/best.pt"):
        latest_best_checkpoint(tmp_path)
    for age, name in ((3600, "old"), (0, "new")):
        best = tmp_path / name / "checkpoints" / "best.pt"
        best.parent.mkdir(parents=True)
        best.touch()
        os.utime(best, (time.time() - age, time.time() - age))
    assert latest_best_checkpoint(tmp_path).parent.parent.name == "new"


@pytest.mark.slow
def test_a_smiles_library_is_posed_as_in_training_one_row_per_line(trained, tmp_path):
    """protein= reference= ligands=library.smi: every line gets its row, the bad one with the
    reason; the prediction equals the model's on the training featurizer's graph of the same
    SMILES (reference layout), and poses= holds each posed ligand with its prediction."""
    from rdkit import Chem

    from plgraph.data.layouts import read_inputs

    _, run = trained
    series = REPO / "tests" / "data" / "uni-fep-mini" / "WaterSet|Brd4(1)-ASH106"
    records = read_inputs(data_config(series.parent, layout="reference"),
                          FeaturizeConfig()).records
    brd4 = [r for r in records if r.group == series.name][:3]
    library = tmp_path / "library.smi"
    library.write_text("# a screen\n" + "".join(
        f"{r.smiles} {r.ligand_name.replace(' ', '_')}\n" for r in brd4[:2])
        + "C1CC broken\n" + f"{brd4[2].smiles}\n")
    output, poses = tmp_path / "preds.csv", tmp_path / "posed.sdf"
    checkpoint = run / "checkpoints" / "best.pt"
    # Quoted: Hydra's override grammar does not take '(' or '|' in a bare value.
    result = run_predict(f"checkpoint={checkpoint}", f"protein='{series / 'protein.pdb'}'",
                         f"reference='{series / 'ref_ligand.sdf'}'", f"ligands={library}",
                         f"output={output}", f"poses={poses}", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    rows = list(csv.DictReader(output.open()))
    assert [r["ligand_name"] for r in rows] == ["cmpd_4_(Crotyl)", "cmpd_6_(ethyl)", "broken",
                                                "line5"]
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "ok"]
    assert "cannot parse the SMILES 'C1CC'" in rows[2]["error"] and "library.smi:4" in rows[2][
        "error"]
    predictor = Predictor.load([checkpoint], torch.device("cpu"))
    expected, _ = predictor.predict([featurize_record(r, predictor.featurize) for r in brd4])
    assert [float(rows[i]["predicted_pk"]) for i in (0, 1, 3)] == pytest.approx(
        [round(float(v), 4) for v in expected], abs=1e-4)
    posed = [m for m in Chem.SDMolSupplier(str(poses), removeHs=False)]
    assert [m.GetProp("_Name") for m in posed] == ["cmpd_4_(Crotyl)", "cmpd_6_(ethyl)", "line5"]
    assert float(posed[0].GetProp("predicted_pk")) == pytest.approx(float(rows[0]["predicted_pk"]))
    assert posed[0].GetConformer().Is3D() and posed[0].GetNumAtoms() > posed[0].GetNumHeavyAtoms()


def test_a_smiles_library_without_a_reference_is_refused_with_the_way(tmp_path):
    from plgraph.config import PredictConfig

    with pytest.raises(ValueError, match="SMILES library: give reference=REF.sdf"):
        PredictConfig(protein="p.pdb", ligands="lib.smi")


@pytest.mark.slow
def test_rows_do_not_depend_on_the_chunk_size_and_an_overlapping_pose_is_out_of_domain(
        trained, tmp_path):
    """Two records of one ligand, the second moved onto a protein atom: chunk_size=1 and the
    default write the same bytes; the overlapping pose is predicted but marked out_of_domain
    with the clash, and the checkpoint holds the training range of ligand sizes."""
    from rdkit import Chem

    root, run = trained
    checkpoint = run / "checkpoints" / "best.pt"
    protein = root / "1h1d" / "1h1d_pocket.pdb"
    ligand = Chem.MolFromMolFile(str(root / "1h1d" / "1h1d_ligand.sdf"), removeHs=False)
    assert ligand is not None
    moved = Chem.Mol(ligand)
    conformer = moved.GetConformer()
    atom = next(line for line in protein.read_text().splitlines() if line.startswith("ATOM"))
    target = [float(atom[30:38]), float(atom[38:46]), float(atom[46:54])]
    shift = [t - c for t, c in zip(target, conformer.GetAtomPosition(0), strict=True)]
    for i in range(moved.GetNumAtoms()):
        p = conformer.GetAtomPosition(i)
        conformer.SetAtomPosition(i, (p.x + shift[0], p.y + shift[1], p.z + shift[2]))
    moved.SetProp("_Name", "1h1d moved")  # another name: the same one would make it a pose
    ligands = tmp_path / "two.sdf"
    with Chem.SDWriter(str(ligands)) as writer:
        writer.write(ligand)
        writer.write(moved)
    outputs = []
    for size in (1, 512):
        output = tmp_path / f"chunk{size}.csv"
        result = run_predict(f"checkpoint={checkpoint}", f"protein={protein}",
                             f"ligands={ligands}", f"output={output}", f"chunk_size={size}",
                             cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs.append(output.read_bytes())
    assert outputs[0] == outputs[1]
    rows = list(csv.DictReader((tmp_path / "chunk1.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "out_of_domain"]
    assert rows[0]["warnings"] == "" and rows[1]["warnings"].startswith("clash:")
    prepared = prepare_data(data_config(root), FeaturizeConfig(), SplitConfig())
    sizes = [graph["ligand"].x.shape[0] for graph in prepared.part("train")]
    assert read_checkpoint(checkpoint)["ligand_heavy_atoms"] == [min(sizes), max(sizes)]
