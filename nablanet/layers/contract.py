"""Your own layer's contract with the library, checked where each array is produced.

A layer defined outside nablanet (any ``nn.Layer`` subclass that is not a container) writes

    forward(x, *, train=False, rng=None) -> (y, cache)
    vjp(cache, dy) -> (dx, grads)                                   the short form, or
    vjp(cache, dy, *, per_sample=False, need_dx=True) -> (dx, grads)  the full form

with dy = ∂L/∂y, dx = ∂L/∂x of the input's shape and grads = {parameter name: ∂L/∂θ of the
parameter's shape}. The full form also promises (``need_dx`` may be left out of it):

* vector axes: dy (*V, N, *out) with leading axes pushed through independently; dx (*V, *x.shape),
  grads (*V, *param);
* ``per_sample=True``: grads (*V, N, *param), sample n's own term of the batch gradient's sum;
* ``need_dx=False``: dx may be skipped (``NO_DX``).

For a short-form layer nablanet supplies the rest, slower: one VJP per vector for vector axes, and
for per-sample gradients one VJP per sample with dy zero outside that sample (gₙ = J_θᵀ (dy masked
to sample n): N calls of the layer's VJP on the batch's cache).

When the class is created (``Layer.__init_subclass__``), ``adopt`` routes it through the model's one
dispatch point, ``nablanet.layers.kernels``, so inside any model:

* its forward's cache is kept as ``LeafCache(cache, x, y)``: the shapes to check against, and x, y
  for the Recorder's activation statistics (the tape holds the layer's own cache, and x and y);
* the first forward of each class and parameter shapes runs ``spot_check``: in float64, on up to 4
  samples, dx and every gradient are compared with central differences along a random direction,
  shapes are checked, and for the full form also per-sample gradients and vector axes. A wrong
  sign, a missing factor or a forgotten dy stops the first step of ``fit`` instead of training on.
  A layer whose VJP is deliberately not the derivative (a straight-through estimator) sets the
  class attribute ``exact_vjp = False``;
* every VJP's dx and gradients are checked against the shapes they must have, and a mismatch
  raises ``LayerContractError`` naming the layer, the array, both shapes and the likely mistake.

nablanet's own layers are tested by the conformance suite and skip all of this (no cost).

A short-form VJP written outside any class, for a layer class of nablanet's or anyone's (a student's
exercise: ``nablanet.testing.replace_vjp``), goes through the same machinery while it is swapped in
(``swap_short_form``): the loops for vector axes and per-sample gradients, and every shape checked.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np

from nablanet._diagnose import ratio_hint, shape_hint
from nablanet.layers import kernels

if TYPE_CHECKING:
    from nablanet.layers.base import Layer

SPOT_SAMPLES = 4
"""The spot check runs on the first this many samples of the first batch."""
_EPS = 1e-6
_SPOT_RTOL = 1e-5
"""|backprop − differences| of a directional derivative, relative to ‖g‖‖u‖ (its Cauchy–Schwarz scale)."""


class LayerContractError(ValueError):
    """A layer's forward or VJP broke the contract (a shape, a missing gradient, a wrong derivative)."""


class LeafCache(NamedTuple):
    """What the dispatch keeps of an adopted layer's forward: its own cache, its input and output."""

    cache: Any
    x: Any
    y: Any


class VjpForm(NamedTuple):
    """Which keywords a class's vjp takes: the full form takes ``per_sample`` (``need_dx`` optional)."""

    per_sample: bool
    need_dx: bool


SHORT_FORM = VjpForm(per_sample=False, need_dx=False)

ShortVjp = Callable[[Any, np.ndarray], tuple[Any, Any]]
"""A short-form VJP bound to its layer: ``vjp(cache, dy) -> (dx, grads)``."""

ADOPTED: set[type] = set()
"""The layer classes defined outside nablanet (``adopt``): the tape keeps their input and output."""


def vjp_form(cls: type) -> VjpForm:
    params = inspect.signature(cast(Any, cls).vjp).parameters
    anything = any(p.kind is p.VAR_KEYWORD for p in params.values())
    return VjpForm("per_sample" in params or anything, "need_dx" in params or anything)


def describe(layer: Layer, prefix: str = "", vjp_name: str = "") -> str:
    """``layer '1' (Swish, defined in my_module)``, or ``Swish (defined in my_module)`` where the
    position is unknown (the spot check runs inside the layer's forward). ``vjp_name`` names a VJP
    swapped in for the class: ``layer '0' (Linear, with the VJP linear_vjp of __main__)``."""
    cls = type(layer)
    where = f"with the VJP {vjp_name}" if vjp_name else f"defined in {cls.__module__}"
    return f"layer {prefix[:-1]!r} ({cls.__name__}, {where})" if prefix else f"{cls.__name__} ({where})"


def batch_axis(layer: Layer) -> int:
    """The sample axis of the layer's input and output: 0, or 1 for ``batch_first=False``."""
    return 0 if getattr(layer, "batch_first", True) else 1


# -- adoption into the dispatch ------------------------------------------------------------------------
def adopt(cls: type) -> None:
    """Route a layer class defined outside nablanet through the contract's checks and fallbacks."""
    form = vjp_form(cls)

    def forward(layer: Layer, x: Any, *, train: bool, rng: Any) -> tuple[Any, LeafCache]:
        y, cache = layer.forward(x, train=train, rng=rng)
        spot_check(layer, x, train, form)
        return y, LeafCache(cache, x, y)

    def vjp(layer: Layer, cache: Any, dy: Any, *, per_sample: bool, need_dx: bool, prefix: str = "",
            vector_axes: int | None = None) -> tuple[Any, dict[str, Any]]:
        return call_vjp(layer, form, cache, dy, per_sample, need_dx, prefix, vector_axes)

    kernels.forward_kernel(cls)(forward)
    kernels.vjp_kernel(cls)(vjp)
    kernels._CONTRACT.add(vjp)
    ADOPTED.add(cls)


def swap_short_form(cls: type, fn: Callable[..., tuple[Any, Any]], vjp_name: str,
                    on_forward: Callable[[Layer, Any, bool], None] | None = None) -> Callable[[], None]:
    """Run ``fn(layer, cache, dy) -> (dx, grads)``, a short-form VJP written outside the class, for layers of
    exactly ``cls`` until the returned function is called; swaps nest (``nablanet.layers.kernels.swap``).

    The forward stays the class's (its fast variant included) and keeps its cache as ``LeafCache(cache, x,
    y)``, so that vector axes are recognised and dx's shape is checked; ``on_forward(layer, x, train)``
    runs before each forward (the first-use check of ``nablanet.testing.replace_vjp``). Messages name
    the function as ``vjp_name``.
    """
    def forward(layer: Layer, x: Any, *, train: bool, rng: Any) -> tuple[Any, LeafCache]:
        if on_forward is not None:
            on_forward(layer, x, train)
        y, cache = kernels.unswapped_forward(layer, x, train=train, rng=rng)
        return y, cache if type(cache) is LeafCache else LeafCache(cache, x, y)

    def vjp(layer: Layer, cache: Any, dy: Any, *, per_sample: bool, need_dx: bool, prefix: str = "",
            vector_axes: int | None = None) -> tuple[Any, dict[str, Any]]:
        return call_vjp(layer, SHORT_FORM, cache, dy, per_sample, need_dx, prefix, vector_axes,
                        short=partial(fn, layer), vjp_name=vjp_name)

    return kernels.swap(cls, vjp, forward)


def call_vjp(layer: Layer, form: VjpForm, cache: Any, dy: Any, per_sample: bool, need_dx: bool, prefix: str,
             vector_axes: int | None, *, short: ShortVjp | None = None,
             vjp_name: str = "") -> tuple[Any, dict[str, Any]]:
    """The layer's VJP in its form, the missing parts supplied, every array's shape checked. ``short`` is a
    short-form VJP run in place of the layer's own (named ``vjp_name`` in messages)."""
    x_shape, y_shape = None, None
    if type(cache) is LeafCache:
        x_shape = np.shape(cache.x) if isinstance(cache.x, np.ndarray) else None
        cache, y_shape = cache.cache, np.shape(cache.y)
    own = layer.vjp if short is None else short
    if not isinstance(dy, np.ndarray):
        return own(cache, dy)  # several outputs: nothing to check here
    nv = vector_axes if vector_axes is not None else (dy.ndim - len(y_shape) if y_shape is not None else 0)
    if y_shape is not None and (nv < 0 or dy.shape[nv:] != y_shape):
        raise LayerContractError(f"{describe(layer, prefix, vjp_name)} got dy of shape {dy.shape}; its output y has "
                                 f"shape {y_shape}, so dy must be (*V, *y.shape). The layer after it returned a dx of "
                                 "the wrong shape.")
    if form.per_sample:
        kw: dict[str, Any] = {"per_sample": per_sample, **({"need_dx": need_dx} if form.need_dx else {})}
        try:
            dx, grads = layer.vjp(cache, dy, **kw)
        except Exception as exc:
            if nv == 0:
                raise
            raise LayerContractError(
                f"{describe(layer, prefix)}: vjp with dy of shape {dy.shape} ({nv} leading vector axis/axes) raised "
                f"{type(exc).__name__}: {exc}. A vjp that takes per_sample promises vector axes: let every axis in "
                "front of the output's own broadcast (np.einsum('...no,ni->...oi', dy, x)), or write the short form "
                "vjp(self, cache, dy) and nablanet loops over the vectors (slower)."
            ) from exc
    else:
        dx, grads = short_form_vjp(layer, cache, dy, nv, per_sample, need_dx, own)
    if isinstance(grads, dict):  # a gradient written as np.sum(...) is a NumPy scalar: make it an array
        grads = {k: np.asarray(g) for k, g in grads.items()}
    check_vjp_shapes(layer, prefix, dx, grads, dy, nv, per_sample, x_shape if need_dx else None, vjp_name)
    return dx, grads


def short_form_vjp(layer: Layer, cache: Any, dy: np.ndarray, nv: int, per_sample: bool,
                   need_dx: bool, vjp: ShortVjp | None = None) -> tuple[Any, dict[str, Any]]:
    """A short-form VJP (the layer's own, or ``vjp``) extended to vector axes (one call per vector) and
    per-sample gradients (one call per sample, dy masked to it: gₙ = J_θᵀ (dy ⊙ 1ₙ))."""
    own = layer.vjp if vjp is None else vjp
    if nv == 0 and not per_sample:
        return own(cache, dy)
    axis = batch_axis(layer)
    rows = dy.reshape(-1, *dy.shape[nv:])
    dxs: list[Any] = []
    grads_rows: list[dict[str, Any]] = []
    for row in rows:
        dx: Any
        if not per_sample:
            dx, g = own(cache, row)
        else:
            dx = own(cache, row)[0] if need_dx else None
            per = []
            for s in range(row.shape[axis]):
                only = np.zeros_like(row)
                pick = (slice(None),) * axis + (s,)
                only[pick] = row[pick]
                per.append(own(cache, only)[1])
            g = {k: np.stack([np.asarray(p[k]) for p in per]) for k in (per[0] if per else {})}
        dxs.append(dx)
        grads_rows.append(g)
    lead = dy.shape[:nv]
    dx_out = None if dxs[0] is None else np.stack([np.asarray(d) for d in dxs]).reshape(*lead, *np.shape(dxs[0]))
    grads = {k: np.stack([np.asarray(g[k]) for g in grads_rows]).reshape(*lead, *np.shape(grads_rows[0][k]))
             for k in grads_rows[0]}
    return (dx_out if dx_out is not None else np.empty(0)), grads


def check_vjp_shapes(layer: Layer, prefix: str, dx: Any, grads: Any, dy: np.ndarray, nv: int, per_sample: bool,
                     x_shape: tuple[int, ...] | None, vjp_name: str = "") -> None:
    """Raise ``LayerContractError`` unless dx is (*V, *x.shape) (when x's shape is known) and every
    gradient is (*V, *param), or (*V, N, *param) with ``per_sample``, one per parameter."""
    who = describe(layer, prefix, vjp_name)
    params = dict(layer.named_parameters())  # a layer with sub-layers of its own keys them "f.weight"
    if not isinstance(grads, dict):
        raise LayerContractError(f"{who}: vjp returned {type(grads).__name__} as its gradients; expected a dict "
                                 "{parameter name: gradient}, {} for a layer without parameters.")
    missing, extra = sorted(set(params) - set(grads)), sorted(set(grads) - set(params))
    if missing or extra:
        raise LayerContractError(
            f"{who}: vjp returned gradients for {sorted(grads)}; the layer's parameters are {sorted(params)}"
            f"{f' (missing: {missing})' if missing else ''}{f' (no such parameter: {extra})' if extra else ''}. "
            "Return one gradient per parameter, keyed by the attribute name the Parameter was assigned to."
        )
    lead = dy.shape[:nv]
    n = dy.shape[nv + batch_axis(layer)] if dy.ndim > nv + batch_axis(layer) else None
    if per_sample and n is not None:
        lead = (*lead, n)
    for k, g in grads.items():
        want = (*lead, *params[k].shape)
        if np.shape(g) != want:
            form = "(*V, N, *param)" if per_sample else "(*V, *param)"
            raise LayerContractError(
                f"{who}: vjp(per_sample={per_sample}) returned d{k} of shape {np.shape(g)}; expected {form} = {want} "
                f"for {k} of shape {params[k].shape} and dy of shape {dy.shape}.{shape_hint(np.shape(g), want, n)}"
            )
    if x_shape is not None and isinstance(dx, np.ndarray) and dx.size and dx.shape != (*dy.shape[:nv], *x_shape):
        want = (*dy.shape[:nv], *x_shape)
        raise LayerContractError(f"{who}: vjp returned dx of shape {dx.shape}; expected the input's shape {want}."
                                 f"{shape_hint(dx.shape, want, n)}")


# -- the spot check of a new layer ---------------------------------------------------------------------
_SPOT_CHECKED: set[tuple[Any, ...]] = set()
_spot_off = [0]


@contextlib.contextmanager
def spot_checks_off() -> Iterator[None]:
    """No spot checks inside: for the tools that check a layer themselves and report rather than raise
    (``nn.gradcheck``, ``nn.testing.check_layer``)."""
    _spot_off[0] += 1
    try:
        yield
    finally:
        _spot_off[0] -= 1


def checks_on() -> bool:
    """False inside ``spot_checks_off()``: a first-use check (this module's, the lab's of R-op rules) skips."""
    return not _spot_off[0]


def spot_check(layer: Layer, x: Any, train: bool, form: VjpForm) -> None:
    """Once per class and parameter shapes: the layer's VJP against central differences, in float64
    on a copy, on up to ``SPOT_SAMPLES`` samples of ``x``; raise ``LayerContractError`` on a mistake."""
    cls = type(layer)
    key = (cls, train, tuple((k, p.shape) for k, p in layer.named_parameters()))
    if key in _SPOT_CHECKED or _spot_off[0] or not getattr(cls, "exact_vjp", True) or not isinstance(x, np.ndarray) \
            or x.dtype.kind != "f" or x.ndim == 0:
        return
    axis = min(batch_axis(layer), x.ndim - 1)
    xs = np.array(np.take(x, range(min(SPOT_SAMPLES, x.shape[axis])), axis=axis), dtype=np.float64)
    try:
        m = copy.deepcopy(layer).to(np.float64)
        problems = _spot_problems(m, xs, train, form)
    except Exception as exc:  # the layer cannot run on a float64 copy of a few samples: train it unchecked
        warnings.warn(f"nablanet could not check {describe(layer)} on {xs.shape[axis]} samples in float64 on a copy "
                      f"({type(exc).__name__}: {exc}); it runs unchecked. nn.testing.check_layer(layer, x) checks it "
                      "on an input of your choice.", RuntimeWarning, stacklevel=4)
        _SPOT_CHECKED.add(key)
        return
    if problems:
        raise LayerContractError(
            f"{describe(layer)} failed nablanet's check of a new layer (float64, {xs.shape[axis]} samples of the "
            "first batch, backprop against central differences):\n  " + "\n  ".join(problems) + "\nFix vjp; "
            "nn.testing.check_layer(layer, x) shows every check. A VJP that is deliberately not the derivative "
            "(a straight-through estimator) sets the class attribute exact_vjp = False."
        )
    _SPOT_CHECKED.add(key)


def _spot_problems(m: Layer, x: np.ndarray, train: bool, form: VjpForm) -> list[str]:
    gen = np.random.default_rng(0)

    def f(xe: np.ndarray) -> np.ndarray:
        return np.asarray(m.forward(xe, train=train, rng=np.random.default_rng(1))[0])

    y, cache = m.forward(x, train=train, rng=np.random.default_rng(1))
    if not isinstance(y, np.ndarray):
        return []
    dy = gen.standard_normal(y.shape)
    dx, grads = m.vjp(cache, dy)
    try:
        check_vjp_shapes(m, "", dx, grads, dy, 0, False, x.shape)
    except LayerContractError as exc:
        return [str(exc).partition(": ")[2]]
    n = x.shape[min(batch_axis(m), x.ndim - 1)]
    problems = []
    u = gen.standard_normal(x.shape)
    problems += _slope("dx", dx, u, lambda s: float(np.vdot(dy, f(x + s * u))), n)
    for k, p in m.named_parameters():
        v = gen.standard_normal(p.shape)

        def moved(s: float, p: Any = p, v: np.ndarray = v) -> float:
            return _at(p, v, s, lambda: float(np.vdot(dy, f(x))))

        problems += _slope(f"d{k}", grads[k], v, moved, n)
    if form.per_sample and not problems:
        problems += _full_form_problems(m, cache, dy, grads, n, form)
    return problems


def _at(p: Any, v: np.ndarray, s: float, fn: Callable[[], float]) -> float:
    saved = p.data.copy()
    try:
        p.data[...] = saved + s * v
        return fn()
    finally:
        p.data[...] = saved


def _slope(name: str, g: np.ndarray, u: np.ndarray, f: Callable[[float], float], n: int) -> list[str]:
    """⟨g, u⟩ against (f(ε) − f(−ε))/2ε, the directional derivative along u."""
    analytic = float(np.vdot(g, u))
    numeric = (f(_EPS) - f(-_EPS)) / (2 * _EPS)
    scale = float(np.linalg.norm(g) * np.linalg.norm(u)) + abs(numeric)
    if abs(analytic - numeric) <= _SPOT_RTOL * scale or scale == 0.0:
        return []
    hint = ratio_hint(analytic / numeric, n) if numeric != 0.0 else ""
    return [f"{name}: backprop gives the slope {analytic:.6g} along a random direction, central differences "
            f"{numeric:.6g}.{hint or ' The formula is wrong (a forgotten dy, a wrong term?).'}"]


def _full_form_problems(m: Layer, cache: Any, dy: np.ndarray, grads: dict[str, Any], n: int,
                        form: VjpForm) -> list[str]:
    """What the full form promises: per-sample gradients (N, *param) summing to the batch gradient,
    and a stack of two dy giving the two VJPs."""
    problems = []
    try:
        _, per = m.vjp(cache, dy, per_sample=True)
    except ValueError:  # the layer declares per-sample gradients undefined here (coupled samples: batch norm)
        per = None
    if per is not None:
        try:
            check_vjp_shapes(m, "", None, per, dy, 0, True, None)
        except LayerContractError as exc:
            problems.append(str(exc).partition(": ")[2])
        else:
            problems += [f"d{k} with per_sample=True does not sum over the samples to the batch gradient: return "
                         "each sample's own term of the sum." for k in grads
                         if not np.allclose(np.sum(per[k], axis=0), grads[k], rtol=1e-8, atol=1e-12)]
    two = np.stack([dy, np.random.default_rng(2).standard_normal(dy.shape)])
    try:
        dx2, g2 = m.vjp(cache, two)
        rows = [m.vjp(cache, two[i]) for i in range(2)]
        bad = [k for k in grads if k not in g2 or np.shape(g2[k]) != (2, *np.shape(grads[k]))
               or not np.allclose(g2[k], np.stack([r[1][k] for r in rows]), rtol=1e-8, atol=1e-12)]
        if np.shape(dx2) != (2, *np.shape(rows[0][0])) or not np.allclose(dx2, np.stack([r[0] for r in rows])):
            bad.append("x")
    except Exception as exc:
        bad = [f"x ({type(exc).__name__}: {exc})"]
    if bad:
        problems.append(f"vector axes: dy stacked as (2, *y.shape) does not give the two VJPs stacked for "
                        f"{', '.join('d' + b for b in bad)}. A vjp that takes per_sample promises vector axes: let "
                        "the leading axes broadcast (einsum with '...'), or write the short form vjp(self, cache, dy).")
    return problems
