"""The callback protocol: ``Callback`` (the hooks), ``TrainingContext`` (what a callback sees),
``CallbackList`` (many as one) and ``LambdaCallback`` (a callback from plain functions)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nablanet._validation import a_type
from nablanet.layers.base import Layer, Tape
from nablanet.losses.base import Loss
from nablanet.train.history import History


@dataclass
class TrainingContext:
    """What a callback can see and change during ``fit``. ``callbacks`` are those passed to ``fit``
    (the ones whose states a checkpoint saves), not those ``fit`` adds for its own arguments."""

    model: Layer
    loss: Loss
    optimizer: Any
    history: History
    stop_training: bool = False
    stop_reason: str | None = None
    callbacks: list[Callback] = field(default_factory=list, repr=False)

    def stop(self, reason: str) -> None:
        """Ask ``fit`` to stop after the current batch; the first reason given is kept."""
        self.stop_training = True
        if self.stop_reason is None:
            self.stop_reason = reason


class Callback:
    """Base class; override the hooks you need."""

    context: TrainingContext

    def set_context(self, context: TrainingContext) -> None:
        self.context = context

    def on_train_begin(self, logs: dict[str, Any]) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None: ...
    def on_batch_end(self, step: int, logs: dict[str, Any], tape: Tape) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None: ...
    def on_epoch_complete(self, epoch: int, logs: dict[str, Any]) -> None: ...
    def on_train_end(self, logs: dict[str, Any]) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs of this callback: JSON values and NumPy arrays. None here."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Put back what ``state_dict()`` gave."""
        check_state(self, state, set())


class CallbackList(Callback):
    """Several callbacks as one: each hook calls theirs in order (``fit`` calls its callbacks through one)."""

    def __init__(self, callbacks: Iterable[Callback], context: TrainingContext) -> None:
        self.callbacks = list(callbacks)
        self.set_context(context)
        for cb in self.callbacks:
            cb.set_context(context)

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_batch_end(self, step: int, logs: dict[str, Any], tape: Tape) -> None:
        for cb in self.callbacks:
            cb.on_batch_end(step, logs, tape)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_epoch_complete(self, epoch: int, logs: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_complete(epoch, logs)

    def on_train_end(self, logs: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_train_end(logs)


def check_state(cb: Callback, state: Any, keys: set[str]) -> None:
    who = f"{type(cb).__name__}.load_state_dict"
    if not isinstance(state, Mapping):
        raise TypeError(f"{who} received {a_type(state)}; expected the dict that state_dict() gave")
    if set(state) != keys:
        raise ValueError(
            f"{who} received keys {sorted(state)}; expected {sorted(keys)}. Fix: load the states in the order of "
            "the callbacks they were saved from (Checkpoint.callback_states lists one per callback given to save)."
        )


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=lambda e, logs: ...)``."""

    def __init__(
        self,
        on_train_begin: Callable[[dict[str, Any]], None] | None = None,
        on_epoch_begin: Callable[[int, dict[str, Any]], None] | None = None,
        on_batch_end: Callable[[int, dict[str, Any], Tape], None] | None = None,
        on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
        on_train_end: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._train_begin, self._epoch_begin = on_train_begin, on_epoch_begin
        self._batch_end, self._epoch_end, self._train_end = on_batch_end, on_epoch_end, on_train_end

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        if self._train_begin is not None:
            self._train_begin(logs)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None:
        if self._epoch_begin is not None:
            self._epoch_begin(epoch, logs)

    def on_batch_end(self, step: int, logs: dict[str, Any], tape: Tape) -> None:
        if self._batch_end is not None:
            self._batch_end(step, logs, tape)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if self._epoch_end is not None:
            self._epoch_end(epoch, logs)

    def on_train_end(self, logs: dict[str, Any]) -> None:
        if self._train_end is not None:
            self._train_end(logs)
