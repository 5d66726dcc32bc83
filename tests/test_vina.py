"""Vina terms (plgraph.featurize.vina_terms) on real PDBbind complexes of data/sample: scores of
crystal poses, the terms against Vina's own total, and the poses Vina must not score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE
from rdkit import Chem
from rdkit.Geometry import Point3D

from plgraph.errors import FeaturizationError
from plgraph.featurize import read_ligand_files
from plgraph.featurize.vina_receptor import receptor_pdbqt
from plgraph.featurize.vina_terms import (
    CLASH_SCORE,
    TERMS,
    VINA_WEIGHTS,
    VinaTerms,
    ligand_pdbqt,
    vina_terms,
    vina_terms_by_package,
)

# Crystal poses of real binders: pK 4.5-9.7, in-place Vina -5.5 to -11.5 kcal/mol.
BINDERS = ("1eve", "1h1d", "4lts")


def ligand_of(complex_id: str) -> Chem.Mol:
    folder = SAMPLE / complex_id
    return read_ligand_files([folder / f"{complex_id}_ligand.sdf",
                              folder / f"{complex_id}_ligand.mol2"], complex_id)


def pocket_of(complex_id: str) -> Path:
    return SAMPLE / complex_id / f"{complex_id}_pocket.pdb"


def moved(ligand: Chem.Mol, shift: np.ndarray) -> Chem.Mol:
    copy = Chem.Mol(ligand)
    conformer = copy.GetConformer()
    for index, xyz in enumerate(conformer.GetPositions() + shift):
        conformer.SetAtomPosition(index, Point3D(*xyz))
    return copy


@pytest.fixture(scope="module")
def scored() -> dict[str, VinaTerms]:
    return {complex_id: vina_terms(pocket_of(complex_id), ligand_of(complex_id), complex_id)
            for complex_id in BINDERS}


@pytest.mark.slow
def test_crystal_poses_of_binders_score_finite_and_negative(scored):
    for complex_id, terms in scored.items():
        assert np.isfinite(terms.vector()).all(), complex_id
        assert -15.0 < terms.vina_score < -4.0, (complex_id, terms)
        assert terms.vinardo_score < 0.0, (complex_id, terms)


@pytest.mark.slow
def test_local_optimization_does_not_raise_the_score(scored):
    for complex_id, terms in scored.items():
        assert terms.vina_optimized <= terms.vina_score + 0.01, (complex_id, terms)


@pytest.mark.slow
def test_weighted_terms_reproduce_vinas_intermolecular_sum(scored):
    for complex_id, terms in scored.items():
        weighted = sum(w * getattr(terms, name) for w, name in zip(VINA_WEIGHTS, TERMS,
                                                                    strict=False))
        assert weighted == pytest.approx(terms.vina_inter, abs=0.02 + 0.01 * abs(weighted)), \
            complex_id


@pytest.mark.slow
def test_score_is_the_intermolecular_sum_over_the_rotatable_bond_penalty(scored):
    for complex_id, terms in scored.items():
        penalty = 1.0 + VINA_WEIGHTS[-1] * terms.rotatable_bonds
        assert terms.vina_score == pytest.approx(terms.vina_inter / penalty, abs=0.001), \
            complex_id


@pytest.mark.slow
def test_pairwise_terms_equal_the_vina_packages_own(scored):
    # The package rounds every number to 0.001: equal within that rounding, nothing more.
    for complex_id in ("1eve", "4lts"):
        reference = vina_terms_by_package(pocket_of(complex_id), ligand_of(complex_id),
                                          complex_id)
        difference = np.abs(scored[complex_id].vector() - reference.vector())
        assert difference.max() <= 0.0005 + 1e-9, (complex_id, dict(zip(
            VinaTerms.names(), difference.round(4), strict=True)))


@pytest.mark.slow
def test_same_pose_gives_the_same_numbers(scored):
    again = vina_terms(pocket_of("1h1d"), ligand_of("1h1d"), "1h1d")
    assert np.array_equal(again.vector(), scored["1h1d"].vector())


def test_a_ligand_60_angstrom_away_is_refused():
    ligand = moved(ligand_of("1h1d"), np.array([60.0, 0.0, 0.0]))
    with pytest.raises(FeaturizationError, match=r"1h1d: no protein atom within 12.0 Å"):
        vina_terms(pocket_of("1h1d"), ligand, "1h1d")


def test_a_ligand_30_angstrom_away_is_refused():
    ligand = moved(ligand_of("1h1d"), np.array([30.0, 0.0, 0.0]))
    rule = r"1h1d: only \d+ of the ligand's \d+ heavy atoms .* not in a binding site"
    with pytest.raises(FeaturizationError, match=rule):
        vina_terms(pocket_of("1h1d"), ligand, "1h1d")


@pytest.mark.slow
def test_a_ligand_moved_into_the_protein_is_a_clash():
    ligand = ligand_of("1h1d")
    pos = ligand.GetConformer().GetPositions()
    protein = np.array([[float(line[30:38]), float(line[38:46]), float(line[46:54])]
                        for line in pocket_of("1h1d").read_text().splitlines()
                        if line.startswith("ATOM") and line[76:78].strip() != "H"])
    # onto the protein atoms 6-9 Å from the ligand's centre: into the wall of the pocket
    distance = np.linalg.norm(protein - pos.mean(axis=0), axis=1)
    wall = protein[(distance > 6.0) & (distance < 9.0)].mean(axis=0)
    with pytest.raises(FeaturizationError, match=rf"1h1d: Vina scores the pose \+\d+\.\d "
                                                 rf"kcal/mol in place \(above \+{CLASH_SCORE}\): "
                                                 "the ligand clashes"):
        vina_terms(pocket_of("1h1d"), moved(ligand, wall - pos.mean(axis=0)), "1h1d")


def test_an_element_vina_has_no_type_for_is_refused():
    ligand = Chem.RWMol(ligand_of("1h1d"))
    carbon = next(a for a in ligand.GetAtoms() if a.GetSymbol() == "C")
    carbon.SetAtomicNum(5)
    with pytest.raises(FeaturizationError, match="1h1d: the ligand has B, for which Vina"):
        ligand_pdbqt(ligand.GetMol(), "1h1d")


def test_a_protein_without_hydrogens_is_refused(tmp_path):
    dry = tmp_path / "1h1d_pocket.pdb"
    dry.write_text("".join(line for line in pocket_of("1h1d").read_text()
                           .splitlines(keepends=True) if line[76:78].strip() != "H"))
    pos = ligand_of("1h1d").GetConformer().GetPositions()
    with pytest.raises(FeaturizationError, match="1h1d: 1h1d_pocket.pdb has no hydrogen"):
        receptor_pdbqt(dry, pos, "1h1d")


def test_receptor_keeps_polar_hydrogens_and_types_only_histidine_ring_n_as_acceptors():
    text = receptor_pdbqt(pocket_of("1h1d"), ligand_of("1h1d").GetConformer().GetPositions(),
                          "1h1d")
    atoms = [(line[12:16].strip(), line[17:20], line[77:79].strip())
             for line in text.splitlines()]
    types = {t for _, _, t in atoms}
    assert "HD" in types and "H" not in types  # non-polar hydrogens merged, polar ones kept
    assert {(name, residue) for name, residue, t in atoms if t == "NA"} <= {
        ("ND1", "HIS"), ("NE2", "HIS")}
    assert all(t == "OA" for name, _, t in atoms if name.startswith("O"))
    assert "HOH" not in {residue for _, residue, _ in atoms}


def test_vector_follows_the_names():
    terms = VinaTerms(*[float(i) for i in range(len(VinaTerms.names()))])
    assert terms.vector().tolist() == [getattr(terms, n) for n in VinaTerms.names()]
    assert VinaTerms.names()[:3] == ("vina_score", "vina_optimized", "vinardo_score")
