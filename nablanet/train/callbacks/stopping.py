"""Callbacks that stop training: early stopping, a NaN watch, and the notes' two tolerances."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from nablanet.layers.base import Layer, Tape
from nablanet.train.callbacks.base import Callback, check_state
from nablanet.train.callbacks.monitor import Monitor, best_in, best_out, monitored


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
        self.tracker = Monitor(monitor, mode, min_delta, "EarlyStopping")
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self.best_weights: dict[str, np.ndarray] | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self._loaded = False

    def state_dict(self) -> dict[str, Any]:
        weights = None if self.best_weights is None else {k: v.copy() for k, v in self.best_weights.items()}
        return {"monitor": self.tracker.monitor, "best": best_out(self.tracker.best), "wait": self.wait,
                "best_epoch": self.best_epoch, "best_weights": weights}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(self, state, {"monitor", "best", "wait", "best_epoch", "best_weights"})
        best_in(self.tracker, state, "EarlyStopping")
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
        value = monitored(logs, self.tracker.monitor, "EarlyStopping")
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


class LossTolerance(Callback):
    """The notes' stopping rule on the loss: stop after epoch e when |Lₑ − Lₑ₋₁| < ``tol``, Lₑ the
    epoch's mean training loss. ``fit(tol_loss=tol)`` adds one. A continued history gives Lₑ₋₁ for
    the first epoch of a resumed run, as the uninterrupted run had it."""

    def __init__(self, tol: float) -> None:
        self.tol = tol
        self.previous: float | None = None

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        records = self.context.history.records
        self.previous = records[-1].get("loss") if records else None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if self.previous is not None and abs(logs["loss"] - self.previous) < self.tol:
            self.context.stop(f"|L_e - L_e-1| = {abs(logs['loss'] - self.previous):.3g} < tol_loss={self.tol}")
        self.previous = logs["loss"]


class WeightTolerance(Callback):
    """The notes' stopping rule on the weights: stop after epoch e when ‖wₑ − wₑ₋₁‖ < ``tol``, w all
    the model's parameters as one vector. ``fit(tol_weights=tol)`` adds one."""

    def __init__(self, tol: float) -> None:
        self.tol = tol
        self.previous: np.ndarray | None = None

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.previous = _flat_weights(self.context.model)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        w = _flat_weights(self.context.model)
        if self.previous is not None:
            step = np.linalg.norm(w - self.previous)
            if step < self.tol:
                self.context.stop(f"||w_e - w_e-1|| = {step:.3g} < tol_weights={self.tol}")
        self.previous = w


def _flat_weights(model: Layer) -> np.ndarray:
    return np.concatenate([p.data.ravel().astype(np.float64) for p in model.parameters()])
