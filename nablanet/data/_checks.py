"""Checks for data handed to the loaders: features, labels, split fractions, paths.

Every error says what was received, what was expected and how to fix it (STYLE.md §6).
"""

from __future__ import annotations

import numbers
import os
from typing import Any

import numpy as np

from nablanet._dtype import get_default_dtype, resolve_dtype
from nablanet._validation import as_numeric_array, check_finite

PathLike = str | os.PathLike[str]


def feature_dtype(dtype: Any) -> np.dtype[Any]:
    """``dtype`` as float32 or float64; ``None`` means the package default."""
    return get_default_dtype() if dtype is None else resolve_dtype(dtype)


def as_features(x: Any, dtype: np.dtype[Any], name: str = "x") -> np.ndarray:
    """``x`` as a finite float array of shape (N, *features) in ``dtype``."""
    arr = as_numeric_array(x, name)
    if arr.ndim < 2:
        raise ValueError(
            f"{name} has shape {arr.shape}; expected (N, *features), one row per sample. "
            f"For one feature per sample pass {name}.reshape(-1, 1)."
        )
    # Checked after the cast so that float64 values too large for float32 (now inf) are caught
    # too; the overflow is reported by check_finite, so numpy's own warning is silenced.
    with np.errstate(over="ignore"):
        out = arr.astype(dtype, copy=False)
    check_finite(out, name)
    return out


def as_labels(y: Any, name: str = "y", n_classes: int | None = None) -> np.ndarray:
    """``y`` as int64 class indices of shape (N,), each in [0, n_classes)."""
    arr = as_numeric_array(y, name)
    if arr.ndim != 1:
        raise ValueError(
            f"{name} has shape {arr.shape}; expected class indices of shape (N,). "
            f"One-hot labels: pass {name}.argmax(axis=1); a column (N, 1): pass {name}.ravel()."
        )
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"{name} holds {int(bad.sum())} non-integer label(s), the first {arr[i]!r} at index "
                f"{i}; expected integer class indices 0..C-1. Map arbitrary labels to indices with "
                f"np.unique({name}, return_inverse=True)[1]."
            )
    labels = arr.astype(np.int64)
    if labels.size and labels.min() < 0:
        i = int(np.argmin(labels))
        raise ValueError(
            f"{name} holds negative label {labels[i]} at index {i}; expected class indices "
            f"0..C-1. Map labels to indices with np.unique({name}, return_inverse=True)[1]."
        )
    if n_classes is not None and labels.size and labels.max() >= n_classes:
        i = int(np.argmax(labels))
        raise ValueError(
            f"{name} holds label {labels[i]} at index {i}, out of range for n_classes={n_classes}; "
            f"expected 0 <= label < {n_classes}. Pass n_classes={labels[i] + 1} or fix the labels."
        )
    return labels


def check_same_length(x: np.ndarray, y: np.ndarray, xname: str = "x", yname: str = "y") -> None:
    """Raise when ``x`` and ``y`` do not hold one label per sample."""
    if len(x) != len(y):
        raise ValueError(
            f"{xname} has {len(x)} samples but {yname} has {len(y)} labels; expected one label per "
            f"sample (len({xname}) == len({yname})). Check that both come from the same rows."
        )


def check_n_classes(n_classes: Any) -> int | None:
    """``n_classes`` as a positive int, or ``None`` (infer from the labels)."""
    if n_classes is None:
        return None
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 1:
        raise ValueError(
            f"n_classes={n_classes!r}; expected a positive int such as 10, "
            "or None to infer it as max(label) + 1"
        )
    return int(n_classes)


def check_fraction(value: Any, name: str) -> float:
    """``value`` as a float in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name}={value!r} ({type(value).__name__}); expected a fraction of the samples, "
            f"a float in [0, 1) such as {name}=0.1"
        )
    v = float(value)
    if not 0.0 <= v < 1.0:  # also false for NaN
        raise ValueError(
            f"{name}={value!r} is not a fraction in [0, 1); expected e.g. {name}=0.1 for 10 % of "
            f"the samples, or {name}=0 for no {name} split"
        )
    return v


def check_fractions(validation: Any, test: Any) -> tuple[float, float]:
    """Both fractions in [0, 1) and leaving some training data."""
    v, t = check_fraction(validation, "validation"), check_fraction(test, "test")
    if v + t >= 1.0:
        raise ValueError(
            f"validation={v} + test={t} = {v + t:g} leaves no training data; expected a sum "
            "below 1, e.g. validation=0.1, test=0.2"
        )
    return v, t
