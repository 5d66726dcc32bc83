"""Training-time augmentation: Gaussian noise on atom positions.

A pose is one sample of where the atoms could be: a crystal's coordinates carry ~0.2-0.5 Å of
uncertainty, and the poses plgraph builds from SMILES (``plgraph.featurize.posing``) or a docking
program more than that. A network that reads the exact distances of a few hundred training
proteins can learn them by heart; jittering the positions of every training batch asks it for
what holds over a neighbourhood of the pose instead. The edges stay those of the featurized pose
(they are part of the cached graph); only their lengths and directions move. Validation, test and
prediction always see the pose unperturbed.
"""

from __future__ import annotations

import torch
from torch_geometric.data import HeteroData

from plgraph.model.graph import LIGAND, PROTEIN


def jitter_positions(batch: HeteroData, std: float) -> HeteroData:
    """Add N(0, ``std``²) Å to every coordinate of the ligand and protein atoms of ``batch``.

    Out of place: the batch's tensors may share memory with the dataset's cached graphs, which
    must keep the pose. Draws from torch's global generator of the batch's device, which the
    checkpoints save and restore, so a resumed run draws the same noise.
    """
    if std <= 0:
        return batch
    for node_type in (LIGAND, PROTEIN):
        if node_type in batch.node_types:
            store = batch[node_type]
            store.pos = store.pos + std * torch.randn_like(store.pos)
    return batch
