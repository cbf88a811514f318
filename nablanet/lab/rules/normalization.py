"""Lab rules for ``BatchNorm1d``/``BatchNorm2d`` and ``LayerNorm`` (``layers/normalization.py``).

Batch norm has rules with running statistics only (eval mode): in training mode every sample's
output depends on the whole batch, which the curvature lab does not model; the rules refuse it.
Layer norm normalizes each sample's own trailing axes, so its rules hold in either mode.
"""

from __future__ import annotations

import numpy as np

from nablanet.lab.registry import jvp_rules, vjp_rop_rules
from nablanet.lab.rop import RopResult, Tangents, add
from nablanet.layers.base import NO_DX, Layer
from nablanet.layers.normalization import BatchNorm1d, BatchNorm2d, BatchNormCache, LayerNorm, LayerNormCache


def _check_running_stats(layer: Layer, cache: BatchNormCache) -> None:
    if cache.batch_stats:
        who = type(layer).__name__
        raise ValueError(
            f"{who} normalized with this batch's statistics (training mode, or track_running_stats=False), so "
            "every sample's output depends on the whole batch and its running statistics were updated by the "
            "forward pass; the curvature lab supports batch norm only with running statistics. Fix: pass "
            "train=False (eval mode) with track_running_stats=True, or use LayerNorm."
        )


@jvp_rules.register(BatchNorm1d, BatchNorm2d)
def _jvp_batchnorm(
    layer: BatchNorm1d | BatchNorm2d, cache: BatchNormCache, xdot: np.ndarray | None, thetadot: Tangents
) -> np.ndarray | None:
    """Eval mode, y = γ s (x − μ) + β with running μ, s = 1/√(σ² + ε) fixed:  ẏ = γ s ẋ + γ̇ x̂ + β̇."""
    _check_running_stats(layer, cache)
    shape = cache.inv_std.shape  # (C, 1, …)
    ydot = None
    if xdot is not None:
        scale = cache.inv_std if layer.weight is None else cache.inv_std * layer.weight.data.reshape(shape)
        ydot = xdot * scale
    gdot, bdot = thetadot.get("weight"), thetadot.get("bias")
    if gdot is not None and layer.weight is not None:
        ydot = add(ydot, cache.xhat * gdot.reshape(shape))
    if bdot is not None and layer.bias is not None:
        ydot = add(ydot, np.broadcast_to(bdot.reshape(shape), cache.xhat.shape))
    return ydot


@vjp_rop_rules.register(BatchNorm1d, BatchNorm2d)
def _rop_batchnorm(
    layer: BatchNorm1d | BatchNorm2d, cache: BatchNormCache, dy: np.ndarray, dydot: np.ndarray,
    xdot: np.ndarray | None, thetadot: Tangents, need_dx: bool,
) -> RopResult:
    """Eval mode: dx = dy γ s, dγ = Σ dy x̂, dβ = Σ dy (sums over n and the spatial axes), so

        (dx)˙ = (dẏ γ + dy γ̇) s      (dγ)˙ = Σ (dẏ x̂ + dy s ẋ)      (dβ)˙ = Σ dẏ
    """
    _check_running_stats(layer, cache)
    s = cache.inv_std
    axes = (0, *range(2, dy.ndim))
    grads: dict[str, np.ndarray] = {}
    if layer.weight is not None:
        t = dydot * cache.xhat if xdot is None else dydot * cache.xhat + dy * s * xdot
        grads["weight"] = t.sum(axis=axes)
    if layer.bias is not None:
        grads["bias"] = dydot.sum(axis=axes)
    if not need_dx:
        return NO_DX, grads
    g = dydot if layer.weight is None else dydot * layer.weight.data.reshape(s.shape)
    gdot = thetadot.get("weight")
    if gdot is not None and layer.weight is not None:
        g = g + dy * gdot.reshape(s.shape)
    return g * s, grads


def _layernorm_xhat_dot(cache: LayerNormCache, xdot: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """x̂ = (x − μ) s:  x̂˙ = s (ẋ − mean ẋ − x̂ mean(x̂ ẋ))  (means over the normalized axes)."""
    xhat = cache.xhat
    return cache.inv_std * (xdot - xdot.mean(axis=axes, keepdims=True)
                            - xhat * (xhat * xdot).mean(axis=axes, keepdims=True))


@jvp_rules.register(LayerNorm)
def _jvp_layernorm(
    layer: LayerNorm, cache: LayerNormCache, xdot: np.ndarray | None, thetadot: Tangents
) -> np.ndarray | None:
    """y = γ ⊙ x̂ + β:  ẏ = γ ⊙ x̂˙ + γ̇ ⊙ x̂ + β̇, with x̂˙ = s (ẋ − mean ẋ − x̂ mean(x̂ ẋ)).

    (From μ̇ = mean ẋ and ṡ = −s² mean(x̂ ẋ), since σ̇² = 2 mean((x − μ) ẋ) and s = (σ² + ε)^(−½).)
    """
    axes = tuple(range(-len(layer.normalized_shape), 0))
    ydot = None
    if xdot is not None:
        xhat_dot = _layernorm_xhat_dot(cache, xdot, axes)
        ydot = xhat_dot if layer.weight is None else xhat_dot * layer.weight.data
    gdot, bdot = thetadot.get("weight"), thetadot.get("bias")
    if gdot is not None and layer.weight is not None:
        ydot = add(ydot, cache.xhat * gdot)
    if bdot is not None and layer.bias is not None:
        ydot = add(ydot, np.broadcast_to(bdot, cache.xhat.shape))
    return ydot


@vjp_rop_rules.register(LayerNorm)
def _rop_layernorm(
    layer: LayerNorm, cache: LayerNormCache, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None,
    thetadot: Tangents, need_dx: bool,
) -> RopResult:
    """Tangent of dx = s (g − mean g − x̂ mean(g x̂)), g = γ ⊙ dy, dγ = Σ dy ⊙ x̂, dβ = Σ dy:

        ġ = γ ⊙ dẏ + γ̇ ⊙ dy,   ṡ = −s² mean(x̂ ẋ),   x̂˙ = s (ẋ − mean ẋ − x̂ mean(x̂ ẋ))
        (dx)˙ = ṡ (g − mean g − x̂ mean(g x̂)) + s (ġ − mean ġ − x̂˙ mean(g x̂) − x̂ mean(ġ x̂ + g x̂˙))
        (dγ)˙ = Σ (dẏ ⊙ x̂ + dy ⊙ x̂˙)      (dβ)˙ = Σ dẏ      (sums over the batch and middle axes)
    """
    xhat, s = cache.xhat, cache.inv_std
    k = len(layer.normalized_shape)
    axes = tuple(range(-k, 0))
    lead = tuple(range(dy.ndim - k))
    xhat_dot = None if xdot is None else _layernorm_xhat_dot(cache, xdot, axes)
    grads: dict[str, np.ndarray] = {}
    if layer.weight is not None:
        t = dydot * xhat if xhat_dot is None else dydot * xhat + dy * xhat_dot
        grads["weight"] = t.sum(axis=lead)
    if layer.bias is not None:
        grads["bias"] = dydot.sum(axis=lead)
    if not need_dx:
        return NO_DX, grads

    def mean(a: np.ndarray) -> np.ndarray:
        return a.mean(axis=axes, keepdims=True)

    g = dy if layer.weight is None else dy * layer.weight.data
    gdot = dydot if layer.weight is None else dydot * layer.weight.data
    wdot = thetadot.get("weight")
    if wdot is not None and layer.weight is not None:
        gdot = gdot + dy * wdot
    m_gx = mean(g * xhat)
    if xhat_dot is None or xdot is None:
        return s * (gdot - mean(gdot) - xhat * mean(gdot * xhat)), grads
    sdot = -s * s * mean(xhat * xdot)
    dxdot = sdot * (g - mean(g) - xhat * m_gx) + s * (
        gdot - mean(gdot) - xhat_dot * m_gx - xhat * mean(gdot * xhat + g * xhat_dot)
    )
    return dxdot, grads
