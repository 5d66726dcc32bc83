"""Decoy poses: a featurized complex with its ligand moved rigidly off the modelled pose.

``trainer.decoy_weight`` asks the network to score the modelled pose of every training ligand
above a decoy of it (a margin term, :func:`plgraph.training.objective.decoy_margin_loss`): a
model that reads the pose should prefer the pose the data came from to the same ligand turned and
pushed a few Ångström off it. The decoy is the ligand rotated by ``rotation`` degrees about a
random axis through its centroid and shifted by ``shift`` Å in a random direction: its internal
geometry stays valid, only its placement in the pocket is wrong. At 45 degrees and 2 Å the decoys
of 40 complexes of the transfer cache lie 2.5-5.2 Å RMSD from their poses (median 3.5 Å), past
the 2 Å that docking calls a failure, and 9 in 10 clash with the pocket (a protein atom closer
than 1.5 Å): mostly easy decoys.

The interaction edges are rebuilt for the moved ligand by the featurizer's own
:func:`plgraph.featurize.complex.interaction_edges` (same cutoff), so a decoy has exactly the
graph that featurizing that pose would give, with one exception: its Vina terms (``vina``) are
the modelled pose's, not Vina's view of the decoy (scoring each decoy with Vina costs ~0.5 s; a
model that reads Vina's terms then has to tell the decoy by its geometry, not by its Vina
score). The pocket is the one cut around the modelled pose (``featurize.pocket_cutoff``, 10 Å by
default), which still reaches every protein atom within the interaction cutoff of a ligand
shifted by up to ``pocket_cutoff - interaction_cutoff`` Å.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch, HeteroData

from plgraph.featurize.complex import INTERACTION, LIGAND, PROTEIN, interaction_edges


def random_unit_vector(generator: torch.Generator | None = None) -> Tensor:
    """A direction drawn uniformly on the sphere ``[3]`` (float64)."""
    while True:  # a zero-length draw has probability 0; loop rather than divide by it
        vector = torch.randn(3, dtype=torch.float64, generator=generator)
        norm = vector.norm()
        if norm > 1e-12:
            return vector / norm


def rotation_matrix(axis: Tensor, degrees: float) -> Tensor:
    """The rotation by ``degrees`` about the unit ``axis`` ``[3, 3]`` (Rodrigues' formula)."""
    angle = math.radians(degrees)
    x, y, z = axis.tolist()
    cross = torch.tensor([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]], dtype=torch.float64)
    return (torch.eye(3, dtype=torch.float64) + math.sin(angle) * cross
            + (1 - math.cos(angle)) * cross @ cross)


def decoy_complex(graph: HeteroData, rotation: float, shift: float, cutoff: float,
                  generator: torch.Generator | None = None) -> HeteroData:
    """A copy of one featurized complex with its ligand rotated by ``rotation`` degrees about
    its centroid (random axis) and shifted by ``shift`` Å (random direction), its interaction
    edges rebuilt within ``cutoff`` Å; draws from ``generator`` (torch's global CPU generator
    when None, which the checkpoints save). ``graph`` is not changed."""
    pos = graph[LIGAND].pos.to(torch.float64)
    centroid = pos.mean(dim=0)
    turned = (pos - centroid) @ rotation_matrix(random_unit_vector(generator), rotation).T
    moved = turned + centroid + shift * random_unit_vector(generator)
    index, distance = interaction_edges(moved.numpy(), graph[PROTEIN].pos.double().numpy(),
                                        cutoff)
    decoy = graph.clone()
    decoy[LIGAND].pos = moved.to(graph[LIGAND].pos.dtype)
    decoy[INTERACTION].edge_index = torch.from_numpy(index)
    decoy[INTERACTION].distance = torch.from_numpy(distance.astype(np.float32))
    return decoy


def with_decoys(batch: Batch, rotation: float, shift: float, cutoff: float,
                generator: torch.Generator | None = None) -> Batch:
    """``batch``'s complexes followed by one decoy of each (:func:`decoy_complex`), as one
    batch of twice the graphs: graph ``i + batch.num_graphs`` is the decoy of graph ``i``."""
    graphs = batch.to_data_list()
    return Batch.from_data_list(
        graphs + [decoy_complex(g, rotation, shift, cutoff, generator) for g in graphs])
