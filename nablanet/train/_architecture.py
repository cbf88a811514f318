"""A model's architecture as JSON, and the checked way back from JSON to a model.

Writing: ``architecture(model)``. Reading: ``build_checked(arch, stored, path)`` trusts nothing in
``arch``. It first checks the JSON's structure (every node a dict naming a nablanet class or one
registered with ``register_layer`` — a name from the file is looked up, never imported —, ``layers``
and ``children`` lists, ``config`` a dict whose keywords the class takes), then builds the model
once *hollow* — the generator handed to each layer returns zero-stride arrays, so a layer whose
weights come from its ``rng`` costs no memory whatever size it claims — and compares every
parameter's and buffer's shape with the arrays stored in the file. Only when they agree is the
model built for real. A file that claims ``Linear(10**6, 10**6)`` over an 8x4 weight is refused
in microseconds instead of allocating 7 TiB. ``loadable_architecture(model)``, which ``nn.save``
writes, runs the same checks on the architecture about to be written, so a model that could not be
loaded back is refused before anything is written.

(Layers that size arrays without their ``rng`` — normalization layers' ``np.ones(c)`` — still
allocate during the hollow build; their size is linear in the config, and a claim too large for
memory is reported as such.)
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

from nablanet import _random
from nablanet.layers import attention as _attention  # noqa: F401  (imported so that load finds these classes)
from nablanet.layers import bilinear as _bilinear  # noqa: F401
from nablanet.layers.base import Layer
from nablanet.layers.graph import Container
from nablanet.layers.sequential import Sequential

RngFactory = Callable[[], np.random.Generator]
LayerT = TypeVar("LayerT", bound=Layer)


def architecture(layer: Layer) -> dict[str, Any]:
    """The architecture as JSON. Three shapes of entry:

    * ``{"class": "Sequential", "layers": [...]}`` (the original format, unchanged);
    * ``{"class": "Residual", "config": {...}, "children": [...]}`` for any other container whose
      children are constructor arguments (``Residual``, ``Parallel``, ``Multiply``, ``Pair``);
    * ``{"class": "Linear", "config": {...}}`` for a layer its config rebuilds whole, sub-layers
      included (``MultiheadAttention`` creates its ``out_proj``).
    """
    if isinstance(layer, Sequential):
        return {"class": "Sequential", "layers": [architecture(child) for child in layer]}
    if isinstance(layer, Container) and not layer.builds_own_children:
        return {"class": type(layer).__name__, "config": layer.get_config(),
                "children": [architecture(child) for child in layer.children()]}
    if layer._modules and not (isinstance(layer, Container) and layer.builds_own_children):
        raise TypeError(
            f"save: {type(layer).__name__} has sub-layers but is not a nablanet container (Sequential, Residual, "
            "Parallel, ...), so its architecture cannot be written; compose it from those containers instead."
        )
    return {"class": type(layer).__name__, "config": layer.get_config()}


_registered: dict[str, type[Layer]] = {}
"""The layer classes of your own that ``register_layer`` made loadable, by class name."""


def _builtin_classes() -> dict[str, type[Layer]]:
    """Every public Layer subclass defined inside nablanet, by class name."""
    found: dict[str, type[Layer]] = {}
    stack: list[type[Layer]] = [Layer]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("nablanet.") and not sub.__name__.startswith("_"):
                found.setdefault(sub.__name__, sub)
            stack.append(sub)
    return found


def layer_classes() -> dict[str, type[Layer]]:
    """The classes ``nn.load`` may build, by class name: nablanet's own and the registered ones.
    Only these are ever built; a name read from a file is never imported."""
    return {**_builtin_classes(), **_registered}


def register_layer(cls: type[LayerT]) -> type[LayerT]:
    """Let ``nn.load`` rebuild layers of class ``cls`` (your own ``nn.Layer`` subclass) from a file.

    Use it as a decorator (``@nn.register_layer`` above ``class Swish(nn.Layer)``) or call it,
    ``nn.register_layer(Swish)``, before ``nn.save`` and before ``nn.load``, in every program
    that loads the file. A file records a layer by its class name and ``get_config()``, the
    constructor arguments that rebuild it; ``nn.load`` then calls ``Swish(**config)`` and loads
    the weights. Names are unique: registering a class named like one of nablanet's layers, or
    like another registered class, raises a ValueError. Registering the same class again, or
    a class redefined under the same module and qualified name (a notebook cell run twice),
    is allowed. Returns ``cls``.
    """
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(
            f"register_layer received {cls!r:.80} ({type(cls).__name__}); expected a subclass of nn.Layer. "
            "Fix: define the layer as class MyLayer(nn.Layer) and register the class, not an instance."
        )
    name = cls.__name__
    builtin = _builtin_classes().get(name)
    if builtin is cls:
        return cls  # nablanet's own layers load without registration
    if builtin is not None:
        raise ValueError(
            f"register_layer: {_where(cls)} has the name of nablanet's layer {_where(builtin)}; a file "
            f"records layers by class name, so nn.load could not tell them apart. Fix: rename your class."
        )
    known = _registered.get(name)
    if known is not None and known is not cls and _where(known) != _where(cls):
        raise ValueError(
            f"register_layer: {_where(cls)} has the name of the registered layer {_where(known)}; a file records "
            "layers by class name, so nn.load could not tell them apart. Fix: rename one of the two classes."
        )
    _registered[name] = cls
    return cls


def _where(cls: type) -> str:
    return f"{cls.__qualname__} (module {cls.__module__})"


class ArchitectureError(ValueError):
    """A node of the architecture JSON that cannot be built; ``where`` locates it (``model.layers[2]``)."""

    def __init__(self, where: str, message: str, fix: str = "") -> None:
        super().__init__(f"the architecture's {where}: {message}")
        self.where = where
        self.message = message
        self.fix = fix


# -- checking the JSON, before anything is built ------------------------------------------------
def _keywords(cls: type[Layer], config: Mapping[str, Any], where: str, takes_children: bool) -> None:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # drop self
    if any(q.kind is q.VAR_KEYWORD for q in params):
        return
    named = [q for q in params if q.kind in (q.POSITIONAL_OR_KEYWORD, q.KEYWORD_ONLY)]
    accepted = [q.name for q in named if q.name != "rng"]
    unknown = sorted(set(config) - set(accepted) - {"rng"})
    if unknown:
        raise ArchitectureError(
            where, f"{cls.__name__} does not take the keyword(s) {unknown}; it accepts {accepted}",
            "The file was written by another version of nablanet, or edited; save the model again with this version.",
        )
    if not takes_children:
        required = [q.name for q in named if q.default is q.empty and q.name not in config]
        if required:
            raise ArchitectureError(where, f"{cls.__name__} needs {required}, which its config lacks")


def check_structure(arch: Any, classes: Mapping[str, type[Layer]], where: str = "model") -> None:
    """Raise an ``ArchitectureError`` at the first node that is not a buildable layer description."""
    if not isinstance(arch, dict):
        raise ArchitectureError(where, f"is a JSON {type(arch).__name__}; expected an object such as "
                                "{'class': 'Linear', 'config': {...}}")
    name = arch.get("class")
    if not isinstance(name, str):
        raise ArchitectureError(where, f"has class {name!r}; expected a layer class name such as 'Linear'")
    if name == "Sequential":
        layers = arch.get("layers", [])
        if not isinstance(layers, list):
            raise ArchitectureError(where, f"Sequential 'layers' is a JSON {type(layers).__name__}; expected a "
                                    "list of layers")
        for i, child in enumerate(layers):
            check_structure(child, classes, f"{where}.layers[{i}]")
        return
    if name not in classes:
        raise ArchitectureError(
            where, f"names a layer class {name!r} that nablanet does not have (neither one of nablanet's layers "
            "nor registered)",
            f"Fix: import the module that defines it and call nn.register_layer({name}) before nn.load.")
    cls = classes[name]
    config = arch.get("config", {})
    if not isinstance(config, dict):
        raise ArchitectureError(where, f"{name} 'config' is a JSON {type(config).__name__}; expected an object "
                                "of constructor keywords")
    children = arch.get("children")
    if children is not None:
        if not issubclass(cls, Container) or cls.builds_own_children:
            raise ValueError(f"the model file gives children to {name!r}, which is not a container that takes them")
        if not isinstance(children, list):
            raise ArchitectureError(where, f"{name} 'children' is a JSON {type(children).__name__}; expected a list")
        for i, child in enumerate(children):
            check_structure(child, classes, f"{where}.children[{i}]")
    _keywords(cls, config, where, children is not None)


# -- building -------------------------------------------------------------------------------------
class _Hollow(np.ndarray):
    """An array of any shape that owns one element (all strides 0): stands in for weights during
    the hollow build. ``astype`` and ``copy`` stay hollow; writes land on the one element."""

    def astype(self, dtype: Any, *args: Any, **kwargs: Any) -> _Hollow:
        return hollow(self.shape, dtype)

    def copy(self, *args: Any, **kwargs: Any) -> _Hollow:
        return hollow(self.shape, self.dtype)


def hollow(shape: Any, dtype: Any = np.float64) -> _Hollow:
    dims = (int(shape),) if isinstance(shape, int | np.integer) else tuple(int(s) for s in shape)
    if any(d < 0 for d in dims):
        raise ValueError(f"negative dimensions are not allowed: {dims}")
    one = np.zeros(1, dtype=dtype)
    view = np.lib.stride_tricks.as_strided(one, shape=dims, strides=(0,) * len(dims), writeable=True)
    return view.view(_Hollow)


class _HollowGenerator(np.random.Generator):
    """A Generator whose array draws are hollow: layers initialise from it without allocating."""

    def uniform(self, low: Any = 0.0, high: Any = 1.0, size: Any = None) -> Any:
        return super().uniform(low, high) if size is None else hollow(size)

    def normal(self, loc: Any = 0.0, scale: Any = 1.0, size: Any = None) -> Any:
        return super().normal(loc, scale) if size is None else hollow(size)

    def standard_normal(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> Any:
        return super().standard_normal() if size is None else hollow(size, dtype)

    def random(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> Any:
        return super().random() if size is None else hollow(size, dtype)


def _build(
    arch: dict[str, Any], classes: Mapping[str, type[Layer]], make_rng: RngFactory, where: str = "model"
) -> Layer:
    name = arch["class"]
    if name == "Sequential":
        return Sequential(*[_build(a, classes, make_rng, f"{where}.layers[{i}]")
                            for i, a in enumerate(arch.get("layers", []))])
    cls = classes[name]
    kwargs = dict(arch.get("config", {}))
    try:
        if "children" in arch:
            built = [_build(a, classes, make_rng, f"{where}.children[{i}]") for i, a in enumerate(arch["children"])]
            return cls.from_children(built, kwargs)  # type: ignore[attr-defined]
        if "rng" in inspect.signature(cls.__init__).parameters:
            kwargs["rng"] = make_rng()  # the weights are loaded next; keep the global generator untouched
        return cls(**kwargs)
    except ArchitectureError:
        raise
    except MemoryError:
        raise ArchitectureError(where, f"{name}(**{arch.get('config', {})}) asks for more memory than this "
                                "machine has") from None
    except Exception as exc:  # the config is untrusted: whatever its constructor raises, the node is bad
        raise ArchitectureError(
            where, f"{name}(**{arch.get('config', {})}) cannot be built ({type(exc).__name__}: {exc})"
        ) from exc


def _shapes(model: Layer) -> dict[str, tuple[int, ...]]:
    return {full: owner._slot_array(local).shape for full, owner, local in model._named_slots()}


def _compare(model: Layer, stored: Mapping[str, np.ndarray]) -> None:
    shapes = _shapes(model)
    missing = [k for k in shapes if k not in stored]
    unexpected = [k for k in stored if k not in shapes]
    wrong = [f"{k!r} is {shapes[k]} by the architecture but {stored[k].shape} in the file"
             for k in shapes if k in stored and stored[k].shape != shapes[k]]
    if missing or unexpected or wrong:
        parts = ([f"arrays missing from the file: {missing[:5]}"] if missing else []) + (
            [f"arrays the architecture has no place for: {unexpected[:5]}"] if unexpected else []) + wrong[:5]
        raise ValueError(f"the architecture does not match the stored weights ({'; '.join(parts)})")


def build_checked(arch: Any, stored: Mapping[str, np.ndarray], path: Any) -> Layer:
    """The model ``arch`` describes, with freshly initialised weights, once its parameter and buffer
    shapes are known to match ``stored`` (the file's ``model/`` arrays). ValueError otherwise."""
    classes = layer_classes()
    try:
        check_structure(arch, classes)
        _compare(_build(arch, classes, lambda: _HollowGenerator(np.random.PCG64(0))), stored)
        return _build(arch, classes, lambda: np.random.default_rng(0))
    except ValueError as exc:
        fix = getattr(exc, "fix", "") or "The file is damaged or was edited; save the model again."
        raise ValueError(f"{path}: {exc}. {fix}") from exc


# -- saving only what loads back ------------------------------------------------------------------
def json_default(value: Any) -> Any:
    """``json.dumps``' fallback: NumPy scalars (``np.float32(0.5)``) become Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r:.60} is not JSON-serializable")


def _nodes(layer: Layer, where: str = "model", prefix: str = "") -> Iterator[tuple[str, str, Layer]]:
    """``(where, prefix, layer)`` for every node ``architecture`` writes: ``where`` as the load checks
    name it (``model.layers[1]``), ``prefix`` the layer's state_dict position (``"1"``)."""
    yield where, prefix, layer
    if isinstance(layer, Sequential) or (isinstance(layer, Container) and not layer.builds_own_children):
        kind = "layers" if isinstance(layer, Sequential) else "children"
        for i, (name, child) in enumerate(layer.named_children()):
            yield from _nodes(child, f"{where}.{kind}[{i}]", f"{prefix}.{name}" if prefix else name)


def _position(prefix: str) -> str:
    return f"layer {prefix!r}" if prefix else "the model"


def _unregistered(cls: type[Layer], known: type[Layer] | None, prefix: str) -> TypeError:
    name = cls.__name__
    if known is None:
        return TypeError(
            f"nn.save: {_position(prefix)} is a {_where(cls)}, which is not registered, so nn.load could not "
            f"rebuild it. Fix: decorate the class with @nn.register_layer, or call nn.register_layer({name}) "
            "before saving and before loading."
        )
    if _where(known) == _where(cls):  # the class was defined again (a notebook cell run twice) since the model
        return TypeError(
            f"nn.save: {_position(prefix)} is a {_where(cls)} of an earlier definition than the one registered, "
            "so nn.load would build the new one. Fix: build the model again from the current class."
        )
    return TypeError(
        f"nn.save: {_position(prefix)} is a {_where(cls)}, but a file records layers by class name and nn.load "
        f"would build {_where(known)} in its place. Fix: rename your class and register it with @nn.register_layer."
    )


def _cannot_load(prefix: str, layer: Layer, reason: str) -> ValueError:
    name = type(layer).__name__
    params = list(inspect.signature(type(layer).__init__).parameters.values())[1:]
    names = [q.name for q in params if q.name != "rng" and q.kind in (q.POSITIONAL_OR_KEYWORD, q.KEYWORD_ONLY)]
    example = ", ".join(f"{n!r}: self.{n}" for n in names)
    return ValueError(
        f"nn.save: the model could not be loaded back from this file: {_position(prefix)} ({name}): {reason}. "
        f"Fix: make {name}.get_config() return the constructor arguments that rebuild it as JSON values "
        f"(numbers, strings, booleans, lists, dicts; e.g. return {{{example}}}): nn.load calls {name}(**config) "
        "and then loads the weights."
    )


def _mismatch(model: Layer, rebuilt: Layer) -> tuple[str, str] | None:
    """The first parameter or buffer that ``rebuilt`` lacks or builds with another shape or dtype."""
    want, got = model._arrays(), rebuilt._arrays()
    for key, a in want.items():
        b = got.get(key)
        if b is None:
            return key, f"rebuilt from its config it has no {key!r} (shape {a.shape} in the model)"
        if b.shape != a.shape:
            return key, f"rebuilt from its config its {key!r} has shape {b.shape}; the model's has {a.shape}"
        if b.dtype != a.dtype:
            return key, (f"rebuilt from its config its {key!r} is {b.dtype}; the model's is {a.dtype}, which "
                         "loading would convert (nablanet's layers keep 'dtype' in their config)")
    for key, b in got.items():
        if key not in want:
            return key, f"rebuilt from its config it has a {key!r} of shape {b.shape} that the model lacks"
    return None


@contextmanager
def _random_state_kept() -> Iterator[None]:
    """Restore nablanet's global generator and NumPy's legacy one on the way out."""
    ours, legacy = _random._global_rng.bit_generator.state, np.random.get_state()
    try:
        yield
    finally:
        _random._global_rng.bit_generator.state = ours
        np.random.set_state(legacy)


def loadable_architecture(model: Layer) -> dict[str, Any]:
    """``architecture(model)`` once ``nn.load`` is known to rebuild ``model`` from it: every class
    nablanet's or registered, every config JSON, and the checks ``nn.load`` runs (structure, hollow
    build, each parameter's and buffer's shape) passing on the architecture as the file will hold it.
    A TypeError or ValueError naming the layer, its state_dict position and the fix otherwise."""
    written = architecture(model)  # refuses first a layer with sub-layers that is not a container
    classes = layer_classes()
    nodes = list(_nodes(model))
    for _, prefix, layer in nodes:
        cls = type(layer)
        if not isinstance(layer, Sequential) and classes.get(cls.__name__) is not cls:
            raise _unregistered(cls, classes.get(cls.__name__), prefix)
    for _, prefix, layer in nodes:
        if not isinstance(layer, Sequential):
            try:
                json.dumps(layer.get_config(), default=json_default)
            except (TypeError, ValueError) as exc:
                raise _cannot_load(prefix, layer, f"its get_config() is not JSON ({exc})") from exc
    arch = json.loads(json.dumps(written, default=json_default))
    try:
        check_structure(arch, classes)
        with _random_state_kept():  # a constructor that draws from a global generator must not shift the user's run
            rebuilt = _build(arch, classes, lambda: _HollowGenerator(np.random.PCG64(0)))
    except ArchitectureError as exc:
        prefix, layer = {w: (p, lay) for w, p, lay in nodes}.get(exc.where, ("", model))
        reason = f"{exc.message} (its get_config() gave {layer.get_config()!r:.200})"
        raise _cannot_load(prefix, layer, reason) from exc
    found = _mismatch(model, rebuilt)
    if found is not None:
        key, detail = found
        prefix, layer = max(((p, lay) for _, p, lay in nodes if not p or key.startswith(p + ".")),
                            key=lambda pl: len(pl[0]))
        raise _cannot_load(prefix, layer, detail)
    return arch
