"""Callbacks that write files: the history as CSV, the model as checkpoints (both atomically)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from typing import Any

from nablanet._io import atomic_write_text
from nablanet.train.callbacks.base import Callback, check_state
from nablanet.train.callbacks.monitor import Monitor, best_in, best_out, monitored


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
        check_state(self, state, {"rows"})
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
        self.tracker = Monitor(monitor, mode, 0.0, "ModelCheckpoint")
        self._due: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.tracker.monitor, "best": best_out(self.tracker.best)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(self, state, {"monitor", "best"})
        best_in(self.tracker, state, "ModelCheckpoint")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if self.save_best_only:
            value = monitored(logs, self.tracker.monitor, "ModelCheckpoint")
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
