"""Learned embeddings of the categorical node and edge features and of the edge geometry."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import Embedding, Linear
from torch_geometric.nn.models.visnet import CosineCutoff
from torch_geometric.utils import scatter


class CategoricalEmbedding(torch.nn.Module):
    r"""One :class:`torch.nn.Embedding` per categorical feature column, summed.

    Args:
        cardinalities (dict[str, int]): the number of categories of each column, in column
            order (e.g. :data:`plgraph.vocab.LIGAND_ATOM_FEATURES`).
        hidden_channels (int): the embedding width.
    """

    def __init__(self, cardinalities: dict[str, int], hidden_channels: int) -> None:
        super().__init__()
        self.names = tuple(cardinalities)
        self.tables = torch.nn.ModuleList(
            Embedding(size, hidden_channels) for size in cardinalities.values())
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Unit variance for the sum, not for each table: the sum feeds layers without a norm.
        for table in self.tables:
            torch.nn.init.normal_(table.weight, std=1.0 / math.sqrt(len(self.tables)))

    def forward(self, x: Tensor) -> Tensor:
        r"""Embed ``x`` (long, ``[N, len(cardinalities)]``) into ``[N, hidden_channels]``."""
        if x.dim() != 2 or x.size(1) != len(self.tables):
            raise ValueError(f"expected {len(self.tables)} categorical feature columns "
                             f"{list(self.names)}, got a tensor of shape {tuple(x.shape)}: the "
                             "graphs and the model come from different featurizations")
        out = self.tables[0](x[:, 0])
        for column, table in enumerate(self.tables[1:], start=1):
            out = out + table(x[:, column])
        return out


class NeighborEmbedding(torch.nn.Module):
    r"""Mixes each node's embedding with a distance-weighted sum of its neighbours' embeddings,
    as ViSNet's :class:`~torch_geometric.nn.models.visnet.NeighborEmbedding` does, but from the
    categorical embeddings instead of an atomic-number table.

    Args:
        hidden_channels (int): the node feature width.
        num_rbf (int): the number of radial basis functions.
        cutoff (float): the cosine cutoff radius (Å).
    """

    def __init__(self, hidden_channels: int, num_rbf: int, cutoff: float) -> None:
        super().__init__()
        self.distance_proj = Linear(num_rbf, hidden_channels)
        self.combine = Linear(hidden_channels * 2, hidden_channels)
        self.cutoff = CosineCutoff(cutoff)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in (self.distance_proj, self.combine):
            torch.nn.init.xavier_uniform_(layer.weight)
            layer.bias.data.zero_()

    def forward(self, x: Tensor, edge_index: Tensor, length: Tensor, rbf: Tensor) -> Tensor:
        r"""Args:
            x (torch.Tensor): node features ``[N, H]``.
            edge_index (torch.Tensor): ``[2, E]``, messages flow from row 0 to row 1.
            length (torch.Tensor): edge lengths (Å) ``[E]``.
            rbf (torch.Tensor): radial basis expansion of the lengths ``[E, num_rbf]``.
        """
        weight = self.distance_proj(rbf) * self.cutoff(length).unsqueeze(-1)
        neighbors = scatter(x[edge_index[0]] * weight, edge_index[1], dim=0,
                            dim_size=x.size(0), reduce="sum")
        return self.combine(torch.cat([x, neighbors.to(x.dtype)], dim=-1))


class EdgeEmbedding(torch.nn.Module):
    r"""Scalar edge features: ViSNet's ``(x_i + x_j) * W(rbf)`` plus learned embeddings of the
    edge type (bond / contact / interaction) and of the categorical bond and contact attributes.

    Args:
        num_rbf (int): the number of radial basis functions.
        hidden_channels (int): the edge feature width.
        num_edge_types (int): the number of edge types.
        bond_features (dict[str, int]): cardinalities of the bond attribute columns.
        contact_features (dict[str, int], optional): cardinalities of the contact attribute
            columns, or :obj:`None` for a ligand-only model.
    """

    def __init__(self, num_rbf: int, hidden_channels: int, num_edge_types: int,
                 bond_features: dict[str, int],
                 contact_features: dict[str, int] | None) -> None:
        super().__init__()
        self.edge_proj = Linear(num_rbf, hidden_channels)
        self.type_embedding = Embedding(num_edge_types, hidden_channels)
        self.bond_embedding = CategoricalEmbedding(bond_features, hidden_channels)
        self.contact_embedding = (CategoricalEmbedding(contact_features, hidden_channels)
                                  if contact_features is not None else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_uniform_(self.edge_proj.weight)
        self.edge_proj.bias.data.zero_()
        self.type_embedding.reset_parameters()
        self.bond_embedding.reset_parameters()
        if self.contact_embedding is not None:
            self.contact_embedding.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, rbf: Tensor, edge_type: Tensor,
                bond_attr: Tensor, contact_attr: Tensor | None) -> Tensor:
        r"""Args:
            x (torch.Tensor): node features ``[N, H]``.
            edge_index (torch.Tensor): ``[2, E]``; its first ``E_bond`` edges are the bonds, the
                next ``E_contact`` the contacts, the rest interactions (see
                :class:`plgraph.model.graph.FlatGraph`).
            rbf (torch.Tensor): radial basis expansion of the edge lengths ``[E, num_rbf]``.
            edge_type (torch.Tensor): edge type indices ``[E]``.
            bond_attr (torch.Tensor): ``[E_bond, C_bond]``.
            contact_attr (torch.Tensor, optional): ``[E_contact, C_contact]``.
        """
        geometric = (x[edge_index[0]] + x[edge_index[1]]) * self.edge_proj(rbf)
        attrs = [self.bond_embedding(bond_attr)]
        if self.contact_embedding is not None and contact_attr is not None:
            attrs.append(self.contact_embedding(contact_attr))
        # Interaction edges have no categorical attributes: their type embedding says it all.
        rest = edge_index.size(1) - sum(a.size(0) for a in attrs)
        attrs.append(attrs[0].new_zeros(rest, attrs[0].size(1)))
        return geometric + self.type_embedding(edge_type) + torch.cat(attrs)
