"""Convolutions (cross-correlations, as in PyTorch) over 1 or 2 spatial axes, by im2col and GEMM."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from nablanet._dtype import resolve_dtype
from nablanet._random import RNGLike, get_rng
from nablanet.layers._windows import im2col, ix, out_size, pad_channels_last, scatter_taps, unpad
from nablanet.layers.base import NO_DX, Layer, n_vector_axes
from nablanet.parameter import Parameter

_BLOCK_BYTES = 4 << 20  # im2col block size: a few MB stays in a core's share of the cache


class ConvCache(NamedTuple):
    xp: np.ndarray  # the input, padded and channels-last (N, *Sₚ, C); im2col blocks are formed from it
    starts: tuple[int, ...]  # the blocks' first samples s_b, then N
    x_shape: tuple[int, ...]  # (N, C, *S)
    out_spatial: tuple[int, ...]  # S′
    pads: tuple[tuple[int, int], ...]


def block_starts(n: int, sample_bytes: int) -> tuple[int, ...]:
    """The first sample of each block of about _BLOCK_BYTES of im2col rows, then n: a block is formed
    and multiplied while it stays in cache."""
    step = max(1, _BLOCK_BYTES // max(1, sample_bytes))
    return (*range(0, n, step), n)


def _rows_by_sample(rows: np.ndarray, p: int) -> np.ndarray:
    """(…, G, m, K) with m = n·p rows, sample-major → (…, G, n, p, K)."""
    return rows.reshape(*rows.shape[:-2], -1, p, rows.shape[-1])


def _tuple(value: Any, nd: int, who: str, arg: str, minimum: int) -> tuple[int, ...]:
    vals = (value,) * nd if isinstance(value, int | np.integer) and not isinstance(value, bool) else value
    ok = isinstance(vals, tuple | list) and len(vals) == nd and all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= minimum for v in vals
    )
    if not ok:
        raise ValueError(
            f"{who}({arg}={value!r}): expected an int >= {minimum} or a tuple of {nd} such ints, "
            f"e.g. {arg}={max(minimum, 1)}"
        )
    return tuple(int(v) for v in vals)


class _ConvNd(Layer):
    """Shared geometry and math of ``Conv1d`` and ``Conv2d`` (``_nd`` spatial axes).

    Forward (cross-correlation; group g = 1 … G, output channel o of group g, output position p):
        y[n, o, p] = b[o] + Σ_c Σ_t W[o, c, t] · xₚₐ𝒹[n, g·C_g + c, s·p + dil·t]
    As a matrix product (im2col): X (G, M, K_g) holds one window per row, M = N·∏S′ rows, K_g = ∏k·C_g
    columns (taps outer, channels inner); Wₘ (G, O_g, K_g) is W with its columns in the same order:
        Y = X Wₘᵀ + b
    VJP:  dWₘ = dYᵀ X        db[o] = Σₙ,ₚ dy[n, o, p]
          dX = dY Wₘ, then col2im: each input entry sums the entries of dX of the windows that read
          it (one strided add per kernel tap), and the padding is cropped off.
    Per-sample:  dWₙ = dYₙᵀ Xₙ (the rows of sample n), dbₙ[o] = Σₚ dy[n, o, p].
    Shapes:  x (N, C, *S)   W (O, C/G, *k)   b (O,)   y (N, O, *S′)   dy (*V, N, O, *S′),
             S′ = ⌊(S + pₗ + pᵣ − dil·(k − 1) − 1)/s⌋ + 1.
    Layout:  the math runs channels-last; y is returned as a transposed (NCHW-shaped) view of a
             channels-last array, so the next convolution or pooling layer reads it for free.
    Blocks:  X is formed in blocks of whole samples of about _BLOCK_BYTES (4 MB) each
             (``col_blocks``), from the padded channels-last input the cache keeps (for LeNet's
             second layer, batch 64, 18×18 padded, 32 channels: 2.7 MB against 40 MB for X in float32).
    Init (PyTorch's): W, b ~ U(−1/√fan_in, 1/√fan_in), fan_in = C/G·∏k.
    Faster variants: ``nablanet/layers/kernels/conv.py``.
    """

    _nd = 0

    # -- math -------------------------------------------------------------------------------------
    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, ConvCache]:
        self._check(x)
        w = self.weight.data
        x = x.astype(w.dtype, copy=False)
        out = self._out_spatial(x.shape[2:])
        cache = self.make_cache(x, out)
        wm = self._weight_matrix()  # (G, O_g, K_g)
        y = np.concatenate([(cols @ wm.swapaxes(1, 2)).swapaxes(0, 1) for _, _, cols in self.col_blocks(cache)])
        y = y.reshape(-1, self.out_channels)  # (M, O): rows n·∏S′ + p, channels (g, o)
        if self.bias is not None:
            y += self.bias.data
        return np.moveaxis(y.reshape(x.shape[0], *out, self.out_channels), -1, 1), cache

    def vjp(
        self, cache: ConvCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        nd, g, og = self._nd, self.groups, self.out_channels // self.groups
        nv = n_vector_axes(dy, nd + 2, type(self).__name__)
        vshape, p = dy.shape[:nv], math.prod(cache.out_spatial)
        dyh = np.moveaxis(dy, nv + 1, -1)  # (*V, N, *S′, O) channels-last
        dyg = np.swapaxes(dyh.reshape(*vshape, -1, g, og), -2, -3)  # dY (*V, G, M, O_g), rows as in X
        wm = self._weight_matrix()  # (G, O_g, K_g)
        dxp = np.zeros((*vshape, *cache.xp.shape), dy.dtype)  # dx padded, channels-last (*V, N, *Sₚ, C)
        dws = []
        for n0, n1, cols in self.col_blocks(cache):  # cols: X of samples n₀ … n₁ − 1, (G, m, K_g)
            dyb = dyg[..., n0 * p : n1 * p, :]  # (*V, G, m, O_g)
            if per_sample:  # dWₙ = dYₙᵀ Xₙ: (*V, G, n, O_g, K_g)
                dws.append(_rows_by_sample(dyb, p).swapaxes(-1, -2) @ _rows_by_sample(cols, p))
            else:  # dWₘ = Σ_blocks dY_bᵀ X_b: (*V, G, O_g, K_g)
                dws.append(dyb.swapaxes(-1, -2) @ cols)
            if need_dx:
                self._col2im(dyb @ wm, dxp[ix(Ellipsis, slice(n0, n1), *(slice(None),) * (nd + 1))], cache)
        if per_sample:
            dw = np.moveaxis(np.concatenate(dws, axis=-3), -3, nv)  # (*V, N, G, O_g, K_g)
        else:
            dw = sum(dws[1:], dws[0])
        grads = {"weight": self._to_weight_layout(dw.reshape(*dw.shape[:-3], self.out_channels, -1))}
        if self.bias is not None:  # db = Σ over n (unless per sample) and the positions p
            grads["bias"] = dy.sum(axis=(*(() if per_sample else (nv,)), *range(nv + 2, nv + 2 + nd)))
        if not need_dx:
            return NO_DX, grads
        return np.moveaxis(unpad(dxp, cache.pads, cache.x_shape[2:]), -1, nv + 1), grads

    # -- construction and geometry -----------------------------------------------------------------
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] | str = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        dtype: Any = None,
        rng: RNGLike = None,
    ) -> None:
        super().__init__()
        who = type(self).__name__
        nd = self._nd
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{who}({arg}={value!r}): expected a positive int")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{who}(in_channels={in_channels}, out_channels={out_channels}, groups={groups}): both channel "
                "counts must be divisible by groups"
            )
        if padding_mode != "zeros":
            raise ValueError(f"{who}(padding_mode={padding_mode!r}): only 'zeros' is supported")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = _tuple(kernel_size, nd, who, "kernel_size", 1)
        self.stride = _tuple(stride, nd, who, "stride", 1)
        self.dilation = _tuple(dilation, nd, who, "dilation", 1)
        self.groups = int(groups)
        self.padding: tuple[int, ...] | str
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{who}(padding={padding!r}): expected an int, a tuple, 'same' or 'valid'")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{who}(padding='same') needs stride 1 (as in PyTorch); got stride={self.stride}")
            self.padding = padding
            if padding == "same":
                totals = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation, strict=True)]
                self._pads = tuple((t // 2, t - t // 2) for t in totals)
            else:
                self._pads = ((0, 0),) * nd
        else:
            self.padding = _tuple(padding, nd, who, "padding", 0)
            self._pads = tuple((p, p) for p in self.padding)
        dt = resolve_dtype(dtype)
        gen = get_rng(rng)
        fan_in = self.in_channels // self.groups * math.prod(self.kernel_size)
        bound = 1.0 / math.sqrt(fan_in)
        wshape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        self.weight = Parameter(gen.uniform(-bound, bound, wshape).astype(dt))
        self.bias: Parameter | None = (
            Parameter(gen.uniform(-bound, bound, self.out_channels).astype(dt)) if bias else None
        )

    def _check(self, x: np.ndarray) -> None:
        nd = self._nd
        if x.ndim != nd + 2 or x.shape[1] != self.in_channels:
            letters = "L" if nd == 1 else "H, W"
            raise ValueError(
                f"{type(self).__name__}(in_channels={self.in_channels}) got x.shape={x.shape}; expected "
                f"(N, {self.in_channels}, {letters}). "
                + ("Add a batch axis with x[None]." if x.ndim == nd + 1 else "Check the channel axis (NCHW layout).")
            )

    def _out_spatial(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        out = tuple(
            out_size(s, k, st, p, d)
            for s, k, st, p, d in zip(spatial, self.kernel_size, self.stride, self._pads, self.dilation, strict=True)
        )
        if any(o < 1 for o in out):
            raise ValueError(
                f"{type(self).__name__}(kernel_size={self.kernel_size}, padding={self.padding}, "
                f"dilation={self.dilation}) got spatial size {spatial}: the kernel is larger than the padded "
                "input. Use a smaller kernel or more padding."
            )
        return out

    # -- helpers of the math ------------------------------------------------------------------------
    def make_cache(self, x: np.ndarray, out: tuple[int, ...]) -> ConvCache:
        """The padded channels-last input (N, *Sₚ, C) and the blocks of samples X is formed in."""
        xp = pad_channels_last(np.moveaxis(x, 1, -1), self._pads)
        sample_bytes = math.prod(out) * math.prod(self.kernel_size) * self.in_channels * x.itemsize
        return ConvCache(xp, block_starts(x.shape[0], sample_bytes), x.shape, out, self._pads)

    def col_blocks(self, cache: ConvCache) -> Iterator[tuple[int, int, np.ndarray]]:
        """(n₀, n₁, X_b) for each block of samples: X_b (G, (n₁ − n₀)·∏S′, K_g) holds the im2col rows of
        samples n₀ … n₁ − 1, formed again from the cached padded input. Use each before the next."""
        for n0, n1 in itertools.pairwise(cache.starts):
            yield n0, n1, im2col(cache.xp[n0:n1], self.kernel_size, self.stride, self.dilation, cache.out_spatial,
                                 self.groups)

    def _col2im(self, dcols: np.ndarray, dxp: np.ndarray, cache: ConvCache) -> None:
        """Add dX (*V, G, m, K_g), the gradient of a block's im2col rows, into its padded dx (*V, n, *Sₚ, C)."""
        nv = dcols.ndim - 3
        n = dxp.shape[nv]
        dcols = dcols.reshape(*dcols.shape[:-2], n, *cache.out_spatial, *self.kernel_size, -1)
        dpatch = np.moveaxis(dcols, nv, -2)  # (*V, n, *S′, *k, G, C_g): the channel order of x
        scatter_taps(dpatch.reshape(*dpatch.shape[:-2], -1), dxp, self.kernel_size, self.stride, self.dilation,
                     cache.out_spatial)

    def _weight_matrix(self) -> np.ndarray:
        """W (O, C_g, *k) → Wₘ (G, O_g, ∏k·C_g), columns in (tap, channel) order like X."""
        w = np.moveaxis(self.weight.data, 1, -1)  # (O, *k, C_g)
        return w.reshape(self.groups, self.out_channels // self.groups, -1)

    def _to_weight_layout(self, dw: np.ndarray) -> np.ndarray:
        """(…, O, ∏k·C_g) in (tap, channel) order → (…, O, C_g, *k), contiguous."""
        lead = dw.shape[:-1]
        dw = dw.reshape(*lead, *self.kernel_size, self.in_channels // self.groups)
        return np.ascontiguousarray(np.moveaxis(dw, -1, len(lead)))

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self._nd:
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else f", padding={self.padding}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s

    def get_config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels, "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size), "stride": list(self.stride),
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
            "dilation": list(self.dilation), "groups": self.groups, "bias": self.bias is not None,
            "dtype": str(self.weight.dtype),
        }


class Conv1d(_ConvNd):
    """1-D convolution over (N, C, L) inputs: weight (O, C/G, k), output (N, O, L′).

    See ``_ConvNd`` for the forward and VJP equations (one spatial axis, p = position in L′).
    """

    _nd = 1

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int | tuple[int], stride: int | tuple[int] = 1,
        padding: int | tuple[int] | str = 0, dilation: int | tuple[int] = 1, groups: int = 1, bias: bool = True,
        padding_mode: str = "zeros", *, dtype: Any = None, rng: RNGLike = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, dtype=dtype, rng=rng)


class Conv2d(_ConvNd):
    """2-D convolution over (N, C, H, W) inputs: weight (O, C/G, kₕ, k_w), output (N, O, H′, W′).

    See ``_ConvNd`` for the forward and VJP equations (two spatial axes, p = (h′, w′)).
    """

    _nd = 2

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
        *, dtype: Any = None, rng: RNGLike = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, dtype=dtype, rng=rng)
