"""Convolutions (cross-correlations, as in PyTorch) over 1 or 2 spatial axes, by im2col and GEMM."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from itertools import product
from typing import Any, NamedTuple, cast

import numpy as np

from nablanet._dtype import resolve_dtype
from nablanet._random import RNGLike, get_rng
from nablanet.layers._windows import (
    ix,
    out_size,
    pad_channels_last,
    rows_contiguous,
    scatter_taps,
    tap_slices,
    unpad,
    window_rows,
    windows,
)
from nablanet.layers.base import NO_DX, Layer, n_vector_axes
from nablanet.parameter import Parameter

_BLOCK_BYTES = 4 << 20  # im2col block size: a few MB stays in a core's share of the cache
_SHORT_RUN = 64  # window rows of fewer values (k_w·C) are gathered tap by tap (see col_blocks)


class ConvCache(NamedTuple):
    xp: np.ndarray  # the input, padded and channels-last (N, *Sₚ, C); im2col blocks are formed from it
    starts: tuple[int, ...]  # the blocks' first samples s_b, then N
    x_shape: tuple[int, ...]  # (N, C, *S)
    out_spatial: tuple[int, ...]  # S′
    pads: tuple[tuple[int, int], ...]


def _row_blocks(view: np.ndarray, starts: tuple[int, ...], p: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """(n₀, n₁, X_b): the window rows ``view`` (N, *S′, …, k_d·C) of samples n₀ … n₁ − 1 copied into
    one reused buffer as a (rows, K) matrix, rows = (n₁ − n₀)·p. Each X_b is overwritten by the next."""
    most = max(b - a for a, b in itertools.pairwise(starts))
    buf = np.empty((most * p, math.prod(view.shape[1:]) // p), dtype=view.dtype)  # K = row length
    for n0, n1 in itertools.pairwise(starts):
        cols = buf[: (n1 - n0) * p]
        np.copyto(cols.reshape(view[n0:n1].shape), view[n0:n1])
        yield n0, n1, cols


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

    Forward (cross-correlation, groups g = 1 … G, output channel o in group g, position p):
        y[n, o, p] = b[o] + Σ_c Σ_t W[o, c, t] · xₚₐ𝒹[n, g·C_g + c, s·p + dil·t]
    As a matrix product: the im2col matrix X (M, K) holds one window per row (M = N·∏S′ rows,
    K = ∏k·C_g columns, taps outer and channels inner) and Y = X Wₘᵀ + b with Wₘ (O_g, K) the
    weight's rows reordered to the same (tap, channel) order.
    VJP:  dWₘ = dYᵀ X   (one GEMM)          db[o] = Σₙ,ₚ dy[n, o, p]
          dX = dY Wₘ    (one GEMM), then col2im: each input entry sums the dX entries of the
          windows that read it (one strided add per kernel tap), and the padding is cropped.
    Per-sample:  dWₙ = dYₙᵀ Xₙ (the rows of sample n), dbₙ[o] = Σₚ dy[n, o, p].
    Shapes:  x (N, C, *S)   W (O, C/G, *k)   b (O,)   y (N, O, *S′),
             S′ = ⌊(S + pₗ + pᵣ − dil·(k − 1) − 1)/s⌋ + 1.
    Layout:  the math runs channels-last; y is returned as a transposed (NCHW-shaped) view of a
             channels-last array, so the next convolution or pooling layer reads it for free.
    Blocks:  X is never formed whole: forward and VJP each form it in blocks of whole samples of
             about _BLOCK_BYTES (4 MB) in one reused buffer, multiply each block while it is in
             cache, and move on (``col_blocks``). With stride 1 and one group, dX runs as a
             convolution of dY padded by dil·(k − 1) − p with the flipped kernel (an im2col of dY
             and one GEMM per block, no col2im); otherwise dX = dY Wₘ per block, then col2im.
    Memory:  the cache holds the padded channels-last input xₚₐ𝒹 (N·∏Sₚ·C entries), not X (for
             LeNet's second layer, batch 64, 18×18 padded, 32 channels: 2.7 MB against 40 MB for X in float32).
             Peak extra memory ≈ one block of X + |dY padded| + |dx| during the VJP.
    Init (PyTorch's): W, b ~ U(−1/√fan_in, 1/√fan_in), fan_in = C/G·∏k.
    """

    _nd = 0

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

    # -- geometry ---------------------------------------------------------------------------------
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

    def _weight_matrix(self) -> np.ndarray:
        """W (O, C_g, *k) → Wₘ (G, O_g, ∏k·C_g), columns in (tap, channel) order like X."""
        g = self.groups
        w = np.moveaxis(self.weight.data, 1, -1)  # (O, *k, C_g)
        return w.reshape(g, self.out_channels // g, -1)

    # -- math -------------------------------------------------------------------------------------
    def _im2col(self, xp: np.ndarray, out: tuple[int, ...]) -> np.ndarray:
        """The im2col matrix (G, n·∏S′, ∏k·C_g) of a padded channels-last block xp (n, *Sₚ, C)."""
        nd, g = self._nd, self.groups
        n, c = xp.shape[0], xp.shape[-1]
        cg = c // g
        if cg >= 8:
            # (n, *S′, G, C_g, *k) → (G, n, *S′, *k, C_g): one copy of the window view
            win = windows(xp, self.kernel_size, self.stride, self.dilation, out)  # (n, *S′, C, *k)
            win = win.reshape(n, *out, g, cg, *self.kernel_size)
            order = (1 + nd, 0, *range(1, 1 + nd), *range(3 + nd, 3 + 2 * nd), 2 + nd)
            return np.ascontiguousarray(win.transpose(order)).reshape(g, n * math.prod(out), -1)
        # few channels: runs of C_g values are too short for one copy; copy tap by tap instead
        cols = np.empty((g, n, *out, *self.kernel_size, cg), dtype=xp.dtype)
        for taps in product(*(range(k) for k in self.kernel_size)):
            view = xp[ix(slice(None), *tap_slices(taps, self.stride, self.dilation, out), slice(None))]
            cols[ix(slice(None), slice(None), *(slice(None),) * nd, *taps, slice(None))] = np.moveaxis(
                view.reshape(n, *out, g, cg), -2, 0)
        return cols.reshape(g, n * math.prod(out), -1)

    def _padded_input(self, x: np.ndarray) -> np.ndarray:
        """x (N, C, *S) → padded channels-last (N, *Sₚ, C), laid out so ``window_rows`` applies
        (a copy only when x's memory is not channels-last already)."""
        xp = pad_channels_last(np.moveaxis(x, 1, -1), self._pads)
        return xp if self.groups != 1 or rows_contiguous(xp) else np.ascontiguousarray(xp)

    def _block_starts(self, n: int, row_bytes: int) -> tuple[int, ...]:
        # Blocks of samples whose im2col matrix fits _BLOCK_BYTES: each block is formed in one
        # buffer and read by the product while it is still in cache.
        step = max(1, _BLOCK_BYTES // max(1, row_bytes))
        return (*range(0, n, step), n)

    def col_blocks(self, cache: ConvCache) -> Iterator[tuple[int, int, np.ndarray]]:
        """(n₀, n₁, X_b) for each block of samples: X_b (G, (n₁ − n₀)·∏S′, K_g) holds the im2col rows
        of samples n₀ … n₁ − 1, formed again from the cached padded input. With groups = 1 every
        X_b is a view of one buffer that the next block overwrites: use it before the next.

        How X_b is formed depends on the run of values one window row holds along the last axis
        (k_d·C with groups = 1): a long run is copied row by row (``window_rows``); a short one,
        as in a first layer on 1- or 3-channel images, tap by tap into a (K, rows) buffer, whose
        transpose X_b then is (one long contiguous copy per tap; the products take it as is).
        """
        xp, out, g = cache.xp, cache.out_spatial, self.groups
        p, c = math.prod(out), xp.shape[-1]
        k = math.prod(self.kernel_size) * c
        if g == 1 and self.kernel_size[-1] * c < _SHORT_RUN:
            most = max(b - a for a, b in itertools.pairwise(cache.starts))
            buf = np.empty(most * p * k, dtype=xp.dtype)
            regions = [tap_slices(tap, self.stride, self.dilation, out)
                       for tap in product(*(range(kk) for kk in self.kernel_size))]
            to_front = (self._nd + 1, *range(self._nd + 1))  # (n, *S′, C) → (C, n, *S′)
            for n0, n1 in itertools.pairwise(cache.starts):
                rows = (n1 - n0) * p
                cols_t = buf[: k * rows].reshape(len(regions), c, n1 - n0, *out)
                block = xp[n0:n1]
                for t, region in enumerate(regions):
                    cols_t[t] = block[ix(slice(None), *region, slice(None))].transpose(to_front)
                yield n0, n1, cols_t.reshape(k, rows).T[None]
            return
        view = window_rows(xp, self.kernel_size, self.stride, self.dilation, out) if g == 1 else None
        if view is None:
            for n0, n1 in itertools.pairwise(cache.starts):
                yield n0, n1, self._im2col(xp[n0:n1], out)
            return
        for n0, n1, cols in _row_blocks(view, cache.starts, p):
            yield n0, n1, cols[None]

    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, ConvCache]:
        self._check(x)
        w = self.weight.data
        if x.dtype != w.dtype:
            x = x.astype(w.dtype)
        n = x.shape[0]
        out = self._out_spatial(x.shape[2:])
        p = math.prod(out)
        xp = self._padded_input(x)  # (N, *Sₚ, C)
        wm = self._weight_matrix()  # (G, O_g, K_g)
        starts = self._block_starts(n, p * wm.shape[-1] * self.groups * x.itemsize)
        cache = ConvCache(xp, starts, x.shape, out, self._pads)
        y = np.empty((n * p, self.out_channels), dtype=x.dtype)
        for n0, n1, cols in self.col_blocks(cache):
            if self.groups == 1:  # a 2-D product: NumPy's stacked matmul is slower for one matrix
                np.matmul(cols[0], wm[0].T, out=y[n0 * p : n1 * p])
            else:
                y[n0 * p : n1 * p] = (cols @ wm.transpose(0, 2, 1)).transpose(1, 0, 2).reshape(-1, self.out_channels)
        if self.bias is not None:
            y += self.bias.data
        y = y.reshape(n, *out, self.out_channels)
        return np.moveaxis(y, -1, 1), cache

    def vjp(
        self, cache: ConvCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        nd, g = self._nd, self.groups
        nv = n_vector_axes(dy, nd + 2, type(self).__name__)
        vshape = dy.shape[:nv]
        og = self.out_channels // g
        p = math.prod(cache.out_spatial)
        # dY in the im2col row order: (*V, G, M, O_g)
        dyh = np.moveaxis(dy, nv + 1, -1)  # (*V, N, *S′, O)
        dyg = np.swapaxes(dyh.reshape(*vshape, -1, g, og), -2, -3)
        grads: dict[str, np.ndarray] = {}
        if per_sample:
            parts = [
                np.einsum("...gnpo,gnpk->...ngok", dyg[..., n0 * p : n1 * p, :].reshape(*vshape, g, -1, p, og),
                          cols.reshape(g, -1, p, cols.shape[-1]), optimize=True)
                for n0, n1, cols in self.col_blocks(cache)
            ]
            dwn = np.concatenate(parts, axis=nv)  # (*V, N, G, O_g, K_g)
            grads["weight"] = self._to_weight_layout(dwn.reshape(*dwn.shape[: nv + 1], self.out_channels, -1))
            if self.bias is not None:
                grads["bias"] = dy.sum(axis=tuple(range(nv + 2, nv + 2 + nd)))
        else:
            dwg = np.zeros(0)
            for i, (n0, n1, cols) in enumerate(self.col_blocks(cache)):
                rows = dyg[..., n0 * p : n1 * p, :]
                part = rows[0].T @ cols[0] if g == 1 and nv == 0 else np.swapaxes(rows, -1, -2) @ cols
                if i == 0:
                    dwg = part
                else:
                    dwg += part
            grads["weight"] = self._to_weight_layout(dwg.reshape(*vshape, self.out_channels, -1))
            if self.bias is not None:
                grads["bias"] = self._bias_grad(dyh, nv)
        if not need_dx:
            return NO_DX, grads
        if nv == 0 and self._transposed_ok(cache):
            return self._input_grad_transposed(cache, dyh), grads
        return self._input_grad(cache, dyg, vshape), grads

    @staticmethod
    def _bias_grad(dyh: np.ndarray, nv: int) -> np.ndarray:
        """db[o] = Σₙ,ₚ dy[n, o, p] from channels-last dyh (*V, N, *S′, O): one matrix-vector product
        with a vector of ones, which BLAS runs in one pass (an axis-0 sum over rows of O values
        is several times slower)."""
        rows = dyh.reshape(*dyh.shape[:nv], -1, dyh.shape[-1])
        return np.ones(rows.shape[-2], dtype=dyh.dtype) @ rows

    def _transposed_ok(self, cache: ConvCache) -> bool:
        """Whether dX can run as a convolution of the padded dY (stride 1, one group, an
        undilated last axis, and padding no wider than the kernel's reach on any side)."""
        return (
            self.groups == 1
            and all(s == 1 for s in self.stride)
            and self.dilation[-1] == 1
            and all(lo <= d * (k - 1) and hi <= d * (k - 1)
                    for (lo, hi), k, d in zip(cache.pads, self.kernel_size, self.dilation, strict=True))
        )

    def _input_grad_transposed(self, cache: ConvCache, dyh: np.ndarray) -> np.ndarray:
        """dX for stride 1 as a convolution: with t′ = k − 1 − t and dYₚₐ𝒹 = dY padded by
        dil·(k − 1) − pₗ before and dil·(k − 1) − pᵣ after on each axis,
            dx[n, c, i] = Σ_o Σ_t′ W[o, c, k − 1 − t′] · dYₚₐ𝒹[n, o, i + dil·t′],
        one im2col of dYₚₐ𝒹 (rows of ∏k·O) and one GEMM per block, with no col2im scatter."""
        spatial = cache.x_shape[2:]
        n, c = cache.x_shape[0], self.in_channels
        reach = tuple(d * (k - 1) for k, d in zip(self.kernel_size, self.dilation, strict=True))
        dyp = pad_channels_last(dyh, [(r - lo, r - hi) for r, (lo, hi) in zip(reach, cache.pads, strict=True)])
        ones = (1,) * self._nd
        view = window_rows(dyp, self.kernel_size, ones, self.dilation, spatial)
        if view is None:  # dY was not channels-last in memory: a contiguous copy always qualifies
            view = cast(np.ndarray, window_rows(np.ascontiguousarray(dyp), self.kernel_size, ones, self.dilation,
                                                spatial))
        # Wf[(t′, o), c] = W[o, c, k − 1 − t′]
        flipped = self.weight.data[(slice(None), slice(None), *(slice(None, None, -1),) * self._nd)]
        wf = np.moveaxis(flipped, (0, 1), (-2, -1)).reshape(-1, c)
        p = math.prod(spatial)
        starts = self._block_starts(n, p * wf.shape[0] * dyp.itemsize)
        dx = np.empty((n * p, c), dtype=dyp.dtype)
        for n0, n1, cols in _row_blocks(view, starts, p):
            np.matmul(cols, wf, out=dx[n0 * p : n1 * p])
        return np.moveaxis(dx.reshape(n, *spatial, c), -1, 1)

    def _input_grad(self, cache: ConvCache, dyg: np.ndarray, vshape: tuple[int, ...]) -> np.ndarray:
        """dX = dY Wₘ, then col2im, block by block, so each block of dX is scattered while it is
        still in cache (and dX is never allocated whole)."""
        g = self.groups
        cg = self.in_channels // g
        out = cache.out_spatial
        spatial = cache.x_shape[2:]
        padded = cache.xp.shape[1:-1]
        wm = self._weight_matrix()  # (G, O_g, K_g)
        nv = len(vshape)
        p = math.prod(out)
        dxp = np.zeros((*vshape, cache.x_shape[0], *padded, self.in_channels), dtype=dyg.dtype)
        for n0, n1 in itertools.pairwise(cache.starts):
            rows = dyg[..., n0 * p : n1 * p, :]
            dcols = rows[0] @ wm[0] if g == 1 and nv == 0 else rows @ wm  # (*V, [G,] rows, K_g)
            # (*V, G, n, *S′, *k, C_g) → (*V, n, *S′, *k, G, C_g): the channel order of x
            dcols = dcols.reshape(*vshape, g, n1 - n0, *out, *self.kernel_size, cg)
            dcols = np.moveaxis(dcols, nv, -2).reshape(*vshape, n1 - n0, *out, *self.kernel_size, g * cg)
            block = dxp[ix(*(slice(None),) * nv, slice(n0, n1))]
            scatter_taps(dcols, block, self.kernel_size, self.stride, self.dilation, out)
        dxh = unpad(dxp, cache.pads, spatial)  # (*V, N, *S, C)
        return np.moveaxis(dxh, -1, nv + 1)

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
