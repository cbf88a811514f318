"""What keeps a verdict honest: a run that did not learn is not a finding, and a claim about training
carries its spread over seeds.

* ``learned(accuracy, n_classes)``: False when an accuracy is within ``CHANCE_MARGIN`` of chance
  (1/C); ``stuck(initial, final)``: True when a loss ended where it started.
* ``did_not_learn(what, accuracy, n_classes, fix)``: the sentence a verdict says in place of a
  finding when the run did not learn, with what to change.
* ``over_seeds(values)``: "0.93 ± 0.01 (3 seeds: 0.92–0.94)" for a claim that rests on several runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CHANCE_MARGIN = 0.05
"""An accuracy within this of chance (1/C) counts as "did not learn" (5 points)."""
STUCK_RTOL = 0.02
"""A loss that fell by less than this fraction of its initial value "did not move"."""


def learned(accuracy: float, n_classes: int, margin: float = CHANCE_MARGIN) -> bool:
    """True when ``accuracy`` is more than ``margin`` above chance, 1/``n_classes``."""
    return float(accuracy) > 1.0 / n_classes + margin


def stuck(initial: float, final: float, rtol: float = STUCK_RTOL) -> bool:
    """True when the loss ended within ``rtol`` (relative) of where it started, or above it."""
    return float(final) > float(initial) * (1.0 - rtol)


def did_not_learn(what: str, accuracy: float, n_classes: int, fix: str) -> str:
    """The verdict's sentence for a run at chance level: it says so, and what to change."""
    return (f"{what} ended at {accuracy:.1%} accuracy, within {CHANCE_MARGIN:.0%} of chance (1/{n_classes} = "
            f"{1 / n_classes:.1%}): the run did not learn, so its numbers are not a finding. {fix}")


def over_seeds(values: Sequence[float], fmt: str = ".3g") -> str:
    """``mean ± std (k seeds: min–max)`` of one quantity measured once per seed."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("over_seeds got no values; expected one per seed")
    if arr.size == 1:
        return f"{arr[0]:{fmt}} (1 seed)"
    return (f"{arr.mean():{fmt}} ± {arr.std(ddof=1):{fmt}} ({arr.size} seeds: "
            f"{arr.min():{fmt}}–{arr.max():{fmt}})")
