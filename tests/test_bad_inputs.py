"""Bad input gets a clear error naming the file / complex and the rule, and nothing else is lost.

Every case damages a copy of a real complex (data/sample) or of a real FEP+ system in tmp_path:
truncated, emptied, given foreign bytes, NaN or flat coordinates, moved away, deleted,
duplicated. A failure must be recorded (``ReadResult.failures``, a ``FeaturizationError`` or
``meta.json``), its message must name the file or complex and the rule, and the undamaged
complexes beside it must still be processed.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import BROKEN_ID, MOL2_FALLBACK_ID, copy_sample, data_config

from plgraph.config import FeaturizeConfig, SplitConfig
from plgraph.data import prepare_data
from plgraph.data.featurizer import featurize_record
from plgraph.data.layouts import read_inputs
from plgraph.data.records import ReadResult
from plgraph.errors import FeaturizationError, InputError, TooManyFailuresError
from plgraph.featurize import parse_ligand_block, read_ligand_files

VICTIM, BYSTANDER = "1pum", "2ohk"  # small real complexes: one gets damaged, one stays good
BRD4 = "bayer_macrocycles/wagner_brd4"  # 3 ligands: 61a, 25e, 11
TPSB2 = "scaffold_hopping/TPSB2_3v7t"  # 2 ligands
Move = Callable[[float, float, float], tuple[float, float, float]]


# --- damaging copies ---------------------------------------------------------------------------

def writable(path: Path) -> Path:
    """Copies keep data/sample's read-only mode; damage needs write access."""
    path.chmod(0o644)
    return path


def edit_lines(path: Path, edit: Callable[[list[str]], None]) -> None:
    lines = path.read_text().splitlines(keepends=True)
    edit(lines)
    writable(path).write_text("".join(lines))


def set_line(path: Path, index: int, text: str) -> None:
    edit_lines(path, lambda lines: lines.__setitem__(index, text))


def inject_byte(path: Path, line: int, byte: bytes) -> None:
    """Put a non-UTF-8 ``byte`` at the end of 1-based ``line`` (before its newline)."""
    lines = path.read_bytes().splitlines(keepends=True)
    lines[line - 1] = lines[line - 1].rstrip(b"\n") + byte + b"\n"
    writable(path).write_bytes(b"".join(lines))


def atom_line(lines: list[str], nth: int = 0) -> int:
    """Index of the ``nth`` heavy-atom ATOM record of a PDB (hydrogens are dropped anyway)."""
    return [i for i, line in enumerate(lines)
            if line.startswith("ATOM  ") and line[76:78].strip() != "H"][nth]


def record_starts(lines: list[str]) -> list[int]:
    """Index of the title line of every record of a V2000 SDF."""
    return [0] + [i + 1 for i, line in enumerate(lines[:-1]) if line.startswith("$$$$")]


def move_sdf_atoms(path: Path, move: Move, records: tuple[int, ...] | None = None) -> None:
    """Rewrite the V2000 atom coordinates of ``records`` (all by default) through ``move``."""
    def edit(lines: list[str]) -> None:
        for number, start in enumerate(record_starts(lines)):
            if records is not None and number not in records:
                continue
            for i in range(start + 4, start + 4 + int(lines[start + 3][:3])):
                x, y, z = move(*(float(lines[i][k:k + 10]) for k in (0, 10, 20)))
                lines[i] = f"{x:10.4f}{y:10.4f}{z:10.4f}{lines[i][30:]}"
    edit_lines(path, edit)


def move_mol2_atoms(path: Path, move: Move) -> None:
    def edit(lines: list[str]) -> None:
        in_atoms = False
        for i, line in enumerate(lines):
            if line.startswith("@<TRIPOS>"):
                in_atoms = line.startswith("@<TRIPOS>ATOM")
            elif in_atoms and line.strip():
                fields = line.split()
                x, y, z = move(*map(float, fields[2:5]))
                lines[i] = (f"{fields[0]:>7} {fields[1]:<8} {x:10.4f} {y:10.4f} {z:10.4f} "
                            + " ".join(fields[5:]) + "\n")
    edit_lines(path, edit)


def move_ligand(folder: Path, move: Move) -> None:
    """Move the ligand in every format, so that no fallback can rescue the complex."""
    move_sdf_atoms(ligand(folder, "sdf"), move)
    move_mol2_atoms(ligand(folder, "mol2"), move)


def flatten(x: float, y: float, z: float) -> tuple[float, float, float]:
    return x, y, 0.0


def far_away(x: float, y: float, z: float) -> tuple[float, float, float]:
    return x + 100.0, y + 100.0, z + 100.0


def pocket(folder: Path) -> Path:
    return folder / f"{folder.name}_pocket.pdb"


def ligand(folder: Path, fmt: str) -> Path:
    return folder / f"{folder.name}_ligand.{fmt}"


# --- reading and featurizing -------------------------------------------------------------------

@pytest.fixture
def pair(tmp_path: Path) -> Path:
    """The victim and a bystander in PDBbind layout."""
    return copy_sample(tmp_path / "data", (VICTIM, BYSTANDER))


@pytest.fixture
def series(fep_root: Path, tmp_path: Path) -> Path:
    """Two small real FEP+ systems (protein PDB + ligands SDF) in series layout."""
    root = tmp_path / "fep"
    for system in (BRD4, TPSB2):
        (root / system).parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("_protein.pdb", "_ligands.sdf"):
            writable(Path(shutil.copy(fep_root / f"{system}{suffix}", root / f"{system}{suffix}")))
    return root


def read(root: Path, **overrides) -> ReadResult:
    return read_inputs(data_config(root, **overrides), FeaturizeConfig())


def reasons(result: ReadResult) -> dict[str, str]:
    return {f.id: f.reason for f in result.failures}


def system_failures(result: ReadResult, system: str) -> set[str]:
    """The reasons of a series' failures, whether recorded per system or per ligand."""
    return {f.reason for f in result.failures if f.id == system or f.id.startswith(f"{system}/")}


def featurize_outcome(root: Path, **overrides) -> dict[str, str]:
    """Read and featurize every record: ``id -> "ok"`` or the FeaturizationError message."""
    outcome = {}
    for record in read(root, **overrides).records:
        try:
            featurize_record(record, FeaturizeConfig())
            outcome[record.id] = "ok"
        except FeaturizationError as error:
            outcome[record.id] = str(error)
    return outcome


def victim_error(root: Path) -> str:
    """The FeaturizationError of the victim, after checking that the bystander still works."""
    outcome = featurize_outcome(root)
    assert outcome[BYSTANDER] == "ok"
    assert outcome[VICTIM] != "ok", f"{VICTIM} was featurized despite the damage"
    return outcome[VICTIM]


def prepare(root: Path, tmp_path: Path, fraction: float = 0.5, **overrides):
    config = data_config(root, processed_dir=str(tmp_path / "processed"),
                         max_failure_fraction=fraction, **overrides)
    return prepare_data(config, FeaturizeConfig(), SplitConfig())


def cached_failures(tmp_path: Path) -> dict[str, str]:
    meta = json.loads((tmp_path / "processed" / "meta.json").read_text())
    assert meta["counts"]["failed"] == len(meta["failures"])
    return {f["id"]: f["reason"] for f in meta["failures"]}


# --- protein files ------------------------------------------------------------------------------

def test_an_empty_pdb_is_recorded_in_meta_and_the_other_complex_is_cached(pair, tmp_path):
    writable(pocket(pair / VICTIM)).write_text("")
    prepared = prepare(pair, tmp_path)
    assert prepared.cache.ids == [BYSTANDER]
    reason = cached_failures(tmp_path)[VICTIM]
    assert str(pocket(pair / VICTIM)) in reason and "empty" in reason


@pytest.mark.parametrize("cut", [34, 42], ids=["inside-x", "inside-y"])
def test_a_pdb_cut_inside_the_coordinates_names_the_file_and_the_line(pair, cut):
    path = pocket(pair / VICTIM)
    lines = path.read_text().splitlines(keepends=True)
    k = atom_line(lines, 40)
    writable(path).write_text("".join(lines[:k]) + lines[k][:cut])
    error = victim_error(pair)
    assert str(path) in error and "coordinate" in error and f"line {k + 1}" in error


def test_a_pdb_cut_inside_the_z_coordinate_is_not_silently_accepted(pair):
    path = pocket(pair / VICTIM)
    lines = path.read_text().splitlines(keepends=True)
    k = atom_line(lines, 40)
    writable(path).write_text("".join(lines[:k]) + lines[k][:51])  # z is columns 47-54
    error = victim_error(pair)
    assert str(path) in error and f"line {k + 1}" in error


def test_a_pdb_with_letters_in_a_coordinate_names_the_file_and_the_line(pair):
    path = pocket(pair / VICTIM)
    k = atom_line(path.read_text().splitlines())
    line = path.read_text().splitlines(keepends=True)[k]
    set_line(path, k, line[:30] + "  12.3x5" + line[38:])
    error = victim_error(pair)
    assert str(path) in error and "unparsable PDB" in error and f"line {k + 1}" in error


def test_a_pdb_without_atom_records_says_it_has_no_protein_atoms(pair):
    path = pocket(pair / VICTIM)
    writable(path).write_text(ligand(pair / VICTIM, "sdf").read_text())  # a real file, wrong format
    error = victim_error(pair)
    assert str(path) in error and "no ATOM/HETATM records" in error


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_or_inf_protein_coordinates_are_refused(pair, value):
    path = pocket(pair / VICTIM)
    lines = path.read_text().splitlines(keepends=True)
    k = atom_line(lines, 10)
    set_line(path, k, lines[k][:46] + f"{value:>8}" + lines[k][54:])
    error = victim_error(pair)
    assert str(path) in error and "NaN or infinite" in error


# --- ligand files -------------------------------------------------------------------------------

def test_3qlb_fails_in_both_formats_naming_each_reason_and_the_good_ones_are_cached(sample_root,
                                                                                   tmp_path):
    prepared = prepare(sample_root, tmp_path)
    assert BROKEN_ID not in prepared.cache.ids and len(prepared.cache) == 5
    reason = cached_failures(tmp_path)[BROKEN_ID]
    assert reason.startswith(f"{BROKEN_ID}: no usable ligand file")
    assert "3qlb_ligand.sdf: fails RDKit sanitization" in reason and "valence" in reason
    # RDKit's mol2 reader already refuses the O.co2 atom bonded twice, before sanitization
    assert "3qlb_ligand.mol2: RDKit cannot parse it as mol2" in reason and "O.co2" in reason


def test_the_mol2_fallback_recovers_2l1r_whose_sdf_fails_sanitization(sample_root, tmp_path):
    folder = sample_root / MOL2_FALLBACK_ID
    with pytest.raises(FeaturizationError, match="2l1r_ligand.sdf: fails RDKit sanitization"):
        parse_ligand_block(ligand(folder, "sdf").read_text(), "sdf", ligand(folder, "sdf").name)
    from_mol2 = read_ligand_files([ligand(folder, "mol2")], MOL2_FALLBACK_ID)
    prepared = prepare(sample_root, tmp_path)
    assert MOL2_FALLBACK_ID in prepared.cache.ids
    assert MOL2_FALLBACK_ID not in cached_failures(tmp_path)
    graph = prepared.cache[prepared.cache.ids.index(MOL2_FALLBACK_ID)]
    assert graph["ligand"].num_nodes == from_mol2.GetNumAtoms()


def test_a_2d_ligand_is_refused_in_both_formats(pair):
    move_ligand(pair / VICTIM, flatten)
    error = victim_error(pair)
    assert error.startswith(f"{VICTIM}: no usable ligand file")
    for fmt in ("sdf", "mol2"):
        assert f"{VICTIM}_ligand.{fmt}: ligand has no 3D coordinates" in error


def test_a_2d_record_of_a_series_fails_alone(series):
    move_sdf_atoms(series / f"{BRD4}_ligands.sdf", flatten, records=(1,))
    outcome = featurize_outcome(series, layout="series")
    error = outcome.pop(f"{BRD4}/25e")
    assert f"{BRD4}_ligands.sdf: record 1 (25e)" in error and "no 3D coordinates" in error
    assert set(outcome.values()) == {"ok"} and len(outcome) == 4


@pytest.mark.parametrize("value", [math.nan, math.inf], ids=["nan", "inf"])
def test_nan_or_inf_mol2_coordinates_are_refused(pair, value):
    ligand(pair / VICTIM, "sdf").unlink()
    move_mol2_atoms(ligand(pair / VICTIM, "mol2"), lambda x, y, z: (x, value, z))
    error = victim_error(pair)
    assert f"{VICTIM}_ligand.mol2: ligand has NaN or infinite coordinates" in error


def test_a_nan_sdf_coordinate_names_the_file_and_the_line(pair):
    ligand(pair / VICTIM, "mol2").unlink()
    path = ligand(pair / VICTIM, "sdf")
    set_line(path, 6, "       nan" + path.read_text().splitlines(keepends=True)[6][10:])
    error = victim_error(pair)  # RDKit itself refuses a NaN in a V2000 atom line
    assert f"{VICTIM}_ligand.sdf" in error and "coordinates on line 7" in error


def test_a_nan_coordinate_in_a_series_record_fails_that_record_alone(series):
    move_sdf_atoms(series / f"{BRD4}_ligands.sdf", lambda x, y, z: (x, y, math.nan), records=(1,))
    outcome = featurize_outcome(series, layout="series")
    error = outcome.pop(f"{BRD4}/25e")
    assert f"{BRD4}_ligands.sdf: record 1 (25e)" in error and "coordinates" in error
    assert set(outcome.values()) == {"ok"} and len(outcome) == 4


def test_a_bad_coordinate_in_a_series_record_names_the_sdf_and_its_line_in_the_file(series):
    sdf = series / f"{BRD4}_ligands.sdf"
    move_sdf_atoms(sdf, lambda x, y, z: (x, y, math.nan), records=(1,))
    first_atom = record_starts(sdf.read_text().splitlines())[1] + 4
    error = featurize_outcome(series, layout="series")[f"{BRD4}/25e"]
    assert sdf.name in error and f"line {first_atom + 1}" in error


def test_a_ligand_far_from_its_pocket_names_the_complex_and_the_cutoff(pair):
    move_ligand(pair / VICTIM, far_away)
    error = victim_error(pair)
    assert error.startswith(f"{VICTIM}: no protein atom within 5.0 Å of the ligand")


def test_a_ligand_far_from_its_full_protein_fails_that_record_alone(series, tmp_path):
    move_sdf_atoms(series / f"{BRD4}_ligands.sdf", far_away, records=(0,))
    prepared = prepare(series, tmp_path, layout="series")
    assert len(prepared.cache) == 4 and f"{BRD4}/61a" not in prepared.cache.ids
    reason = cached_failures(tmp_path)[f"{BRD4}/61a"]
    assert "no protein atom within 5.0 Å of the ligand" in reason


# --- missing files ------------------------------------------------------------------------------

def _remove_pocket(root: Path) -> None:
    pocket(root / VICTIM).unlink()


def _remove_ligands(root: Path) -> None:
    for fmt in ("sdf", "mol2"):
        ligand(root / VICTIM, fmt).unlink()


def _remove_directory(root: Path) -> None:
    shutil.rmtree(root / VICTIM)


def _remove_label(root: Path) -> None:
    labels = root / "labels.csv"
    edit_lines(labels, lambda lines: lines.remove(next(x for x in lines if x.startswith(VICTIM))))


@pytest.mark.parametrize(("damage", "rule"), [
    (_remove_pocket, "missing protein/pocket PDB (labelled at {labels}:2)"),
    (_remove_ligands, "missing ligand file (labelled at {labels}:2)"),
    (_remove_directory, "missing protein/pocket PDB (labelled at {labels}:2)"),
    (_remove_label, "no label in {labels}"),
], ids=["pocket", "ligand", "labelled-id-without-directory", "directory-without-label"])
def test_a_missing_file_is_a_failure_naming_the_folder_and_what_is_missing(pair, damage, rule):
    damage(pair)
    result = read(pair)
    assert [r.id for r in result.records] == [BYSTANDER]
    assert reasons(result) == {
        VICTIM: f"{pair / VICTIM}: " + rule.format(labels=pair / "labels.csv")}


def test_missing_files_end_to_end_are_in_meta_and_the_rest_is_cached(tmp_path):
    root = copy_sample(tmp_path / "data", (VICTIM, BYSTANDER, "1h1d", "2w9r"))
    _remove_pocket(root)
    ligand(root / "1h1d", "sdf").unlink()  # the mol2 is still there: a fallback, not a failure
    edit_lines(root / "labels.csv", lambda lines: lines.append("9xyz,5.0\n"))
    shutil.rmtree(root / "2w9r")
    prepared = prepare(root, tmp_path, fraction=0.6)  # 3 of 5 inputs fail
    assert prepared.cache.ids == ["1h1d", BYSTANDER]
    failures = cached_failures(tmp_path)
    assert set(failures) == {VICTIM, "2w9r", "9xyz"}
    assert all("missing protein/pocket PDB" in reason for reason in failures.values())


def test_a_series_without_its_protein_fails_whole_and_the_other_series_is_read(series):
    (series / f"{BRD4}_protein.pdb").unlink()
    result = read(series, layout="series")
    assert {r.group for r in result.records} == {TPSB2} and len(result.records) == 2
    assert system_failures(result, BRD4) == {
        f"{series / BRD4}_ligands.sdf: no protein file wagner_brd4_protein.pdb beside it"}


# --- duplicate ids ------------------------------------------------------------------------------

def test_an_id_twice_in_the_labels_csv_rejects_both_copies_naming_both_lines(pair):
    labels = pair / "labels.csv"
    edit_lines(labels, lambda lines: lines.append(f"{VICTIM},4.00\n"))
    result = read(pair)
    assert [r.id for r in result.records] == [BYSTANDER]
    messages = [f.reason for f in result.failures if f.id == VICTIM]
    assert f"{labels}:4: duplicate id (first at {labels}:2)" in messages
    assert f"{labels}:2: id given more than once" in messages
    assert all(f.id == VICTIM for f in result.failures)


def write_manifest(root: Path, rows: list[str]) -> Path:
    manifest = root / "manifest.csv"
    manifest.write_text("id,protein,ligand,label\n" + "".join(f"{row}\n" for row in rows))
    return manifest


def manifest_row(complex_id: str, folder: str, label: str) -> str:
    return f"{complex_id},{folder}/{folder}_pocket.pdb,{folder}/{folder}_ligand.sdf,{label}"


def test_an_id_twice_in_a_manifest_rejects_both_copies(pair):
    manifest = write_manifest(pair, [manifest_row("a", VICTIM, "3.05"),
                                     manifest_row("b", BYSTANDER, "2.7"),
                                     manifest_row("a", BYSTANDER, "2.7")])
    result = read(pair, layout="manifest", labels=str(manifest))
    assert [r.id for r in result.records] == ["b"]
    assert [f.id for f in result.failures] == ["a", "a"]
    assert all("duplicate id 'a'" in f.reason for f in result.failures)


def test_two_sdf_records_with_one_name_reject_both_and_keep_the_rest(series):
    sdf = series / f"{BRD4}_ligands.sdf"
    set_line(sdf, record_starts(sdf.read_text().splitlines())[1], "61a\n")
    result = read(series, layout="series")
    assert f"{BRD4}/11" in {r.id for r in result.records} and len(result.records) == 3
    assert [f.id for f in result.failures] == [f"{BRD4}/61a"] * 2
    assert all(f"duplicate id '{BRD4}/61a'" in f.reason for f in result.failures)


def test_sdf_records_without_a_name_get_distinct_ids_by_position(series):
    sdf = series / f"{BRD4}_ligands.sdf"
    def blank_titles(lines: list[str]) -> None:
        for start in record_starts(lines):
            lines[start] = "\n"
    edit_lines(sdf, blank_titles)
    result = read(series, layout="series")
    assert result.failures == []
    assert {r.id for r in result.records if r.group == BRD4} == {
        f"{BRD4}/record{i}" for i in range(3)}


# --- labels -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["abc", "", "nan", "inf"])
def test_a_missing_or_non_numeric_label_names_the_file_and_line(pair, value):
    labels = pair / "labels.csv"
    set_line(labels, 1, f"{VICTIM},{value}\n")
    result = read(pair)
    assert [r.id for r in result.records] == [BYSTANDER]
    assert reasons(result) == {
        VICTIM: f"{labels}:2: label {value!r} is missing or not a finite number"}


def test_a_missing_or_non_numeric_manifest_label_or_file_is_a_failure(pair):
    manifest = write_manifest(pair, [manifest_row("a", VICTIM, "high"),
                                     manifest_row("b", BYSTANDER, "2.7"),
                                     manifest_row("c", VICTIM, ""),
                                     f"d,{VICTIM}/{VICTIM}_pocket.pdb,{VICTIM}/gone.sdf,3.05"])
    result = read(pair, layout="manifest", labels=str(manifest))
    assert [r.id for r in result.records] == ["b"]
    assert reasons(result) == {
        "a": f"{manifest}:2: label 'high' is missing or not a finite number",
        "c": f"{manifest}:4: label '' is missing or not a finite number",
        "d": f"{manifest}:5: ligand file '{VICTIM}/gone.sdf' not found (relative to {pair})"}


def test_a_non_numeric_series_label_fails_that_record_alone(series):
    sdf = series / f"{BRD4}_ligands.sdf"
    set_line(sdf, sdf.read_text().splitlines(keepends=True).index("-11.3\n"), "n/a\n")
    result = read(series, layout="series")
    assert len(result.records) == 4
    assert reasons(result) == {
        f"{BRD4}/25e": f"{sdf}: record 1 (25e, from line 129): non-numeric 'n/a' in property "
                       "r_exp_dg"}


def test_egfr_records_without_r_exp_dg_are_failures_and_other_series_are_read(fep_root):
    subset = fep_root / "charge_annhil"
    result = read(subset, layout="series")
    failures = reasons(result)
    assert len(failures) == 10 and all(i.startswith("egfr/") for i in failures)
    sdf = subset / "egfr_ligands.sdf"
    assert all(r.startswith(f"{sdf}: record ") and r.endswith(": no property r_exp_dg")
               for r in failures.values())
    assert "egfr" not in {r.group for r in result.records} and len(result.records) > 10


def test_the_2q15_intermediate_without_r_exp_dg_fails_alone(fep_root):
    subset = fep_root / "macrocycles"
    system = "2Q15_lig17to21_alpha05"
    result = read(subset, layout="series")
    assert reasons(result) == {f"{system}/ligand17_int": f"{subset / system}_ligands.sdf: "
                                                         "record 3 (ligand17_int, from line "
                                                         "531): no property r_exp_dg"}
    assert sum(r.group == system for r in result.records) == 5


def test_relative_dg_series_cr_bace1_and_cr_bace2_are_excluded_whole(fep_root):
    subset = fep_root / "opls_stress"
    result = read(subset, layout="series")
    for system in ("cr_bace1", "cr_bace2"):
        sdf = subset / f"{system}_ligands.sdf"
        mine = [f for f in result.failures if f.id.startswith(f"{system}/")]
        assert len(mine) == sdf.read_text().count("$$$$") > 0
        assert all(f.reason.startswith(f"{sdf}: ΔG values span") and "relative" in f.reason
                   and f.reason.endswith("excluded") for f in mine)
    groups = {r.group for r in result.records}
    assert not groups & {"cr_bace1", "cr_bace2"} and {"hc_bace1", "hc_bace2"} <= groups
    assert len(result.failures) == 23


# --- bytes that are not UTF-8 ------------------------------------------------------------------

def test_a_non_utf8_pdb_names_the_file_and_the_line(pair, tmp_path):
    path = pocket(pair / VICTIM)
    inject_byte(path, 3, b"\xff")
    prepared = prepare(pair, tmp_path)
    assert prepared.cache.ids == [BYSTANDER]
    assert cached_failures(tmp_path)[VICTIM] == (
        f"{path}: line 3: byte 0xff is not valid UTF-8 (the file is corrupted or in another "
        "encoding)")


def test_a_non_utf8_ligand_sdf_names_the_file_and_the_line(pair):
    ligand(pair / VICTIM, "mol2").unlink()
    path = ligand(pair / VICTIM, "sdf")
    inject_byte(path, 3, "é".encode("latin-1"))
    error = victim_error(pair)
    assert f"{path}: line 3: byte 0xe9 is not valid UTF-8" in error


def test_a_non_utf8_byte_fails_only_its_sdf_record_and_only_in_the_atom_block(series):
    """Split first, decode per record: a Latin-1 byte in a header line or a property of one
    record costs nothing; in another record's atom block it fails that record alone, naming the
    file line."""
    sdf = series / f"{BRD4}_ligands.sdf"
    lines = sdf.read_bytes().splitlines(keepends=True)
    end_of_1 = [i for i, line in enumerate(lines) if line.startswith(b"$$$$")][1]
    lines[end_of_1:end_of_1] = [b"> <assay>\n", "Kd in µM\n".encode("latin-1"), b"\n"]
    writable(sdf).write_bytes(b"".join(lines))  # record 1: a property the app does not read
    starts = [0] + [i + 1 for i, line in enumerate(lines) if line.startswith(b"$$$$")][:-1]
    inject_byte(sdf, starts[0] + 3, b"\xf6")  # record 0: the header's comment line
    inject_byte(sdf, starts[2] + 5, b"\xb5")  # record 2: its first atom line
    result = read(series, layout="series", label_property="r_exp_dg")
    brd4 = [r for r in result.records if r.group == BRD4]
    assert [r.ligand_index for r in brd4] == [0, 1]
    (reason,) = system_failures(result, BRD4)
    assert reason.endswith(f"line {starts[2] + 5}: byte 0xb5 in the molecule block is not valid "
                           "UTF-8") and "record 2" in reason
    assert len([r for r in result.records if r.group == TPSB2]) == 2


def test_a_non_utf8_labels_file_is_refused_naming_the_file_and_the_line(pair):
    labels = pair / "labels.csv"
    inject_byte(labels, 3, b"\xa0")
    with pytest.raises(InputError, match=r"labels\.csv: line 3: byte 0xa0 is not valid UTF-8"):
        read(pair)


# --- PDBbind INDEX label files -----------------------------------------------------------------

INDEX = ("# ==== PDBbind INDEX, the format of INDEX_refined_data.2016\n"
         "# PDB code, resolution, release year, -logKd/Ki, Kd/Ki, reference, ligand name\n"
         f"{VICTIM}  2.20  2003   3.05  Ki=0.9mM      // {VICTIM}.pdf (GLB)\n"
         f"{BYSTANDER}  1.90  2007   2.70  Kd=2mM        // {BYSTANDER}.pdf (XYZ)\n")


def write_index(root: Path, text: str) -> Path:
    index = root / "INDEX_refined_data.2016"
    index.write_text(text)
    return index


def test_a_non_numeric_pk_in_an_index_file_names_the_file_and_the_line(pair):
    index = write_index(pair, INDEX.replace("3.05", "3.O5"))
    result = read(pair, labels=str(index))
    assert [r.id for r in result.records] == [BYSTANDER]
    assert reasons(result) == {VICTIM: f"{index}:3: label '3.O5' is missing or not a finite number"}


def test_an_index_line_with_too_few_fields_names_the_file_and_the_line(pair):
    index = write_index(pair, INDEX.replace(f"{BYSTANDER}  1.90  2007   2.70  Kd=2mM",
                                            f"{BYSTANDER}  1.90  2007"))
    with pytest.raises(InputError, match=rf"INDEX_refined_data\.2016:4: expected a PDBbind "
                                         rf"INDEX line .*'{BYSTANDER}  1.90  2007'"):
        read(pair, labels=str(index))


def test_a_well_formed_index_file_labels_every_complex(pair):
    result = read(pair, labels=str(write_index(pair, INDEX)))
    assert {r.id: r.label for r in result.records} == {VICTIM: 3.05, BYSTANDER: 2.70}
    assert result.failures == []


# --- the failure fraction -----------------------------------------------------------------------

def test_too_many_failures_raise_listing_them_and_leave_no_cache(sample_root, tmp_path):
    with pytest.raises(TooManyFailuresError) as caught:
        prepare(sample_root, tmp_path, fraction=0.1)  # 1 of 6 (3qlb) is 17%
    message = str(caught.value)
    assert "1 of 6 complexes failed" in message and "data.max_failure_fraction=0.1" in message
    assert f"  {BROKEN_ID}: {BROKEN_ID}: no usable ligand file" in message
    assert not (tmp_path / "processed").exists()
    assert not list(tmp_path.glob("processed.partial-*"))
    report = json.loads((tmp_path / "processed.failures.json").read_text())
    assert [f["id"] for f in report] == [BROKEN_ID] and "sanitization" in report[0]["reason"]


def test_within_the_fraction_meta_lists_every_failure_and_every_good_complex_is_cached(
        sample_root, tmp_path):
    writable(pocket(sample_root / VICTIM)).write_text("")
    move_ligand(sample_root / BYSTANDER, flatten)
    prepared = prepare(sample_root, tmp_path, fraction=0.5)  # 3 of 6 fail: exactly 50%
    assert prepared.cache.ids == ["1h1d", MOL2_FALLBACK_ID, "2w9r"]
    failures = cached_failures(tmp_path)
    assert set(failures) == {VICTIM, BYSTANDER, BROKEN_ID}
    assert "protein file is empty" in failures[VICTIM]
    assert "no 3D coordinates" in failures[BYSTANDER]
    assert "sanitization" in failures[BROKEN_ID]


def test_after_too_many_failures_a_run_with_a_higher_fraction_builds_the_cache(sample_root,
                                                                              tmp_path):
    with pytest.raises(TooManyFailuresError):
        prepare(sample_root, tmp_path, fraction=0.1)
    prepared = prepare(sample_root, tmp_path, fraction=0.2)
    assert len(prepared.cache) == 5 and set(cached_failures(tmp_path)) == {BROKEN_ID}


def test_a_lost_series_counts_all_its_ligands_toward_the_failure_fraction(series, tmp_path):
    (series / f"{BRD4}_protein.pdb").unlink()  # 3 of 5 ligands lost: 60%
    with pytest.raises(TooManyFailuresError):
        prepare(series, tmp_path, fraction=0.5, layout="series")


def test_an_empty_series_sdf_is_recorded_as_a_failure(series):
    sdf = series / f"{BRD4}_ligands.sdf"
    sdf.write_text("")
    result = read(series, layout="series")
    assert any(f.id.startswith(BRD4) and str(sdf) in f.reason for f in result.failures)
