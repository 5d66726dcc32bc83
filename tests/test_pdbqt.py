"""AutoDock pdbqt input: files made by the tools users make them with (Meeko for ligands, Open
Babel for ligands and receptors) give the graphs of the PDB/SDF pair they were made from, and a
Vina-style file of several MODELs is several poses of one ligand in predict.py."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FEP, REPO, copy_sample, data_config, missing_shared
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers
from test_predict import run_predict

from plgraph.config import FeaturizeConfig, SplitConfig
from plgraph.data import prepare_data
from plgraph.errors import FeaturizationError
from plgraph.featurize import featurize_complex, load_protein, read_ligand_files
from plgraph.featurize.pdbqt import pdbqt_models, pdbqt_to_pdb

meeko = pytest.importorskip("meeko", reason="pip install -e '.[dev]' (Meeko writes the files)")
pybel = pytest.importorskip("openbabel.pybel", reason="pip install -e '.[dev]' (openbabel-wheel)")

CONFIG = FeaturizeConfig()
MINI = REPO / "tests" / "data" / "uni-fep-mini"
SYSTEMS = ["Hermite|FKBP12", "WaterSet|Brd4(1)-ASH106", "ChEMBL|F10|CHEMBL661801"]
# Å: pdbqt writes 3 decimals, SDF 4.
COORDINATE_ROUNDING = 1e-3


def meeko_pdbqt(mol: Chem.Mol) -> str:
    """What mk_prepare_ligand.py writes: heavy atoms, polar hydrogens, REMARK SMILES (+ IDX)."""
    setups = meeko.MoleculePreparation().prepare(Chem.AddHs(mol, addCoords=True))
    text, ok, error = meeko.PDBQTWriterLegacy.write_string(setups[0])
    assert ok, error
    return text


def obabel_pdbqt(path: Path, fmt: str, **options) -> str:
    return next(pybel.readfile(fmt, str(path))).write("pdbqt", opt=options)


def graph(ligand_path: Path, protein_path: Path):
    ligand = read_ligand_files([ligand_path], ligand_path.name)
    return featurize_complex(ligand, load_protein(protein_path, CONFIG), CONFIG, "x",
                             cut_pocket=True)


def position_order(pos: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
    """For each of our atoms, the reference atom at its position (a pdbqt lists atoms in another
    order: Meeko's SMILES order, Open Babel's residue order)."""
    pos, reference = pos.double().numpy(), reference.double().numpy()
    assert pos.shape == reference.shape
    distance = np.linalg.norm(pos[:, None] - reference[None], axis=-1)
    order = distance.argmin(axis=1)
    assert sorted(order) == list(range(len(reference)))
    assert distance.min(axis=1).max() < COORDINATE_ROUNDING
    return order


def assert_same_graph(ours, reference) -> None:
    """Same atoms, features, bonds, coordinates and edges, atoms matched by position."""
    order = {kind: position_order(ours[kind].pos, reference[kind].pos)
             for kind in ("ligand", "protein")}
    for kind in order:
        assert torch.equal(ours[kind].x, reference[kind].x[order[kind]]), kind
    for (source, relation, target) in reference.edge_types:
        edges, ref_edges = ours[source, relation, target], reference[source, relation, target]
        attr = "edge_attr" if "edge_attr" in ref_edges else None
        ours_set = {(int(order[source][a]), int(order[target][b]),
                     tuple(edges[attr][i].tolist()) if attr else ())
                    for i, (a, b) in enumerate(edges.edge_index.T.tolist())}
        assert ours_set == {(a, b, tuple(ref_edges[attr][i].tolist()) if attr else ())
                            for i, (a, b) in enumerate(ref_edges.edge_index.T.tolist())}, relation


@pytest.mark.parametrize("system", SYSTEMS)
def test_a_meeko_ligand_gives_the_graph_of_its_sdf(system, tmp_path):
    folder = MINI / system
    sdf = folder / "ref_ligand.sdf"
    pdbqt = tmp_path / "ligand.pdbqt"
    pdbqt.write_text(meeko_pdbqt(Chem.MolFromMolFile(str(sdf), removeHs=False)))
    assert "REMARK SMILES IDX" in pdbqt.read_text()
    assert_same_graph(graph(pdbqt, folder / "protein.pdb"), graph(sdf, folder / "protein.pdb"))


@pytest.mark.parametrize("system", SYSTEMS)
def test_a_ligand_with_every_hydrogen_gets_its_bond_orders_perceived(system, tmp_path):
    """F10's ligand is a cation (an ammonium): charge 0 would also fit, as a zwitterion."""
    folder = MINI / system
    pdbqt = tmp_path / "ligand.pdbqt"
    pdbqt.write_text(obabel_pdbqt(folder / "ref_ligand.sdf", "sdf", h=None))  # obabel -xh
    assert "REMARK SMILES" not in pdbqt.read_text()
    assert_same_graph(graph(pdbqt, folder / "protein.pdb"),
                      graph(folder / "ref_ligand.sdf", folder / "protein.pdb"))


def test_a_ligand_without_smiles_or_non_polar_hydrogens_is_refused(tmp_path):
    pdbqt = tmp_path / "ligand.pdbqt"
    pdbqt.write_text(obabel_pdbqt(MINI / SYSTEMS[0] / "ref_ligand.sdf", "sdf"))  # obabel default
    with pytest.raises(FeaturizationError, match=r"ligand\.pdbqt: no usable ligand file.*"
                                                 r"cannot be perceived reliably.*Meeko"):
        read_ligand_files([pdbqt], "ligand.pdbqt")


def test_a_perceived_structure_with_a_charged_carbon_or_sulfur_is_refused(tmp_path):
    """rdDetermineBonds reads MCL1's benzothiophene carboxylates as thiophenium carbanions."""
    series = FEP / "fragments" / "frag_mcl1_noweak_ligands.sdf"
    if not series.is_file():
        missing_shared(FEP)
    pdbqt = tmp_path / "mcl1.pdbqt"
    pdbqt.write_text(obabel_pdbqt(series, "sdf", h=None))
    with pytest.raises(FeaturizationError, match=r"no plausible structure.*charged S\+1"):
        read_ligand_files([pdbqt], "mcl1")


@pytest.mark.parametrize("system", SYSTEMS[:2])
def test_a_receptor_pdbqt_gives_the_atoms_of_its_pdb(system, tmp_path):
    folder = MINI / system
    pdbqt = tmp_path / "receptor.pdbqt"
    pdbqt.write_text(obabel_pdbqt(folder / "protein.pdb", "pdb", r=None))  # obabel -xr
    ours, reference = load_protein(pdbqt, CONFIG), load_protein(folder / "protein.pdb", CONFIG)
    assert len(ours) == len(reference) > 100
    np.testing.assert_allclose(ours.pos, reference.pos, atol=COORDINATE_ROUNDING)
    assert (ours.features == reference.features).all()
    assert (ours.residue_index == reference.residue_index).all()


def test_the_pdbbind_layout_reads_a_pdbqt_pocket_and_ligand(tmp_path):
    """`<id>_pocket.pdbqt` is found as the pocket, `<id>_ligand.pdbqt` where ligand_formats
    lists pdbqt; the cached graphs are those of the PDB/SDF originals."""
    ids = ("1h1d", "1eve")
    pdbqt_root = copy_sample(tmp_path / "pdbqt", ids)
    original = copy_sample(tmp_path / "original", ids)
    for complex_id in ids:
        folder = pdbqt_root / complex_id
        # From the mol2: PDBbind's SDF bonds carry ring/chain queries, which Meeko refuses.
        ligand = read_ligand_files([folder / f"{complex_id}_ligand.mol2"], complex_id)
        (folder / f"{complex_id}_ligand.pdbqt").write_text(meeko_pdbqt(ligand))
        pocket = folder / f"{complex_id}_pocket.pdb"
        (folder / f"{complex_id}_pocket.pdbqt").write_text(obabel_pdbqt(pocket, "pdb", r=None))
        for path in (pocket, *folder.glob("*_ligand.sdf"), *folder.glob("*_ligand.mol2")):
            path.unlink()
    split = SplitConfig(train=0.5, val=0.5, test=0.0)
    ours = prepare_data(data_config(pdbqt_root), FeaturizeConfig(ligand_formats=["pdbqt"]),
                        split).cache
    reference = prepare_data(data_config(original), FeaturizeConfig(ligand_formats=["mol2"]),
                             split).cache
    assert ours.ids == reference.ids == sorted(ids)
    for index in range(len(ids)):
        assert_same_graph(ours[index], reference[index])


def test_the_series_layout_takes_a_pdbqt_protein_beside_the_sdf(tmp_path):
    from plgraph.data.layouts import read_series

    folder = MINI / SYSTEMS[1]
    (tmp_path / "brd4_ligands.sdf").write_bytes((folder / "ref_ligand.sdf").read_bytes())
    (tmp_path / "brd4_protein.pdbqt").write_text(obabel_pdbqt(folder / "protein.pdb", "pdb",
                                                              r=None))
    records = read_series(tmp_path, "", "pk", require_labels=False).records
    assert [r.protein.name for r in records] == ["brd4_protein.pdbqt"]


def test_an_unknown_autodock_type_names_the_line():
    line = "ATOM      1  C   UNL     1      -1.000   2.000   3.000  0.00  0.00    +0.000 Xx"
    with pytest.raises(FeaturizationError, match=r"r\.pdbqt, line 2: unknown AutoDock atom "
                                                 r"type 'Xx'"):
        pdbqt_to_pdb("REMARK\n" + line + "\n", "r.pdbqt")


def test_vina_models_share_the_remarks_before_the_first():
    text = ("REMARK SMILES CCO\nREMARK SMILES IDX 1 1\nMODEL 1\nREMARK VINA RESULT: -7.1\n"
            "ATOM\nENDMDL\nMODEL 2\nREMARK VINA RESULT: -6.5\nATOM\nENDMDL")
    models = pdbqt_models(text)
    assert [first_line for _, first_line in models] == [3, 7]
    # Each block is its MODEL's lines as in the file (so line numbers hold), then the remarks.
    assert [block for block, _ in models] == [
        f"MODEL {n}\nREMARK VINA RESULT: {score}\nATOM\nENDMDL\n"
        "REMARK SMILES CCO\nREMARK SMILES IDX 1 1\n" for n, score in ((1, -7.1), (2, -6.5))]


def test_an_error_in_the_second_model_names_its_line_in_the_file(tmp_path):
    from plgraph.data.libraries import iter_pdbqt_records
    from plgraph.featurize.ligand import parse_ligand_block

    atom = "ATOM      1  C   UNL     1      -1.000   2.000   3.000  0.00  0.00    +0.000 {}\n"
    docked = tmp_path / "docked.pdbqt"
    docked.write_text("REMARK SMILES C\nREMARK SMILES IDX 1 1\nREMARK  Name = methane\n"
                      f"MODEL 1\n{atom.format('C ')}ENDMDL\n"
                      f"MODEL 2\nREMARK VINA RESULT: -1.0\n{atom.format('Xx')}ENDMDL\n")
    protein = tmp_path / "protein.pdb"
    protein.touch()
    first, second = iter_pdbqt_records(docked, protein, "system")
    assert parse_ligand_block(first.ligand_block, "pdbqt", first.ligand_source,
                              first.ligand_line).GetNumAtoms() == 1
    with pytest.raises(FeaturizationError, match=r"docked\.pdbqt: pose 2 \(MODEL from line 7\), "
                                                 r"line 9: unknown AutoDock atom type 'Xx'"):
        parse_ligand_block(second.ligand_block, "pdbqt", second.ligand_source, second.ligand_line)
    with pytest.raises(FeaturizationError, match=r"x\.pdbqt, line 5: unknown AutoDock atom"):
        parse_ligand_block(docked.read_text().replace(" C \n", " Xx\n"), "pdbqt", "x.pdbqt")


@pytest.mark.slow
def test_vina_output_is_scored_per_model_and_matches_the_sdf(trained, tmp_path):
    """A receptor pdbqt and a ligand pdbqt of two MODELs (the given pose and an MMFF-relaxed one,
    Meeko's remarks in each, as Vina writes them): one row for the ligand, one per pose, and the
    first pose scored as the same pose read from the SDF."""
    series = FEP / "jacs_set" / "tyk2"
    if not series.with_name("tyk2_ligands.sdf").is_file():
        missing_shared(FEP)
    given = next(iter(Chem.SDMolSupplier(str(series.with_name("tyk2_ligands.sdf")),
                                         removeHs=False)))
    relaxed = Chem.Mol(given)
    rdForceFieldHelpers.MMFFOptimizeMolecule(relaxed, maxIters=50)
    models = [meeko_pdbqt(mol) for mol in (given, relaxed)]
    docked = tmp_path / "docked.pdbqt"
    docked.write_text("".join(f"MODEL {i + 1}\nREMARK VINA RESULT: -{9 - i}.0 0.000 0.000\n"
                              f"{text}ENDMDL\n" for i, text in enumerate(models)))
    receptor = tmp_path / "receptor.pdbqt"
    receptor.write_text(obabel_pdbqt(series.with_name("tyk2_protein.pdb"), "pdb", r=None))
    single = tmp_path / "given.sdf"
    with Chem.SDWriter(str(single)) as writer:
        writer.write(given)
    _, run = trained
    checkpoint = f"checkpoint={run / 'checkpoints' / 'best.pt'}"
    result = run_predict(checkpoint, f"protein={receptor}", f"ligands={docked}",
                         f"output={tmp_path / 'vina.csv'}", "pose_aggregation=first",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    reference = run_predict(checkpoint, f"protein={series.with_name('tyk2_protein.pdb')}",
                            f"ligands={single}", f"output={tmp_path / 'sdf.csv'}", cwd=tmp_path)
    assert reference.returncode == 0, reference.stdout + reference.stderr
    ligands = list(csv.DictReader((tmp_path / "vina.csv").open()))
    poses = list(csv.DictReader((tmp_path / "vina_poses.csv").open()))
    assert [r["ligand_name"] for r in ligands] == ["docked"]
    assert [(r["pose_index"], r["status"]) for r in poses] == [("0", "ok"), ("1", "ok")]
    assert poses[0]["predicted_pk"] != poses[1]["predicted_pk"]
    sdf_row = next(csv.DictReader((tmp_path / "sdf.csv").open()))
    assert float(ligands[0]["predicted_pk"]) == pytest.approx(float(sdf_row["predicted_pk"]),
                                                             abs=1e-3)
