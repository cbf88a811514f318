"""Ctrl-C inside ``fit``: a clean stop between optimizer steps, and a way to pass it on to an outer loop.

``fit`` catches ``KeyboardInterrupt``: training stops, the model keeps the weights after the last
completed optimizer step, the callbacks' ``on_train_end`` runs, and ``fit`` returns the History so
far with ``history.interrupted`` set. That suits one run in a notebook or a script. Code that
calls ``fit`` in a loop (studies, sweeps) wants the loop to end too: inside
``with propagate_interrupts():`` ``fit`` stops just as cleanly and then raises
``TrainingInterrupted`` (a ``KeyboardInterrupt`` carrying the History) instead of returning.

A SIGINT that arrives while the optimizer updates the weights is held until the update is
complete, so weights and optimizer state never hold half a step. ``fit`` does this with a SIGINT
handler of its own, installed only in the main thread and only while ``fit`` runs, that hands
every signal to the handler it found (Python's ``default_int_handler`` raises
``KeyboardInterrupt``; a CLI's own handler keeps working).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nablanet.train.history import History

_PROPAGATE: ContextVar[bool] = ContextVar("nablanet_propagate_interrupts", default=False)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, raised again after a clean stop; the message says what was kept and how to go on.

    The base of every such exception (a training run, a study, a sweep), so that a caller, such as
    the command line, handles them all in one place: print the message, exit with status 130.
    """


class TrainingInterrupted(Interrupted):
    """Raised by ``fit`` inside ``propagate_interrupts()`` after it stopped cleanly on Ctrl-C.

    ``history`` is what ``fit`` would have returned (``history.interrupted`` is True); ``str(exc)``
    is ``history.stop_reason``. Catch ``KeyboardInterrupt`` to handle it with any other Ctrl-C.
    """

    def __init__(self, history: History) -> None:
        super().__init__(history.stop_reason)
        self.history = history


@contextmanager
def propagate_interrupts(enabled: bool = True) -> Iterator[None]:
    """Inside this block, a ``fit`` stopped by Ctrl-C raises ``TrainingInterrupted`` after its clean stop.

    For code that calls ``fit`` in a loop, so that Ctrl-C ends the loop and not only the current
    run::

        with nn.train.propagate_interrupts():
            for cell in cells:
                history = nn.fit(...)   # Ctrl-C: this run stops cleanly, then the loop ends

    ``propagate_interrupts(False)`` turns it off again for an inner block. The setting follows the
    thread (a ``contextvars`` variable), so threads and asyncio tasks do not see each other's.
    """
    token = _PROPAGATE.set(bool(enabled))
    try:
        yield
    finally:
        _PROPAGATE.reset(token)


def interrupts_propagate() -> bool:
    """Whether a ``fit`` interrupted now would raise ``TrainingInterrupted`` (see ``propagate_interrupts``)."""
    return _PROPAGATE.get()


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Let a file being written finish before a Ctrl-C takes effect (the Ctrl-C then acts right after).

    The writes are atomic anyway; deferring keeps a second Ctrl-C from discarding the save that the
    first one asked for.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught and callable(previous):
        previous(signal.SIGINT, None)


Handler = Callable[[int, FrameType | None], Any]


class StepShield:
    """While ``fit`` runs: SIGINT inside an optimizer step is delivered once the step is complete.

    Set ``in_step`` around the step, then call ``deliver()``. Installs nothing outside the main
    thread (signals only reach the main thread) or when SIGINT is ignored or has the default OS
    action (Ctrl-C then does not raise at all).
    """

    def __init__(self) -> None:
        self.in_step = False
        self._pending: tuple[int, FrameType | None] | None = None
        self._previous: Handler | None = None

    def __enter__(self) -> StepShield:
        if threading.current_thread() is threading.main_thread():
            found = signal.getsignal(signal.SIGINT)
            if callable(found):
                self._previous = found
                signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.in_step:
            self._pending = (signum, frame)
            return
        if self._previous is not None:
            self._previous(signum, frame)

    def deliver(self) -> None:
        """Hand a SIGINT held during the step to the handler ``fit`` found (which may raise)."""
        if self._pending is not None and self._previous is not None:
            signum, frame = self._pending
            self._pending = None
            self._previous(signum, frame)

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            if signal.getsignal(signal.SIGINT) == self._handle:  # else someone installed theirs since: keep it
                signal.signal(signal.SIGINT, self._previous)
            self._previous = None
