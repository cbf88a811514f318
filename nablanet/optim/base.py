"""The optimizer interface: parameter groups, scheduled hyperparameters, state by parameter index.

An optimizer sees ``Parameter`` objects (``.data`` and ``.grad``), never layers. Each subclass
writes one per-array rule, ``_update(p, g, state, h)``, that updates ``p.data`` in place; ``state`` is
that parameter's ``{name: ndarray}`` and ``h`` holds the hyperparameters' values at this step as
plain floats. An optimizer knows nothing of ``fit``: a parameter keeps its array for its whole life.

Hyperparameters
    Every numeric hyperparameter (lr, momentum, an entry of betas, weight_decay, ...) is a number or
    a schedule, i.e. any callable ``t -> value``. At each ``step()`` it is evaluated at
    t = ``step_count``, the number of steps taken before this one (0 on the first step).

Scaling the learning rate (the hook for ReduceLROnPlateau-style callbacks)
    The learning rate used at step t is   αₜ = lr_scale · lr(t)   (or lr_scale · lr for a number).
    A plateau callback multiplies ``opt.lr_scale`` (default 1.0); that works the same whether lr is
    a number or a schedule, and survives ``state_dict()``. ``opt.lr = 0.01`` (or a schedule) replaces
    the base lr of every group, as PyTorch's ``for g in opt.param_groups: g["lr"] = 0.01`` does;
    ``opt.current("lr")`` is the αₜ the next step will use.

State dict (numpy arrays and JSON-able values only; no pickle)
    ``{"state": {index: {name: ndarray}}, "param_groups": [{"params": [index, ...], "lr": 0.1,
    ...}], "step_count": int, "lr_scale": float}``. Indices count parameters across groups in the
    order given. A schedule-valued hyperparameter is saved as ``{"schedule": repr(schedule)}`` (a
    schedule is code, not state): on load the optimizer keeps its own schedule, which resumes at the
    restored ``step_count``. Save the arrays with ``np.savez`` and the rest with ``json.dump``;
    ``load_state_dict`` accepts the indices back as strings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from nablanet._validation import a_type
from nablanet.parameter import Parameter

Schedule = Callable[[int], float]
"""A hyperparameter that changes with the step counter t (see ``nablanet.optim.schedules``)."""


@dataclass(frozen=True)
class Range:
    """The values a hyperparameter may take: lo ≤ v ≤ hi, or lo ≤ v < hi when ``hi_open``; never NaN or ±inf."""

    lo: float
    hi: float = math.inf
    hi_open: bool = False

    def __contains__(self, v: float) -> bool:
        # NaN and ±inf are outside every range: an infinite lr or decay only ever gives NaN weights.
        return math.isfinite(v) and self.lo <= v and (v < self.hi if self.hi_open else v <= self.hi)

    def __str__(self) -> str:
        if self.hi == math.inf:
            return f"finite and >= {self.lo:g}"
        return f"in [{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"


class Optimizer:
    """Base class: holds parameter groups, per-parameter state, the step counter and lr_scale.

    ``params`` is an iterable of ``Parameter`` (e.g. ``model.parameters()``) or of dicts in
    PyTorch's param-group form, ``{"params": [...], "lr": 0.01, ...}``, whose keys override the
    defaults for that group.
    """

    # The numeric hyperparameters of a subclass and their valid values. Names not listed here
    # (nesterov, amsgrad, centered) are fixed options, validated in ``_check``.
    ranges: ClassVar[dict[str, Range]] = {}

    def __init__(self, params: Iterable[Any], defaults: Mapping[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, np.ndarray]] = {}
        self.step_count = 0
        self._lr_scale = 1.0
        self._cache: dict[int, tuple[Any, dict[str, Any]]] = {}  # validated hyperparameters per group
        for group in _as_groups(params, type(self).__name__):
            self._add_group(group)
        if not any(group["params"] for group in self.param_groups):
            raise ValueError(
                f"{type(self).__name__} received an empty parameter list; expected at least one "
                "Parameter. Fix: pass model.parameters() of a model that has parameters."
            )
        for group in self.param_groups:
            self._values(group, 0)  # a bad number or a schedule bad at t=0 fails here, not later

    def _add_group(self, group: dict[str, Any]) -> None:
        who = type(self).__name__
        unknown = sorted(set(group) - set(self.defaults) - {"params"})
        if unknown:
            raise ValueError(
                f"{who} param group has unknown key(s) {unknown}; expected a subset of "
                f"{sorted(self.defaults)} plus 'params'. Fix: check the spelling."
            )
        params = group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"{who} received {a_type(p)} among the parameters; expected "
                    "nablanet Parameter objects. Fix: pass model.parameters()."
                )
            if id(p) in seen:
                raise ValueError(
                    f"{who} received the same Parameter {p!r} twice; expected each parameter in "
                    "exactly one group. Fix: remove the duplicate."
                )
            seen.add(id(p))
        self.param_groups.append({**self.defaults, **group, "params": params})

    # -- the learning-rate hook ---------------------------------------------------------------
    @property
    def lr(self) -> float | Schedule:
        """The base lr (number or schedule) of the first group; setting it sets every group's."""
        lr: float | Schedule = self.param_groups[0]["lr"]
        return lr

    @lr.setter
    def lr(self, value: float | Schedule) -> None:
        self._check_one("lr", value, self.step_count)
        for group in self.param_groups:
            group["lr"] = value

    @property
    def lr_scale(self) -> float:
        """Factor on top of every group's lr: αₜ = lr_scale · lr(t). For plateau callbacks."""
        return self._lr_scale

    @lr_scale.setter
    def lr_scale(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
            raise ValueError(
                f"{type(self).__name__}.lr_scale received {value!r}; expected a finite number >= 0. "
                "Fix: multiply it by a factor in (0, 1], e.g. opt.lr_scale *= 0.1."
            )
        self._lr_scale = float(value)

    def current(self, name: str = "lr", group: int = 0) -> Any:
        """The value hyperparameter ``name`` of ``group`` takes at the next step (lr incl. lr_scale)."""
        return self._values(self.param_groups[group], self.step_count)[name]

    # -- the step ---------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every gradient (``None``, PyTorch's default) or zero it in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.fill(0)

    def step(self) -> None:
        """Update every parameter that has a gradient, in place; then t ← t + 1."""
        index = 0
        for group in self.param_groups:
            h = self._values(group, self.step_count)
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, self.state.setdefault(index, {}), h)
                index += 1
        self.step_count += 1

    def _update(self, p: Parameter, g: np.ndarray, state: dict[str, np.ndarray], h: dict[str, Any]) -> None:
        """The per-array rule: update ``p.data`` in place from the gradient ``g``, this parameter's
        ``state`` and the hyperparameters ``h`` (floats, this step's values)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _update")

    # -- hyperparameter values and their validation -------------------------------------------
    def _values(self, group: Mapping[str, Any], t: int) -> dict[str, Any]:
        """The group's hyperparameters at step t as floats (tuples stay tuples), validated.

        Without schedules the values do not depend on t: they are validated once and reused until
        a hyperparameter or ``lr_scale`` changes.
        """
        items = [(k, v) for k, v in group.items() if k != "params"]
        key = (self._lr_scale, tuple(items))
        cached = self._cache.get(id(group))
        if cached is not None and cached[0] == key:
            return dict(cached[1])
        h = self._validated(group, t)
        if not any(callable(v) or (isinstance(v, tuple | list) and any(map(callable, v))) for _, v in items):
            self._cache[id(group)] = (key, dict(h))
        return h

    def _validated(self, group: Mapping[str, Any], t: int) -> dict[str, Any]:
        h: dict[str, Any] = {}
        for name, value in group.items():
            if name == "params":
                continue
            if name in self.ranges:
                h[name] = self._check_one(name, value, t)
            else:
                h[name] = value
        h["lr"] *= self._lr_scale
        self._check(h)
        return h

    def _check_one(self, name: str, value: Any, t: int) -> Any:
        """``value`` (a number, a schedule evaluated at t, or a tuple of them) as checked floats."""
        if isinstance(value, tuple | list):
            return tuple(self._check_one(f"{name}[{k}]", v, t) for k, v in enumerate(value))
        rng = self.ranges[name.split("[")[0]]
        who = type(self).__name__
        if callable(value):
            got = value(t)
            source = f"the {name} schedule {value!r} gave {got!r} at step t={t}"
        else:
            got = value
            source = f"{name}={value!r}"
        if isinstance(got, bool) or not isinstance(got, int | float | np.integer | np.floating):
            raise TypeError(
                f"{who}: {source}; expected {name} to be a number or a schedule (a callable "
                f"step -> number). Fix: pass e.g. {name}=0.1 or schedules.constant(0.1)."
            )
        # Python floats keep float32 arrays float32 (NumPy's weak scalars); np.float64 would not.
        got = float(got)
        if got not in rng:
            raise ValueError(f"{who}: received {source}; expected {name} {rng}. {self._fix(name)}")
        return got

    def _fix(self, name: str) -> str:
        if name == "lr":
            return "Fix: pass a finite, non-negative learning rate, e.g. lr=0.01."
        return f"Fix: choose {name} inside that range (see the {type(self).__name__} docstring)."

    def _check(self, h: Mapping[str, Any]) -> None:
        """Checks across hyperparameters (e.g. nesterov needs momentum); subclasses extend it."""

    # -- state dict ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Copies of the state arrays and the hyperparameters (see the module docstring)."""
        groups = []
        index = 0
        for group in self.param_groups:
            saved: dict[str, Any] = {k: _saveable(v) for k, v in group.items() if k != "params"}
            saved["params"] = list(range(index, index + len(group["params"])))
            index += len(group["params"])
            groups.append(saved)
        state = {i: {k: np.array(v, copy=True) for k, v in s.items()} for i, s in self.state.items()}
        return {"state": state, "param_groups": groups, "step_count": self.step_count, "lr_scale": self._lr_scale}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore state, hyperparameters, step counter and lr_scale from ``state_dict()``'s output."""
        who = type(self).__name__
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups", "step_count"} <= set(state_dict):
            got = sorted(map(str, state_dict)) if isinstance(state_dict, Mapping) else type(state_dict).__name__
            raise TypeError(
                f"{who}.load_state_dict received {got}; expected the dict that optimizer.state_dict() gives, with "
                "'state', 'param_groups' and 'step_count'. Fix: pass opt.state_dict() or Checkpoint.optimizer_state."
            )
        saved_groups = state_dict["param_groups"]
        sizes = [len(g["params"]) for g in self.param_groups]
        saved_sizes = [len(g["params"]) for g in saved_groups]
        if sizes != saved_sizes:
            raise ValueError(
                f"{who}.load_state_dict received groups of sizes {saved_sizes}; expected the sizes "
                f"of this optimizer's groups, {sizes}. Fix: build it over the same parameters."
            )
        params = [p for g in self.param_groups for p in g["params"]]
        state: dict[int, dict[str, np.ndarray]] = {}
        for key, arrays in state_dict["state"].items():
            i = int(key)
            if not 0 <= i < len(params):
                raise ValueError(
                    f"{who}.load_state_dict received state for parameter index {i}; expected "
                    f"0..{len(params) - 1}. Fix: load a state dict saved from the same model."
                )
            state[i] = {name: _state_array(np.asarray(a), params[i], who, i, name) for name, a in arrays.items()}
        new_groups = []
        for group, saved in zip(self.param_groups, saved_groups, strict=True):
            new = dict(group)
            for name, value in saved.items():
                if name == "params":
                    continue
                if name not in self.defaults:
                    raise ValueError(
                        f"{who}.load_state_dict received hyperparameter {name!r}; expected only "
                        f"{sorted(self.defaults)}. Fix: load a state dict saved from a {who}."
                    )
                new[name] = _restored(value, group.get(name), who, name)
            new_groups.append(new)
        for new in new_groups:
            self._values(new, int(state_dict["step_count"]))
        self.param_groups = new_groups
        self.state = state
        self.step_count = int(state_dict["step_count"])
        self.lr_scale = float(state_dict.get("lr_scale", 1.0))

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} (step_count={self.step_count}, lr_scale={self._lr_scale:g})"]
        for k, group in enumerate(self.param_groups):
            hyper = ", ".join(f"{name}={v!r}" for name, v in group.items() if name != "params")
            lines.append(f"  group {k}: {len(group['params'])} parameters, {hyper}")
        return "\n".join(lines)


def _as_groups(params: Iterable[Any], who: str) -> list[dict[str, Any]]:
    if isinstance(params, Parameter | Mapping) or not isinstance(params, Iterable):
        raise TypeError(
            f"{who} received params of type {type(params).__name__}; expected an iterable of "
            "Parameter or of param-group dicts. Fix: pass model.parameters() (not the model)."
        )
    items = list(params)
    if items and all(isinstance(x, Mapping) for x in items):
        for x in items:
            if "params" not in x:
                raise ValueError(
                    f"{who} received a param group without 'params' (keys {sorted(x)}); expected "
                    "{'params': [...], ...}. Fix: add the group's parameters under 'params'."
                )
        return [dict(x) for x in items]
    return [{"params": items}]


def _saveable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_saveable(v) for v in value]
    if callable(value):
        return {"schedule": repr(value)}
    return value


def _restored(saved: Any, current: Any, who: str, name: str) -> Any:
    if isinstance(saved, Mapping) and "schedule" in saved:
        if not callable(current):
            raise ValueError(
                f"{who}.load_state_dict: {name} was the schedule {saved['schedule']} when saved, "
                f"but this optimizer has {name}={current!r}. Expected a schedule (schedules are "
                f"code, not state). Fix: construct the optimizer with the same {name} schedule."
            )
        return current
    if isinstance(saved, list):
        cur = current if isinstance(current, tuple | list) else [None] * len(saved)
        return tuple(_restored(s, c, who, f"{name}[{k}]") for k, (s, c) in enumerate(zip(saved, cur, strict=True)))
    return saved


def _state_array(a: np.ndarray, p: Parameter, who: str, i: int, name: str) -> np.ndarray:
    if name == "step":
        return np.array(a, dtype=np.int64)
    if a.shape != p.shape:
        raise ValueError(
            f"{who}.load_state_dict received state {name!r} of shape {a.shape} for parameter {i}; "
            f"expected the parameter's shape {p.shape}. Fix: load a state dict from the same model."
        )
    return np.array(a, dtype=p.dtype, copy=True)
