"""A PDB file keeps every atom: a residue defined twice in one chain (PDBbind's homodimer pockets,
both chains under a blank chain ID with restarted numbering) is a second chain, not a duplicate
that Biopython drops; what Biopython still drops is refused, never silent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE

from plgraph import vocab
from plgraph.config import FeaturizeConfig
from plgraph.errors import FeaturizationError
from plgraph.featurize import featurize_complex, load_protein, read_ligand_files
from plgraph.featurize.protein import split_repeated_residues

# data/sample pockets with a residue key that recurs after other residues (the heavy atoms that
# Biopython kept of them before DATA_PROCESSING_VERSION 6 in the comment).
REPEATED = {
    "2p3a": "HIV protease, second chain restarts at 8 (248 of 471)",
    "2pv2": "second chain restarts at 173 (387 of 738)",
    "1hte": "second chain restarts at 25 (292 of 373)",
    "3mg6": "second chain, other residue names on some numbers (423 of 479)",
    "2b1i": "one histidine 74 twice (407 of 417)",
    "2w8w": "SER 132 and MET 136 twice (460 of 474)",
    "2y2k": "PHE 490 twice (353 of 364)",
    "3gzn": "GLY 75 where ILE 75 was (415 of 423)",
}


def _atom(serial: int, name: str, residue: str, number: int, xyz, element: str,
          chain: str = " ", altloc: str = " ", icode: str = " ") -> str:
    x, y, z = xyz
    return (f"ATOM  {serial:5d} {name:<4}{altloc}{residue:>3} {chain}{number:4d}{icode}   "
            f"{x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00          {element:>2}")


def _glycine(serial: int, number: int, shift: float, **kwargs) -> list[str]:
    atoms = (("N", "N", 0.0), ("CA", "C", 1.45), ("C", "C", 2.0), ("O", "O", 3.2),
             ("H", "H", -0.9))
    return [_atom(serial + i, name, "GLY", number, (shift + dx, 0.0, 0.0), element, **kwargs)
            for i, (name, element, dx) in enumerate(atoms)]


def _heavy_non_water_coordinates(path: Path) -> np.ndarray:
    """The file's heavy non-water atoms read by columns: what load_protein must keep of a pocket
    without altlocs (all hetero groups kept: the default keep_hetero)."""
    rows = []
    for line in path.read_text().splitlines():
        if not line.startswith(("ATOM  ", "HETATM")) or line[17:20].strip() in vocab.WATER_NAMES:
            continue
        if (line[76:78].strip() or line[12:16].strip().lstrip("0123456789")[:1]) in ("H", "D"):
            continue
        assert line[16] == " ", "the oracle counts pockets without altlocs"
        rows.append([float(line[30:38]), float(line[38:46]), float(line[46:54])])
    return np.asarray(rows)


def _sorted_rows(pos: np.ndarray) -> np.ndarray:
    pos = np.round(pos, 3)
    return pos[np.lexsort(pos.T[::-1])]


@pytest.mark.parametrize("complex_id", sorted(REPEATED))
def test_a_residue_defined_twice_keeps_every_heavy_atom(complex_id):
    path = SAMPLE / complex_id / f"{complex_id}_pocket.pdb"
    protein = load_protein(path, FeaturizeConfig())
    expected = _heavy_non_water_coordinates(path)
    assert len(protein) == len(expected), REPEATED[complex_id]
    np.testing.assert_allclose(_sorted_rows(protein.pos), _sorted_rows(expected), atol=1e-3)


def test_the_homodimer_pocket_graph_has_both_chains():
    config = FeaturizeConfig()
    folder = SAMPLE / "2p3a"
    ligand = read_ligand_files([folder / "2p3a_ligand.sdf", folder / "2p3a_ligand.mol2"], "2p3a")
    graph = featurize_complex(ligand, load_protein(folder / "2p3a_pocket.pdb", config), config,
                              "2p3a", cut_pocket=False)
    assert graph["protein"].num_nodes == 471  # was 248: the second chain was missing


def test_two_blank_chains_with_restarted_numbering_are_two_chains(tmp_path: Path):
    first = _glycine(1, 1, 0.0) + _glycine(6, 2, 4.0)
    second = _glycine(11, 1, 20.0) + _glycine(16, 2, 24.0)  # no TER, same blank chain ID
    path = tmp_path / "dimer_pocket.pdb"
    path.write_text("\n".join([*first, *second, "END"]) + "\n")
    protein = load_protein(path, FeaturizeConfig())
    assert len(protein) == 16  # 4 residues of 4 heavy atoms; Biopython alone kept 8
    assert len(np.unique(protein.residue_index)) == 4
    split = split_repeated_residues(path.read_text(), "dimer").splitlines()
    assert {line[21] for line in split[:10]} == {" "}
    assert {line[21] for line in split[10:20]} == {"A"}  # the first chain ID the file leaves free


def test_a_file_without_a_repeated_residue_is_parsed_as_given():
    # 1h1d's waters reuse residue numbers of the protein: Biopython keys them apart (HETATM
    # flag W), so they are not repeats.
    text = (SAMPLE / "1h1d" / "1h1d_pocket.pdb").read_text()
    assert split_repeated_residues(text, "1h1d") == text


def test_insertion_codes_are_residues_of_their_own(tmp_path: Path):
    lines = _glycine(1, 52, 0.0) + _glycine(6, 52, 4.0, icode="A") + _glycine(11, 53, 8.0)
    text = "\n".join([*lines, "END"]) + "\n"
    assert split_repeated_residues(text, "icode") == text
    path = tmp_path / "icode_pocket.pdb"
    path.write_text(text)
    protein = load_protein(path, FeaturizeConfig())
    assert len(protein) == 12 and len(np.unique(protein.residue_index)) == 3


def test_altlocs_stay_alternates_of_one_residue(tmp_path: Path):
    # a point mutation (SER / ALA on one number, altlocs A and B, consecutive records), and the
    # alternates of residue 1 listed after residue 2: both still one residue, first altloc used
    mutation = [_atom(1, "N", "SER", 1, (0, 0, 0), "N", altloc="A"),
                _atom(2, "CA", "SER", 1, (1.45, 0, 0), "C", altloc="A"),
                _atom(3, "OG", "SER", 1, (1.45, 1.4, 0), "O", altloc="A"),
                _atom(4, "N", "ALA", 1, (0, 0, 0.3), "N", altloc="B"),
                _atom(5, "CA", "ALA", 1, (1.45, 0, 0.3), "C", altloc="B")]
    apart = [*_glycine(6, 1, 10.0, altloc="A"), *_glycine(11, 2, 14.0),
             *_glycine(16, 1, 10.5, altloc="B")]
    for name, lines in (("mutation", mutation), ("apart", apart)):
        text = "\n".join([*lines, "END"]) + "\n"
        assert split_repeated_residues(text, name) == text, name
    path = tmp_path / "altloc_pocket.pdb"
    path.write_text("\n".join([*apart, "END"]) + "\n")
    protein = load_protein(path, FeaturizeConfig())
    assert len(protein) == 8 and protein.pos[:, 0].min() == pytest.approx(10.0)
    assert not np.isclose(protein.pos[:, 0], 10.5).any()  # altloc B of residue 1 is not used


def test_a_heavy_atom_biopython_would_drop_is_refused(tmp_path: Path):
    lines = _glycine(1, 1, 0.0)
    lines.insert(2, _atom(9, "CA", "GLY", 1, (1.5, 1.0, 0.0), "C"))  # CA twice in one residue
    path = tmp_path / "twice_pocket.pdb"
    path.write_text("\n".join([*lines, "END"]) + "\n")
    with pytest.raises(FeaturizationError, match=r"twice_pocket.pdb: line 3: Biopython would "
                                                 r"drop this atom \(Atom CA defined twice"):
        load_protein(path, FeaturizeConfig())


def test_a_hydrogen_biopython_drops_is_harmless(fep_root):
    # bace's TLA names two hydrogens HO; the graphs hold heavy atoms only
    protein = load_protein(fep_root / "jacs_set" / "bace_protein.pdb", FeaturizeConfig())
    assert len(protein) == 3070
