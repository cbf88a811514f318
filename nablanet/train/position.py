"""Where ``fit`` stands, kept for Ctrl-C: what ``history.interrupted_at`` and ``stop_reason`` then say."""

from __future__ import annotations


class Position:
    """The epoch, the batches of it completed and in it, the steps taken by this ``fit`` call, and
    whether a step has begun and not ended (a KeyboardInterrupt inside it had the step undone)."""

    def __init__(self, first_epoch: int) -> None:
        self.first_epoch = first_epoch
        self.epoch: int | None = None
        self.batch = 0
        self.batches = 0
        self.steps = 0
        self.in_step = False

    def begin_epoch(self, epoch: int, batches: int) -> None:
        self.epoch, self.batch, self.batches = epoch, 0, batches

    def step_done(self) -> None:
        self.in_step = False
        self.batch += 1
        self.steps += 1

    def interrupted_at(self) -> dict[str, int]:
        """``{"epoch": e, "batch": b, "batches": n}``: b of epoch e's n batches were completed."""
        epoch = self.first_epoch if self.epoch is None else self.epoch
        return {"epoch": epoch, "batch": self.batch, "batches": self.batches}

    def interrupt_message(self) -> str:
        """The ``stop_reason`` after Ctrl-C: where training stood and which weights the model has."""
        if self.epoch is None:
            return "interrupted (KeyboardInterrupt) before the first epoch began; the weights are unchanged"
        if self.batch >= self.batches:
            where = (f"in epoch {self.epoch} after its last batch ({self.batch} of {self.batches}), before the "
                     "epoch's record was complete")
        else:
            where = f"in epoch {self.epoch} after {self.batch} of {self.batches} batches"
        weights = "the weights are those after the last completed step" if self.steps else "the weights are unchanged"
        if self.in_step:
            weights += " (the interrupted step was undone; the optimizer's state may hold part of it)"
        return f"interrupted (KeyboardInterrupt) {where}; {weights}"
