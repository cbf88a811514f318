"""MNIST-1D (Greydanus 2020): 5,000 one-dimensional signals of length 40, 10 classes.

The data are regenerated offline with the ``mnist1d`` package (``make_dataset`` with its default
arguments, seed 42, about a second) and never downloaded: its ``get_dataset`` would fetch a pickle
over the network, and unpickling a downloaded file can run arbitrary code. The generated arrays
are cached as ``<cache>/mnist1d-<hash of the arguments>.npz`` (written atomically, read with
``allow_pickle=False``), so later loads need neither the package nor the second.
"""

from __future__ import annotations

import hashlib
import json
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from nablanet._io import atomic_savez
from nablanet._random import RNGLike
from nablanet.data._cache import cache_origin, get_cache_dir, writable_folder
from nablanet.data._checks import PathLike
from nablanet.data.splits import Splits, make_splits

_KEYS = ("x", "y", "x_test", "y_test", "t")


# mnist1d 0.0.2's default arguments, pinned: the cache key is their hash, and a future mnist1d
# with other defaults still regenerates the same, standard data set.
_ARGS: dict[str, Any] = {
    "num_samples": 5000,
    "train_split": 0.8,
    "template_len": 12,
    "padding": [36, 60],
    "scale_coeff": 0.4,
    "max_translation": 48,
    "corr_noise_scale": 0.25,
    "iid_noise_scale": 2e-2,
    "shear_scale": 0.75,
    "shuffle_seq": False,
    "final_seq_length": 40,
    "seed": 42,
}
_KEY = hashlib.sha256(json.dumps(_ARGS, sort_keys=True).encode()).hexdigest()[:12]


def _generate() -> dict[str, np.ndarray]:
    """The arrays of ``make_dataset(get_dataset_args())`` (with the pinned arguments)."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:  # an optional dependency (the "data" extra)
        raise ImportError(
            "load_mnist1d needs the mnist1d package to generate the data the first time. "
            "Fix: pip install mnist1d (or pip install 'nablanet[data]')."
        ) from exc
    args = get_dataset_args()
    vars(args).update(_ARGS)
    # make_dataset reseeds the global `random` and `np.random` generators (set_seed(42));
    # restore them so that loading data does not change the caller's random streams.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {k: np.asarray(data[k]) for k in _KEYS}


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when the file is absent or unusable (then it is regenerated)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in _KEYS}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None
    if arrays["x"].shape[1:] != arrays["x_test"].shape[1:] or len(arrays["x"]) != len(arrays["y"]):
        return None
    return arrays


def mnist1d_arrays(cache_dir: PathLike | None = None) -> dict[str, np.ndarray]:
    """The MNIST-1D arrays: x (4000, 40), y (4000,), x_test (1000, 40), y_test (1000,), t (40,).

    Read from the cache, or generated with mnist1d and cached. ``t`` is the signal's time axis
    (for plotting).
    """
    path = get_cache_dir(cache_dir) / f"mnist1d-{_KEY}.npz"
    arrays = _read_cache(path)
    if arrays is None:
        writable_folder(path.parent, "the generated MNIST-1D arrays", cache_origin(cache_dir))
        arrays = _generate()
        atomic_savez(path, arrays, what="the generated MNIST-1D arrays")
    return arrays


def load_mnist1d(
    *,
    seed: RNGLike = 0,
    validation: float = 0.1,
    stratify: bool = True,
    flatten: bool = True,
    dtype: Any = np.float32,
    cache_dir: PathLike | None = None,
) -> Splits:
    """MNIST-1D as Splits; x (N, 40), or (N, 1, 40) if not ``flatten`` (for Conv1d).

    The standard split is kept: test is the official 1,000 signals, and ``validation`` of the
    4,000 training signals are held out (stratified, by ``seed``): 3,600 / 400 / 1,000 by default.
    The signals are already standardised by mnist1d (mean 0, std 1 over the whole set).
    cache_dir: where the generated arrays are kept; default ``$NABLANET_CACHE`` or
    ``~/.cache/nablanet``.
    """
    a = mnist1d_arrays(cache_dir)
    x, x_test = a["x"], a["x_test"]
    if not flatten:
        x, x_test = x[:, None], x_test[:, None]
    return make_splits(
        x,
        a["y"],
        validation=validation,
        test=0.0,
        seed=seed,
        stratify=stratify,
        name="mnist1d",
        dtype=dtype,
        n_classes=10,
        x_test=x_test,
        y_test=a["y_test"],
    )
