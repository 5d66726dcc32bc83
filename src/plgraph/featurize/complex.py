"""``featurize_complex``: the one function that turns a ligand pose and a protein into graphs.

Training (the processed cache) and prediction both call it, so both see identical structures.
"""

from __future__ import annotations

import numpy as np
import torch
from rdkit import Chem
from scipy.spatial import cKDTree
from torch_geometric.data import HeteroData

from plgraph.config import FeaturizeConfig
from plgraph.errors import FeaturizationError
from plgraph.featurize.ligand import (
    ligand_atom_features,
    ligand_bonds,
    ligand_descriptors,
    ligand_positions,
)
from plgraph.featurize.protein import ProteinAtoms, cut_around_ligand, protein_edges

# Bump on ANY change to what the graphs contain (features, vocabularies, edge rules, dtypes,
# posing). 2: ligands given as SMILES are posed (featurize.posing joins the config). 3: the
# posing core is grown from a RASCAL seed and embeddings stop at the first clash-free round.
# 4: posing's embeddings after the first round go without ETKDG's torsion knowledge. 5: a ligand
# read from a file has its stereo centres from its pose and its hydrogens counted (an aromatic
# CH counted none), and the chirality feature is the CIP label (R/S), not the atom-order-relative
# CW/CCW tag. 6: a PDB file keeps the atoms of a residue defined twice in one chain (a second
# chain under the same chain ID with restarted numbering, as PDBbind's homodimer pockets: 2p3a
# had 248 of its 471 heavy atoms), which Biopython dropped; a heavy atom it still drops is an error.
# 7: posing's core search stops at a count of steps (featurize.posing.mcs_steps), the same on
# every machine, instead of at 2 s, which posed other ligands on a slower or busier machine.
# 8: every graph carries its ligand's whole-molecule descriptors (``descriptors``,
# vocab.LIGAND_DESCRIPTORS), for model.descriptor_readout and the descriptor baselines.
# Caches and checkpoints stamped with another version are refused, never silently reused.
DATA_PROCESSING_VERSION = 8

LIGAND = "ligand"
PROTEIN = "protein"
BOND = (LIGAND, "bond", LIGAND)
CONTACT = (PROTEIN, "contact", PROTEIN)
INTERACTION = (LIGAND, "interacts", PROTEIN)


def featurize_complex(ligand: Chem.Mol, protein: ProteinAtoms, config: FeaturizeConfig,
                      complex_id: str, cut_pocket: bool) -> HeteroData:
    """Build the ligand, protein and interaction graphs of one complex.

    Args:
        ligand: a sanitized, hydrogen-free RDKit molecule with a 3D conformer (see
            :func:`plgraph.featurize.ligand.parse_ligand_block`).
        protein: the parsed protein or pocket (:func:`plgraph.featurize.protein.load_protein`).
        config: cutoffs and rules.
        complex_id: stored on the graph and named in errors.
        cut_pocket: cut ``protein`` to the residues near the ligand (a full protein) or use it as
            given (a pocket file).

    Returns:
        A ``HeteroData`` with node types ``ligand`` / ``protein`` (``x``: categorical features,
        ``pos``: Å), edge types ``bond`` (ligand covalent bonds), ``contact`` (protein pairs within
        ``protein_edge_cutoff``) and ``interacts`` (ligand -> protein within
        ``interaction_cutoff``, with ``distance`` in Å), the ligand's ``descriptors``
        ``[1, len(vocab.LIGAND_DESCRIPTORS)]``, stamped with the processing version.

    Raises:
        FeaturizationError: no protein atom lies within the interaction cutoff of the ligand.
    """
    ligand_pos = ligand_positions(ligand)
    pocket = cut_around_ligand(protein, ligand_pos, cut_pocket, config)
    interaction_index, distance = interaction_edges(ligand_pos, pocket.pos,
                                                    config.interaction_cutoff)
    if distance.size == 0:
        raise FeaturizationError(
            f"{complex_id}: no protein atom within {config.interaction_cutoff} Å of the ligand "
            "(wrong protein, or ligand and protein in different coordinate frames?)")
    bond_index, bond_attr = ligand_bonds(ligand)
    contact_index, contact_attr = protein_edges(pocket, config.protein_edge_cutoff)

    data = HeteroData()
    data[LIGAND].x = torch.from_numpy(ligand_atom_features(ligand))
    data[LIGAND].pos = torch.from_numpy(ligand_pos.astype(np.float32))
    data[PROTEIN].x = torch.from_numpy(pocket.features)
    data[PROTEIN].pos = torch.from_numpy(pocket.pos.astype(np.float32))
    data[BOND].edge_index = torch.from_numpy(bond_index)
    data[BOND].edge_attr = torch.from_numpy(bond_attr)
    data[CONTACT].edge_index = torch.from_numpy(contact_index)
    data[CONTACT].edge_attr = torch.from_numpy(contact_attr)
    data[INTERACTION].edge_index = torch.from_numpy(interaction_index)
    data[INTERACTION].distance = torch.from_numpy(distance.astype(np.float32))
    data.descriptors = torch.from_numpy(ligand_descriptors(ligand)).unsqueeze(0)
    data.complex_id = complex_id
    data.processing_version = DATA_PROCESSING_VERSION
    return data


def interaction_edges(ligand_pos: np.ndarray, protein_pos: np.ndarray,
                      cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Ligand -> protein atom pairs within ``cutoff`` Å, sorted, with their distances (Å)."""
    pairs = cKDTree(ligand_pos).query_ball_tree(cKDTree(protein_pos), cutoff)
    src = np.repeat(np.arange(len(pairs), dtype=np.int64), [len(p) for p in pairs])
    dst = np.fromiter((j for p in pairs for j in sorted(p)), dtype=np.int64, count=len(src))
    distance = np.linalg.norm(ligand_pos[src] - protein_pos[dst], axis=1)
    return np.stack([src, dst]), distance
