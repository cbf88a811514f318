"""Vector activations over one axis: every output depends on every input along ``dim``.

The VJPs apply the Jacobian without building it (the notes' ∂Div/∂zᵢ = Σⱼ ∂Div/∂yⱼ ∂yⱼ/∂zᵢ).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nablanet._random import RNGLike
from nablanet._validation import as_float_input
from nablanet.layers.base import Layer, n_vector_axes


def _axis(dim: int, ndim: int, who: str) -> int:
    """``dim`` as a negative axis (so it stays right when leading vector axes are added)."""
    if not -ndim <= dim < ndim:
        raise ValueError(f"{who}(dim={dim}) got an input with {ndim} axes; dim must be in [{-ndim}, {ndim - 1}]")
    return dim - ndim if dim >= 0 else dim


def _check_dim(dim: object, who: str) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer):
        raise TypeError(
            f"{who}(dim={dim!r}): dim must be an int naming the class axis, e.g. {who}(dim=-1) "
            "for inputs (N, C) (PyTorch's implicit dim is deprecated, so nablanet asks for it)"
        )
    return int(dim)


class SoftmaxCache(NamedTuple):
    y: np.ndarray
    axis: int


def softmax(z: np.ndarray, axis: int) -> np.ndarray:
    """exp(z − max z) / Σ exp(z − max z) along ``axis`` (shifted, so it never overflows)."""
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def log_softmax(z: np.ndarray, axis: int) -> np.ndarray:
    """z − max z − log Σ exp(z − max z) along ``axis``."""
    s = z - z.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


class _AxisActivation(Layer):
    """Shared plumbing of Softmax and LogSoftmax: the ``dim`` argument, forward via ``fn``."""

    fn: staticmethod  # (z, axis) -> y

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = _check_dim(dim, type(self).__name__)

    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, SoftmaxCache]:
        x = x if x.dtype.kind == "f" else as_float_input(x)
        axis = _axis(self.dim, x.ndim, type(self).__name__)
        y = self.fn(x, axis)
        return y, SoftmaxCache(y, axis)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def get_config(self) -> dict[str, int]:
        return {"dim": self.dim}


class Softmax(_AxisActivation):
    """yᵢ = exp(zᵢ) / Σⱼ exp(zⱼ) along ``dim``.

    Jacobian:  ∂yⱼ/∂zᵢ = yⱼ (δᵢⱼ − yᵢ)   (yᵢ(1 − yᵢ) on the diagonal, −yᵢyⱼ off it)
    VJP:       dz = y ⊙ (dy − ⟨dy, y⟩)    with ⟨dy, y⟩ = Σⱼ dyⱼ yⱼ along dim
    Shapes:    z, y (N, …, C, …); dy may carry leading vector axes (*V, N, …).
    """

    fn = staticmethod(softmax)

    def vjp(
        self, cache: SoftmaxCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n_vector_axes(dy, cache.y.ndim, "Softmax")
        y = cache.y
        return y * (dy - (dy * y).sum(axis=cache.axis, keepdims=True)), {}


class LogSoftmax(_AxisActivation):
    """yᵢ = zᵢ − log Σⱼ exp(zⱼ) along ``dim``.

    Jacobian:  ∂yⱼ/∂zᵢ = δᵢⱼ − softmax(z)ᵢ
    VJP:       dz = dy − softmax(z) ⊙ Σⱼ dyⱼ
    Shapes:    as Softmax.
    """

    fn = staticmethod(log_softmax)

    def vjp(
        self, cache: SoftmaxCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n_vector_axes(dy, cache.y.ndim, "LogSoftmax")
        p = np.exp(cache.y)
        return dy - p * dy.sum(axis=cache.axis, keepdims=True), {}
