"""Type-keyed rules: which function computes which lab quantity for which layer or loss type.

The lab keeps one ``Registry`` per quantity, all of them here, so this file lists every rule a
layer may have. The rules themselves sit in ``nablanet/lab/rules/``, a tree that mirrors
``nablanet/layers/`` and ``nablanet/losses/`` file by file (``rules_home``); the layers know
nothing of them. A rule registered for a class applies to its subclasses (looked up along the
MRO). An unknown type fails loudly, naming the type, the missing rule and where such a rule is
registered, so a new layer never silently gets a wrong answer.

* ``jvp_rules``: ``(layer, cache, ẋ | None, θ̇) -> ẏ | None``, the forward R-pass (curvature);
* ``vjp_rop_rules``: ``(layer, cache, dy, dẏ, ẋ | None, θ̇, need_dx) -> ((dx)˙, {name: (dθ)˙})``, the
  backward R-pass (curvature);
* ``d2f_rules``: ``(layer, x, y) -> f″(x) | None``, for elementwise activations (curvature);
* ``loss_hvp_rules``: ``(loss, cache, ẏ) -> ∇²_y L · ẏ``, per loss (curvature);
* ``per_sample_grad_norms_rules``: ``(entry, factor) -> {local name: (N,) norms}`` (per-sample
  norms; a generic rule for ``Layer`` covers every layer, closed forms are faster);
* ``activation_rules``: ``(layer, x, y, cache, eps) -> {quantity: value}`` (optional extra
  activation statistics);
* ``parts_rules``: ``(layer, x, y, cache) -> [Part]``, the pieces of one call that the instruments
  report as layers of their own (a recurrent stack per layer and direction), and
  ``parameter_part_rules``: ``(layer, parameter name) -> part``, which of them owns a parameter
  (optional; see ``nablanet.lab.parts``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_MIRRORED = {"nablanet.layers.": "nablanet.lab.rules.", "nablanet.losses.": "nablanet.lab.rules.losses."}


def rules_home(cls: type) -> str | None:
    """The module that holds the lab's rules for a class of nablanet: ``nablanet.lab.rules.linear``
    for ``nablanet.layers.linear.Linear``, ``nablanet.lab.rules.losses.binary`` for ``BCELoss``;
    None for a class defined elsewhere (a user's layer keeps its rules in its own code)."""
    for package, home in _MIRRORED.items():
        if cls.__module__.startswith(package):
            return home + cls.__module__.removeprefix(package)
    return None


def rules_location(cls: type) -> str:
    """Where a rule for ``cls`` belongs, in words: "in nablanet/lab/rules/linear.py", or for a layer
    defined outside nablanet "in your own code, next to MyLayer (my_module)"."""
    home = rules_home(cls)
    if home is None:
        return f"in your own code, next to {cls.__name__} ({cls.__module__})"
    path = home.replace(".", "/") + ".py"
    if importlib.util.find_spec(home) is None:
        return f"in {path} (a new file, mirroring {cls.__module__.replace('.', '/')}.py)"
    return f"in {path}"


class Registry:
    """A map from layer (or loss) class to the rule that computes ``quantity`` for it.

    ``kind`` ("layer" or "loss") and ``module`` (where the registry object is importable from)
    only serve the error message.
    """

    def __init__(self, quantity: str, *, kind: str = "layer", module: str = __name__) -> None:
        self.quantity = quantity
        self.kind = kind
        self.module = module
        self._rules: dict[type, Callable[..., Any]] = {}

    @property
    def name(self) -> str:
        """The registry's variable name, e.g. ``jvp_rules``."""
        return f"{self.quantity}_rules"

    def register(self, *classes: type) -> Callable[[F], F]:
        """Decorator: ``@registry.register(Linear)`` makes the function the rule for ``Linear``."""

        def deco(fn: F) -> F:
            for cls in classes:
                self._rules[cls] = fn
            return fn

        return deco

    def registered_for(self, cls: type) -> type | None:
        """``cls`` or its nearest base class that has a rule here (the MRO's first), or None."""
        for base in cls.__mro__:
            if base in self._rules:
                return base
        return None

    def rule_for(self, cls: type) -> Callable[..., Any] | None:
        """The rule for ``cls`` or its nearest registered base class, or None."""
        owner = self.registered_for(cls)
        return None if owner is None else self._rules[owner]

    def find(self, obj: Any) -> Callable[..., Any] | None:
        """The rule for ``type(obj)`` (see ``rule_for``), or None."""
        return self.rule_for(type(obj))

    def __getitem__(self, obj: Any) -> Callable[..., Any]:
        rule = self.find(obj)
        if rule is None:
            raise NotImplementedError(self.missing_message(type(obj)))
        return rule

    def __contains__(self, obj: Any) -> bool:
        return self.find(obj) is not None

    def missing_message(self, cls: type) -> str:
        """What to say when ``cls`` has no rule: the type, the rule, the known types, where to add one."""
        known = ", ".join(sorted(c.__name__ for c in self._rules))
        if rules_home(cls) is None:  # the user's class: the one public call
            fix = (f"Register one next to {cls.__name__}: nn.lab.rules.register({cls.__name__}, {self.quantity}=...) "
                   "(nablanet/lab/rules/ has one for every built-in layer to copy from).")
        else:
            fix = (f"Register one {rules_location(cls)}: `from {self.module} import {self.name}`, then "
                   f"`@{self.name}.register({cls.__name__})` on the function.")
        return f"{self.quantity}: no rule for {self.kind} type {cls.__name__} (defined in {cls.__module__}). " \
               f"Known types: {known}. {fix}"


jvp_rules = Registry("jvp")
"""layer type → ``rule(layer, cache, ẋ | None, θ̇) -> ẏ | None`` (None: ẏ = 0); see ``nablanet.lab.rop``."""

vjp_rop_rules = Registry("vjp_rop")
"""layer type → ``rule(layer, cache, dy, dẏ, ẋ | None, θ̇, need_dx) -> ((dx)˙, {name: (dθ)˙})``."""

d2f_rules = Registry("d2f")
"""elementwise activation type → ``rule(layer, x, y) -> f″(x) | None`` (None: f″ = 0 everywhere)."""

loss_hvp_rules = Registry("loss_hvp", kind="loss")
"""loss type → ``rule(loss, cache, ẏ) -> ∇²_y L · ẏ`` (the input's shape)."""

per_sample_grad_norms_rules = Registry("per_sample_grad_norms")
"""layer type → ``rule(entry, factor) -> {local name: (N,) norms}``; see ``nablanet.lab.per_sample``."""

activation_rules = Registry("activation")
"""Per-type quantities beyond the generic mean/std/histogram: ``rule(layer, x, y, cache, eps) -> dict``."""

parts_rules = Registry("parts")
"""layer type → ``rule(layer, x, y, cache) -> [Part]``: what the instruments report in place of one call of it."""

parameter_part_rules = Registry("parameter_part")
"""layer type → ``rule(layer, local parameter name) -> part name`` ("l1_reverse"; "" for the layer itself)."""
