"""Which samples go into which mini-batch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def batch_indices(
    n: int, batch_size: int | None, *, shuffle: bool = True, rng: np.random.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[np.ndarray]:
    """Index arrays that cover 0…n−1 once: ``batch_size=None`` is full batch, 1 is online SGD.

    With ``shuffle`` the order is a permutation drawn from ``rng`` (required then).
    """
    if batch_size is None:
        batch_size = n
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(
            f"batch_size={batch_size!r}: expected a positive int (1 = online SGD) or None (full batch)"
        )
    if shuffle:
        if rng is None:
            raise ValueError("batch_indices(shuffle=True) needs rng=np.random.default_rng(seed)")
        order = rng.permutation(n)
    else:
        order = np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]
