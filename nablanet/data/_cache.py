"""Where downloaded and generated data live, and making sure that folder can be written."""

from __future__ import annotations

import os
from pathlib import Path

from nablanet._io import folder_problem
from nablanet.data._checks import PathLike

CACHE_ENV = "NABLANET_CACHE"
DEFAULT_CACHE = Path("~/.cache/nablanet")


def get_cache_dir(cache_dir: PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir`` if given, else ``$NABLANET_CACHE``, else ``~/.cache/nablanet``.

    The folder is created when something is first written there, not here.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return DEFAULT_CACHE.expanduser()


def cache_origin(cache_dir: PathLike | None = None) -> str:
    """Where ``get_cache_dir(cache_dir)`` took its path from, for error messages."""
    if cache_dir is not None:
        return f"cache_dir={str(cache_dir)!r}"
    if os.environ.get(CACHE_ENV):
        return f"${CACHE_ENV}={os.environ[CACHE_ENV]!r}"
    return f"the default cache folder {DEFAULT_CACHE} (${CACHE_ENV} is not set)"


def writable_folder(folder: Path, what: str, origin: str) -> Path:
    """Create ``folder`` if needed, after checking that it can be written; return it.

    The error names the folder, where its path came from (``origin``: a flag, an argument or
    ``$NABLANET_CACHE``) and how to move it, instead of a bare errno.
    """
    problem = folder_problem(folder)
    if problem is None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = f"cannot create it ({exc.strerror or exc})"
    if problem is not None:
        fix = (f"set {CACHE_ENV} to a folder you can write to" if CACHE_ENV in origin
               else f"give {origin.partition('=')[0]} a folder you can write to")
        raise OSError(f"cannot write {what} to {folder}: {problem}; that folder comes from {origin}. Fix: {fix}")
    return folder
