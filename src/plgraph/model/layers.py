"""The message-passing layer: PyG's ``ViS_MP`` with scaled attention and a cheaper edge update."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn.models.visnet import ViS_MP

from plgraph.model.generated import generated_in_cache


class ViSLayer(ViS_MP):
    r"""PyG's :class:`~torch_geometric.nn.models.visnet.ViS_MP` (same parameters, same
    messages) with scaled attention and a cheaper edge update.

    The attention logits are scaled by :math:`1 / \sqrt{d_{head}}`, as in scaled dot-product
    attention. ViS_MP's unscaled SiLU attention grows with the head width: the full-size config
    (256 channels, 6 layers) overflowed to inf on pocket complexes at initialization, through
    the layers' products of vector features; scaled, the features stay O(1).

    The edge update gives ``ViS_MP.edge_update``'s values at a fraction of the cost. ViS_MP
    projects every edge's copy of the target and source vector features and materializes their
    rejections from the edge direction; here the projections run once per node and are then
    gathered (pocket graphs have ~13 edges per node), and the dot product of the two rejections
    is expanded: with :math:`\alpha = a \cdot d`, :math:`\beta = b \cdot d`,
    :math:`(a - \alpha d) \cdot (b - \beta d) = a \cdot b - \alpha\beta (2 - d \cdot d)`
    (rejecting from :math:`-d` equals rejecting from :math:`d`).

    Args:
        num_heads (int): attention heads.
        hidden_channels (int): width of the scalar and vector node features.
        cutoff (float): the cosine cutoff radius (Å) on the attention weights.
        last_layer (bool, optional): the last layer updates no edge features.
            (default: :obj:`False`)
    """

    def __init__(self, num_heads: int, hidden_channels: int, cutoff: float,
                 last_layer: bool = False) -> None:
        # No vector norm (PyG ViSNet's default): "max_min" would zero each node's weakest channel.
        super().__init__(num_heads, hidden_channels, cutoff, vecnorm_type=None,
                         trainable_vecnorm=False, last_layer=last_layer)

    def _set_jittable_templates(self, raise_on_error: bool = False) -> None:
        """PyG's generated ``propagate`` and ``edge_updater`` (its fast path), imported from
        plgraph's cache directory instead of new files that PyG leaves in TMPDIR for every
        process (model/generated.py). PyG calls this when the first layer is built or unpickled.
        """
        with generated_in_cache():
            super()._set_jittable_templates(raise_on_error)

    def forward(self, x: Tensor, vec: Tensor, edge_index: Tensor, r_ij: Tensor, f_ij: Tensor,
                d_ij: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        r"""Residual updates of the scalar and vector node features and of the edge features
        (``None`` in the last layer); the arguments are those of :meth:`ViS_MP.forward`."""
        x = self.layernorm(x)
        vec = self.vec_layernorm(vec)
        heads = (-1, self.num_heads, self.head_dim)
        q = self.q_proj(x).reshape(heads) * self.head_dim ** -0.5
        k, v = self.k_proj(x).reshape(heads), self.v_proj(x).reshape(heads)
        dk = self.act(self.dk_proj(f_ij)).reshape(heads)
        dv = self.act(self.dv_proj(f_ij)).reshape(heads)
        vec1, vec2, vec3 = torch.split(self.vec_proj(vec), self.hidden_channels, dim=-1)
        x, vec_out = self.propagate(edge_index, q=q, k=k, v=v, dk=dk, dv=dv, vec=vec, r_ij=r_ij,
                                    d_ij=d_ij)
        o1, o2, o3 = torch.split(self.o_proj(x), self.hidden_channels, dim=1)
        dx = (vec1 * vec2).sum(dim=1) * o2 + o3
        dvec = vec3 * o1.unsqueeze(1) + vec_out
        if self.last_layer:
            return dx, dvec, None
        return dx, dvec, self.edge_delta(vec, edge_index, d_ij, f_ij)

    def edge_delta(self, vec: Tensor, edge_index: Tensor, d_ij: Tensor, f_ij: Tensor) -> Tensor:
        r"""The value of ``ViS_MP.edge_update`` for every edge, ``[E, hidden_channels]``."""
        source, target = edge_index
        a = self.w_trg_proj(vec)[target]
        b = self.w_src_proj(vec)[source]
        d = d_ij.unsqueeze(2)
        alpha, beta = (a * d).sum(dim=1), (b * d).sum(dim=1)
        w_dot = (a * b).sum(dim=1) - alpha * beta * (2 - d_ij.square().sum(dim=1, keepdim=True))
        return self.act(self.f_proj(f_ij)) * w_dot
