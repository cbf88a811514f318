"""Checks at the boundary of nablanet.info, and the logarithm in any base.

Every error names what was received, what was expected, and how to fix it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nablanet._validation import as_float_input, check_finite


def check_base(base: Any, who: str) -> float:
    """``base`` as a float b > 0, b ≠ 1 (2: bits, e: nats, 10: hartleys), or a TypeError/ValueError."""
    if isinstance(base, bool) or not isinstance(base, int | float | np.integer | np.floating):
        raise TypeError(
            f"{who}(base={base!r}) got {type(base).__name__}; expected a number > 0 and ≠ 1. "
            "Fix: pass base=2 for bits, base=np.e for nats or base=10."
        )
    b = float(base)
    if not (math.isfinite(b) and b > 0 and b != 1):
        raise ValueError(
            f"{who}(base={base!r}): expected a finite base > 0 and ≠ 1 (log_b x = ln x / ln b, and ln 1 = 0). "
            "Fix: pass base=2 for bits, base=np.e for nats or base=10."
        )
    return b


def log(x: np.ndarray, base: float) -> np.ndarray:
    """log_b x, with NumPy's own log2/log/log10 for the usual bases so that log₂ ½ is exactly −1."""
    if base == 2:
        return np.log2(x)
    if base == math.e:
        return np.log(x)
    if base == 10:
        return np.log10(x)
    return np.log(x) / math.log(base)


def check_axis(axis: Any, ndim: int, name: str, who: str) -> int:
    """``axis`` as a non-negative int naming an axis of an ``ndim``-D array."""
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
        raise TypeError(f"{who}(axis={axis!r}): expected an int naming the axis that holds each distribution, "
                        "e.g. axis=-1 for rows.")
    if ndim == 0:
        raise ValueError(
            f"{who} got a scalar {name}; expected a distribution with at least one axis, e.g. [0.9, 0.1]. "
            "Fix: for a Bernoulli parameter use the binary_ form (binary_entropy(q)), or pass [1 - q, q]."
        )
    if not -ndim <= axis < ndim:
        raise ValueError(f"{who}(axis={axis}) got {name} with {ndim} axes; expected axis in [{-ndim}, {ndim - 1}].")
    return int(axis) % ndim


def _first(mask: np.ndarray) -> tuple[int, tuple[int, ...]]:
    bad = np.argwhere(mask)
    return len(bad), tuple(int(i) for i in bad[0])


def _at(index: tuple[int, ...]) -> str:
    """An index as it is written: [1] or [0, 2]; nothing for a scalar."""
    return "[" + ", ".join(map(str, index)) + "]" if index else ""


def probabilities(x: Any, name: str, who: str, *, upper: float = np.inf) -> np.ndarray:
    """``x`` as a finite float array with every entry in [0, upper] (upper = 1 for Bernoulli parameters)."""
    arr = as_float_input(x, name)
    check_finite(arr, name)
    mask = (arr < 0) | (arr > upper)
    if mask.any():
        count, first = _first(mask)
        expected = "in [0, 1] (the probability of a 1)" if upper == 1 else ">= 0"
        raise ValueError(
            f"{who} got {name}{_at(first)} = {float(arr[first])!r} ({count} of {arr.size} entries out of range); "
            f"expected probabilities "
            f"{expected}. Fix: pass probabilities, e.g. softmax or sigmoid outputs, not scores or logits."
        )
    return arr


def sums_to_one(arr: np.ndarray, axis: int, name: str, who: str, fix: str = "") -> None:
    """Each distribution along ``axis`` sums to 1 within √ε of the dtype (1.5e-8 in float64, 3.5e-4 in float32)."""
    total = arr.sum(axis=axis, dtype=np.float64)
    tol = math.sqrt(np.finfo(arr.dtype).eps)
    mask = np.abs(total - 1) > tol
    if mask.any():
        count, first = _first(np.atleast_1d(mask))
        value = float(np.atleast_1d(total)[first])
        where = ""
        if total.ndim:
            where = f" at index {_at(first)} of the other axes ({count} of {total.size} distributions off)"
        raise ValueError(
            f"{who} got {name} whose entries along axis {axis} sum to {value:.10g}{where}; expected probability "
            f"distributions that sum to 1 (within {tol:.1e}). "
            f"Fix: {fix or f'normalize, {name} = {name} / {name}.sum(axis={axis}, keepdims=True)'}."
        )


def same_shape(q: np.ndarray, p: np.ndarray, who: str) -> None:
    if q.shape != p.shape:
        raise ValueError(
            f"{who} got q.shape={q.shape} and p.shape={p.shape}; expected the same shape (q the true distribution, "
            "p the estimate, entry for entry). Fix: for class labels y use q = np.eye(C)[y]; for a scalar q use "
            "np.full_like(p, q)."
        )


def positive(arr: np.ndarray, name: str, who: str, *, below_one: bool = False) -> None:
    """The open domain of a VJP: every entry > 0 (and < 1 for a Bernoulli parameter)."""
    mask = (arr <= 0) | (arr >= 1) if below_one else arr <= 0
    if mask.any():
        count, first = _first(mask)
        domain = "strictly between 0 and 1" if below_one else "> 0"
        raise ValueError(
            f"{who} got {name}{_at(first)} = {float(arr[first])!r} ({count} such entries); the derivative is "
            f"infinite there, so the VJP needs every entry of {name} {domain}. Fix: differentiate at an interior "
            f"point, e.g. smooth it: {name} = (1 - eps) * {name} + eps / C (label smoothing)."
        )


def cotangent(dh: Any, shape: tuple[int, ...], who: str) -> np.ndarray:
    """``dh`` (∂L/∂h) as a finite float array of the output's shape."""
    arr = as_float_input(dh, "dh")
    check_finite(arr, "dh")
    if arr.shape != shape:
        raise ValueError(
            f"{who} got dh.shape={arr.shape}; expected the shape of the forward's output, {shape} (one ∂L/∂h per "
            "distribution). Fix: pass dh=np.ones(" + str(shape) + ") for the gradient of the sum."
        )
    return arr
