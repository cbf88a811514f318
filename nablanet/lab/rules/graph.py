"""Lab rules for the graph containers ``Residual``, ``Parallel``, ``Multiply`` and ``Pair``
(``layers/graph.py``): each composes its children's rules along its own data flow.

Residual, y = x + f(x):    ẏ = ẋ + ḟ,    (dx)˙ = dẏ + (J_fᵀ dy)˙   (the chain's rules give ḟ and (J_fᵀ dy)˙).
Parallel, yₖ = fₖ(x):      every branch sees ẋ; (dx)˙ = Σₖ (J_fₖᵀ dyₖ)˙, and by ``combine``
    sum:     ẏ = Σₖ ẏₖ,                             (dyₖ)˙ = dẏ
    concat:  ẏ = [ẏ₁, …, ẏ_K],                      (dyₖ)˙ = the slice of dẏ that yₖ filled
    tuple:   ẏ = (ẏ₁, …, ẏ_K),                      (dyₖ)˙ = dẏₖ
    mul:     ẏ = Σₖ ẏₖ ∏_{j≠k} yⱼ,                 (dyₖ)˙ = dẏ ∏_{j≠k} yⱼ + dy Σ_{j≠k} ẏⱼ ∏_{i≠j,k} yᵢ
Multiply and Pair are Parallels (mul, tuple) and find these rules along the class hierarchy.
θ̇ and (dθ)˙ are keyed by state_dict names ("0.weight"); a branch gets its slice by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nablanet.lab import rop
from nablanet.lab.registry import jvp_rules, vjp_rop_rules
from nablanet.layers.base import NO_DX
from nablanet.layers.graph import Parallel, ParallelCache, Residual, ResidualCache


@jvp_rules.register(Residual)
def jvp_residual(layer: Residual, cache: ResidualCache, xdot: Any, thetadot: rop.Tangents) -> Any:
    """ẏ = ẋ + ḟ."""
    return rop.add(xdot, rop.jvp(layer._f, cache.caches, xdot, thetadot))


@vjp_rop_rules.register(Residual)
def vjp_rop_residual(
    layer: Residual, cache: ResidualCache, dy: np.ndarray, dydot: np.ndarray, xdot: Any, thetadot: rop.Tangents,
    need_dx: bool,
) -> tuple[Any, dict[str, np.ndarray]]:
    """(dx)˙ = dẏ + (J_fᵀ dy)˙; the parameters are the chain's."""
    dfx, grads = rop.vjp_rop(layer._f, cache.caches, dy, dydot, xdot, thetadot, need_dx=need_dx)
    return (dydot + dfx if need_dx else NO_DX), grads


def _branches(layer: Parallel, cache: ParallelCache, xdot: Any, thetadot: rop.Tangents) -> list[Any]:
    """ẏₖ of every branch (None: zero)."""
    return [rop.jvp(branch, c, xdot, rop.child_tangents(thetadot, name))
            for (name, branch), c in zip(layer._modules.items(), cache.caches, strict=True)]


def _product(factors: list[np.ndarray]) -> np.ndarray | None:
    out = None
    for f in factors:
        out = f if out is None else out * f
    return out


def _mul_tangent(outs: list[np.ndarray], ydots: list[Any], skip: int | None) -> Any:
    """Σ_{j≠skip} ẏⱼ ∏_{i≠j,skip} yᵢ: the tangent of ∏_{j≠skip} yⱼ (None: zero)."""
    total = None
    for j, ydot in enumerate(ydots):
        if j == skip or ydot is None:
            continue
        rest = _product([y for i, y in enumerate(outs) if i not in (j, skip)])
        total = rop.add(total, ydot if rest is None else ydot * rest)
    return total


def _concat(cache: ParallelCache, ydots: list[Any]) -> Any:
    """[ẏ₁, …, ẏ_K] along the concatenation axis, zeros for a branch whose tangent vanished."""
    known = next((t for t in ydots if t is not None), None)
    if known is None:
        return None
    sizes = cache.sizes if cache.sizes is not None else []
    parts = []
    for t, size in zip(ydots, sizes, strict=True):
        if t is None:
            shape = list(known.shape)
            shape[cache.axis] = size
            t = np.zeros(shape, dtype=known.dtype)
        parts.append(t)
    return np.concatenate(parts, axis=cache.axis)


@jvp_rules.register(Parallel)
def jvp_parallel(layer: Parallel, cache: ParallelCache, xdot: Any, thetadot: rop.Tangents) -> Any:
    """ẏ by ``combine``: Σₖ ẏₖ, [ẏ₁, …], (ẏ₁, …), or Σₖ ẏₖ ∏_{j≠k} yⱼ."""
    ydots = _branches(layer, cache, xdot, thetadot)
    if all(t is None for t in ydots):
        return None
    if layer.combine == "sum":
        total = None
        for t in ydots:
            total = rop.add(total, t)
        return total
    if layer.combine == "tuple":
        return tuple(ydots)
    if layer.combine == "concat":
        return _concat(cache, ydots)
    outs = cache.outputs if cache.outputs is not None else []
    return _mul_tangent(outs, ydots, None)


def _branch_dydots(layer: Parallel, cache: ParallelCache, dy: Any, dydot: Any, ydots: list[Any]) -> list[Any]:
    """(dyₖ)˙ for every branch."""
    shares = layer._branch_dys(cache, dydot)  # sum, concat, tuple: the share of dẏ; mul: dẏ ∏_{j≠k} yⱼ
    if layer.combine != "mul":
        return shares
    outs = cache.outputs if cache.outputs is not None else []
    return [rop.add(share, None if (m := _mul_tangent(outs, ydots, k)) is None else dy * m)
            for k, share in enumerate(shares)]


@vjp_rop_rules.register(Parallel)
def vjp_rop_parallel(
    layer: Parallel, cache: ParallelCache, dy: Any, dydot: Any, xdot: Any, thetadot: rop.Tangents, need_dx: bool,
) -> tuple[Any, dict[str, np.ndarray]]:
    """(dx)˙ = Σₖ vjp_ropₖ(dyₖ, (dyₖ)˙, ẋ, θ̇ₖ), the branches' (dθ)˙ by name."""
    ydots = _branches(layer, cache, xdot, thetadot) if layer.combine == "mul" else []
    dys = layer._branch_dys(cache, dy)
    dydots = _branch_dydots(layer, cache, dy, dydot, ydots)
    dx: Any = None
    grads: dict[str, np.ndarray] = {}
    for (name, branch), c, g, gdot in zip(layer._modules.items(), cache.caches, dys, dydots, strict=True):
        dxk, gk = rop.vjp_rop(branch, c, g, gdot, xdot, rop.child_tangents(thetadot, name), need_dx=need_dx)
        grads.update(rop.prefixed(name, gk))
        if need_dx:
            dx = rop.add(dx, dxk)
    return (dx if need_dx else NO_DX), grads
