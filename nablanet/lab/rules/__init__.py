"""Each layer's lab rules, beside the layer: this tree mirrors ``nablanet/layers/`` file by file, and
``rules/losses/`` mirrors ``nablanet/losses/`` file by file.

    nablanet/layers/linear.py          →  nablanet/lab/rules/linear.py
    nablanet/layers/activations.py     →  nablanet/lab/rules/activations.py
    nablanet/losses/cross_entropy.py   →  nablanet/lab/rules/losses/cross_entropy.py
    …                                     (``nablanet.lab.registry.rules_home`` computes the name)

A rules file holds, for the layers of its mirror, what the instruments need beyond forward and
VJP: the JVP (forward R-pass) and the VJP of the R-op (backward R-pass) for curvature, f″ for an
elementwise activation, a closed-form per-sample gradient norm where one beats materializing, and
extra activation statistics; for a loss, ∇²_y L · ẏ. Each registers its functions in the registries
of ``nablanet.lab.registry``; importing this package registers them all. The layers import nothing
from here (arrows point down: lab → layers).

A layer of your own registers its rules in one call, ``nn.lab.rules.register(MyLayer, jvp=...,
vjp_rop=...)`` (``register`` below), in your own code next to the layer; every "no rule" error names it.

A container's rules (``sequential.py``, ``graph.py``, ``attention.py``) compose its children's along
its own data flow, so a model of any shape has curvature once each of its classes has its two rules.
``needed_rules`` says what the lab needs from a class and ``missing_rules`` what it lacks, which
``nablanet.testing.check_layer`` and ``tests/test_conformance.py`` report.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from nablanet.lab.registry import (
    Registry,
    activation_rules,
    d2f_rules,
    jvp_rules,
    loss_hvp_rules,
    per_sample_grad_norms_rules,
    rules_home,
    rules_location,
    vjp_rop_rules,
)
from nablanet.lab.rules import (
    activations,
    attention,
    base,
    bilinear,
    conv,
    dropout,
    embedding,
    graph,
    linear,
    losses,
    normalization,
    pooling,
    recurrent,
    sequential,
    shape,
    softmax,
)
from nablanet.layers.activations import Elementwise
from nablanet.layers.base import Layer
from nablanet.losses.base import Loss

__all__ = [
    "MissingRule",
    "activations",
    "attention",
    "base",
    "bilinear",
    "conv",
    "dropout",
    "embedding",
    "graph",
    "lacks",
    "linear",
    "losses",
    "missing_rules",
    "needed_rules",
    "normalization",
    "pooling",
    "recurrent",
    "register",
    "require",
    "sequential",
    "shape",
    "softmax",
]

_BY_NAME: dict[str, Registry] = {reg.quantity: reg for reg in (
    jvp_rules, vjp_rop_rules, d2f_rules, per_sample_grad_norms_rules, activation_rules, loss_hvp_rules)}
_ARITY = {"jvp": 4, "vjp_rop": 7, "d2f": 3, "per_sample_grad_norms": 2, "activation": 5, "loss_hvp": 3}


def register(cls: type, **rules: Callable[..., Any]) -> None:
    """Give the lab everything it needs for ``cls``, a layer (or loss) of your own, in one call::

        nn.lab.rules.register(Swish, jvp=swish_jvp, vjp_rop=swish_vjp_rop)

    The keywords are the lab's rules (each one's signature is in ``nablanet.lab.registry``):
    ``jvp(layer, cache, ẋ | None, θ̇) -> ẏ | None`` and ``vjp_rop(layer, cache, dy, dẏ, ẋ | None, θ̇,
    need_dx) -> ((dx)˙, {name: (dθ)˙})`` for curvature (``nablanet.lab.rop`` has the equations),
    ``d2f(layer, x, y) -> f″(x)`` for a subclass of ``nn.Elementwise``, ``per_sample_grad_norms(entry,
    factor) -> {name: (N,) norms}`` for a closed form, ``activation(layer, x, y, cache, eps) -> {quantity:
    value}`` for extra activation statistics, ``loss_hvp(loss, cache, ẏ) -> ∇²_y L · ẏ`` for a loss.
    ``nn.testing.check_layer`` checks the registered rules against finite differences.
    """
    if not isinstance(cls, type):
        raise TypeError(f"register expects the layer's class (register(Swish, jvp=...)); got {type(cls).__name__}.")
    unknown = sorted(set(rules) - set(_BY_NAME))
    if unknown or not rules:
        got = f"the keyword(s) {unknown}" if unknown else "no rule"
        raise TypeError(f"register({cls.__name__}, ...) got {got}; "
                        f"the lab's rules are {sorted(_BY_NAME)}, e.g. register({cls.__name__}, jvp=f, vjp_rop=g).")
    for name, fn in rules.items():
        if not callable(fn):
            raise TypeError(f"register({cls.__name__}, {name}=...) got {type(fn).__name__}; expected a function "
                            f"taking {_ARITY[name]} arguments.")
        try:
            inspect.signature(fn).bind(*range(_ARITY[name]))
        except TypeError:
            shown = getattr(fn, "__name__", fn)
            raise TypeError(f"register({cls.__name__}, {name}={shown}): a {name} rule takes {_ARITY[name]} "
                            "positional arguments; see its signature in nablanet.lab.registry.") from None
        except ValueError:  # a builtin without a signature: trust it
            pass
    for name, fn in rules.items():
        _BY_NAME[name].register(cls)(fn)


def how_to_register(cls: type, names: Iterable[str]) -> str:
    """The fix for missing rules ``names`` of ``cls``, in the form its home uses."""
    names = list(names)
    if rules_home(cls) is None:
        args = ", ".join(f"{n}=..." for n in names)
        return f"register next to {cls.__name__} with nn.lab.rules.register({cls.__name__}, {args})"
    return (f"register {rules_location(cls)} with "
            + ", ".join(f"@{_BY_NAME[n].name}.register({cls.__name__})" for n in names))


def lacks(obj: Any, quantities: Iterable[str]) -> list[str]:
    """The rules among ``quantities`` ("jvp", "vjp_rop", …) that ``obj``'s class has none of."""
    return [q for q in quantities if _BY_NAME[q].find(obj) is None]


def require(who: str, needs: Iterable[tuple[Any, Iterable[str]]], why: str) -> None:
    """Raise one NotImplementedError naming every rule that the objects of ``needs`` (pairs of a layer
    or loss and the rules it must have) lack, with the fix for each class, so all the gaps show at
    once and before any work."""
    gaps: dict[type, list[str]] = {}
    for obj, quantities in needs:
        for q in lacks(obj, quantities):
            if q not in gaps.get(type(obj), []):
                gaps.setdefault(type(obj), []).append(q)
    if gaps:
        lines = [f"{cls.__name__} ({cls.__module__}) has no {' and no '.join(qs)} rule: {how_to_register(cls, qs)}"
                 for cls, qs in gaps.items()]
        raise NotImplementedError(f"{who} needs {why}; {len(lines)} class(es) lack rules:\n  " + "\n  ".join(lines)
                                  + "\nnablanet.lab.rop gives the equations; nn.testing.check_layer checks the rules.")


class MissingRule(NamedTuple):
    """A rule the lab needs for ``cls`` and does not have."""

    cls: type
    registry: Registry

    @property
    def key(self) -> str:
        """``"LSTM.jvp"``: the class and the rule, as allow-lists name a gap."""
        return f"{self.cls.__name__}.{self.registry.quantity}"

    def __str__(self) -> str:
        fix = how_to_register(self.cls, [self.registry.quantity])
        return f"{self.cls.__name__} has no {self.registry.quantity} rule; {fix}"


def needed_rules(cls: type) -> tuple[Registry, ...]:
    """The registries in which the lab needs a rule for ``cls``.

    A loss needs ``loss_hvp`` (curvature). Every layer, containers included, needs ``jvp`` and
    ``vjp_rop`` (curvature) and a ``per_sample_grad_norms`` rule (the generic one for ``Layer``
    covers any layer); an elementwise activation also ``d2f``.
    """
    if issubclass(cls, Loss):
        return (loss_hvp_rules,)
    if not issubclass(cls, Layer):
        return ()
    needed: tuple[Registry, ...] = (jvp_rules, vjp_rop_rules, per_sample_grad_norms_rules)
    if issubclass(cls, Elementwise):
        needed += (d2f_rules,)
    return needed


def missing_rules(cls: type) -> list[MissingRule]:
    """The rules the lab needs for ``cls`` (``needed_rules``) that no registry holds."""
    return [MissingRule(cls, reg) for reg in needed_rules(cls) if reg.rule_for(cls) is None]
