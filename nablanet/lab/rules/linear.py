"""Lab rules for ``Linear`` (``layers/linear.py``): y = x Wᵀ + b.

Shapes: x, ẋ (N, *, i)  W, Ẇ (o, i)  b, ḃ (o,)  y, ẏ, dy, dẏ (N, *, o); rows M = N·∏* after reshaping.
"""

from __future__ import annotations

import numpy as np

from nablanet.lab.registry import jvp_rules, per_sample_grad_norms_rules, vjp_rop_rules
from nablanet.lab.rop import RopResult, Tangents, add
from nablanet.lab.rules.base import CHUNK_ELEMENTS, norms, sqrt_nonneg
from nablanet.layers.base import NO_DX, TapeEntry
from nablanet.layers.linear import Linear, LinearCache


@jvp_rules.register(Linear)
def _jvp_linear(layer: Linear, cache: LinearCache, xdot: np.ndarray | None, thetadot: Tangents) -> np.ndarray | None:
    """y = x Wᵀ + b is bilinear in (x, W):  ẏ = ẋ Wᵀ + x Ẇᵀ + ḃ."""
    ydot = None if xdot is None else xdot @ layer.weight.data.T
    wdot, bdot = thetadot.get("weight"), thetadot.get("bias")
    if wdot is not None:
        ydot = add(ydot, cache.x @ wdot.T)
    if bdot is not None and layer.bias is not None:
        ydot = add(ydot, np.broadcast_to(bdot, (*cache.x.shape[:-1], layer.out_features)))
    return ydot


@vjp_rop_rules.register(Linear)
def _rop_linear(
    layer: Linear, cache: LinearCache, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None,
    thetadot: Tangents, need_dx: bool,
) -> RopResult:
    """Tangent of dx = dy W, dW = Σₙ dyₙᵀ xₙ, db = Σₙ dyₙ:

        (dx)˙ = dẏ W + dy Ẇ        (dW)˙ = Σₙ (dẏₙᵀ xₙ + dyₙᵀ ẋₙ)        (db)˙ = Σₙ dẏₙ
    """
    x2 = cache.x.reshape(-1, layer.in_features)
    dy2 = dy.reshape(-1, layer.out_features)
    dydot2 = dydot.reshape(-1, layer.out_features)
    gw = dydot2.T @ x2
    if xdot is not None:
        gw += dy2.T @ xdot.reshape(-1, layer.in_features)
    grads = {"weight": gw}
    if layer.bias is not None:
        grads["bias"] = dydot2.sum(axis=0)
    if not need_dx:
        return NO_DX, grads
    dxdot = dydot @ layer.weight.data
    wdot = thetadot.get("weight")
    if wdot is not None:
        dxdot = dxdot + dy @ wdot
    return dxdot, grads


def linear_uses_gram(r: int, i: int, o: int) -> bool:
    """Whether the Gram trick is cheaper than materializing dWₙ for a Linear with R extra positions.

    Per sample: Gram R²(i + o) multiply-adds (two R×R Gram matrices), materializing R·i·o (dWₙ = dyₙᵀxₙ).
    """
    return r * r * (i + o) < r * i * o


@per_sample_grad_norms_rules.register(Linear)
def _linear_norms(entry: TapeEntry, factor: float) -> dict[str, np.ndarray]:
    """Per-sample norms of an affine layer, y = x Wᵀ + b, without materializing dWₙ where cheaper.

    Input (N, i):  dWₙ = dyₙᵀ xₙ is an outer product (o × i), so  ‖dWₙ‖ = ‖dyₙ‖·‖xₙ‖  and  ‖dbₙ‖ = ‖dyₙ‖.
        Cost N(i + o), no per-sample matrix at all.
    Input (N, R, i) (extra axes flattened into R):  dWₙ = Σᵣ dyₙᵣᵀ xₙᵣ, and
        ‖dWₙ‖² = Σᵣ Σᵣ′ (dyₙᵣ·dyₙᵣ′)(xₙᵣ·xₙᵣ′)   (the Gram trick: ⟨dyᵣᵀxᵣ, dyᵣ′ᵀxᵣ′⟩ = (dyᵣ·dyᵣ′)(xᵣ·xᵣ′)),
        cost N·R²(i + o), used when ``linear_uses_gram``; otherwise dWₙ is materialized in chunks of
        samples (cost N·R·i·o). ‖dbₙ‖ = ‖Σᵣ dyₙᵣ‖.
    Every norm is multiplied by ``factor`` (N under "mean", 1 under "sum").
    """
    cache: LinearCache = entry.cache
    x, dy = cache.x, entry.dy
    n = x.shape[0]
    i, o = x.shape[-1], dy.shape[-1]
    x3 = x.reshape(n, -1, i)
    dy3 = dy.reshape(n, -1, o)
    r = x3.shape[1]
    out: dict[str, np.ndarray] = {}
    dy_norms = norms(dy3) if r == 1 else None  # ‖dyₙ‖: both ‖dWₙ‖'s factor and ‖dbₙ‖ when R = 1
    if "weight" in entry.grads:
        if dy_norms is not None:
            w = dy_norms * norms(x3)
        elif linear_uses_gram(r, i, o):
            gy = dy3 @ np.swapaxes(dy3, 1, 2)  # (N, R, R): dyₙᵣ·dyₙᵣ′
            gx = x3 @ np.swapaxes(x3, 1, 2)
            w = sqrt_nonneg(np.einsum("nrs,nrs->n", gy, gx))
        else:
            w = np.empty(n, dtype=np.result_type(x, dy))
            step = max(1, CHUNK_ELEMENTS // (i * o))
            for n0 in range(0, n, step):
                dwn = np.swapaxes(dy3[n0 : n0 + step], 1, 2) @ x3[n0 : n0 + step]  # (n, o, i)
                w[n0 : n0 + step] = norms(dwn)
        out["weight"] = w * factor
    if "bias" in entry.grads:
        out["bias"] = (dy_norms if dy_norms is not None else norms(dy3.sum(axis=1))) * factor
    return out
