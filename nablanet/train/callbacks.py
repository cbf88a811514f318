"""Keras-like callbacks: a handful of hooks, a ``logs`` dict, and a ``stop_training`` flag.

Hooks (all optional): ``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``,
``on_batch_end(step, logs, tape)``, ``on_epoch_end(epoch, logs)``, ``on_train_end(logs)``.
``on_batch_end`` receives the step's backward tape (see ``nablanet.layers.TapeEntry``), so
instruments can read gradients without a second backward pass. A callback sees the run through
``self.context`` (model, loss, optimizer, history) and stops it with ``self.context.stop(reason)``.
Batch logs hold ``loss`` (this batch), ``lr``, ``epoch``, ``batch``, ``size``; epoch logs are the
epoch's History record, which callbacks may extend.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
    def on_train_end(self, logs: dict[str, Any]) -> None: ...


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

    def on_train_begin(self, logs: dict[str, Any]) -> None:
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
        if self.restore_best_weights and self.best_weights is not None:
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


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file via a temporary file in the same folder and an atomic rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class CSVLogger(Callback):
    """Write the history as CSV (one row per epoch), rewritten atomically after every epoch."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        rows = [*self.context.history.to_records(), logs]
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, buf.getvalue())


class ModelCheckpoint(Callback):
    """Save the model (and optimizer) with ``nablanet.save`` after each epoch, or only when
    ``monitor`` improves (``save_best_only``). ``path`` may contain ``{epoch}``."""

    def __init__(
        self, path: str | os.PathLike[str], monitor: str = "val_loss", save_best_only: bool = False,
        mode: str = "auto", save_optimizer: bool = True,
    ) -> None:
        self.path = str(path)
        self.save_best_only = save_best_only
        self.save_optimizer = save_optimizer
        self.tracker = _Monitor(monitor, mode, 0.0, "ModelCheckpoint")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        from nablanet.train.checkpoint import save

        if self.save_best_only:
            value = _monitored(logs, self.tracker.monitor, "ModelCheckpoint")
            if not self.tracker.improved(value):
                return
            self.tracker.best = value
        opt = self.context.optimizer if self.save_optimizer else None
        save(self.context.model, self.path.format(epoch=epoch), optimizer=opt, extra={"epoch": epoch})


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
