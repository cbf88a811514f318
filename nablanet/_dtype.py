"""Floating-point types.

Parameters are created in the default dtype (float32, as in PyTorch; change it with
``set_default_dtype(np.float64)`` or per layer with ``dtype=``). The rule for inputs of another
dtype: a layer with parameters computes in its parameters' dtype and converts its input to it
(Keras' autocasting; PyTorch raises instead); a layer without parameters keeps a floating input's
dtype and converts any other numeric input (int, bool) to the default dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_default_dtype: np.dtype[Any] = np.dtype(np.float32)


def _as_float_dtype(dtype: Any) -> np.dtype[Any]:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype {dtype!r} is not a NumPy dtype; use np.float32 or np.float64") from exc
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64; got {dt}. Use np.float32 or np.float64.")
    return dt


def set_default_dtype(dtype: Any) -> None:
    """Set the dtype of newly created parameters (float32 or float64)."""
    global _default_dtype
    _default_dtype = _as_float_dtype(dtype)


def get_default_dtype() -> np.dtype[Any]:
    """The dtype newly created parameters get."""
    return _default_dtype


def resolve_dtype(dtype: Any | None) -> np.dtype[Any]:
    """``dtype`` as a float dtype, or the default when ``None``."""
    return _default_dtype if dtype is None else _as_float_dtype(dtype)
