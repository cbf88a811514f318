"""A learning-rate callback: divide the learning rate when progress stalls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nablanet.train.callbacks.base import Callback, check_state
from nablanet.train.callbacks.monitor import Monitor, best_in, best_out, monitored


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
        self.tracker = Monitor(monitor, mode, min_delta, "ReduceLROnPlateau")
        self.factor, self.patience, self.cooldown, self.min_lr = float(factor), patience, cooldown, float(min_lr)
        self.wait = 0
        self.cooldown_left = 0

    def state_dict(self) -> dict[str, Any]:
        """The plateau bookkeeping; the lr itself lives in the optimizer's state (``lr_scale``)."""
        return {"monitor": self.tracker.monitor, "best": best_out(self.tracker.best), "wait": self.wait,
                "cooldown_left": self.cooldown_left}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(self, state, {"monitor", "best", "wait", "cooldown_left"})
        best_in(self.tracker, state, "ReduceLROnPlateau")
        self.wait, self.cooldown_left = int(state["wait"]), int(state["cooldown_left"])

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        value = monitored(logs, self.tracker.monitor, "ReduceLROnPlateau")
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
