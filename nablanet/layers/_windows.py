"""Sliding windows over channels-last arrays: the gather (im2col) and its adjoint (col2im).

Convolution and pooling both read, for every output position p, a window of the input. Here the
input is held channels-last, ``(N, *S, C)``: a logical NCHW array that came out of a previous
convolution is already laid out that way in memory (its NCHW view is a transpose), so moving the
channel axis last is free and the window copy reads contiguous runs of C values.

Spatial geometry per axis d (PyTorch's): padded length Sₚ = S + pₗ + pᵣ, effective kernel
k̃ = dil·(k − 1) + 1, output length S′ = ⌊(Sₚ − k̃)/s⌋ + 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import product
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def ix(*parts: Any) -> tuple[Any, ...]:
    """An index tuple built from parts (slices, Ellipsis, ints); typed for mypy."""
    return parts


def out_size(size: int, k: int, s: int, pad: tuple[int, int], dil: int) -> int:
    return (size + pad[0] + pad[1] - dil * (k - 1) - 1) // s + 1


def pad_channels_last(
    xh: np.ndarray, pads: Sequence[tuple[int, int]], value: float = 0.0
) -> np.ndarray:
    """Pad the spatial axes of ``xh`` (…, N, *S, C); returns ``xh`` itself when nothing is padded."""
    if not any(lo or hi for lo, hi in pads):
        return xh
    nd = len(pads)
    lead = xh.ndim - nd - 1
    shape = (*xh.shape[:lead], *(s + lo + hi for s, (lo, hi) in zip(xh.shape[lead:-1], pads, strict=True)),
             xh.shape[-1])
    out = np.full(shape, value, dtype=xh.dtype) if value else np.zeros(shape, dtype=xh.dtype)
    inner = tuple(slice(lo, lo + s) for s, (lo, _) in zip(xh.shape[lead:-1], pads, strict=True))
    out[ix(Ellipsis, *inner, slice(None))] = xh
    return out


def windows(
    xp: np.ndarray, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int], out: Sequence[int]
) -> np.ndarray:
    """A strided view (N, *S′, C, *k) of the windows of a padded channels-last ``xp`` (N, *Sₚ, C)."""
    nd = len(kernel)
    eff = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True))
    w = sliding_window_view(xp, eff, axis=tuple(range(1, 1 + nd)))  # (N, *positions, C, *eff)
    pos = tuple(slice(0, s * (o - 1) + 1, s) for s, o in zip(stride, out, strict=True))
    taps = tuple(slice(None, None, d) for d in dilation)
    return w[(slice(None), *pos, slice(None), *taps)]


def im2col(
    xp: np.ndarray, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int], out: Sequence[int],
    groups: int = 1,
) -> np.ndarray:
    """The im2col matrix (G, n·∏S′, ∏k·C_g) of a padded channels-last ``xp`` (n, *Sₚ, C): one row per
    window, columns in (tap, channel) order, the channels of group g in X[g]. One copy of the window view."""
    nd = len(kernel)
    n, c = xp.shape[0], xp.shape[-1]
    win = windows(xp, kernel, stride, dilation, out).reshape(n, *out, groups, c // groups, *kernel)
    # (n, *S′, G, C_g, *k) → (G, n, *S′, *k, C_g)
    order = (1 + nd, 0, *range(1, 1 + nd), *range(3 + nd, 3 + 2 * nd), 2 + nd)
    return np.ascontiguousarray(win.transpose(order)).reshape(groups, n * math.prod(out), -1)


def tap_slices(
    taps: Sequence[int], stride: Sequence[int], dilation: Sequence[int], out: Sequence[int]
) -> tuple[slice, ...]:
    """For kernel tap (a, b, …): the input positions it touches across all outputs, per axis."""
    return tuple(
        slice(t * d, t * d + s * (o - 1) + 1, s) for t, s, d, o in zip(taps, stride, dilation, out, strict=True)
    )


def scatter_taps(
    dpatch: np.ndarray, dxp: np.ndarray, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
    out: Sequence[int],
) -> np.ndarray:
    """col2im: the adjoint of ``windows``. Adds ``dpatch`` (…, N, *S′, *k, C) into ``dxp`` (…, N, *Sₚ, C).

    Each input position receives the gradient of every window that read it: one strided add per
    kernel tap. Returns ``dxp``.
    """
    nd = len(kernel)
    for taps in product(*(range(k) for k in kernel)):
        region = tap_slices(taps, stride, dilation, out)
        dxp[ix(Ellipsis, *region, slice(None))] += dpatch[ix(Ellipsis, *(slice(None),) * nd, *taps, slice(None))]
    return dxp


def unpad(dxp: np.ndarray, pads: Sequence[tuple[int, int]], sizes: Sequence[int]) -> np.ndarray:
    """Crop the spatial axes of a channels-last gradient back to the unpadded sizes."""
    if not any(lo or hi for lo, hi in pads):
        return dxp
    inner = tuple(slice(lo, lo + s) for (lo, _), s in zip(pads, sizes, strict=True))
    return dxp[ix(Ellipsis, *inner, slice(None))]
