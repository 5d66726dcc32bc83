"""The ViSNet-style network. It sees only tensors: no RDKit, no Biopython."""

from plgraph.model.network import PLGraphNet

__all__ = ["PLGraphNet"]
