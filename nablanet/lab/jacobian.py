"""Per-sample Jacobians of a layer, of a model, and of every layer of a model, by pushing a basis
through the VJP; and the Jacobians' singular values (Glorot & Bengio's diagnostic).

A VJP applies Jₙᵀ to a row vector: dxₙ = dyₙ Jₙ. Pushing the standard basis dy[v, n] = e_v (one
vector axis v = 0 … o−1, the same e_v for every sample n) gives dx[v, n] = e_vᵀ Jₙ, row v of Jₙ.
So a Jacobian costs o VJPs done as one (chunked) vectorized call; nothing is differentiated twice
and no layer code is touched.

Shapes:  x (N, *in)   y (N, *out)   Jₙ = ∂yₙ/∂xₙ (o, i) with o = ∏out, i = ∏in,
         returned batched as J (N, o, i), rows in y's C order, columns in x's C order.

Valid only where each sample's output depends on that sample alone (every layer in eval mode).
Batch norm with batch statistics couples samples (∂yₘ/∂xₙ ≠ 0 for m ≠ n) and is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any, Literal, overload

import numpy as np

from nablanet._random import RNGLike
from nablanet._validation import as_float_input, check_finite
from nablanet.lab._tape import Trace, forward_trace
from nablanet.lab.parts import layer_vjp, leaves
from nablanet.layers.base import Layer
from nablanet.layers.normalization import BatchNormCache

MAX_ENTRIES = 50_000_000
"""Default cap on N·o·i, the entries of one batched Jacobian (400 MB in float64)."""

_CHUNK_ENTRIES = 1 << 20
"""About this many array entries per VJP call when pushing a basis in chunks (8 MB in float64;
a convolution's VJP allocates an im2col gradient a few times larger)."""


def jacobian(
    layer: Layer, x: Any, *, train: bool = False, rng: RNGLike = None, max_entries: int = MAX_ENTRIES
) -> np.ndarray:
    """Jₙ = ∂yₙ/∂xₙ for every sample: an array (N, out, in) with out = ∏ y.shape[1:], in = ∏ x.shape[1:].

    One VJP call with dy = the standard basis on a leading vector axis: dy[v, n] = e_v for every n,
    so dx[v, n] = e_vᵀ Jₙ is row v of Jₙ (done in chunks of v to bound memory). Valid for layers
    that treat samples independently (every layer in eval mode); it is the Jacobian of the forward
    run with ``train`` (and ``rng``, which draws dropout masks). ``layer`` may be a whole model.
    Raises a ValueError when N·out·in would exceed ``max_entries``.
    """
    xa = _checked_input(x, "jacobian")
    return _model_jacobian(layer, xa, train, rng, max_entries, "jacobian")


def layer_jacobians(
    model: Layer, x: Any, *, train: bool = False, rng: RNGLike = None, max_entries: int = MAX_ENTRIES
) -> dict[str, np.ndarray]:
    """The per-sample Jacobian of every leaf layer at the input it receives in one forward pass.

    Returns ``{name: J⁽ˡ⁾}`` in forward order, names as on the tape and in the state_dict (``"0"``,
    ``"2.0"`` inside a nested Sequential, ``"1.0"`` inside a Residual, ``"3.out_proj"`` inside a
    MultiheadAttention; ``""`` when ``model`` is a single layer), with

        J⁽ˡ⁾ₙ = ∂yₙ⁽ˡ⁾/∂xₙ⁽ˡ⁾   (N, o_l, i_l),   x⁽ˡ⁾, y⁽ˡ⁾ the layer's own input and output.

    A recurrent stack gives one Jacobian per layer k and direction (``"0.l1_reverse"``: that
    direction's hidden states by its layer's input sequence, both batch first), MultiheadAttention one
    for its in-projection and attention (its output before ``out_proj``); see ``nablanet.lab.parts``.

    Computed from the caches of ONE forward of the whole model (``train`` and ``rng`` as for
    ``model.forward``, so dropout masks are the ones that forward drew), each layer's basis pushed
    through its own ``vjp``, from the output back. For a chain (a Sequential of leaves) the model's
    Jacobian is the product Jₙ = J⁽ᴸ⁾ₙ ⋯ J⁽²⁾ₙ J⁽¹⁾ₙ; inside a graph it is not (a Residual adds
    the identity, ∂(x + f(x))/∂x = I + J_f, and Parallel branches add up).

    Raises a ValueError when a layer's N·o·i exceeds ``max_entries`` (reduce N, or raise the cap
    if the memory is there), and for batch norm with batch statistics (samples coupled).
    """
    xa = _checked_input(x, "layer_jacobians")
    traces = forward_trace(model, xa, train=train, rng=rng)
    _refuse_coupled(traces, "layer_jacobians")
    found: dict[str, np.ndarray] = {}
    units = [u for u in leaves(traces) if isinstance(u.y, np.ndarray)]
    for u in reversed(units):  # from the output back, as backward runs
        found[u.name] = _push_basis(u.layer, u.vjp, u.y.shape, u.y.dtype, u.x, max_entries, "layer_jacobians",
                                    f"layer {u.name!r}")
    return {u.name: found[u.name] for u in units}


@overload
def jacobian_singular_values(
    model_or_layer: Layer,
    x: Any,
    *,
    per_layer: Literal[False] = False,
    train: bool = False,
    rng: RNGLike = None,
    max_entries: int = MAX_ENTRIES,
) -> np.ndarray: ...
@overload
def jacobian_singular_values(
    model_or_layer: Layer,
    x: Any,
    *,
    per_layer: Literal[True],
    train: bool = False,
    rng: RNGLike = None,
    max_entries: int = MAX_ENTRIES,
) -> dict[str, np.ndarray]: ...
def jacobian_singular_values(
    model_or_layer: Layer,
    x: Any,
    *,
    per_layer: bool = False,
    train: bool = False,
    rng: RNGLike = None,
    max_entries: int = MAX_ENTRIES,
) -> np.ndarray | dict[str, np.ndarray]:
    """Singular values s₁ ≥ s₂ ≥ … of each sample's Jacobian: (N, min(o, i)).

    ``per_layer=False``: of the input-output Jacobian Jₙ = ∂yₙ/∂xₙ of the whole model (or layer).
    ``per_layer=True``: ``{name: (N, min(o_l, i_l))}`` for every leaf layer's J⁽ˡ⁾ₙ, inside
    containers too, and per layer and direction of a recurrent stack (see ``layer_jacobians``;
    names as on the tape).

    The diagnostic of Glorot & Bengio (2010, "Understanding the difficulty of training deep
    feedforward neural networks"): a back-propagated gradient is multiplied by J⁽ˡ⁾ₙᵀ at every
    layer, so its norm changes by a factor between s_min(J⁽ˡ⁾ₙ) and s_max(J⁽ˡ⁾ₙ) per layer. They
    report that with their normalized ("Xavier") initialization the singular values of the layer
    Jacobians stay closer to 1 than with the standard initialization. Along a chain, layer
    Jacobians whose singular values sit near 1 keep gradient norms through depth; otherwise the
    singular values of the product Jₙ = J⁽ᴸ⁾ₙ ⋯ J⁽¹⁾ₙ spread out (roughly geometrically in the depth L: the largest
    grow, the smallest shrink), which is the exploding/vanishing gradient problem. An orthogonal
    Linear layer has all singular values exactly 1; a saturated sigmoid multiplies them by
    σ′(x) ≤ 1/4, and a ReLU zeroes the columns of its inactive units.
    """
    if per_layer:
        jac = layer_jacobians(model_or_layer, x, train=train, rng=rng, max_entries=max_entries)
        return {name: _singular_values(j) for name, j in jac.items()}
    xa = _checked_input(x, "jacobian_singular_values")
    return _singular_values(_model_jacobian(model_or_layer, xa, train, rng, max_entries, "jacobian_singular_values"))


# -- helpers --------------------------------------------------------------------------------------
def _checked_input(x: Any, who: str) -> np.ndarray:
    xa = as_float_input(x, "x")
    check_finite(xa, "x")
    if xa.ndim < 1:
        raise ValueError(f"{who} needs a batch (N, ...); got x.shape={xa.shape}. Use x[None] for one sample.")
    return xa


def _model_jacobian(model: Layer, xa: np.ndarray, train: bool, rng: RNGLike, max_entries: int, who: str) -> np.ndarray:
    """J (N, out, in) of the whole model, pushed through its VJP at the cache of one traced forward."""
    traces = forward_trace(model, xa, train=train, rng=rng)
    _refuse_coupled(traces, who)
    top = traces[0]  # the model's own call
    return _push_basis(model, partial(layer_vjp, model, top.cache), np.shape(top.y), np.asarray(top.y).dtype,
                       xa, max_entries, who, "the model")


def _refuse_coupled(traces: list[Trace], who: str) -> None:
    for t in traces:
        if isinstance(t.cache, BatchNormCache) and t.cache.batch_stats:
            raise ValueError(
                f"{who}: layer {t.name!r} ({type(t.layer).__name__}) normalized with batch statistics, so every "
                "output depends on the whole batch and a per-sample Jacobian ∂yₙ/∂xₙ is not defined. Pass "
                "train=False with track_running_stats=True (eval mode), or use LayerNorm."
            )


def _push_basis(
    layer: Layer,
    vjp: Callable[[np.ndarray], Any],
    out_shape: tuple[int, ...],
    dtype: np.dtype[Any],
    x: Any,
    max_entries: int,
    who: str,
    what: str,
) -> np.ndarray:
    """J (N, o, i) from ``vjp`` (dy (V, *out) → dx (V, *x.shape)) applied to the output basis.

    The basis goes through in chunks of c vectors, dy (c, N, *out), c chosen so that one call
    handles about ``_CHUNK_ENTRIES`` entries (dy, dx and the parameter gradients, which carry the
    vector axis too). An input that is a tuple (a two-input layer's) counts as its parts side by side.
    """
    if isinstance(max_entries, bool) or not isinstance(max_entries, int | np.integer) or max_entries < 1:
        raise ValueError(f"{who}(max_entries={max_entries!r}): expected a positive int such as {MAX_ENTRIES}")
    n, n_out = out_shape[0], math.prod(out_shape[1:])
    parts = [np.asarray(a) for a in (x if isinstance(x, tuple | list) else (x,))]
    n_in = sum(math.prod(a.shape[1:]) for a in parts)
    total = n * n_out * n_in
    if total > max_entries:
        mib = total * np.dtype(dtype).itemsize / 2**20
        raise ValueError(
            f"{who}: the Jacobian of {what} ({type(layer).__name__}) would hold N·out·in = {n}·{n_out}·{n_in} "
            f"= {total:,} entries ({mib:,.1f} MiB), more than max_entries={int(max_entries):,}. Use fewer samples "
            f"(x[:k]) or a smaller model, or pass max_entries={total} if the memory is there."
        )
    j = np.zeros((n, n_out, n_in), dtype=dtype)
    n_params = sum(p.size for p in layer.parameters())
    chunk = max(1, _CHUNK_ENTRIES // max(1, n * (n_out + n_in) + n_params))
    for v0 in range(0, n_out, chunk):
        v1 = min(n_out, v0 + chunk)
        dy = np.zeros((v1 - v0, n, n_out), dtype=dtype)
        dy[np.arange(v1 - v0), :, np.arange(v0, v1)] = 1
        dx = vjp(dy.reshape((v1 - v0, *out_shape)))
        got = [np.asarray(d) for d in (dx if isinstance(dx, tuple | list) else (dx,))]
        if [g.shape[1:] for g in got] != [a.shape for a in parts]:
            raise RuntimeError(
                f"{who}: the VJP of {what} ({type(layer).__name__}) returned dx of shape "
                f"{[g.shape[1:] for g in got]} for an input of shape {[a.shape for a in parts]}; a layer's vjp "
                "returned dx of the wrong shape. Check it with nablanet.gradcheck."
            )
        rows = np.concatenate([g.reshape(v1 - v0, n, -1) for g in got], axis=-1)
        j[:, v0:v1, :] = np.moveaxis(rows, 0, 1)
    return j


def _singular_values(j: np.ndarray) -> np.ndarray:
    """Batched singular values (N, min(o, i)), descending; an empty Jacobian gives (N, 0)."""
    if min(j.shape[1:]) == 0:
        return np.zeros((j.shape[0], 0), dtype=j.dtype)
    return np.linalg.svd(j, compute_uv=False)
