"""``fit``: the notes' training loop (epochs, mini-batches: forward, loss, backward, step) with
callbacks around it; ``evaluate`` and ``predict``.

What is not the loop lives beside it: the divergence guard (``guard``), the Ctrl-C bookkeeping
(``position``, ``interrupts``), the stopping tolerances and the printed table (callbacks), and
truncated BPTT (``nablanet.layers.recurrent.truncated_bptt``).

Resuming (bit for bit, from an epoch boundary): ``epochs`` counts the epochs of a ``fit`` call,
which runs epochs ``initial_epoch, ..., initial_epoch + epochs - 1`` (Keras' ``initial_epoch``;
unlike Keras, ``epochs`` is a count, not the last epoch). Load the model's weights, the
optimizer's ``state_dict`` and every callback's ``state_dict`` saved after epoch k - 1, then call
``fit(..., initial_epoch=k, epochs=N - k, history=saved_history)``: the weights and records equal
those of one uninterrupted N-epoch run (all but ``seconds``), since epoch e's randomness comes
from (seed, e). ``history``, if given, is continued: the returned History starts with its records
(the argument is not changed), and its last record must be epoch ``initial_epoch - 1``.

Ctrl-C: a ``KeyboardInterrupt`` anywhere in the loop stops training. The model keeps the weights
after the last completed optimizer step (a SIGINT during a step is held until the step is done,
see ``nablanet.train.interrupts``; a KeyboardInterrupt raised inside the step has it undone), the
callbacks' ``on_train_end`` runs with ``logs["interrupted"] = True``, and ``fit`` returns the
History so far: ``history.interrupted`` is True, ``history.interrupted_at == {"epoch": e,
"batch": b, "batches": n}`` (b of epoch e's n batches were completed; the records hold the
completed epochs) and ``stop_reason`` says so. Inside ``nablanet.train.propagate_interrupts()`` it
raises ``TrainingInterrupted`` (a ``KeyboardInterrupt`` with ``.history``) after that clean stop
instead of returning.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NamedTuple

import numpy as np

from nablanet._validation import a_type, as_float_input, as_numeric_array, check_finite
from nablanet.data.batching import batches
from nablanet.layers import kernels
from nablanet.layers.base import Layer
from nablanet.layers.recurrent import truncated_bptt
from nablanet.losses.base import Loss
from nablanet.optim.base import Optimizer
from nablanet.parameter import Parameter
from nablanet.train.callbacks import (
    Callback,
    CallbackList,
    EpochTable,
    LossTolerance,
    TrainingContext,
    WeightTolerance,
)
from nablanet.train.guard import DivergenceGuard, divergence_message
from nablanet.train.history import History
from nablanet.train.interrupts import StepShield, TrainingInterrupted, interrupts_propagate
from nablanet.train.position import Position

Metric = Callable[[np.ndarray, np.ndarray], float]


def _check_pair(data: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise TypeError(f"{name} must be a pair (x, y) of arrays; got {type(data).__name__}")
    x = as_float_input(data[0], f"{name} x")
    check_finite(x, f"{name} x")
    y = as_numeric_array(data[1], f"{name} y")
    check_finite(y, f"{name} y")
    if x.ndim < 1 or len(x) != len(y):
        raise ValueError(
            f"{name}: x has {len(x) if x.ndim else 0} samples but y has {len(y)}; they must have the same length"
        )
    if len(x) == 0:
        raise ValueError(f"{name} is empty; expected at least one sample")
    return x, y


def _accuracy(out: np.ndarray, y: np.ndarray) -> float | None:
    """Fraction of argmax hits for class-index or one-hot/probability targets; None otherwise."""
    if out.ndim != 2 or out.shape[1] < 2:
        return None
    if y.ndim == 1 and y.dtype.kind in "iu":
        return float(np.count_nonzero(out.argmax(axis=1) == y)) / len(y)
    if y.shape == out.shape:
        return float(np.count_nonzero(out.argmax(axis=1) == y.argmax(axis=1))) / len(y)
    return None


def predict(model: Layer, x: Any, *, batch_size: int = 1024) -> np.ndarray:
    """The model's outputs in evaluation mode, computed in batches (the model's mode is kept)."""
    xa = as_float_input(x, "x")
    check_finite(xa, "x")
    outs = [model.forward(xa[i : i + batch_size], train=False)[0] for i in range(0, len(xa), batch_size)]
    return np.concatenate(outs)


def evaluate(
    model: Layer, loss: Loss, x: Any, y: Any, *, batch_size: int = 1024, metrics: dict[str, Metric] | None = None
) -> dict[str, float | None]:
    """``{"loss", "accuracy", "error", **metrics}`` on (x, y) in evaluation mode."""
    out = predict(model, x, batch_size=batch_size)
    ya = as_numeric_array(y, "y")
    acc = _accuracy(out, ya)
    result: dict[str, float | None] = {
        "loss": float(loss(out, ya)), "accuracy": acc, "error": None if acc is None else 1.0 - acc,
    }
    for name, fn in (metrics or {}).items():
        result[name] = float(fn(out, ya))
    return result


def _split(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    if not 0 < fraction < 1:
        raise ValueError(f"validation_split={fraction!r}: expected a fraction in (0, 1), e.g. 0.1")
    n_val = max(1, round(fraction * len(x)))
    if n_val >= len(x):
        raise ValueError(f"validation_split={fraction} leaves no training samples out of {len(x)}")
    order = np.random.default_rng([seed, 2**31 - 1]).permutation(len(x))
    tr, va = order[n_val:], order[:n_val]
    return (x[tr], y[tr]), (x[va], y[va])


def fit(
    model: Layer,
    loss: Loss,
    optimizer: Any,
    train: tuple[Any, Any],
    *,
    validation: tuple[Any, Any] | None = None,
    validation_split: float | None = None,
    epochs: int = 1,
    batch_size: int | None = 32,
    shuffle: bool = True,
    seed: int = 0,
    callbacks: Sequence[Callback] = (),
    metrics: dict[str, Metric] | None = None,
    tol_weights: float | None = None,
    tol_loss: float | None = None,
    initial_epoch: int = 0,
    history: History | None = None,
    bptt_truncate: int | None = None,
    verbose: bool = False,
) -> History:
    """Train ``model`` on ``train = (x, y)`` for ``epochs`` passes; return the per-epoch History.

    ``batch_size``: 1 is online SGD, None the full batch, anything else mini-batches. Epoch e's
    shuffle and any randomness in the forward pass (dropout) come from Generators seeded by
    (seed, e). ``validation=(x, y)``, or ``validation_split`` (a seeded random fraction of ``train``
    held out), adds the ``val_*`` columns, ``metrics`` columns of your own.

    Resuming from epoch k, bit for bit: load the weights and the optimizer's and callbacks' states
    saved after epoch k − 1, then ``fit(..., initial_epoch=k, epochs=N − k, history=saved_history)``
    (``epochs`` counts this call's epochs); see the module docs.

    Ctrl-C stops training cleanly: the model keeps the weights after the last completed step,
    ``on_train_end`` runs with ``logs["interrupted"] = True``, and the History so far comes back
    with ``interrupted_at`` and ``stop_reason`` set (inside ``propagate_interrupts()``,
    ``TrainingInterrupted`` is raised instead); see the module docs.

    Stopping: a non-finite training loss stops training with the last weights that gave a finite
    loss (``nablanet.train.guard``); the notes' rules stop after an epoch when ‖wₑ − wₑ₋₁‖ <
    ``tol_weights`` or |Lₑ − Lₑ₋₁| < ``tol_loss`` (callbacks ``fit`` adds after yours, as it adds
    the table that ``verbose=True`` prints). ``bptt_truncate=k`` cuts the state gradient of every
    recurrent layer every k steps while ``fit`` runs (``nablanet.layers.recurrent.truncated_bptt``).
    """
    first = _check_epochs(epochs, initial_epoch)
    history = _continued(history, first)
    x, y, val = _training_data(loss, train, validation, validation_split, seed)
    _check_optimizer(optimizer, list(model.parameters()))
    ctx = TrainingContext(model, loss, optimizer, history, callbacks=list(callbacks))
    hooks = CallbackList([*callbacks, *_added_callbacks(tol_loss, tol_weights, verbose)], ctx)
    truncation: AbstractContextManager[None] = nullcontext()
    if bptt_truncate is not None:  # refused here, before training, when the model has no recurrent layer
        truncation = truncated_bptt(model, bptt_truncate, caller="fit")
    plan = _Plan(x, y, val, batch_size, shuffle, seed, metrics, range(first, first + epochs))
    was_training = model.training
    try:
        with truncation:
            model.train()
            _run(model, loss, optimizer, plan, ctx, hooks)
    finally:
        model.train(was_training)
    if history.interrupted and interrupts_propagate():
        raise TrainingInterrupted(history) from None
    return history


class _Plan(NamedTuple):
    """What ``fit`` trains on, and how: the data, the batches, the seed, the epochs to run."""

    x: np.ndarray
    y: np.ndarray
    val: tuple[np.ndarray, np.ndarray] | None
    batch_size: int | None
    shuffle: bool
    seed: int
    metrics: dict[str, Metric] | None
    epochs: range


def _run(model: Layer, loss: Loss, optimizer: Any, plan: _Plan, ctx: TrainingContext, hooks: CallbackList) -> None:
    """``_train``, with a KeyboardInterrupt turned into a clean stop (recorded in ``ctx.history``)."""
    at = Position(plan.epochs.start)
    interrupted = False
    try:
        with StepShield() as shield:
            _train(model, loss, optimizer, plan, ctx, hooks, at, shield)
    except KeyboardInterrupt:
        interrupted = True
        ctx.history.interrupted_at = at.interrupted_at()
        ctx.stop_training, ctx.stop_reason = True, at.interrupt_message()
    hooks.on_train_end({"interrupted": interrupted, "stop_reason": ctx.stop_reason})
    ctx.history.stop_reason = ctx.stop_reason


def _train(model: Layer, loss: Loss, optimizer: Any, plan: _Plan, ctx: TrainingContext, hooks: CallbackList,
           at: Position, shield: StepShield) -> None:
    """The notes' loop: for each epoch, for each mini-batch: forward, loss, backward, step."""
    n_batches = math.ceil(len(plan.x) / (plan.batch_size or len(plan.x)))
    hooks.on_train_begin({})
    guard = DivergenceGuard(model.parameters())
    for epoch in plan.epochs:
        t0 = time.perf_counter()
        order_rng, forward_rng = np.random.default_rng([plan.seed, epoch]), np.random.default_rng([plan.seed, epoch, 1])
        at.begin_epoch(epoch, n_batches)
        hooks.on_epoch_begin(epoch, {"batches": n_batches})
        means = _Means()
        for b, (xb, yb) in enumerate(batches(plan.x, plan.y, plan.batch_size, shuffle=plan.shuffle, rng=order_rng)):
            with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported below instead
                out, caches = kernels.forward(model, xb, train=True, rng=forward_rng)
            value, lcache = _loss(loss, out, yb)
            if not math.isfinite(value):  # diverged: back to the weights whose loss was finite
                guard.restore()
                ctx.stop(divergence_message(value, epoch, b, loss, yb))
                break
            lr = float(optimizer.current("lr"))
            optimizer.zero_grad()
            tape = model.backward(caches, loss.vjp(lcache))
            _step(optimizer, guard, shield, at)
            means.add(value, out, yb)
            logs = {"loss": value, "lr": lr, "epoch": epoch, "batch": b, "size": len(xb), "output": out, "target": yb}
            hooks.on_batch_end(epoch * n_batches + b, logs, tape)
            if ctx.stop_training:
                break
        if means.seen == 0:
            break
        record = {"epoch": epoch, **means.record(), **_validation_scores(model, loss, plan)}
        record.update(lr=float(optimizer.current("lr")), seconds=time.perf_counter() - t0)
        hooks.on_epoch_end(epoch, record)
        ctx.history.append(record)
        hooks.on_epoch_complete(epoch, record)
        if ctx.stop_training:
            break


def _loss(loss: Loss, out: np.ndarray, yb: np.ndarray) -> tuple[float, Any]:
    """The batch loss and its cache; NaN (and no cache) when the loss refuses a non-finite output."""
    try:
        value, cache = loss.forward(out, yb)
    except ValueError:  # any other complaint about the output stands
        if np.isfinite(out).all():
            raise
        return math.nan, None
    return float(value), cache


def _step(optimizer: Any, guard: DivergenceGuard, shield: StepShield, at: Position) -> None:
    """``optimizer.step()``, whole or not at all: a SIGINT during it waits until it is done (the
    shield), and a KeyboardInterrupt raised inside it has it undone (the guard)."""
    shield.in_step = at.in_step = True
    try:
        guard.step(optimizer)
    finally:
        shield.in_step = False
    at.step_done()
    shield.deliver()


class _Means:
    """The epoch's running means over its samples: the training loss and, where the targets allow, accuracy."""

    def __init__(self) -> None:
        self.loss_sum, self.hits, self.seen = 0.0, 0.0, 0
        self.has_accuracy = False

    def add(self, value: float, out: np.ndarray, yb: np.ndarray) -> None:
        acc = _accuracy(out, yb)
        self.loss_sum += value * len(yb)
        self.hits += 0.0 if acc is None else acc * len(yb)
        self.seen += len(yb)
        self.has_accuracy = acc is not None

    def record(self) -> dict[str, float | None]:
        return {"loss": self.loss_sum / self.seen, "accuracy": self.hits / self.seen if self.has_accuracy else None}


def _validation_scores(model: Layer, loss: Loss, plan: _Plan) -> dict[str, float | None]:
    """``val_loss``, ``val_accuracy``, ``val_error`` and the metrics on the validation data, in eval mode."""
    if plan.val is None:
        return {}
    model.eval()
    try:
        scores = evaluate(model, loss, plan.val[0], plan.val[1], metrics=plan.metrics)
    finally:
        model.train()
    return {f"val_{k}": v for k, v in scores.items()}


def _added_callbacks(tol_loss: float | None, tol_weights: float | None, verbose: bool) -> list[Callback]:
    """The callbacks ``fit``'s own arguments ask for, run after the user's (and not saved with them)."""
    added: list[Callback] = []
    if tol_loss is not None:
        added.append(LossTolerance(tol_loss))
    if tol_weights is not None:
        added.append(WeightTolerance(tol_weights))
    if verbose:
        added.append(EpochTable())
    return added


def _check_epochs(epochs: Any, initial_epoch: Any) -> int:
    """``initial_epoch`` as an int, once both counts are checked."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs={epochs!r}: expected an int >= 0")
    if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, int | np.integer) or initial_epoch < 0:
        raise ValueError(f"initial_epoch={initial_epoch!r}: expected an int >= 0 (the index of the first epoch to run)")
    return int(initial_epoch)


def _training_data(
    loss: Loss, train: Any, validation: Any, validation_split: float | None, seed: int
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """(x, y) to train on and the validation pair (given, or split off ``train``), checked."""
    x, y = _check_pair(train, "train")
    if validation is not None and validation_split is not None:
        raise ValueError("pass either validation=(x, y) or validation_split, not both")
    val = _check_pair(validation, "validation") if validation is not None else None
    _check_labels(loss, y, "train")
    if val is not None:
        _check_labels(loss, val[1], "validation")
    if validation_split is not None:
        (x, y), val = _split(x, y, validation_split, seed)
    return x, y, val


def _continued(history: Any, initial_epoch: int) -> History:
    """A new History holding ``history``'s records, checked to end just before ``initial_epoch``."""
    if history is None:
        return History()
    if not isinstance(history, History):
        raise TypeError(
            f"fit(history=...) received {a_type(history)}; expected the History of the run to continue "
            "(what fit returned, or Checkpoint.history), or None."
        )
    if history.records:
        last = history.records[-1].get("epoch")
        if last != initial_epoch - 1:
            raise ValueError(
                f"fit(history=..., initial_epoch={initial_epoch}): the history ends with epoch {last!r}, so the run "
                f"it continues goes on at epoch {last + 1 if isinstance(last, int) else '?'}; pass that as "
                "initial_epoch (after loading the weights and states saved at that point)."
            )
    return History(history.to_records())


def _check_labels(loss: Loss, y: np.ndarray, name: str) -> None:
    """Refuse class labels that are all the loss's ignore_index: the loss would be 0/0."""
    ignore = getattr(loss, "ignore_index", None)
    if ignore is None or isinstance(ignore, bool) or y.dtype.kind not in "iu" or y.size == 0:
        return
    if bool((y == ignore).all()):
        raise ValueError(
            f"fit: every label of {name} y ({y.size} of them) equals the loss's ignore_index={ignore}, so no sample "
            f"counts and the loss is 0/0. Expected class indices in [0, C), ignore_index only where a label is to be "
            f"skipped. Fix: check the labels (all padding? the wrong array?) or the loss's ignore_index."
        )


def _check_optimizer(optimizer: Any, params: list[Parameter]) -> None:
    """Refuse an optimizer that holds none of the model's parameters (a subset is fine: fine-tuning)."""
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(optimizer, Optimizer) or not isinstance(groups, list) or not params:
        return
    mine = {id(p) for p in params}
    held = [p for g in groups for p in g.get("params", ())]
    if held and not any(id(p) in mine for p in held):
        raise ValueError(
            f"fit: the optimizer ({type(optimizer).__name__}) holds {len(held)} parameter(s), none of them the "
            f"model's ({len(params)} parameters): it was built on another model's parameters (e.g. a model built "
            "again after the optimizer), so training would not change this model. Fix: build the optimizer on "
            "this model, e.g. nn.optim.SGD(model.parameters(), lr=0.1)."
        )
