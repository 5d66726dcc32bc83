"""featurize_complex on real complexes: the three graphs, the protein rules, pocket cutting."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SAMPLE

from plgraph import vocab
from plgraph.config import FeaturizeConfig
from plgraph.data.libraries import read_sdf_records
from plgraph.featurize import (
    BOND,
    CONTACT,
    INTERACTION,
    featurize_complex,
    is_pocket_file,
    load_protein,
    parse_ligand_block,
    read_ligand_files,
)

WATER = vocab.RESIDUE_INDEX["water"]
ION = vocab.RESIDUE_INDEX["ion"]
HETERO = vocab.RESIDUE_INDEX["hetero"]


def featurize_sample(complex_id: str, config: FeaturizeConfig | None = None, pocket=None):
    config = config or FeaturizeConfig()
    folder = SAMPLE / complex_id
    ligand = read_ligand_files([folder / f"{complex_id}_ligand.sdf",
                                folder / f"{complex_id}_ligand.mol2"], complex_id)
    protein = load_protein(pocket or folder / f"{complex_id}_pocket.pdb", config)
    return featurize_complex(ligand, protein, config, complex_id, cut_pocket=False)


def test_graphs_have_the_documented_structure():
    graph = featurize_sample("1h1d")
    config = FeaturizeConfig()
    assert graph.complex_id == "1h1d" and graph.processing_version >= 1
    for node_type, spec in (("ligand", vocab.LIGAND_ATOM_FEATURES),
                            ("protein", vocab.PROTEIN_ATOM_FEATURES)):
        x = graph[node_type].x
        assert x.dtype == torch.long and x.shape[1] == len(spec)
        assert (x >= 0).all() and (x < torch.tensor(list(spec.values()))).all()
        assert graph[node_type].pos.shape == (x.shape[0], 3)
    for edge_type in (BOND, CONTACT, INTERACTION):
        index = graph[edge_type].edge_index
        assert index.dtype == torch.long and index.shape[0] == 2 and index.shape[1] > 0
        assert index[0].max() < graph[edge_type[0]].num_nodes
        assert index[1].max() < graph[edge_type[2]].num_nodes
    lig, prot = graph["ligand"].pos, graph["protein"].pos
    src, dst = graph[INTERACTION].edge_index
    distance = (lig[src] - prot[dst]).norm(dim=1)
    assert torch.allclose(distance, graph[INTERACTION].distance, atol=1e-5)
    assert (distance <= config.interaction_cutoff + 1e-5).all()
    everything_close = (torch.cdist(lig, prot) <= config.interaction_cutoff - 1e-4).sum()
    assert src.numel() >= everything_close  # no pair within the cutoff is missing


def test_edges_are_symmetric_and_bonds_match_rdkit():
    graph = featurize_sample("1h1d")
    ligand = read_ligand_files([SAMPLE / "1h1d" / "1h1d_ligand.sdf"], "1h1d")
    assert graph[BOND].edge_index.shape[1] == 2 * ligand.GetNumBonds()
    assert graph["ligand"].num_nodes == ligand.GetNumAtoms()
    assert all(atom.GetAtomicNum() > 1 for atom in ligand.GetAtoms())
    for edge_type in (BOND, CONTACT):
        pairs = set(map(tuple, graph[edge_type].edge_index.T.tolist()))
        assert pairs == {(j, i) for i, j in pairs}
        assert not any(i == j for i, j in pairs)


def test_protein_graph_has_no_hydrogens_and_flags_covalent_bonds():
    graph = featurize_sample("1h1d")
    pocket = (SAMPLE / "1h1d" / "1h1d_pocket.pdb").read_text().splitlines()
    heavy = [line for line in pocket if line.startswith(("ATOM", "HETATM"))
             and line[76:78].strip() != "H" and line[17:20] != "HOH"]
    assert graph["protein"].num_nodes == len(heavy)  # 1h1d: residues, one Mg ion; no water
    assert (graph["protein"].x[:, 1] == ION).sum() == 1
    is_ion = graph["protein"].x[:, 1] == ION
    src, dst = graph[CONTACT].edge_index
    covalent = graph[CONTACT].edge_attr[:, 0] == 1
    lengths = (graph["protein"].pos[src] - graph["protein"].pos[dst]).norm(dim=1)
    residue_bonds = lengths[covalent & ~is_ion[src] & ~is_ion[dst]]
    assert residue_bonds.min() > 1.1 and residue_bonds.max() < 2.1  # C=O ... S-S
    coordination = lengths[covalent & is_ion[src]]
    assert len(coordination) >= 1 and coordination.max() < 2.5  # Mg-O, counted as bonded
    per_atom = torch.bincount(src[covalent], minlength=graph["protein"].num_nodes)
    assert per_atom.max() <= 4 and per_atom.float().mean() > 1.5


def test_waters_are_dropped_unless_kept():
    dropped = featurize_sample("1h1d")
    kept = featurize_sample("1h1d", FeaturizeConfig(keep_waters=True))
    waters = (kept["protein"].x[:, 1] == WATER).sum().item()
    assert (dropped["protein"].x[:, 1] == WATER).sum() == 0
    assert waters == 9 and kept["protein"].num_nodes == dropped["protein"].num_nodes + 9


def test_metal_ions_are_kept_as_ions_unless_hetero_is_dropped():
    with_ions = featurize_sample("3ibi")
    assert (with_ions["protein"].x[:, 1] == ION).sum() >= 1
    assert (with_ions["protein"].x[with_ions["protein"].x[:, 1] == ION, 0]
            == vocab.element_index("Zn")).any()
    without = featurize_sample("3ibi", FeaturizeConfig(keep_hetero=False))
    assert ((without["protein"].x[:, 1] == ION) | (without["protein"].x[:, 1] == HETERO)).sum() == 0


def _ligand_as_hetatm(complex_id: str) -> list[str]:
    ligand = read_ligand_files([SAMPLE / complex_id / f"{complex_id}_ligand.sdf"], complex_id)
    lines = []
    for atom, (x, y, z) in zip(ligand.GetAtoms(), ligand.GetConformer().GetPositions(),
                               strict=True):
        name = f"{atom.GetSymbol()}{atom.GetIdx()}"[:4]
        lines.append(f"HETATM{9000 + atom.GetIdx():5d} {name:<4} LIG X 900    "
                     f"{x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00          {atom.GetSymbol():>2}")
    return lines


def test_a_copy_of_the_ligand_inside_the_protein_file_is_dropped(tmp_path: Path):
    pocket = (SAMPLE / "1h1d" / "1h1d_pocket.pdb").read_text().splitlines()
    with_copy = tmp_path / "1h1d_protein.pdb"
    with_copy.write_text("\n".join([*pocket, *_ligand_as_hetatm("1h1d"), "END"]) + "\n")
    plain = featurize_sample("1h1d")
    graph = featurize_sample("1h1d", pocket=with_copy)
    assert graph["protein"].num_nodes == plain["protein"].num_nodes
    assert torch.equal(graph["protein"].pos, plain["protein"].pos)


def test_only_the_first_alternate_location_is_used(tmp_path: Path):
    lines = (SAMPLE / "1h1d" / "1h1d_pocket.pdb").read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("ATOM")
                 and line[12:16].strip() == "CB")
    alt_a = lines[first][:16] + "A" + lines[first][17:]
    shifted = f"{float(lines[first][30:38]) + 1.5:8.3f}"
    alt_b = lines[first][:16] + "B" + lines[first][17:30] + shifted + lines[first][38:]
    lines[first:first + 1] = [alt_b, alt_a]  # B listed first: "first" means altloc A
    altered = tmp_path / "1h1d_pocket.pdb"
    altered.write_text("\n".join(lines) + "\n")
    plain = featurize_sample("1h1d")
    graph = featurize_sample("1h1d", pocket=altered)
    assert torch.equal(graph["protein"].pos, plain["protein"].pos)


def test_featurization_is_deterministic():
    first, second = featurize_sample("2w9r"), featurize_sample("2w9r")
    for key in first.node_types + first.edge_types:
        for attr, value in first[key].items():
            assert torch.equal(value, second[key][attr]), (key, attr)


@pytest.fixture
def brd4(fep_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    for name in ("wagner_brd4_protein.pdb", "wagner_brd4_ligands.sdf"):
        shutil.copy(fep_root / "bayer_macrocycles" / name, tmp_path / name)
    return tmp_path / "wagner_brd4_protein.pdb", tmp_path / "wagner_brd4_ligands.sdf"


def test_a_full_protein_is_cut_to_the_pocket_without_losing_contacts(brd4):
    protein_file, sdf = brd4
    config = FeaturizeConfig()
    assert not is_pocket_file(protein_file)
    protein = load_protein(protein_file, config)
    record = read_sdf_records(sdf, protein_file, "brd4", "r_exp_dg", "dg_kcal_mol", True).records[0]
    ligand = parse_ligand_block(record.ligand_block, "sdf", record.id)
    cut = featurize_complex(ligand, protein, config, record.id, cut_pocket=True)
    whole = featurize_complex(ligand, protein, config, record.id, cut_pocket=False)
    assert cut["protein"].num_nodes < whole["protein"].num_nodes / 2
    assert torch.equal(cut[INTERACTION].distance.sort().values,
                       whole[INTERACTION].distance.sort().values)
    nearest = torch.cdist(cut["protein"].pos, cut["ligand"].pos).min(dim=1).values
    assert nearest.max() < config.pocket_cutoff + 8.0  # whole residues, none far away
    far = torch.cdist(whole["protein"].pos, whole["ligand"].pos).min(dim=1).values
    assert (far <= config.pocket_cutoff).sum() <= cut["protein"].num_nodes


def test_every_ligand_of_a_series_shares_one_parsed_protein(brd4):
    """The protein file is gone after the first ligand: the others can only be featurized from
    the protein parsed for the first, kept once for the series."""
    from collections import OrderedDict

    from plgraph.data.featurizer import featurize_record

    protein_file, sdf = brd4
    config = FeaturizeConfig()
    records = read_sdf_records(sdf, protein_file, "brd4", "r_exp_dg", "dg_kcal_mol", True).records
    proteins: OrderedDict = OrderedDict()
    graphs = [featurize_record(records[0], config, proteins)]
    protein_file.unlink()
    graphs += [featurize_record(r, config, proteins) for r in records[1:]]
    assert list(proteins) == [str(protein_file)] and len(graphs) == 3
    assert len({g.complex_id for g in graphs}) == 3
    assert np.isfinite([g[INTERACTION].distance.min().item() for g in graphs]).all()
