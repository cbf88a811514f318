"""Where downloaded and generated data live, and writing there safely."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

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
    cache file behind: the data go to a temporary file in the same folder (same file system, so
    ``os.replace`` is atomic) that is renamed into place only once complete.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a cache is ordinary readable data
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
