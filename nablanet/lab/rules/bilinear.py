"""Lab rules for ``Bilinear`` (``layers/bilinear.py``): yₙₒ = Σᵢⱼ x₁ₙᵢ Wₒᵢⱼ x₂ₙⱼ + bₒ.

Shapes:  x₁, ẋ₁ (N, *, i)   x₂, ẋ₂ (N, *, j)   W, Ẇ (o, i, j)   b, ḃ (o,)   y, ẏ, dy, dẏ (N, *, o).
The input tangent is the pair (ẋ₁, ẋ₂) (what ``Pair``'s rule hands on), either part None for zero,
or None for both; (dx)˙ is the pair ((dx₁)˙, (dx₂)˙). The map is trilinear in (x₁, W, x₂), so every
tangent is a sum of one term per moving factor, each the forward (or VJP) einsum with that factor
replaced by its tangent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nablanet.lab.registry import jvp_rules, vjp_rop_rules
from nablanet.lab.rop import Tangents, add
from nablanet.layers.base import NO_DX
from nablanet.layers.bilinear import Bilinear, BilinearCache

_Y = "...i,oij,...j->...o"  # y = x₁ W x₂
_DX1 = "...o,oij,...j->...i"  # dx₁ = dy W x₂
_DX2 = "...o,oij,...i->...j"  # dx₂ = dy W x₁
_DW = "...o,...i,...j->oij"  # dW = Σ dy ⊗ x₁ ⊗ x₂ over every leading axis


def _pair(xdot: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(ẋ₁, ẋ₂) from None (both zero) or a pair whose parts may be None."""
    if xdot is None:
        return None, None
    if not isinstance(xdot, tuple | list) or len(xdot) != 2:
        raise TypeError(f"Bilinear's R-op rules take the input tangent as a pair (ẋ₁, ẋ₂) or None; got "
                        f"{type(xdot).__name__}.")
    return xdot[0], xdot[1]


def _ein(spec: str, a: np.ndarray | None, w: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """One einsum term, None (zero) when a factor is zero."""
    if a is None or w is None or b is None:
        return None
    return np.einsum(spec, a, w, b, optimize=True)


@jvp_rules.register(Bilinear)
def _jvp_bilinear(layer: Bilinear, cache: BilinearCache, xdot: Any, thetadot: Tangents) -> np.ndarray | None:
    """ẏ = ẋ₁ W x₂ + x₁ Ẇ x₂ + x₁ W ẋ₂ + ḃ."""
    x1dot, x2dot = _pair(xdot)
    x1, x2, w = cache.x1, cache.x2, layer.weight.data
    ydot = add(add(_ein(_Y, x1dot, w, x2), _ein(_Y, x1, thetadot.get("weight"), x2)), _ein(_Y, x1, w, x2dot))
    bdot = thetadot.get("bias")
    if bdot is not None and layer.bias is not None:
        ydot = add(ydot, np.broadcast_to(bdot, (*x1.shape[:-1], layer.out_features)))
    return ydot


@vjp_rop_rules.register(Bilinear)
def _rop_bilinear(
    layer: Bilinear, cache: BilinearCache, dy: np.ndarray, dydot: np.ndarray, xdot: Any, thetadot: Tangents,
    need_dx: bool,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Tangent of dx₁ = dy W x₂, dx₂ = dy W x₁, dW = Σ dy ⊗ x₁ ⊗ x₂, db = Σ dy:

        (dx₁)˙ = dẏ W x₂ + dy Ẇ x₂ + dy W ẋ₂          (dx₂)˙ = dẏ W x₁ + dy Ẇ x₁ + dy W ẋ₁
        (dW)˙ = Σ (dẏ ⊗ x₁ ⊗ x₂ + dy ⊗ ẋ₁ ⊗ x₂ + dy ⊗ x₁ ⊗ ẋ₂)      (db)˙ = Σ dẏ
    """
    x1dot, x2dot = _pair(xdot)
    x1, x2, w = cache.x1, cache.x2, layer.weight.data
    gw = add(add(_ein(_DW, dydot, x1, x2), _ein(_DW, dy, x1dot, x2)), _ein(_DW, dy, x1, x2dot))
    grads = {"weight": gw}
    if layer.bias is not None:
        grads["bias"] = dydot.reshape(-1, layer.out_features).sum(axis=0)
    if not need_dx:
        return NO_DX, grads
    wdot = thetadot.get("weight")
    dx1dot = add(add(_ein(_DX1, dydot, w, x2), _ein(_DX1, dy, wdot, x2)), _ein(_DX1, dy, w, x2dot))
    dx2dot = add(add(_ein(_DX2, dydot, w, x1), _ein(_DX2, dy, wdot, x1)), _ein(_DX2, dy, w, x1dot))
    return (dx1dot, dx2dot), grads
