"""Forward-mode and second-order rules per layer and per loss: the R-operator of Pearlmutter (1994).

Notation. Every quantity is a function of the parameters θ (and of the input x). Move θ along a
direction v, θ(ε) = θ + εv; a dot is the derivative d/dε at ε = 0 (the R-operator): θ̇ = v, ẋ, ẏ,
dẏ = (dy)˙, … Index letters: n batch, i in, o out, c class.

Two rules per layer type, kept here in type-keyed registries (the layers stay untouched, STYLE 3):

* ``jvp`` (forward R-pass), the Jacobian-vector product of the forward:
      ẏ = ∂y/∂x · ẋ + Σ_θ ∂y/∂θ · θ̇
  e.g. Linear ẏ = ẋ Wᵀ + x Ẇᵀ + ḃ;  elementwise ẏ = f′(x) ⊙ ẋ.
* ``vjp_rop`` (backward R-pass), the tangent of the layer's VJP. The VJP maps (x, θ, dy) to
  (dx, dθ); its tangent is
      (dx)˙ = VJP(dẏ) + [∂(dx)/∂x] ẋ + [∂(dx)/∂θ] θ̇        (likewise for each dθ)
  e.g. Linear: dx = dy W → (dx)˙ = dẏ W + dy Ẇ;  dW = dyᵀ x → (dW)˙ = dẏᵀ x + dyᵀ ẋ;  (db)˙ = Σₙ dẏₙ.
  Elementwise: dx = dy ⊙ f′(x) → (dx)˙ = dẏ ⊙ f′(x) + dy ⊙ f″(x) ⊙ ẋ, with f″ from ``d2f_rules``.

and one rule per loss, ``loss_hvp``: the tangent of ∂L/∂y, i.e. the loss Hessian times ẏ,
(∂L/∂y)˙ = ∇²_y L · ẏ.

Running ``jvp`` forward through a chain (ẋ = 0 at the input), ``loss_hvp`` at the output and
``vjp_rop`` backward gives the exact Hessian-vector product H v = (∇_θ L)˙ (forward-over-reverse),
see ``nablanet.lab.curvature``. A zero tangent is passed as ``None`` (the model input's ẋ, and
anything computed from it alone), so no work is spent on zeros. Tangents carry no vector axes: one
direction per pass. A parameter missing from θ̇ has a zero tangent.

An unknown layer, activation or loss fails loudly with a NotImplementedError naming its type.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from itertools import product
from typing import Any, TypeVar

import numpy as np

from nablanet.lab.registry import Registry
from nablanet.layers._windows import ix, pad_channels_last, tap_slices
from nablanet.layers.activations import (
    ELU,
    GELU,
    Elementwise,
    ElementwiseCache,
    Hardtanh,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
    sigmoid,
)
from nablanet.layers.base import NO_DX, Layer
from nablanet.layers.conv import Conv1d, Conv2d, ConvCache
from nablanet.layers.dropout import Dropout, Dropout2d, RReLU, ScaleCache
from nablanet.layers.linear import Linear, LinearCache
from nablanet.layers.normalization import BatchNorm1d, BatchNorm2d, BatchNormCache, LayerNorm, LayerNormCache
from nablanet.layers.pooling import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxCache,
    MaxPool1d,
    MaxPool2d,
)
from nablanet.layers.shape import Flatten
from nablanet.layers.softmax import LogSoftmax, Softmax, SoftmaxCache
from nablanet.losses.base import Loss, LossCache
from nablanet.losses.binary import _GRAD_EPS, BCELoss, BCEWithLogitsLoss
from nablanet.losses.cross_entropy import CrossEntropyLoss, NLLLoss
from nablanet.losses.kl import KLDivLoss
from nablanet.losses.quadratic import MSELoss, QuadraticLoss
from nablanet.parameter import Parameter

Tangents = Mapping[str, np.ndarray]
"""Parameter tangents θ̇ of one layer, by local name (``"weight"``, ``"bias"``)."""

jvp_rules = Registry("jvp")
"""layer type → ``rule(layer, cache, ẋ | None, θ̇) -> ẏ | None``."""

vjp_rop_rules = Registry("vjp_rop")
"""layer type → ``rule(layer, cache, dy, dẏ, ẋ | None, θ̇, need_dx) -> ((dx)˙, {name: (dθ)˙})``."""

d2f_rules = Registry("d2f")
"""elementwise activation type → ``rule(layer, x, y) -> f″(x) | None`` (None: f″ = 0 everywhere)."""

loss_hvp_rules = Registry("loss_hvp")
"""loss type → ``rule(loss, cache, ẏ) -> ∇²_y L · ẏ`` (the input's shape)."""

L = TypeVar("L", bound=Layer)


# -- dispatch ----------------------------------------------------------------------------------------
def jvp(layer: Layer, cache: Any, xdot: np.ndarray | None, thetadot: Tangents) -> np.ndarray | None:
    """ẏ = ∂y/∂x ẋ + Σ ∂y/∂θ θ̇ for one layer at the point its forward cached (None: ẏ = 0)."""
    return jvp_rules[layer](layer, cache, xdot, thetadot)


def vjp_rop(
    layer: Layer,
    cache: Any,
    dy: np.ndarray,
    dydot: np.ndarray,
    xdot: np.ndarray | None,
    thetadot: Tangents,
    *,
    need_dx: bool = True,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The tangent of ``layer.vjp(cache, dy)``: ((dx)˙, {name: (dθ)˙}). With need_dx=False (dx)˙ is NO_DX."""
    return vjp_rop_rules[layer](layer, cache, dy, dydot, xdot, thetadot, need_dx)


def d2f(layer: Elementwise, x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """f″(x) of an elementwise activation (y = f(x) is passed too), or None where f″ ≡ 0."""
    return d2f_rules[layer](layer, x, y)


def loss_rule(loss: Loss) -> Callable[[Loss, LossCache, np.ndarray], np.ndarray]:
    """The ``loss_hvp`` rule for ``type(loss)``, or a NotImplementedError naming the type."""
    rule = loss_hvp_rules.find(loss)
    if rule is None:
        known = ", ".join(sorted(c.__name__ for c in loss_hvp_rules._rules))
        raise NotImplementedError(
            f"loss_hvp: no second-order rule for loss type {type(loss).__name__}. Known losses: {known}. "
            f"Register one with @loss_hvp_rules.register({type(loss).__name__}) in nablanet.lab.rop."
        )
    return rule


def loss_hvp(loss: Loss, cache: LossCache, ydot: np.ndarray) -> np.ndarray:
    """∇²_y L · ẏ: the tangent of ``loss.vjp(cache)`` when the loss input moves along ẏ."""
    if loss.reduction == "none":
        raise ValueError(f"loss_hvp needs a scalar loss; {loss!r} has reduction='none'. Use 'mean' or 'sum'.")
    return np.asarray(loss_rule(loss)(loss, cache, ydot), dtype=cache.dtype)


# -- small helpers -------------------------------------------------------------------------------------
def _add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """a + b where None stands for a zero array."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _substitute(layer: L, **params: np.ndarray | None) -> L:
    """A shallow copy of ``layer`` whose named parameters are replaced (None removes one, e.g. the bias).

    The copy has its own parameter table, so ``layer`` is never touched (forward stays reentrant);
    used to evaluate a bilinear layer at a tangent, e.g. conv(x, Ẇ) = the layer with W := Ẇ, b := None.
    """
    clone = copy.copy(layer)
    object.__setattr__(clone, "_parameters", dict(layer._parameters))
    for name, arr in params.items():
        setattr(clone, name, None if arr is None else Parameter(arr))
    return clone


def _no_params(layer: Layer, thetadot: Tangents) -> None:
    """Parameter-free layers accept no parameter tangents."""
    if thetadot:
        raise ValueError(
            f"{type(layer).__name__} has no parameters but got tangents for {sorted(thetadot)}; pass {{}} for it."
        )


# -- linear maps without parameters: ẏ = f(ẋ), (dx)˙ = VJP(dẏ) --------------------------------------------
@jvp_rules.register(Identity, Flatten, AvgPool1d, AvgPool2d, AdaptiveAvgPool1d, AdaptiveAvgPool2d)
def _jvp_linear_map(layer: Layer, cache: Any, xdot: np.ndarray | None, thetadot: Tangents) -> np.ndarray | None:
    """A linear layer y = A x (identity, reshape, averaging) is its own JVP: ẏ = A ẋ = layer(ẋ)."""
    _no_params(layer, thetadot)
    return None if xdot is None else layer.forward(xdot)[0]


@vjp_rop_rules.register(
    Identity, Flatten, AvgPool1d, AvgPool2d, AdaptiveAvgPool1d, AdaptiveAvgPool2d, MaxPool1d, MaxPool2d,
    Dropout, Dropout2d, RReLU,
)
def _rop_fixed_jacobian(
    layer: Layer, cache: Any, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None, thetadot: Tangents,
    need_dx: bool,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Layers whose Jacobian J is fixed by the cache (linear maps; max-pool given its argmax; dropout
    and RReLU given their mask/slopes): dx = Jᵀ dy has no x-dependence, so (dx)˙ = Jᵀ dẏ."""
    _no_params(layer, thetadot)
    if not need_dx:
        return NO_DX, {}
    return layer.vjp(cache, dydot)[0], {}


@jvp_rules.register(Dropout, Dropout2d, RReLU)
def _jvp_scale(layer: Layer, cache: ScaleCache, xdot: np.ndarray | None, thetadot: Tangents) -> np.ndarray | None:
    """y = x ⊙ m with the cached factor m (dropout mask, RReLU slopes):  ẏ = ẋ ⊙ m."""
    _no_params(layer, thetadot)
    if xdot is None or cache.factor is None:
        return xdot
    return xdot * cache.factor


@jvp_rules.register(MaxPool1d, MaxPool2d)
def _jvp_maxpool(
    layer: MaxPool1d | MaxPool2d, cache: MaxCache, xdot: np.ndarray | None, thetadot: Tangents
) -> np.ndarray | None:
    """Max pooling is linear once the argmax is fixed:  ẏ[n, c, p] = ẋ[n, c, argmax P(p)].

    One masked copy per kernel tap t: ẏ ← ẋ's tap-t view where the cached argmax equals t (ties go
    to the first maximum, as in the forward). Padding never wins a window, so it is padded with 0.
    """
    _no_params(layer, thetadot)
    if xdot is None:
        return None
    kernel, stride, dilation = layer.kernel_size, layer.stride, layer.dilation
    pads = tuple((p, p) for p in layer.padding)
    xp = pad_channels_last(np.moveaxis(xdot, 1, -1), pads)  # (N, *Sₚ, C)
    ydot = np.zeros(cache.argmax.shape, dtype=xdot.dtype)  # (N, *S′, C)
    for t, taps in enumerate(product(*(range(k) for k in kernel))):
        view = xp[ix(Ellipsis, *tap_slices(taps, stride, dilation, cache.out_spatial), slice(None))]
        np.copyto(ydot, view, where=cache.argmax == t)
    return np.moveaxis(ydot, -1, 1)


# -- affine and bilinear layers -------------------------------------------------------------------------
@jvp_rules.register(Linear)
def _jvp_linear(layer: Linear, cache: LinearCache, xdot: np.ndarray | None, thetadot: Tangents) -> np.ndarray | None:
    """y = x Wᵀ + b is bilinear in (x, W):  ẏ = ẋ Wᵀ + x Ẇᵀ + ḃ.   Shapes: x, ẋ (N, *, i)  Ẇ (o, i)  ḃ (o,)."""
    ydot = None if xdot is None else xdot @ layer.weight.data.T
    wdot, bdot = thetadot.get("weight"), thetadot.get("bias")
    if wdot is not None:
        ydot = _add(ydot, cache.x @ wdot.T)
    if bdot is not None and layer.bias is not None:
        ydot = _add(ydot, np.broadcast_to(bdot, (*cache.x.shape[:-1], layer.out_features)))
    return ydot


@vjp_rop_rules.register(Linear)
def _rop_linear(
    layer: Linear, cache: LinearCache, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None,
    thetadot: Tangents, need_dx: bool,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Tangent of dx = dy W, dW = Σₙ dyₙᵀ xₙ, db = Σₙ dyₙ:

        (dx)˙ = dẏ W + dy Ẇ        (dW)˙ = Σₙ (dẏₙᵀ xₙ + dyₙᵀ ẋₙ)        (db)˙ = Σₙ dẏₙ

    Shapes: x (N, *, i), rows M = N·∏*: dy, dẏ (M, o) after reshaping; W, Ẇ (o, i).
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
    im2col block. Shapes: x, ẋ (N, C, *S)  W, Ẇ (O, C/G, *k)  ḃ (O,)  ẏ (N, O, *S′).
    """
    ydot = None if xdot is None else _substitute(layer, bias=None).forward(xdot)[0]
    wdot, bdot = thetadot.get("weight"), thetadot.get("bias")
    if wdot is not None:
        ydot = _add(ydot, _conv_x_wdot(layer, cache, wdot))
    if bdot is not None and layer.bias is not None:
        bcol = bdot.reshape((-1,) + (1,) * len(cache.out_spatial))  # (O, 1, …) along the channel axis
        ydot = _add(ydot, np.broadcast_to(bcol, (cache.x_shape[0], layer.out_channels, *cache.out_spatial)))
    return ydot


@vjp_rop_rules.register(Conv1d, Conv2d)
def _rop_conv(
    layer: Conv1d | Conv2d, cache: ConvCache, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None,
    thetadot: Tangents, need_dx: bool,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Bilinear again. With convᵀ the input gradient and corr the weight gradient of the VJP:

        (dx)˙ = convᵀ(dẏ, W) + convᵀ(dy, Ẇ)      (dW)˙ = corr(dẏ, x) + corr(dy, ẋ)      (db)˙ = Σₙ,ₚ dẏ

    Each term is one call of the layer's own VJP: at (x, W) with dẏ; with W := Ẇ for convᵀ(dy, Ẇ);
    and on the im2col cache of ẋ (from a bias-free forward of ẋ) for corr(dy, ẋ).
    """
    dxdot, g = layer.vjp(cache, dydot, need_dx=need_dx)
    grads = dict(g)
    if xdot is not None:
        _, xdot_cache = _substitute(layer, bias=None).forward(xdot)
        grads["weight"] = grads["weight"] + layer.vjp(xdot_cache, dy, need_dx=False)[1]["weight"]
    wdot = thetadot.get("weight")
    if need_dx and wdot is not None:
        dxdot = dxdot + _substitute(layer, weight=wdot, bias=None).vjp(cache, dy)[0]
    return dxdot, grads


# -- normalization (fixed statistics, or per-sample statistics) -----------------------------------------
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
        ydot = _add(ydot, cache.xhat * gdot.reshape(shape))
    if bdot is not None and layer.bias is not None:
        ydot = _add(ydot, np.broadcast_to(bdot.reshape(shape), cache.xhat.shape))
    return ydot


@vjp_rop_rules.register(BatchNorm1d, BatchNorm2d)
def _rop_batchnorm(
    layer: BatchNorm1d | BatchNorm2d, cache: BatchNormCache, dy: np.ndarray, dydot: np.ndarray,
    xdot: np.ndarray | None, thetadot: Tangents, need_dx: bool,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
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
        ydot = _add(ydot, cache.xhat * gdot)
    if bdot is not None and layer.bias is not None:
        ydot = _add(ydot, np.broadcast_to(bdot, cache.xhat.shape))
    return ydot


@vjp_rop_rules.register(LayerNorm)
def _rop_layernorm(
    layer: LayerNorm, cache: LayerNormCache, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None,
    thetadot: Tangents, need_dx: bool,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
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


# -- elementwise activations: f′ from the layer, f″ from d2f_rules ---------------------------------------
@jvp_rules.register(Elementwise)
def _jvp_elementwise(
    layer: Elementwise, cache: ElementwiseCache, xdot: np.ndarray | None, thetadot: Tangents
) -> np.ndarray | None:
    """y = f(x) elementwise:  ẏ = f′(x) ⊙ ẋ  (f′ is the layer's own ``df``)."""
    _no_params(layer, thetadot)
    return None if xdot is None else xdot * layer.df(cache.x, cache.y)


@vjp_rop_rules.register(Elementwise)
def _rop_elementwise(
    layer: Elementwise, cache: ElementwiseCache, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None,
    thetadot: Tangents, need_dx: bool,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """dx = dy ⊙ f′(x):  (dx)˙ = dẏ ⊙ f′(x) + dy ⊙ f″(x) ⊙ ẋ."""
    _no_params(layer, thetadot)
    if not need_dx:
        return NO_DX, {}
    dxdot = dydot * layer.df(cache.x, cache.y)
    if xdot is not None:
        f2 = d2f(layer, cache.x, cache.y)
        if f2 is not None:
            dxdot = dxdot + dy * f2 * xdot
    return dxdot, {}


@d2f_rules.register(ReLU, LeakyReLU, Hardtanh)
def _d2f_piecewise_linear(layer: Elementwise, x: np.ndarray, y: np.ndarray) -> None:
    """Piecewise linear (ReLU, LeakyReLU, Hardtanh): f″ = 0 away from the kinks (and taken as 0 there)."""
    return None


@d2f_rules.register(Sigmoid)
def _d2f_sigmoid(layer: Sigmoid, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """y = σ(x), f′ = y(1 − y):  f″ = y(1 − y)(1 − 2y)."""
    return y * (1 - y) * (1 - 2 * y)


@d2f_rules.register(Tanh)
def _d2f_tanh(layer: Tanh, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """y = tanh x, f′ = 1 − y²:  f″ = −2y(1 − y²)."""
    return -2 * y * (1 - y * y)


@d2f_rules.register(Softplus)
def _d2f_softplus(layer: Softplus, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """f′ = σ(βx):  f″ = β σ(βx)(1 − σ(βx)), and 0 where βx > threshold (the linear branch, as PyTorch)."""
    bx = layer.beta * x
    s = sigmoid(bx)
    return np.where(bx > layer.threshold, 0.0, layer.beta * s * (1 - s)).astype(x.dtype, copy=False)


@d2f_rules.register(ELU)
def _d2f_elu(layer: ELU, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """f′ = 1 (x > 0), α eˣ (x ≤ 0):  f″ = 0 (x > 0), α eˣ = y + α (x ≤ 0), the x ≤ 0 branch at 0 as f′."""
    return np.where(x > 0, 0.0, y + layer.alpha).astype(x.dtype, copy=False)


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_GELU_TANH_COEF = 0.044715  # as in nablanet.layers.activations.GELU


@d2f_rules.register(GELU)
def _d2f_gelu(layer: GELU, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact:  f′ = Φ + x φ, φ′ = −x φ  ⇒  f″ = 2φ + x φ′ = φ(x)(2 − x²).

    tanh form, t = tanh u, u = √(2/π)(x + c x³), u′ = √(2/π)(1 + 3c x²), u″ = √(2/π)·6c x:
        f′ = ½(1 + t) + ½ x (1 − t²) u′   ⇒   f″ = (1 − t²) (u′ − x t u′² + ½ x u″).
    x is clipped as in the layer (±40 in φ, ±10 in u), where f″ is already 0 in floating point.
    """
    x64 = x.astype(np.float64, copy=False)
    if layer.approximate == "tanh":
        xc = np.clip(x64, -10, 10)
        t = np.tanh(_SQRT_2_OVER_PI * (xc + _GELU_TANH_COEF * xc * xc * xc))
        du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_TANH_COEF * xc * xc)
        d2u = _SQRT_2_OVER_PI * 6 * _GELU_TANH_COEF * xc
        out = (1 - t * t) * (du - xc * t * du * du + 0.5 * xc * d2u)
    else:
        xc = np.clip(x64, -40, 40)
        out = np.exp(-0.5 * xc * xc) * _INV_SQRT_2PI * (2 - xc * xc)
    return out.astype(x.dtype, copy=False)


@d2f_rules.register(SiLU)
def _d2f_silu(layer: SiLU, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """y = x σ(x), f′ = σ(1 + x(1 − σ)):  f″ = σ(1 − σ)(2 + x(1 − 2σ))."""
    s = sigmoid(x)
    return s * (1 - s) * (2 + x * (1 - 2 * s))


# -- softmax over one axis --------------------------------------------------------------------------------
@jvp_rules.register(Softmax)
def _jvp_softmax(layer: Softmax, cache: SoftmaxCache, xdot: np.ndarray | None, thetadot: Tangents) -> np.ndarray | None:
    """y = softmax(z):  ẏ = y ⊙ (ż − ⟨ż, y⟩)  (⟨·,·⟩ along dim)."""
    _no_params(layer, thetadot)
    if xdot is None:
        return None
    y = cache.y
    return y * (xdot - (xdot * y).sum(axis=cache.axis, keepdims=True))


@vjp_rop_rules.register(Softmax)
def _rop_softmax(
    layer: Softmax, cache: SoftmaxCache, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None,
    thetadot: Tangents, need_dx: bool,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """dz = y ⊙ (dy − ⟨dy, y⟩):  (dz)˙ = ẏ ⊙ (dy − ⟨dy, y⟩) + y ⊙ (dẏ − ⟨dẏ, y⟩ − ⟨dy, ẏ⟩)."""
    _no_params(layer, thetadot)
    if not need_dx:
        return NO_DX, {}
    y, a = cache.y, cache.axis
    dxdot = y * (dydot - (dydot * y).sum(axis=a, keepdims=True))
    ydot = _jvp_softmax(layer, cache, xdot, thetadot)
    if ydot is not None:
        dxdot = dxdot + ydot * (dy - (dy * y).sum(axis=a, keepdims=True)) - y * (dy * ydot).sum(axis=a, keepdims=True)
    return dxdot, {}


@jvp_rules.register(LogSoftmax)
def _jvp_log_softmax(
    layer: LogSoftmax, cache: SoftmaxCache, xdot: np.ndarray | None, thetadot: Tangents
) -> np.ndarray | None:
    """y = z − log Σ exp z, p = exp y:  ẏ = ż − ⟨p, ż⟩."""
    _no_params(layer, thetadot)
    if xdot is None:
        return None
    return xdot - (np.exp(cache.y) * xdot).sum(axis=cache.axis, keepdims=True)


@vjp_rop_rules.register(LogSoftmax)
def _rop_log_softmax(
    layer: LogSoftmax, cache: SoftmaxCache, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None,
    thetadot: Tangents, need_dx: bool,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """dz = dy − p Σ dy:  (dz)˙ = dẏ − p Σ dẏ − ṗ Σ dy,  ṗ = p ⊙ ẏ = p ⊙ (ż − ⟨p, ż⟩)."""
    _no_params(layer, thetadot)
    if not need_dx:
        return NO_DX, {}
    p, a = np.exp(cache.y), cache.axis
    dxdot = dydot - p * dydot.sum(axis=a, keepdims=True)
    if xdot is not None:
        pdot = p * (xdot - (p * xdot).sum(axis=a, keepdims=True))
        dxdot = dxdot - pdot * dy.sum(axis=a, keepdims=True)
    return dxdot, {}


# -- losses: ∇²_y L · ẏ, with s = ∂L/∂terms (1/Z under "mean", 1 under "sum") ------------------------
@loss_hvp_rules.register(CrossEntropyLoss)
def _hvp_cross_entropy(loss: CrossEntropyLoss, cache: LossCache, ydot: np.ndarray) -> np.ndarray:
    """∂L/∂z = s (p Σ_c r_c − r), with r the effective target (indices, probabilities, weights, label
    smoothing, ignored rows r = 0), so the Hessian is s Σ_c r_c (diag p − p pᵀ) per sample/position:

        (∂L/∂z)˙ = s Σ_c r_c · p ⊙ (ż − ⟨p, ż⟩)     (along the class axis 1)
    """
    aux = cache.aux
    p = aux.p
    pdot = p * (ydot - (p * ydot).sum(axis=1, keepdims=True))
    return pdot * aux.r_sum * loss._scale(cache)


@loss_hvp_rules.register(NLLLoss, KLDivLoss)
def _hvp_linear_loss(loss: Loss, cache: LossCache, ydot: np.ndarray) -> np.ndarray:
    """NLLLoss (−w_y s_y) and KLDivLoss (Σ t (log t − s)) are linear in their input: ∇²L = 0."""
    return np.zeros_like(ydot)


@loss_hvp_rules.register(MSELoss)
def _hvp_mse(loss: MSELoss, cache: LossCache, ydot: np.ndarray) -> np.ndarray:
    """∂L/∂x = 2 s (x − y):  ∇²L ẋ = 2 s ẋ  (s = 1/(N·K) under "mean")."""
    return 2 * loss._scale(cache) * ydot


@loss_hvp_rules.register(QuadraticLoss)
def _hvp_quadratic(loss: QuadraticLoss, cache: LossCache, ydot: np.ndarray) -> np.ndarray:
    """∂L/∂y = s (y − d):  ∇²L ẏ = s ẏ  (s = 1/N under "mean")."""
    return loss._scale(cache) * ydot


@loss_hvp_rules.register(BCEWithLogitsLoss)
def _hvp_bce_logits(loss: BCEWithLogitsLoss, cache: LossCache, ydot: np.ndarray) -> np.ndarray:
    """∂L/∂x = s w [(1 + (p − 1) y) σ(x) − p y]:  ∇²L ẋ = s w (1 + (p − 1) y) σ(x)(1 − σ(x)) ẋ."""
    aux = cache.aux
    sig = aux.sigma
    return loss._scale(cache) * aux.w * (1 + (aux.pos_w - 1) * aux.y) * sig * (1 - sig) * ydot


@loss_hvp_rules.register(BCELoss)
def _hvp_bce(loss: BCELoss, cache: LossCache, ydot: np.ndarray) -> np.ndarray:
    """∂L/∂x = s w (x − y)/max(x(1 − x), ϵ) (ϵ = 10⁻¹², PyTorch's floor), whose derivative is

        s w (x² − 2xy + y)/(x(1 − x))²   where x(1 − x) > ϵ,     s w/ϵ   where the floor is active.
    (PyTorch's double backward adds ϵ to x and 1 − x instead; the two differ by O(ϵ/(x(1 − x))).)
    """
    aux = cache.aux
    x, y = aux.x, aux.y
    den = x * (1 - x)
    safe = np.maximum(den, _GRAD_EPS)
    h = np.where(den > _GRAD_EPS, (x * x - 2 * x * y + y) / (safe * safe), 1.0 / _GRAD_EPS)
    return loss._scale(cache) * aux.w * h * ydot
