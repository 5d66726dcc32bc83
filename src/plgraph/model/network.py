"""``PLGraphNet``: ViSNet-style equivariant message passing over a protein-ligand complex.

The ligand and protein atoms form one node set (see :mod:`plgraph.model.graph`); edges are the
ligand bonds, protein contacts and ligand-protein interactions that featurization chose. Each
node carries scalar features and vector features (one channel set per spherical-harmonic
component of degree 1..lmax), updated by PyG's ``ViS_MP`` message passing
(:class:`plgraph.model.layers.ViSLayer`); the prediction is read out from the ligand atoms.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import Dropout, LayerNorm
from torch_geometric.data import HeteroData
from torch_geometric.nn.models.visnet import EquivariantScalar, ExpNormalSmearing, Sphere
from torch_geometric.utils import scatter

from plgraph import vocab
from plgraph.config import ModelConfig
from plgraph.model.embedding import CategoricalEmbedding, EdgeEmbedding, NeighborEmbedding
from plgraph.model.graph import EDGE_TYPES, FlatGraph, flatten
from plgraph.model.layers import ViSLayer
from plgraph.model.terms import PairEnergy, SizeTerm, VinaTerm

# Edges shorter than this (Å) have no usable direction; it only guards 0 / 0 for coincident atoms.
_MIN_EDGE_LENGTH = 1e-6
# The per-atom contributions are summed, then divided by a typical drug-like heavy-atom count so
# that a freshly initialized model starts with O(1) standardized outputs whatever the ligand size.
_TYPICAL_LIGAND_ATOMS = 25.0
# The inputs each anchor's linear term reads, as indices in the standardized Vina terms followed
# by the standardized ligand descriptors: the in-place score; every Vina term; every Vina term and
# every descriptor (vina_descriptors: the size term holds the heavy-atom count's coefficient).
VINA_ANCHOR_COLUMNS = {"vina": (vocab.VINA_TERMS.index("vina_score"),),
                       "vina_terms": tuple(range(len(vocab.VINA_TERMS))),
                       "vina_descriptors": tuple(range(len(vocab.VINA_TERMS)
                                                       + len(vocab.LIGAND_DESCRIPTORS)))}


def rms_normalize(vec: Tensor, eps: float = 1e-6) -> Tensor:
    r"""Divide each node's vector features ``[N, components, channels]`` by the root mean
    square over its channels of their norms: the vector counterpart of the scalars' LayerNorm.
    The scale is rotation-invariant, so the result stays equivariant; it keeps the head's input
    O(1) however much the unnormalized vector features grew over the layers."""
    scale = vec.square().sum(dim=1, keepdim=True).mean(dim=-1, keepdim=True)
    return vec * torch.rsqrt(scale + eps)


class PLGraphNet(torch.nn.Module):
    r"""Predicts the binding affinity (pK) of protein-ligand complexes.

    :meth:`forward` returns the prediction in standardized units, ``(pK - mean) / std``;
    :meth:`predict_pk` returns pK. The standardization is held in the buffers ``target_mean``
    and ``target_std`` (set with :meth:`set_target_normalization`), so it travels in the
    ``state_dict`` with the weights.

    Args:
        config (ModelConfig): the network's size; ``use_protein=False`` builds the ligand-only
            baseline, which ignores the protein atoms and the contact and interaction edges.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_channels
        self.ligand_embedding = CategoricalEmbedding(vocab.LIGAND_ATOM_FEATURES, hidden)
        self.protein_embedding = (CategoricalEmbedding(vocab.PROTEIN_ATOM_FEATURES, hidden)
                                  if config.use_protein else None)
        self.distance_expansion = ExpNormalSmearing(config.cutoff, config.num_rbf,
                                                    trainable=False)
        self.sphere = Sphere(lmax=config.lmax)
        self.neighbor_embedding = NeighborEmbedding(hidden, config.num_rbf, config.cutoff)
        self.edge_embedding = EdgeEmbedding(
            config.num_rbf, hidden, len(EDGE_TYPES), vocab.LIGAND_BOND_FEATURES,
            vocab.PROTEIN_EDGE_FEATURES if config.use_protein else None)
        self.layers = torch.nn.ModuleList(
            ViSLayer(config.num_heads, hidden, config.cutoff, last_layer=i == config.num_layers - 1)
            for i in range(config.num_layers))
        self.out_norm = LayerNorm(hidden)
        self.dropout = Dropout(config.dropout)
        self.head = EquivariantScalar(hidden)
        self.pair_energy = (PairEnergy(config.num_rbf)
                            if config.pair_energy and config.use_protein else None)
        self.size_term = SizeTerm() if config.size_term else None
        self.register_buffer("target_mean", torch.tensor(0.0))
        self.register_buffer("target_std", torch.tensor(1.0))
        self.vina_term = (VinaTerm(VINA_ANCHOR_COLUMNS[config.anchor])
                          if config.anchor in VINA_ANCHOR_COLUMNS else None)
        self.vina_embedding = (torch.nn.Linear(len(vocab.VINA_TERMS), hidden)
                               if config.vina_readout else None)
        if config.uses_vina:  # the terms' standardization, set on the train part like pK's
            self.register_buffer("vina_mean", torch.zeros(len(vocab.VINA_TERMS)))
            self.register_buffer("vina_std", torch.ones(len(vocab.VINA_TERMS)))
        descriptors = len(vocab.LIGAND_DESCRIPTORS)
        self.descriptor_embedding = (torch.nn.Linear(descriptors, hidden)
                                     if config.descriptor_readout else None)
        if config.uses_descriptors:  # set on the train part, as the Vina terms' are
            self.register_buffer("descriptor_mean", torch.zeros(descriptors))
            self.register_buffer("descriptor_std", torch.ones(descriptors))

    def set_target_normalization(self, mean: float, std: float) -> None:
        r"""Set the pK standardization: :meth:`forward` predicts ``(pK - mean) / std``.

        Args:
            mean (float): the training labels' mean pK.
            std (float): their standard deviation; must be finite and > 0.
        """
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise ValueError(f"target normalization needs a finite mean and a finite std > 0 "
                             f"(got mean={mean}, std={std})")
        self.target_mean.fill_(mean)
        self.target_std.fill_(std)

    def set_vina_normalization(self, mean: Tensor, std: Tensor) -> None:
        r"""Set the Vina terms' standardization ``z = (terms - mean) / std`` (each
        ``[len(vocab.VINA_TERMS)]``, ``std`` finite and > 0): the train part's, at a run's
        start; it travels in the ``state_dict``."""
        if not self.config.uses_vina:
            raise ValueError("this model reads no Vina terms (model.anchor, model.vina_readout)")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError(f"Vina standardization needs finite means and finite stds > 0 "
                             f"(got mean={mean.tolist()}, std={std.tolist()})")
        self.vina_mean.copy_(mean)
        self.vina_std.copy_(std)

    def set_descriptor_normalization(self, mean: Tensor, std: Tensor) -> None:
        r"""Set the ligand descriptors' standardization (each
        ``[len(vocab.LIGAND_DESCRIPTORS)]``, ``std`` finite and > 0), as
        :meth:`set_vina_normalization` does for the Vina terms."""
        if not self.config.uses_descriptors:
            raise ValueError("this model reads no ligand descriptors (model.anchor, "
                             "model.descriptor_readout)")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError(f"descriptor standardization needs finite means and finite stds "
                             f"> 0 (got mean={mean.tolist()}, std={std.tolist()})")
        self.descriptor_mean.copy_(mean)
        self.descriptor_std.copy_(std)

    def forward(self, data: HeteroData) -> Tensor:
        r"""Standardized predictions ``[num_graphs]``.

        Args:
            data (HeteroData): a complex from :func:`plgraph.featurize.featurize_complex` or a
                batch of them (``torch_geometric.loader.DataLoader``). Edge lengths and
                directions are computed from ``pos``; the stored interaction ``distance`` is
                not used.
        """
        graph = flatten(data, self.config.use_protein)
        x, vec, rbf = self.encode(graph)
        return self.readout(x, vec, graph, rbf)

    def anchor_to_heavy_atoms(self, slope: float, intercept: float) -> None:
        r"""Make the model predict ``slope * heavy atoms + intercept`` (pK) exactly, for every
        input, and keep ``target_std``: the standardization's mean becomes the intercept, the
        size term's weight the slope, and the head's output layer zero (the pair terms already
        start at zero). Training then moves the network away from the line only as far as the
        data pull it (``model.anchor``, :mod:`plgraph.training.anchor`).

        Args:
            slope (float): pK per heavy atom; intercept (float): pK at zero heavy atoms.
        """
        if self.size_term is None:
            raise ValueError("anchoring to the heavy-atom fit needs model.size_term=true")
        if not (math.isfinite(slope) and math.isfinite(intercept)):
            raise ValueError(f"the heavy-atom fit must be finite (got slope={slope}, "
                             f"intercept={intercept})")
        self.target_mean.fill_(intercept)
        with torch.no_grad():
            self.size_term.weight.fill_(slope / self.target_std.item() * _TYPICAL_LIGAND_ATOMS)
            self._zero_output_layer()

    def anchor_to_vina(self, coefficients, intercept: float) -> None:
        r"""Make the model predict ``intercept + coefficients . z`` (pK) exactly, ``z`` the
        standardized Vina terms its anchor reads (``model.anchor=vina``: the in-place score;
        ``vina_terms``: all): the standardization's mean becomes the intercept, the Vina term's
        weights the coefficients (in standardized pK), and the head's output layer zero, as in
        :meth:`anchor_to_heavy_atoms`.

        Args:
            coefficients: pK per standard deviation of each term read, in
                ``VINA_ANCHOR_COLUMNS[anchor]``'s order; intercept (float): pK at the train
                part's mean terms.
        """
        if self.vina_term is None:
            raise ValueError("anchoring to a Vina fit needs model.anchor=vina or vina_terms")
        coefficients = torch.as_tensor(coefficients, dtype=torch.float64)
        if (coefficients.shape != self.vina_term.weight.shape
                or not torch.isfinite(coefficients).all() or not math.isfinite(intercept)):
            raise ValueError(f"the Vina fit must be {len(self.vina_term.columns)} finite "
                             f"coefficients and a finite intercept (got {coefficients.tolist()}, "
                             f"{intercept})")
        self.target_mean.fill_(intercept)
        with torch.no_grad():
            self.vina_term.weight.copy_(coefficients / self.target_std.item())
            self._zero_output_layer()

    def anchor_to_series_fit(self, coefficients, intercept: float) -> None:
        r"""Make the model predict ``intercept + coefficients . inputs`` (pK) exactly, the inputs
        ``vocab.SERIES_FIT_INPUTS`` in raw units (``model.anchor=vina_descriptors``,
        :func:`plgraph.training.anchor.series_fit`): the linear term reads the Vina terms and
        descriptors standardized as already set on the train part, so each coefficient is
        carried over to that scale and the inputs' means into the intercept; the size term holds
        the heavy-atom coefficient; the head's output layer is zero, as in
        :meth:`anchor_to_heavy_atoms`."""
        inputs = len(vocab.SERIES_FIT_INPUTS)
        coefficients = torch.as_tensor(coefficients, dtype=torch.float64)
        if (self.config.anchor != "vina_descriptors" or self.size_term is None
                or coefficients.shape != (inputs,) or not torch.isfinite(coefficients).all()
                or not math.isfinite(intercept)):
            raise ValueError(f"anchoring to the series fit needs model.anchor=vina_descriptors, "
                             f"model.size_term=true, {inputs} finite coefficients and a finite "
                             f"intercept (got anchor={self.config.anchor}, "
                             f"{coefficients.tolist()}, {intercept})")
        mean = torch.cat([self.vina_mean, self.descriptor_mean]).double()
        std = torch.cat([self.vina_std, self.descriptor_std]).double()
        linear, heavy = coefficients[:-1], coefficients[-1].item()
        self.target_mean.fill_(intercept + (linear @ mean).item())
        with torch.no_grad():
            self.vina_term.weight.copy_(linear * std / self.target_std.item())
            self.size_term.weight.fill_(heavy / self.target_std.item() * _TYPICAL_LIGAND_ATOMS)
            self._zero_output_layer()

    def _zero_output_layer(self) -> None:
        output = self.head.output_network[-1].update_net[-1]
        output.weight.zero_()
        output.bias.zero_()

    def predict_pk(self, data: HeteroData) -> Tensor:
        r"""Predictions in pK units ``[num_graphs]``: ``forward(data) * std + mean``."""
        return self(data) * self.target_std + self.target_mean

    def embed_nodes(self, graph: FlatGraph) -> Tensor:
        r"""Scalar node features ``[N, hidden]`` from the categorical atom features."""
        x = self.ligand_embedding(graph.ligand_x)
        if self.protein_embedding is not None and graph.protein_x is not None:
            x = torch.cat([x, self.protein_embedding(graph.protein_x)])
        return x

    def encode(self, graph: FlatGraph) -> tuple[Tensor, Tensor, Tensor]:
        r"""Scalar ``[N, hidden]`` and vector ``[N, (lmax + 1)^2 - 1, hidden]`` node features,
        and the radial basis of every edge's length ``[E, num_rbf]``."""
        edge_index = graph.edge_index
        # Source minus target, the convention of ViS_MP (messages flow from row 0 to row 1).
        edge_vec = graph.pos[edge_index[0]] - graph.pos[edge_index[1]]
        length = edge_vec.norm(dim=-1)
        direction = edge_vec / length.clamp(min=_MIN_EDGE_LENGTH).unsqueeze(-1)
        rbf = self.distance_expansion(length)
        harmonics = self.sphere(direction)
        # The residual streams stay in the dtype of ``pos`` (fp32) under bf16/fp16 autocast:
        # the layers' updates are computed in low precision, their running sums are not.
        x = self.neighbor_embedding(self.embed_nodes(graph), edge_index, length, rbf)
        x = x.to(graph.pos.dtype)
        edge_attr = self.edge_embedding(x, edge_index, rbf, graph.edge_type, graph.bond_attr,
                                        graph.contact_attr).to(graph.pos.dtype)
        vec = x.new_zeros(x.size(0), harmonics.size(1), x.size(1))
        for layer in self.layers:
            dx, dvec, dedge = layer(x, vec, edge_index, length, edge_attr, harmonics)
            x, vec = x + dx, vec + dvec
            if dedge is not None:
                edge_attr = edge_attr + dedge
        return self.out_norm(x), vec, rbf

    def readout(self, x: Tensor, vec: Tensor, graph: FlatGraph, rbf: Tensor) -> Tensor:
        r"""The prediction ``[num_graphs]``: the sum of each graph's :meth:`atom_terms`.

        A sum, not a mean: affinity grows with the size of the ligand (roughly constant ligand
        efficiency per heavy atom), a signal a mean would average away. Only the ligand atoms
        are pooled: the pocket's extent depends on the featurization cutoffs, not on binding,
        and the protein reaches the ligand atoms through interaction edges."""
        atoms = self.atom_terms(x, vec, graph, rbf)
        return scatter(atoms, graph.batch[:graph.num_ligand], dim=0, dim_size=graph.num_graphs,
                       reduce="sum")

    def atom_terms(self, x: Tensor, vec: Tensor, graph: FlatGraph, rbf: Tensor) -> Tensor:
        r"""Each ligand atom's share of the standardized prediction ``[num_ligand_atoms]``: the
        head's per-atom output, plus the pair terms of the atom's interaction edges, its size
        term and its share of the Vina term where the config asks for them
        (:mod:`plgraph.model.terms`). With ``model.vina_readout`` the standardized Vina terms,
        embedded, are added to every ligand atom's features before the head; with
        ``model.descriptor_readout`` the ligand's standardized descriptors likewise."""
        ligand = graph.num_ligand
        vec = rms_normalize(vec[:ligand])
        x, z = x[:ligand], self.standardized_vina(graph)
        if self.vina_embedding is not None:
            x = x + self.vina_embedding(z)[graph.batch[:ligand]].to(x.dtype)
        if self.descriptor_embedding is not None:
            x = x + self.descriptor_embedding(self.standardized_descriptors(graph)
                                              )[graph.batch[:ligand]].to(x.dtype)
        atoms = self.head.pre_reduce(self.dropout(x), vec).squeeze(-1).to(x.dtype)
        if self.pair_energy is not None:
            atoms = atoms + self.pair_energy.per_ligand_atom(graph, rbf.to(atoms.dtype))
        if self.size_term is not None:
            atoms = atoms + self.size_term.per_ligand_atom(graph).to(atoms.dtype)
        if self.vina_term is not None:
            if self.config.anchor == "vina_descriptors":
                z = torch.cat([z, self.standardized_descriptors(graph)], dim=1)
            atoms = atoms + self.vina_term.per_ligand_atom(graph, z, _TYPICAL_LIGAND_ATOMS
                                                           ).to(atoms.dtype)
        return atoms / _TYPICAL_LIGAND_ATOMS

    def standardized_vina(self, graph: FlatGraph) -> Tensor | None:
        r"""The graphs' Vina terms standardized on the train part ``[num_graphs, terms]``
        (float32), or None for a model that reads none.

        Raises:
            ValueError: the model reads them and the graphs have none.
        """
        if not self.config.uses_vina:
            return None
        if graph.vina is None:
            raise ValueError("this model reads the poses' Vina terms (model.anchor="
                             f"{self.config.anchor}, model.vina_readout="
                             f"{self.config.vina_readout}): featurize the complexes with "
                             "featurize.vina_terms=true")
        return (graph.vina.float() - self.vina_mean) / self.vina_std

    def standardized_descriptors(self, graph: FlatGraph) -> Tensor:
        r"""The graphs' ligand descriptors standardized on the train part
        ``[num_graphs, len(vocab.LIGAND_DESCRIPTORS)]`` (float32).

        Raises:
            ValueError: the graphs carry none (featurized before ``DATA_PROCESSING_VERSION`` 8).
        """
        if graph.descriptors is None:
            raise ValueError("this model reads the ligands' descriptors (model.anchor="
                             f"{self.config.anchor}, model.descriptor_readout="
                             f"{self.config.descriptor_readout}) and the graphs carry none: they "
                             "were featurized before DATA_PROCESSING_VERSION 8; rebuild the "
                             "cache (delete the processed dir)")
        return (graph.descriptors.float() - self.descriptor_mean) / self.descriptor_std

    def atom_contributions(self, data: HeteroData) -> tuple[Tensor, Tensor]:
        r"""Each ligand heavy atom's contribution to the predicted pK, in pK units
        ``[num_ligand_atoms]``, and the graph each atom belongs to. Per graph, the contributions
        plus ``target_mean`` (the intercept) sum to :meth:`predict_pk` exactly (up to float
        rounding): the model's own additive decomposition, not a free-energy decomposition."""
        graph = flatten(data, self.config.use_protein)
        x, vec, rbf = self.encode(graph)
        return (self.atom_terms(x, vec, graph, rbf) * self.target_std,
                graph.batch[:graph.num_ligand])
