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
from numpy.lib.stride_tricks import as_strided, sliding_window_view


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


def rows_contiguous(xp: np.ndarray) -> bool:
    """Whether the last spatial axis and the channels of a channels-last ``xp`` (N, *S, C) are
    adjacent in memory, so that consecutive positions' channel runs form one contiguous run."""
    s, c, item = xp.strides, xp.shape[-1], xp.itemsize
    return (s[-1] == item and s[-2] == c * item) or (c == 1 and s[-2] == item)


def window_rows(
    xp: np.ndarray, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int], out: Sequence[int]
) -> np.ndarray | None:
    """The windows of a padded channels-last ``xp`` (N, *Sₚ, C) as a read-only strided view
    (N, *S′, k₁, …, k_{d−1}, k_d·C): taps outer and channels inner, the order of the im2col
    columns, with the last kernel axis and the channels merged into one run of k_d·C contiguous
    values (one window row along the last axis). Copying it into an (N·∏S′, ∏k·C) buffer is the
    whole im2col, with inner loops k_d times longer than a copy tap by tap or channel by channel.
    None when the layout does not allow it: a dilated last axis, or a last spatial axis and a
    channel axis that are not adjacent in memory.
    """
    nd, item = len(kernel), xp.itemsize
    s = xp.strides
    if dilation[-1] != 1 or not rows_contiguous(xp):
        return None
    c = xp.shape[-1]
    shape = (xp.shape[0], *out, *kernel[:-1], kernel[-1] * c)
    strides = (s[0], *(s[1 + a] * stride[a] for a in range(nd)), *(s[1 + a] * dilation[a] for a in range(nd - 1)), item)
    return as_strided(xp, shape, strides, writeable=False)


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
    kernel tap. When the last axis is undilated, the taps along it touch consecutive positions, so
    the adds go one output position at a time instead, each moving k·C contiguous values (longer
    inner loops, fewer passes). Returns ``dxp``.
    """
    nd = len(kernel)
    c = dpatch.shape[-1]
    if dilation[-1] == 1 and kernel[-1] * c >= 64 and out[-1] <= 4 * kernel[-1] * max(1, math.prod(kernel[:-1])):
        # dpatch[…, p_1..p_{d-1}, p_d, t_1..t_{d-1}, :, :] → dxp[…, region(t_1..t_{d-1}), s·p_d : s·p_d + k_d, :]
        for taps in product(*(range(k) for k in kernel[:-1])):
            region = tap_slices(taps, stride[:-1], dilation[:-1], out[:-1])
            for p in range(out[-1]):
                src = dpatch[ix(Ellipsis, *(slice(None),) * (nd - 1), p, *taps, slice(None), slice(None))]
                lo = p * stride[-1]
                dxp[ix(Ellipsis, *region, slice(lo, lo + kernel[-1]), slice(None))] += src
        return dxp
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
