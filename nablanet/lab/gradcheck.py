"""Central finite differences against backprop, per parameter and for the input."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nablanet._validation import as_float_input, check_finite
from nablanet.layers.base import Layer
from nablanet.layers.contract import spot_checks_off
from nablanet.losses.base import Loss


class GradcheckError(RuntimeError):
    """Raised by ``gradcheck(..., raise_exception=True)`` when a gradient disagrees."""


@dataclass(frozen=True)
class GradcheckReport:
    """Per checked array: max relative error, max absolute error and entries checked.

    relative error = max |g_backprop − g_numeric| / max(max |g_backprop|, max |g_numeric|)
    (the error in units of the array's largest gradient entry). An array passes when its relative
    error is ≤ rtol or its absolute error is ≤ atol (for gradients that are zero throughout).
    """

    rel_errors: dict[str, float]
    abs_errors: dict[str, float]
    n_checked: dict[str, int]
    rtol: float
    atol: float
    loss_value: float
    failed: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def max_rel_error(self) -> float:
        return max(self.rel_errors.values(), default=0.0)

    def __str__(self) -> str:
        width = max((len(k) for k in self.rel_errors), default=5)
        rows = [f"{'array':<{width}}  {'checked':>8}  {'max rel err':>12}  {'max abs err':>12}  ok"]
        for k, rel in self.rel_errors.items():
            ok = "no" if k in self.failed else "yes"
            rows.append(f"{k:<{width}}  {self.n_checked[k]:>8}  {rel:>12.3e}  {self.abs_errors[k]:>12.3e}  {ok}")
        return "\n".join(rows)


def relative_error(a: Any, b: Any) -> float:
    """max |a − b| / max(max |a|, max |b|): the error in units of the larger side's largest entry
    (0 where both are 0; inf where a side is missing or the shapes differ)."""
    if a is None or b is None:
        return float("inf")
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = float(max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0)))
    return float(np.max(np.abs(a - b), initial=0.0)) / scale if scale > 0 else 0.0


def gradcheck(
    model: Layer,
    loss: Loss,
    x: Any,
    target: Any,
    *,
    eps: float = 1e-6,
    rtol: float = 1e-6,
    atol: float = 1e-10,
    check_input: bool = True,
    max_entries: int | None = None,
    train: bool = False,
    seed: int = 0,
    raise_exception: bool = False,
) -> GradcheckReport:
    """Compare backprop with central differences (L(θ + ε) − L(θ − ε))/2ε in float64.

    Works on a float64 copy of ``model`` (the model itself is not changed). Every entry of every
    parameter (and of ``x`` when ``check_input``) is perturbed, or a seeded random subset of
    ``max_entries`` per array. A forward in ``train`` mode reuses one seeded generator per
    evaluation, so dropout masks are the same in every evaluation. The input's entry is
    ``"input"``; a model of several inputs (``Bilinear``) takes ``x`` as a tuple, whose entries are
    ``"input.0"``, ``"input.1"``, …. A model that returns no input gradient (integer indices into an
    ``Embedding``) needs ``check_input=False``.
    """
    if loss.reduction == "none":
        raise ValueError(f"gradcheck needs a scalar loss; got {loss!r}. Use reduction='mean' or 'sum'.")
    if not eps > 0:
        raise ValueError(f"gradcheck(eps={eps}): expected a small positive step such as 1e-6")
    m = copy.deepcopy(model).double()
    several = isinstance(x, tuple | list)
    inputs = [np.array(as_float_input(a, "x"), dtype=np.float64) for a in (x if several else (x,))]
    for a in inputs:
        check_finite(a, "x")
    xa: Any = tuple(inputs) if several else inputs[0]

    def run(with_grad: bool) -> tuple[float, np.ndarray | None, dict[str, np.ndarray]]:
        with spot_checks_off():  # this is the check: it reports a wrong layer rather than stopping at it
            y, cache = m.forward(xa, train=train, rng=np.random.default_rng(seed))
        value, lcache = loss.forward(y, target)
        if not with_grad:
            return float(value), None, {}
        dx, grads = m.vjp(cache, loss.vjp(lcache))
        return float(value), dx, grads

    value, dx, grads = run(True)
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {
        name: (p.data, grads[name]) for name, p in m.named_parameters()
    }
    if check_input and dx is not None:
        arrays.update(_input_arrays(inputs, dx, several))
    picker = np.random.default_rng(seed)
    rel: dict[str, float] = {}
    absr: dict[str, float] = {}
    counts: dict[str, int] = {}
    failed: list[str] = []
    for name, (arr, g) in arrays.items():
        flat_idx = np.arange(arr.size)
        if max_entries is not None and arr.size > max_entries:
            flat_idx = np.sort(picker.choice(arr.size, size=max_entries, replace=False))
        numeric = _central_differences(lambda: run(False)[0], arr, flat_idx, eps)
        analytic = np.asarray(g, dtype=np.float64).reshape(-1)[flat_idx]
        err = float(np.max(np.abs(analytic - numeric), initial=0.0))
        rel[name] = relative_error(analytic, numeric)
        absr[name] = err
        counts[name] = len(flat_idx)
        if not (rel[name] <= rtol or err <= atol):
            failed.append(name)
    report = GradcheckReport(rel, absr, counts, rtol, atol, value, failed)
    if raise_exception and failed:
        raise GradcheckError(f"gradcheck failed for {failed} (rtol={rtol}, atol={atol}):\n{report}")
    return report


def _input_arrays(inputs: list[np.ndarray], dx: Any, several: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"input": (x, dx)}, or {"input.0": (x₀, dx₀), …} for a tuple of inputs, shapes checked."""
    names = [f"input.{i}" for i in range(len(inputs))] if several else ["input"]
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, arr, g in zip(names, inputs, dx if several else (dx,), strict=True):
        if np.shape(g) != arr.shape:
            raise ValueError(
                f"gradcheck: the model's gradient for {name} has shape {np.shape(g)}, the input {arr.shape}; "
                "a model that returns no input gradient (an Embedding's integer indices) needs check_input=False"
            )
        out[name] = (arr, g)
    return out


def _central_differences(f: Callable[[], float], arr: np.ndarray, flat_idx: np.ndarray, eps: float) -> np.ndarray:
    """(f(a + ε) − f(a − ε))/2ε for each entry a of ``arr`` at ``flat_idx``, moving it in place (and back)."""
    numeric = np.empty(len(flat_idx))
    flat = arr.reshape(-1)  # a view: perturbing it perturbs the model's array
    for j, k in enumerate(flat_idx):
        orig = flat[k]
        flat[k] = orig + eps
        up = f()
        flat[k] = orig - eps
        down = f()
        flat[k] = orig
        numeric[j] = (up - down) / (2 * eps)
    return numeric
