"""A sweep's output folder: checked before anything runs, claimed for one study, made only once the
sweep can start (a sweep that cannot connect or cannot write leaves nothing behind)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from nablanet._io import atomic_write_text, folder_problem


def check_writable(out: Path, origin: str, fix: str) -> None:
    """A ``ValueError`` naming ``out`` (as ``origin`` names it: "out", "--out") and ``fix`` when it
    cannot hold the sweep's files."""
    problem = folder_problem(out / "cells")
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
