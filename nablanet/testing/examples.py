"""The small float64 examples a VJP is checked on when the caller gives none: an instance and its inputs.

Each is chosen to catch the usual mistakes: more samples than features (a missing batch sum changes
the shape), a non-square weight (a transposed gradient changes the shape), a convolution with stride
and padding (a VJP that ignores them is wrong), inputs away from every kink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nablanet.layers import LSTM, Conv1d, Conv2d, Layer, Linear, LogSoftmax, Softmax
from nablanet.layers.base import Container
from nablanet.layers.softmax import log_softmax, softmax
from nablanet.losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    KLDivLoss,
    Loss,
    NLLLoss,
)

Example = tuple[Any, tuple[Any, ...]]
"""An instance of a layer or loss, and its inputs: (x,) for a layer, (input, target) for a loss."""


def _x(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape)


_LABELS = np.array([0, 2, 1, 2])
_EXAMPLES: dict[type, Callable[[], Example]] = {
    Linear: lambda: (Linear(3, 2, rng=1).double(), (_x(4, 3),)),
    Conv1d: lambda: (Conv1d(2, 3, 3, stride=2, padding=1, rng=1).double(), (_x(2, 2, 7),)),
    Conv2d: lambda: (Conv2d(2, 3, 3, stride=(2, 1), padding=1, rng=1).double(), (_x(2, 2, 5, 6),)),
    LSTM: lambda: (LSTM(3, 4, rng=1).double(), (_x(5, 2, 3),)),
    Softmax: lambda: (Softmax(dim=1), (_x(4, 3),)),
    LogSoftmax: lambda: (LogSoftmax(dim=1), (_x(4, 3),)),
    CrossEntropyLoss: lambda: (CrossEntropyLoss(), (_x(4, 3), _LABELS)),
    NLLLoss: lambda: (NLLLoss(), (log_softmax(_x(4, 3), 1), _LABELS)),
    BCELoss: lambda: (BCELoss(), (1.0 / (1.0 + np.exp(-_x(4, 3))), (_x(4, 3) > 0).astype(float))),
    BCEWithLogitsLoss: lambda: (BCEWithLogitsLoss(), (_x(4, 3), (_x(4, 3) > 0).astype(float))),
    KLDivLoss: lambda: (KLDivLoss(reduction="batchmean"), (log_softmax(_x(4, 3), 1), softmax(_x(3, 4).T, 1))),
}


def example(cls: type) -> Example:
    """The default example of ``cls``: from the table above, else ``cls()`` on a (4, 3) input (an activation;
    for a loss, a target of the input's shape). A TypeError says how to pass one where there is none."""
    if cls in _EXAMPLES:
        return _EXAMPLES[cls]()
    try:
        obj = cls()
    except TypeError as exc:
        raise TypeError(
            f"nablanet has no example to check a VJP of {cls.__name__} on, and {cls.__name__}() cannot be built "
            f"({exc}). Pass one: check_vjp({cls.__name__}(...), vjp, x) for a layer, check_vjp(loss, vjp, input, "
            "target) for a loss, or replace_vjp(..., example=(instance, *inputs))."
        ) from exc
    if isinstance(obj, Layer) and not isinstance(obj, Container):
        return obj.double(), (_x(4, 3),)
    if isinstance(obj, Loss):
        return obj, (_x(4, 3), _x(4, 3) ** 2)
    raise TypeError(f"a VJP is checked for a leaf layer or a loss; {cls.__name__} is neither.")
