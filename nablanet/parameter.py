"""A trainable array and its gradient."""

from __future__ import annotations

from typing import Any

import numpy as np


class Parameter:
    """A trainable array ``data`` and the gradient ``grad`` that backward accumulates into it.

    Optimizers read ``grad`` and update ``data`` in place, so a model and its optimizer always
    share the same arrays. ``grad`` is ``None`` until the first backward (as in PyTorch).
    """

    __slots__ = ("data", "grad")

    def __init__(self, data: np.ndarray) -> None:
        # A scalar (np.float32(1.0), 1.0) becomes a 0-d array: the optimizers update data in place.
        self.data: np.ndarray = data if isinstance(data, np.ndarray) else np.asarray(data)
        self.grad: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.data.dtype

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if dtype is None and not copy:
            return self.data
        return np.array(self.data, dtype=dtype, copy=True)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"
