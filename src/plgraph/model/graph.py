"""The featurized ``HeteroData`` as one homogeneous graph: ligand and protein nodes in one set.

Message passing runs over a single node set (ligand nodes first, then protein nodes) and a single
edge list; the edge type and the categorical edge attributes are carried alongside so that the
network can embed them. The edges are the ones featurization decided: the model never searches
for neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import Batch, HeteroData

# The names of plgraph.featurize.complex, re-declared: importing plgraph.featurize pulls in RDKit,
# which the model must not need. tests/test_model.py checks that both stay equal.
LIGAND = "ligand"
PROTEIN = "protein"
BOND = (LIGAND, "bond", LIGAND)
CONTACT = (PROTEIN, "contact", PROTEIN)
INTERACTION = (LIGAND, "interacts", PROTEIN)

# Indices of the edge-type embedding.
EDGE_TYPES = ("bond", "contact", "interaction")
BOND_TYPE, CONTACT_TYPE, INTERACTION_TYPE = range(len(EDGE_TYPES))


@dataclass
class FlatGraph:
    """A batch of complexes as one graph, in the order the network consumes it.

    Args:
        ligand_x: categorical ligand atom features ``[N_lig, C_lig]``.
        protein_x: categorical protein atom features ``[N_prot, C_prot]``, or ``None`` when the
            protein is left out.
        pos: atom positions (Å) ``[N, 3]``, the ligand atoms first.
        batch: the graph of each node ``[N]``.
        num_graphs: complexes in the batch.
        edge_index: ``[2, E]`` source and target nodes: ligand bonds, then protein contacts,
            then interactions ligand -> protein, then the same interactions protein -> ligand.
        edge_type: the index in :data:`EDGE_TYPES` of each edge ``[E]``.
        bond_attr: categorical attributes of the bond edges ``[E_bond, C_bond]``.
        contact_attr: categorical attributes of the contact edges ``[E_contact, C_contact]``, or
            ``None`` when the protein is left out.
        vina: each complex's Vina terms ``[num_graphs, len(vocab.VINA_TERMS)]``, or ``None``
            when the graphs were featurized without ``featurize.vina_terms``.
        descriptors: each complex's ligand descriptors
            ``[num_graphs, len(vocab.LIGAND_DESCRIPTORS)]``, or ``None`` for graphs of a
            version before 8.
    """

    ligand_x: Tensor
    protein_x: Tensor | None
    pos: Tensor
    batch: Tensor
    num_graphs: int
    edge_index: Tensor
    edge_type: Tensor
    bond_attr: Tensor
    contact_attr: Tensor | None
    vina: Tensor | None = None
    descriptors: Tensor | None = None

    @property
    def num_ligand(self) -> int:
        return self.ligand_x.size(0)


def _node_batch(data: HeteroData, node_type: str) -> Tensor:
    """The graph index of each node; an un-batched graph has no ``batch`` and is graph 0."""
    store = data[node_type]
    batch = getattr(store, "batch", None)
    if batch is None:
        return torch.zeros(store.num_nodes, dtype=torch.long, device=store.pos.device)
    return batch


def _typed(edge_index: Tensor, kind: int) -> Tensor:
    return torch.full((edge_index.size(1),), kind, dtype=torch.long, device=edge_index.device)


def flatten(data: HeteroData, use_protein: bool = True) -> FlatGraph:
    """Merge the ligand and protein graphs of ``data`` into one :class:`FlatGraph`.

    Args:
        data: a featurized complex or a batch of them (``torch_geometric.loader.DataLoader``).
        use_protein: ``False`` keeps the ligand nodes and bonds only (the ligand-only baseline).
    """
    num_graphs = data.num_graphs if isinstance(data, Batch) else 1
    ligand, bond = data[LIGAND], data[BOND]
    edges, types = [bond.edge_index], [_typed(bond.edge_index, BOND_TYPE)]
    pos, batch = [ligand.pos], [_node_batch(data, LIGAND)]
    protein_x = contact_attr = None
    if use_protein:
        protein, contact = data[PROTEIN], data[CONTACT]
        offset = ligand.num_nodes
        src, dst = data[INTERACTION].edge_index
        # Interaction edges are stored ligand -> protein once; messages must flow both ways.
        interaction = torch.stack([src, dst + offset])
        edges += [contact.edge_index + offset, interaction, interaction.flip(0)]
        types += [_typed(contact.edge_index, CONTACT_TYPE),
                  _typed(interaction, INTERACTION_TYPE), _typed(interaction, INTERACTION_TYPE)]
        pos.append(protein.pos)
        batch.append(_node_batch(data, PROTEIN))
        protein_x, contact_attr = protein.x, contact.edge_attr
    return FlatGraph(ligand_x=ligand.x, protein_x=protein_x, pos=torch.cat(pos),
                     batch=torch.cat(batch), num_graphs=num_graphs,
                     edge_index=torch.cat(edges, dim=1), edge_type=torch.cat(types),
                     bond_attr=bond.edge_attr, contact_attr=contact_attr,
                     vina=data.vina if "vina" in data else None,
                     descriptors=data.descriptors if "descriptors" in data else None)
