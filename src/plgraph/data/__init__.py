"""Input layouts, the processed cache and the seeded split."""

from plgraph.data.dataset import ComplexDataset, PreparedData, capped_training, prepare_data

__all__ = ["ComplexDataset", "PreparedData", "capped_training", "prepare_data"]
