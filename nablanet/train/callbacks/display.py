"""Callbacks that show progress: a progress bar per epoch, and the table of epochs ``fit(verbose=True)`` prints."""

from __future__ import annotations

import sys
from typing import Any

from nablanet.layers.base import Tape
from nablanet.train.callbacks.base import Callback


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


_COLUMNS = [("epoch", "{:>5d}"), ("loss", "{:>10.4f}"), ("accuracy", "{:>9.4f}"), ("val_loss", "{:>10.4f}"),
            ("val_error", "{:>10.4f}"), ("lr", "{:>9.3g}"), ("seconds", "{:>8.2f}")]


class EpochTable(Callback):
    """Print a row per epoch (epoch, loss, accuracy, val_loss, val_error, lr, seconds; "-" where a
    value is missing) under a header, and at the end why training stopped. ``fit(verbose=True)``
    adds one."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        widths = [len(fmt.format(0) if "d" in fmt else fmt.format(0.0)) for _, fmt in _COLUMNS]
        if not self.context.history.records:  # this is the run's first epoch
            print("  ".join(f"{name:>{w}}" for (name, _), w in zip(_COLUMNS, widths, strict=True)))
        cells = [fmt.format(logs[name]) if logs.get(name) is not None else f"{'-':>{w}}"
                 for (name, fmt), w in zip(_COLUMNS, widths, strict=True)]
        print("  ".join(cells), flush=True)

    def on_train_end(self, logs: dict[str, Any]) -> None:
        if self.context.stop_reason:
            print(f"stopped: {self.context.stop_reason}")
