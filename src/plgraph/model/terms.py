"""Terms that generalize across proteins, added to the network's atom-wise readout.

A message-passing network with ~10^5 parameters trained on a few dozen proteins learns those
proteins. Empirical scoring functions (AutoDock Vina, RF-Score) transfer better because their
terms are few, local and physical: a function of two atom types and their distance, summed
over ligand-protein contacts; and the size of the ligand. These modules add such terms:

- :class:`PairEnergy`: for every ligand-protein interaction edge, ``sum_k a[e_l, k] b[e_p, k]
  rbf_k(d)``: a learned, smooth, distance-dependent energy per pair of elements (the radial
  basis already goes to zero at the cutoff). 2 x elements x num_rbf parameters.
- :class:`SizeTerm`: ``w * heavy atoms``: one parameter.
- :class:`VinaTerm`: ``w . z``, a linear function of the pose's standardized Vina terms
  (``featurize.vina_terms``): one parameter per term it reads, spread evenly over the ligand's
  atoms so that it stays part of their contributions.

Both return per-ligand-atom values (a pair term goes to the ligand atom of its edge) in the
network's standardized units, before its division by a typical ligand size, so they start at
zero, grow only as far as the data pulls them, and stay part of each atom's contribution
(``PLGraphNet.atom_contributions``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from plgraph import vocab
from plgraph.model.graph import INTERACTION_TYPE, FlatGraph

_ELEMENT = list(vocab.LIGAND_ATOM_FEATURES).index("element")
_PROTEIN_ELEMENT = list(vocab.PROTEIN_ATOM_FEATURES).index("element")


class PairEnergy(torch.nn.Module):
    r"""A learned element-pair potential summed over the ligand-protein interaction edges.

    Args:
        num_rbf (int): radial basis functions of the distance (shared with the network's).
    """

    def __init__(self, num_rbf: int) -> None:
        super().__init__()
        elements = len(vocab.ELEMENTS)
        self.ligand = torch.nn.Embedding(elements, num_rbf)
        self.protein = torch.nn.Embedding(elements, num_rbf)
        torch.nn.init.normal_(self.ligand.weight, std=0.1)
        torch.nn.init.zeros_(self.protein.weight)  # the term starts at exactly zero

    def per_ligand_atom(self, graph: FlatGraph, rbf: Tensor) -> Tensor:
        r"""Each ligand atom's sum over its interaction edges ``[num_ligand]``; ``rbf`` is the
        basis of every edge ``[E, num_rbf]``."""
        ligand_to_protein = ((graph.edge_type == INTERACTION_TYPE)
                             & (graph.edge_index[0] < graph.num_ligand))
        src, dst = graph.edge_index[:, ligand_to_protein]
        ligand_element = graph.ligand_x[src, _ELEMENT]
        protein_element = graph.protein_x[dst - graph.num_ligand, _PROTEIN_ELEMENT]
        energy = (self.ligand(ligand_element) * self.protein(protein_element)
                  * rbf[ligand_to_protein]).sum(dim=-1)
        return scatter(energy, src, dim=0, dim_size=graph.num_ligand, reduce="sum")


class SizeTerm(torch.nn.Module):
    r"""``weight * heavy-atom count`` per graph; the weight starts at zero."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def per_ligand_atom(self, graph: FlatGraph) -> Tensor:
        r"""``weight`` for every ligand atom ``[num_ligand]``."""
        return self.weight.expand(graph.num_ligand)


class VinaTerm(torch.nn.Module):
    r"""``weight . z[:, columns]`` per graph, ``z`` the standardized Vina terms ``[B, terms]``;
    the weights start at zero (``model.anchor=vina`` reads the in-place score alone,
    ``vina_terms`` every term).

    Args:
        columns (tuple[int, ...]): the indices in ``vocab.VINA_TERMS`` it reads.
    """

    def __init__(self, columns: tuple[int, ...]) -> None:
        super().__init__()
        self.columns = columns
        self.weight = torch.nn.Parameter(torch.zeros(len(columns)))

    def per_ligand_atom(self, graph: FlatGraph, z: Tensor, scale: float) -> Tensor:
        r"""Each ligand atom's share ``[num_ligand]``: its graph's value times ``scale`` over
        the graph's heavy-atom count, so that the atoms' shares sum to ``scale`` times it."""
        value = z[:, list(self.columns)] @ self.weight
        atom_batch = graph.batch[:graph.num_ligand]
        atoms = torch.bincount(atom_batch, minlength=graph.num_graphs).to(value.dtype)
        return (value * scale / atoms)[atom_batch]
