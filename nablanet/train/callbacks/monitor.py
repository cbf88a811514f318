"""What the monitoring callbacks share: "has the monitored value improved by more than min_delta?"."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def best_out(best: float) -> float | None:
    return None if math.isinf(best) else best  # the untouched start value; JSON has no infinity


def best_in(tracker: Monitor, state: Mapping[str, Any], who: str) -> None:
    if state["monitor"] != tracker.monitor:
        raise ValueError(
            f"{who}.load_state_dict: the state was saved by a callback monitoring {state['monitor']!r}, this one "
            f"monitors {tracker.monitor!r}. Fix: build the callbacks as for the saved run, in the same order."
        )
    best = state["best"]
    tracker.best = (math.inf if tracker.mode == "min" else -math.inf) if best is None else float(best)


def mode_of(monitor: str, mode: str, who: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who}(mode={mode!r}): expected 'auto', 'min' or 'max'")
    if mode != "auto":
        return mode
    return "max" if "acc" in monitor else "min"


def monitored(logs: dict[str, Any], monitor: str, who: str) -> float:
    value = logs.get(monitor)
    if value is None:
        have = sorted(k for k, v in logs.items() if v is not None)
        hint = " Pass validation=(x, y) or validation_split to fit." if monitor.startswith("val_") else ""
        raise ValueError(f"{who}(monitor={monitor!r}): the epoch logs have no {monitor!r}; they have {have}.{hint}")
    return float(value)


class Monitor:
    """Shared 'has the monitored value improved by more than min_delta?' logic."""

    def __init__(self, monitor: str, mode: str, min_delta: float, who: str) -> None:
        if not min_delta >= 0:
            raise ValueError(f"{who}(min_delta={min_delta!r}): expected a number >= 0")
        self.monitor, self.who = monitor, who
        self.mode = mode_of(monitor, mode, who)
        self.min_delta = float(min_delta)
        self.best = math.inf if self.mode == "min" else -math.inf

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta
