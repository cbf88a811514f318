"""``replace_vjp``: a student's VJP function in place of a layer's or loss's own, for one block of code.

    with nn.testing.replace_vjp(nn.Sigmoid, sigmoid_vjp):
        nn.fit(model, nn.CrossEntropyLoss(), optimizer, (x, y), epochs=3)

Inside the block the function runs wherever nablanet runs the class's VJP: ``Sequential``'s backward
(so ``nn.fit``, ``Layer.backward`` and every callback's tape), ``nn.value_and_grad``, and the lab
(``nn.gradcheck``, its per-layer check included, per-sample gradients and norms, Jacobians, the
Recorder, the Gauss-Newton products). It is swapped in at nablanet's dispatch points
(``nablanet.layers.kernels`` for layers, ``Loss.vjp`` for losses) for layers of exactly that class;
afterwards, also after an exception, the class's own VJP (and its measured fast variant) is back.

What stays the reference's: a layer's own methods called directly (``layer.vjp(...)``,
``lstm.vjp_state(...)``), a layer that calls another's VJP inside its own (``MultiheadAttention``'s
``out_proj``), subclasses of the class, and the curvature lab's second-order rules (R-op, the
losses' Hessians). ``nn.testing.check_layer`` checks a class's own code: run it outside a block.

Blocks nest, for one class or several, and may even be left in another order than entered: the
latest block still active is in force. A swap holds for the whole process: threads are out of
scope (another thread training at the same time also gets the function).

``check=True`` (the default) checks the function with ``check_vjp`` on entering, on nablanet's
example of the class or on ``example=(instance, *inputs)``, and again at the first forward of each
new layer configuration inside the block (a float64 copy, up to 4 samples of that batch): a wrong
VJP raises ``VjpCheckError``, naming the mistake, before training starts. ``check=False`` lets a
wrong VJP train, to show what a wrong gradient does (a wrong sign climbs the loss).
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np

from nablanet.layers import Layer
from nablanet.layers.base import Container
from nablanet.layers.contract import batch_axis
from nablanet.losses.base import Loss
from nablanet.testing.adapters import name_of, swap
from nablanet.testing.vjp_check import VjpCheckError, VjpCheckReport, check_vjp

_FIRST_USE_SAMPLES = 4


class replace_vjp:  # noqa: N801  a context manager, named as a function (contextlib's habit)
    """``with replace_vjp(cls, vjp, *, check=True, example=None):`` run ``vjp`` as ``cls``'s VJP in the block.

    ``cls``: a leaf layer class (``nn.Linear``, ``nn.Sigmoid``, ``nn.Conv2d``, ``nn.Softmax``), a loss
    class (``nn.CrossEntropyLoss``), or ``nn.LSTM`` (whose function is one step of the cell). What
    ``vjp`` takes and returns: ``nablanet.testing.vjp_check``. Entering returns the check's report
    (None with ``check=False``). See the module docstring for where the function runs.
    """

    def __init__(self, cls: type, vjp: Callable[..., Any], *, check: bool = True,
                 example: tuple[Any, ...] | None = None) -> None:
        if not isinstance(cls, type) or not issubclass(cls, Layer | Loss) or issubclass(cls, Container):
            what = cls.__name__ if isinstance(cls, type) else f"a {type(cls).__name__}"
            raise TypeError(f"replace_vjp swaps the VJP of a leaf layer or a loss class, e.g. replace_vjp(nn.Sigmoid, "
                            f"my_vjp); got {what}. A container's backward runs its children's VJPs: replace those.")
        if not callable(vjp):
            raise TypeError(f"replace_vjp needs the VJP as a function; got {type(vjp).__name__}.")
        if example is not None and (not isinstance(example, tuple) or not example):
            raise TypeError("replace_vjp(example=...) takes a tuple (instance, *inputs), e.g. (nn.Linear(5, 2), x).")
        self.cls, self.vjp, self.check, self.example = cls, vjp, check, example
        self._end: Callable[[], None] | None = None
        self._seen: set[tuple[str, bool, tuple[int, ...]]] = set()

    def __enter__(self) -> VjpCheckReport | None:
        if self._end is not None:
            raise RuntimeError(f"this replace_vjp({self.cls.__name__}, {name_of(self.vjp)}) block is already active")
        report = None
        if self.check:
            on, inputs = (self.example[0], self.example[1:]) if self.example else (self.cls, ())
            report = check_vjp(on, self.vjp, *inputs)
        self._end = swap(self.cls, self.vjp, self._first_use if self.check else None)
        return report

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        end, self._end = self._end, None
        if end is not None:
            end()

    def _first_use(self, layer: Layer, x: Any, train: bool) -> None:
        """``check_vjp`` on a float64 copy of ``layer`` and up to 4 samples of ``x``, once per configuration."""
        if not isinstance(x, np.ndarray) or x.ndim == 0:
            return
        key = (repr(layer), train, x.shape[1:])
        if key in self._seen:
            return
        self._seen.add(key)
        axis = min(batch_axis(layer), x.ndim - 1)
        few = np.take(x, range(min(_FIRST_USE_SAMPLES, x.shape[axis])), axis=axis)
        report = check_vjp(layer, self.vjp, few, raise_exception=False)
        if not report.passed:
            raise VjpCheckError(report)
