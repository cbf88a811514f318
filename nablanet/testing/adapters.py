"""How nablanet calls a VJP written as a function (a student's), by what it is for, and how it swaps one in.

A layer's function goes through the layer contract's short form (``nablanet.layers.contract``): the
contract's loops give vector axes and per-sample gradients, and its checks name a wrong shape. Here
are the other two: a loss's (its ``dterms`` made one per term, its result's shape checked) and an LSTM
step's (its two results' shapes checked); and ``swap``, which puts any of the three in force.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nablanet._diagnose import shape_hint
from nablanet.layers import LSTM, Layer, contract, kernels
from nablanet.layers.contract import LayerContractError
from nablanet.layers.kernels.recurrent import lstm_vjp_with_cell
from nablanet.layers.recurrent import CellVjp, LSTMStep
from nablanet.losses.base import Loss, LossCache, TermsVjpFn, swap_terms_vjp

OnForward = Callable[[Layer, Any, bool], None]


class LossVjpShapeError(ValueError):
    """A loss's VJP function returned dinput of another shape than the input's; ``problem`` says how."""

    def __init__(self, who: str, problem: str) -> None:
        super().__init__(f"{who}: {problem}")
        self.problem = problem


def name_of(fn: Any) -> str:
    """How messages name a function: ``linear_vjp``."""
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))


def loss_vjp(fn: Callable[..., Any]) -> TermsVjpFn:
    """``fn(loss, cache, dterms) -> dinput`` as a loss's ``_terms_vjp`` in place (``losses.base.swap_terms_vjp``):
    ``cache`` is the loss's own (``LossCache.aux``), dterms = ∂L/∂ℓ has the terms' shape, (N,) for a
    loss over (N, C); the result must have the input's shape."""
    def run(loss: Loss, cache: LossCache, dterms: np.ndarray) -> np.ndarray:
        d = np.broadcast_to(np.asarray(dterms, dtype=cache.dtype), cache.terms.shape).copy()
        g = np.asarray(fn(loss, cache.aux, d))
        problem = loss_shape_problem(g.shape, cache.input_shape)
        if problem:
            raise LossVjpShapeError(f"{type(loss).__name__} (with the VJP {name_of(fn)})", problem)
        return g

    return run


def loss_shape_problem(got: tuple[int, ...], want: tuple[int, ...]) -> str:
    """What is wrong with dinput of shape ``got`` for an input of shape ``want``, or ""."""
    if got == want:
        return ""
    hint = (" The batch axis is missing: dinput has one row per sample, each ∂L/∂(that sample's input); "
            "no sum over the samples." if got == want[1:] else shape_hint(got, want))
    return f"It returned dinput of shape {got}, expected the input's {want}.{hint}"


def lstm_cell(fn: Callable[..., Any], layer: LSTM) -> CellVjp:
    """``fn(layer, step, dh, dc) -> (da, dc_prev)`` as one step's cell VJP of ``layer``, both shapes checked."""
    def run(step: LSTMStep, dh: np.ndarray, dc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = fn(layer, step, dh, dc)
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise LayerContractError(f"LSTM (with the VJP {name_of(fn)}): the step VJP returned "
                                     f"{type(out).__name__}; expected a pair (da, dc_prev).")
        da, dc_prev = (np.asarray(a) for a in out)
        wanted = {"da": (da.shape, (*dh.shape[:-1], 4 * dh.shape[-1])), "dc_prev": (dc_prev.shape, dh.shape)}
        for what, (got, want) in wanted.items():
            if got != want:
                raise LayerContractError(
                    f"LSTM (with the VJP {name_of(fn)}): the step VJP returned {what} of shape {got}; expected {want} "
                    f"for dh of shape {dh.shape} (da: the gates i, f, g, o side by side)."
                    f"{shape_hint(got, want, dh.shape[-2])}"
                )
        return da, dc_prev

    return run


def swap(cls: type, fn: Callable[..., Any], on_forward: OnForward | None = None) -> Callable[[], None]:
    """Put ``fn`` in force for ``cls`` (a layer, a loss, or ``nn.LSTM``'s step) until the returned function is
    called. ``on_forward(layer, x, train)`` runs before each forward of a layer (a loss has no such hook)."""
    if issubclass(cls, Loss):
        return swap_terms_vjp(cls, loss_vjp(fn))
    if issubclass(cls, LSTM):
        def forward(layer: Layer, x: Any, *, train: bool, rng: Any) -> tuple[Any, Any]:
            if on_forward is not None:
                on_forward(layer, x, train)
            return kernels.unswapped_forward(layer, x, train=train, rng=rng)

        return kernels.swap(cls, lstm_vjp_with_cell(lambda layer: lstm_cell(fn, layer)), forward)
    return contract.swap_short_form(cls, fn, name_of(fn), on_forward)
