"""``check_vjp``: a VJP written as a function, for a layer or loss class (a student's exercise), against
central differences on a small float64 example, with the likely mistake named.

The function, by what it is for (the first argument is the layer or loss, as a method's ``self``):

* a layer: ``vjp(layer, cache, dy) -> (dx, grads)``, the short form of the layer contract
  (docs/your-own-layer.md). ``cache`` is what the class's forward returned (``LinearCache(x)``,
  ``ElementwiseCache(x, y)``, ``SoftmaxCache(y, axis)``, ``ConvCache``: each class's docstring);
  dy = ∂L/∂y (N, *out); dx = ∂L/∂x of x's shape; grads {parameter name: ∂L/∂θ of its shape}, {}
  without parameters. nablanet supplies vector axes and per-sample gradients by calling it once per
  vector and per sample (the contract's short form).
* a loss: ``vjp(loss, cache, dterms) -> dinput``: ``cache`` is the loss's own (``CrossEntropyLoss``:
  ``p`` = softmax(z), ``r`` the effective target, one-hot y by default, ``r_sum`` = Σ_c r); dterms
  (N,) = ∂L/∂ℓₙ for each sample's term ℓₙ (1/N under ``reduction="mean"``); dinput of the input's
  shape. nablanet applies the reduction.
* ``nn.LSTM``: one step of the cell, ``vjp(layer, step, dh, dc) -> (da, dc_prev)``: ``step`` is an
  ``LSTMStep(i, f, g, o, c_prev, tanh_c)`` of (N, H) arrays; dh = ∂L/∂hₜ and dc = ∂L/∂cₜ from step
  t + 1, (N, H); da = ∂L/∂aₜ (N, 4H), the gates i, f, g, o side by side; dc_prev = ∂L/∂cₜ₋₁. The
  reference is ``nablanet.layers.recurrent.lstm_cell_vjp``; nablanet runs the rest of BPTT.

Checks: the call itself (an exception, what it returns), each array's shape, and every entry of dx
and of each gradient against central differences (``nablanet.lab._per_layer``, gradcheck's per-layer
check); an LSTM step also against the reference step, gate by gate, which names the gate whose
derivative (σ′, tanh′) is missing.
"""

from __future__ import annotations

import copy
import textwrap
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from nablanet._diagnose import factor_hint, missing_factor_hint
from nablanet.lab._per_layer import (
    EXACT_RTOL,
    FD_RTOL,
    LayerCheck,
    Options,
    central_differences,
    relative_error,
)
from nablanet.lab._per_layer import check_vjp as _check_layer_vjp
from nablanet.lab._tape import Trace
from nablanet.layers import LSTM, Layer
from nablanet.layers.contract import spot_checks_off
from nablanet.layers.kernels.recurrent import lstm_vjp_with_cell
from nablanet.layers.recurrent import LSTMStep, lstm_cell_vjp, lstm_gate_derivatives
from nablanet.losses.base import Loss, swap_terms_vjp
from nablanet.testing.adapters import LossVjpShapeError, loss_vjp, lstm_cell, name_of
from nablanet.testing.examples import example
from nablanet.testing.layer_check import Check, Outcomes

_EPS = 1e-6
_ATOL = 1e-10
_WIDTH = 100
"""A report's lines wrap at this many characters (a terminal, a notebook, a code block on the site)."""
_SEED = 1729
"""Seeds the random dy of every check: not 0 or 1, which a caller's own input is likely drawn with."""
_OPT = Options(train=False, seed=0, eps=_EPS, rtol=FD_RTOL, atol=_ATOL, max_entries=None)
_UNNAMED = ("It disagrees with central differences, and not by a sign, a constant factor, a transpose or a "
            "forgotten dy: check each term against the equations.")
_NO_DTERMS = "It does not change when dterms doubles: dterms (∂L/∂ℓₙ, 1/N under the mean) is left out."
_FROM_STEP = "It follows from the step's mistake above (BPTT runs the step at every t)."
_DIAGONAL = ("It is dy ⊙ diag(J), the Jacobian's diagonal alone: each output also depends on the other inputs of "
             "its sample (for a softmax ∂yⱼ/∂xᵢ = −yᵢyⱼ off the diagonal), so dx = Jᵀdy sums over them.")


@dataclass(frozen=True)
class VjpCheckReport(Outcomes):
    """What ``check_vjp`` found: ``target`` the class, ``function`` the function's name, ``example`` what it
    ran on, ``checks`` one row per check (a ``Check``: status "pass" or "FAIL", the array, the mistake)."""

    target: str
    function: str
    example: str
    checks: tuple[Check, ...]

    def head(self) -> str:
        """Two lines: the verdict, then what it was checked on."""
        who = f"check_vjp({self.target}, {self.function})"
        if self.passed:
            arrays = list(dict.fromkeys(c.tensor for c in self.checks if c.check == "central differences"))
            verb = "agrees" if len(arrays) == 1 else "agree"
            return f"{who}: right. {', '.join(arrays)} {verb} with central differences\n  on {self.example}."
        return f"{who}: wrong, {len(self.failures)} of {len(self.checks)} checks failed\n  on {self.example}"

    def __str__(self) -> str:
        return self.head() if self.passed else "\n".join([self.head() + ":", *(_row(c) for c in self.checks)])


class VjpCheckError(AssertionError):
    """``check_vjp`` (or ``replace_vjp`` on entering a block) found the function wrong; the message lists the
    failed checks with the likely mistakes."""

    def __init__(self, report: VjpCheckReport) -> None:
        lines = [report.head() + " (fix the first failure first; later ones often follow from it):"]
        super().__init__("\n".join(lines + [_row(c) for c in report.failures]))
        self.report = report


def _row(c: Check) -> str:
    """``  FAIL  check · array  error …``, then what is wrong, wrapped and indented under it."""
    err = f"  error {c.error:.1e} (allowed {c.tol:g})" if c.status == "FAIL" and c.error is not None \
        and c.tol is not None and np.isfinite(c.error) else ""
    line = f"  {c.status:<4}  {c.check} · {c.tensor}{err}"
    return line + ("\n" + textwrap.fill(c.detail, width=_WIDTH, initial_indent=" " * 8,
                                        subsequent_indent=" " * 8, break_on_hyphens=False) if c.detail else "")


def check_vjp(layer_or_loss: Any, vjp: Callable[..., Any], *inputs: Any,
              raise_exception: bool = True) -> VjpCheckReport:
    """Check ``vjp``, a VJP written as a function for a layer or loss class, against central differences.

    ``layer_or_loss``: the class (``nn.Linear``; checked on a small example of nablanet's) or an instance
    to check on, with its ``inputs``: x for a layer, (input, target) for a loss. Runs in float64 on a
    copy. What ``vjp`` takes and returns is in this module's docstring. Raises ``VjpCheckError`` listing
    the failed checks unless ``raise_exception=False``; returns the report (``print`` it).
    """
    obj, args = _example(layer_or_loss, inputs)
    if not callable(vjp):
        raise TypeError(f"check_vjp needs the VJP as a function, e.g. def my_vjp(layer, cache, dy): ...; "
                        f"got {type(vjp).__name__}.")
    with spot_checks_off():  # this is the check; it reports rather than stops at a layer's own first-use check
        if isinstance(obj, Loss):
            rows, where = _loss_checks(obj, vjp, *args)
        else:
            rows, where = _layer_checks(copy.deepcopy(obj).double(), vjp, args[0])
    report = VjpCheckReport(type(obj).__name__, name_of(vjp), where, tuple(rows))
    if raise_exception and not report.passed:
        raise VjpCheckError(report)
    return report


def _example(layer_or_loss: Any, inputs: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    if isinstance(layer_or_loss, type):
        if inputs:
            raise TypeError(f"check_vjp({layer_or_loss.__name__}, vjp, ...): inputs go with an instance to check on, "
                            f"e.g. check_vjp({layer_or_loss.__name__}(...), vjp, x).")
        return example(layer_or_loss)
    want = 2 if isinstance(layer_or_loss, Loss) else 1
    if not isinstance(layer_or_loss, Layer | Loss) or len(inputs) != want:
        raise TypeError("check_vjp(layer, vjp, x) or check_vjp(loss, vjp, input, target), or a class alone (checked "
                        f"on nablanet's example); got {type(layer_or_loss).__name__} and {len(inputs)} input(s).")
    return layer_or_loss, inputs


def _float64(a: Any) -> Any:
    arr = np.asarray(a)
    return np.array(arr, dtype=np.float64) if arr.dtype.kind == "f" else arr


def _raised(fn: Callable[..., Any], exc: Exception) -> str:
    """"linear_vjp raised ValueError: … (line 4: dx = dy @ W.T)": where in the student's code, when known."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.name == getattr(fn, "__name__", None)]
    at = f" (line {frames[-1].lineno}: {frames[-1].line})" if frames and frames[-1].line else ""
    return f"{name_of(fn)} raised {type(exc).__name__}: {exc}{at}"


# -- a layer -------------------------------------------------------------------------------------------
def _layer_checks(m: Layer, fn: Callable[..., Any], x: Any) -> tuple[list[Check], str]:
    xs = _float64(x)
    where = f"{m!r} with x of shape {np.shape(xs)}, float64"
    if isinstance(m, LSTM):
        return _lstm_checks(m, fn, xs), where
    y, cache = m.forward(xs, train=False, rng=np.random.default_rng(0))
    dy = np.random.default_rng(_SEED).standard_normal(np.shape(y))
    problem = _call_problem(m, fn, cache, dy)
    if problem:
        return [Check("call", name_of(fn), "FAIL", detail=problem)], where
    rows = _fd_rows(m, xs, y, partial(fn, m))
    unnamed = any(r.tensor == "dx" and r.detail == _UNNAMED for r in rows)
    if unnamed and _diagonal_only(m, xs, y, fn(m, cache, dy)[0], dy):
        rows = [replace(r, detail=_DIAGONAL) if r.tensor == "dx" else r for r in rows]
    return rows, where


def _call_problem(m: Layer, fn: Callable[..., Any], cache: Any, dy: np.ndarray) -> str:
    """What is wrong with one call's result before any number is compared: an exception, not a pair, no dict."""
    try:
        out = fn(m, cache, dy)
    except Exception as exc:
        return _raised(fn, exc)
    names = [k for k, _ in m.named_parameters()]
    if not isinstance(out, tuple | list) or len(out) != 2:
        return f"It returned {type(out).__name__}; return a pair (dx, grads)."
    if not isinstance(out[1], dict):
        example = "{" + ", ".join(f'"{k}": d{k}' for k in names) + "}" if names else "{}"
        return (f"It returned its gradients as {type(out[1]).__name__}; return them as a dict keyed by the parameter "
                f"names, {example}{'' if names else ' (the layer has no parameters)'}.")
    return ""


def _diagonal_only(m: Layer, x: Any, y: Any, dx: Any, dy: np.ndarray) -> bool:
    """Whether dx is dy ⊙ diag(J), ∂yₖ/∂xₖ entry by entry (central differences), for a layer with y the shape of x."""
    if not isinstance(x, np.ndarray) or np.shape(y) != x.shape or np.shape(dx) != x.shape:
        return False
    diag = np.empty(x.size)
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = _EPS
        up, down = (m.forward(x + s * e.reshape(x.shape), train=False, rng=None)[0].reshape(-1)[k] for s in (1, -1))
        diag[k] = (up - down) / (2 * _EPS)
    return relative_error(dx, dy * diag.reshape(x.shape)) <= 1e-6


def _fd_rows(m: Layer, xs: Any, y: np.ndarray, vjp: Callable[[Any, Any], Any]) -> list[Check]:
    """Every entry of dx and of each gradient against central differences (gradcheck's per-layer check)."""
    rows = _check_layer_vjp(Trace("", m, xs, y, None), _OPT, np.random.default_rng(_SEED), vjp=vjp)
    return [_as_check(r) for r in rows]


def _as_check(r: LayerCheck) -> Check:
    if r.status == "skip":  # no dx where the input is floating point: for an exercise, a mistake
        return Check("call", r.tensor, "FAIL", detail=f"It returns no {r.tensor}: return ∂L/∂x, of the input's shape.")
    check = {"vjp": "central differences", "vjp shape": "shape"}.get(r.check, r.check)
    detail = r.detail.strip() or (_UNNAMED if r.status == "FAIL" else "")
    return Check(check, r.tensor, r.status, r.error, r.tol, detail)


# -- a loss ----------------------------------------------------------------------------------------------
def _loss_checks(loss: Loss, fn: Callable[..., Any], z: Any, target: Any) -> tuple[list[Check], str]:
    """dinput for L against central differences of L over every entry of the input."""
    z = _float64(z)
    where = f"{loss!r} with input of shape {z.shape}, float64"
    _, cache = loss.forward(z, target)
    end = swap_terms_vjp(type(loss), loss_vjp(fn))
    try:  # through the loss's own vjp: the reduction's dterms, as training gets them
        g, doubled = loss.vjp(cache), loss.vjp(cache, 2.0 if loss.reduction != "none" else None)
    except LossVjpShapeError as exc:
        return [Check("shape", "dinput", "FAIL", detail=exc.problem)], where
    except Exception as exc:
        return [Check("call", name_of(fn), "FAIL", detail=_raised(fn, exc))], where
    finally:
        end()
    numeric = central_differences(lambda: float(np.sum(loss.forward(z, target)[0])), z, np.arange(z.size), _EPS)
    numeric = numeric.reshape(z.shape)
    rel, err = relative_error(g, numeric), float(np.max(np.abs(g - numeric)))
    ok = rel <= FD_RTOL or err <= _ATOL
    constant = loss.reduction != "none" and relative_error(doubled, g) <= EXACT_RTOL
    hint = "" if ok else (_NO_DTERMS if constant else factor_hint(g, numeric, z.shape[0]).strip() or _UNNAMED)
    rows = [Check("central differences", "dinput", "pass" if ok else "FAIL", rel, FD_RTOL, hint)]
    if loss.reduction != "none":
        linear = relative_error(doubled, 2 * g)
        rows.append(Check("dterms", "dinput", "pass" if linear <= EXACT_RTOL else "FAIL", linear, EXACT_RTOL,
                          "" if linear <= EXACT_RTOL else f"{_NO_DTERMS} A hard-coded 1/N is right for reduction="
                          "'mean' alone; multiply by dterms instead."))
    return rows, where


# -- an LSTM step ---------------------------------------------------------------------------------------
_GATES = {"i": "iₜ(1 − iₜ), σ′ of the input gate", "f": "fₜ(1 − fₜ), σ′ of the forget gate",
          "g": "1 − gₜ², tanh′ of the candidate", "o": "oₜ(1 − oₜ), σ′ of the output gate"}


def _lstm_checks(m: LSTM, fn: Callable[..., Any], xs: np.ndarray) -> list[Check]:
    """The step against the reference step, gate by gate (on the example's last step), then the whole
    LSTM with the step in its BPTT against central differences."""
    y, full = m.forward(xs, train=False, rng=None)
    cache = full.dirs[0]
    H, s = m.hidden_size, len(cache.acts) - 1  # the last step: cₜ₋₁ ≠ 0
    assert cache.cs is not None and cache.tcs is not None  # an LSTM's cache has them
    i, f, g, o = (cache.acts[s][:, j * H:(j + 1) * H] for j in range(4))
    step = LSTMStep(i, f, g, o, cache.cs[s], cache.tcs[s])
    dh, dc = np.random.default_rng(_SEED).standard_normal((2, *step.i.shape))
    try:
        da, dc_prev = lstm_cell(fn, m)(step, dh, dc)
    except Exception as exc:
        return [Check("call", name_of(fn), "FAIL", detail=_raised(fn, exc))]
    want = lstm_cell_vjp(step, dh, dc)
    without = {"dh": lstm_cell_vjp(step, 0 * dh, dc), "dc": lstm_cell_vjp(step, dh, 0 * dc)}
    deriv = lstm_gate_derivatives(step)
    rows = []
    for j, gate in enumerate(_GATES):
        cols = slice(j * H, (j + 1) * H)
        parts = (da[:, cols], want[0][:, cols], {k: w[0][:, cols] for k, w in without.items()})
        rows.append(_step_row(f"da[{gate}]", *parts, {_GATES[gate]: deriv[:, cols]}))
    rows.append(_step_row("dc_prev", dc_prev, want[1], {k: w[1] for k, w in without.items()}, {"fₜ": step.f}))
    vjp = lstm_vjp_with_cell(lambda layer: lstm_cell(fn, layer))
    whole = _fd_rows(m, xs, y, partial(vjp, m, per_sample=False, need_dx=True))
    if any(r.status == "FAIL" for r in rows):  # one wrong step spoils every gradient of the sequence: say so
        whole = [replace(r, detail=_FROM_STEP) if r.detail == _UNNAMED else r for r in whole]
    return rows + whole


def _step_row(tensor: str, got: np.ndarray, want: np.ndarray, without: dict[str, np.ndarray],
              factors: dict[str, np.ndarray]) -> Check:
    rel = relative_error(got, want)
    if rel <= EXACT_RTOL:
        return Check("LSTM step", tensor, "pass", rel, EXACT_RTOL)
    hint = factor_hint(got, want) or missing_factor_hint(got, want, factors)
    for name, value in without.items():
        if not hint and relative_error(got, value) <= EXACT_RTOL:
            hint = f" It equals the right formula with {name} = 0: {name} is left out."
    return Check("LSTM step", tensor, "FAIL", rel, EXACT_RTOL, hint.strip() or _UNNAMED.replace("forgotten dy", "a "
                 "forgotten input"))
