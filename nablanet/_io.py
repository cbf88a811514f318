"""Writing files so that a reader sees the old file or the whole new one, never half of one.

Every file nablanet writes (model files, histories, records, reports, caches) goes through
``atomic_write``: the bytes go to ``.<name>.<pid>-<random>.part`` in the destination's folder
(the same file system, so ``os.replace`` is atomic), are flushed to disk, get the permissions
an ordinary ``open(path, "w")`` would give (0o666 less the user's umask; ``mkstemp`` alone
gives 0600), and only then are renamed into place. A write killed with SIGKILL leaves its
``.part`` behind; the next write of the same name removes the ones whose process is gone.

Errors name the destination the user asked for, never the temporary path, and say what to do.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

PathLike = str | os.PathLike[str]


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no read-only query elsewhere: set and restore at once
    os.umask(mask)
    return mask


def _part_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(name)}\.(\d+)-[0-9a-f]+\.part$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_parts(path: PathLike) -> list[Path]:
    """Delete the ``.part`` files left for ``path`` by writers that no longer run; return them."""
    target = Path(path)
    pattern = _part_pattern(target.name)
    removed: list[Path] = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if m and not _alive(int(m.group(1))):
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    return removed


def folder_problem(folder: PathLike) -> str | None:
    """Why ``folder`` cannot be, or be made into, a folder that takes files; None when it can.

    Checked before any work, so that a run is refused at once rather than after it has trained.
    Creates nothing that stays: the nearest existing folder on the way is probed by making a folder
    in it and removing it at once (``os.access`` says yes to root on a read-only file system).
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a folder"
    existing = path
    while not existing.exists():
        if existing.is_symlink():
            return f"{existing} is a link to nothing"
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".nablanet-probe-", dir=existing))
    except OSError as exc:
        return f"cannot write in {existing} ({exc.strerror or exc})"
    return None


def _check_destination(target: Path, what: str) -> None:
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {what} to {str(target)!r}: it is a folder; give a file name inside "
                                f"it, e.g. {str(target / 'model.npz')!r}")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"cannot write {what} to {str(target)!r}: {str(parent)!r} is a file, not "
                                         "a folder; choose another path")
            break


def _mkdir(folder: Path, target: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot create the folder {str(folder)!r} for {what} {str(target)!r} "
                        f"({exc.strerror}); choose a folder you can write to") from None


def atomic_write(path: PathLike, write: Callable[[IO[bytes]], Any], *, what: str = "the file") -> Path:
    """Call ``write(f)`` on a temporary binary file, then rename it to ``path``; return the path.

    ``what`` names the file in error messages ("the model", "the history").
    """
    target = Path(path)
    _check_destination(target, what)
    folder = target.parent
    _mkdir(folder, target, what)
    remove_stale_parts(target)
    tmp = folder / f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.part"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write {what} to {str(target)!r} ({exc.strerror}); choose a folder "
                        "you can write to") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_bytes(path: PathLike, data: bytes, *, what: str = "the file") -> Path:
    return atomic_write(path, lambda f: f.write(data), what=what)


def atomic_write_text(path: PathLike, text: str, *, what: str = "the file") -> Path:
    """Write UTF-8 text (newlines as given: CSV writers choose their own)."""
    return atomic_write_bytes(path, text.encode("utf-8"), what=what)


def atomic_savefig(path: PathLike, fig: Any, *, what: str = "the figure", **savefig: Any) -> Path:
    """A matplotlib figure saved to ``path``, atomically; the format comes from the suffix (PNG without one)."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, **savefig), what=what)


def atomic_savez(path: PathLike, arrays: Mapping[str, np.ndarray], *, what: str = "the arrays") -> Path:
    """``np.savez`` to ``path``, atomically (the name is kept as given: no ``.npz`` is appended)."""
    return atomic_write(path, lambda f: np.savez(f, **arrays), what=what)  # type: ignore[arg-type]
