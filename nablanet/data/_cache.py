"""Where downloaded and generated data live, and writing there safely."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from nablanet._io import atomic_savez
from nablanet.data._checks import PathLike

CACHE_ENV = "NABLANET_CACHE"


def get_cache_dir(cache_dir: PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir`` if given, else ``$NABLANET_CACHE``, else ``~/.cache/nablanet``.

    The folder is created when something is first written there, not here.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "nablanet"


def save_npz_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` so that a reader sees either the old file or the whole new one.

    A crash or a second process writing at the same time can then never leave a half-written
    cache file behind (see ``nablanet._io``); the file gets the user's umask like any other.
    """
    atomic_savez(path, arrays, what="the cache file")
