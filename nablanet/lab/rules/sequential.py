"""Lab rules for ``Sequential`` (``layers/sequential.py``): the chain rule, tangent by tangent.

Forward R-pass:  ẏ₀ = ẋ,  ẏₗ = jvpₗ(ẏₗ₋₁, θ̇ₗ)  for l = 1 … k;  ẏ = ẏₖ.
Backward R-pass, the tangent of dyₗ₋₁ = VJPₗ(dyₗ):  with dyₖ = dy and (dyₖ)˙ = dẏ,
    ((dyₗ₋₁)˙, (dθₗ)˙) = vjp_ropₗ(dyₗ, (dyₗ)˙, ẏₗ₋₁, θ̇ₗ)   for l = k … 1;   (dx)˙ = (dy₀)˙.
The primal dyₗ are recomputed by the children's VJPs (the rules see the forward's caches only), and
each child's input tangent ẏₗ₋₁ by the forward R-pass again. θ̇ is keyed by the Sequential's
state_dict names ("0.weight", "2.1.bias"); each child gets its own slice (``rop.child_tangents``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nablanet.lab import rop
from nablanet.lab.registry import jvp_rules, vjp_rop_rules
from nablanet.layers import kernels
from nablanet.layers.base import NO_DX, Layer
from nablanet.layers.sequential import Sequential


def children(layer: Layer) -> list[tuple[str, Layer]]:
    return list(layer._modules.items())


def tangents(layer: Layer, caches: list[Any], xdot: Any, thetadot: rop.Tangents) -> list[Any]:
    """ẏ₀ = ẋ, ẏ₁, …, ẏₖ: each child's input tangent, then the output's (None: zero)."""
    out = [xdot]
    for (name, child), cache in zip(children(layer), caches, strict=True):
        out.append(rop.jvp(child, cache, out[-1], rop.child_tangents(thetadot, name)))
    return out


@jvp_rules.register(Sequential)
def jvp_chain(layer: Layer, caches: list[Any], xdot: Any, thetadot: rop.Tangents) -> Any:
    """ẏₗ = jvpₗ(ẏₗ₋₁, θ̇ₗ) along the children."""
    return tangents(layer, caches, xdot, thetadot)[-1]


def output_gradients(layer: Layer, caches: list[Any], dy: Any) -> list[Any]:
    """Each child's dyₗ = ∂L/∂(its output), by the children's VJPs from dyₖ = dy down (a leaf's is read
    off the backward pass where the curvature lab handed it in: ``rop.primal_dy``)."""
    kids = children(layer)
    dys: list[Any] = [None] * len(kids)
    for l in reversed(range(len(kids))):
        dys[l] = dy
        if l > 0:
            known = rop.primal_dy(caches[l - 1])
            dy = known if known is not None else kernels.vjp(kids[l][1], caches[l], dy, per_sample=False,
                                                             need_dx=True)[0]
    return dys


@vjp_rop_rules.register(Sequential)
def vjp_rop_chain(
    layer: Layer, caches: list[Any], dy: Any, dydot: Any, xdot: Any, thetadot: rop.Tangents, need_dx: bool
) -> tuple[Any, dict[str, np.ndarray]]:
    """((dyₗ₋₁)˙, (dθₗ)˙) = vjp_ropₗ(dyₗ, (dyₗ)˙, ẏₗ₋₁, θ̇ₗ) for l = k … 1."""
    kids = children(layer)
    xdots = tangents(layer, caches, xdot, thetadot)
    dys = output_gradients(layer, caches, dy)
    grads: dict[str, np.ndarray] = {}
    for l in reversed(range(len(kids))):
        name, child = kids[l]
        dydot, g = rop.vjp_rop(child, caches[l], dys[l], dydot, xdots[l], rop.child_tangents(thetadot, name),
                               need_dx=need_dx or l > 0)
        grads.update(rop.prefixed(name, g))
    return (dydot if need_dx else NO_DX), grads
