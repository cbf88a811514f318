"""``check_layer``: a layer against everything nablanet checks its own layers for (the list of checks and
an example of a layer of your own are in the package's docstring, ``nablanet/testing/__init__.py``)."""

from __future__ import annotations

import copy
import inspect
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nablanet.lab._per_layer import EXACT_RTOL, FD_RTOL, check_rop, rop_input
from nablanet.lab._per_layer import relative_error as _rel_err
from nablanet.lab._per_layer import sign_hint as _sign_hint
from nablanet.lab._tape import forward_trace
from nablanet.lab.gradcheck import gradcheck
from nablanet.lab.registry import per_sample_grad_norms_rules, rules_home
from nablanet.lab.rules import missing_rules
from nablanet.lab.rules.base import norms
from nablanet.layers import Layer, Sequential, contract, kernels
from nablanet.layers.contract import spot_checks_off
from nablanet.losses.quadratic import MSELoss
from nablanet.train._architecture import layer_classes
from nablanet.train.checkpoint import load, save

__all__ = ["Check", "LayerCheckError", "LayerCheckReport", "check_layer"]

_VECTORS = 3
_MAX_SINGLETONS = 8


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``status`` is "pass", "FAIL" or "skip"; ``error`` the largest relative
    error found (``tol`` the allowed one); ``detail`` what is wrong and what to fix, or why skipped."""

    check: str
    tensor: str
    status: str
    error: float | None = None
    tol: float | None = None
    detail: str = ""

    def __str__(self) -> str:
        err = "" if self.error is None else f"  error {self.error:.1e}" + (
            "" if self.tol is None else f" (allowed {self.tol:g})")
        tail = f": {self.detail}" if self.detail else ""
        return f"{self.status:<4}  {self.check} · {self.tensor}{err}{tail}"


class Outcomes:
    """What a report of ``Check`` rows answers: which failed, and whether all passed."""

    checks: tuple[Check, ...]

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "FAIL"]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class LayerCheckReport(Outcomes):
    """Every check ``check_layer`` ran on ``layer``, in order."""

    layer: str
    checks: tuple[Check, ...]

    def __str__(self) -> str:
        counts = {s: sum(c.status == s for c in self.checks) for s in ("pass", "FAIL", "skip")}
        head = f"check_layer({self.layer}): {counts['pass']} passed, {counts['FAIL']} failed, {counts['skip']} skipped"
        return "\n".join([head, *(f"  {c}" for c in self.checks)])


class LayerCheckError(AssertionError):
    """``check_layer`` found something wrong; the message lists each failed check in plain words."""

    def __init__(self, report: LayerCheckReport) -> None:
        fails = report.failures
        lines = [f"check_layer({report.layer}): {len(fails)} of {len(report.checks)} checks failed "
                 "(fix the first one first; later ones often follow from it):"]
        lines += [f"  {c}" for c in fails]
        super().__init__("\n".join(lines))
        self.report = report


def check_layer(
    layer: Layer,
    example_input: Any,
    *,
    train: bool = False,
    seed: int = 0,
    batch_axis: int | None = None,
    pytorch: bool = True,
    allow_missing: Iterable[str] = (),
    curvature: bool = False,
    raise_exception: bool = True,
) -> LayerCheckReport:
    """Check a layer's forward, VJP, vector axes, per-sample gradients, lab rules and PyTorch parity.

    ``example_input``: a small batch (N of 2 to 4 samples keeps it fast), a tuple of arrays for a
    layer of several inputs (``Bilinear``); floats are checked in float64, integers (indices) are
    passed as they are and not differentiated. Keep entries away from kinks (ReLU at 0, max-pool
    ties), where finite differences do not apply. ``train`` selects the forward's mode (each
    evaluation draws from ``numpy.random.default_rng(seed)``, so dropout masks repeat).
    ``batch_axis``: the sample axis of input and output, by default 0, or 1 for a layer with
    ``batch_first=False``. ``pytorch=False`` skips the parity check. ``allow_missing`` names rules
    the lab may lack, as "LSTM.jvp". A layer of your own passes without curvature rules (they are
    reported as optional) unless ``curvature=True``; nablanet's own layers must have them. Raises
    ``LayerCheckError`` on any failure unless ``raise_exception=False``; returns the report (print it
    for the whole table).
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"check_layer expects a nablanet Layer such as nn.Linear(3, 2); got {type(layer).__name__}.")
    checker = _Checker(layer, example_input, train, seed, batch_axis)
    checker.curvature = curvature
    with spot_checks_off():  # this is the check: it reports every mistake rather than stopping at the first
        checker.run(pytorch, frozenset(allow_missing))
    report = LayerCheckReport(_describe(layer), tuple(checker.checks))
    if raise_exception and not report.passed:
        raise LayerCheckError(report)
    return report


def _dtype_of(layer: Layer, a: np.ndarray) -> Any:
    """The dtype the layer computes in: its parameters', else the input's own (integers stay)."""
    return a.dtype if a.dtype.kind != "f" or layer.dtype is None else layer.dtype


def _describe(layer: Layer) -> str:
    text = repr(layer)
    return text if "\n" not in text and len(text) <= 80 else type(layer).__name__


def _as_inputs(example_input: Any) -> tuple[tuple[np.ndarray, ...], bool]:
    """The example as float64 arrays (integer arrays kept as they are), and whether it is a tuple."""
    several = isinstance(example_input, tuple | list)
    arrays = []
    for a in example_input if several else (example_input,):
        arr = np.asarray(a)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"check_layer: the example input has dtype {arr.dtype}; pass numbers (float or int).")
        arrays.append(np.array(arr, dtype=np.float64) if arr.dtype.kind == "f" else arr)
    return tuple(arrays), several


class _Checker:
    """The checks of ``check_layer`` on a float64 copy of one layer, appending to ``checks``."""

    def __init__(self, layer: Layer, example_input: Any, train: bool, seed: int, batch_axis: int | None) -> None:
        self.original = copy.deepcopy(layer)
        self.m = copy.deepcopy(layer).double()
        self.who = type(layer).__name__
        self.inputs, self.several = _as_inputs(example_input)
        self.x: Any = self.inputs if self.several else self.inputs[0]
        self.float_in = [i for i, a in enumerate(self.inputs) if a.dtype.kind == "f"]
        self.train, self.seed = train, seed
        self.axis = batch_axis if batch_axis is not None else (0 if getattr(layer, "batch_first", True) else 1)
        self.rng = np.random.default_rng(seed + 1)
        self.checks: list[Check] = []
        self.params = dict(self.m.named_parameters())
        self.short = not contract.vjp_form(type(layer)).per_sample
        self.curvature = False

    def add(self, check: str, tensor: str, ok: bool, error: float | None = None, tol: float | None = None,
            fail: str = "") -> None:
        self.checks.append(Check(check, tensor, "pass" if ok else "FAIL", error, tol, "" if ok else fail))

    def skip(self, check: str, why: str, tensor: str = "-") -> None:
        self.checks.append(Check(check, tensor, "skip", detail=why))

    def forward(self, layer: Layer, x: Any) -> tuple[Any, Any]:
        return layer.forward(x, train=self.train, rng=np.random.default_rng(self.seed))

    def vjp(self, cache: Any, dy: np.ndarray, *, per_sample: bool = False, vector_axes: int = 0) -> tuple[Any, Any]:
        """The layer's VJP as the library calls it: a short-form vjp(cache, dy) gets nablanet's loops for
        vector axes and per-sample gradients (``nablanet.layers.contract``); the full form is called as is."""
        if self.short:
            return contract.short_form_vjp(self.m, cache, dy, vector_axes, per_sample, True)
        return self.m.vjp(cache, dy, per_sample=True) if per_sample else self.m.vjp(cache, dy)

    def dx_list(self, dx: Any) -> list[Any]:
        """dx as one entry per input (None where the input is integer and not differentiated)."""
        parts = list(dx) if self.several and isinstance(dx, tuple | list) else [dx]
        parts = (parts + [None] * len(self.inputs))[: len(self.inputs)]
        return [d if i in self.float_in else None for i, d in enumerate(parts)]

    def input_name(self, i: int) -> str:
        return f"dx.{i}" if self.several else "dx"

    def run(self, pytorch: bool, allow_missing: frozenset[str]) -> None:
        if not self.check_forward() or not self.check_shapes():
            return
        if self.short:
            self.skip("VJP form", "short form vjp(cache, dy): nablanet supplies vector axes (one VJP per vector) and "
                      "per-sample gradients (one VJP per sample), checked below through those loops; write the full "
                      "form vjp(cache, dy, *, per_sample=False, need_dx=True) for speed", "vjp")
        self.check_finite_differences()
        self.check_vector_axes()
        coupled = self.check_per_sample()
        self.check_rules(allow_missing, coupled)
        self.check_saving()
        if pytorch:
            _check_pytorch(self)

    # -- 1, 2: forward and the VJP's shapes ------------------------------------------------------------
    def check_forward(self) -> bool:
        try:
            self.y, self.cache = self.forward(self.m, self.x)
        except Exception as exc:
            self.add("forward", "y", False, fail=f"forward raised {type(exc).__name__}: {exc}")
            return False
        if not isinstance(self.y, np.ndarray):
            raise TypeError(
                f"check_layer needs a layer whose output is one array; {self.who} returns a {type(self.y).__name__}. "
                "Check it inside a model that consumes it, e.g. Sequential(Pair(f, g), Bilinear(...))."
            )
        if self.y.dtype != np.float64 or not np.all(np.isfinite(self.y)):
            bad = "NaN/inf" if self.y.dtype.kind == "f" and not np.all(np.isfinite(self.y)) else self.y.dtype
            self.add("forward", "y", False, fail=f"forward returned {bad} for a finite float64 input and float64 "
                     "parameters; compute in the input's dtype (x.dtype) and keep the output finite.")
            return False
        self.add("forward", "y", True)
        return True

    def check_shapes(self) -> bool:
        self.dy = self.rng.standard_normal(self.y.shape)
        try:
            dx, self.grads = self.m.vjp(self.cache, self.dy)
        except Exception as exc:
            self.add("VJP shapes", "vjp", False, fail=f"vjp(cache, dy) raised {type(exc).__name__}: {exc}")
            return False
        self.dx = self.dx_list(dx)
        wrong = [f"{self.input_name(i)} has shape {np.shape(d)}, the input {self.inputs[i].shape}"
                 for i, d in enumerate(self.dx) if d is not None and np.shape(d) != self.inputs[i].shape]
        missing, extra = sorted(set(self.params) - set(self.grads)), sorted(set(self.grads) - set(self.params))
        wrong += [f"no gradient for parameter {k!r}" for k in missing]
        wrong += [f"a gradient {k!r} for no parameter (the parameters are {sorted(self.params)})" for k in extra]
        wrong += [f"d{k} has shape {np.shape(g)}, the parameter {self.params[k].shape}"
                  for k, g in self.grads.items() if k in self.params and np.shape(g) != self.params[k].shape]
        self.add("VJP shapes", "dx, grads", not wrong, fail="; ".join(wrong) + ". vjp must return dx of the input's "
                 "shape and {parameter name: gradient of the parameter's shape}.")
        return not wrong

    # -- 3, 4: finite differences and vector axes ----------------------------------------------------------
    def check_finite_differences(self) -> None:
        target = self.rng.standard_normal(self.y.shape)
        report = gradcheck(self.m, MSELoss(reduction="sum"), self.x, target, eps=1e-6, rtol=FD_RTOL,
                           check_input=bool(self.float_in) and len(self.float_in) == len(self.inputs),
                           train=self.train, seed=self.seed, per_layer=False, curvature=False)
        for name, rel in report.rel_errors.items():
            what = "dx" + name.removeprefix("input") if name.startswith("input") else f"d{name}"
            self.add("finite differences", what, name not in report.failed, rel, FD_RTOL,
                     f"backprop's {what} disagrees with central differences of the forward (max abs error "
                     f"{report.abs_errors[name]:.1e}).{_sign_hint(rel)} Fix its formula in vjp, or move the example "
                     "input away from a kink (ReLU at 0, max-pool ties), where differences do not apply.")

    def check_vector_axes(self) -> None:
        dys = self.rng.standard_normal((_VECTORS, *self.y.shape))
        try:
            dx_v, g_v = self.vjp(self.cache, dys, vector_axes=1)
        except Exception as exc:
            self.add("vector axes", "vjp", False, fail=f"vjp with dy of shape {dys.shape} (a leading vector axis) "
                     f"raised {type(exc).__name__}: {exc}. Let every axis in front of the output's own axes "
                     "broadcast (einsum with '...', or reshape the leading axes together).")
            return
        rows = [self.vjp(self.cache, dys[v]) for v in range(_VECTORS)]
        pairs = [(self.input_name(i), d, [self.dx_list(r[0])[i] for r in rows])
                 for i, d in enumerate(self.dx_list(dx_v)) if d is not None]
        pairs += [(f"d{k}", g_v.get(k), [r[1][k] for r in rows]) for k in self.params]
        for name, stacked, singles in pairs:
            err = _rel_err(stacked, np.stack(singles))
            self.add("vector axes", name, err <= EXACT_RTOL, err, EXACT_RTOL,
                     f"{name} for dy stacked as ({_VECTORS}, *y.shape) differs from the {_VECTORS} VJPs one by one "
                     f"(shape {np.shape(stacked)}, expected ({_VECTORS}, ...)): leading axes of dy are independent.")

    # -- 5: per-sample gradients ---------------------------------------------------------------------------
    def check_per_sample(self) -> bool:
        """Returns True when the layer declared per-sample gradients undefined (the samples are coupled)."""
        if not self.params:
            self.skip("per-sample gradients", "the layer has no parameters")
            return False
        try:
            _, per = self.vjp(self.cache, self.dy, per_sample=True)
        except ValueError as exc:
            self.skip("per-sample gradients", f"the layer declares them undefined here: {exc}")
            return True
        n = self.inputs[0].shape[self.axis]
        for k, p in self.params.items():
            g: Any = per.get(k)
            if np.shape(g) != (n, *p.shape):
                self.add("per-sample gradients", f"d{k}", False, fail=f"shape {np.shape(g)}, expected (N, *{k}.shape) "
                         f"= {(n, *p.shape)}: with per_sample=True keep the batch axis first.")
                continue
            err = _rel_err(np.sum(g, axis=0), self.grads[k])
            self.add("per-sample gradients", f"d{k}", err <= EXACT_RTOL, err, EXACT_RTOL,
                     "the per-sample gradients do not sum to the batch gradient: per_sample=True must return each "
                     "sample's own term of the batch gradient's sum over n.")
        if not self.train:
            self.check_singletons(per, n)
        self.check_norm_rule()
        return False

    def check_singletons(self, per: dict[str, np.ndarray], n: int) -> None:
        worst: dict[str, float] = {"y": 0.0, **{f"d{k}": 0.0 for k in self.params}}
        for s in range(min(n, _MAX_SINGLETONS)):
            one = tuple(np.take(a, [s], axis=self.axis) for a in self.inputs)
            y1, c1 = self.forward(self.m, one if self.several else one[0])
            _, g1 = self.vjp(c1, np.take(self.dy, [s], axis=self.axis))
            worst["y"] = max(worst["y"], _rel_err(y1, np.take(self.y, [s], axis=self.axis)))
            for k in self.params:
                if np.shape(per.get(k, ())) == (n, *self.params[k].shape):
                    worst[f"d{k}"] = max(worst[f"d{k}"], _rel_err(g1[k], per[k][s]))
        for name, err in worst.items():
            what = "output" if name == "y" else f"gradient {name}"
            self.add("batch = stacked singletons", name, err <= EXACT_RTOL, err, EXACT_RTOL,
                     f"each sample alone gives another {what} than its row of the batch (sample axis {self.axis}): "
                     "the layer mixes samples, or per_sample=True indexes the wrong axis.")

    def check_norm_rule(self) -> None:
        for entry in self.m.backward(self.cache, self.dy, accumulate=False):
            if not entry.grads:
                continue
            rule = per_sample_grad_norms_rules[entry.layer]
            got = rule(entry, 1.0)
            _, per = kernels.vjp(entry.layer, entry.cache, entry.dy, per_sample=True, need_dx=False, vector_axes=0)
            for k in entry.grads:
                err = _rel_err(got.get(k), norms(per[k]))
                name = f"{entry.name}.{k}" if entry.name else k
                self.add("per-sample norm rule", name, err <= EXACT_RTOL, err, EXACT_RTOL,
                         f"the lab's rule {rule.__module__}.{rule.__name__} gives other norms than ‖gₙ‖ of the "
                         "materialized per-sample gradients: fix the closed form.")

    # -- 8: save and load (before 7, which needs torch) ---------------------------------------------------
    def check_saving(self) -> None:
        """``nn.save`` then ``nn.load`` of the layer as the user built it (its own dtype) gives its output."""
        cls = type(self.original)
        if cls not in layer_classes().values():
            self.skip("save and load", f"{cls.__name__} is not registered, so nn.save refuses it; decorate the class "
                      "with @nn.register_layer (and return the constructor's arguments from get_config()) to save it")
            return
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "layer.npz"
            try:
                save(self.original, path)
                loaded = load(path)
            except (TypeError, ValueError) as exc:
                self.add("save and load", "get_config", False, fail=str(exc))
                return
        x = tuple(np.asarray(a, dtype=_dtype_of(self.original, a)) for a in self.inputs)
        want, got = (self.forward(m, x if self.several else x[0])[0] for m in (self.original, loaded))
        err = _rel_err(got, want)
        self.add("save and load", "y", err == 0.0, err, 0.0, "the loaded layer's output differs from the saved "
                 "one's: get_config() does not rebuild it (a setting left out of the config?).")

    # -- 6: the lab's rules ------------------------------------------------------------------------------
    def check_rules(self, allow_missing: frozenset[str], coupled: bool) -> None:
        traces = [t for t in forward_trace(self.m, self.x, train=self.train, rng=np.random.default_rng(self.seed))
                  if t.depth == 0 and not isinstance(t.layer, Sequential)]  # the layer, or a Sequential's layers
        seen: set[type] = set()
        for t in traces:
            cls = type(t.layer)
            if cls in seen:
                continue
            seen.add(cls)
            gaps = missing_rules(cls)
            for gap in gaps:
                if gap.key in allow_missing:
                    self.skip("lab rules", f"allowed gap: {gap}", gap.key)
                elif rules_home(cls) is None and not self.curvature:
                    self.skip("lab rules", f"optional: {gap}. Without it the curvature lab (nn.lab.hvp, "
                              "hessian_eigenvalues, newton_step) refuses models containing the layer; pass "
                              "curvature=True to require it", gap.key)
                else:
                    self.add("lab rules", gap.key, False, fail=f"{gap}. Without it the curvature lab (nn.lab.hvp, "
                             "hessian, hessian_eigenvalues, newton_step) fails on any model containing the layer.")
            if not gaps:
                self.add("lab rules", cls.__name__, True)
        if coupled:
            self.skip("R-op rules", "the layer couples the samples here; the curvature lab refuses it in this mode")
            return
        for t in traces:
            if not missing_rules(type(t.layer)) and rop_input(t.x):
                _check_rop(self, t.name or self.who, t.layer, t.x)


def _check_rop(c: _Checker, where: str, layer: Layer, x: Any) -> None:
    """The JVP and VJP-of-R-op rules of one leaf against central differences (the lab's check, which
    gradcheck runs too), as rows of this report: the tensor is the layer's name, then the rule's."""
    for r in check_rop(where, layer, x, c.forward, c.rng):
        tensor = where if r.check in ("jvp rule", "R-op rules") else f"{where} {r.tensor}"
        c.checks.append(Check(r.check, tensor, r.status, r.error, r.tol, r.detail))


# -- 7: PyTorch parity -------------------------------------------------------------------------------------
def _check_pytorch(c: _Checker) -> None:
    """Forward, input gradient and parameter gradients against torch.nn's class of the same name."""
    try:
        import torch
    except ImportError:
        c.skip("PyTorch parity", "torch is not installed")
        return
    twin, why = _torch_twin(c.m, torch)
    if twin is None or c.train:
        c.skip("PyTorch parity", why or "runs in eval mode only (train=False): random layers draw other masks there")
        return
    if not _load_into_torch(c, twin, torch):
        return
    twin.eval()
    xs = [torch.tensor(a, requires_grad=True) if a.dtype.kind == "f" else torch.as_tensor(a) for a in c.inputs]
    params = inspect.signature(twin.forward).parameters
    self_attention = len(xs) == 1 and {"query", "key", "value"} <= set(params)
    out = twin(xs[0], xs[0], xs[0]) if self_attention else twin(*xs)
    out = out[0] if isinstance(out, tuple) else out  # (output, h) of the recurrent layers, (output, weights)
    ours = f"torch.nn.{type(twin).__name__}"
    err = _rel_err(c.y, out.detach().numpy())
    c.add("PyTorch parity", "y", err <= EXACT_RTOL, err, EXACT_RTOL, f"the output differs from {ours}'s on the same "
          f"weights (shapes {c.y.shape}, {tuple(out.shape)}): the forward's formula, a default, or the weight "
          "layout differs from PyTorch's.")
    out.backward(torch.from_numpy(c.dy))
    pairs = [(c.input_name(i), c.dx[i], xs[i].grad) for i in c.float_in]
    pairs += [(f"d{k}", c.grads.get(k), p.grad) for k, p in twin.named_parameters()]
    for name, got, want in pairs:
        err = _rel_err(got, None if want is None else want.numpy())
        c.add("PyTorch parity", name, err <= EXACT_RTOL, err, EXACT_RTOL,
              f"{name} differs from PyTorch's autograd through {ours}: fix its formula in vjp.")


def _torch_twin(layer: Layer, torch: Any) -> tuple[Any, str]:
    """torch.nn's module of the layer's class name built from its config (Sequential: of its children's
    twins), or (None, why not). Config entries equal to the constructor's default are left to PyTorch's."""
    name = type(layer).__name__
    if isinstance(layer, Sequential):
        kids = [_torch_twin(child, torch) for child in layer]
        why = next((w for t, w in kids if t is None), "")
        return (None, why) if why else (torch.nn.Sequential(*[t for t, _ in kids]), "")
    cls = getattr(torch.nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        return None, f"PyTorch has no torch.nn.{name}"
    sig = inspect.signature(type(layer).__init__).parameters
    config = {k: v for k, v in layer.get_config().items()
              if k != "dtype" and not (k in sig and sig[k].default is not inspect.Parameter.empty
                                       and _same(sig[k].default, v))}
    try:
        return cls(**config).double(), ""
    except (TypeError, ValueError) as exc:
        return None, f"torch.nn.{name}(**{config}) cannot be built ({exc}); a nablanet-only option has no twin"


def _same(default: Any, value: Any) -> bool:
    try:
        return bool(default == value)
    except (TypeError, ValueError):
        return False


def _load_into_torch(c: _Checker, twin: Any, torch: Any) -> bool:
    """Our state_dict into the twin; a failure (names, shapes) is a failed check."""
    ours = f"torch.nn.{type(twin).__name__}"
    state = {k: torch.from_numpy(np.array(v)) for k, v in c.m.state_dict().items()}
    try:
        result = twin.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        c.add("PyTorch parity", "state_dict", False, fail=f"the weights do not fit {ours}: {exc}. Use PyTorch's "
              "parameter shapes and layouts.")
        return False
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        c.add("PyTorch parity", "state_dict", False, fail=f"state_dict keys differ from {ours}'s: theirs lacks "
              f"{result.unexpected_keys}, ours lacks {missing}. Name parameters and buffers as PyTorch does.")
        return False
    return True
