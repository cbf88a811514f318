"""The lab's one entry point into a model: a forward and backward pass that returns the tape.

Instruments never call a layer's code for first-order quantities beyond what backward already
computed; they read ``TapeEntry(name, layer, cache, dy, grads)`` records. ``run_tape`` produces
them on demand (``per_sample_grad_norms(model, loss, x, y)``), and ``fit`` hands them to
callbacks during training. ``forward_trace`` is the forward half alone, keeping what each leaf
layer saw (its input too, which the tape does not hold).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from nablanet._random import RNGLike, get_rng
from nablanet._validation import as_float_input, check_finite
from nablanet.layers import Sequential, kernels
from nablanet.layers.base import Layer, Tape, TapeEntry
from nablanet.layers.contract import LeafCache
from nablanet.losses.base import _AVERAGING, Loss, LossCache


class TapeRun(NamedTuple):
    """One forward + backward: the loss value, its cache, the model output and the tape."""

    value: float
    loss_cache: LossCache
    output: np.ndarray
    tape: Tape
    cache: Any = None  # the model's own cache (what its forward returned)


def run_tape(model: Layer, loss: Loss, x: Any, target: Any, *, train: bool = False, rng: RNGLike = None) -> TapeRun:
    """Forward, loss and backward without touching any ``.grad`` (``accumulate=False``).

    ``train=False`` (the default) measures the model as it is: dropout off, batch norm on its
    running statistics, so every sample's gradient depends on that sample alone.
    """
    if loss.reduction == "none":
        raise ValueError(f"the gradient lab needs a scalar loss; {loss!r} has reduction='none'. Use 'mean' or 'sum'.")
    xa = as_float_input(x, "x")
    check_finite(xa, "x")
    y, caches = kernels.forward(model, xa, train=train, rng=rng)
    value, lcache = loss.forward(y, target)
    tape = model.backward(caches, loss.vjp(lcache), accumulate=False)
    return TapeRun(float(value), lcache, y, tape, caches)


def per_sample_factor(loss: Loss, n: int) -> float:
    """What turns the tape's per-sample pieces into gradients of each sample's own loss ℓₙ.

    The tape holds dy = ∂L/∂y. Under "mean" L = (1/N) Σ ℓₙ (see ``Loss.per_sample``), so sample n's
    share of dy is ∂ℓₙ/∂yₙ / N and the factor is N; under "sum" it is 1.
    """
    return float(n) if loss.reduction in _AVERAGING else 1.0


def tape_parameters(tape: Tape) -> Iterator[tuple[str, TapeEntry, str]]:
    """(full parameter name, tape entry, local name) for every parameter gradient on the tape."""
    for entry in tape:
        for local in entry.grads:
            yield (f"{entry.name}.{local}" if entry.name else local), entry, local


def batch_size_of(tape: Tape) -> int:
    """N, read off the first entry's dy (which has the layer output's shape, batch first)."""
    if not tape:
        raise ValueError("the tape is empty: the model has no layers")
    return int(tape[0].dy.shape[0])


class Trace(NamedTuple):
    """One leaf layer's forward: its tape name, the layer, its input x, output y and cache."""

    name: str
    layer: Layer
    x: Any
    y: np.ndarray
    cache: Any


def forward_trace(model: Layer, x: Any, *, train: bool = False, rng: RNGLike = None) -> list[Trace]:
    """One forward pass, leaf by leaf, keeping each leaf's input, output and cache.

    The same computation as ``model.forward(x, train=train, rng=rng)`` (one generator drawn for the
    whole pass in training mode, as Sequential does), with the intermediate outputs kept. Nested
    Sequentials are walked (names as on the tape: ``"0"``, ``"2.1"``); any other layer, a container
    with its own data flow included, is one leaf.
    """
    gen = get_rng(rng) if train else rng
    traces: list[Trace] = []

    def walk(layer: Layer, h: Any, name: str) -> Any:
        if isinstance(layer, Sequential):
            for child_name, child in layer.named_children():
                h = walk(child, h, f"{name}.{child_name}" if name else child_name)
            return h
        y, cache = kernels.forward(layer, h, train=train, rng=gen)
        if type(cache) is LeafCache:  # a layer of the user's, checked on first use: keep its own cache
            cache = cache.cache
        traces.append(Trace(name, layer, h, y, cache))
        return y

    walk(model, x, "")
    return traces
