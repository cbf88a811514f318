"""Rules for any ``Layer`` (``layers/base.py``): the per-sample gradient norms of a layer without a closed
form, and the helpers of the closed forms.

Per-sample gradients are those of each sample's own, unscaled loss; the tape's dy carries the
batch loss's scaling, which ``factor`` (N under reduction="mean", 1 under "sum") undoes; see
``nablanet.lab.per_sample``.
"""

from __future__ import annotations

import numpy as np

from nablanet.lab.registry import per_sample_grad_norms_rules
from nablanet.layers import kernels
from nablanet.layers.base import Layer, TapeEntry

CHUNK_ELEMENTS = 1 << 22
"""Materialized per-sample gradients are built this many entries at a time."""


def layer_per_sample_grads(entry: TapeEntry, factor: float, who: str) -> dict[str, np.ndarray]:
    """{local name: (N, *param)}: one per-sample VJP of the entry's layer, times ``factor``.

    A layer that couples the samples (batch norm in training mode) raises a ValueError from its
    VJP; it is re-raised naming the layer and the instrument ``who``. A layer of the user's goes
    through the contract (``nablanet.layers.contract``): a short-form VJP gets the per-sample
    fallback, and every shape is checked.
    """
    try:
        _, grads = kernels.vjp(entry.layer, entry.cache, entry.dy, per_sample=True, need_dx=False,
                               prefix=f"{entry.name}.", vector_axes=0)
    except ValueError as exc:
        raise ValueError(
            f"{who}: per-sample gradients of layer {entry.name!r} ({type(entry.layer).__name__}) are not "
            f"available: {exc}"
        ) from exc
    return {local: g * factor if factor != 1.0 else g for local, g in grads.items()}


def norms(g: np.ndarray) -> np.ndarray:
    """‖gₙ‖ over every axis but the first: (N, …) → (N,)."""
    flat = g.reshape(g.shape[0], -1)
    return np.sqrt(np.einsum("nk,nk->n", flat, flat))


def sqrt_nonneg(sq: np.ndarray) -> np.ndarray:
    """√ of a sum of squares computed by the Gram trick, whose rounding can dip just below 0."""
    return np.sqrt(np.maximum(sq, 0.0))


@per_sample_grad_norms_rules.register(Layer)
def materialized_norms(entry: TapeEntry, factor: float) -> dict[str, np.ndarray]:
    """Generic rule for any parameterized layer without a closed form (LayerNorm, batch norm in eval
    mode, new layers): materialize gₙ with ``vjp(per_sample=True)`` and take ‖gₙ‖.
    Cost: the layer's per-sample VJP; memory N·|θ|."""
    grads = layer_per_sample_grads(entry, factor, "per_sample_grad_norms")
    return {local: norms(g) for local, g in grads.items()}
