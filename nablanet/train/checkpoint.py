"""Model files: architecture as JSON plus arrays, in one ``.npz`` that never needs pickle.

Layout of the archive (read with ``allow_pickle=False``, so a file from the internet cannot run
code): ``__meta__`` holds UTF-8 JSON — format version, the architecture (class names and
constructor arguments from ``get_config``), the optimizer's class and non-array state, and
``extra`` — and every array is an entry of its own: ``model/<state_dict key>`` and
``optimizer/<param index>/<name>``. Files are written to a temporary file beside the target and
renamed into place, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nablanet.layers import attention as _attention  # noqa: F401  (imported so that load finds these classes)
from nablanet.layers import bilinear as _bilinear  # noqa: F401
from nablanet.layers.base import Layer
from nablanet.layers.graph import Container
from nablanet.layers.sequential import Sequential

FORMAT = "nablanet-model"
VERSION = 1


def _arch(layer: Layer) -> dict[str, Any]:
    """The architecture as JSON. Three shapes of entry:

    * ``{"class": "Sequential", "layers": [...]}`` (the original format, unchanged);
    * ``{"class": "Residual", "config": {...}, "children": [...]}`` for any other container whose
      children are constructor arguments (``Residual``, ``Parallel``, ``Multiply``, ``Pair``);
    * ``{"class": "Linear", "config": {...}}`` for a layer its config rebuilds whole, sub-layers
      included (``MultiheadAttention`` creates its ``out_proj``).
    """
    if isinstance(layer, Sequential):
        return {"class": "Sequential", "layers": [_arch(child) for child in layer]}
    if isinstance(layer, Container) and not layer.builds_own_children:
        return {"class": type(layer).__name__, "config": layer.get_config(),
                "children": [_arch(child) for child in layer.children()]}
    if layer._modules and not (isinstance(layer, Container) and layer.builds_own_children):
        raise TypeError(
            f"save: {type(layer).__name__} has sub-layers but is not a nablanet container (Sequential, Residual, "
            "Parallel, ...), so its architecture cannot be written; compose it from those containers instead."
        )
    return {"class": type(layer).__name__, "config": layer.get_config()}


def _layer_classes() -> dict[str, type[Layer]]:
    """Every Layer subclass defined inside nablanet, by class name (only these can be loaded)."""
    found: dict[str, type[Layer]] = {}
    stack: list[type[Layer]] = [Layer]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("nablanet.") and not sub.__name__.startswith("_"):
                found.setdefault(sub.__name__, sub)
            stack.append(sub)
    return found


def _build(arch: dict[str, Any], classes: dict[str, type[Layer]]) -> Layer:
    name = arch.get("class")
    if name == "Sequential":
        return Sequential(*[_build(a, classes) for a in arch.get("layers", [])])
    if name not in classes:
        raise ValueError(f"the model file names a layer class {name!r} that nablanet does not have")
    cls = classes[name]
    kwargs = dict(arch.get("config", {}))
    if "children" in arch:
        if not issubclass(cls, Container) or cls.builds_own_children:
            raise ValueError(f"the model file gives children to {name!r}, which is not a container that takes them")
        return cls.from_children([_build(a, classes) for a in arch["children"]], kwargs)
    if "rng" in inspect.signature(cls.__init__).parameters:
        kwargs["rng"] = np.random.default_rng(0)  # the weights are loaded next; keep the global generator untouched
    return cls(**kwargs)


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(
    model: Layer, path: str | os.PathLike[str], optimizer: Any = None, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` (and ``optimizer``'s state, so training resumes) to ``path`` atomically.

    ``extra`` is any JSON-serializable dict (epoch, metrics). Returns the path written.
    """
    p = Path(path)
    meta: dict[str, Any] = {"format": FORMAT, "version": VERSION, "model": _arch(model), "extra": extra or {}}
    arrays: dict[str, np.ndarray] = {f"model/{k}": v for k, v in model.state_dict().items()}
    if optimizer is not None:
        sd = optimizer.state_dict()
        meta["optimizer"] = {
            "class": type(optimizer).__name__,
            **{k: v for k, v in sd.items() if k != "state"},
            "state_keys": {str(i): sorted(s) for i, s in sd["state"].items()},
        }
        for i, entries in sd["state"].items():
            for name, arr in entries.items():
                arrays[f"optimizer/{i}/{name}"] = np.asarray(arr)
    try:
        text = json.dumps(meta)
    except TypeError as exc:
        raise TypeError(f"save: extra and the optimizer's hyperparameters must be JSON-serializable ({exc})") from exc
    arrays["__meta__"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    _atomic_savez(p, arrays)
    return p


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns: the model, the optimizer state (for
    ``optimizer.load_state_dict``; ``None`` if none was saved), the optimizer's class name, and extra."""

    model: Layer
    optimizer_state: dict[str, Any] | None
    optimizer_class: str | None
    extra: dict[str, Any]


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a file written by ``save``. Never unpickles; a corrupt file gives a ValueError."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no model file at {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        raise ValueError(
            f"{p} is not a readable nablanet model file (truncated, corrupt, or holding pickled objects, "
            f"which are refused): {exc}"
        ) from exc
    if "__meta__" not in arrays:
        raise ValueError(f"{p} is an .npz file but not a nablanet model file (no __meta__ entry)")
    try:
        meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: the architecture entry is not valid JSON ({exc})") from exc
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        got = f"format {meta.get('format')!r} version {meta.get('version')!r}"
        raise ValueError(f"{p}: {got}; expected {FORMAT} v{VERSION}")
    model = _build(meta["model"], _layer_classes())
    model.load_state_dict({k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")})
    opt_state = None
    opt_meta = meta.get("optimizer")
    if opt_meta is not None:
        state = {
            int(i): {name: arrays[f"optimizer/{i}/{name}"] for name in names}
            for i, names in opt_meta["state_keys"].items()
        }
        opt_state = {k: v for k, v in opt_meta.items() if k not in ("class", "state_keys")}
        opt_state["state"] = state
    return Checkpoint(model, opt_state, None if opt_meta is None else opt_meta["class"], meta.get("extra", {}))


def load(path: str | os.PathLike[str]) -> Layer:
    """The model saved at ``path`` (see ``load_checkpoint`` for the optimizer state)."""
    return load_checkpoint(path).model
