"""Featurization: the ligand, protein (pocket) and interaction graphs under one version stamp."""

from plgraph.featurize.complex import (
    BOND,
    CONTACT,
    DATA_PROCESSING_VERSION,
    INTERACTION,
    LIGAND,
    PROTEIN,
    featurize_complex,
)
from plgraph.featurize.ligand import parse_ligand_block, read_ligand_files
from plgraph.featurize.protein import ProteinAtoms, is_pocket_file, load_protein

__all__ = [
    "BOND", "CONTACT", "DATA_PROCESSING_VERSION", "INTERACTION", "LIGAND", "PROTEIN",
    "ProteinAtoms", "featurize_complex", "is_pocket_file", "load_protein", "parse_ligand_block",
    "read_ligand_files",
]
