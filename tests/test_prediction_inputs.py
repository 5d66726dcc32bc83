"""The inputs users actually hand predict.py: libraries read record by record, gzipped files,
mmCIF proteins, mol2 libraries, Excel manifests, and one reason per kind of bad input."""

from __future__ import annotations

import gzip
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FEP, MOL2_FALLBACK_ID, SAMPLE, missing_shared

from plgraph.config import FeaturizeConfig, PredictConfig
from plgraph.data.featurizer import featurize_record
from plgraph.data.labels import read_labels
from plgraph.data.layouts import read_manifest
from plgraph.data.libraries import iter_ligand_records, iter_sdf_records
from plgraph.data.records import ComplexRecord, Failure
from plgraph.errors import FeaturizationError, InputError
from plgraph.featurize import featurize_complex, load_protein, parse_ligand_block
from plgraph.inference.applicability import domain_warnings
from plgraph.inference.inputs import chunks, featurize_all, read_prediction_inputs
from plgraph.runtime.files import iter_lines, read_bytes

CDK2 = "jacs_set/cdk2"  # 16 ligands


def cdk2(tmp_path: Path) -> tuple[Path, Path]:
    if not FEP.is_dir():
        missing_shared(FEP)
    protein, ligands = (Path(shutil.copy(FEP / f"{CDK2}{suffix}", tmp_path))
                        for suffix in ("_protein.pdb", "_ligands.sdf"))
    return protein, ligands


def same_graph(a, b) -> bool:
    keys = [k for k in a.node_types + a.edge_types]
    return all(a[k][attr].equal(b[k][attr]) for k in keys for attr in a[k])


def test_a_latin1_byte_in_a_property_of_record_5_of_16_costs_no_record(tmp_path):
    protein, ligands = cdk2(tmp_path)
    records = ligands.read_bytes().split(b"$$$$\n")
    records[5] = records[5] + "> <note>\nKd 3 µM\n\n".encode("latin-1")
    ligands.write_bytes(b"$$$$\n".join(records))
    items = list(iter_ligand_records(ligands, protein, "cdk2", "r_exp_dg", "dg_kcal_mol"))
    assert len(items) == 16 and not [i for i in items if isinstance(i, Failure)]
    assert items[5].label is not None and "\ufffd" in items[5].ligand_block
    featurize_record(items[5], FeaturizeConfig())


def test_chunks_give_one_row_per_record_in_input_order_identical_to_unchunked(tmp_path):
    protein, ligands = cdk2(tmp_path)
    records = ligands.read_bytes().split(b"$$$$\n")
    records[3] = records[3].replace(b"M  END", b"M  EN\xb5D", 1)  # a record that fails
    ligands.write_bytes(b"$$$$\n".join(records))

    def rows(size: int) -> list:
        items = iter_sdf_records(ligands, protein, "cdk2", None, "pk")
        return [row for chunk in chunks(featurize_all(items, FeaturizeConfig()), size)
                for row in chunk]

    whole, tiny = rows(512), rows(3)
    assert [r.ligand_index for r in tiny] == list(range(16))
    assert [r.id for r in tiny] == [r.id for r in whole]
    assert tiny[3].graph is None and "byte 0xb5 in the molecule block" in tiny[3].error
    assert all(same_graph(a.graph, b.graph) for a, b in zip(whole, tiny, strict=True)
               if a.graph is not None)


def test_an_sdf_library_is_read_lazily_one_record_at_a_time(tmp_path):
    protein, ligands = cdk2(tmp_path)
    items = iter_sdf_records(ligands, protein, "cdk2", None, "pk")
    first = next(items)
    ligands.write_bytes(b"")  # gone after the first record: a reader holding the file is done
    assert first.ligand_index == 0 and next(items).ligand_index == 1


def test_gzipped_sdf_mol2_and_pdb_give_the_graphs_of_the_plain_files(tmp_path):
    config = FeaturizeConfig()
    for name in ("1h1d_pocket.pdb", "1h1d_ligand.sdf", "1h1d_ligand.mol2"):
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress((SAMPLE / "1h1d" / name).read_bytes()))
    for ligand in ("1h1d_ligand.sdf", "1h1d_ligand.mol2"):
        plain = featurize_record(ComplexRecord("1h1d", SAMPLE / "1h1d" / "1h1d_pocket.pdb",
                                               (SAMPLE / "1h1d" / ligand,)), config)
        graph = featurize_record(ComplexRecord("1h1d", tmp_path / "1h1d_pocket.pdb.gz",
                                               (tmp_path / f"{ligand}.gz",)), config)
        assert same_graph(plain, graph)


def test_a_cut_off_missing_or_directory_input_is_named_whether_read_whole_or_streamed(tmp_path):
    """read_bytes (a protein, a ligand file) and iter_lines (a streamed library) say the same."""
    whole = gzip.compress((SAMPLE / "1h1d" / "1h1d_ligand.sdf").read_bytes())
    cut = tmp_path / "library.sdf.gz"
    cut.write_bytes(whole[: len(whole) // 2])  # a download that stopped halfway
    (tmp_path / "folder.sdf").mkdir()
    cases = {cut: "not a complete gzip file", tmp_path / "folder.sdf": "is a directory",
             tmp_path / "absent.sdf": "file not found"}
    for path, reason in cases.items():
        for read in (read_bytes, lambda p, error: list(iter_lines(p, error))):
            with pytest.raises(InputError, match=f"{re.escape(str(path))}: {reason}"):
                read(path, InputError)


def test_an_mmcif_protein_gives_the_graph_of_its_pdb(tmp_path):
    from Bio.PDB import MMCIFIO, PDBParser

    pdb = SAMPLE / "1h1d" / "1h1d_pocket.pdb"
    writer = MMCIFIO()
    writer.set_structure(PDBParser(QUIET=True).get_structure("1h1d", str(pdb)))
    writer.save(str(tmp_path / "1h1d_pocket.cif"))
    ligand = (SAMPLE / "1h1d" / "1h1d_ligand.sdf",)
    config = FeaturizeConfig()
    assert same_graph(featurize_record(ComplexRecord("1h1d", pdb, ligand), config),
                      featurize_record(ComplexRecord("1h1d", tmp_path / "1h1d_pocket.cif",
                                                     ligand), config))


def test_a_mol2_library_is_parsed_as_mol2_record_by_record(tmp_path):
    mol2 = SAMPLE / MOL2_FALLBACK_ID / f"{MOL2_FALLBACK_ID}_ligand.mol2"
    library = tmp_path / "two.mol2"
    library.write_bytes(mol2.read_bytes() * 2)
    protein = SAMPLE / MOL2_FALLBACK_ID / f"{MOL2_FALLBACK_ID}_pocket.pdb"
    items = list(iter_ligand_records(library, protein, "two", None, "pk"))
    assert [(i.ligand_format, i.ligand_index) for i in items] == [("mol2", 0), ("mol2", 1)]
    graphs = [featurize_record(i, FeaturizeConfig()) for i in items]
    assert same_graph(*graphs)


def test_a_manifest_row_falls_back_to_the_sibling_mol2_and_excel_headers_are_read(tmp_path):
    """2l1r's SDF fails sanitization; its mol2 sibling loads, as in the PDBbind layout. The
    manifest is Excel's "CSV UTF-8": a byte-order mark and spaces around the header names."""
    shutil.copytree(SAMPLE / MOL2_FALLBACK_ID, tmp_path / MOL2_FALLBACK_ID)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\ufeffid , protein, ligand ,label\n"
                        f"{MOL2_FALLBACK_ID},{MOL2_FALLBACK_ID}/{MOL2_FALLBACK_ID}_pocket.pdb,"
                        f"{MOL2_FALLBACK_ID}/{MOL2_FALLBACK_ID}_ligand.sdf,5.0\n",
                        encoding="utf-8")
    (record,) = read_manifest(manifest).records
    assert [p.suffix for p in record.ligand_files] == [".sdf", ".mol2"]
    assert featurize_record(record, FeaturizeConfig())["ligand"].x.shape[0] > 0


def test_a_manifest_missing_columns_shows_the_header_it_read(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("name;protein;ligand\nx;p.pdb;l.sdf\n")
    with pytest.raises(InputError, match=r"missing \['id', 'ligand', 'protein'\] \(the header "
                                         r"read is \['name;protein;ligand'\]\)"):
        read_manifest(manifest)


def test_a_protein_directory_is_named_as_such(tmp_path):
    config = PredictConfig(protein=str(tmp_path), ligands=str(SAMPLE / "1h1d" / "1h1d_ligand.sdf"))
    with pytest.raises(InputError, match=r"protein=.* is a directory; give a file"):
        read_prediction_inputs(config, FeaturizeConfig())
    with pytest.raises(FeaturizationError, match="the protein is a directory"):
        load_protein(tmp_path, FeaturizeConfig())


def test_a_hydrogen_only_ligand_is_named_as_such():
    block = ("H2\n  test\n\n  2  1  0  0  0  0  0  0  0  0999 V2000\n"
             "    0.0000    0.0000    0.0000 H   0  0\n    0.7400    0.0000    0.1000 H   0  0\n"
             "  1  2  1  0\nM  END\n")
    with pytest.raises(FeaturizationError, match=r"only hydrogens \(2 atoms\), no heavy atom"):
        parse_ligand_block(block, "sdf", "h2.sdf")


def test_a_pdb_of_waters_only_is_named_as_such(tmp_path):
    lines = [line for line in (SAMPLE / "1h1d" / "1h1d_pocket.pdb").read_text().splitlines()
             if line.startswith("HETATM") and line[17:20] == "HOH"]
    assert lines, "1h1d's pocket has waters"
    waters = tmp_path / "waters.pdb"
    waters.write_text("\n".join(lines) + "\nEND\n")
    with pytest.raises(FeaturizationError, match=r"only waters \(\d+ residues\)"):
        load_protein(waters, FeaturizeConfig())


def test_a_flat_ligand_with_one_stray_z_is_refused_as_2d():
    mol_block = (SAMPLE / "1h1d" / "1h1d_ligand.sdf").read_text().split("$$$$")[0]
    lines = mol_block.splitlines()
    count = int(lines[3][:3])
    for i in range(4, 4 + count):
        lines[i] = lines[i][:20] + f"{0.001 if i == 4 else 0.0:10.4f}" + lines[i][30:]
    with pytest.raises(FeaturizationError, match="no 3D coordinates"):
        parse_ligand_block("\n".join(lines) + "\n", "sdf", "flat.sdf")


def test_a_pdb_cut_inside_a_record_is_truncated_and_a_full_last_record_is_not(tmp_path):
    text = (SAMPLE / "1h1d" / "1h1d_pocket.pdb").read_text()
    atoms = [i for i, line in enumerate(text.splitlines(keepends=True))
             if line.startswith("ATOM")]
    lines = text.splitlines(keepends=True)
    cut = tmp_path / "cut_pocket.pdb"
    cut.write_text("".join(lines[:atoms[len(atoms) // 3]]) + lines[atoms[len(atoms) // 3]][:60])
    with pytest.raises(FeaturizationError, match="ends inside an ATOM/HETATM record"):
        load_protein(cut, FeaturizeConfig())
    whole = tmp_path / "whole_pocket.pdb"  # Uni-FEP ends its files so: no line end, full record
    whole.write_text("".join(lines[:atoms[-1] + 1]).rstrip("\n"))
    assert len(load_protein(whole, FeaturizeConfig())) > 0


def test_a_misspelled_label_property_warns_listing_the_properties_present(tmp_path, caplog):
    protein, ligands = cdk2(tmp_path)
    with caplog.at_level(logging.WARNING, logger="plgraph"):
        items = list(iter_sdf_records(ligands, protein, "cdk2", "r_exp_DG", "dg_kcal_mol"))
    assert all(i.label is None for i in items)
    assert "no record has the property 'r_exp_DG'" in caplog.text and "r_exp_dg" in caplog.text


def test_a_label_far_outside_the_pk_range_fails_its_record(tmp_path):
    protein, ligands = cdk2(tmp_path)
    text = ligands.read_text().split("> <r_exp_dg>\n")
    text[2] = "-1e300" + text[2][text[2].index("\n"):]
    ligands.write_text("> <r_exp_dg>\n".join(text))
    items = list(iter_sdf_records(ligands, protein, "cdk2", "r_exp_dg", "dg_kcal_mol"))
    assert len(items) == 16 and isinstance(items[1], Failure)
    assert "outside the plausible range" in items[1].reason and items[1].ligand_index == 1
    labels = tmp_path / "labels.csv"
    labels.write_text("id,pK\n1h1d,6.1\n2w9r,50\n")  # a Kd in nM given as pK
    good, failures = read_labels(labels)
    assert list(good) == ["1h1d"] and "labels.csv:3: label pK 50" in failures[0].reason


def test_domain_warnings_name_a_clash_a_size_and_a_value_and_pass_a_real_complex():
    config = FeaturizeConfig()
    protein = load_protein(SAMPLE / "1h1d" / "1h1d_pocket.pdb", config)
    ligand = parse_ligand_block((SAMPLE / "1h1d" / "1h1d_ligand.sdf").read_text(), "sdf", "1h1d")
    graph = featurize_complex(ligand, protein, config, "1h1d", cut_pocket=False)
    atoms = graph["ligand"].x.shape[0]
    assert domain_warnings(graph, 6.0, [atoms, atoms]) == []
    (size,) = domain_warnings(graph, 6.0, [atoms * 2, atoms * 3])
    assert size.startswith(f"ligand size: {atoms} heavy atoms")
    (value,) = domain_warnings(graph, 155.2, None)
    assert "predicted pK 155.20 outside the physical range" in value
    conformer = ligand.GetConformer()
    shift = protein.pos[0] - np.asarray(conformer.GetAtomPosition(0))
    for i in range(ligand.GetNumAtoms()):
        conformer.SetAtomPosition(i, np.asarray(conformer.GetAtomPosition(i)) + shift)
    overlapping = featurize_complex(ligand, protein, config, "1h1d", cut_pocket=False)
    (clash,) = domain_warnings(overlapping, 6.0, None)
    assert clash.startswith("clash:") and "closest 0.00 Å" in clash
