"""Lab rules for ``Conv1d`` and ``Conv2d`` (``layers/conv.py``): y = conv(x, W) + b, im2col + GEMM.

Shapes: x, ẋ (N, C, *S)  W, Ẇ (O, C/G, *k)  b, ḃ (O,)  y, ẏ, dy, dẏ (N, O, *S′); G groups,
P = ∏S′ output positions, K_g = ∏k·C_g im2col columns per group.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np

from nablanet.lab.registry import jvp_rules, per_sample_grad_norms_rules, vjp_rop_rules
from nablanet.lab.rop import RopResult, Tangents, add, substitute
from nablanet.lab.rules.base import norms, sqrt_nonneg
from nablanet.layers.base import TapeEntry
from nablanet.layers.conv import Conv1d, Conv2d, ConvCache, _ConvNd


def _conv_x_wdot(layer: Conv1d | Conv2d, cache: ConvCache, wdot: np.ndarray) -> np.ndarray:
    """conv(x, Ẇ) without bias, from the layer's im2col blocks X:  Y = X Ẇₘᵀ  (Ẇₘ (G, O_g, ∏k·C_g),
    its columns in the (tap, channel) order of X). Returns (N, O, *S′)."""
    g, o = layer.groups, layer.out_channels
    wm = np.moveaxis(wdot, 1, -1).reshape(g, o // g, -1)
    n, out = cache.x_shape[0], cache.out_spatial
    p = math.prod(out)
    y = np.empty((n * p, o), dtype=np.result_type(cache.xp, wdot))
    for n0, n1, cols in layer.col_blocks(cache):
        y[n0 * p : n1 * p] = (cols @ wm.transpose(0, 2, 1)).transpose(1, 0, 2).reshape(-1, o)
    return np.moveaxis(y.reshape(n, *out, o), -1, 1)


@jvp_rules.register(Conv1d, Conv2d)
def _jvp_conv(
    layer: Conv1d | Conv2d, cache: ConvCache, xdot: np.ndarray | None, thetadot: Tangents
) -> np.ndarray | None:
    """y = conv(x, W) + b is bilinear in (x, W):  ẏ = conv(ẋ, W) + conv(x, Ẇ) + ḃ.

    conv(ẋ, W) runs the layer's own forward on ẋ with the bias removed; conv(x, Ẇ) is one GEMM per
    im2col block.
    """
    ydot = None if xdot is None else substitute(layer, bias=None).forward(xdot)[0]
    wdot, bdot = thetadot.get("weight"), thetadot.get("bias")
    if wdot is not None:
        ydot = add(ydot, _conv_x_wdot(layer, cache, wdot))
    if bdot is not None and layer.bias is not None:
        bcol = bdot.reshape((-1,) + (1,) * len(cache.out_spatial))  # (O, 1, …) along the channel axis
        ydot = add(ydot, np.broadcast_to(bcol, (cache.x_shape[0], layer.out_channels, *cache.out_spatial)))
    return ydot


@vjp_rop_rules.register(Conv1d, Conv2d)
def _rop_conv(
    layer: Conv1d | Conv2d, cache: ConvCache, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None,
    thetadot: Tangents, need_dx: bool,
) -> RopResult:
    """Bilinear again. With convᵀ the input gradient and corr the weight gradient of the VJP:

        (dx)˙ = convᵀ(dẏ, W) + convᵀ(dy, Ẇ)      (dW)˙ = corr(dẏ, x) + corr(dy, ẋ)      (db)˙ = Σₙ,ₚ dẏ

    Each term is one call of the layer's own VJP: at (x, W) with dẏ; with W := Ẇ for convᵀ(dy, Ẇ);
    and on the im2col cache of ẋ (from a bias-free forward of ẋ) for corr(dy, ẋ).
    """
    dxdot, g = layer.vjp(cache, dydot, need_dx=need_dx)
    grads = dict(g)
    if xdot is not None:
        _, xdot_cache = substitute(layer, bias=None).forward(xdot)
        grads["weight"] = grads["weight"] + layer.vjp(xdot_cache, dy, need_dx=False)[1]["weight"]
    wdot = thetadot.get("weight")
    if need_dx and wdot is not None:
        dxdot = dxdot + substitute(layer, weight=wdot, bias=None).vjp(cache, dy)[0]
    return dxdot, grads


def conv_uses_gram(p: int, og: int, kg: int) -> bool:
    """Whether the Gram trick is cheaper than materializing dWₙ for one group of a convolution.

    Per sample and group, with P output positions, O_g output channels and K_g = ∏k·C_g im2col
    columns: Gram P²(O_g + K_g) multiply-adds, materializing P·O_g·K_g.
    """
    return p * p * (og + kg) < p * og * kg


@per_sample_grad_norms_rules.register(_ConvNd)
def _conv_norms(entry: TapeEntry, factor: float) -> dict[str, np.ndarray]:
    """Per-sample norms of Conv1d/Conv2d from the im2col blocks in the cache, without dWₙ where cheaper.

    Per sample n and group g the weight gradient is a matrix product over the P = ∏S′ output
    positions: dWₙ,g = dYₙ,gᵀ Xₙ,g, with dYₙ,g (P, O_g) the output gradient and Xₙ,g (P, K_g) the
    sample's im2col rows (``layer.col_blocks`` forms them block by block, rows sample-major). Then

        ‖dWₙ‖² = Σ_g ‖dYₙ,gᵀ Xₙ,g‖² = Σ_g Σ_p Σ_p′ (dYₙ,g[p]·dYₙ,g[p′]) (Xₙ,g[p]·Xₙ,g[p′])   (Gram trick)

    costs P²(O_g + K_g) per sample and group (two P×P Gram matrices) against P·O_g·K_g for
    materializing dWₙ,g; ``conv_uses_gram`` picks the cheaper. Either way the work runs block by
    block, so the extra memory is at most about one im2col block. Bias: ‖dbₙ‖ = ‖Σ_p dYₙ[p]‖.
    Every norm is multiplied by ``factor`` (N under "mean", 1 under "sum").
    """
    layer = cast(_ConvNd, entry.layer)  # registered for _ConvNd and its subclasses only
    cache: ConvCache = entry.cache
    dy = entry.dy  # (N, O, *S′)
    n, g = cache.x_shape[0], layer.groups
    og = layer.out_channels // g
    p = math.prod(cache.out_spatial)
    out: dict[str, np.ndarray] = {}
    if "weight" in entry.grads:
        dyg = np.moveaxis(dy, 1, -1).reshape(n, p, g, og)  # (N, P, G, O_g), rows as in im2col
        sq = np.empty(n, dtype=np.result_type(dy, cache.xp))
        for n0, n1, cols in layer.col_blocks(cache):
            kg = cols.shape[-1]
            xb = cols.reshape(g, n1 - n0, p, kg)  # (G, n, P, K_g)
            dyb = dyg[n0:n1].transpose(2, 0, 1, 3)  # (G, n, P, O_g)
            if conv_uses_gram(p, og, kg):
                gy = dyb @ np.swapaxes(dyb, -1, -2)  # (G, n, P, P)
                gx = xb @ np.swapaxes(xb, -1, -2)
                sq[n0:n1] = np.einsum("gnpq,gnpq->n", gy, gx)
            else:
                dw = np.swapaxes(dyb, -1, -2) @ xb  # (G, n, O_g, K_g)
                sq[n0:n1] = np.einsum("gnok,gnok->n", dw, dw)
        out["weight"] = sqrt_nonneg(sq) * factor
    if "bias" in entry.grads:
        out["bias"] = norms(dy.reshape(n, layer.out_channels, -1).sum(axis=-1)) * factor
    return out
