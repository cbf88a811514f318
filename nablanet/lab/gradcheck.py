"""Central finite differences against backprop: for the model, and for each layer alone.

The model-level check compares every parameter's gradient (and the input's) with central
differences of the loss. Each leaf layer is then checked alone (``nablanet.lab._per_layer``): its
VJP at the input it saw in the model, and its curvature rules where it has them; the model's
``nn.lab.hvp`` against differences of the gradient. The report leads with the layer to blame and
the likely mistake (a factor, a sign, a transpose, a shape), in plain words.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nablanet._diagnose import factor_hint, shape_hint
from nablanet._validation import as_float_input, check_finite
from nablanet.lab._per_layer import (
    LayerCheck,
    Options,
    central_differences,
    check_rop,
    check_vjp,
    has_children,
    layer_traces,
    relative_error,
    rop_input,
)
from nablanet.lab.curvature import hvp
from nablanet.lab.registry import loss_hvp_rules
from nablanet.lab.rules import missing_rules
from nablanet.layers import kernels
from nablanet.layers.base import Layer
from nablanet.layers.contract import spot_checks_off
from nablanet.losses.base import Loss

__all__ = ["GradcheckError", "GradcheckReport", "LayerCheck", "gradcheck", "relative_error"]


class GradcheckError(RuntimeError):
    """Raised by ``gradcheck(..., raise_exception=True)`` when a gradient disagrees."""


@dataclass(frozen=True)
class GradcheckReport:
    """Per checked array: max relative error, max absolute error and entries checked; then each layer alone.

    relative error = max |g_backprop − g_numeric| / max(max |g_backprop|, max |g_numeric|)
    (the error in units of the array's largest gradient entry). An array passes when its relative
    error is ≤ rtol or its absolute error is ≤ atol (for gradients that are zero throughout).
    ``layers``: each layer's own checks (its VJP alone, its curvature rules, the model's H v), a table
    of name as on the tape, class, tensor, relative error and status; ``diagnosis``: the sentence
    that names the layer to blame and the likely mistake ("" when everything passed).
    """

    rel_errors: dict[str, float]
    abs_errors: dict[str, float]
    n_checked: dict[str, int]
    rtol: float
    atol: float
    loss_value: float
    failed: list[str] = field(default_factory=list)
    layers: tuple[LayerCheck, ...] = ()
    diagnosis: str = ""

    @property
    def passed(self) -> bool:
        return not self.failed and not self.layer_failures

    @property
    def layer_failures(self) -> list[LayerCheck]:
        return [r for r in self.layers if r.status == "FAIL"]

    @property
    def max_rel_error(self) -> float:
        return max(self.rel_errors.values(), default=0.0)

    def __str__(self) -> str:
        width = max((len(k) for k in self.rel_errors), default=5)
        rows = [f"{'array':<{width}}  {'checked':>8}  {'max rel err':>12}  {'max abs err':>12}  ok"]
        for k, rel in self.rel_errors.items():
            ok = "no" if k in self.failed else "yes"
            rows.append(f"{k:<{width}}  {self.n_checked[k]:>8}  {rel:>12.3e}  {self.abs_errors[k]:>12.3e}  {ok}")
        head = [self.diagnosis] if self.diagnosis else []
        return "\n".join([*head, *rows, *_layer_table(self.layers)])


def _layer_table(layers: tuple[LayerCheck, ...]) -> list[str]:
    """Each layer's own checks, one row each; a skipped one says why."""
    if not layers:
        return []
    names = [r.layer or "(model)" for r in layers]
    w1, w2 = max(len(n) for n in [*names, "layer"]), max(len(r.kind) for r in layers)
    w3 = max(len(f"{r.check} {r.tensor}") for r in layers)
    rows = ["", f"each layer alone:\n{'layer':<{w1}}  {'class':<{w2}}  {'check':<{w3}}  {'rel err':>9}  ok"]
    for name, r in zip(names, layers, strict=True):
        err = "" if r.error is None else f"{r.error:.2e}"
        ok = {"pass": "yes", "FAIL": "no"}.get(r.status, f"not checked: {r.detail}")
        rows.append(f"{name:<{w1}}  {r.kind:<{w2}}  {r.check + ' ' + r.tensor:<{w3}}  {err:>9}  {ok}")
    return rows


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
    per_layer: bool = True,
    curvature: bool = True,
) -> GradcheckReport:
    """Compare backprop with central differences (L(θ + ε) − L(θ − ε))/2ε in float64, for the model
    and for each layer alone.

    Works on a float64 copy of ``model`` (the model itself is not changed). Every entry of every
    parameter (and of ``x`` when ``check_input``) is perturbed, or a seeded random subset of
    ``max_entries`` per array. A forward in ``train`` mode reuses one seeded generator per
    evaluation, so dropout masks are the same in every evaluation. The input's entry is
    ``"input"``; a model of several inputs (``Bilinear``) takes ``x`` as a tuple, whose entries are
    ``"input.0"``, ``"input.1"``, …. A model that returns no input gradient (integer indices into an
    ``Embedding``) needs ``check_input=False``.

    ``per_layer`` (default True) also checks each leaf layer's VJP alone, at the input it saw in the
    model, against central differences of ⟨dy, f(x)⟩ for a random dy (``max_entries`` applies per
    array), so a wrong VJP is blamed on its own layer, not on the layers below it. ``curvature``
    (default True) checks each layer's R-op rules where it has them, and ``nn.lab.hvp`` against
    differences of the gradient where the model and loss have them all (layers without rules are
    listed as not checked). A gradient of the wrong shape is named (layer, parameter, both shapes).
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
    opt = Options(train, seed, eps, rtol, atol, max_entries)
    model_check = _ModelCheck(m, loss, xa, target, opt)
    layers: list[LayerCheck] = []
    with spot_checks_off():  # this is the check: it reports a wrong layer rather than stopping at it
        model_check.run(inputs if check_input else [], several)
        if per_layer or curvature:
            layers = _layer_checks(m, xa, opt, per_layer, curvature)
        if curvature:
            layers += _check_hvp(model_check, layers, several)
    c = model_check
    lead = _diagnosis(c.failed, c.hints, layers, c.crashed, m)
    report = GradcheckReport(c.rel, c.absr, c.counts, rtol, atol, c.value, c.failed, tuple(layers), lead)
    if raise_exception and not report.passed:
        raise GradcheckError(f"{lead}\n(rtol={rtol}, atol={atol})\n{report}")
    return report


class _ModelCheck:
    """The model-level comparison: every parameter and input gradient against differences of the loss."""

    def __init__(self, m: Layer, loss: Loss, xa: Any, target: Any, opt: Options) -> None:
        self.m, self.loss, self.xa, self.target, self.opt = m, loss, xa, target, opt
        self.rel: dict[str, float] = {}
        self.absr: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.failed: list[str] = []
        self.hints: dict[str, str] = {}
        self.crashed = ""
        self.value = float("nan")

    def gradient(self, with_grad: bool = True) -> tuple[float, Any, dict[str, np.ndarray]]:
        """L, and backprop's dx and parameter gradients (with_grad) at the model's current parameters."""
        y, cache = kernels.forward(self.m, self.xa, train=self.opt.train, rng=np.random.default_rng(self.opt.seed))
        value, lcache = self.loss.forward(y, self.target)
        if not with_grad:
            return float(value), None, {}
        dx, grads = kernels.vjp(self.m, cache, self.loss.vjp(lcache), per_sample=False, need_dx=True)
        return float(value), dx, grads

    def run(self, inputs: list[np.ndarray], several: bool) -> None:
        try:
            self.value, dx, grads = self.gradient()
        except Exception as exc:  # a wrongly shaped gradient may break the next layer's VJP: name the layer
            self.crashed = f"the model's backward raised {type(exc).__name__}: {exc}"
            self.failed.append("backward")
            return
        arrays: dict[str, tuple[np.ndarray, Any]] = {
            name: (p.data, grads.get(name)) for name, p in self.m.named_parameters()}
        if inputs and dx is not None:
            arrays.update(_input_arrays(inputs, dx, several))
        picker = np.random.default_rng(self.opt.seed)
        n = int(inputs[0].shape[0]) if inputs and inputs[0].ndim else None
        for name, (arr, g) in arrays.items():
            flat_idx = np.arange(arr.size)
            if self.opt.max_entries is not None and arr.size > self.opt.max_entries:
                flat_idx = np.sort(picker.choice(arr.size, size=self.opt.max_entries, replace=False))
            self.counts[name] = len(flat_idx)
            if np.shape(g) != arr.shape:  # no differences for a gradient that cannot be right
                self.rel[name], self.absr[name] = float("inf"), float("inf")
                self.failed.append(name)
                got = None if g is None else np.shape(g)
                self.hints[name] = f" Backprop gave shape {got}, the array has {arr.shape}." + (
                    shape_hint(got, arr.shape, n) if got is not None else "")
                continue
            numeric = central_differences(lambda: self.gradient(False)[0], arr, flat_idx, self.opt.eps)
            analytic = np.asarray(g, dtype=np.float64).reshape(-1)[flat_idx]
            err = float(np.max(np.abs(analytic - numeric), initial=0.0))
            self.rel[name] = relative_error(analytic, numeric)
            self.absr[name] = err
            if not (self.rel[name] <= self.opt.rtol or err <= self.opt.atol):
                self.failed.append(name)
                whole = len(flat_idx) == arr.size
                self.hints[name] = factor_hint(analytic.reshape(arr.shape if whole else -1),
                                               numeric.reshape(arr.shape if whole else -1), n)


def _layer_checks(m: Layer, xa: Any, opt: Options, per_layer: bool, curvature: bool) -> list[LayerCheck]:
    """Each layer's VJP alone (per_layer) and its R-op rules (curvature), in forward order."""
    traces = layer_traces(m, xa, train=opt.train, seed=opt.seed)
    rng = np.random.default_rng(opt.seed + 1)
    rows: list[LayerCheck] = []

    def forward(layer: Layer, x: Any) -> tuple[Any, Any]:
        return layer.forward(x, train=opt.train, rng=np.random.default_rng(opt.seed))

    for t in traces:
        kind = type(t.layer).__name__
        if per_layer:
            rows += check_vjp(t, opt, rng)
        if not curvature:
            continue
        gaps = missing_rules(type(t.layer))
        if gaps:
            rows.append(LayerCheck(t.name, kind, "curvature rules", "", "skip", detail="no " + ", ".join(
                g.registry.quantity for g in gaps) + " rule (the curvature lab refuses it)"))
        elif rop_input(t.x):
            rows += check_rop(t.name, t.layer, t.x, forward, rng)
    return rows


def _check_hvp(c: _ModelCheck, layers: list[LayerCheck], several: bool) -> list[LayerCheck]:
    """nn.lab.hvp against (∇L(θ + εv) − ∇L(θ − εv))/2ε along a random v, where every rule exists."""
    kind = type(c.m).__name__
    no_rule = sorted({r.kind for r in layers if r.check == "curvature rules"})
    why = (f"no curvature rules for {', '.join(no_rule)}" if no_rule else
           f"no loss_hvp rule for {type(c.loss).__name__}" if c.loss not in loss_hvp_rules else
           "a model of several inputs" if several else "the model's backward failed" if c.crashed else "")
    params = dict(c.m.named_parameters())
    if why or not params:
        return [LayerCheck("", kind, "hvp", "H v", "skip", detail=why or "no parameters")]
    rng = np.random.default_rng(c.opt.seed + 2)
    v = {k: rng.standard_normal(p.shape) for k, p in params.items()}
    try:
        hv = hvp(c.m, c.loss, c.xa, c.target, v, train=c.opt.train, rng=np.random.default_rng(c.opt.seed))
    except (NotImplementedError, ValueError) as exc:
        return [LayerCheck("", kind, "hvp", "H v", "skip", detail=str(exc).split(";")[0])]
    eps, saved = c.opt.eps, {k: p.data.copy() for k, p in params.items()}
    sides = []
    try:
        for s in (1.0, -1.0):
            for k, p in params.items():
                p.data[...] = saved[k] + s * eps * v[k]
            sides.append(c.gradient()[2])
    finally:
        for k, p in params.items():
            p.data[...] = saved[k]
    got = np.concatenate([np.ravel(hv[k]) for k in params])
    fd = np.concatenate([np.ravel((sides[0][k] - sides[1][k]) / (2 * eps)) for k in params])
    err, tol = relative_error(got, fd), 1e-5  # differences of a gradient: ε² and rounding of a difference
    detail = "" if err <= tol else ("nn.lab.hvp disagrees with central differences of the gradient along a random "
                                    f"direction v.{factor_hint(got, fd)}")
    return [LayerCheck("", kind, "hvp", "H v", "pass" if err <= tol else "FAIL", err, tol, detail)]


def _diagnosis(failed: list[str], hints: dict[str, str], layers: list[LayerCheck], crashed: str, m: Layer) -> str:
    """The report's first line: the layer to blame and the likely mistake, in plain words ("" if all passed)."""
    fails = [r for r in layers if r.status == "FAIL"]
    if not failed and not fails:
        return ""
    containers = {r.layer for r in layers if r.check == "vjp"} & {
        name for name, layer in _named_layers(m) if has_children(layer)}
    crash = f"{crashed}. " if crashed else ""
    shape = [r for r in fails if r.check == "vjp shape"]
    leaf = [r for r in fails if r.check == "vjp" and r.layer not in containers]
    composed = [r for r in fails if r.check == "vjp" and r.layer in containers]
    rules = [r for r in fails if r.check not in ("vjp", "vjp shape")]
    more = f" ({len(fails) - 1} more failure(s) below; fix this one first.)" if len(fails) > 1 else ""
    if shape:  # the shape explains any crash of the model's backward (the dispatch's check names it too)
        r = shape[0]
        return f"gradcheck failed for {r.who}: {r.detail}{more}"
    if leaf:
        r = leaf[0]
        return (f"gradcheck failed for {r.who}: {crash}its VJP's {r.tensor} disagrees with central differences "
                f"of that layer alone (relative error {r.error:.1e}).{r.detail}{more}")
    if composed:
        r = composed[0]
        return (f"gradcheck failed for {r.who}: {crash}the composition is at fault: every layer inside it passes "
                f"alone, but its own backward combines their VJPs wrongly ({r.tensor}: relative error "
                f"{r.error:.1e}).{r.detail}{more}")
    if rules:
        r = rules[0]
        return f"gradcheck failed for {r.who}: its {r.check} is wrong: {r.detail}{more}"
    hint = next((f" {k}:{hints[k]}" for k in failed if hints.get(k)), "")
    if not any(r.check == "vjp" for r in layers):
        return f"gradcheck failed for {failed}: {crash}they disagree with central differences.{hint}"
    outer = [f"'{n}' ({type(layer).__name__})" if n else f"the model ({type(layer).__name__})"
             for n, layer in _named_layers(m) if has_children(layer)]
    return (f"gradcheck failed for {failed}: {crash}every layer passes alone, so the composition is at fault: the "
            f"backward of {' or '.join(outer) or 'the model'} (a container's own backward), or the loss's vjp.{hint}")


def _named_layers(m: Layer) -> list[tuple[str, Layer]]:
    return [(pre[:-1], layer) for pre, layer in m._walk()]


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
