"""Per-sample Jacobians of a layer or model, by pushing a basis through the VJP."""

from __future__ import annotations

from typing import Any

import numpy as np

from nablanet._validation import as_float_input, check_finite
from nablanet.layers.base import Layer


def jacobian(layer: Layer, x: Any, *, train: bool = False) -> np.ndarray:
    """Jₙ = ∂yₙ/∂xₙ for every sample: an array (N, out, in) with out = ∏ y.shape[1:], in = ∏ x.shape[1:].

    One VJP call with dy = the standard basis on a leading vector axis: dy[v, n] = e_v for every n,
    so dx[v, n] = e_vᵀ Jₙ is row v of Jₙ. Valid for layers that treat samples independently
    (every layer in eval mode); it is the Jacobian of the forward run with ``train``.
    """
    xa = as_float_input(x, "x")
    check_finite(xa, "x")
    if xa.ndim < 1:
        raise ValueError(f"jacobian needs a batch (N, ...); got x.shape={xa.shape}. Use x[None] for one sample.")
    y, cache = layer.forward(xa, train=train)
    n = y.shape[0]
    n_out = int(np.prod(y.shape[1:], dtype=np.int64))
    basis = np.eye(n_out, dtype=y.dtype).reshape((n_out, 1, *y.shape[1:]))
    dy = np.ascontiguousarray(np.broadcast_to(basis, (n_out, *y.shape)))
    dx, _ = layer.vjp(cache, dy)  # (out, N, *in)
    return np.moveaxis(dx.reshape(n_out, n, -1), 0, 1)
