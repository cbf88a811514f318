"""``nablanet train --out DIR``: the run folder — never overwritten by accident, checkpointed every epoch, resumable.

A run folder holds ``model.npz`` (the final or interrupted weights), ``history.csv``, ``curves.png``
and ``checkpoint.npz``: the state at the end of the last finished epoch (model, optimizer and
callback states, the history, and the flags of the run). ``--resume`` continues from that
checkpoint; since ``fit`` seeds epoch e's shuffle by (seed, e), the continued run is the
uninterrupted one bit for bit.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nablanet._io import folder_problem
from nablanet.train.callbacks import Callback
from nablanet.train.interrupts import sigint_deferred

RUN_FILES = ("model.npz", "history.csv", "curves.png", "checkpoint.npz")
CHECKPOINT = "checkpoint.npz"
EXTRA_KEY = "nablanet_train"

RUN_FLAGS = ("data", "mnist_subset", "model", "hidden", "channels", "activation", "loss", "optimizer", "lr",
             "momentum", "nesterov", "sutskever", "weight_decay", "schedule", "schedule_steps", "gamma", "batch_size",
             "early_stopping", "reduce_lr", "seed", "dtype")
"""The flags that define a run: ``--resume`` takes them from the run and refuses different ones."""
KEPT_FLAGS = ("data_root",)
"""Flags a resumed run takes from the run when left out, but may change (the same files elsewhere)."""


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    if value is True:
        return "on"
    if value is False:
        return "off"
    return "the default" if value is None else str(value)


def check_out(path: Path) -> None:
    """Refuse, before any work, an ``--out`` that is a file, lies under a file, or cannot be written."""
    problem = folder_problem(path)
    if problem is not None:
        raise ValueError(f"--out {path}: {problem}; a run writes a folder of files (model.npz, history.csv, "
                         "curves.png, checkpoint.npz). Fix: choose a folder you can write to")


def make_out(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {path}: cannot create the folder ({exc.strerror or exc}); choose a folder you "
                         "can write to") from None


def run_files(path: Path) -> list[str]:
    return [name for name in RUN_FILES if (path / name).exists()]


def remove_run(path: Path) -> None:
    """``--overwrite``: the old run's files go before the new run writes any, so no mix remains."""
    for name in RUN_FILES:
        (path / name).unlink(missing_ok=True)


@dataclass
class Resume:
    """Where the run in ``--out`` stood at the end of its last finished epoch."""

    checkpoint: Any  # nablanet.train.checkpoint.Checkpoint
    epochs_done: int
    info: dict[str, Any]


def prepare(args: argparse.Namespace) -> Resume | None:
    """Apply ``--out``/``--resume``/``--overwrite``: refuse, or return the run to continue (args completed)."""
    out: Path | None = args.out
    if out is None:
        for name in ("resume", "overwrite"):
            if getattr(args, name):
                raise ValueError(f"--{name} needs --out DIR, the folder of the run")
        return None
    if args.resume and args.overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it; pass one of them")
    check_out(out)
    present = run_files(out) if out.is_dir() else []
    if args.resume:
        return _load_resume(args, out, present)
    if present and not args.overwrite:
        raise ValueError(f"--out {out} already holds a run ({', '.join(present)}); pass --resume to continue it, "
                         "--overwrite to replace it, or choose another folder")
    return None


def _load_resume(args: argparse.Namespace, out: Path, present: list[str]) -> Resume:
    import nablanet as nn

    path = out / CHECKPOINT
    if not path.exists():
        if present:
            raise ValueError(f"--resume: {out} holds {', '.join(present)} but no {CHECKPOINT}, so no epoch of that run "
                             "finished (or an older nablanet wrote it); start it again with --overwrite")
        raise ValueError(f"--resume: {out} holds no run ({CHECKPOINT} is missing); leave out --resume to start one")
    checkpoint = nn.load_checkpoint(path)
    info = checkpoint.extra.get(EXTRA_KEY)
    if not isinstance(info, dict) or not isinstance(info.get("args"), dict):
        raise ValueError(f"--resume: {path} was not written by nablanet train; resume from a folder that "
                         "nablanet train --out wrote")
    stored: dict[str, Any] = info["args"]
    explicit: frozenset[str] = args.explicit
    differ = [f"{flag(k)} {_shown(getattr(args, k))} (the run has {_shown(stored.get(k))})"
              for k in RUN_FLAGS if k in explicit and getattr(args, k) != stored.get(k)]
    if differ:
        raise ValueError(f"--resume: {'; '.join(differ)}; a resumed run keeps the flags it was started with "
                         f"(leave them out, or start a new run in another --out)")
    for k in (*RUN_FLAGS, *KEPT_FLAGS):
        if k not in explicit and k in stored:
            setattr(args, k, stored[k] if k != "data_root" or stored[k] is None else Path(stored[k]))
    done, total = int(info["epochs_done"]), int(info["epochs"])
    if info.get("stopped"):
        raise ValueError(f"--resume: the run in {out} ended after epoch {done - 1}: {info['stopped']}; there is "
                         "nothing to continue. Fix: start a new run with --overwrite, or in another --out")
    if "epochs" not in explicit:
        args.epochs = total
    if args.epochs <= done:
        asked = f" and --epochs {args.epochs} asks for no more" if "epochs" in explicit else ""
        raise ValueError(f"--resume: the run in {out} has finished {done} epochs (of the {total} it was started "
                         f"with){asked}. Fix: pass --epochs N with N > {done} to train on")
    return Resume(checkpoint, done, info)


def restore(resume: Resume, model: Any, optimizer: Any, stateful: list[Callback], splits: str) -> tuple[int, Any]:
    """Load the checkpoint's weights and states into the run just built; return (initial_epoch, history)."""
    ck, info = resume.checkpoint, resume.info
    if info.get("splits") != splits:
        raise ValueError(f"--resume: the data differ from the run's ({splits}; the run had {info.get('splits')}); "
                         "a resumed run must see the same data. Fix: point --data-root at the run's files")
    model.load_state_dict(ck.model.state_dict())
    optimizer.load_state_dict(ck.optimizer_state)
    states = ck.callback_states or []
    if len(states) != len(stateful):
        raise ValueError(f"--resume: the checkpoint holds {len(states)} callback states, this run has "
                         f"{len(stateful)} callbacks; it was written by another version of nablanet train. Fix: "
                         "start a new run with --overwrite")
    for cb, state in zip(stateful, states, strict=True):
        cb.load_state_dict(state)
    return resume.epochs_done, ck.history


def run_args(args: argparse.Namespace) -> dict[str, Any]:
    """The flags recorded in each checkpoint, as JSON values."""
    stored = {k: getattr(args, k) for k in (*RUN_FLAGS, *KEPT_FLAGS)}
    if stored["data_root"] is not None:
        stored["data_root"] = str(stored["data_root"])
    return stored


class EpochCheckpoint(Callback):
    """Write ``checkpoint.npz`` once an epoch is complete: what ``--resume`` continues from.

    Written in ``on_epoch_complete``, after every callback has seen the epoch, so the states are the
    ones the next epoch starts from and a stop asked for in this epoch (early stopping) is recorded.
    """

    def __init__(self, path: Path, args: dict[str, Any], epochs: int, stateful: list[Callback],
                 splits: str) -> None:
        self.path, self.args, self.epochs, self.stateful, self.splits = path, args, epochs, stateful, splits
        self.epochs_done: int | None = None  # of the last checkpoint written by this run


    def on_epoch_complete(self, epoch: int, logs: dict[str, Any]) -> None:
        import nablanet as nn

        ctx = self.context
        info = {"epochs_done": epoch + 1, "epochs": self.epochs, "args": self.args, "splits": self.splits,
                "stopped": ctx.stop_reason if ctx.stop_training else None}
        with sigint_deferred():
            nn.save(ctx.model, self.path, optimizer=ctx.optimizer, extra={EXTRA_KEY: info},
                    callbacks=self.stateful, history=ctx.history)
            self.epochs_done = epoch + 1
