"""Measured fast variants of layers' forward passes and VJPs, behind one dispatch point.

A layer's own ``forward`` and ``vjp`` are the references: the math a reader learns from and what
the finite-difference and PyTorch tests check. A variant lives here only with a benchmark in
``benchmarks/`` that shows its gain (the ratio in the variant's docstring) and a test that it
equals the reference to float64 precision on random inputs (``tests/test_kernels*.py``).

The model's forward and backward passes call ``forward`` and ``vjp`` below, which run the variant
registered for the layer's exact type (a subclass that overrides the math is never bypassed), or
else the layer's own method. A variant may decline a case it does not cover by calling the
reference itself. A layer class defined outside nablanet is registered here too, by
``nablanet.layers.contract.adopt``: its "variant" is the reference wrapped in the contract's checks.
Variants register with ``@forward_kernel(Cls)`` / ``@vjp_kernel(Cls)`` in a
module of this package, imported at the end of this file.

``swap`` puts a VJP written outside the class in force for a while (a student's, through
``nablanet.testing.replace_vjp``): it is installed in the same tables, so a swap costs the dispatch
nothing, and the class's own registration returns when the last swap ends.

``observing`` lets a caller watch every ``forward`` call for a while (the lab uses it to see each layer
inside a model's containers, with its input, output and cache): every container runs its children
through ``forward``, so this is the one place where every layer of a model is called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from nablanet._swaps import Swaps

if TYPE_CHECKING:
    from nablanet.layers.base import Layer

ForwardFn = Callable[..., tuple[Any, Any]]
VjpFn = Callable[..., tuple[Any, dict[str, Any]]]

_FORWARD: dict[type, ForwardFn] = {}
_VJP: dict[type, VjpFn] = {}
_CONTRACT: set[VjpFn] = set()
"""The VJPs registered by ``nablanet.layers.contract.adopt``, which take ``prefix`` and ``vector_axes``."""

Observer = Callable[["Layer", Any], "Callable[[Any, Any], None] | None"]
"""``fn(layer, x)``, called as a ``forward`` call starts; it returns what to call with ``(y, cache)``
when the call returns (or None to let this call go unwatched)."""
_OBSERVERS: list[Observer] = []


def forward_kernel(cls: type) -> Callable[[ForwardFn], ForwardFn]:
    """Register ``fn(layer, x, *, train, rng) -> (y, cache)`` as ``cls``'s forward; the cache must
    be the reference's (the reference VJP and the lab read it)."""
    def register(fn: ForwardFn) -> ForwardFn:
        _FORWARD[cls] = fn
        return fn
    return register


def vjp_kernel(cls: type) -> Callable[[VjpFn], VjpFn]:
    """Register ``fn(layer, cache, dy, *, per_sample, need_dx) -> (dx, grads)`` as ``cls``'s VJP."""
    def register(fn: VjpFn) -> VjpFn:
        _VJP[cls] = fn
        return fn
    return register


def forward(layer: Layer, x: Any, *, train: bool, rng: Any) -> tuple[Any, Any]:
    """``layer.forward(x)``, through the registered variant where there is one; under ``observing``,
    reported to the latest observer as the call starts and ends."""
    done = _OBSERVERS[-1](layer, x) if _OBSERVERS else None
    fast = _FORWARD.get(type(layer))
    y, cache = layer.forward(x, train=train, rng=rng) if fast is None else fast(layer, x, train=train, rng=rng)
    if done is not None:
        done(y, cache)
    return y, cache


@contextmanager
def observing(fn: Observer) -> Iterator[None]:
    """Within the block, each ``forward`` call first calls ``fn(layer, x)``, then what that returned with
    ``(y, cache)`` as the call returns, fast variants included. Containers call their children through
    ``forward``, so a model's forward shows every layer, each container's call enclosing its children's
    (a container's start before theirs, its end after). The latest block in force is the one told."""
    _OBSERVERS.append(fn)
    try:
        yield
    finally:
        _OBSERVERS.pop()


def vjp(
    layer: Layer, cache: Any, dy: Any, *, per_sample: bool, need_dx: bool, prefix: str = "",
    vector_axes: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """``layer.vjp(cache, dy)``, through the registered variant where there is one.

    ``prefix`` (the layer's state_dict prefix, for messages) and ``vector_axes`` (the number of
    leading vector axes of dy, where the caller knows it) serve the checks of a layer defined outside
    nablanet (``nablanet.layers.contract``, whose functions are in ``_CONTRACT``); a variant never sees them.
    """
    fast = _VJP.get(type(layer))
    if fast is None:
        return layer.vjp(cache, dy, per_sample=per_sample, need_dx=need_dx)
    if fast in _CONTRACT:
        return fast(layer, cache, dy, per_sample=per_sample, need_dx=need_dx, prefix=prefix, vector_axes=vector_axes)
    return fast(layer, cache, dy, per_sample=per_sample, need_dx=need_dx)


# -- swaps: a VJP written outside the class, in force for a while --------------------------------------
_BEFORE: dict[type, tuple[ForwardFn | None, VjpFn | None]] = {}
"""What was registered for a class before its first swap, put back when its last swap ends."""


def _install(cls: type) -> None:
    """Install the swap now in force for ``cls``, or put back what was there before the first one."""
    before = _BEFORE[cls]
    old = _VJP.get(cls)
    if old is not None and old is not before[1]:  # a swap's function leaves the contract's set with it
        _CONTRACT.discard(old)
    forward: ForwardFn | None
    vjp: VjpFn | None
    if cls in _SWAPS.current:
        forward, vjp = _SWAPS.current[cls]
        forward = before[0] if forward is None else forward
        _CONTRACT.add(vjp)
    else:
        forward, vjp = _BEFORE.pop(cls)
    for table, fn in ((_FORWARD, forward), (_VJP, vjp)):
        if fn is None:
            table.pop(cls, None)
        else:
            table[cls] = fn


_SWAPS: Swaps[tuple[ForwardFn | None, VjpFn]] = Swaps(_install)


def swap(cls: type, vjp: VjpFn, forward: ForwardFn | None = None) -> Callable[[], None]:
    """Run ``vjp`` for layers of exactly ``cls`` (and ``forward``, where given) until the returned function is
    called. ``vjp(layer, cache, dy, *, per_sample, need_dx, prefix, vector_axes)`` takes the contract's two
    keywords. Swaps nest and may end in any order: the latest still active is in force."""
    if cls not in _BEFORE:
        _BEFORE[cls] = (_FORWARD.get(cls), _VJP.get(cls))
    return _SWAPS.push(cls, (forward, vjp))


def swapped(cls: type) -> bool:
    """True while a swap is in force for ``cls``: its VJP is not its own (the lab then avoids closed forms)."""
    return cls in _SWAPS.current


def unswapped_forward(layer: Layer, x: Any, *, train: bool, rng: Any) -> tuple[Any, Any]:
    """``layer``'s forward as the dispatch runs it without swaps: its registered variant, or its own."""
    fast = _BEFORE[type(layer)][0] if type(layer) in _BEFORE else _FORWARD.get(type(layer))
    return layer.forward(x, train=train, rng=rng) if fast is None else fast(layer, x, train=train, rng=rng)


# The variants (each module registers its own):
from nablanet.layers.kernels import conv as _conv  # noqa: E402,F401  Conv1d, Conv2d
from nablanet.layers.kernels import pooling as _pooling  # noqa: E402,F401  MaxPool1d, MaxPool2d
from nablanet.layers.kernels import recurrent as _recurrent  # noqa: E402,F401  LSTM, GRU
