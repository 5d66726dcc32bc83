"""Posing ligands given as SMILES onto a reference ligand, and the ``reference`` layout that
needs it, on three real Uni-FEP series (tests/data/uni-fep-mini) and real FEP+ poses."""

from __future__ import annotations

import dataclasses
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import FEP, REPO, data_config, missing_shared
from rdkit import Chem
from rdkit.Chem import rdFMCS, rdMolAlign
from scipy.spatial import cKDTree
from test_cache import assert_same_graph

from plgraph.config import FeaturizeConfig, PosingConfig, SplitConfig
from plgraph.data import build, prepare_data
from plgraph.data.featurizer import featurize_record, pose_record, posing_site
from plgraph.data.layouts import read_inputs
from plgraph.data.records import dg_to_pk
from plgraph.errors import FeaturizationError
from plgraph.featurize import load_protein, parse_ligand_block, read_ligand_files
from plgraph.featurize.posing import (
    PosingSite,
    StepLimit,
    mcs_parameters,
    parse_smiles,
    pose_ligand,
    ran_out_of_time,
)

UNI_FEP_MINI = REPO / "tests" / "data" / "uni-fep-mini"
BRD4 = "WaterSet|Brd4(1)-ASH106"
FKBP12 = "Hermite|FKBP12"
CONFIG = FeaturizeConfig()


@pytest.fixture
def uni_fep_root(tmp_path: Path) -> Path:
    return Path(shutil.copytree(UNI_FEP_MINI, tmp_path / "uni-fep"))


def reference_inputs(root: Path, **overrides):
    return read_inputs(data_config(root, layout="reference", **overrides), CONFIG)


def test_reference_layout_reads_every_row_with_its_label_group_and_extra_columns(uni_fep_root):
    inputs = reference_inputs(uni_fep_root)
    assert not inputs.failures
    assert len(inputs.records) == 4 + 6 + 8
    record = next(r for r in inputs.records if r.id == f"{FKBP12}/6")
    assert record.group == FKBP12  # folder names with '|' and '(1)' are plain names
    assert record.label == pytest.approx(dg_to_pk(-10.8))
    assert record.label == pytest.approx(7.9165, abs=1e-4)  # 10.8 / 1.3643
    assert dict(record.extras) == {"fep_dG (kcal/mol)": -10.845}
    assert record.protein == uni_fep_root / FKBP12 / "protein.pdb"
    assert record.reference_files[0] == uni_fep_root / FKBP12 / "ref_ligand.sdf"
    assert record.smiles.startswith("[H]c1c(OC([H])")


def test_reference_layout_names_the_column_and_header_when_a_column_is_missing(uni_fep_root):
    from plgraph.errors import InputError

    with pytest.raises(InputError, match=r"no column \['SMILES'\].*header read is"):
        read_inputs(data_config(uni_fep_root, layout="reference",
                                reference={"smiles_column": "SMILES"}), CONFIG)


def test_a_system_without_its_reference_ligand_fails_each_of_its_rows(uni_fep_root):
    for name in ("ref_ligand.sdf", "ref_ligand.mol2"):
        (uni_fep_root / BRD4 / name).unlink(missing_ok=True)
    inputs = reference_inputs(uni_fep_root)
    failed = [f for f in inputs.failures if f.id.startswith(BRD4)]
    assert len(failed) == 8
    assert all("missing reference ligand" in f.reason for f in failed)


def posed(record_id: str, root: Path = UNI_FEP_MINI, config: FeaturizeConfig = CONFIG):
    record = next(r for r in reference_inputs(root).records if r.id == record_id)
    protein = load_protein(record.protein, config)
    return record, protein, pose_record(record, protein, config)


def test_a_posed_ligand_keeps_the_reference_core_sits_in_the_pocket_and_does_not_clash():
    record, protein, pose = posed(f"{BRD4}/cmpd 9 (methoxyethyl)")
    reference = read_ligand_files(record.reference_files, "reference")
    ligand, reference_pos = pose.mol.GetConformer().GetPositions(), \
        reference.GetConformer().GetPositions()
    assert len(pose.core) >= 0.5 * pose.heavy.GetNumAtoms()
    for lig, ref in pose.core:
        assert np.array_equal(ligand[lig], reference_pos[ref])  # exactly the reference's
    heavy = pose.heavy.GetConformer().GetPositions()
    nearest, _ = cKDTree(protein.pos).query(heavy)
    assert nearest.min() > 2.2  # no clash
    assert nearest.max() < 6.0  # every atom in the pocket, none out in the solvent
    assert Chem.MolToSmiles(pose.heavy) == Chem.MolToSmiles(parse_smiles(record.smiles, "x"))


def test_posing_is_bit_identical_across_runs():
    _, _, first = posed(f"{FKBP12}/9")
    _, _, second = posed(f"{FKBP12}/9")
    assert np.array_equal(first.mol.GetConformer().GetPositions(),
                          second.mol.GetConformer().GetPositions())


def test_posing_stops_at_the_first_clash_free_attempt():
    """More attempts cannot beat a clash-free one: where the first attempt is clash-free (seen
    without the relaxation, which would hide its clashes), a budget of 8 gives the very pose a
    budget of 1 does; where it is not, the budget of 8 finds a better one."""
    records = {r.id: r for r in reference_inputs(UNI_FEP_MINI).records}
    for name, first_is_clash_free in (("cmpd 7 (n-propyl)", True),
                                      ("cmpd 9 (methoxyethyl)", False)):
        record = records[f"{BRD4}/{name}"]
        protein = load_protein(record.protein, CONFIG)
        one, eight = (pose_record(record, protein, replace(
            CONFIG, posing=PosingConfig(attempts=n, relax=False))) for n in (1, 8))
        assert (one.clashes == 0) is first_is_clash_free
        same = np.array_equal(one.mol.GetConformer().GetPositions(),
                              eight.mol.GetConformer().GetPositions())
        assert same is first_is_clash_free
        assert eight.clashes == 0


def test_a_shared_stereo_centre_inverted_in_the_reference_is_posed_with_the_smiles_stereo():
    """FKBP12 ligand 2 with its pipecolate centre inverted: the reference holds it the other way
    round, so the centre and its neighbours leave the core and the pose keeps the SMILES' R/S."""
    record = next(r for r in reference_inputs(UNI_FEP_MINI).records if r.id == f"{FKBP12}/2")
    assert record.smiles.count("[C@@]1") == 1
    inverted = parse_smiles(record.smiles.replace("[C@@]1", "[C@]1"), "inverted")
    protein = load_protein(record.protein, CONFIG)
    site = posing_site(record, protein)
    # The freed centre leaves a small core and the new atoms little room: the best of the 8
    # embeddings keeps 3 clashes (a failure by the clash rule). The rule under test is the stereo.
    posing = replace(CONFIG.posing, max_clashes=10)
    pose = pose_ligand(inverted, site, posing, "inverted")
    expected = Chem.FindMolChiralCenters(inverted, useLegacyImplementation=False)
    from_3d = Chem.Mol(pose.heavy)
    Chem.AssignStereochemistryFrom3D(from_3d)
    assert Chem.FindMolChiralCenters(from_3d, useLegacyImplementation=False) == expected
    centre = expected[0][0]
    assert centre not in {lig for lig, _ in pose.core}
    original = pose_ligand(parse_smiles(record.smiles, "original"), site, CONFIG.posing, "x")
    assert centre in {lig for lig, _ in original.core}  # the centre itself is shared as written


@pytest.mark.slow
def test_the_posed_cache_is_identical_for_one_and_two_workers(uni_fep_root, tmp_path,
                                                               monkeypatch):
    monkeypatch.setattr(build, "MIN_COMPLEXES_PER_WORKER", 1)  # a real pool for 18 ligands
    split = SplitConfig(strategy="grouped")
    one = prepare_data(data_config(uni_fep_root, layout="reference",
                                   processed_dir=str(tmp_path / "one")), CONFIG, split).cache
    two = prepare_data(data_config(uni_fep_root, layout="reference", workers=2,
                                   processed_dir=str(tmp_path / "two")), CONFIG, split).cache
    assert (one.meta["build"]["workers"], two.meta["build"]["workers"]) == (1, 2)
    assert one.meta["complexes"] == two.meta["complexes"]
    assert one.meta["complexes"][0]["extras"]  # fep_dG travels with the record
    assert one.meta["featurize"]["posing"] == dataclasses.asdict(CONFIG.posing)
    for index in range(len(one)):
        assert_same_graph(one[index], two[index])


def test_posing_parameters_are_part_of_the_cache_key(uni_fep_root, tmp_path):
    from plgraph.errors import CacheError

    data = data_config(uni_fep_root, layout="reference", processed_dir=str(tmp_path / "c"))
    prepare_data(data, CONFIG, SplitConfig())
    other = replace(CONFIG, posing=replace(CONFIG.posing, attempts=3))
    with pytest.raises(CacheError):
        prepare_data(data, other, SplitConfig())


def failure_reason(smiles: str, site_record: str = f"{BRD4}/cmpd 2 (methyl)",
                   posing: PosingConfig | None = None, reference_scale: float = 1.0) -> str:
    record = next(r for r in reference_inputs(UNI_FEP_MINI).records if r.id == site_record)
    protein = load_protein(record.protein, CONFIG)
    reference = read_ligand_files(record.reference_files, "reference")
    conformer = reference.GetConformer()
    centre = conformer.GetPositions().mean(axis=0)
    for index, xyz in enumerate(conformer.GetPositions()):
        conformer.SetAtomPosition(index, (centre + reference_scale * (xyz - centre)).tolist())
    site = PosingSite.build(reference, protein, "ref_ligand.sdf")
    with pytest.raises(FeaturizationError) as error:
        pose_ligand(parse_smiles(smiles, "lig"), site, posing or CONFIG.posing, "lig")
    return str(error.value)


def test_every_posing_failure_names_its_rule():
    methoxyethyl = next(r for r in reference_inputs(UNI_FEP_MINI).records
                        if r.id == f"{BRD4}/cmpd 9 (methoxyethyl)").smiles
    with pytest.raises(FeaturizationError, match="cannot parse the SMILES 'C1CC'"):
        parse_smiles("C1CC", "lig")
    with pytest.raises(FeaturizationError, match="2 disconnected parts"):
        parse_smiles("CCO.[Na+]", "lig")
    assert re.search(r"shares 1 of its 12 heavy atoms .* posing needs 5",
                     failure_reason("CCCCCCCCCCCC"))
    # Every protein atom within 4.5 Å of a new atom counts: the side chain cannot avoid them.
    strict = PosingConfig(clash_distance=4.5, max_clashes=0)
    assert "still clashes" in failure_reason(methoxyethyl, posing=strict)
    # A reference squeezed to half its size: no ligand geometry holds such a core.
    assert "no 3D embedding" in failure_reason(methoxyethyl, reference_scale=0.5)


def test_a_flat_reference_fails_every_ligand_of_its_system(uni_fep_root):
    sdf = uni_fep_root / BRD4 / "ref_ligand.sdf"
    lines = sdf.read_text().splitlines()
    counts = lines[3].split()
    for i in range(4, 4 + int(counts[0])):  # z column (31-40) set to 0 in the atom block
        lines[i] = lines[i][:20] + f"{0.0:10.4f}" + lines[i][30:]
    sdf.write_text("\n".join(lines) + "\n")
    (uni_fep_root / BRD4 / "ref_ligand.mol2").unlink(missing_ok=True)
    record = next(r for r in reference_inputs(uni_fep_root).records if r.id.startswith(BRD4))
    with pytest.raises(FeaturizationError, match="no 3D coordinates"):
        featurize_record(record, CONFIG)


@pytest.mark.parametrize("series", ["jacs_set/cdk2", "jacs_set/tyk2"])
def test_reposing_fep_benchmark_ligands_reproduces_their_given_poses(series):
    sdf = FEP / f"{series}_ligands.sdf"
    if not sdf.is_file():
        missing_shared(FEP)
    blocks = [b for b in re.split(r"^\$\$\$\$[^\n]*\n", sdf.read_text(), flags=re.M)
              if b.strip()]
    given = [parse_ligand_block(b, "sdf", f"{series}:{i}") for i, b in enumerate(blocks[:7])]
    protein = load_protein(FEP / f"{series}_protein.pdb", CONFIG)
    site = PosingSite.build(given[0], protein, "first ligand")
    rmsd = [rdMolAlign.CalcRMS(pose_ligand(parse_smiles(Chem.MolToSmiles(mol), "x"), site,
                                           CONFIG.posing, "x").heavy, mol)
            for mol in given[1:]]
    # bench/pose_quality.py: median 0.5 Å over all FEP+ series; 1.5 Å is the target.
    assert np.median(rmsd) < 1.5, rmsd


def test_two_sources_keep_a_complex_they_share_once_from_the_first_source(uni_fep_root,
                                                                          tmp_path):
    """WaterSet|Brd4(1)-ASH106 in Uni-FEP is FEP+'s waterset/brd41_ASH106 prepared again: the
    same 8 ligands, a protein of other length. FEP+ (listed first, with its modelled poses)
    keeps them; Uni-FEP's copies are listed as duplicates, its other series stay."""
    series = tmp_path / "fep"
    series.mkdir()
    for suffix in ("_ligands.sdf", "_protein.pdb"):
        source = FEP / "waterset" / f"brd41_ASH106{suffix}"
        if not source.is_file():
            missing_shared(FEP)
        shutil.copy(source, series / source.name)
    data = data_config(uni_fep_root, processed_dir=str(tmp_path / "processed"), sources=[
        {"name": "fep", "root": str(series), "layout": "series"},
        {"name": "unifep", "root": str(uni_fep_root), "layout": "reference"}])
    inputs = read_inputs(data, CONFIG)
    ids = [r.id for r in inputs.records]
    assert sum(i.startswith("fep:brd41_ASH106/") for i in ids) == 8
    assert not any(i.startswith(f"unifep:{BRD4}") for i in ids)
    assert sum(i.startswith("unifep:") for i in ids) == 4 + 6
    assert len(inputs.duplicates) == 8
    assert all(d.id.startswith(f"unifep:{BRD4}/") and "copy of fep:brd41_ASH106/" in d.reason
               for d in inputs.duplicates)
    assert {r.group for r in inputs.records if r.id.startswith("unifep:")} == {
        f"unifep:{FKBP12}", "unifep:ChEMBL|F10|CHEMBL661801"}


@pytest.mark.slow
def test_a_cache_of_several_sources_opens_again_and_notices_a_changed_source(uni_fep_root,
                                                                            tmp_path):
    """The second run (a resume, the next seed's split) opens the cache built by the first."""
    from plgraph.errors import CacheError

    sources = [{"name": "fep", "root": str(FEP / "waterset"), "layout": "series"},
               {"name": "unifep", "root": str(uni_fep_root), "layout": "reference"}]
    if not (FEP / "waterset").is_dir():
        missing_shared(FEP)
    processed = str(tmp_path / "processed")
    first = prepare_data(data_config(uni_fep_root, processed_dir=processed, sources=sources,
                                     max_failure_fraction=1.0), CONFIG, SplitConfig())
    again = prepare_data(data_config(uni_fep_root, processed_dir=processed, sources=sources,
                                     max_failure_fraction=1.0), CONFIG, SplitConfig())
    assert [e.id for e in again.cache.entries] == [e.id for e in first.cache.entries]
    changed = [sources[0], {**sources[1], "label_kind": "pk"}]
    with pytest.raises(CacheError, match="stale: source was"):
        prepare_data(data_config(uni_fep_root, processed_dir=processed, sources=changed,
                                 max_failure_fraction=1.0), CONFIG, SplitConfig())


def test_several_sources_need_names_and_a_processed_dir(uni_fep_root):
    source = {"root": str(uni_fep_root), "layout": "reference"}
    with pytest.raises(ValueError, match=r"data.sources\[0\].name must be"):
        data_config(uni_fep_root, processed_dir="x", sources=[source])
    with pytest.raises(ValueError, match="data.processed_dir must be set"):
        data_config(uni_fep_root, sources=[{**source, "name": "a"}])
    with pytest.raises(ValueError, match="names must be unique"):
        data_config(uni_fep_root, processed_dir="x",
                    sources=[{**source, "name": "a"}, {**source, "name": "a"}])


def copy_pcsk9(uni_fep_root: Path, rows: int = 1) -> Path:
    """Uni-FEP's PCSK9 cyclic-peptide system with its first ``rows`` ligands, into the test's
    root: its unseeded common-substructure search with the reference takes over 10 s on any
    machine (bench/mcs_search.py), about 9,000 steps a second here."""
    pcsk9 = REPO.parent / "shared" / "data" / "uni-fep" / "CyclicPeptide|PCSK9"
    if not pcsk9.is_dir():
        missing_shared(pcsk9)
    system = uni_fep_root / pcsk9.name
    system.mkdir()
    for name in ("protein.pdb", "ref_ligand.sdf"):
        shutil.copy(pcsk9 / name, system / name)
    lines = (pcsk9 / "result_dG.csv").read_text().splitlines()
    (system / "result_dG.csv").write_text("\n".join(lines[:rows + 1]) + "\n")
    return system


def test_a_cache_with_searches_out_of_time_warns_that_another_machine_may_differ(
        uni_fep_root, tmp_path, caplog):
    # At 1 s the PCSK9 peptide's search runs out of time wherever this runs, long before its
    # step limit; the Brd4 and FKBP12 ligands beside it pose in milliseconds. That failure,
    # unlike every other rule's, depends on the machine.
    pcsk9 = copy_pcsk9(uni_fep_root)
    quick = replace(CONFIG, posing=replace(CONFIG.posing, mcs_timeout=1.0))
    data = data_config(uni_fep_root, layout="reference", processed_dir=str(tmp_path / "c"))
    with caplog.at_level("WARNING"):
        prepared = prepare_data(data, quick, SplitConfig())
    failures = prepared.cache.meta["failures"]
    out_of_time = [f for f in failures if "did not finish within" in f["reason"]]
    assert [f["id"].split("/")[0] for f in out_of_time] == [pcsk9.name]
    assert "featurize.posing.mcs_timeout=1.0 s" in out_of_time[0]["reason"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(message.startswith(f"1 of the {len(failures)} failures are common-substructure "
                                  "searches that ran out of featurize.posing.mcs_timeout")
               and "a build elsewhere may pose some of them" in message
               for message in warnings), warnings


def test_a_search_over_its_step_limit_fails_alike_on_every_run_and_is_not_warned_about(
        uni_fep_root, tmp_path, caplog):
    # The step limit, not the clock, stops the PCSK9 peptide's search (2,000 steps: a quarter of
    # a second here, the 600 s backstop far off): the failure is the inputs' and config's, so
    # the cache says nothing about other machines.
    pcsk9 = copy_pcsk9(uni_fep_root, rows=2)
    limited = replace(CONFIG, posing=replace(CONFIG.posing, mcs_steps=2000))
    reference = read_ligand_files([pcsk9 / "ref_ligand.sdf"], "reference ligand")
    Chem.GetSymmSSSR(reference)
    first_row = (pcsk9 / "result_dG.csv").read_text().splitlines()[1]
    ligand = parse_smiles(first_row.split(",")[0], "peptide")
    limit = StepLimit(limited.posing.mcs_steps, limited.posing.mcs_timeout)
    params = mcs_parameters(limited.posing)
    params.ProgressCallback = limit
    assert rdFMCS.FindMCS([reference, ligand], params).canceled
    assert (limit.reports, limit.out_of_time) == (2000, False)
    data = data_config(uni_fep_root, layout="reference", processed_dir=str(tmp_path / "c"))
    with caplog.at_level("WARNING"):
        prepared = prepare_data(data, limited, SplitConfig())
    failures = [f for f in prepared.cache.meta["failures"] if pcsk9.name in f["id"]]
    assert len(failures) == 2
    for failure in failures:
        assert failure["reason"].endswith(
            "did not finish within featurize.posing.mcs_steps=2,000 steps: too costly a search "
            "to place it by the reference"), failure
        assert not ran_out_of_time(failure["reason"])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert not any("ran out of featurize.posing.mcs_timeout" in m for m in warnings), warnings
