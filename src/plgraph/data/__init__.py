"""Input layouts, the processed cache and the seeded split."""

from plgraph.data.dataset import ComplexDataset, PreparedData, prepare_data

__all__ = ["ComplexDataset", "PreparedData", "prepare_data"]
