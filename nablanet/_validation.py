"""Checks at the user boundary: each error says what was received, what was expected, how to fix."""

from __future__ import annotations

from typing import Any

import numpy as np

from nablanet._dtype import get_default_dtype


def a_type(value: Any) -> str:
    """The type of ``value`` with its article, for messages: "a list", "an int", "an object"."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def as_numeric_array(x: Any, name: str = "x") -> np.ndarray:
    """``x`` as an ndarray of a numeric (bool, int or float) dtype, or a TypeError."""
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise TypeError(
            f"{name} could not be turned into a numeric array ({exc}); "
            "pass a NumPy array of numbers with a regular shape"
        ) from exc
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} has dtype {arr.dtype} ({type(x).__name__}); expected numbers (float, int or bool). "
            "Convert it first, e.g. np.asarray(x, dtype=np.float32)."
        )
    return arr


def as_float_input(x: Any, name: str = "x") -> np.ndarray:
    """A numeric array in a floating dtype: floats keep theirs, ints/bools get the default dtype."""
    arr = as_numeric_array(x, name)
    if arr.dtype.kind != "f":
        arr = arr.astype(get_default_dtype())
    elif arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64 if arr.dtype.itemsize > 8 else np.float32)
    return arr


def check_finite(x: np.ndarray, name: str = "x") -> None:
    """Raise a ValueError naming the first NaN/inf entry of ``x``."""
    if x.dtype.kind != "f" or x.size == 0:
        return
    if x.size <= 65536:  # small: one mask is cheaper than two reductions
        if np.isfinite(x).all():
            return
    elif x.flags.c_contiguous and _square_sum_is_finite(x.reshape(-1)):
        return
    # min and max propagate NaN and reveal ±inf without allocating a mask as large as x
    elif np.isfinite(x.min()) and np.isfinite(x.max()):
        return
    bad = np.argwhere(~np.isfinite(x))
    first = tuple(int(i) for i in bad[0])
    raise ValueError(
        f"{name} contains {len(bad)} NaN/inf value(s), the first at index {first} "
        f"(value {x[first]}); expected finite numbers. Clean or impute the data first, "
        "e.g. x = np.nan_to_num(x) or drop those rows."
    )


def _square_sum_is_finite(flat: np.ndarray) -> bool:
    """Σx² is finite only if every x is: a NaN or ±inf makes it NaN or inf, and no term is
    negative to cancel an inf. One multithreaded BLAS pass; an overflow from large finite values
    answers False, and the caller then runs the exact test."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.dot(flat, flat)))


def check_rank(x: np.ndarray, min_ndim: int, who: str, expected: str) -> None:
    """Raise a ValueError when ``x`` has fewer than ``min_ndim`` axes."""
    if x.ndim < min_ndim:
        raise ValueError(
            f"{who} got x.shape={x.shape} ({x.ndim}-D); expected {expected}. "
            "For a single sample add a batch axis: x[None]."
        )
