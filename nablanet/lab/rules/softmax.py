"""Lab rules for ``Softmax`` and ``LogSoftmax`` (``layers/softmax.py``), along one axis (⟨·,·⟩ sums along it)."""

from __future__ import annotations

import numpy as np

from nablanet.lab.registry import jvp_rules, vjp_rop_rules
from nablanet.lab.rop import RopResult, Tangents, no_params
from nablanet.layers.base import NO_DX
from nablanet.layers.softmax import LogSoftmax, Softmax, SoftmaxCache


def softmax_tangent(y: np.ndarray, zdot: np.ndarray, axis: int) -> np.ndarray:
    """y = softmax(z) along ``axis``:  ẏ = y ⊙ (ż − ⟨ż, y⟩).

    Where y = 0 (a key masked with −∞ in attention) ẏ = 0, so ż is never compared with an infinity.
    """
    return y * (zdot - (zdot * y).sum(axis=axis, keepdims=True))


def softmax_vjp_tangent(
    y: np.ndarray, ydot: np.ndarray | None, dy: np.ndarray, dydot: np.ndarray, axis: int
) -> np.ndarray:
    """The tangent of softmax's VJP dz = y ⊙ (dy − ⟨dy, y⟩) along ``axis`` (ẏ None: zero):

        (dz)˙ = ẏ ⊙ (dy − ⟨dy, y⟩) + y ⊙ (dẏ − ⟨dẏ, y⟩ − ⟨dy, ẏ⟩)

    Shared by ``Softmax`` and the attention probabilities of ``MultiheadAttention``.
    """
    dzdot = y * (dydot - (dydot * y).sum(axis=axis, keepdims=True))
    if ydot is not None:
        dzdot = dzdot + ydot * (dy - (dy * y).sum(axis=axis, keepdims=True)) \
            - y * (dy * ydot).sum(axis=axis, keepdims=True)
    return dzdot


@jvp_rules.register(Softmax)
def _jvp_softmax(layer: Softmax, cache: SoftmaxCache, xdot: np.ndarray | None, thetadot: Tangents) -> np.ndarray | None:
    """y = softmax(z):  ẏ = y ⊙ (ż − ⟨ż, y⟩)  (⟨·,·⟩ along dim)."""
    no_params(layer, thetadot)
    return None if xdot is None else softmax_tangent(cache.y, xdot, cache.axis)


@vjp_rop_rules.register(Softmax)
def _rop_softmax(
    layer: Softmax, cache: SoftmaxCache, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None,
    thetadot: Tangents, need_dx: bool,
) -> RopResult:
    """dz = y ⊙ (dy − ⟨dy, y⟩):  (dz)˙ = ẏ ⊙ (dy − ⟨dy, y⟩) + y ⊙ (dẏ − ⟨dẏ, y⟩ − ⟨dy, ẏ⟩)."""
    no_params(layer, thetadot)
    if not need_dx:
        return NO_DX, {}
    ydot = None if xdot is None else softmax_tangent(cache.y, xdot, cache.axis)
    return softmax_vjp_tangent(cache.y, ydot, dy, dydot, cache.axis), {}


@jvp_rules.register(LogSoftmax)
def _jvp_log_softmax(
    layer: LogSoftmax, cache: SoftmaxCache, xdot: np.ndarray | None, thetadot: Tangents
) -> np.ndarray | None:
    """y = z − log Σ exp z, p = exp y:  ẏ = ż − ⟨p, ż⟩."""
    no_params(layer, thetadot)
    if xdot is None:
        return None
    return xdot - (np.exp(cache.y) * xdot).sum(axis=cache.axis, keepdims=True)


@vjp_rop_rules.register(LogSoftmax)
def _rop_log_softmax(
    layer: LogSoftmax, cache: SoftmaxCache, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None,
    thetadot: Tangents, need_dx: bool,
) -> RopResult:
    """dz = dy − p Σ dy:  (dz)˙ = dẏ − p Σ dẏ − ṗ Σ dy,  ṗ = p ⊙ ẏ = p ⊙ (ż − ⟨p, ż⟩)."""
    no_params(layer, thetadot)
    if not need_dx:
        return NO_DX, {}
    p, a = np.exp(cache.y), cache.axis
    dxdot = dydot - p * dydot.sum(axis=a, keepdims=True)
    if xdot is not None:
        pdot = p * (xdot - (p * xdot).sum(axis=a, keepdims=True))
        dxdot = dxdot - pdot * dy.sum(axis=a, keepdims=True)
    return dxdot, {}
