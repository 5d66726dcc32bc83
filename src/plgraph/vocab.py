"""Categorical vocabularies of the node and edge features.

Features are stored as integer category indices (one column per feature) so that the model learns
an embedding per column; the cardinalities below are everything the model needs to know about
featurization, which keeps RDKit and Biopython out of the model. Index 0 of every open vocabulary
is "other": an unseen value never raises and never aliases a real category.

Changing anything here changes the graphs: bump ``DATA_PROCESSING_VERSION``.
"""

from __future__ import annotations

ELEMENTS = (
    "other", "C", "N", "O", "S", "P", "F", "Cl", "Br", "I", "B", "Si", "Se",
    "Zn", "Mg", "Ca", "Mn", "Fe", "Co", "Ni", "Cu", "Na", "K", "Cd", "Hg",
)
ELEMENT_INDEX = {symbol.upper(): i for i, symbol in enumerate(ELEMENTS)}

# Covalent radii in Å (Cordero et al. 2008), for perceiving protein covalent bonds by distance.
COVALENT_RADIUS = {
    "C": 0.76, "N": 0.71, "O": 0.66, "S": 1.05, "P": 1.07, "F": 0.57, "CL": 1.02, "BR": 1.20,
    "I": 1.39, "B": 0.84, "SI": 1.11, "SE": 1.20, "ZN": 1.22, "MG": 1.41, "CA": 1.76,
    "MN": 1.39, "FE": 1.32, "CO": 1.26, "NI": 1.24, "CU": 1.32, "NA": 1.66, "K": 2.03,
    "CD": 1.44, "HG": 1.32,
}
DEFAULT_COVALENT_RADIUS = 1.0
COVALENT_TOLERANCE = 0.45  # Å, the usual slack of distance-based bond perception

METALS = frozenset({"ZN", "MG", "CA", "MN", "FE", "CO", "NI", "CU", "NA", "K", "CD", "HG",
                    "LI", "SR", "BA", "CS", "RB", "AL", "GA", "PT", "AU", "AG", "PB", "W", "MO"})
HALIDE_IONS = frozenset({"CL", "BR", "I", "F"})

# --- ligand atoms ---
DEGREES = 7  # 0..5 bonded heavy atoms, 6 = more
FORMAL_CHARGES = (0, -2, -1, 1, 2)  # index 0 = neutral; anything beyond +-2 maps to "other" (0)
HYBRIDIZATIONS = ("other", "S", "SP", "SP2", "SP3", "SP3D", "SP3D2")
TOTAL_HS = 5  # 0..3 attached hydrogens, 4 = more
# CIP labels, not RDKit's CW/CCW tags: a tag is relative to the order of the atom's bonds, so the
# same centre is CW in one file's atom order and CCW in another's (a pdbqt, a SMILES).
CHIRALITIES = ("other", "none", "R", "S")

LIGAND_ATOM_FEATURES = {
    "element": len(ELEMENTS),
    "degree": DEGREES,
    "formal_charge": len(FORMAL_CHARGES),
    "hybridization": len(HYBRIDIZATIONS),
    "aromatic": 2,
    "total_hs": TOTAL_HS,
    "in_ring": 2,
    "chirality": len(CHIRALITIES),
}

# --- ligand bonds ---
BOND_TYPES = ("other", "SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")
LIGAND_BOND_FEATURES = {"bond_type": len(BOND_TYPES), "conjugated": 2, "in_ring": 2}

# --- protein atoms ---
AMINO_ACIDS = ("ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
               "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL")
# Protonation-state and modified-residue names that mean a standard amino acid.
RESIDUE_ALIASES = {"HID": "HIS", "HIE": "HIS", "HIP": "HIS", "HSD": "HIS", "HSE": "HIS",
                   "HSP": "HIS", "CYX": "CYS", "CYM": "CYS", "ASH": "ASP", "GLH": "GLU",
                   "LYN": "LYS", "ARN": "ARG", "MSE": "MET"}
WATER_NAMES = frozenset({"HOH", "WAT", "DOD", "H2O", "TIP", "TIP3", "SOL"})
RESIDUE_TYPES = ("other", *AMINO_ACIDS, "ion", "water", "hetero")
RESIDUE_INDEX = {name: i for i, name in enumerate(RESIDUE_TYPES)}

BACKBONE_NAMES = frozenset({"N", "CA", "C", "O", "OXT"})
ATOM_ROLES = ("hetero", "backbone", "side_chain")

# The heavy-atom names of the 20 standard residues; others map to "other".
PROTEIN_ATOM_NAMES = (
    "other", "N", "CA", "C", "O", "OXT", "CB", "CG", "CG1", "CG2", "CD", "CD1", "CD2", "CE",
    "CE1", "CE2", "CE3", "CZ", "CZ2", "CZ3", "CH2", "ND1", "ND2", "NE", "NE1", "NE2", "NH1",
    "NH2", "NZ", "OD1", "OD2", "OE1", "OE2", "OG", "OG1", "OH", "SD", "SG",
)
PROTEIN_ATOM_NAME_INDEX = {name: i for i, name in enumerate(PROTEIN_ATOM_NAMES)}

PROTEIN_ATOM_FEATURES = {
    "element": len(ELEMENTS),
    "residue_type": len(RESIDUE_TYPES),
    "atom_role": len(ATOM_ROLES),
    "atom_name": len(PROTEIN_ATOM_NAMES),
}
PROTEIN_EDGE_FEATURES = {"covalent": 2}


def element_index(symbol: str) -> int:
    """The vocabulary index of an element symbol (case-insensitive); 0 for other elements."""
    return ELEMENT_INDEX.get(symbol.strip().upper(), 0)

# The Vina terms of a pose (plgraph.featurize.vina_terms.VinaTerms, in its field order), as the
# cache stores them with featurize.vina_terms=true and the model reads them (model.anchor=vina,
# vina_terms, model.vina_readout). Energies in kcal/mol; VinaTerms checks that its fields match.
VINA_TERMS = ("vina_score", "vina_optimized", "vinardo_score", "vina_inter", "vina_intra",
              "gauss1", "gauss2", "repulsion", "hydrophobic", "hbond", "rotatable_bonds")
# A ligand's whole-molecule descriptors (plgraph.featurize.ligand.ligand_descriptors, in this
# order), stored with every graph as ``descriptors`` [1, len] and read by model.descriptor_readout.
# A linear fit on them and the Vina terms ranks unseen-family series better than either alone
# (bench/README.md, "Ligand descriptors"). The heavy-atom count is not among them: the size term
# and the heavy-atom anchor read it from the graph.
LIGAND_DESCRIPTORS = ("crippen_logp", "tpsa", "h_donors", "h_acceptors", "rotatable_bonds",
                      "aromatic_rings", "fraction_csp3", "molecular_weight", "formal_charge",
                      "halogens", "rings", "crippen_mr")
# What the within-series fit reads (model.anchor=vina_descriptors, the series_fit baseline;
# PreparedData.series_fit_inputs), in this order.
SERIES_FIT_INPUTS = (*VINA_TERMS, *LIGAND_DESCRIPTORS, "heavy_atoms")
# The whole docking scores among them, by the baseline each is (reports, predict.py's summary).
DOCKING_SCORES = {"vina": "vina_score", "vina_optimized": "vina_optimized",
                  "vinardo": "vinardo_score"}
