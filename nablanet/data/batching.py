"""Mini-batches over arrays: one call is one epoch."""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np

from nablanet._random import RNGLike, get_rng
from nablanet.data._checks import check_same_length


def batches(
    x: Any,
    y: Any,
    batch_size: int | None,
    *,
    shuffle: bool = True,
    rng: RNGLike = None,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(xb, yb)`` pairs that together cover every sample once (one epoch).

    batch_size: samples per batch; ``None`` gives one full batch (full-batch gradient descent),
        1 gives online learning. The last batch is smaller when N is not a multiple, unless
        ``drop_last`` drops it.
    shuffle: visit samples in a random order drawn from ``rng``; otherwise in index order
        (then the batches are views of x and y, not copies).
    rng: a Generator (successive epochs get different orders as it advances), an int seed (the
        same order every call) or ``None`` (the global generator that ``manual_seed`` resets).

    Arguments are checked when ``batches`` is called, not at the first ``next``.
    """
    xs, ys = np.asarray(x), np.asarray(y)
    if xs.ndim == 0 or ys.ndim == 0:
        raise ValueError(
            f"batches got x.shape={xs.shape}, y.shape={ys.shape}; expected arrays with a sample "
            "axis first, e.g. x (N, features) and y (N,)"
        )
    check_same_length(xs, ys)
    n = len(xs)
    if batch_size is None:
        size = max(n, 1)
    elif isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(
            f"batch_size={batch_size!r} ({type(batch_size).__name__}); expected a positive int, "
            "or None for one full batch"
        )
    elif batch_size < 1:
        raise ValueError(
            f"batch_size={batch_size}; expected a positive int (1 for online learning), "
            "or None for one full batch"
        )
    else:
        size = int(batch_size)
    if drop_last and size > n:
        raise ValueError(
            f"batch_size={size} with drop_last=True over {n} samples yields no batch at all; "
            f"expected batch_size <= {n}. Use a smaller batch_size or drop_last=False."
        )
    order = get_rng(rng).permutation(n) if shuffle else None
    return _iterate(xs, ys, size, order, drop_last)


def _iterate(
    x: np.ndarray, y: np.ndarray, size: int, order: np.ndarray | None, drop_last: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    n = len(x)
    stop = n - n % size if drop_last else n
    for start in range(0, stop, size):
        if order is None:
            yield x[start : start + size], y[start : start + size]
        else:
            idx = order[start : start + size]
            yield x[idx], y[idx]
