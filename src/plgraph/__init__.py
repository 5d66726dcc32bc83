"""plgraph: protein-ligand binding affinity with graph neural networks."""

__version__ = "0.1.0"
