"""Layers that only move entries around."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nablanet._random import RNGLike
from nablanet.layers.base import Layer, n_vector_axes


class FlattenCache(NamedTuple):
    in_shape: tuple[int, ...]
    out_ndim: int


class Flatten(Layer):
    """Merge axes ``start_dim … end_dim`` into one (PyTorch's defaults: keep the batch axis).

    Shapes:  x (N, d₁, …, dₖ) → y (N, d₁·…·dₖ) with the defaults.
    VJP:     dx = dy reshaped back to x's shape (a reshape is a permutation-free identity).
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = int(start_dim)
        self.end_dim = int(end_dim)

    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, FlattenCache]:
        nd = max(x.ndim, 1)
        s = self.start_dim + nd if self.start_dim < 0 else self.start_dim
        e = self.end_dim + nd if self.end_dim < 0 else self.end_dim
        if not (0 <= s < nd and 0 <= e < nd) or s > e:
            raise ValueError(
                f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}) got x.shape={x.shape}; "
                f"both dims must name axes of a {x.ndim}-D input with start_dim <= end_dim"
            )
        shape = (*x.shape[:s], int(np.prod(x.shape[s:e + 1])), *x.shape[e + 1:])
        y = x.reshape(shape)
        return y, FlattenCache(x.shape, y.ndim)

    def vjp(
        self, cache: FlattenCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        nv = n_vector_axes(dy, cache.out_ndim, "Flatten")
        return dy.reshape(dy.shape[:nv] + cache.in_shape), {}

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def get_config(self) -> dict[str, int]:
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}
