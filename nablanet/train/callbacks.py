"""Keras-like callbacks: a handful of hooks, a ``logs`` dict, and a ``stop_training`` flag.

Hooks (all optional): ``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``,
``on_batch_end(step, logs, tape)``, ``on_epoch_end(epoch, logs)``, ``on_epoch_complete(epoch, logs)``,
``on_train_end(logs)``. ``on_batch_end`` receives the step's backward tape (see
``nablanet.layers.TapeEntry``), so instruments can read gradients without a second backward pass;
``step`` is ``epoch * batches_per_epoch + batch``, so it continues across a resumed run.
``on_epoch_complete`` runs once every callback's ``on_epoch_end`` has run and the record is in the
history: the state there is the epoch boundary a run can be resumed from. ``on_train_end``'s logs
hold ``interrupted`` (True after Ctrl-C) and ``stop_reason``. A callback sees the run through
``self.context`` (model, loss, optimizer, history, callbacks) and stops it with
``self.context.stop(reason)``. Batch logs hold ``loss`` (this batch), ``lr``, ``epoch``, ``batch``,
``size``; epoch logs are the epoch's History record, which callbacks may extend.

State (for resuming): ``state_dict()`` gives a dict of JSON values and NumPy arrays (nested in
dicts and lists), ``load_state_dict(state)`` puts it back; ``nablanet.save(..., callbacks=[...])``
stores them. A callback that a fresh ``fit`` would reset in ``on_train_begin`` (EarlyStopping,
CSVLogger) keeps a loaded state through the next ``on_train_begin``. Files are written with
``nablanet._io`` (atomically: Ctrl-C during a write leaves the previous file as it was).
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nablanet._io import atomic_write_text as atomic_write_text  # re-exported: older imports name it here
from nablanet._validation import a_type
from nablanet.layers.base import Layer, Tape
from nablanet.losses.base import Loss
from nablanet.train.history import History


@dataclass
class TrainingContext:
    """What a callback can see and change during ``fit``."""

    model: Layer
    loss: Loss
    optimizer: Any
    history: History
    stop_training: bool = False
    stop_reason: str | None = None
    last_good_weights: dict[str, np.ndarray] | None = field(default=None, repr=False)
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
        _check_state(self, state, set())


def _check_state(cb: Callback, state: Any, keys: set[str]) -> None:
    who = f"{type(cb).__name__}.load_state_dict"
    if not isinstance(state, Mapping):
        raise TypeError(f"{who} received {a_type(state)}; expected the dict that state_dict() gave")
    if set(state) != keys:
        raise ValueError(
            f"{who} received keys {sorted(state)}; expected {sorted(keys)}. Fix: load the states in the order of "
            "the callbacks they were saved from (Checkpoint.callback_states lists one per callback given to save)."
        )


def _best_out(best: float) -> float | None:
    return None if math.isinf(best) else best  # the untouched start value; JSON has no infinity


def _best_in(tracker: _Monitor, state: Mapping[str, Any], who: str) -> None:
    if state["monitor"] != tracker.monitor:
        raise ValueError(
            f"{who}.load_state_dict: the state was saved by a callback monitoring {state['monitor']!r}, this one "
            f"monitors {tracker.monitor!r}. Fix: build the callbacks as for the saved run, in the same order."
        )
    best = state["best"]
    tracker.best = (math.inf if tracker.mode == "min" else -math.inf) if best is None else float(best)


def _mode(monitor: str, mode: str, who: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who}(mode={mode!r}): expected 'auto', 'min' or 'max'")
    if mode != "auto":
        return mode
    return "max" if "acc" in monitor else "min"


def _monitored(logs: dict[str, Any], monitor: str, who: str) -> float:
    value = logs.get(monitor)
    if value is None:
        have = sorted(k for k, v in logs.items() if v is not None)
        hint = " Pass validation=(x, y) or validation_split to fit." if monitor.startswith("val_") else ""
        raise ValueError(f"{who}(monitor={monitor!r}): the epoch logs have no {monitor!r}; they have {have}.{hint}")
    return float(value)


class _Monitor:
    """Shared 'has the monitored value improved by more than min_delta?' logic."""

    def __init__(self, monitor: str, mode: str, min_delta: float, who: str) -> None:
        if not min_delta >= 0:
            raise ValueError(f"{who}(min_delta={min_delta!r}): expected a number >= 0")
        self.monitor, self.who = monitor, who
        self.mode = _mode(monitor, mode, who)
        self.min_delta = float(min_delta)
        self.best = math.inf if self.mode == "min" else -math.inf

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` (default: the validation 0-1 error, the notes' early termination) has
    not improved by more than ``min_delta`` for ``patience`` epochs. With ``restore_best_weights``
    the model ends with the weights of its best epoch."""

    def __init__(
        self, monitor: str = "val_error", min_delta: float = 0.0, patience: int = 0, mode: str = "auto",
        restore_best_weights: bool = False,
    ) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping(patience={patience!r}): expected an int >= 0")
        self.tracker = _Monitor(monitor, mode, min_delta, "EarlyStopping")
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self.best_weights: dict[str, np.ndarray] | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self._loaded = False

    def state_dict(self) -> dict[str, Any]:
        weights = None if self.best_weights is None else {k: v.copy() for k, v in self.best_weights.items()}
        return {"monitor": self.tracker.monitor, "best": _best_out(self.tracker.best), "wait": self.wait,
                "best_epoch": self.best_epoch, "best_weights": weights}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        _check_state(self, state, {"monitor", "best", "wait", "best_epoch", "best_weights"})
        _best_in(self.tracker, state, "EarlyStopping")
        self.wait = int(state["wait"])
        self.best_epoch = None if state["best_epoch"] is None else int(state["best_epoch"])
        weights = state["best_weights"]
        self.best_weights = None if weights is None else {k: np.array(v) for k, v in weights.items()}
        self._loaded = True  # the next on_train_begin resumes instead of starting afresh

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        if self._loaded:
            self._loaded = False
            return
        self.tracker.best = math.inf if self.tracker.mode == "min" else -math.inf
        self.wait, self.best_weights, self.best_epoch = 0, None, None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        value = _monitored(logs, self.tracker.monitor, "EarlyStopping")
        if self.tracker.improved(value):
            self.tracker.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.context.model.state_dict()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.context.stop(
                f"early stopping: {self.tracker.monitor} has not improved for {self.wait} epochs "
                f"(best {self.tracker.best:.6g} at epoch {self.best_epoch})"
            )

    def on_train_end(self, logs: dict[str, Any]) -> None:
        # After Ctrl-C the run is unfinished: the model keeps its last weights, so that the run can go on
        if self.restore_best_weights and self.best_weights is not None and not logs.get("interrupted"):
            self.context.model.load_state_dict(self.best_weights)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` (default 0.1: the notes' "divide by 10 when progress
    stalls") when ``monitor`` has not improved for ``patience`` epochs; then wait ``cooldown`` epochs;
    never go below ``min_lr``. Acts through ``optimizer.lr_scale``, so it composes with schedules."""

    def __init__(
        self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, min_delta: float = 1e-4,
        cooldown: int = 0, min_lr: float = 0.0, mode: str = "auto",
    ) -> None:
        if not 0 < factor < 1:
            raise ValueError(f"ReduceLROnPlateau(factor={factor!r}): expected 0 < factor < 1, e.g. 0.1")
        if patience < 0 or cooldown < 0 or min_lr < 0:
            raise ValueError("ReduceLROnPlateau: patience, cooldown and min_lr must be >= 0")
        self.tracker = _Monitor(monitor, mode, min_delta, "ReduceLROnPlateau")
        self.factor, self.patience, self.cooldown, self.min_lr = float(factor), patience, cooldown, float(min_lr)
        self.wait = 0
        self.cooldown_left = 0

    def state_dict(self) -> dict[str, Any]:
        """The plateau bookkeeping; the lr itself lives in the optimizer's state (``lr_scale``)."""
        return {"monitor": self.tracker.monitor, "best": _best_out(self.tracker.best), "wait": self.wait,
                "cooldown_left": self.cooldown_left}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        _check_state(self, state, {"monitor", "best", "wait", "cooldown_left"})
        _best_in(self.tracker, state, "ReduceLROnPlateau")
        self.wait, self.cooldown_left = int(state["wait"]), int(state["cooldown_left"])

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        value = _monitored(logs, self.tracker.monitor, "ReduceLROnPlateau")
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self.tracker.improved(value):
            self.tracker.best, self.wait = value, 0
            return
        if self.cooldown_left > 0:
            return
        self.wait += 1
        if self.wait >= self.patience:
            opt = self.context.optimizer
            current = float(opt.current("lr"))
            new = max(current * self.factor, self.min_lr)
            if current > 0 and new < current:
                opt.lr_scale = opt.lr_scale * (new / current)
            self.cooldown_left, self.wait = self.cooldown, 0


class TerminateOnNaN(Callback):
    """Stop as soon as a batch loss or an epoch's ``val_loss`` is NaN/inf; ``fit`` then restores the
    last weights that gave a finite loss. (``fit`` always stops on a non-finite training loss; this
    callback also watches the validation loss.)"""

    def on_batch_end(self, step: int, logs: dict[str, Any], tape: Tape) -> None:
        if not math.isfinite(logs["loss"]):
            self.context.stop(f"TerminateOnNaN: loss {logs['loss']} at step {step}")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        v = logs.get("val_loss")
        if v is not None and not math.isfinite(v):
            self.context.stop(f"TerminateOnNaN: val_loss {v} at epoch {epoch}")


class CSVLogger(Callback):
    """Write the history as CSV (one row per epoch), rewritten atomically after every epoch.

    The rows start with those of the History ``fit`` continues (``fit(history=...)``), or with the
    rows of a loaded state, so a resumed run's file holds every epoch."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self._loaded = False

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        _check_state(self, state, {"rows"})
        rows = state["rows"]
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
            raise TypeError("CSVLogger.load_state_dict: 'rows' must be a list of dicts, as state_dict() gives")
        self.rows = [dict(r) for r in rows]
        self._loaded = True

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        if self._loaded:
            self._loaded = False
            return
        self.rows = self.context.history.to_records()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self.rows.append(dict(logs))
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue(), what="the history CSV")


class ModelCheckpoint(Callback):
    """Save the model (and optimizer) with ``nablanet.save`` after each epoch, or only when
    ``monitor`` improves (``save_best_only``). ``path`` may contain ``{epoch}``.

    ``save_training_state=True`` makes each file a point to resume from: it also holds every
    callback's state and the history, saved at the epoch boundary (``on_epoch_complete``, after
    all callbacks and the epoch's record), and ``extra`` holds ``{"epoch": e, "next_epoch": e + 1}``.
    Resume with ``ck = nn.load_checkpoint(path)``, ``optimizer.load_state_dict(ck.optimizer_state)``,
    ``cb.load_state_dict(state)`` for each of ``ck.callback_states``, then ``nn.fit(ck.model, ...,
    initial_epoch=ck.extra["next_epoch"], epochs=N - ck.extra["next_epoch"], history=ck.history)``.
    Files are written atomically: Ctrl-C during a save leaves the previous file as it was.
    """

    def __init__(
        self, path: str | os.PathLike[str], monitor: str = "val_loss", save_best_only: bool = False,
        mode: str = "auto", save_optimizer: bool = True, save_training_state: bool = False,
    ) -> None:
        self.path = str(path)
        self.save_best_only = save_best_only
        self.save_optimizer = save_optimizer
        self.save_training_state = save_training_state
        self.tracker = _Monitor(monitor, mode, 0.0, "ModelCheckpoint")
        self._due: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.tracker.monitor, "best": _best_out(self.tracker.best)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        _check_state(self, state, {"monitor", "best"})
        _best_in(self.tracker, state, "ModelCheckpoint")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if self.save_best_only:
            value = _monitored(logs, self.tracker.monitor, "ModelCheckpoint")
            if not self.tracker.improved(value):
                return
            self.tracker.best = value
        if self.save_training_state:
            self._due = epoch  # saved once the epoch is complete
        else:
            self._save(epoch, training_state=False)

    def on_epoch_complete(self, epoch: int, logs: dict[str, Any]) -> None:
        if self._due == epoch:
            self._due = None
            self._save(epoch, training_state=True)

    def _save(self, epoch: int, training_state: bool) -> None:
        from nablanet.train.checkpoint import save

        opt = self.context.optimizer if self.save_optimizer else None
        path = self.path.format(epoch=epoch)
        if not training_state:
            save(self.context.model, path, optimizer=opt, extra={"epoch": epoch})
            return
        save(self.context.model, path, optimizer=opt, extra={"epoch": epoch, "next_epoch": epoch + 1},
             callbacks=self.context.callbacks, history=self.context.history)


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


class ProgressBar(Callback):
    """A per-epoch progress bar with the batch loss and lr (tqdm). Off when stdout is not a TTY
    (logs, CI) unless ``force=True``; needs ``pip install tqdm``."""

    def __init__(self, force: bool = False) -> None:
        self.enabled = force or sys.stdout.isatty()
        self._bar: Any = None
        self._n_batches = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None:
        if not self.enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError as exc:
            raise ImportError("ProgressBar needs tqdm: pip install tqdm") from exc
        self._bar = tqdm(total=logs.get("batches"), desc=f"epoch {epoch}", leave=False, file=sys.stdout)

    def on_batch_end(self, step: int, logs: dict[str, Any], tape: Tape) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{logs['loss']:.4g}", lr=f"{logs['lr']:.3g}")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
