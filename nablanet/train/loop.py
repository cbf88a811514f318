"""``fit``: mini-batch gradient descent with validation, callbacks and stopping rules; ``evaluate``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nablanet._validation import as_float_input, as_numeric_array, check_finite
from nablanet.data.batching import batches
from nablanet.layers.base import Layer
from nablanet.losses.base import Loss
from nablanet.optim.base import Optimizer
from nablanet.parameter import Parameter
from nablanet.train.callbacks import Callback, TrainingContext
from nablanet.train.history import History

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
        return np.count_nonzero(out.argmax(axis=1) == y) / len(y)
    if y.shape == out.shape:
        return np.count_nonzero(out.argmax(axis=1) == y.argmax(axis=1)) / len(y)
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
    bptt_truncate: int | None = None,
    verbose: bool = False,
) -> History:
    """Train ``model`` on ``train = (x, y)`` for ``epochs`` passes; return the per-epoch History.

    ``batch_size``: 1 is online SGD, None the full batch, anything else mini-batches. Epoch e's
    shuffle and any randomness in the forward pass (dropout) come from Generators seeded by
    (seed, e), so a run resumed from a checkpoint with ``initial_epoch`` repeats the uninterrupted
    run exactly. ``validation_split`` holds out a seeded random fraction of ``train``.

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
    x, y = _check_pair(train, "train")
    if validation is not None and validation_split is not None:
        raise ValueError("pass either validation=(x, y) or validation_split, not both")
    val = _check_pair(validation, "validation") if validation is not None else None
    if validation_split is not None:
        (x, y), val = _split(x, y, validation_split, seed)
    params = list(model.parameters())
    history = History()
    ctx = TrainingContext(model, loss, optimizer, history)
    for cb in callbacks:
        cb.set_context(ctx)
    was_training = model.training
    recurrent = [m for m in _leaves(model) if hasattr(m, "bptt_truncate")]
    if bptt_truncate is not None and not recurrent:
        raise ValueError(f"fit(bptt_truncate={bptt_truncate!r}): the model has no recurrent layer (RNN, GRU, LSTM)")
    saved_truncation = [m.bptt_truncate for m in recurrent]
    if bptt_truncate is not None:
        for m in recurrent:
            m.bptt_truncate = bptt_truncate  # validated by the layer
    model.train()
    guard = _LastGood(params, optimizer)
    prev_w = _flat_weights(model) if tol_weights is not None else None
    prev_loss: float | None = None
    step = 0
    for cb in callbacks:
        cb.on_train_begin({})
    try:
        for epoch in range(initial_epoch, initial_epoch + epochs):
            t0 = time.perf_counter()
            order_rng, forward_rng = np.random.default_rng([seed, epoch]), np.random.default_rng([seed, epoch, 1])
            n_batches = math.ceil(len(x) / (batch_size or len(x)))
            for cb in callbacks:
                cb.on_epoch_begin(epoch, {"batches": n_batches})
            loss_sum, hits, seen = 0.0, 0.0, 0
            for b, (xb, yb) in enumerate(batches(x, y, batch_size, shuffle=shuffle, rng=order_rng)):
                # -- the step: forward, loss, backward (VJPs into .grad), update -------------------------
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
                    ctx.stop(f"loss became {value} at epoch {epoch}, batch {b}; restored the last weights "
                             "that gave a finite loss. Lower the learning rate or check the data.")
                    break
                lr = float(optimizer.current("lr"))
                optimizer.zero_grad()
                tape = model.backward(caches, loss.vjp(lcache))
                guard.step()  # optimizer.step(), keeping these weights: their loss was finite
                # -- bookkeeping ---------------------------------------------------------------------
                loss_sum += float(value) * len(xb)
                acc = _accuracy(out, yb)
                hits += 0.0 if acc is None else acc * len(xb)
                seen += len(xb)
                logs = {"loss": float(value), "lr": lr, "epoch": epoch, "batch": b, "size": len(xb)}
                for cb in callbacks:
                    cb.on_batch_end(step, logs, tape)
                step += 1
                if ctx.stop_training:
                    break
            if seen == 0:
                break
            record: dict[str, Any] = {"epoch": epoch, "loss": loss_sum / seen}
            record["accuracy"] = hits / seen if _accuracy(out, yb) is not None else None
            if val is not None:
                model.eval()
                scores = evaluate(model, loss, val[0], val[1], metrics=metrics)
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
            if ctx.stop_training:
                break
    finally:
        guard.close()  # each parameter gets back the array it had before fit
    for cb in callbacks:
        cb.on_train_end({})
    history.stop_reason = ctx.stop_reason
    if verbose and ctx.stop_reason:
        print(f"stopped: {ctx.stop_reason}")
    model.train(was_training)
    for m, k in zip(recurrent, saved_truncation, strict=True):
        m.bptt_truncate = k
    return history


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
        if self.copies is None:
            self.optimizer.step(keep_previous=True)
            return
        for p, good in zip(self.params, self.copies, strict=True):
            np.copyto(good, p.data)
        self.optimizer.step()

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
