"""Input layouts, the processed cache and the seeded split."""

from plgraph.data.dataset import (
    UNCUT_TRAIN,
    ComplexDataset,
    PreparedData,
    capped_training,
    prepare_data,
)

__all__ = ["UNCUT_TRAIN", "ComplexDataset", "PreparedData", "capped_training", "prepare_data"]
