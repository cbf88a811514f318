"""Reading a model file's arrays and its JSON entry, trusting nothing in them.

A model file may come from anywhere, so every entry is checked before it is used: the file must
be a zip (``.npz``) archive, each member an ``.npy`` array whose header is read first (an object
dtype, which would need pickle, is refused; a header claiming more bytes than the member holds is
refused before anything that size is allocated), and the JSON must be an object nested no deeper
than ``MAX_DEPTH``. Every error is a ValueError that names the file, says what was found and
what a model file holds; none repeats NumPy's advice to load with pickle.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

MAX_DEPTH = 200
"""How deeply the JSON entry may nest (a Sequential level takes two): far beyond real models,
well inside Python's recursion limit."""

_WHAT = "a nablanet model file is the .npz archive that nn.save writes"


def _member(z: zipfile.ZipFile, info: zipfile.ZipInfo, p: Path) -> np.ndarray:
    key = info.filename[: -len(".npy")]
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"entry {key!r} is an .npy array of format version {version}, which nn.save never writes")
        if dtype.hasobject:
            raise ValueError(
                f"entry {key!r} holds pickled objects, which are refused (unpickling a file can run any code)"
            )
        claimed = math.prod(shape) * dtype.itemsize
        if claimed > info.file_size:
            raise ValueError(
                f"entry {key!r} claims shape {shape} ({claimed:,} bytes) but holds only {info.file_size:,} bytes"
            )
    with z.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def read_arrays(p: Path) -> dict[str, np.ndarray]:
    """Every array in the model file at ``p``, by entry name (``.npy`` dropped)."""
    if not p.exists():
        raise FileNotFoundError(f"no model file at {p}")
    if p.is_dir():
        raise IsADirectoryError(
            f"{str(p)!r} is a folder, not a model file; pass the model file inside it, e.g. {str(p / 'model.npz')!r}"
        )
    with open(p, "rb") as f:
        head = f.read(6)
    if head.startswith(b"\x93NUMPY"):
        raise ValueError(
            f"{p} is a single NumPy array (.npy), not a nablanet model file; {_WHAT}. "
            f"To read the array itself use np.load({str(p)!r})."
        )
    if not head.startswith(b"PK"):
        raise ValueError(
            f"{p} is not a nablanet model file: it is not an .npz (zip) archive (it begins with {head!r}); "
            f"{_WHAT}. Check the path, or save the model again."
        )
    try:
        with zipfile.ZipFile(p) as z:
            out: dict[str, np.ndarray] = {}
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"entry {info.filename!r} is not an .npy array")
                out[info.filename[: -len(".npy")]] = _member(z, info, p)
            return out
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, zlib.error) as exc:
        raise ValueError(
            f"{p} is not a readable nablanet model file (truncated, corrupt, or holding pickled objects, "
            f"which are refused): {exc}. Save the model again, or use a copy you trust."
        ) from exc


def _depth(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (iteratively: a deep value cannot crash it)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:
                stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def read_meta(raw: np.ndarray | None, p: Path, fmt: str, version: int) -> dict[str, Any]:
    """The ``__meta__`` entry as a checked dict: format, version and a ``model`` entry present."""
    if raw is None:
        raise ValueError(f"{p} is an .npz file but not a nablanet model file (no __meta__ entry); {_WHAT}")
    damaged = "The file is damaged or was edited; save the model again."
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{p}: the __meta__ entry is a {raw.dtype} array of shape {raw.shape}; expected UTF-8 "
                         f"bytes (uint8, 1-D). {damaged}")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: the architecture entry is not valid JSON ({exc}). {damaged}") from exc
    except RecursionError:
        raise ValueError(f"{p}: the __meta__ JSON nests deeper than nablanet reads (at most {MAX_DEPTH} "
                         f"levels). {damaged}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{p}: the __meta__ entry holds a JSON {type(meta).__name__}; expected an object with "
                         f"'format', 'version' and 'model'. {damaged}")
    if meta.get("format") != fmt or meta.get("version") != version:
        got = f"format {meta.get('format')!r} version {meta.get('version')!r}"
        raise ValueError(f"{p}: {got}; expected {fmt} v{version}")
    if "model" not in meta:
        raise ValueError(f"{p}: the __meta__ entry has no 'model' (the architecture); it holds {sorted(meta)}. "
                         f"{damaged}")
    depth = _depth(meta)
    if depth > MAX_DEPTH:
        raise ValueError(f"{p}: the __meta__ JSON nests more than {MAX_DEPTH} levels deep; nablanet reads at most "
                         f"{MAX_DEPTH} (a real model needs far fewer). {damaged}")
    return meta
