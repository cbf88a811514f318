"""Central finite differences against backprop, per parameter and for the input."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nablanet._validation import as_float_input, check_finite
from nablanet.layers.base import Layer
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
    ``"input"``.
    """
    if loss.reduction == "none":
        raise ValueError(f"gradcheck needs a scalar loss; got {loss!r}. Use reduction='mean' or 'sum'.")
    if not eps > 0:
        raise ValueError(f"gradcheck(eps={eps}): expected a small positive step such as 1e-6")
    m = copy.deepcopy(model).double()
    xa = np.array(as_float_input(x, "x"), dtype=np.float64)
    check_finite(xa, "x")

    def run(with_grad: bool) -> tuple[float, np.ndarray | None, dict[str, np.ndarray]]:
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
        arrays["input"] = (xa, dx)
    picker = np.random.default_rng(seed)
    rel: dict[str, float] = {}
    absr: dict[str, float] = {}
    counts: dict[str, int] = {}
    failed: list[str] = []
    for name, (arr, g) in arrays.items():
        flat_idx = np.arange(arr.size)
        if max_entries is not None and arr.size > max_entries:
            flat_idx = np.sort(picker.choice(arr.size, size=max_entries, replace=False))
        numeric = np.empty(len(flat_idx))
        flat = arr.reshape(-1)  # a view: perturbing it perturbs the model's array
        for j, k in enumerate(flat_idx):
            orig = flat[k]
            flat[k] = orig + eps
            up = run(False)[0]
            flat[k] = orig - eps
            down = run(False)[0]
            flat[k] = orig
            numeric[j] = (up - down) / (2 * eps)
        analytic = np.asarray(g, dtype=np.float64).reshape(-1)[flat_idx]
        err = float(np.max(np.abs(analytic - numeric), initial=0.0))
        scale = float(max(np.max(np.abs(analytic), initial=0.0), np.max(np.abs(numeric), initial=0.0)))
        rel[name] = err / scale if scale > 0 else 0.0
        absr[name] = err
        counts[name] = len(flat_idx)
        if not (rel[name] <= rtol or err <= atol):
            failed.append(name)
    report = GradcheckReport(rel, absr, counts, rtol, atol, value, failed)
    if raise_exception and failed:
        raise GradcheckError(f"gradcheck failed for {failed} (rtol={rtol}, atol={atol}):\n{report}")
    return report
