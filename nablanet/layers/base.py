"""The layer interface: a pure forward that hands its VJP a cache, and a pure VJP.

Every layer implements two functions (see DESIGN.md):

* ``forward(x, *, train, rng) -> (y, cache)``: pure apart from the generator it is handed. The cache
  holds exactly what the VJP needs, so two forward passes never clobber each other.
* ``vjp(cache, dy, *, per_sample=False) -> (dx, grads)``: given dy = ∂L/∂y it returns dx = ∂L/∂x
  and ``{param_name: ∂L/∂param}``. ``dy`` may carry leading vector axes ``(*V, N, *out)``: every
  axis in front of the output's own axes is pushed through independently, so one call applies the
  transposed Jacobian to a whole basis. Parameter gradients then carry the same leading axes
  ``(*V, *param)``. With ``per_sample=True`` the batch axis is kept: ``(*V, N, *param)``.
  With ``need_dx=False`` (the first layer of a model during training, whose input gradient nobody
  reads) a layer may skip dx and return ``NO_DX``, an empty array, in its place.

The PyTorch-shaped conveniences (``layer(x)``, ``parameters()``, ``state_dict()``, ``train()``,
``eval()``, ``to(dtype)``) live here too; they never take part in the math.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from nablanet._dtype import resolve_dtype
from nablanet._random import RNGLike
from nablanet._validation import a_type, as_float_input, check_finite
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

    def backward(self, cache: Any, dy: np.ndarray, *, accumulate: bool = True) -> Tape:
        """Run the VJP, add the gradients into ``param.grad`` (unless ``accumulate=False``),
        and return the tape (one entry for a single layer; ``Sequential`` lists its layers)."""
        _, grads = self.vjp(cache, dy, need_dx=False)
        tape: Tape = [TapeEntry("", self, cache, dy, grads)]
        if accumulate:
            accumulate_grads(tape)
        return tape

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

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """``(name, parameter)`` in ``state_dict`` order, names as PyTorch gives them."""
        for name, p in self._parameters.items():
            yield prefix + name, p
        for cname, child in self._modules.items():
            yield from child.named_parameters(prefix + cname + ".")

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for name, b in self._buffers.items():
            yield prefix + name, b
        for cname, child in self._modules.items():
            yield from child.named_buffers(prefix + cname + ".")

    def _named_slots(self, prefix: str = "") -> Iterator[tuple[str, Layer, str]]:
        """``(full_name, owner, local_name)`` for every parameter and buffer, in state_dict order."""
        for name in self._parameters:
            yield prefix + name, self, name
        for name in self._buffers:
            yield prefix + name, self, name
        for cname, child in self._modules.items():
            yield from child._named_slots(prefix + cname + ".")

    def _slot_array(self, local: str) -> np.ndarray:
        """The array behind a local parameter or buffer name."""
        return self._parameters[local].data if local in self._parameters else self._buffers[local]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, keyed as PyTorch keys them (``"0.weight"``)."""
        out: dict[str, np.ndarray] = {}
        for full, owner, local in self._named_slots():
            value = owner._slot_array(local)
            out[full] = np.array(value, copy=True)
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy arrays into the parameters and buffers; each keeps its own dtype.

        Accepts anything array-like per key (e.g. ``{k: v.numpy() for k, v in torch_sd.items()}``).
        With ``strict=True`` (default) missing or unexpected keys raise a KeyError listing them all;
        a shape mismatch always raises a ValueError naming the key and both shapes.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"load_state_dict for {type(self).__name__} received {a_type(state_dict)} "
                f"({state_dict!r:.60}); expected a mapping name -> array such as model.state_dict() gives, "
                f"with the keys {_some([k for k, _, _ in self._named_slots()])}. "
                "Fix: pass a dict, e.g. other.state_dict()."
            )
        slots = {full: (owner, local) for full, owner, local in self._named_slots()}
        missing = [k for k in slots if k not in state_dict]
        unexpected = [k for k in state_dict if k not in slots]
        if strict and (missing or unexpected):
            raise KeyError(
                f"load_state_dict for {type(self).__name__}: missing keys {missing}, unexpected keys "
                f"{unexpected}. Expected exactly {list(slots)}; pass strict=False to load a subset."
            )
        arrays: dict[str, np.ndarray] = {}
        for key, (owner, local) in slots.items():
            if key not in state_dict:
                continue
            try:
                value = np.asarray(state_dict[key])
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"load_state_dict: {key!r} holds a {type(state_dict[key]).__name__} that is not an array "
                    f"({exc}); expected a NumPy array (or array-like) of shape {owner._slot_array(local).shape}"
                ) from exc
            target = owner._slot_array(local)
            if value.shape != target.shape:
                raise ValueError(
                    f"load_state_dict: {key!r} has shape {value.shape} in the state dict but "
                    f"{target.shape} in the model; check the architecture (e.g. in/out features)."
                )
            if value.dtype.kind not in "biuf":
                raise TypeError(f"load_state_dict: {key!r} has non-numeric dtype {value.dtype}")
            arrays[key] = value
        _warn_non_finite(arrays)
        for key, value in arrays.items():  # copy only after every key passed the checks
            owner, local = slots[key]
            target = owner._slot_array(local)
            target[...] = value
        return IncompatibleKeys(missing, unexpected)

    def zero_grad(self) -> None:
        """Set every parameter's ``grad`` to ``None`` (PyTorch's default, ``set_to_none=True``)."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Layer:
        """Put this layer and its children in training mode (``False``: evaluation mode)."""
        object.__setattr__(self, "training", bool(mode))
        for child in self._modules.values():
            child.train(mode)
        return self

    def eval(self) -> Layer:
        return self.train(False)

    def to(self, dtype: Any) -> Layer:
        """Convert every parameter and floating buffer to ``dtype`` in place (float32/float64)."""
        dt = resolve_dtype(dtype)
        for p in self._parameters.values():
            p.data = p.data.astype(dt)
            p.grad = None if p.grad is None else p.grad.astype(dt)
        for name, b in list(self._buffers.items()):
            if b.dtype.kind == "f":
                self.register_buffer(name, b.astype(dt))
        for child in self._modules.values():
            child.to(dt)
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
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)


def _some(keys: list[str], n: int = 4) -> str:
    return ", ".join(map(repr, keys[:n])) + (", ..." if len(keys) > n else "")


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
