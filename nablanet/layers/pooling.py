"""Pooling over 1 or 2 spatial axes: max (gradient to one maximum per window), average, adaptive average."""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import product
from typing import Any, NamedTuple

import numpy as np

from nablanet._random import RNGLike
from nablanet._validation import as_float_input
from nablanet.layers._windows import ix, out_size, pad_channels_last, scatter_taps, tap_slices, unpad, windows
from nablanet.layers.base import Layer, n_vector_axes
from nablanet.layers.conv import _tuple


class AvgCache(NamedTuple):
    x_shape: tuple[int, ...]  # (N, C, *S)
    out_spatial: tuple[int, ...]  # S′
    divisor: np.ndarray | float  # window sizes, broadcast against (N, *S′, C)


class _PoolNd(Layer):
    """Window geometry shared by max and average pooling (``_nd`` spatial axes, channels kept)."""

    _nd = 0

    def __init__(
        self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False
    ) -> None:
        super().__init__()
        who, nd = type(self).__name__, self._nd
        self.kernel_size = _tuple(kernel_size, nd, who, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else _tuple(stride, nd, who, "stride", 1)
        self.padding = _tuple(padding, nd, who, "padding", 0)
        self.dilation = _tuple(dilation, nd, who, "dilation", 1)
        if ceil_mode:
            raise ValueError(f"{who}(ceil_mode=True) is not supported; use ceil_mode=False (PyTorch's default)")
        eff = [d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation, strict=True)]
        if any(p > e // 2 for p, e in zip(self.padding, eff, strict=True)):
            raise ValueError(
                f"{who}(kernel_size={self.kernel_size}, padding={self.padding}): padding must be at most half "
                "the (dilated) kernel size, as in PyTorch; reduce padding"
            )
        self._pads = tuple((p, p) for p in self.padding)

    def _geometry(self, x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
        nd = self._nd
        if x.ndim != nd + 2:
            letters = "L" if nd == 1 else "H, W"
            raise ValueError(
                f"{type(self).__name__} got x.shape={x.shape}; expected (N, C, {letters})."
                + (" Add a batch axis with x[None]." if x.ndim == nd + 1 else "")
            )
        if x.dtype.kind != "f":
            x = as_float_input(x)
        out = tuple(
            out_size(s, k, st, p, d)
            for s, k, st, p, d in zip(x.shape[2:], self.kernel_size, self.stride, self._pads, self.dilation,
                                      strict=True)
        )
        if any(o < 1 for o in out):
            raise ValueError(
                f"{type(self).__name__}(kernel_size={self.kernel_size}) got spatial size {x.shape[2:]}: the window "
                "is larger than the padded input"
            )
        return x, out

    def _taps(self, xp: np.ndarray, out: tuple[int, ...]) -> Iterator[np.ndarray]:
        """The strided view (…, N, *S′, C) each kernel tap reads, taps in row-major order."""
        for taps in product(*(range(k) for k in self.kernel_size)):
            yield xp[ix(Ellipsis, *tap_slices(taps, self.stride, self.dilation, out), slice(None))]

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def get_config(self) -> dict[str, Any]:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
                "dilation": list(self.dilation)}


class MaxCache(NamedTuple):
    argmax: np.ndarray  # (N, *S′, C): index of each window's first maximum, taps in row-major order
    padded: tuple[int, ...]  # (N, *Sₚ, C): the padded channels-last shape
    x_shape: tuple[int, ...]  # (N, C, *S)
    out_spatial: tuple[int, ...]


class _MaxPoolNd(_PoolNd):
    """Max pooling:  y[n, c, p] = max over the window P(p) of x[n, c, ·] (padding counts as −∞).

    VJP (the notes' Jacobian of max-pooling): the gradient flows only to the maximum of each window,
        dx[n, c, q] = Σ_p dy[n, c, p] · [q = argmax over P(p)],
    so an input that wins several overlapping windows sums their gradients. On ties the first
    maximum in row-major window order gets the whole gradient (PyTorch's CPU kernel does the same;
    any convex split is a valid subgradient).
    Shapes: x (N, C, *S) → y (N, C, *S′), S′ as for convolution; dy (*V, N, C, *S′).
    Method: one elementwise comparison per kernel tap t over strided views (no window copy); the
    cache holds the argmax, the tap index t of each window's maximum (one byte per output).
    """

    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, MaxCache]:
        x, out = self._geometry(x)
        xp = pad_channels_last(np.moveaxis(x, 1, -1), self._pads, value=-np.inf)  # (N, *Sₚ, C)
        taps = self._taps(xp, out)  # the view each tap t reads, (N, *S′, C)
        y = next(taps)
        argmax = np.zeros(y.shape, dtype=np.uint8 if math.prod(self.kernel_size) <= 256 else np.uint32)
        for t, view in enumerate(taps, 1):
            # t grows tap by tap, so t replaces every index stored so far exactly where the tap is
            # strictly larger than the maximum so far: ties keep the earlier tap
            argmax = np.maximum(argmax, (view > y) * argmax.dtype.type(t))
            y = np.maximum(y, view)
        return np.moveaxis(y, -1, 1), MaxCache(argmax, xp.shape, x.shape, out)

    def vjp(
        self, cache: MaxCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        nv = n_vector_axes(dy, self._nd + 2, type(self).__name__)
        dyh = np.moveaxis(dy, nv + 1, -1)  # (*V, N, *S′, C)
        dxp = np.zeros((*dyh.shape[:nv], *cache.padded), dtype=dy.dtype)  # dx padded, channels-last
        for t, dview in enumerate(self._taps(dxp, cache.out_spatial)):
            dview += dyh * (cache.argmax == t)  # each window's gradient goes to its maximum
        return np.moveaxis(unpad(dxp, self._pads, cache.x_shape[2:]), -1, nv + 1), {}


class MaxPool1d(_MaxPoolNd):
    """1-D max pooling over (N, C, L); see ``_MaxPoolNd`` for the equations and the tie rule."""

    _nd = 1

    def __init__(self, kernel_size: int | tuple[int], stride: int | tuple[int] | None = None,
                 padding: int | tuple[int] = 0, dilation: int | tuple[int] = 1, ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)


class MaxPool2d(_MaxPoolNd):
    """2-D max pooling over (N, C, H, W); see ``_MaxPoolNd`` for the equations and the tie rule."""

    _nd = 2

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
                 ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)


class _AvgPoolNd(_PoolNd):
    """Average pooling:  y[n, c, p] = (1/D(p)) Σ_{q ∈ P(p)} x[n, c, q].

    D(p) = ∏k with ``count_include_pad=True`` (PyTorch's default: padded zeros count), or the
    number of real (unpadded) inputs in the window otherwise.
    VJP:  dx[n, c, q] = Σ_{p : q ∈ P(p)} dy[n, c, p] / D(p)  (one strided add per kernel tap).
    Shapes: x (N, C, *S) → y (N, C, *S′).
    """

    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, AvgCache]:
        x, out = self._geometry(x)
        divisor = self._divisor(x.shape[2:], out, x.dtype)
        taps = self._taps(pad_channels_last(np.moveaxis(x, 1, -1), self._pads), out)
        total = next(taps).copy()
        for view in taps:  # one strided add per kernel tap
            total += view
        y = (total / divisor).astype(x.dtype, copy=False)
        return np.moveaxis(y, -1, 1), AvgCache(x.shape, out, divisor)

    def vjp(
        self, cache: AvgCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        nd = self._nd
        nv = n_vector_axes(dy, nd + 2, type(self).__name__)
        share = (np.moveaxis(dy, nv + 1, -1) / cache.divisor).astype(dy.dtype, copy=False)  # (*V, N, *S′, C)
        spatial = cache.x_shape[2:]
        padded = tuple(s + lo + hi for s, (lo, hi) in zip(spatial, self._pads, strict=True))
        # every tap of a window receives the same share: broadcast it over the kernel axes
        dpatch = np.broadcast_to(share[(Ellipsis, *(None,) * nd, slice(None))],
                                 (*share.shape[:-1], *self.kernel_size, share.shape[-1]))
        dxp = np.zeros((*share.shape[: nv + 1], *padded, share.shape[-1]), dtype=share.dtype)
        scatter_taps(dpatch, dxp, self.kernel_size, self.stride, self.dilation, cache.out_spatial)
        return np.moveaxis(unpad(dxp, self._pads, spatial), -1, nv + 1), {}

    def __init__(self, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool, count_include_pad: bool) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def _divisor(self, spatial: tuple[int, ...], out: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray | float:
        if self.count_include_pad or not any(self.padding):
            return float(math.prod(self.kernel_size))
        ones = pad_channels_last(np.ones((1, *spatial, 1), dtype=dtype), self._pads)
        counts = windows(ones, self.kernel_size, self.stride, self.dilation, out).sum(
            axis=tuple(range(-self._nd, 0)))  # (1, *S′, 1)
        return counts

    def get_config(self) -> dict[str, Any]:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
                "count_include_pad": self.count_include_pad}


class AvgPool1d(_AvgPoolNd):
    """1-D average pooling over (N, C, L); see ``_AvgPoolNd``."""

    _nd = 1

    def __init__(self, kernel_size: int | tuple[int], stride: int | tuple[int] | None = None,
                 padding: int | tuple[int] = 0, ceil_mode: bool = False, count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)


class AvgPool2d(_AvgPoolNd):
    """2-D average pooling over (N, C, H, W); see ``_AvgPoolNd``."""

    _nd = 2

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, ceil_mode: bool = False, count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)


class AdaptiveCache(NamedTuple):
    mats: tuple[np.ndarray, ...]  # one averaging matrix A_d (S′_d, S_d) per spatial axis
    x_ndim: int


def _adaptive_matrix(size: int, out: int, dtype: np.dtype[Any]) -> np.ndarray:
    """Rows average PyTorch's bins: bin j covers [⌊j·S/S′⌋, ⌈(j+1)·S/S′⌉)."""
    a = np.zeros((out, size), dtype=dtype)
    for j in range(out):
        lo, hi = (j * size) // out, -((-(j + 1) * size) // out)
        a[j, lo:hi] = 1.0 / (hi - lo)
    return a


class _AdaptiveAvgPoolNd(Layer):
    """Adaptive average pooling to a fixed output size, PyTorch's bins (they may overlap).

    Each axis is averaged by a matrix A_d (S′_d, S_d) whose row j is 1/|bin j| on bin j, so
        y[n, c, a, b] = Σ_{h, w} A₁[a, h] A₂[b, w] x[n, c, h, w]
        VJP:  dx[n, c, h, w] = Σ_{a, b} A₁[a, h] A₂[b, w] dy[n, c, a, b]
    ``output_size=1`` is global average pooling. Shapes: x (N, C, *S) → y (N, C, *S′); an entry
    ``None`` in ``output_size`` keeps that axis' size.
    """

    _nd = 0

    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, AdaptiveCache]:
        nd = self._nd
        if x.ndim != nd + 2:
            letters = "L" if nd == 1 else "H, W"
            raise ValueError(f"{type(self).__name__} got x.shape={x.shape}; expected (N, C, {letters})")
        if x.dtype.kind != "f":
            x = as_float_input(x)
        mats = tuple(
            _adaptive_matrix(s, s if o is None else o, x.dtype)
            for s, o in zip(x.shape[2:], self.output_size, strict=True)
        )
        y = x
        for d, a in enumerate(mats):  # contract one spatial axis at a time
            y = np.moveaxis(np.moveaxis(y, 2 + d, -1) @ a.T, -1, 2 + d)
        return y, AdaptiveCache(mats, x.ndim)

    def vjp(
        self, cache: AdaptiveCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        nv = n_vector_axes(dy, cache.x_ndim, type(self).__name__)
        dx = dy
        for d, a in enumerate(cache.mats):
            dx = np.moveaxis(np.moveaxis(dx, nv + 2 + d, -1) @ a, -1, nv + 2 + d)
        return dx, {}

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        nd, who = self._nd, type(self).__name__
        sizes = (output_size,) * nd if output_size is None or isinstance(output_size, int | np.integer) else output_size
        ok = isinstance(sizes, tuple | list) and len(sizes) == nd and all(
            s is None or (isinstance(s, int | np.integer) and not isinstance(s, bool) and s >= 1) for s in sizes)
        if not ok:
            raise ValueError(f"{who}(output_size={output_size!r}): expected a positive int or a tuple of {nd} of them")
        self.output_size = tuple(None if s is None else int(s) for s in sizes)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def get_config(self) -> dict[str, Any]:
        return {"output_size": list(self.output_size)}


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """Adaptive average pooling over (N, C, L); see ``_AdaptiveAvgPoolNd``."""

    _nd = 1

    def __init__(self, output_size: int | tuple[int]) -> None:
        super().__init__(output_size)


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """Adaptive average pooling over (N, C, H, W); see ``_AdaptiveAvgPoolNd``."""

    _nd = 2

    def __init__(self, output_size: int | tuple[int | None, int | None]) -> None:
        super().__init__(output_size)
