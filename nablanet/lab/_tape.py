"""The lab's one entry point into a model: a forward and backward pass that returns the tape.

Instruments never call a layer's code for first-order quantities beyond what backward already
computed; they read ``TapeEntry(name, layer, cache, dy, grads)`` records. ``run_tape`` produces
them on demand (``per_sample_grad_norms(model, loss, x, y)``), and ``fit`` hands them to
callbacks during training. ``forward_trace`` is the forward half alone, keeping what each layer
saw (its input too, which the tape does not hold), inside containers too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from nablanet._random import RNGLike
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
    """One layer's call in a forward pass: its name, the layer, its input x, output y and cache, with
    where it sits: ``depth`` counts the containers around it other than Sequentials (0 for what a chain
    of the model's layers shows), ``inside`` the named layer calls that ran within it (0 for a leaf)."""

    name: str
    layer: Layer
    x: Any
    y: Any
    cache: Any
    depth: int = 0
    inside: int = 0


def forward_trace(model: Layer, x: Any, *, train: bool = False, rng: RNGLike = None) -> list[Trace]:
    """One forward pass, ``kernels.forward(model, x)`` itself, keeping every layer's call on the way.

    Every container calls its children through ``kernels.forward``, which reports each call
    (``kernels.observing``), so the trace reaches inside Residual, Parallel, MultiheadAttention and any
    container, fast variants included. A call is named as on the tape and in the state_dict (``""``
    for the model, ``"2.1"``, ``"1.out_proj"``); a layer with no such name (Residual's private chain)
    is left out, and a layer called again within one container gets ``"#2"``, ``"#3"``, … after its
    name. Calls come in forward order, each container before the layers it calls.
    """
    traces: list[Trace | None] = []
    inside: list[int] = []
    around: list[_Open] = []  # the named calls under way, outermost first

    def start(layer: Layer, h: Any) -> Callable[[Any, Any], None] | None:
        name = "" if not around else _child_name(around[-1], layer)
        if name is None or (not around and layer is not model):
            return None
        slot = len(traces)
        depth = sum(not isinstance(a.layer, Sequential) for a in around)
        for a in around:
            inside[a.slot] += 1
        traces.append(None)
        inside.append(0)
        around.append(_Open(slot, name, layer, {}))

        def end(y: Any, cache: Any) -> None:
            around.pop()
            if type(cache) is LeafCache:  # a layer of the user's, checked on first use: keep its own cache
                cache = cache.cache
            traces[slot] = Trace(name, layer, h, y, cache, depth, inside[slot])

        return end

    with kernels.observing(start):
        kernels.forward(model, x, train=train, rng=rng)
    return [t for t in traces if t is not None]


class _Open(NamedTuple):
    """A named call under way in ``forward_trace``: its trace's slot, its name, its layer, and how often it
    has called each layer (by id) so far."""

    slot: int
    name: str
    layer: Layer
    calls: dict[int, int]


def _child_name(parent: _Open, layer: Layer) -> str | None:
    """The name of ``layer`` called within ``parent``: its state_dict prefix, the k-th call of a layer that
    the parent holds under several names taking the k-th (a Sequential's shared layer: ``"0"`` and ``"2"``),
    further calls ``"#2"``, ``"#3"``, …; None for a layer that is not the parent's."""
    k = parent.calls[id(layer)] = parent.calls.get(id(layer), 0) + 1
    names = [key for key, child in parent.layer._modules.items() if child is layer] or [
        pre[:-1] for pre, child in parent.layer._walk() if child is layer and pre]  # deeper: via a private child
    if not names:
        return None
    own = names[k - 1] if k <= len(names) else f"{names[-1]}#{k - len(names) + 1}"
    return f"{parent.name}.{own}" if parent.name else own
