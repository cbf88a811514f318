"""The divergence guard of ``fit``: a NaN or an infinite loss stops training with the last finite weights.

Before each optimizer step the guard copies the weights into arrays of its own, allocated once;
when the next loss is not finite (the step diverged) or the step itself is cut short (a
``KeyboardInterrupt`` raised inside it), it copies them back. The optimizer knows nothing of it:
any object with ``step()`` works, and each parameter keeps its own array throughout. The copy is
one pass over the weights per step, cheaper than the step it protects.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from nablanet.losses.base import Loss
from nablanet.parameter import Parameter


class DivergenceGuard:
    """The weights before the last optimizer step: w_t, whose loss was finite, while w_{t+1} is tried."""

    def __init__(self, params: Iterable[Parameter]) -> None:
        self.params = list(params)
        self.saved = [p.data.copy() for p in self.params]  # before any step: the weights of the first forward pass

    def step(self, optimizer: Any) -> None:
        """Keep the weights, then ``optimizer.step()``; a step that raises is undone before the error goes on."""
        for p, saved in zip(self.params, self.saved, strict=True):
            np.copyto(saved, p.data)
        try:
            optimizer.step()
        except BaseException:
            self.restore()
            raise

    def restore(self) -> None:
        """Put back the weights from before the last step."""
        for p, saved in zip(self.params, self.saved, strict=True):
            np.copyto(p.data, saved)


def divergence_message(value: Any, epoch: int, batch: int, loss: Loss, yb: np.ndarray) -> str:
    """``stop_reason`` when the loss of (epoch, batch) is not finite; names the cause when the labels are."""
    ignore = getattr(loss, "ignore_index", None)
    if ignore is not None and yb.ndim >= 1 and yb.dtype.kind in "iu" and bool((yb == ignore).all()):
        return (f"loss became {value} at epoch {epoch}, batch {batch}: every label of the batch is the loss's "
                f"ignore_index={ignore}, so there is nothing to average over. Restored the last weights that gave a "
                "finite loss. Fix: check the labels (a batch must hold at least one label that is not ignore_index).")
    return (f"loss became {value} at epoch {epoch}, batch {batch}; restored the last weights "
            "that gave a finite loss. Lower the learning rate or check the data.")
