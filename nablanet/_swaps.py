"""Values swapped in for a class for a while: what ``nablanet.testing.replace_vjp`` puts in force.

A swap is pushed for a class and ends when the function ``push`` returned is called. Swaps of one
class nest, and may also end in any order (two blocks entered by hand and left the other way round):
the latest swap still active is in force, and when none is left the class has none. ``current`` is
the plain dict of what is in force, for a dispatch point to read at the cost of one lookup. Not
thread-safe: a swap is in force for the whole process, every thread included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class Swaps(Generic[V]):
    """Per class, a stack of swapped-in values; ``current[cls]`` is the one in force.

    ``on_change(cls)`` runs after every push and end, so that the owner can install what is now in
    force (or put back what was there before the first swap).
    """

    def __init__(self, on_change: Callable[[type], None] | None = None) -> None:
        self.current: dict[type, V] = {}
        self._stacks: dict[type, list[tuple[object, V]]] = {}
        self._on_change = on_change

    def push(self, cls: type, value: V) -> Callable[[], None]:
        """Put ``value`` in force for ``cls``; the returned function ends this swap (once; again is a no-op)."""
        token = object()
        stack = self._stacks.setdefault(cls, [])
        stack.append((token, value))
        self._changed(cls)

        def end() -> None:
            kept = [(t, v) for t, v in self._stacks.get(cls, []) if t is not token]
            if len(kept) == len(self._stacks.get(cls, [])):
                return
            if kept:
                self._stacks[cls] = kept
            else:
                del self._stacks[cls]
            self._changed(cls)

        return end

    def _changed(self, cls: type) -> None:
        stack = self._stacks.get(cls)
        if stack:
            self.current[cls] = stack[-1][1]
        else:
            self.current.pop(cls, None)
        if self._on_change is not None:
            self._on_change(cls)
