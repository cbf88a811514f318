"""scikit-learn's 8×8 handwritten digits: 1,797 images, 10 classes, bundled with scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np

from nablanet._random import RNGLike
from nablanet.data.splits import Splits, make_splits


def load_digits(
    *,
    seed: RNGLike = 0,
    validation: float = 0.1,
    test: float = 0.2,
    stratify: bool = True,
    flatten: bool = True,
    dtype: Any = np.float32,
) -> Splits:
    """The digits as Splits: pixels divided by 16 into [0, 1]; x (N, 64), or (N, 1, 8, 8).

    The split is stratified by class and fixed by ``seed``: with the defaults, 1,258 train, 180
    validation and 359 test images.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError as exc:  # scikit-learn is an optional dependency (the "data" extra)
        raise ImportError(
            "load_digits needs scikit-learn, which is not installed. "
            "Fix: pip install scikit-learn (or pip install 'nablanet[data]')."
        ) from exc
    bunch = sklearn_load_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0  # pixel values are counts 0..16
    if not flatten:
        x = x.reshape(-1, 1, 8, 8)
    return make_splits(
        x,
        bunch.target,
        validation=validation,
        test=test,
        seed=seed,
        stratify=stratify,
        name="digits",
        dtype=dtype,
        n_classes=10,
    )
