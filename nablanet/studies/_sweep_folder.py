"""A sweep's output folder: checked before anything runs, claimed for one study, made only once the
sweep can start (a sweep that cannot connect or cannot write leaves nothing behind)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from nablanet._io import atomic_write_text


def _problem(out: Path) -> str | None:
    """Why ``out`` cannot become a sweep folder; None if it can. Creates nothing that stays: whether
    a folder takes files is found by making a folder in it and removing it at once (``os.access``
    says yes to root on a read-only file system)."""
    for path in (out / "cells", out):
        if path.exists() and not path.is_dir():
            return f"{str(path)!r} is a file, not a folder"
    existing = out
    while not existing.exists():
        if existing.is_symlink():
            return f"{str(existing)!r} is a link to nothing"
        existing = existing.parent
    if not existing.is_dir():
        return f"{str(existing)!r} is a file, not a folder"
    for folder in (existing, out / "cells"):
        if folder.is_dir():
            try:
                os.rmdir(tempfile.mkdtemp(prefix=".nablanet-probe-", dir=folder))
            except OSError as exc:
                return f"cannot write in {str(folder)!r} ({exc.strerror or exc})"
    return None


def check_writable(out: Path, origin: str, fix: str) -> None:
    """A ``ValueError`` naming ``out`` (as ``origin`` names it: "out", "--out") and ``fix`` when it
    cannot hold the sweep's files."""
    problem = _problem(out)
    if problem is not None:
        raise ValueError(f"the sweep's out folder {str(out)!r} ({origin}) cannot be written: {problem}; {fix}")


def check_claim(out: Path, study: str) -> None:
    """Refuse a folder that holds another study's sweep (reads only)."""
    path = out / "sweep.json"
    if path.is_file():
        held = json.loads(path.read_text()).get("study")
        if held != study:
            raise ValueError(f"{out} holds a sweep of study {held!r}, not {study!r}; choose another out folder")


def prepare(out: Path, meta: dict[str, Any], origin: str, fix: str) -> None:
    """Make ``out/cells``, record what the folder holds (sweep.json) and remove the temporary folders
    of cells that were in flight when a run was killed."""
    try:
        (out / "cells").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"the sweep's out folder {str(out)!r} ({origin}) cannot be written: {exc.strerror}; "
                         f"{fix}") from None
    atomic_write_text(out / "sweep.json", json.dumps(meta, indent=2, default=str), what="the sweep's sweep.json")
    for tmp in (out / "cells").glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
