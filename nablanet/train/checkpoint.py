"""Model files: architecture as JSON plus arrays, in one ``.npz`` that never needs pickle.

Layout of the archive (read with ``allow_pickle=False``, so a file from the internet cannot run
code): ``__meta__`` holds UTF-8 JSON — format version, the architecture (class names and
constructor arguments from ``get_config``), the optimizer's class and non-array state, the
callbacks' states, the history, and ``extra`` — and every array is an entry of its own:
``model/<state_dict key>``, ``optimizer/<param index>/<name>`` and ``callbacks/<i>/<key>``.
Files are written through ``nablanet._io.atomic_savez`` (a temporary file beside the target,
renamed into place), so a crash never leaves a half-written model.

A callback's state (``cb.state_dict()``) is a dict whose values are JSON values or NumPy arrays,
nested in dicts and lists as the callback likes; each array becomes its own entry and the JSON
holds ``{"__array__": "<entry name>"}`` in its place. NumPy scalars are stored as Python numbers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nablanet._io import atomic_savez
from nablanet._validation import a_type
from nablanet.layers.base import Layer
from nablanet.optim.base import Optimizer
from nablanet.train._architecture import build_checked, json_default, loadable_architecture
from nablanet.train._model_file import read_arrays, read_meta
from nablanet.train.history import History

FORMAT = "nablanet-model"
VERSION = 1
_ARRAY = "__array__"


def _encode(value: Any, entry: str, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` with every ndarray moved into ``arrays`` (under a name derived from ``entry``)."""
    if isinstance(value, np.ndarray):
        name, k = entry, 1
        while name in arrays:  # keys holding "/" could collide; keep both
            name, k = f"{entry}#{k}", k + 1
        arrays[name] = value
        return {_ARRAY: name}
    if isinstance(value, Mapping):
        return {str(k): _encode(v, f"{entry}/{k}", arrays) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v, f"{entry}/{i}", arrays) for i, v in enumerate(value)]
    return value


def _decode(value: Any, arrays: Mapping[str, np.ndarray], where: str) -> Any:
    if isinstance(value, dict):
        if set(value) == {_ARRAY}:
            name = value[_ARRAY]
            if not isinstance(name, str) or name not in arrays:
                raise ValueError(f"{where} refers to an array entry {name!r} that the file does not hold")
            return arrays[name]
        return {k: _decode(v, arrays, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _check_save_args(model: Any, optimizer: Any, callbacks: Any, history: Any) -> None:
    if not isinstance(model, Layer):
        raise TypeError(
            f"save(model, path) received model={model!r:.60} ({type(model).__name__}); expected a nablanet Layer "
            "(e.g. nn.Sequential(...)). Fix: pass the model first, then the path: nn.save(model, 'model.npz')."
        )
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"save(optimizer=...) received {a_type(optimizer)}; expected a nablanet optimizer "
            "(e.g. nn.optim.SGD(model.parameters(), lr=0.1)) or None. Fix: pass the optimizer you train "
            "with, or leave optimizer out to save the model alone."
        )
    if callbacks is not None and (isinstance(callbacks, str | bytes | Mapping) or not isinstance(callbacks, Iterable)):
        raise TypeError(
            f"save(callbacks=...) received {type(callbacks).__name__} {callbacks!r:.60}; expected a list of callbacks "
            "(the list given to fit). Fix: pass callbacks=[cb] for a single one."
        )
    if history is not None and not callable(getattr(history, "to_records", None)):
        raise TypeError(
            f"save(history=...) received {a_type(history)}; expected the History that fit returned, or None."
        )


def _callback_meta(callbacks: Iterable[Any], arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    out = []
    for i, cb in enumerate(callbacks):
        get = getattr(cb, "state_dict", None)
        state = get() if callable(get) else {}
        if not isinstance(state, Mapping):
            raise TypeError(
                f"save: callback {i} ({type(cb).__name__}).state_dict() returned a {type(state).__name__}; expected "
                "a dict of JSON values and NumPy arrays."
            )
        out.append({"class": type(cb).__name__, "state": _encode(dict(state), f"callbacks/{i}", arrays)})
    return out


def _history_meta(history: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"records": history.to_records(), "stop_reason": getattr(history, "stop_reason", None)}
    if is_dataclass(history):  # fields H3a's History grows (e.g. ``interrupted``) travel too
        for f in fields(history):
            if f.name not in ("records", "stop_reason"):
                meta[f.name] = getattr(history, f.name)
    return meta


def save(
    model: Layer,
    path: str | os.PathLike[str],
    optimizer: Optimizer | None = None,
    extra: dict[str, Any] | None = None,
    callbacks: Iterable[Any] | None = None,
    history: History | None = None,
) -> Path:
    """Write ``model`` (and what resuming needs) to ``path`` atomically; return the path written.

    ``optimizer``: its state (moments, step count, hyperparameters). ``extra``: any JSON-serializable
    dict (epoch, metrics). ``callbacks``: the list given to ``fit``; each one's ``state_dict()`` is
    stored (a callback without one stores ``{}``). ``history``: the ``History`` so far.
    ``load_checkpoint`` gives each back.

    Nothing is written unless ``nn.load`` could rebuild the model: every layer must be nablanet's or
    registered (``nn.register_layer``), and each layer's ``get_config()`` must rebuild it (the checks
    ``nn.load`` runs are run first, on the architecture about to be written).
    """
    _check_save_args(model, optimizer, callbacks, history)
    arch = loadable_architecture(model)  # refuses, before anything is written, a model nn.load could not rebuild
    meta: dict[str, Any] = {"format": FORMAT, "version": VERSION, "model": arch, "extra": extra or {}}
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
    if callbacks is not None:
        meta["callbacks"] = _callback_meta(callbacks, arrays)
    if history is not None:
        meta["history"] = _history_meta(history)
    try:
        text = json.dumps(meta, default=json_default)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"save: extra, the optimizer's hyperparameters, the callbacks' states and the history must be "
            f"JSON-serializable or NumPy arrays ({exc})"
        ) from exc
    arrays["__meta__"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    return atomic_savez(path, arrays, what="the model")


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns.

    ``model``; ``optimizer_state`` (for ``optimizer.load_state_dict``; ``None`` if none was saved) and
    ``optimizer_class``; ``extra``; ``callback_states`` (one dict per callback, in the order given to
    ``save``, for ``cb.load_state_dict``; ``None`` if no callbacks were saved) and ``callback_classes``
    (their class names); ``history`` (a ``History``; ``None`` if none was saved).
    """

    model: Layer
    optimizer_state: dict[str, Any] | None
    optimizer_class: str | None
    extra: dict[str, Any]
    callback_states: list[dict[str, Any]] | None = None
    callback_classes: list[str] | None = None
    history: History | None = None


def _optimizer_state(meta: dict[str, Any], arrays: Mapping[str, np.ndarray], p: Path) -> dict[str, Any] | None:
    opt_meta = meta.get("optimizer")
    if opt_meta is None:
        return None
    keys = opt_meta.get("state_keys") if isinstance(opt_meta, dict) else None
    if not isinstance(keys, dict) or not isinstance(opt_meta.get("class"), str):
        raise ValueError(f"{p}: the optimizer entry is damaged (expected a dict with 'class' and 'state_keys')")
    state: dict[int, dict[str, np.ndarray]] = {}
    for i, names in keys.items():
        if not isinstance(names, list) or not str(i).isdigit():
            raise ValueError(f"{p}: the optimizer entry is damaged (state_keys[{i!r}] = {names!r})")
        missing = [n for n in names if f"optimizer/{i}/{n}" not in arrays]
        if missing:
            raise ValueError(f"{p}: the optimizer state of parameter {i} lacks the arrays {missing}")
        state[int(i)] = {name: arrays[f"optimizer/{i}/{name}"] for name in names}
    opt_state = {k: v for k, v in opt_meta.items() if k not in ("class", "state_keys")}
    opt_state["state"] = state
    return opt_state


def _callbacks(meta: dict[str, Any], arrays: Mapping[str, np.ndarray], p: Path) -> tuple[list[Any], list[str]] | None:
    saved = meta.get("callbacks")
    if saved is None:
        return None
    if not isinstance(saved, list) or not all(
        isinstance(c, dict) and isinstance(c.get("class"), str) and isinstance(c.get("state"), dict) for c in saved
    ):
        raise ValueError(f"{p}: the callbacks entry is damaged (expected a list of {{'class': ..., 'state': {{...}}}})")
    states = [_decode(c["state"], arrays, f"{p}: callbacks[{i}]") for i, c in enumerate(saved)]
    return states, [c["class"] for c in saved]


def _history(meta: dict[str, Any], p: Path) -> History | None:
    saved = meta.get("history")
    if saved is None:
        return None
    if not isinstance(saved, dict) or not isinstance(saved.get("records"), list) or not all(
        isinstance(r, dict) for r in saved["records"]
    ):
        raise ValueError(f"{p}: the history entry is damaged (expected {{'records': [{{...}}, ...], ...}})")
    stop_reason = saved.get("stop_reason")
    from_records = getattr(History, "from_records", None)
    try:
        history: History = (
            from_records(saved["records"], stop_reason=stop_reason) if callable(from_records)
            else History(records=[dict(r) for r in saved["records"]], stop_reason=stop_reason)
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{p}: the history entry is damaged ({exc})") from exc
    known = {f.name for f in fields(History)} - {"records", "stop_reason"}
    for name, value in saved.items():  # the other fields of History (interrupted_at, ...)
        if name in known:
            setattr(history, name, value)
    return history


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a file written by ``save``. Never unpickles; a damaged or edited file gives a ValueError
    that names the file and what is wrong, before anything as large as the file claims is built."""
    p = Path(path)
    arrays = read_arrays(p)
    meta = read_meta(arrays.pop("__meta__", None), p, FORMAT, VERSION)
    model_arrays = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    model = build_checked(meta["model"], model_arrays, p)
    model.load_state_dict(model_arrays)
    cbs = _callbacks(meta, arrays, p)
    extra = meta.get("extra", {})
    if not isinstance(extra, dict):
        raise ValueError(f"{p}: the extra entry is a {type(extra).__name__}; expected a dict")
    return Checkpoint(
        model, _optimizer_state(meta, arrays, p),
        None if meta.get("optimizer") is None else meta["optimizer"]["class"], extra,
        None if cbs is None else cbs[0], None if cbs is None else cbs[1], _history(meta, p),
    )


def load(path: str | os.PathLike[str]) -> Layer:
    """The model saved at ``path`` (see ``load_checkpoint`` for the optimizer state)."""
    return load_checkpoint(path).model
