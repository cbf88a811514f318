"""The layer interface: a pure forward that hands its VJP a cache, and a pure VJP.

Every layer implements two functions (the contract, with what nablanet supplies and checks for a
layer of your own, is in ``nablanet/layers/contract.py`` and the README's "Your own layer"):

* ``forward(x, *, train, rng) -> (y, cache)``: pure apart from the generator it is handed. The cache
  holds exactly what the VJP needs, so two forward passes never clobber each other.
* ``vjp(cache, dy, *, per_sample=False, need_dx=True) -> (dx, grads)``: given dy = ∂L/∂y it returns dx = ∂L/∂x
  and ``{param_name: ∂L/∂param}``. ``dy`` may carry leading vector axes ``(*V, N, *out)``: every
  axis in front of the output's own axes is pushed through independently, so one call applies the
  transposed Jacobian to a whole basis. Parameter gradients then carry the same leading axes
  ``(*V, *param)``. With ``per_sample=True`` the batch axis is kept: ``(*V, N, *param)``.
  With ``need_dx=False`` (the first layer of a model during training, whose input gradient nobody
  reads) a layer may skip dx and return ``NO_DX``, an empty array, in its place.

Inside a model, backward runs ``_backward(cache, dy, per_sample, prefix, tape, need_dx) -> dx``: a
leaf layer runs its VJP and appends its ``TapeEntry`` to the tape; a ``Container`` (a layer made of
child layers: ``Sequential``, ``Residual``, ``Parallel``, ``MultiheadAttention``, …) overrides it to
run its children's, so the tape lists every leaf layer of the model, flat, in forward order, named
by its state_dict prefix. That is the container protocol; the instruments read only the tape.

The PyTorch-shaped conveniences (``layer(x)``, ``parameters()``, ``state_dict()``, ``train()``,
``eval()``, ``to(dtype)``) live here too; they never take part in the math.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np

from nablanet._dtype import resolve_dtype
from nablanet._random import RNGLike
from nablanet._validation import a_type, as_float_input, check_finite
from nablanet.layers import contract, kernels
from nablanet.layers.contract import ADOPTED, LeafCache
from nablanet.parameter import Parameter

NO_DX = np.empty(0)
"""Returned as dx by a VJP called with ``need_dx=False`` that skipped computing it."""


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(strict=False)`` could not match (PyTorch's return value)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class TapeEntry(NamedTuple):
    """What backward saw at one layer: the instruments' only view of a step.

    ``name`` is the layer's state_dict prefix (``"2"`` for ``"2.weight"``), ``cache`` is what its
    forward returned, ``dy`` is ∂L/∂(its output), ``grads`` its parameter gradients by local name.
    """

    name: str
    layer: Layer
    cache: Any
    dy: np.ndarray
    grads: dict[str, np.ndarray]
    x: Any = None
    y: Any = None
    """The layer's input and output, kept for a layer defined outside nablanet (its cache is its own
    business, so the Recorder reads its activations here); None for nablanet's layers."""


Tape = list["TapeEntry"]


def accumulate_grads(tape: Tape) -> None:
    """Add each tape entry's parameter gradients into ``param.grad``.

    The first gradient is stored without a copy, so ``.grad`` and the tape share memory until
    the next accumulation; optimizers treat ``.grad`` as read-only.
    """
    for entry in tape:
        params = entry.layer._parameters
        for local, g in entry.grads.items():
            p = params[local]
            if p.grad is None:
                p.grad = g if g.dtype == p.dtype else g.astype(p.dtype)
            else:
                p.grad += g


class Layer:
    """Base class of every layer and model."""

    _parameters: dict[str, Parameter]
    _buffers: dict[str, np.ndarray]
    _modules: dict[str, Layer]
    training: bool

    exact_vjp: ClassVar[bool] = True
    """False for a layer whose VJP is deliberately not the derivative of its forward (a
    straight-through estimator): the finite-difference check of a new layer then skips it."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A leaf layer class defined outside nablanet joins the contract's checks and fallbacks
        (``nablanet.layers.contract``); nablanet's own classes are tested by the conformance suite."""
        super().__init_subclass__(**kwargs)
        if not cls.__module__.startswith("nablanet.") and cls._backward is Layer._backward:
            contract.adopt(cls)

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    # -- the two functions a layer implements --------------------------------------------------
    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, Any]:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def vjp(
        self, cache: Any, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        raise NotImplementedError(f"{type(self).__name__} does not implement vjp")

    def backward(self, cache: Any, dy: Any, *, accumulate: bool = True) -> Tape:
        """Run the VJPs, add the gradients into ``param.grad`` (unless ``accumulate=False``), and
        return the tape: one entry for a leaf layer, one per leaf layer of a container, in forward
        order, nested containers flattened with dotted names (``"1.0"``)."""
        tape: Tape = []
        self._backward(cache, dy, False, "", tape, need_dx=False)
        if accumulate:
            accumulate_grads(tape)
        return tape

    def _backward(
        self, cache: Any, dy: Any, per_sample: bool, prefix: str, tape: Tape, need_dx: bool = True
    ) -> Any:
        """Backward inside a model: given ``dy`` = ∂L/∂y, append this layer's entries to ``tape``
        and return dx = ∂L/∂x (``NO_DX`` allowed when ``need_dx=False``).

        ``prefix`` is the layer's state_dict prefix with its trailing dot (``"2."``; ``""`` at the
        top). A leaf layer runs its VJP (through ``kernels``, the one dispatch point for measured
        fast variants) and appends one entry, named by the prefix without its dot. A ``Container``
        overrides this to run its children's, giving each child ``prefix + child name + "."``.
        """
        dx, grads = kernels.vjp(self, cache, dy, per_sample=per_sample, need_dx=need_dx, prefix=prefix)
        if type(cache) is LeafCache:  # a layer of the user's, or one with a swapped VJP: the tape holds its own cache
            xy = (cache.x, cache.y) if type(self) in ADOPTED else ()
            tape.append(TapeEntry(prefix[:-1], self, cache.cache, dy, grads, *xy))
        else:
            tape.append(TapeEntry(prefix[:-1], self, cache, dy, grads))
        return dx

    # -- conveniences ---------------------------------------------------------------------------
    def __call__(self, x: Any) -> np.ndarray:
        """Forward for inference in the current mode (``train()``/``eval()``), checking the input."""
        arr = as_float_input(x, "x")
        check_finite(arr, "x")
        y, _ = self.forward(arr, train=self.training)
        return y

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Parameter):
            self._modules.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Layer):
            self._parameters.pop(name, None)
            self._modules[name] = value
        elif name in self._parameters and value is None:
            del self._parameters[name]
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """Keep a non-trainable array (e.g. running statistics) in ``state_dict``."""
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        yield from self._modules.items()

    def children(self) -> Iterator[Layer]:
        yield from self._modules.values()

    def _walk(self, prefix: str = "") -> Iterator[tuple[str, Layer]]:
        """``(prefix, layer)`` for this layer and every layer inside it, depth first (state_dict
        order); a layer's prefix ends in a dot (``"1.0."``), the top's is ``prefix``."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child._walk(f"{prefix}{name}.")

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """``(name, parameter)`` in ``state_dict`` order, names as PyTorch gives them."""
        for pre, layer in self._walk(prefix):
            for name, p in layer._parameters.items():
                yield pre + name, p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for pre, layer in self._walk(prefix):
            for name, b in layer._buffers.items():
                yield pre + name, b

    def _named_slots(self) -> Iterator[tuple[str, Layer, str]]:
        """``(full_name, owner, local_name)`` for every parameter and buffer, in state_dict order."""
        for pre, layer in self._walk():
            for name in (*layer._parameters, *layer._buffers):
                yield pre + name, layer, name

    def _slot_array(self, local: str) -> np.ndarray:
        """The array behind a local parameter or buffer name."""
        return self._parameters[local].data if local in self._parameters else self._buffers[local]

    def _arrays(self) -> dict[str, np.ndarray]:
        """Every parameter's and buffer's array (not a copy), by state_dict key."""
        return {full: owner._slot_array(local) for full, owner, local in self._named_slots()}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, keyed as PyTorch keys them (``"0.weight"``)."""
        return {key: np.array(value, copy=True) for key, value in self._arrays().items()}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy arrays into the parameters and buffers; each keeps its own dtype.

        Accepts anything array-like per key (e.g. ``{k: v.numpy() for k, v in torch_sd.items()}``).
        With ``strict=True`` (default) missing or unexpected keys raise a KeyError listing them all;
        a shape mismatch always raises a ValueError naming the key and both shapes.
        """
        targets = self._arrays()
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"load_state_dict for {type(self).__name__} received {a_type(state_dict)} "
                f"({state_dict!r:.60}); expected a mapping name -> array such as model.state_dict() gives, "
                f"with the keys {_some(list(targets))}. Fix: pass a dict, e.g. other.state_dict()."
            )
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and (missing or unexpected):
            raise KeyError(
                f"load_state_dict for {type(self).__name__}: missing keys {missing}, unexpected keys "
                f"{unexpected}. Expected exactly {list(targets)}; pass strict=False to load a subset."
            )
        arrays = {key: _checked_array(key, state_dict[key], target.shape)
                  for key, target in targets.items() if key in state_dict}
        _warn_non_finite(arrays)
        for key, value in arrays.items():  # copy only after every key passed the checks
            targets[key][...] = value
        return IncompatibleKeys(missing, unexpected)

    def zero_grad(self) -> None:
        """Set every parameter's ``grad`` to ``None`` (PyTorch's default, ``set_to_none=True``)."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Layer:
        """Put this layer and its children in training mode (``False``: evaluation mode)."""
        for _, layer in self._walk():
            object.__setattr__(layer, "training", bool(mode))
        return self

    def eval(self) -> Layer:
        return self.train(False)

    def to(self, dtype: Any) -> Layer:
        """Convert every parameter and floating buffer to ``dtype`` in place (float32/float64)."""
        dt = resolve_dtype(dtype)
        for _, layer in self._walk():
            for p in layer._parameters.values():
                p.data = p.data.astype(dt)
                p.grad = None if p.grad is None else p.grad.astype(dt)
            for name, b in list(layer._buffers.items()):
                if b.dtype.kind == "f":
                    layer.register_buffer(name, b.astype(dt))
        return self

    def double(self) -> Layer:
        return self.to(np.float64)

    def float(self) -> Layer:
        return self.to(np.float32)

    @property
    def dtype(self) -> np.dtype[Any] | None:
        """The dtype of the first parameter, or ``None`` for a layer without parameters."""
        for p in self.parameters():
            return p.dtype
        return None

    def extra_repr(self) -> str:
        return ""

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (JSON values), for ``nablanet.save``."""
        return {}

    def __repr__(self) -> str:
        """PyTorch's: ``Name(extra)`` for a leaf; for a container the extra line, then each child."""
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        if self.extra_repr():
            lines.append(f"  {self.extra_repr()}")
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)


# -- the container protocol -----------------------------------------------------------------------
class Container(Layer):
    """A layer made of child layers whose backward puts every leaf layer on the tape.

    Subclasses implement ``forward`` (returning the children's caches inside their cache) and
    ``_backward``, which runs each child's ``child._backward(c, g, per_sample, prefix + name + ".",
    tape, need_dx)`` and appends its entries in forward order; ``vjp`` and ``backward`` follow. A
    container is never a tape entry itself, except where it owns parameters of its own
    (``MultiheadAttention``: its input projections form one entry, its ``out_proj`` another).
    """

    builds_own_children: ClassVar[bool] = False
    """True when the constructor creates the children (``MultiheadAttention.out_proj``): a model
    file then stores only ``get_config()``. False when the children are constructor arguments
    (``Residual(*layers)``, ``Parallel(*branches)``): the file stores them too."""

    def _backward(
        self, cache: Any, dy: Any, per_sample: bool, prefix: str, tape: Tape, need_dx: bool = True
    ) -> Any:
        """Run the children's VJPs on ``dy`` = ∂L/∂y; append their entries to ``tape``; return dx = ∂L/∂x.

        ``prefix`` is this container's state_dict prefix with its trailing dot (``"2."``; ``""`` at
        the top). Entries go in forward order. With ``need_dx=False`` dx may be ``NO_DX``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement _backward")

    def vjp(
        self, cache: Any, dy: Any, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[Any, dict[str, np.ndarray]]:
        """dx and every parameter gradient, keyed by state_dict name (``"1.0.weight"``)."""
        tape: Tape = []
        dx = self._backward(cache, dy, per_sample, "", tape, need_dx)
        grads = {f"{e.name}.{k}" if e.name else k: g for e in tape for k, g in e.grads.items()}
        return dx, grads

    @classmethod
    def from_children(cls, children: list[Layer], config: dict[str, Any]) -> Container:
        """Rebuild from saved children and ``get_config()`` (used by ``nablanet.load``)."""
        return cls(*children, **config)


def backward_child(
    layer: Layer, name: str, cache: Any, dy: Any, per_sample: bool, prefix: str, tape: Tape, need_dx: bool
) -> Any:
    """``layer._backward`` for the child ``name`` of a container with prefix ``prefix``: the child's
    prefix is ``prefix + name + "."``. For containers written outside nablanet; its own call
    ``child._backward`` directly, saving a call per leaf layer."""
    return layer._backward(cache, dy, per_sample, f"{prefix}{name}.", tape, need_dx)


class Combinator(Container):
    """A container whose children are its constructor arguments, named ``"0"``, ``"1"``, … in the
    order given, as in ``torch.nn.Sequential``: ``Sequential`` and the graph combinators."""

    min_children: ClassVar[int] = 0
    """The fewest children the constructor accepts."""

    def __init__(self, *layers: Layer) -> None:
        super().__init__()
        who, minimum = type(self).__name__, self.min_children
        if len(layers) < minimum:
            raise ValueError(
                f"{who} got {len(layers)} layer(s); expected at least {minimum}, e.g. "
                f"{who}({', '.join(['nn.Linear(8, 8)'] * minimum)})."
            )
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"{who} argument {i} is a {type(layer).__name__}; expected a layer such as nn.Linear(4, 3). "
                    "Pass layers, not classes or arrays (nn.ReLU(), not nn.ReLU)."
                )
            self._modules[str(i)] = layer

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self._modules.values())

    def __getitem__(self, idx: int) -> Layer:
        layers = list(self._modules.values())
        if isinstance(idx, bool) or not isinstance(idx, int | np.integer) or not -len(layers) <= idx < len(layers):
            raise IndexError(f"{type(self).__name__} has {len(layers)} children; got index {idx!r}")
        return layers[idx]


def _some(keys: list[str], n: int = 4) -> str:
    return ", ".join(map(repr, keys[:n])) + (", ..." if len(keys) > n else "")


def _checked_array(key: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``state_dict[key]`` as an array, checked against the model's ``shape`` and for a numeric dtype."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"load_state_dict: {key!r} holds a {type(value).__name__} that is not an array "
            f"({exc}); expected a NumPy array (or array-like) of shape {shape}"
        ) from exc
    if arr.shape != shape:
        raise ValueError(
            f"load_state_dict: {key!r} has shape {arr.shape} in the state dict but "
            f"{shape} in the model; check the architecture (e.g. in/out features)."
        )
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"load_state_dict: {key!r} has non-numeric dtype {arr.dtype}")
    return arr


def _warn_non_finite(arrays: Mapping[str, np.ndarray]) -> None:
    """Warn, naming them, about arrays with NaN/inf: they still load, since a diverged checkpoint
    must stay loadable for inspection, but training on from them cannot recover."""
    bad = []
    for key, value in arrays.items():
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            nan = int(np.isnan(value).sum())
            bad.append(f"{key!r} ({nan} NaN, {int(value.size - nan - np.isfinite(value).sum())} inf)")
    if bad:
        warnings.warn(
            f"load_state_dict: {len(bad)} tensor(s) hold non-finite values: {', '.join(bad[:8])}"
            f"{' ...' if len(bad) > 8 else ''}. They were loaded as they are (for inspection); a model with "
            "these weights will likely give NaN outputs. Load an earlier checkpoint to train on.",
            RuntimeWarning, stacklevel=3,
        )


def n_vector_axes(dy: np.ndarray, y_ndim: int, who: str) -> int:
    """How many leading vector axes ``dy`` carries in front of an output of ``y_ndim`` axes."""
    nv = dy.ndim - y_ndim
    if nv < 0:
        raise ValueError(
            f"{who}.vjp got dy with {dy.ndim} axes but the output has {y_ndim}; dy must have the "
            "output's shape, optionally with leading vector axes (*V, N, ...)."
        )
    return nv
