"""The seeded split: deterministic, disjoint, grouped, saved, verified, never silently changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLE, copy_sample, data_config

from plgraph.config import FeaturizeConfig, SplitConfig
from plgraph.data import prepare_data
from plgraph.data.split import Split, make_split, split_fingerprint, split_path, verify_split
from plgraph.errors import SplitError

# Five small real FEP+ systems (2-3 ligands each): enough groups for a grouped split.
FEP_SYSTEMS = ("scaffold_hopping/TPSB2_3v7t", "opls_stress/fxa_set5", "opls_stress/chk1_set2",
               "macrocycles/ck2_custcore_hotlys", "bayer_macrocycles/wagner_brd4")
SAMPLE_IDS = tuple(sorted(p.name for p in SAMPLE.iterdir() if p.is_dir()
                          and p.name != "processed" and p.name != "3qlb"))[:20]


@pytest.fixture
def twenty(tmp_path: Path) -> Path:
    return copy_sample(tmp_path / "twenty", SAMPLE_IDS)


@pytest.fixture
def fep_systems(fep_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "fep"
    for system in FEP_SYSTEMS:
        (root / system).parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("_protein.pdb", "_ligands.sdf"):
            shutil.copy(fep_root / f"{system}{suffix}", root / f"{system}{suffix}")
    return root


def test_random_split_is_disjoint_complete_and_seeded(twenty, featurize_config):
    cache = prepare_data(data_config(twenty), featurize_config, SplitConfig()).cache
    first = make_split(cache, SplitConfig(seed=1))
    assert make_split(cache, SplitConfig(seed=1)) == first
    assert make_split(cache, SplitConfig(seed=2)) != first
    assert {p: len(ids) for p, ids in first.items()} == {"train": 16, "val": 2, "test": 2}
    everything = first["train"] + first["val"] + first["test"]
    assert sorted(everything) == sorted(cache.ids) and len(set(everything)) == 20


def test_split_is_saved_and_reused(twenty, featurize_config):
    config = data_config(twenty)
    first = prepare_data(config, featurize_config, SplitConfig(seed=5))
    saved = split_path(first.cache, "default")
    assert json.loads(saved.read_text())["parts"] == first.split.parts
    again = prepare_data(config, featurize_config, SplitConfig(seed=5))
    assert again.split == first.split
    assert [g.complex_id for g in again.part("test")] == first.split.parts["test"]


def test_another_seed_under_the_same_name_is_refused_with_the_way_out(twenty, featurize_config):
    config = data_config(twenty)
    prepare_data(config, featurize_config, SplitConfig(seed=5))
    with pytest.raises(SplitError, match=r"seed: saved 5, asked 6.*split.name=<new name>"):
        prepare_data(config, featurize_config, SplitConfig(seed=6))
    with pytest.raises(SplitError, match=r"test: saved 0.1, asked 0.2"):
        prepare_data(config, featurize_config, SplitConfig(seed=5, train=0.7, test=0.2))
    other = prepare_data(config, featurize_config, SplitConfig(name="seed6", seed=6))
    assert other.split.recipe["seed"] == 6
    assert split_path(other.cache, "default").exists() and split_path(other.cache, "seed6").exists()


def test_edited_split_file_is_refused(twenty, featurize_config):
    config = data_config(twenty)
    prepared = prepare_data(config, featurize_config, SplitConfig())
    path = split_path(prepared.cache, "default")
    split = json.loads(path.read_text())
    moved = split["parts"]["test"].pop()
    split["parts"]["train"].append(moved)
    path.write_text(json.dumps(split))
    with pytest.raises(SplitError, match="does not match its fingerprint"):
        prepare_data(config, featurize_config, SplitConfig())
    split["parts"]["val"].append(moved)
    with pytest.raises(SplitError, match=f"{moved} is in both"):
        verify_split(Split.from_json(split), prepared.cache)


def test_grouped_split_never_puts_one_system_in_two_parts(fep_systems, featurize_config):
    config = data_config(fep_systems, layout="series")
    split = SplitConfig(strategy="grouped", train=0.6, val=0.2, test=0.2, seed=3)
    prepared = prepare_data(config, featurize_config, split)
    group_of = {e.id: e.group for e in prepared.cache.entries}
    assert len(set(group_of.values())) == len(FEP_SYSTEMS)
    parts = prepared.split.parts
    groups = {p: {group_of[i] for i in ids} for p, ids in parts.items()}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["val"]
    assert not groups["val"] & groups["test"]
    assert all(parts[p] for p in ("train", "val", "test"))
    assert sorted(sum(parts.values(), [])) == sorted(group_of)


@pytest.fixture
def fep_with_shared_targets(fep_systems: Path, fep_root: Path) -> Path:
    """The five systems plus a second CHK1 and a second FXa series: 7 systems, 5 targets."""
    for system in ("opls_stress/chk1_set3", "opls_stress/fxa_set6"):
        for suffix in ("_protein.pdb", "_ligands.sdf"):
            shutil.copy(fep_root / f"{system}{suffix}", fep_systems / f"{system}{suffix}")
    return fep_systems


def test_target_split_keeps_series_of_one_protein_together(fep_with_shared_targets,
                                                           featurize_config):
    config = data_config(fep_with_shared_targets, layout="series")
    target = {}
    for seed in range(6):
        split = SplitConfig(name=f"t{seed}", strategy="target", train=0.6, val=0.2, test=0.2,
                            seed=seed)
        prepared = prepare_data(config, featurize_config, split)
        target = prepared.split.target_of
        part_of = {i: p for p, ids in prepared.split.parts.items() for i in ids}
        system_of = {e.id: e.group for e in prepared.cache.entries}
        for family in ("chk1", "fxa"):
            parts = {part_of[i] for i in part_of if family in system_of[i]}
            assert len(parts) == 1, (seed, family, parts)
    assert len(set(target.values())) == 5  # 7 systems: the CHK1 and FXa series share a protein
    grouped = [prepare_data(config, featurize_config,
                            SplitConfig(name=f"g{seed}", strategy="grouped", train=0.6, val=0.2,
                                        test=0.2, seed=seed)).split for seed in range(6)]
    # The grouped split, by series, does put one protein on both sides for some seed.
    assert any(len({p for p, ids in split.parts.items() for i in ids if "chk1" in i}) > 1
               for split in grouped)


def test_a_target_split_edited_to_straddle_a_target_is_refused(fep_with_shared_targets,
                                                                featurize_config):
    config = data_config(fep_with_shared_targets, layout="series")
    split_config = SplitConfig(strategy="target", train=0.6, val=0.2, test=0.2, seed=1)
    prepared = prepare_data(config, featurize_config, split_config)
    path = split_path(prepared.cache, "default")
    split = json.loads(path.read_text())
    chk1 = sorted(i for i in split["target_of"] if "chk1" in i)
    home = next(p for p, ids in split["parts"].items() if chk1[0] in ids)
    away = next(p for p in ("train", "val", "test") if p != home)
    split["parts"][home].remove(chk1[0])
    split["parts"][away].append(chk1[0])
    split["fingerprint"] = split_fingerprint(split["parts"])
    path.write_text(json.dumps(split))
    with pytest.raises(SplitError, match="straddles"):
        prepare_data(config, featurize_config, split_config)


def test_grouped_split_without_groups_says_how_to_add_them(twenty, featurize_config):
    with pytest.raises(SplitError, match="has no group: give labels a 'group' column"):
        prepare_data(data_config(twenty), featurize_config, SplitConfig(strategy="grouped"))


def test_grouped_split_uses_the_group_column_of_a_labels_csv(twenty, featurize_config):
    labels = twenty / "labels.csv"
    rows = labels.read_text().split()
    grouped = [rows[0] + ",group"] + [f"{row},target{i % 4}" for i, row in enumerate(rows[1:])]
    labels.write_text("\n".join(grouped) + "\n")
    prepared = prepare_data(data_config(twenty), featurize_config,
                            SplitConfig(strategy="grouped", seed=1))
    group_of = {e.id: e.group for e in prepared.cache.entries}
    test_groups = {group_of[i] for i in prepared.split.parts["test"]}
    train_groups = {group_of[i] for i in prepared.split.parts["train"]}
    assert test_groups and not test_groups & train_groups


def test_folds_test_every_complex_exactly_once_and_never_beside_its_group(twenty,
                                                                            featurize_config):
    labels = twenty / "labels.csv"
    rows = labels.read_text().split()
    grouped = [rows[0] + ",group"] + [f"{row},target{i % 7}" for i, row in enumerate(rows[1:])]
    labels.write_text("\n".join(grouped) + "\n")
    folds = [prepare_data(data_config(twenty), featurize_config,
                          SplitConfig(name=f"fold{f}", strategy="grouped", folds=3, fold=f,
                                      train=0.7, val=0.2, seed=2))
             for f in range(3)]
    tested = [i for prepared in folds for i in prepared.split.parts["test"]]
    assert sorted(tested) == sorted(folds[0].cache.ids)  # each complex once
    group_of = folds[0].series_of
    sizes = []
    for prepared in folds:
        parts = prepared.split.parts
        test_groups = {group_of[i] for i in parts["test"]}
        assert not test_groups & {group_of[i] for i in parts["train"] + parts["val"]}
        assert parts["val"] and parts["train"]
        sizes.append(len(parts["test"]))
    assert max(sizes) - min(sizes) <= 3  # groups of 2-3 complexes, dealt to the smallest fold
    assert folds[0].split.recipe["folds"] == 3 and folds[1].split.recipe["fold"] == 1


def test_a_fold_out_of_range_or_without_groups_is_refused():
    with pytest.raises(ValueError, match=r"split.fold must be in 0..2 for split.folds=3"):
        SplitConfig(strategy="family", folds=3, fold=3)
    with pytest.raises(ValueError, match=r"split.folds deals groups into folds: use "):
        SplitConfig(strategy="random", folds=3)


def test_explicit_test_ids_form_the_test_set(twenty, featurize_config, tmp_path):
    ids_file = tmp_path / "core_set.txt"
    ids_file.write_text(f"# CASF-style core set\n{SAMPLE_IDS[0]}\n{SAMPLE_IDS[3]}\n")
    prepared = prepare_data(data_config(twenty), featurize_config,
                            SplitConfig(strategy="ids", test_ids=str(ids_file)))
    parts = prepared.split.parts
    assert parts["test"] == sorted([SAMPLE_IDS[0], SAMPLE_IDS[3]])
    assert len(parts["val"]) == 2 and len(parts["train"]) == 16


def test_a_test_id_that_failed_featurization_is_named_with_its_reason(sample_root,
                                                                       featurize_config,
                                                                       tmp_path):
    ids_file = tmp_path / "test_ids.txt"
    ids_file.write_text("1h1d\n3qlb\n")
    with pytest.raises(SplitError, match=r"test_ids.txt:2: test id '3qlb' cannot be used: it "
                                         r"failed featurization: .*sanitization"):
        prepare_data(data_config(sample_root), featurize_config,
                     SplitConfig(strategy="ids", test_ids=str(ids_file)))


def test_invalid_fractions_fail_before_any_work():
    with pytest.raises(ValueError, match=r"split.train \+ split.val \+ split.test must be 1"):
        SplitConfig(train=0.8, val=0.2, test=0.2)


def test_family_clusters_join_kinases_but_not_unrelated_targets(fep_root):
    """CDK2, JNK1 and p38 (CMGC kinases, 40-50 % identical) are one family but no target at 0.9
    identity; TYK2 (a JAK kinase) joins them only through other kinases, which this set lacks;
    thrombin, BACE1 and MCL1 stay families of their own."""
    from plgraph.data.targets import family_clusters, target_clusters

    names = ("cdk2", "jnk1_manual_flips", "p38", "tyk2", "thrombin_core", "bace",
             "mcl1_extra_flips")
    files = [fep_root / "jacs_set" / f"{name}_protein.pdb" for name in names]
    family = dict(zip(names, (family_clusters(files, 0.2)[f] for f in files), strict=True))
    assert len({family[k] for k in ("cdk2", "jnk1_manual_flips", "p38")}) == 1
    assert len(set(family.values())) == 5
    assert len(set(target_clusters(files, 0.9).values())) == 7


def test_clusters_are_computed_once_per_process_for_unchanged_files(tmp_path, fep_root):
    """An experiment splits the same proteins once per seed; a changed file is clustered anew."""
    import os
    import shutil

    from plgraph.data.targets import family_clusters

    files = [tmp_path / f"{name}_protein.pdb" for name in ("cdk2", "p38")]
    for file in files:
        shutil.copy(fep_root / "jacs_set" / file.name, file)
    before = family_clusters.cache_info()
    first = family_clusters(files, 0.2)
    assert family_clusters(list(reversed(files)), 0.2) == first
    after = family_clusters.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
    stat = files[0].stat()
    os.utime(files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert family_clusters(files, 0.2) == first
    assert family_clusters.cache_info().misses - after.misses == 1


def test_a_family_split_keeps_families_whole_and_no_part_oversized(fep_systems):
    split = SplitConfig(strategy="family", name="fam", train=0.6, val=0.2, test=0.2)
    prepared = prepare_data(data_config(fep_systems, layout="series"), FeaturizeConfig(), split)
    family_of = prepared.split.target_of
    assert prepared.split.recipe["family_similarity"] == 0.2
    parts = {family_of[i]: part for part, ids in prepared.split.parts.items() for i in ids}
    for part, ids in prepared.split.parts.items():
        assert all(parts[family_of[i]] == part for i in ids)
    size = len(prepared.cache)
    for part in ("val", "test"):
        assert len(prepared.split.parts[part]) <= 1.5 * 0.2 * size
