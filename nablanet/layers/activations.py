"""Scalar (elementwise) activations: y = f(x), whose Jacobian is diagonal, so dx = dy ⊙ f′(x).

Each activation gives ``f`` and ``df``; the shared base does the VJP. Shapes: x, y (N, *);
dy (*V, N, *) broadcasts against f′(x) (N, *) over any leading vector axes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nablanet._random import RNGLike
from nablanet._validation import as_float_input
from nablanet.layers.base import Layer, n_vector_axes


class ElementwiseCache(NamedTuple):
    x: np.ndarray
    y: np.ndarray


class Elementwise(Layer):
    """Base of scalar activations: ``f(x)`` forward, ``df(x, y)`` = f′(x) for the VJP."""

    def f(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(
        self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None
    ) -> tuple[np.ndarray, ElementwiseCache]:
        if x.dtype.kind != "f":
            x = as_float_input(x)
        y = self.f(x)
        return y, ElementwiseCache(x, y)

    def vjp(
        self, cache: ElementwiseCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n_vector_axes(dy, cache.y.ndim, type(self).__name__)
        return dy * self.df(cache.x, cache.y), {}


class Identity(Layer):
    """y = x;  dx = dy. Accepts any shape."""

    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, None]:
        return x, None

    def vjp(
        self, cache: None, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return dy, {}


class ReLU(Elementwise):
    """y = max(x, 0);  f′(x) = 1 for x ≥ 0, 0 for x < 0.

    At the kink x = 0 the derivative is taken as 1, the subgradient the source notes choose
    (any value in [0, 1] is a subgradient). PyTorch uses 0 there; away from 0 both agree.
    """

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0)

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x >= 0).astype(x.dtype)

    def vjp(
        self, cache: ElementwiseCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n_vector_axes(dy, cache.y.ndim, "ReLU")
        return dy * (cache.x >= 0), {}  # a product with the bool mask is several times faster than np.where


class LeakyReLU(Elementwise):
    """y = x for x ≥ 0, a·x for x < 0;  f′(x) = 1 for x ≥ 0, a for x < 0 (a = negative_slope).

    As for ReLU, the derivative at x = 0 is 1 (PyTorch uses a there).
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        if not np.isfinite(negative_slope):
            raise ValueError(f"LeakyReLU(negative_slope={negative_slope!r}): expected a finite number like 0.01")
        self.negative_slope = float(negative_slope)

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.where(x >= 0, x, x * self.negative_slope)

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.where(x >= 0, 1.0, self.negative_slope).astype(x.dtype)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"

    def get_config(self) -> dict[str, float]:
        return {"negative_slope": self.negative_slope}


class Sigmoid(Elementwise):
    """y = σ(x) = 1 / (1 + e⁻ˣ);  f′(x) = y (1 − y).

    Computed from e^(−|x|) ≤ 1, so no overflow for any finite x: σ(x) = 1/(1 + e^(−|x|)) for
    x ≥ 0 and e^(−|x|)/(1 + e^(−|x|)) for x < 0.
    """

    def f(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(x)

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return y * (1 - y)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, no overflow warnings."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class Tanh(Elementwise):
    """y = tanh(x);  f′(x) = 1 − y²."""

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 1 - y * y


class Softplus(Elementwise):
    """y = (1/β) log(1 + e^(βx));  f′(x) = σ(βx).

    Where βx > threshold the function is taken as linear, y = x and f′ = 1, as in PyTorch.
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        if not (np.isfinite(beta) and beta > 0):
            raise ValueError(f"Softplus(beta={beta!r}): expected a positive finite number such as 1.0")
        self.beta = float(beta)
        self.threshold = float(threshold)

    def f(self, x: np.ndarray) -> np.ndarray:
        bx = self.beta * x
        # log(1 + e^t) = max(t, 0) + log1p(e^(−|t|)): exact and overflow-free
        soft = (np.maximum(bx, 0) + np.log1p(np.exp(-np.abs(bx)))) / self.beta
        return np.where(bx > self.threshold, x, soft).astype(x.dtype, copy=False)

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        bx = self.beta * x
        return np.where(bx > self.threshold, 1.0, sigmoid(bx)).astype(x.dtype, copy=False)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"

    def get_config(self) -> dict[str, float]:
        return {"beta": self.beta, "threshold": self.threshold}
