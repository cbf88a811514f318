"""Where downloaded and generated data live, and making sure that folder can be written."""

from __future__ import annotations

import os
from pathlib import Path

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
    """Create ``folder`` if needed and check that it can be written; return it.

    The error names the folder, where its path came from (``origin``: a flag, an argument or
    ``$NABLANET_CACHE``) and how to move it, instead of a bare errno.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        reason = "a file has that name" if isinstance(exc, FileExistsError) else (exc.strerror or str(exc))
        fix = (f"set {CACHE_ENV} to a folder you can write to" if CACHE_ENV in origin
               else f"give {origin.partition('=')[0]} a folder you can write to")
        err = type(exc)(f"cannot write {what} to {folder} ({reason}); that folder comes from {origin}. Fix: {fix}")
        err.errno = exc.errno
        raise err from None
    return folder
