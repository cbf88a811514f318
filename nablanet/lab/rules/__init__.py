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

A layer file without a mirror here has no rules yet (``recurrent.py``, ``attention.py``,
``embedding.py``, ``bilinear.py``, ``graph.py``); ``needed_rules`` says what the lab needs from a
class and ``missing_rules`` what it lacks, which ``nablanet.testing.check_layer`` and
``tests/test_conformance.py`` report.
"""

from __future__ import annotations

from typing import NamedTuple

from nablanet.lab.registry import (
    Registry,
    d2f_rules,
    jvp_rules,
    loss_hvp_rules,
    per_sample_grad_norms_rules,
    rules_location,
    vjp_rop_rules,
)
from nablanet.lab.rules import activations, base, conv, dropout, linear, losses, normalization, pooling, shape, softmax
from nablanet.layers import Sequential
from nablanet.layers.activations import Elementwise
from nablanet.layers.base import Layer
from nablanet.losses.base import Loss

__all__ = [
    "MissingRule",
    "activations",
    "base",
    "conv",
    "dropout",
    "linear",
    "losses",
    "missing_rules",
    "needed_rules",
    "normalization",
    "pooling",
    "shape",
    "softmax",
]


class MissingRule(NamedTuple):
    """A rule the lab needs for ``cls`` and does not have."""

    cls: type
    registry: Registry

    @property
    def key(self) -> str:
        """``"LSTM.jvp"``: the class and the rule, as allow-lists name a gap."""
        return f"{self.cls.__name__}.{self.registry.quantity}"

    def __str__(self) -> str:
        return (
            f"{self.cls.__name__} has no {self.registry.quantity} rule; register one {rules_location(self.cls)} "
            f"with @{self.registry.name}.register({self.cls.__name__}) (from nablanet.lab.registry)"
        )


def needed_rules(cls: type) -> tuple[Registry, ...]:
    """The registries in which the lab needs a rule for ``cls``.

    A loss needs ``loss_hvp`` (curvature). A Sequential needs none of its own: the curvature lab
    walks the chain through its children. Every other layer, containers included, needs ``jvp`` and
    ``vjp_rop`` (curvature) and a ``per_sample_grad_norms`` rule (the generic one for ``Layer``
    covers any layer); an elementwise activation also ``d2f``.
    """
    if issubclass(cls, Loss):
        return (loss_hvp_rules,)
    if not issubclass(cls, Layer) or issubclass(cls, Sequential):
        return ()
    needed: tuple[Registry, ...] = (jvp_rules, vjp_rop_rules, per_sample_grad_norms_rules)
    if issubclass(cls, Elementwise):
        needed += (d2f_rules,)
    return needed


def missing_rules(cls: type) -> list[MissingRule]:
    """The rules the lab needs for ``cls`` (``needed_rules``) that no registry holds."""
    return [MissingRule(cls, reg) for reg in needed_rules(cls) if reg.rule_for(cls) is None]
