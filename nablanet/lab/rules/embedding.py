"""Lab rules for ``Embedding`` (``layers/embedding.py``): the row lookup y = W[x] (y = onehot(x) W).

Shapes:  x (N, *) integer indices   W, Ẇ (E, D)   y, ẏ, dy, dẏ (N, *, D).

The indices do not move: y is piecewise constant in x, so ẋ (None for indices; any tangent of
whole-number float indices is ignored) contributes nothing, and there is no (dx)˙ (``NO_DX``, as in
the VJP). y is linear in W and the VJP dW = scatter-add of dy does not depend on W, so
    ẏ = Ẇ[x]        (dW)˙ = scatter-add of dẏ  (the VJP applied to dẏ).

The padding row is frozen in both rules. The VJP sets dW[padding_idx] = 0 (PyTorch's rule), yet the
forward reads W[padding_idx]; differentiating the VJP as it is would give an operator that is not
symmetric (the padding column of ∂(dW)/∂W is not zero where its row is). The training rule never
moves that row, so it is a constant here: Ẇ[padding_idx] is taken as 0 in ẏ and (dW)˙[padding_idx]
is 0. The Hessian is then the Hessian over the other rows, with a zero row and column for the
padding row. (PyTorch's double backward of the same model gives vᵀ∂(dW)/∂W, which differs exactly
in that row, and also where v[padding_idx] ≠ 0.)

``max_norm`` is refused by the layer itself (its in-place renormalization has no pure forward), so
every option the layer accepts is covered.
"""

from __future__ import annotations

import numpy as np

from nablanet.lab.registry import jvp_rules, vjp_rop_rules
from nablanet.lab.rop import RopResult, Tangents
from nablanet.layers.base import NO_DX
from nablanet.layers.embedding import Embedding, EmbeddingCache


@jvp_rules.register(Embedding)
def _jvp_embedding(layer: Embedding, cache: EmbeddingCache, xdot: np.ndarray | None,
                   thetadot: Tangents) -> np.ndarray | None:
    """ẏ = Ẇ[x], with Ẇ[padding_idx] = 0 (the frozen padding row); None when W does not move."""
    wdot = thetadot.get("weight")
    if wdot is None:
        return None
    if layer.padding_idx is not None:
        wdot = wdot.copy()
        wdot[layer.padding_idx] = 0.0
    return wdot[cache.idx]


@vjp_rop_rules.register(Embedding)
def _rop_embedding(
    layer: Embedding, cache: EmbeddingCache, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None,
    thetadot: Tangents, need_dx: bool,
) -> RopResult:
    """dW[e] = Σ_{n,j : xₙⱼ = e} dyₙⱼ is linear in dy alone:  (dW)˙ = the same scatter-add of dẏ, with
    (dW)˙[padding_idx] = 0 (the layer's VJP zeroes it). No (dx)˙: the indices are not differentiated."""
    _, grads = layer.vjp(cache, dydot)
    return NO_DX, grads
