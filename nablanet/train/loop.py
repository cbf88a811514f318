"""``fit``: mini-batch gradient descent with validation, callbacks and stopping rules; ``evaluate``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nablanet._validation import a_type, as_float_input, as_numeric_array, check_finite
from nablanet.data.batching import batches
from nablanet.layers.base import Layer
from nablanet.losses.base import Loss
from nablanet.optim.base import Optimizer
from nablanet.parameter import Parameter
from nablanet.train.callbacks import Callback, TrainingContext
from nablanet.train.history import History
from nablanet.train.interrupts import StepShield, TrainingInterrupted, interrupts_propagate

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


def _flat_weights(model: Layer) -> np.ndarray:
    return np.concatenate([p.data.ravel().astype(np.float64) for p in model.parameters()])


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
    (seed, e), so a run resumed from a checkpoint with ``initial_epoch`` repeats the uninterrupted
    run exactly. ``validation_split`` holds out a seeded random fraction of ``train``.

    Resuming (bit for bit, from an epoch boundary): ``epochs`` counts the epochs of this call, which
    runs epochs ``initial_epoch, ..., initial_epoch + epochs - 1`` (Keras' ``initial_epoch``; unlike
    Keras, ``epochs`` is a count, not the last epoch). Load the model's weights, the optimizer's
    ``state_dict`` and every callback's ``state_dict`` saved after epoch k - 1, then call
    ``fit(..., initial_epoch=k, epochs=N - k, history=saved_history)``: the weights and records
    equal those of one uninterrupted N-epoch run (all but ``seconds``). ``history``, if given,
    is continued: the returned History starts with its records (the argument is not changed),
    and its last record must be epoch ``initial_epoch - 1``.

    Ctrl-C: a ``KeyboardInterrupt`` anywhere in the loop stops training. The model keeps the
    weights after the last completed optimizer step (a SIGINT during a step is held until the step
    is done, see ``nablanet.train.interrupts``), the callbacks' ``on_train_end`` runs with
    ``logs["interrupted"] = True``, and ``fit`` returns the History so far: ``history.interrupted``
    is True, ``history.interrupted_at == {"epoch": e, "batch": b, "batches": n}`` (b of epoch e's n
    batches were completed; the records hold the completed epochs) and ``stop_reason`` says so.
    Inside ``nablanet.train.propagate_interrupts()`` it raises ``TrainingInterrupted`` (a
    ``KeyboardInterrupt`` with ``.history``) after that clean stop instead of returning.

    Stopping rules (the notes'): stop after an epoch when ‖wₑ − wₑ₋₁‖ < ``tol_weights`` or when
    |Lₑ − Lₑ₋₁| < ``tol_loss`` (mean training losses). A non-finite training loss stops training
    at once, with the message in ``history.stop_reason``, and the model keeps the last weights
    that gave a finite loss. To keep them without a copy per step, a nablanet optimizer writes each
    step's new weights into a new array (``Optimizer.step(keep_previous=True)``): inside ``fit``
    (in callbacks) a parameter's ``.data`` may be a different array from one step to the next, so
    hold the ``Parameter``, not its array. When ``fit`` returns, every parameter has its own array
    back, holding the trained values.

    ``bptt_truncate=k`` trains every recurrent layer (RNN, GRU, LSTM) with truncated backprop
    through time: the gradient through the hidden state is cut every k steps (see
    ``nablanet.layers.recurrent``); the layers' own setting is restored afterwards.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs={epochs!r}: expected an int >= 0")
    if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, int | np.integer) or initial_epoch < 0:
        raise ValueError(f"initial_epoch={initial_epoch!r}: expected an int >= 0 (the index of the first epoch to run)")
    initial_epoch = int(initial_epoch)
    history = _continued(history, initial_epoch)
    x, y = _check_pair(train, "train")
    if validation is not None and validation_split is not None:
        raise ValueError("pass either validation=(x, y) or validation_split, not both")
    val = _check_pair(validation, "validation") if validation is not None else None
    _check_labels(loss, y, "train")
    if val is not None:
        _check_labels(loss, val[1], "validation")
    if validation_split is not None:
        (x, y), val = _split(x, y, validation_split, seed)
    params = list(model.parameters())
    _check_optimizer(optimizer, params)
    ctx = TrainingContext(model, loss, optimizer, history, callbacks=list(callbacks))
    for cb in callbacks:
        cb.set_context(ctx)
    was_training = model.training
    recurrent = [m for m in _leaves(model) if hasattr(m, "bptt_truncate")]
    if bptt_truncate is not None and not recurrent:
        raise ValueError(f"fit(bptt_truncate={bptt_truncate!r}): the model has no recurrent layer (RNN, GRU, LSTM)")
    saved_truncation = [m.bptt_truncate for m in recurrent]
    try:
        if bptt_truncate is not None:
            for m in recurrent:
                m.bptt_truncate = bptt_truncate  # validated by the layer
        model.train()
        _run(model, loss, optimizer, x, y, val, ctx, callbacks, epochs=epochs, batch_size=batch_size,
             shuffle=shuffle, seed=seed, metrics=metrics, tol_weights=tol_weights, tol_loss=tol_loss,
             initial_epoch=initial_epoch, verbose=verbose)
    finally:
        model.train(was_training)
        for m, k in zip(recurrent, saved_truncation, strict=True):
            m.bptt_truncate = k
    if history.interrupted and interrupts_propagate():
        raise TrainingInterrupted(history) from None
    return history


class _Position:
    """Where training stands: epoch, batches of it completed, batches in it, steps in this call."""

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.batch = 0
        self.batches = 0
        self.steps = 0
        self.step_undone = False


def _run(
    model: Layer, loss: Loss, optimizer: Any, x: np.ndarray, y: np.ndarray,
    val: tuple[np.ndarray, np.ndarray] | None, ctx: TrainingContext, callbacks: Sequence[Callback], *,
    epochs: int, batch_size: int | None, shuffle: bool, seed: int, metrics: dict[str, Metric] | None,
    tol_weights: float | None, tol_loss: float | None, initial_epoch: int, verbose: bool,
) -> None:
    """The epochs of ``fit``; a KeyboardInterrupt ends them cleanly (recorded in ``ctx.history``)."""
    history = ctx.history
    guard = _LastGood(list(model.parameters()), optimizer)
    prev_w = _flat_weights(model) if tol_weights is not None else None
    # a continued history gives the loss the uninterrupted run would compare with
    prev_loss: float | None = history.records[-1].get("loss") if history.records else None
    at = _Position()
    n_batches = math.ceil(len(x) / (batch_size or len(x)))
    interrupted = False
    try:
        with StepShield() as shield:
            for cb in callbacks:
                cb.on_train_begin({})
            for epoch in range(initial_epoch, initial_epoch + epochs):
                at.epoch, at.batch, at.batches = epoch, 0, n_batches
                t0 = time.perf_counter()
                order_rng, forward_rng = np.random.default_rng([seed, epoch]), np.random.default_rng([seed, epoch, 1])
                for cb in callbacks:
                    cb.on_epoch_begin(epoch, {"batches": n_batches})
                loss_sum, hits, seen = 0.0, 0.0, 0
                for b, (xb, yb) in enumerate(batches(x, y, batch_size, shuffle=shuffle, rng=order_rng)):
                    # -- the step: forward, loss, backward (VJPs into .grad), update ---------------------
                    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported below instead
                        out, caches = model.forward(xb, train=True, rng=forward_rng)
                    try:
                        value, lcache = loss.forward(out, yb)
                    except ValueError:  # the loss refuses a non-finite output; any other complaint stands
                        if np.isfinite(out).all():
                            raise
                        value, lcache = math.nan, None
                    if lcache is None or not math.isfinite(value):
                        guard.restore()
                        ctx.stop(_divergence_message(value, epoch, b, loss, yb))
                        break
                    lr = float(optimizer.current("lr"))
                    optimizer.zero_grad()
                    tape = model.backward(caches, loss.vjp(lcache))
                    shield.in_step = True  # a SIGINT now waits until the weights and the state are updated
                    try:
                        at.step_undone = True
                        guard.step()  # optimizer.step(), keeping these weights: their loss was finite
                        at.step_undone = False
                    finally:
                        shield.in_step = False
                    at.batch, at.steps = b + 1, at.steps + 1
                    shield.deliver()
                    # -- bookkeeping -----------------------------------------------------------------
                    loss_sum += float(value) * len(xb)
                    acc = _accuracy(out, yb)
                    hits += 0.0 if acc is None else acc * len(xb)
                    seen += len(xb)
                    logs = {"loss": float(value), "lr": lr, "epoch": epoch, "batch": b, "size": len(xb)}
                    for cb in callbacks:
                        cb.on_batch_end(epoch * n_batches + b, logs, tape)
                    if ctx.stop_training:
                        break
                if seen == 0:
                    break
                record: dict[str, Any] = {"epoch": epoch, "loss": loss_sum / seen}
                record["accuracy"] = hits / seen if _accuracy(out, yb) is not None else None
                if val is not None:
                    model.eval()
                    try:
                        scores = evaluate(model, loss, val[0], val[1], metrics=metrics)
                    finally:
                        model.train()
                    record.update({f"val_{k}": v for k, v in scores.items()})
                record["lr"] = float(optimizer.current("lr"))
                record["seconds"] = time.perf_counter() - t0
                for cb in callbacks:
                    cb.on_epoch_end(epoch, record)
                history.append(record)
                if verbose:
                    _print_row(record, header=len(history) == 1)
                if tol_loss is not None and prev_loss is not None and abs(record["loss"] - prev_loss) < tol_loss:
                    ctx.stop(f"|L_e - L_e-1| = {abs(record['loss'] - prev_loss):.3g} < tol_loss={tol_loss}")
                prev_loss = record["loss"]
                if tol_weights is not None and prev_w is not None:
                    w = _flat_weights(model)
                    if float(np.linalg.norm(w - prev_w)) < tol_weights:
                        ctx.stop(f"||w_e - w_e-1|| = {np.linalg.norm(w - prev_w):.3g} < tol_weights={tol_weights}")
                    prev_w = w
                for cb in callbacks:
                    cb.on_epoch_complete(epoch, record)
                if ctx.stop_training:
                    break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        guard.close()  # each parameter gets back the array it had before fit
    if interrupted:
        history.interrupted_at = {"epoch": at.epoch if at.epoch is not None else initial_epoch,
                                  "batch": at.batch, "batches": at.batches}
        ctx.stop_training, ctx.stop_reason = True, _interrupt_message(at, len(history.records) > 0)
    for cb in callbacks:
        cb.on_train_end({"interrupted": interrupted, "stop_reason": ctx.stop_reason})
    history.stop_reason = ctx.stop_reason
    if verbose and ctx.stop_reason:
        print(f"stopped: {ctx.stop_reason}")


def _interrupt_message(at: _Position, any_epoch: bool) -> str:
    if at.epoch is None:
        return "interrupted (KeyboardInterrupt) before the first epoch began; the weights are unchanged"
    if at.batch >= at.batches:
        where = (f"in epoch {at.epoch} after its last batch ({at.batch} of {at.batches}), before the epoch's "
                 "record was complete")
    else:
        where = f"in epoch {at.epoch} after {at.batch} of {at.batches} batches"
    if at.steps == 0:
        weights = "the weights are unchanged"
    else:
        weights = "the weights are those after the last completed step"
    if at.step_undone:
        weights += " (the interrupted step was undone; the optimizer's state may hold part of it)"
    return f"interrupted (KeyboardInterrupt) {where}; {weights}"


def _divergence_message(value: Any, epoch: int, b: int, loss: Loss, yb: np.ndarray) -> str:
    ignore = getattr(loss, "ignore_index", None)
    if ignore is not None and yb.ndim >= 1 and yb.dtype.kind in "iu" and bool((yb == ignore).all()):
        return (f"loss became {value} at epoch {epoch}, batch {b}: every label of the batch is the loss's "
                f"ignore_index={ignore}, so there is nothing to average over. Restored the last weights that gave a "
                "finite loss. Fix: check the labels (a batch must hold at least one label that is not ignore_index).")
    return (f"loss became {value} at epoch {epoch}, batch {b}; restored the last weights "
            "that gave a finite loss. Lower the learning rate or check the data.")


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


class _LastGood:
    """The weights of the last step whose loss was finite, restored when the loss diverges.

    A nablanet ``Optimizer`` keeps them for free: ``step(keep_previous=True)`` writes the new
    weights into a spare buffer and leaves the old array as it was. Any other optimizer gets a
    copy of the weights before each step.
    """

    def __init__(self, params: list[Parameter], optimizer: Any) -> None:
        self.params, self.optimizer = params, optimizer
        self.buffered = isinstance(optimizer, Optimizer)
        self.copies = None if self.buffered else [p.data.copy() for p in params]

    def step(self) -> None:
        """``optimizer.step()``; one that raises (a KeyboardInterrupt inside it) leaves the weights as before it."""
        if self.copies is None:
            before = [p.data for p in self.params]  # keep_previous leaves these arrays as they are
            try:
                self.optimizer.step(keep_previous=True)
            except BaseException:
                for p, old in zip(self.params, before, strict=True):
                    p.data = old
                raise
            return
        for p, good in zip(self.params, self.copies, strict=True):
            np.copyto(good, p.data)
        try:
            self.optimizer.step()
        except BaseException:
            self.restore()
            raise

    def restore(self) -> None:
        if self.copies is None:
            self.optimizer.restore_previous()
            return
        for p, good in zip(self.params, self.copies, strict=True):
            np.copyto(p.data, good)

    def close(self) -> None:
        """Every parameter gets back the array it had before ``fit`` (holding the new values)."""
        if self.copies is None:
            self.optimizer.forget_previous()


def _leaves(layer: Layer) -> list[Layer]:
    """Every layer without children, depth first."""
    if not layer._modules:
        return [layer]
    return [leaf for child in layer._modules.values() for leaf in _leaves(child)]


_COLUMNS = [("epoch", "{:>5d}"), ("loss", "{:>10.4f}"), ("accuracy", "{:>9.4f}"), ("val_loss", "{:>10.4f}"),
            ("val_error", "{:>10.4f}"), ("lr", "{:>9.3g}"), ("seconds", "{:>8.2f}")]


def _print_row(record: dict[str, Any], header: bool) -> None:
    if header:
        print("  ".join(f"{name:>{len(fmt.format(0) if 'd' in fmt else fmt.format(0.0))}}" for name, fmt in _COLUMNS))
    cells = []
    for name, fmt in _COLUMNS:
        v = record.get(name)
        width = len(fmt.format(0) if "d" in fmt else fmt.format(0.0))
        cells.append(fmt.format(v) if v is not None else f"{'-':>{width}}")
    print("  ".join(cells), flush=True)
