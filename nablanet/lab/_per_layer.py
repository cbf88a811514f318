"""Each layer alone against central differences of itself: its VJP, and its curvature rules.

A model-level gradient check says *which parameter's* gradient is wrong, but a wrong dx in one layer
spoils the gradients of every layer below it, so the blame lands too low. Here each leaf layer is
checked in isolation at the input it saw inside the model: for a random dy, its ``vjp(cache, dy)``
against central differences of ⟨dy, f(x)⟩ over x and over its own parameters (first along two random
directions, which costs 4 evaluations per tensor; entry by entry, for the table and the hint, only
where that fails), and, where it has
the lab's R-op rules, the JVP rule against differences of the forward and the VJP-of-R-op rule
against differences of the VJP (``check_rop``, shared with ``nablanet.testing.check_layer``).

Kinks: a layer's input may sit exactly on a kink (a ReLU after a ReLU sees exact zeros, a max-pool
after a ReLU sees ties of zeros), where central differences average two slopes. An entry whose
one-sided differences disagree is a kink; there the analytic value may match either side.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import numpy as np

from nablanet._diagnose import factor_hint, passthrough_hint, shape_hint
from nablanet.lab import rop
from nablanet.lab._tape import Trace, forward_trace
from nablanet.lab.registry import Registry, jvp_rules, rules_home, vjp_rop_rules
from nablanet.lab.rules import missing_rules
from nablanet.layers import Layer, Sequential, contract, kernels
from nablanet.layers.base import TapeEntry
from nablanet.layers.contract import spot_checks_off

FD_RTOL = 1e-6
"""Finite differences (ε = 1e-6, float64) against backprop and against the R-op rules."""
EXACT_RTOL = 1e-10
"""The same quantity two ways in float64."""
_DIRECTIONS = 2
"""Random directions per tensor for the first, cheap comparison; entry by entry only where it fails."""
_KINK = 1e-4
"""An entry is on a kink when its one-sided differences differ by more than this × the array's scale."""

VjpOf = Callable[[Any, Any], tuple[Any, Any]]
"""One layer's VJP as the checks call it: ``vjp(cache, dy) -> (dx, grads)``."""


@dataclass(frozen=True)
class LayerCheck:
    """One tensor of one layer checked alone: ``layer`` is its name as on the tape ("" for a model that
    is one layer), ``kind`` its class, ``check`` "vjp", "vjp shape", "jvp rule", "vjp_rop rule", "hvp"
    or "curvature rules"; ``status`` "pass", "FAIL" or "skip"; ``detail`` what is wrong, or why skipped.
    A VJP row's ``error`` is along random directions where it passed there, else entry by entry."""

    layer: str
    kind: str
    check: str
    tensor: str
    status: str
    error: float | None = None
    tol: float | None = None
    detail: str = ""

    @property
    def who(self) -> str:
        """"layer '1' (Square)", or "the model (Square)" for a model that is one layer."""
        return f"layer '{self.layer}' ({self.kind})" if self.layer else f"the model ({self.kind})"


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


def sign_hint(rel: float) -> str:
    """A relative error near 2 means the two sides are about negatives of each other."""
    return " The result is about −1 times the right one: check the sign." if 1.9 <= rel <= 2.1 else ""


def _parts(v: Any) -> list[Any]:
    return list(v) if isinstance(v, tuple | list) else [v]


def _is_float(a: Any) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def has_children(layer: Layer) -> bool:
    return any(True for _ in layer.children())


# -- where each layer sits in the model -----------------------------------------------------------------
def layer_traces(model: Layer, x: Any, *, train: bool, seed: int) -> list[Trace]:
    """Every layer's call in one forward pass (``forward_trace``): each leaf, and each container other than a
    Sequential before the layers inside it, so that both are checked alone."""
    traces = forward_trace(model, x, train=train, rng=np.random.default_rng(seed))
    return [t for t in traces if not isinstance(t.layer, Sequential)]


# -- the VJP of one layer alone ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    """gradcheck's settings, as the per-layer checks use them."""

    train: bool
    seed: int
    eps: float
    rtol: float
    atol: float
    max_entries: int | None


def check_vjp(t: Trace, opt: Options, rng: np.random.Generator, vjp: VjpOf | None = None) -> list[LayerCheck]:
    """The layer's ``vjp(cache, dy)`` for a random dy against central differences of ⟨dy, f(x)⟩ over its
    floating inputs and its parameters, at the input ``t.x`` it saw in the model. ``vjp`` is the function
    checked: by default the one nablanet runs for the layer (its own, or one swapped in for its class)."""
    layer, kind = t.layer, type(t.layer).__name__
    vjp = vjp if vjp is not None else _vjp_run_for(layer)
    several = isinstance(t.x, tuple | list)
    xs = [np.array(a, dtype=np.float64) if _is_float(np.asarray(a)) else a for a in _parts(t.x)]

    def fwd() -> tuple[Any, Any]:
        arg: Any = tuple(xs) if several else xs[0]
        return layer.forward(arg, train=opt.train, rng=np.random.default_rng(opt.seed))

    y, cache = fwd()
    if not all(_is_float(a) for a in _parts(y)):
        return [LayerCheck(t.name, kind, "vjp", "y", "skip", detail="its output is not float arrays")]
    dys = [rng.standard_normal(a.shape) for a in _parts(y)]
    dy: Any = tuple(dys) if isinstance(y, tuple | list) else dys[0]
    try:
        dx, grads = vjp(cache, dy)
    except Exception as exc:
        return [LayerCheck(t.name, kind, "vjp", "vjp", "FAIL",
                           detail=f"vjp(cache, dy) raised {type(exc).__name__}: {exc}")]
    n = next((int(np.shape(a)[0]) for a in xs if np.ndim(a)), None)
    rows, arrays = _matched(t.name, kind, xs, dx, several, dict(layer.named_parameters()), grads, n)

    def value() -> float:
        return sum(float(np.vdot(d, a)) for d, a in zip(dys, _parts(fwd()[0]), strict=True))

    picker = np.random.default_rng(opt.seed)
    for tensor, arr, g in arrays:
        rel, err = _directional(value, arr, np.asarray(g, dtype=np.float64), opt.eps, rng)
        if rel <= opt.rtol or err <= opt.atol:  # the common case costs 2 × _DIRECTIONS evaluations
            rows.append(LayerCheck(t.name, kind, "vjp", tensor, "pass", rel, opt.rtol))
            continue
        idx = np.arange(arr.size)
        if opt.max_entries is not None and arr.size > opt.max_entries:
            idx = np.sort(picker.choice(arr.size, size=opt.max_entries, replace=False))
        analytic = np.asarray(g, dtype=np.float64).reshape(-1)[idx]
        numeric = central_differences(value, arr, idx, opt.eps, analytic)
        rel, err = relative_error(analytic, numeric), float(np.max(np.abs(analytic - numeric), initial=0.0))
        ok = rel <= opt.rtol or err <= opt.atol
        whole = idx.size == arr.size
        detail = "" if ok else _vjp_hint(vjp, cache, dy, tensor, g, analytic, numeric, whole, n, several)
        rows.append(LayerCheck(t.name, kind, "vjp", tensor, "pass" if ok else "FAIL", rel, opt.rtol, detail))
    return rows


def _matched(
    name: str, kind: str, xs: list[Any], dx: Any, several: bool, params: dict[str, Any], grads: Any, n: int | None,
) -> tuple[list[LayerCheck], list[tuple[str, np.ndarray, Any]]]:
    """Shape failures (named, with the likely mistake), and (tensor, array, gradient) for each pair that fits."""
    rows: list[LayerCheck] = []
    arrays: list[tuple[str, np.ndarray, Any]] = []

    def wrong(tensor: str, text: str) -> None:
        rows.append(LayerCheck(name, kind, "vjp shape", tensor, "FAIL", detail=text))

    dxs = _parts(dx) if several else [dx]
    for i, a in enumerate(xs):
        tensor = f"dx.{i}" if several else "dx"
        if not _is_float(a):
            continue  # integer indices (an Embedding's) are not differentiated
        got = np.shape(dxs[i]) if i < len(dxs) and dxs[i] is not None else None
        if got is None or (got == (0,) and a.size):  # NO_DX: an Embedding's indices, given as floats
            rows.append(LayerCheck(name, kind, "vjp", tensor, "skip", detail="it returns no input gradient"))
        elif got != a.shape:
            wrong(tensor, f"vjp returned {tensor} of shape {got}, expected the input's {a.shape}."
                  f"{shape_hint(got, a.shape, n) if got is not None else ''}")
        else:
            arrays.append((tensor, a, dxs[i]))
    grads = grads if isinstance(grads, dict) else {}
    for k, p in params.items():
        if k not in grads:
            wrong(f"d{k}", f"vjp returned no gradient for parameter {k!r} (it returned {sorted(grads)}).")
        elif np.shape(grads[k]) != p.shape:
            got = np.shape(grads[k])
            wrong(f"d{k}", f"vjp returned d{k} of shape {got}, expected the parameter's {p.shape}."
                  f"{shape_hint(got, p.shape, n)}")
        else:
            arrays.append((f"d{k}", p.data, grads[k]))
    for k in sorted(set(grads) - set(params)):
        wrong(f"d{k}", f"vjp returned a gradient {k!r} for no parameter (the parameters are {sorted(params)}).")
    return rows, arrays


def _directional(f: Callable[[], float], arr: np.ndarray, g: np.ndarray, eps: float,
                 rng: np.random.Generator) -> tuple[float, float]:
    """Worst |⟨g, v⟩ − (f(a + εv) − f(a − εv))/2ε| over random directions v: relative to ‖g‖ ‖v‖ (the
    largest ⟨g, v⟩ can be), and absolute. A wrong gradient fails this almost surely; a kink may too."""
    saved, rel, err = arr.copy(), 0.0, 0.0
    try:
        for _ in range(_DIRECTIONS):
            v = rng.standard_normal(arr.shape)
            arr[...] = saved + eps * v
            up = f()
            arr[...] = saved - eps * v
            down = f()
            gap = abs(float(np.vdot(g, v)) - (up - down) / (2 * eps))
            scale = float(np.linalg.norm(g) * np.linalg.norm(v))
            err = max(err, gap)
            rel = max(rel, gap / scale if scale > 0 else (0.0 if gap == 0 else float("inf")))
    finally:
        arr[...] = saved
    return rel, err


def central_differences(
    f: Callable[[], float], arr: np.ndarray, idx: np.ndarray, eps: float, analytic: np.ndarray | None = None,
) -> np.ndarray:
    """(f(a + ε) − f(a − ε))/2ε for the entries ``idx`` (flat) of ``arr``, each moved in place and back.

    With ``analytic``, an entry on a kink (its one-sided differences disagree) gets whichever of the
    three differences is closest to the analytic value: a VJP may take either side's slope there.
    """
    sides = np.empty((3, len(idx)))
    f0 = f() if analytic is not None else 0.0
    for j, k in enumerate(idx):
        at = np.unravel_index(k, arr.shape)  # not a reshape(-1) view: arr need not be C-contiguous
        orig = arr[at]
        arr[at] = orig + eps
        up = f()
        arr[at] = orig - eps
        down = f()
        arr[at] = orig
        sides[:, j] = (up - down) / (2 * eps), (up - f0) / eps, (f0 - down) / eps
    if analytic is None:
        return sides[0]
    kink = np.abs(sides[1] - sides[2]) > _KINK * float(np.max(np.abs(sides), initial=0.0))
    closest = sides[np.argmin(np.abs(sides - analytic), axis=0), np.arange(len(idx))]
    return np.where(kink, closest, sides[0])


def _returned(dx: Any, grads: Any, several: bool) -> dict[str, Any]:
    """What a VJP returned, by tensor name: "dx" (or "dx.0", "dx.1", …) and "d<parameter>"."""
    out = {f"dx.{i}": d for i, d in enumerate(_parts(dx))} if several else {"dx": dx}
    return out | {f"d{k}": g for k, g in (grads.items() if isinstance(grads, dict) else ())}


def _vjp_run_for(layer: Layer) -> VjpOf:
    """The VJP nablanet runs for ``layer`` on a cache of its own forward: a function swapped in for its class
    (``nablanet.testing.replace_vjp``) through the dispatch, else the layer's own."""
    if kernels.swapped(type(layer)):
        return partial(kernels.vjp, layer, per_sample=False, need_dx=True, vector_axes=0)
    return layer.vjp


def _vjp_hint(vjp: VjpOf, cache: Any, dy: Any, tensor: str, g: Any, analytic: np.ndarray, numeric: np.ndarray,
              whole: bool, n: int | None, several: bool) -> str:
    """The likely mistake: a constant factor, a transpose (on the whole array), dy passed through
    unchanged (the local derivative left out), or a forgotten dy."""
    shaped = np.shape(g) if whole else (len(analytic),)
    hint = factor_hint(analytic.reshape(shaped), numeric.reshape(shaped), n)
    if not hint and whole and tensor == "dx" and isinstance(dy, np.ndarray):
        hint = passthrough_hint(g, numeric.reshape(shaped), dy)
    if hint:
        return hint
    try:  # a VJP is linear in dy: one whose result does not change when dy doubles forgot it
        doubled: Any = tuple(2 * d for d in dy) if isinstance(dy, tuple) else 2 * dy
        again = _returned(*vjp(cache, doubled), several)
        if relative_error(again.get(tensor), g) <= EXACT_RTOL:
            return " It does not change when dy doubles: dy is forgotten (every term of a VJP is linear in dy)."
    except Exception:  # the hint is optional; the failure itself is already reported
        return ""
    return ""


def _on_kink(up: Any, center: Any, down: Any, eps: float) -> bool:
    """Whether one-sided differences disagree (a kink between x − εẋ and x + εẋ), not only by ε · curvature."""
    fwd, bwd = (np.asarray(up) - center) / eps, (np.asarray(center) - down) / eps
    scale = float(max(np.max(np.abs(fwd), initial=0.0), np.max(np.abs(bwd), initial=0.0)))
    return bool(np.max(np.abs(fwd - bwd), initial=0.0) > _KINK * scale) if scale > 0 else False


# -- the curvature rules of one layer alone ---------------------------------------------------------------
def which_rule(registry: Registry, cls: type) -> str:
    """" Fix <module.function>, the jvp rule of <class>" (inherited or not), for a failure message."""
    owner = registry.registered_for(cls)
    fn = registry.rule_for(cls)
    if owner is None or fn is None:
        return ""
    inherited = "" if owner is cls else f", which {cls.__name__} inherits"
    return (f" Fix {fn.__module__}.{fn.__qualname__}, the {registry.quantity} rule of {owner.__name__}{inherited} "
            "(nablanet.lab.rop has the equations).")


def _perturbed(layer: Layer, thetadot: dict[str, np.ndarray], eps: float, fn: Any) -> Any:
    """fn() with every parameter of ``layer`` moved to θ + ε θ̇ (restored afterwards)."""
    params = dict(layer.named_parameters())
    saved = {k: p.data.copy() for k, p in params.items()}
    try:
        for k, p in params.items():
            p.data[...] = saved[k] + eps * thetadot[k]
        return fn()
    finally:
        for k, p in params.items():
            p.data[...] = saved[k]


def _random_like(a: Any, rng: np.random.Generator) -> Any:
    """A random tangent shaped like ``a``: an array per float array, None for integers (indices do not
    move), tuples part by part (a layer of two inputs, or of two outputs)."""
    if isinstance(a, tuple | list):
        return tuple(_random_like(p, rng) for p in a)
    return rng.standard_normal(np.shape(a)) if _is_float(np.asarray(a)) else None


def _moved(a: Any, d: Any, t: float) -> Any:
    """a + t·d, part by part; a None tangent leaves its part where it is."""
    if isinstance(a, tuple | list):
        return tuple(_moved(p, q, t) for p, q in zip(a, d if d is not None else [None] * len(a), strict=True))
    return a if d is None else a + t * d


def _zeros(t: Any) -> Any:
    """A zero tangent of the same structure as ``t`` (None parts stay None)."""
    if isinstance(t, tuple | list):
        return tuple(_zeros(p) for p in t)
    return None if t is None else np.zeros_like(t)


def _flat(v: Any, like: Any) -> np.ndarray | None:
    """The float parts of ``v`` (None: zeros), shaped like ``like``, as one float64 vector; None (an
    infinite error) where a part has another shape or a tuple another length."""
    if isinstance(like, tuple | list):
        parts = v if isinstance(v, tuple | list) else [None] * len(like) if v is None else []
        flats = [_flat(p, q) for p, q in zip(parts, like, strict=False)] if len(parts) == len(like) else [None]
        return None if any(f is None for f in flats) else np.concatenate([np.zeros(0), *flats])
    if not _is_float(np.asarray(like)):
        return np.zeros(0)
    if v is None:
        return np.zeros(np.size(like))
    return np.asarray(v, dtype=np.float64).reshape(-1) if np.shape(v) == np.shape(like) else None


def rop_input(x: Any) -> bool:
    """Whether ``check_rop`` runs at this input: an array of numbers, or a tuple of them."""
    return all(isinstance(a, np.ndarray) and a.dtype.kind in "biuf" for a in _parts(x))


def _input_tangent(x: Any, xdot: Any, dx: Any) -> Any:
    """ẋ without the inputs the VJP does not differentiate (it returns ``NO_DX`` for them: an
    Embedding's indices, given as whole-number floats by the lab)."""
    def moves(a: Any, d: Any) -> bool:
        return np.shape(d) == np.shape(a) and np.size(a) > 0

    if isinstance(x, tuple | list):
        dxs = dx if isinstance(dx, tuple | list) else [None] * len(x)
        return tuple(t if moves(a, d) else None for a, t, d in zip(x, xdot, dxs, strict=True))
    return xdot if moves(x, dx) else None


def check_rop(name: str, layer: Layer, x: Any, forward: Callable[[Layer, Any], tuple[Any, Any]],
              rng: np.random.Generator) -> list[LayerCheck]:
    """The JVP and VJP-of-R-op rules of one layer (a container too: θ̇ by its state_dict names) against
    central differences along (ẋ, θ̇, dẏ). ``x`` is an array or a tuple of arrays; integer inputs
    (indices) and inputs the VJP gives no gradient for get no tangent."""
    eps, kind, cls = 1e-6, type(layer).__name__, type(layer)
    xdot = _random_like(x, rng)
    thetadot = {k: rng.standard_normal(p.shape) for k, p in layer.named_parameters()}
    y, cache = forward(layer, x)
    dy, dydot = _random_like(y, rng), _random_like(y, rng)
    dx_0, g_0 = layer.vjp(cache, dy)
    xdot = _input_tangent(x, xdot, dx_0)

    def diff(fn: Callable[[Any, Any], Any]) -> tuple[Any, Any]:
        """fn(x ± εẋ, dy ± εdẏ) at θ ± εθ̇."""
        up, down = (_perturbed(layer, thetadot, s * eps, lambda s=s: fn(_moved(x, xdot, s * eps),
                                                                         _moved(dy, dydot, s * eps)))
                    for s in (1.0, -1.0))
        return up, down

    def row(check: str, tensor: str, got: Any, want: Any, tol: float, text: str, rule: Registry,
            sides: tuple[Any, Any, Any] | None = None) -> LayerCheck:
        if sides is not None and _on_kink(*sides, eps):
            return LayerCheck(name, kind, check, tensor, "skip", detail="its input sits on a kink here (a ReLU's "
                              "input at 0, a max-pool tie), where differences do not apply")
        err = relative_error(got, want)
        hint = sign_hint(err) or (factor_hint(got, want) if tol == FD_RTOL else "")
        return LayerCheck(name, kind, check, tensor, "pass" if err <= tol else "FAIL", err, tol,
                          "" if err <= tol else f"{text}{hint}{which_rule(rule, cls)}")

    moving = any(t is not None for t in _parts(xdot))
    try:
        ydot = rop.jvp(layer, cache, xdot, thetadot)
        dxdot, gdot = rop.vjp_rop(layer, cache, dy, dydot, xdot, thetadot)
        dxdot_none = rop.vjp_rop(layer, cache, dy, dydot, None, thetadot)[0]
        dxdot_zero = rop.vjp_rop(layer, cache, dy, dydot, _zeros(xdot), thetadot)[0] if moving else None
    except Exception as exc:
        fix = "".join(which_rule(reg, cls) for reg in (jvp_rules, vjp_rop_rules))
        text = f"a rule raised {type(exc).__name__}: {exc}.{fix}"
        return [LayerCheck(name, kind, "R-op rules", "", "FAIL", detail=text)]
    y_p, y_m = (cast(np.ndarray, _flat(a, y)) for a in diff(lambda xe, _: forward(layer, xe)[0]))
    rows = [row("jvp rule", "ẏ", _flat(ydot, y), (y_p - y_m) / (2 * eps), FD_RTOL, "ẏ disagrees with central "
                "differences of the forward along (ẋ, θ̇).", jvp_rules, (y_p, _flat(y, y), y_m))]
    (dx_p, g_p), (dx_m, g_m) = diff(lambda xe, dye: layer.vjp(forward(layer, xe)[1], dye))
    several = isinstance(x, tuple | list)
    dx_rows = [(f"(dx.{i})˙" if several else "(dx)˙", i) for i, t in enumerate(_parts(xdot)) if t is not None]
    for tensor, i in dx_rows:
        sides = (_parts(dx_p)[i], _parts(dx_0)[i], _parts(dx_m)[i])
        got = _parts(dxdot)[i]
        rows.append(row("vjp_rop rule", tensor, got, (sides[0] - sides[2]) / (2 * eps), FD_RTOL, f"{tensor} disagrees "
                        "with central differences of the VJP along (ẋ, θ̇, dẏ).", vjp_rop_rules, sides))
    for k in thetadot:
        sides = (g_p[k], g_0[k], g_m[k])
        rows.append(row("vjp_rop rule", f"(d{k})˙", gdot.get(k), (sides[0] - sides[2]) / (2 * eps), FD_RTOL,
                        f"(d{k})˙ disagrees with central differences of the VJP along (ẋ, θ̇, dẏ).", vjp_rop_rules,
                        sides))
    if moving:
        rows.append(row("vjp_rop rule", "ẋ = None", _flat(dxdot_none, x), _flat(dxdot_zero, x), EXACT_RTOL, "the rule "
                        "gives another (dx)˙ for ẋ = None than for ẋ = 0 (None stands for a zero tangent).",
                        vjp_rop_rules))
    return rows


_RULES_VERIFIED: set[type] = set()


def verify_user_rules(who: str, entry: TapeEntry) -> None:
    """Once per class of the user's with R-op rules: check them against central differences (in
    float64, on up to 4 samples of the tape's input), so a wrong rule stops the curvature lab rather
    than giving wrong eigenvalues. nablanet's own rules are tested by the conformance suite."""
    cls = type(entry.layer)
    if cls in _RULES_VERIFIED or rules_home(cls) is not None or not isinstance(entry.x, np.ndarray) \
            or not contract.checks_on() or missing_rules(cls):
        return  # a missing rule is refused by name where it is needed; a checking tool reports instead
    layer = copy.deepcopy(entry.layer).to(np.float64)
    x = np.array(entry.x[:4], dtype=np.float64)

    def forward(la: Layer, xe: Any) -> tuple[Any, Any]:
        return la.forward(xe, train=False, rng=np.random.default_rng(0))

    with spot_checks_off():
        rows = check_rop(entry.name, layer, x, forward, np.random.default_rng(0))
    failed = [r for r in rows if r.status == "FAIL"]
    if failed:
        raise ValueError(f"{who}: the curvature rules of {failed[0].who} disagree with central differences of its "
                         "forward and VJP (float64, up to 4 samples), so its Hessian products would be wrong:\n  "
                         + "\n  ".join(f"{r.check} {r.tensor}: {r.detail}" for r in failed))
    _RULES_VERIFIED.add(cls)
