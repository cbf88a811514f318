"""Type-keyed rules: which function computes a quantity for which layer type.

Each instrument keeps a ``Registry``; a rule registered for a class applies to its subclasses
(looked up along the MRO). An unknown layer type fails loudly and names the types that are
known, so a new layer never silently gets a wrong answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Registry:
    """A map from layer class to the rule that computes ``quantity`` for it."""

    def __init__(self, quantity: str) -> None:
        self.quantity = quantity
        self._rules: dict[type, Callable[..., Any]] = {}

    def register(self, *classes: type) -> Callable[[F], F]:
        """Decorator: ``@registry.register(Linear)`` makes the function the rule for ``Linear``."""

        def deco(fn: F) -> F:
            for cls in classes:
                self._rules[cls] = fn
            return fn

        return deco

    def find(self, layer: Any) -> Callable[..., Any] | None:
        """The rule for ``type(layer)`` or its nearest registered base class, or None."""
        for cls in type(layer).__mro__:
            if cls in self._rules:
                return self._rules[cls]
        return None

    def __getitem__(self, layer: Any) -> Callable[..., Any]:
        rule = self.find(layer)
        if rule is None:
            known = ", ".join(sorted(c.__name__ for c in self._rules))
            raise NotImplementedError(
                f"{self.quantity}: no rule for layer type {type(layer).__name__}. Known types: {known}. "
                f"Register one with @{self.quantity}_rules.register({type(layer).__name__})."
            )
        return rule

    def __contains__(self, layer: Any) -> bool:
        return self.find(layer) is not None
