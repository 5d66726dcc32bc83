"""predict.py measured=: series mode on the shipped MMP-13 series (data/series/mmp13, real
Uni-FEP data): the measured file's rules, matching by id and by structure, measured ligands from
outside the library, the output columns, k = 0 and 1, and suggestions."""

from __future__ import annotations

import csv
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from scipy import stats

from plgraph.data.records import KCAL_PER_PK
from plgraph.errors import InputError
from plgraph.inference.measured import read_measured, structure_key
from plgraph.inference.series import DEFAULT_STD, count_fingerprints, gp_alone

SERIES = REPO / "data" / "series" / "mmp13"


def series_rows() -> list[dict]:
    with open(SERIES / "result_dG.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def pk(row: dict) -> float:
    return -float(row["exp_dG (kcal/mol)"]) / 1.3637


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- the measured file ----------------------------------------------------------------------
def test_the_shipped_measured_file_reads_as_eight_pk_values():
    measured = read_measured(SERIES / "measured.csv")
    assert len(measured) == 8 and all(5 < m.pk < 11 for m in measured)
    assert measured[0].where == f"{SERIES / 'measured.csv'}:2"


@pytest.mark.parametrize(("text", "rule"), [
    ("id,pK,assay\na,7,x\n", r"measured.csv:1: unknown column\(s\) \['assay'\]"),
    ("pK\n7\n", r"measured.csv:1: no id, name or smiles column"),
    ("id,value\na,7\n", r"measured.csv:1: no pK column, nor value and unit columns"),
    ("id,pK\na,7\nb,seven\n", r"measured.csv:3: pK 'seven' is not a finite number"),
    ("id,pK\na,17.5\n", r"measured.csv:2: pK 17.50 is outside -2..16"),
    ("id,value,unit\na,5,mg/l\n", r"measured.csv:2: unit 'mg/l' is not one of pK, kcal/mol"),
    ("id,value,unit\na,-5,nM\n", r"measured.csv:2: a concentration must be > 0"),
    ("id,pK\na,7,8\n", r"measured.csv:2: expected 2 fields, got 3"),
])
def test_a_measured_file_breaking_a_rule_is_refused_naming_file_line_and_rule(tmp_path, text,
                                                                               rule):
    with pytest.raises(InputError, match=rule):
        read_measured(write(tmp_path / "measured.csv", text))


def test_values_with_units_become_pk_and_replicates_are_averaged(tmp_path, caplog):
    path = write(tmp_path / "measured.csv", f"name,value,unit\na,10,nM\nb,{-7 * KCAL_PER_PK},"
                                            "kcal/mol\na,1,uM\nc,7.5,pK\n")
    measured = {m.name: m for m in read_measured(path)}
    assert measured["a"].pk == pytest.approx(7.0) and measured["a"].replicates == 2
    assert measured["b"].pk == pytest.approx(7.0)
    assert measured["c"].pk == 7.5
    assert "a measured 2 times" in caplog.text and "averaged to 7.00" in caplog.text


def test_the_same_ligand_drawn_two_ways_has_one_structure_key():
    from rdkit import Chem

    smiles = series_rows()[0]["ligand_smiles"]  # explicit hydrogens, a charged amine
    plain = Chem.MolToSmiles(Chem.RemoveHs(Chem.MolFromSmiles(smiles)))
    neutral = plain.replace("[N@H+]", "N")  # the amine uncharged, its stereo tag gone
    assert neutral != plain
    keys = {structure_key(Chem.MolFromSmiles(s)) for s in (smiles, plain, neutral)}
    assert len(keys) == 1 and None not in keys


def test_an_sdf_needs_the_property_that_holds_the_value(tmp_path):
    with pytest.raises(InputError, match="is an SDF: name the property that holds the value"):
        read_measured(SERIES / "ref_ligand.sdf")


# --- predict.py -------------------------------------------------------------------------------
def run_predict(tmp_path: Path, checkpoint: Path, *arguments: str) -> tuple[
        subprocess.CompletedProcess, list[dict]]:
    output = tmp_path / "ranked.csv"
    result = subprocess.run(
        [sys.executable, str(REPO / "predict.py"), f"checkpoint={checkpoint}",
         f"protein={SERIES / 'protein.pdb'}", f"reference={SERIES / 'ref_ligand.sdf'}",
         f"output={output}", *arguments], cwd=tmp_path, capture_output=True, text=True,
        timeout=600)
    rows = list(csv.DictReader(output.read_text().splitlines())) if output.exists() else []
    return result, rows


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """The first 12 ligands of the series: a library that predicts in seconds."""
    path = tmp_path_factory.mktemp("library") / "library.csv"
    lines = (SERIES / "library.csv").read_text().splitlines()
    path.write_text("\n".join(lines[:13]) + "\n")
    return path


@pytest.mark.slow
def test_series_mode_adjusts_the_predictions_to_the_measured_ligands(trained, library,
                                                                      tmp_path):
    _, run = trained
    rows = series_rows()
    outside = rows[20]  # not in the 12-ligand library: posed on the reference from its SMILES
    measured = write(tmp_path / "measured.csv", "id,smiles,pK\n" + "".join(
        f"{r['ligand_name']},,{pk(r):.2f}\n" for r in rows[:3])
        + f",{rows[3]['ligand_smiles']},{pk(rows[3]):.2f}\n"  # matched by structure
        + f"{outside['ligand_name']},{outside['ligand_smiles']},{pk(outside):.2f}\n")
    result, out = run_predict(tmp_path, run / "checkpoints" / "best.pt", f"ligands={library}",
                              f"measured={measured}", "suggest=3", "series_method=blend")
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(out[0])[-4:] == ["model_pk", "nearest_measured", "nearest_similarity",
                                 "suggest_rank"]
    by_name = {row["ligand_name"]: row for row in out}
    assert len(out) == 13  # the 12 library rows and the one from outside, at the end
    for r in [*rows[:4], outside]:
        row = by_name[r["ligand_name"]]
        assert row["status"] == "measured" and row["predicted_pk"] == ""
        assert row["predicted_pk_low95"] == row["predicted_pk_high95"] == ""
        assert float(row["measured_pk"]) == pytest.approx(pk(r), abs=0.01)
        assert math.isfinite(float(row["model_pk"]))
    assert out[-1]["id"] == f"measured/{outside['ligand_name']}"
    queries = [row for row in out if row["status"] != "measured"]
    assert len(queries) == 8
    measured_names = {r["ligand_name"] for r in [*rows[:4], outside]}
    for row in queries:
        assert 0 < float(row["predicted_pk_std"]) < 3
        # The Student-t's central intervals: the 68 % one inside +-1 std, the 95 % about +-2.
        value, std = float(row["predicted_pk"]), float(row["predicted_pk_std"])
        low68, high68, low95, high95 = (float(row[f"predicted_pk_{side}{level}"])
                                        for level in (68, 95) for side in ("low", "high"))
        assert low95 < low68 < value < high68 < high95
        assert high68 - value < 0.85 * std and high95 - value == pytest.approx(2 * std, rel=0.03)
        assert row["nearest_measured"] in measured_names
        assert 0 < float(row["nearest_similarity"]) <= 1
    assert sorted(int(row["suggest_rank"]) for row in queries if row["suggest_rank"]) == [1, 2,
                                                                                         3]
    output = result.stdout + result.stderr
    assert "series mode: 5 measured ligands; method blend" in output
    assert "predicted_pk_std is the std of a Student-t with 4 degrees of freedom" in output
    # Whether the model shaped the ranking is said, one way or the other.
    assert (("the measured ligands do not support the model here" in output)
            != ("the measured ligands support the model; it shapes the ranking" in output))
    assert "suggest=3 by upper confidence bound" in output
    # The summary ranks the measured ligands by the model, their size and Vina's scores.
    known = [row for row in out if row["status"] == "measured"]
    model_rho = stats.spearmanr([float(r["model_pk"]) for r in known],
                                [float(r["measured_pk"]) for r in known])[0]
    assert (f"ranking the 5 measured ligands (Spearman ρ against the measured pK): the model "
            f"{model_rho:.3f}, the heavy-atom count") in output
    assert re.search(r"docking baselines on the [2-5] of them Vina scored: Vina in place "
                     r"-?\d\.\d{3}, Vina optimized -?\d\.\d{3}, Vinardo -?\d\.\d{3}; the model",
                     output), output


@pytest.mark.slow
def test_one_measured_ligand_shifts_the_model_and_none_leaves_it_alone(trained, library,
                                                                       tmp_path):
    _, run = trained
    first = series_rows()[0]
    one = write(tmp_path / "one.csv", f"id,pK\n{first['ligand_name']},{pk(first):.2f}\n")
    result, out = run_predict(tmp_path, run / "checkpoints" / "best.pt", f"ligands={library}",
                              f"measured={one}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "one measured ligand: the model's values shifted through it" in result.stdout
    measured_row = out[0]
    offset = float(measured_row["measured_pk"]) - float(measured_row["model_pk"])
    for row in out[1:]:
        assert float(row["predicted_pk"]) == pytest.approx(float(row["model_pk"]) + offset,
                                                           abs=2e-4)
        assert float(row["predicted_pk_std"]) == DEFAULT_STD
        # no fit from one measurement: a Gaussian's 95 % interval
        assert float(row["predicted_pk_high95"]) - float(row["predicted_pk"]) == pytest.approx(
            1.96 * DEFAULT_STD, abs=2e-3)
    unknown = write(tmp_path / "none.csv", "id,pK\nnot-in-the-library,7.0\n")
    result, out = run_predict(tmp_path, run / "checkpoints" / "best.pt", f"ligands={library}",
                              f"measured={unknown}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "measured ligand not-in-the-library" in result.stdout
    assert "its id is not in the library" in result.stdout
    assert "no measured ligand could be used: the model alone" in result.stdout
    assert all(row["predicted_pk"] == row["model_pk"] for row in out)


@pytest.mark.slow
def test_a_bad_measured_file_exits_2_before_any_work_and_keeps_the_earlier_output(trained,
                                                                                  library,
                                                                                  tmp_path):
    _, run = trained
    earlier = write(tmp_path / "ranked.csv", "an earlier run's predictions\n")
    bad = write(tmp_path / "measured.csv", "id,pK\na,7\nb,n/a\n")
    result, _ = run_predict(tmp_path, run / "checkpoints" / "best.pt", f"ligands={library}",
                            f"measured={bad}")
    assert result.returncode == 2
    assert f"{bad}:3: pK 'n/a' is not a finite number" in result.stdout + result.stderr
    assert "featurizing" not in result.stdout + result.stderr
    assert earlier.read_text() == "an earlier run's predictions\n"


@pytest.mark.slow
def test_auto_leaves_a_model_without_a_record_out(trained, library, tmp_path):
    """The quick-start model was validated on a random split of PDBbind complexes: nothing says
    it ranks a series of a new protein, so the default method ranks by the GP alone."""
    _, run = trained
    rows = series_rows()
    measured = write(tmp_path / "measured.csv", "id,pK\n" + "".join(
        f"{r['ligand_name']},{pk(r):.2f}\n" for r in rows[:5]))
    result, out = run_predict(tmp_path, run / "checkpoints" / "best.pt", f"ligands={library}",
                              f"measured={measured}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("series mode: 5 measured ligands; method gp_alone: auto: the model has no record "
            "of ranking series of protein families it never saw") in result.stdout
    known = [row for row in out if row["status"] == "measured"]
    queries = [row for row in out if row["status"] != "measured"]
    smiles = {r["ligand_name"]: r["ligand_smiles"] for r in rows}
    fps = count_fingerprints([smiles[row["ligand_name"]] for row in known + queries])
    expected = gp_alone(fps[:5], np.array([float(r["measured_pk"]) for r in known]), fps[5:])
    assert np.allclose([float(r["predicted_pk"]) for r in queries], expected.mean, atol=1e-4)


def test_a_checkpoint_s_record_is_its_validation_series_under_an_unseen_protein_split():
    from plgraph.inference.predictor import series_record
    from plgraph.training.checkpoint import read_checkpoint

    shipped = read_checkpoint(next((REPO / "models").glob("plgraph-*.pt")), inference=True)
    assert shipped["config"]["split"]["strategy"] == "family"
    assert series_record(shipped) == pytest.approx(
        shipped["history"][-1]["val_series_spearman"])
    assert 0.1 < series_record(shipped) < 0.5  # the guarded blend: method_for_record
    state = {"config": {"split": {"strategy": "target"}},
             "history": [{"val_series_spearman": 0.2}, {"val_series_spearman": 0.45}]}
    assert series_record(state) == 0.45  # the epoch the checkpoint was kept at: the last
    for strategy in ("random", "grouped", "ids"):
        assert series_record({**state, "config": {"split": {"strategy": strategy}}}) is None
    assert series_record({**state, "history": [{"val_rmse": 1.1}]}) is None
    assert series_record({**state, "history": []}) is None


def test_the_config_offers_exactly_the_series_methods_and_acquisitions():
    from plgraph.config import ACQUISITIONS, SERIES_METHODS
    from plgraph.inference import series

    assert set(SERIES_METHODS) == set(series.METHODS) | {"auto"}
    assert set(ACQUISITIONS) == set(series.ACQUISITIONS)


def test_an_sdf_gives_each_ligand_its_pose_and_its_value(tmp_path):
    from rdkit import Chem

    reference = Chem.MolFromMolFile(str(SERIES / "ref_ligand.sdf"), removeHs=False)
    sdf = tmp_path / "measured.sdf"
    with Chem.SDWriter(str(sdf)) as writer:
        for name, dg in (("ref", -11.0), ("again", "n/a")):
            record = Chem.Mol(reference)
            record.SetProp("_Name", name)
            record.SetProp("r_exp_dg", str(dg))
            writer.write(record)
    with pytest.raises(InputError, match=r"measured.sdf: record 2: r_exp_dg 'n/a' is not a "):
        read_measured(sdf, "r_exp_dg", "dg_kcal_mol")
    with Chem.SDWriter(str(sdf)) as writer:
        reference.SetProp("r_exp_dg", "-11.0")
        writer.write(reference)
    [measured] = read_measured(sdf, "r_exp_dg", "dg_kcal_mol")
    assert measured.pk == pytest.approx(11.0 / KCAL_PER_PK)
    assert measured.mol.GetNumConformers() == 1  # the pose, for a ligand outside the library
    assert measured.structure_key == structure_key(reference)
