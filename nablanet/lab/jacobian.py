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
from collections.abc import Iterator
from typing import Any, Literal, overload

import numpy as np

from nablanet._random import RNGLike
from nablanet._validation import as_float_input, check_finite
from nablanet.layers import kernels
from nablanet.layers.base import Layer
from nablanet.layers.normalization import BatchNormCache
from nablanet.layers.sequential import Sequential

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
    y, cache = layer.forward(xa, train=train, rng=rng)
    _refuse_coupled(_leaves(layer, cache, ""), "jacobian")
    j, _ = _push_basis(layer, cache, y.shape, y.dtype, xa.shape, max_entries, "jacobian", "the model")
    return j


def layer_jacobians(
    model: Layer, x: Any, *, train: bool = False, rng: RNGLike = None, max_entries: int = MAX_ENTRIES
) -> dict[str, np.ndarray]:
    """The per-sample Jacobian of every leaf layer at the input it receives in one forward pass.

    Returns ``{name: J⁽ˡ⁾}`` in forward order, names as on the tape (``"0"``, ``"1"``, ``"2.0"``
    inside a nested Sequential; ``""`` when ``model`` is a single layer), with

        J⁽ˡ⁾ₙ = ∂h⁽ˡ⁾ₙ/∂h⁽ˡ⁻¹⁾ₙ   (N, o_l, i_l),   h⁽⁰⁾ = x, h⁽ᴸ⁾ = y.

    Computed from the caches of ONE forward of the whole model (``train`` and ``rng`` as for
    ``model.forward``, so dropout masks are the ones that forward drew): the leaves are walked
    from the output back, each layer's basis pushed through its own ``vjp``; the input shape
    each VJP returns is the output shape of the layer before. By the chain rule the model's
    Jacobian is the product Jₙ = J⁽ᴸ⁾ₙ ⋯ J⁽²⁾ₙ J⁽¹⁾ₙ.

    Raises a ValueError when a layer's N·o·i exceeds ``max_entries`` (reduce N, or raise the cap
    if the memory is there), and for batch norm with batch statistics (samples coupled).
    """
    xa = _checked_input(x, "layer_jacobians")
    y, caches = model.forward(xa, train=train, rng=rng)
    leaves = list(_leaves(model, caches, ""))
    _refuse_coupled(leaves, "layer_jacobians")
    out_shape: tuple[int, ...] = y.shape
    found: dict[str, np.ndarray] = {}
    for name, layer, cache in reversed(leaves):
        found[name], in_shape = _push_basis(
            layer, cache, out_shape, y.dtype, None, max_entries, "layer_jacobians", f"layer {name!r}"
        )
        out_shape = in_shape
    if leaves and out_shape != xa.shape:  # the walk must end at the model's input
        raise RuntimeError(
            f"layer_jacobians: walking the VJPs back ended at shape {out_shape}, but x has shape {xa.shape}; "
            "a layer's vjp returned dx of the wrong shape. Check it with nablanet.gradcheck."
        )
    return {name: found[name] for name, _, _ in leaves}


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
    ``per_layer=True``: ``{name: (N, min(o_l, i_l))}`` for every leaf layer's J⁽ˡ⁾ₙ
    (see ``layer_jacobians``; names as on the tape).

    The diagnostic of Glorot & Bengio (2010, "Understanding the difficulty of training deep
    feedforward neural networks"): a back-propagated gradient is multiplied by J⁽ˡ⁾ₙᵀ at every
    layer, so its norm changes by a factor between s_min(J⁽ˡ⁾ₙ) and s_max(J⁽ˡ⁾ₙ) per layer. They
    report that with their normalized ("Xavier") initialization the singular values of the layer
    Jacobians stay closer to 1 than with the standard initialization. Layer Jacobians whose
    singular values sit near 1 keep gradient norms through depth; otherwise the singular values of
    the product Jₙ = J⁽ᴸ⁾ₙ ⋯ J⁽¹⁾ₙ spread out (roughly geometrically in the depth L: the largest
    grow, the smallest shrink), which is the exploding/vanishing gradient problem. An orthogonal
    Linear layer has all singular values exactly 1; a saturated sigmoid multiplies them by
    σ′(x) ≤ 1/4, and a ReLU zeroes the columns of its inactive units.
    """
    if per_layer:
        jac = layer_jacobians(model_or_layer, x, train=train, rng=rng, max_entries=max_entries)
        return {name: _singular_values(j) for name, j in jac.items()}
    xa = _checked_input(x, "jacobian_singular_values")
    y, cache = model_or_layer.forward(xa, train=train, rng=rng)
    _refuse_coupled(_leaves(model_or_layer, cache, ""), "jacobian_singular_values")
    j, _ = _push_basis(
        model_or_layer, cache, y.shape, y.dtype, xa.shape, max_entries, "jacobian_singular_values", "the model"
    )
    return _singular_values(j)


# -- helpers --------------------------------------------------------------------------------------
def _checked_input(x: Any, who: str) -> np.ndarray:
    xa = as_float_input(x, "x")
    check_finite(xa, "x")
    if xa.ndim < 1:
        raise ValueError(f"{who} needs a batch (N, ...); got x.shape={xa.shape}. Use x[None] for one sample.")
    return xa


def _leaves(layer: Layer, cache: Any, name: str) -> Iterator[tuple[str, Layer, Any]]:
    """(tape name, leaf layer, its cache) in forward order, walking nested Sequentials with their caches."""
    if isinstance(layer, Sequential):
        for (child_name, child), child_cache in zip(layer.named_children(), cache, strict=True):
            yield from _leaves(child, child_cache, f"{name}.{child_name}" if name else child_name)
    else:
        yield name, layer, cache


def _refuse_coupled(leaves: Any, who: str) -> None:
    for name, layer, cache in leaves:
        if isinstance(cache, BatchNormCache) and cache.batch_stats:
            raise ValueError(
                f"{who}: layer {name!r} ({type(layer).__name__}) normalized with batch statistics, so every "
                "output depends on the whole batch and a per-sample Jacobian ∂yₙ/∂xₙ is not defined. Pass "
                "train=False with track_running_stats=True (eval mode), or use LayerNorm."
            )


def _push_basis(
    layer: Layer,
    cache: Any,
    out_shape: tuple[int, ...],
    dtype: np.dtype[Any],
    in_shape: tuple[int, ...] | None,
    max_entries: int,
    who: str,
    what: str,
) -> tuple[np.ndarray, tuple[int, ...]]:
    """J (N, o, i) from ``layer.vjp(cache, ·)`` applied to the output basis, and the input shape.

    The basis goes through in chunks of c vectors, dy (c, N, *out), c chosen so that one call
    handles about ``_CHUNK_ENTRIES`` entries (dy, dx and the parameter gradients, which carry the
    vector axis too). When the input shape is not known yet, the first vector goes alone to learn it.
    """
    if isinstance(max_entries, bool) or not isinstance(max_entries, int | np.integer) or max_entries < 1:
        raise ValueError(f"{who}(max_entries={max_entries!r}): expected a positive int such as {MAX_ENTRIES}")
    n = out_shape[0]
    n_out = math.prod(out_shape[1:])
    n_params = sum(p.size for p in layer.parameters())

    def too_big(n_in: int) -> None:
        total = n * n_out * n_in
        if total > max_entries:
            mib = total * np.dtype(dtype).itemsize / 2**20
            raise ValueError(
                f"{who}: the Jacobian of {what} ({type(layer).__name__}) would hold N·out·in = {n}·{n_out}·{n_in} "
                f"= {total:,} entries ({mib:,.1f} MiB), more than max_entries={int(max_entries):,}. Use fewer samples "
                f"(x[:k]) or a smaller model, or pass max_entries={total} if the memory is there."
            )

    def rows(v0: int, v1: int) -> np.ndarray:
        dy = np.zeros((v1 - v0, n, n_out), dtype=dtype)
        dy[np.arange(v1 - v0), :, np.arange(v0, v1)] = 1
        dx, _ = kernels.vjp(layer, cache, dy.reshape((v1 - v0, *out_shape)), per_sample=False, need_dx=True,
                            vector_axes=1)
        return np.asarray(dx)

    if in_shape is not None:
        too_big(math.prod(in_shape[1:]))
    if n_out == 0:
        shape = in_shape if in_shape is not None else (n, 0)
        return np.zeros((n, 0, math.prod(shape[1:])), dtype=dtype), shape
    first = rows(0, 1)
    found_in = tuple(first.shape[1:])
    n_in = math.prod(found_in[1:])
    too_big(n_in)
    j = np.empty((n, n_out, n_in), dtype=first.dtype)
    j[:, 0, :] = first.reshape(n, n_in)
    chunk = max(1, _CHUNK_ENTRIES // max(1, n * (n_out + n_in) + n_params))
    for v0 in range(1, n_out, chunk):
        v1 = min(n_out, v0 + chunk)
        j[:, v0:v1, :] = np.moveaxis(rows(v0, v1).reshape(v1 - v0, n, n_in), 0, 1)
    return j, found_in


def _singular_values(j: np.ndarray) -> np.ndarray:
    """Batched singular values (N, min(o, i)), descending; an empty Jacobian gives (N, 0)."""
    if min(j.shape[1:]) == 0:
        return np.zeros((j.shape[0], 0), dtype=j.dtype)
    return np.linalg.svd(j, compute_uv=False)
