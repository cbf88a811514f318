"""Optimizers, schedules and clipping: PyTorch parity, the notes' momentum form, resuming, errors."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from helpers import rel_err

import nablanet as nn
from nablanet.optim import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    Optimizer,
    RMSprop,
    clip_grad_norm_,
    clip_grad_value_,
    schedules,
)
from nablanet.parameter import Parameter

SHAPES = [(3, 4), (4,), (2, 3, 2)]
STEPS = 20
TOL = {np.float64: 1e-12, np.float32: 1e-5}

# (our class, torch.optim class name, keyword arguments shared by both)
CASES: list[tuple[type[Optimizer], str, dict[str, Any]]] = [
    (SGD, "SGD", {"lr": 0.1}),
    (SGD, "SGD", {"lr": 0.1, "momentum": 0.9}),
    (SGD, "SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}),
    (SGD, "SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    (SGD, "SGD", {"lr": 0.1, "weight_decay": 0.05}),
    (SGD, "SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}),
    (SGD, "SGD", {"lr": 0.05, "momentum": 0.5, "dampening": 0.5, "weight_decay": 0.1}),
    (Adam, "Adam", {"lr": 0.01}),
    (Adam, "Adam", {"lr": 0.01, "weight_decay": 0.1}),
    (Adam, "Adam", {"lr": 0.01, "amsgrad": True}),
    (Adam, "Adam", {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "amsgrad": True, "weight_decay": 0.1}),
    (AdamW, "AdamW", {"lr": 0.01}),
    (AdamW, "AdamW", {"lr": 0.01, "weight_decay": 0.5, "amsgrad": True}),
    (RMSprop, "RMSprop", {}),
    (RMSprop, "RMSprop", {"centered": True}),
    (RMSprop, "RMSprop", {"momentum": 0.9}),
    (RMSprop, "RMSprop", {"alpha": 0.9, "centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    (Adagrad, "Adagrad", {}),
    (Adagrad, "Adagrad", {"lr_decay": 0.1}),
    (Adagrad, "Adagrad", {"lr": 0.1, "initial_accumulator_value": 0.1, "weight_decay": 0.1, "eps": 1e-6}),
]


def case_id(case: tuple[type[Optimizer], str, dict[str, Any]]) -> str:
    return case[1] + "(" + ",".join(f"{k}={v}" for k, v in case[2].items()) + ")"


def make_problem(dtype: Any, seed: int = 0) -> tuple[list[np.ndarray], list[list[np.ndarray | None]]]:
    """Initial arrays and STEPS rounds of random gradients; the last parameter has no gradient on
    steps 3 and 7 (it must be skipped, and its own update count must not advance)."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads: list[list[np.ndarray | None]] = []
    for t in range(STEPS):
        row: list[np.ndarray | None] = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
        if t in (3, 7):
            row[-1] = None
        grads.append(row)
    return init, grads


def set_grads(params: list[Parameter], row: list[np.ndarray | None]) -> None:
    for p, g in zip(params, row, strict=True):
        p.grad = None if g is None else g.copy()


def torch_run(
    torch: Any,
    name: str,
    kwargs: dict[str, Any],
    init: list[np.ndarray],
    grads: list[list[np.ndarray | None]],
    before_step: Callable[[Any, int], None] | None = None,
) -> list[np.ndarray]:
    tp = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    opt = getattr(torch.optim, name)(tp, foreach=False, **kwargs)
    for t, row in enumerate(grads):
        for p, g in zip(tp, row, strict=True):
            p.grad = None if g is None else torch.tensor(g.copy())
        if before_step is not None:
            before_step(opt, t)
        opt.step()
    return [p.detach().numpy() for p in tp]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_trajectory_matches_torch(case: tuple[type[Optimizer], str, dict[str, Any]], dtype: Any) -> None:
    torch = pytest.importorskip("torch")
    cls, torch_name, kwargs = case
    init, grads = make_problem(dtype)
    params = [Parameter(a.copy()) for a in init]
    arrays = [p.data for p in params]
    opt = cls(params, **kwargs)
    for row in grads:
        set_grads(params, row)
        opt.step()
    expected = torch_run(torch, torch_name, kwargs, init, grads)
    for p, arr, want in zip(params, arrays, expected, strict=True):
        assert p.data is arr, "the update must be in place"
        assert p.data.dtype == dtype
        assert rel_err(p.data, want) <= TOL[dtype]


class _InPlaceSGD(Optimizer):
    """A user's rule: all a subclass writes is ``_update``, which updates p.data in place."""

    ranges: ClassVar[dict[str, Any]] = {"lr": SGD.ranges["lr"]}

    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, {"lr": lr})

    def _update(self, p: Parameter, g: np.ndarray, state: dict[str, np.ndarray], h: dict[str, Any]) -> None:
        p.data -= h["lr"] * g


def test_a_users_rule_updates_in_place_and_skips_parameters_without_gradient() -> None:
    p, q = Parameter(np.arange(3.0)), Parameter(np.ones(2))
    first = p.data
    opt = _InPlaceSGD([p, q], lr=0.5)
    p.grad = np.ones(3)
    opt.step()
    assert p.data is first
    np.testing.assert_array_equal(p.data, np.arange(3.0) - 0.5)
    np.testing.assert_array_equal(q.data, np.ones(2))  # no gradient: left alone
    assert opt.step_count == 1 and opt.current("lr") == 0.5


def test_param_groups_match_torch() -> None:
    torch = pytest.importorskip("torch")
    init, grads = make_problem(np.float64)
    params = [Parameter(a.copy()) for a in init]
    opt = SGD([{"params": params[:2]}, {"params": params[2:], "lr": 0.01, "momentum": 0.5}], lr=0.1, momentum=0.9)
    for row in grads:
        set_grads(params, row)
        opt.step()
    tp = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    topt = torch.optim.SGD(
        [{"params": tp[:2]}, {"params": tp[2:], "lr": 0.01, "momentum": 0.5}], lr=0.1, momentum=0.9, foreach=False
    )
    for row in grads:
        for p, g in zip(tp, row, strict=True):
            p.grad = None if g is None else torch.tensor(g.copy())
        topt.step()
    for p, want in zip(params, tp, strict=True):
        assert rel_err(p.data, want.detach().numpy()) <= 1e-12


SCHEDULED: list[tuple[type[Optimizer], str, dict[str, Any]]] = [
    (SGD, "SGD", {"lr": schedules.cosine(0.1, STEPS, final=0.01), "momentum": schedules.sutskever_momentum(0.95, 4)}),
    (SGD, "SGD", {"lr": 0.05, "momentum": schedules.step_decay(0.9, 5, 0.5), "nesterov": True}),
    (Adam, "Adam", {"lr": schedules.linear_warmup(0.01, 5), "betas": (schedules.exponential(0.9, 0.99), 0.999)}),
    (RMSprop, "RMSprop", {"lr": schedules.inverse_time(0.01, 5), "weight_decay": schedules.constant(0.1)}),
    (Adagrad, "Adagrad", {"lr": schedules.exponential(0.1, 0.9), "lr_decay": 0.05}),
]


def _at(value: Any, t: int) -> Any:
    if isinstance(value, tuple):
        return tuple(_at(v, t) for v in value)
    return value(t) if callable(value) else value


@pytest.mark.parametrize("case", SCHEDULED, ids=[c[1] for c in SCHEDULED])
def test_schedules_match_torch_set_by_hand(case: tuple[type[Optimizer], str, dict[str, Any]]) -> None:
    """A schedule-valued hyperparameter, and lr_scale changed mid-run (what a plateau callback
    does), equal PyTorch with the same values written into param_groups before each step."""
    torch = pytest.importorskip("torch")
    cls, torch_name, kwargs = case
    init, grads = make_problem(np.float64)
    params = [Parameter(a.copy()) for a in init]
    opt = cls(params, **kwargs)
    for t, row in enumerate(grads):
        opt.lr_scale = 0.5 if t >= 12 else 1.0
        set_grads(params, row)
        opt.step()

    def before_step(topt: Any, t: int) -> None:
        for name, value in kwargs.items():
            topt.param_groups[0][name] = _at(value, t)
        topt.param_groups[0]["lr"] *= 0.5 if t >= 12 else 1.0

    plain = {k: _at(v, 0) for k, v in kwargs.items()}
    expected = torch_run(torch, torch_name, plain, init, grads, before_step)
    for p, want in zip(params, expected, strict=True):
        assert rel_err(p.data, want) <= 1e-12


@pytest.mark.parametrize("mu", [0.9, schedules.sutskever_momentum(0.9, period=10)], ids=["const", "sutskever"])
def test_notes_momentum_form_equals_sgd_on_quadratic(mu: Any) -> None:
    """v ← μₜ v − α ∇L,  w ← w + v  (the notes) is SGD(momentum=μ) with v = −α·buf."""
    rng = np.random.default_rng(1)
    m = rng.standard_normal((5, 5))
    a = m @ m.T / 5 + 0.1 * np.eye(5)  # L(w) = ½ wᵀAw − bᵀw,  ∇L = Aw − b
    b = rng.standard_normal(5)
    alpha = 0.1
    w = rng.standard_normal(5)
    p = Parameter(w.copy())
    opt = SGD([p], lr=alpha, momentum=mu)
    v = np.zeros(5)
    for t in range(300):
        v = _at(mu, t) * v - alpha * (a @ w - b)
        w = w + v
        p.grad = a @ p.data - b
        opt.step()
        assert rel_err(p.data, w) <= 1e-12
        np.testing.assert_allclose(v, -alpha * opt.state[0]["momentum_buffer"], rtol=1e-9, atol=1e-12)
    assert rel_err(w, np.linalg.solve(a, b)) < 1e-4  # and it does minimize L


SUTSKEVER_TABLE = [(0, 0.5), (249, 0.5), (250, 0.75), (499, 0.75), (500, 5 / 6), (1000, 0.9), (12250, 0.99)]


@pytest.mark.parametrize(("t", "want"), SUTSKEVER_TABLE)
def test_sutskever_momentum_table(t: int, want: float) -> None:
    mu = schedules.sutskever_momentum(0.999)
    assert mu(t) == pytest.approx(want, rel=1e-12)
    # the formula as written in the paper, with the logarithm
    assert mu(t) == pytest.approx(min(1 - 2 ** (-1 - math.log2(t // 250 + 1)), 0.999), rel=1e-12)


def test_sutskever_momentum_is_capped() -> None:
    assert schedules.sutskever_momentum(0.999)(10**7) == 0.999
    assert schedules.sutskever_momentum(0.9, period=10)(10**4) == 0.9


@pytest.mark.parametrize(
    ("schedule", "points"),
    [
        (schedules.constant(0.3), {0: 0.3, 1000: 0.3}),
        (schedules.step_decay(1.0, 10, 0.5), {0: 1.0, 9: 1.0, 10: 0.5, 25: 0.25}),
        (schedules.exponential(2.0, 0.5), {0: 2.0, 3: 0.25}),
        (schedules.inverse_time(1.0, 10), {0: 1.0, 10: 0.5, 30: 0.25}),
        (schedules.cosine(1.0, 10, final=0.1), {0: 1.0, 5: 0.55, 10: 0.1, 20: 0.1}),
        (schedules.linear_warmup(0.1, 4), {0: 0.025, 1: 0.05, 3: 0.1, 50: 0.1}),
        (schedules.linear_warmup(0.1, 4, then=schedules.exponential(0.1, 0.5)), {3: 0.1, 4: 0.1, 5: 0.05}),
    ],
    ids=repr,
)
def test_schedule_values(schedule: Callable[[int], float], points: dict[int, float]) -> None:
    for t, want in points.items():
        assert schedule(t) == pytest.approx(want, rel=1e-12), t


def test_schedules_match_torch_lr_schedulers() -> None:
    torch = pytest.importorskip("torch")
    pairs: list[tuple[Callable[[int], float], Callable[[Any], Any]]] = [
        (schedules.step_decay(0.1, 3, 0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5)),
        (schedules.exponential(0.1, 0.9), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9)),
        (schedules.cosine(0.1, 12, 0.01), lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 12, 0.01)),
    ]
    for ours, make in pairs:
        topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        sched = make(topt)
        for t in range(13):
            assert ours(t) == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12), (ours, t)
            topt.step()
            sched.step()


def test_schedule_repr_is_readable() -> None:
    assert repr(schedules.cosine(0.1, 100)) == "Cosine(initial=0.1, total_steps=100, final=0.0)"
    assert repr(schedules.sutskever_momentum(0.99)) == "SutskeverMomentum(mu_max=0.99, period=250)"


def _save(sd: dict[str, Any], folder: Path) -> None:
    """npz for the arrays, JSON for the rest: no pickle anywhere."""
    arrays = {f"{i}.{name}": a for i, s in sd["state"].items() for name, a in s.items()}
    np.savez(folder / "opt.npz", **arrays)
    (folder / "opt.json").write_text(json.dumps({k: v for k, v in sd.items() if k != "state"}))


def _load(folder: Path) -> dict[str, Any]:
    sd: dict[str, Any] = json.loads((folder / "opt.json").read_text())
    state: dict[str, dict[str, np.ndarray]] = {}
    with np.load(folder / "opt.npz", allow_pickle=False) as npz:
        for key in npz.files:
            i, name = key.split(".")
            state.setdefault(i, {})[name] = npz[key]  # the index comes back as a str
    sd["state"] = state
    return sd


RESUME: list[tuple[type[Optimizer], dict[str, Any]]] = [
    (SGD, {"lr": schedules.cosine(0.1, STEPS), "momentum": schedules.sutskever_momentum(0.9, 4), "nesterov": True}),
    (SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    (Adam, {"lr": 0.01, "amsgrad": True, "betas": (schedules.constant(0.9), 0.99)}),
    (AdamW, {"lr": schedules.linear_warmup(0.01, 5)}),
    (RMSprop, {"centered": True, "momentum": 0.9}),
    (Adagrad, {"lr_decay": 0.1, "initial_accumulator_value": 0.1}),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", RESUME, ids=[c[0].__name__ for c in RESUME])
def test_state_dict_round_trip_resumes_bit_identically(
    case: tuple[type[Optimizer], dict[str, Any]], dtype: Any, tmp_path: Path
) -> None:
    cls, kwargs = case
    init, grads = make_problem(dtype)
    straight = [Parameter(a.copy()) for a in init]
    opt = cls(straight, **kwargs)
    for t, row in enumerate(grads):
        opt.lr_scale = 0.5 if t >= 5 else 1.0
        set_grads(straight, row)
        opt.step()

    first = [Parameter(a.copy()) for a in init]
    opt = cls(first, **kwargs)
    for t, row in enumerate(grads[:10]):
        opt.lr_scale = 0.5 if t >= 5 else 1.0
        set_grads(first, row)
        opt.step()
    _save(opt.state_dict(), tmp_path)

    resumed = [Parameter(p.data.copy()) for p in first]  # as if the model was reloaded too
    opt = cls(resumed, **kwargs)
    opt.load_state_dict(_load(tmp_path))
    assert opt.step_count == 10 and opt.lr_scale == 0.5
    for row in grads[10:]:
        set_grads(resumed, row)
        opt.step()
    for a, b in zip(resumed, straight, strict=True):
        assert a.data.dtype == dtype
        np.testing.assert_array_equal(a.data, b.data)


def test_state_dict_holds_copies_and_numbers() -> None:
    p = Parameter(np.ones(3))
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = np.ones(3)
    opt.step()
    sd = opt.state_dict()
    assert sd["param_groups"] == [
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0, "params": [0]}
    ]
    buf = sd["state"][0]["momentum_buffer"]
    opt.step()
    np.testing.assert_array_equal(buf, np.ones(3))  # saved state does not move with training


def test_grad_none_is_skipped_and_zero_grad() -> None:
    a, b = Parameter(np.ones(2, np.float32)), Parameter(np.ones(2, np.float32))
    opt = Adam([a, b], lr=0.1)
    a.grad = np.ones(2, np.float32)
    opt.step()
    assert np.all(a.data < 1) and np.array_equal(b.data, np.ones(2)) and 1 not in opt.state
    opt.zero_grad(set_to_none=False)
    assert a.grad is not None and not a.grad.any() and b.grad is None
    opt.zero_grad()
    assert a.grad is None


def test_lr_property_setter_and_current_value() -> None:
    p = Parameter(np.zeros(2))
    opt = SGD([{"params": [p]}], lr=schedules.exponential(1.0, 0.5))
    assert opt.current("lr") == 1.0
    p.grad = np.ones(2)
    opt.step()
    opt.lr_scale *= 0.1
    assert opt.current("lr") == pytest.approx(0.05)
    opt.lr = 0.2  # replaces the schedule; lr_scale still applies
    assert opt.lr == 0.2 and opt.current("lr") == pytest.approx(0.02)
    opt.step()
    np.testing.assert_allclose(p.data, [-1.02, -1.02])


def test_works_with_model_parameters() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    opt = SGD(model.parameters(), lr=0.1)
    before = [p.data.copy() for p in model.parameters()]
    for p in model.parameters():
        p.grad = np.ones_like(p.data)
    opt.step()
    for p, old in zip(model.parameters(), before, strict=True):
        assert p.data.dtype == np.float32
        np.testing.assert_allclose(p.data, old - 0.1, rtol=1e-6)


# -- clipping ---------------------------------------------------------------------------------
def _clip_pair(torch: Any, dtype: Any) -> tuple[list[Parameter], list[Any]]:
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    ours = [Parameter(np.zeros(s, dtype)) for s in SHAPES] + [Parameter(np.zeros(2, dtype))]
    theirs = [torch.zeros(s, dtype=torch.from_numpy(arrays[0]).dtype, requires_grad=True) for s in SHAPES]
    theirs.append(torch.zeros(2, dtype=theirs[0].dtype, requires_grad=True))
    for p, tp, g in zip(ours, theirs, arrays, strict=False):  # the last has no gradient
        p.grad = g.copy()
        tp.grad = torch.tensor(g.copy())
    return ours, theirs


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.5, math.inf], ids=str)
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(dtype: Any, norm_type: float, max_norm: float) -> None:
    torch = pytest.importorskip("torch")
    ours, theirs = _clip_pair(torch, dtype)
    total = clip_grad_norm_(ours, max_norm, norm_type)
    want = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type, foreach=False)
    assert isinstance(total, float)
    assert total == pytest.approx(float(want), rel=TOL[dtype])
    for p, tp in zip(ours, theirs, strict=True):
        if tp.grad is None or p.grad is None:
            assert tp.grad is None and p.grad is None
        else:
            assert p.grad.dtype == dtype
            assert rel_err(p.grad, tp.grad.numpy()) <= TOL[dtype]


def test_clip_grad_norm_nonfinite() -> None:
    p = Parameter(np.zeros(2))
    p.grad = np.array([1.0, np.inf])
    with pytest.raises(RuntimeError, match=r"total 2-norm of the gradients is inf"):
        clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    with np.errstate(invalid="ignore"):  # as in PyTorch: g · max_norm/∞ gives 0 and ∞·0 = NaN
        assert clip_grad_norm_(p, 1.0) == math.inf
        np.testing.assert_array_equal(p.grad, [0.0, np.nan])
        p.grad = np.array([1.0, np.nan])
        assert math.isnan(clip_grad_norm_(p, 1.0))
        assert np.isnan(p.grad).all()
    assert clip_grad_norm_([Parameter(np.zeros(2))], 1.0) == 0.0  # no gradients at all


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_clip_grad_value_matches_torch(dtype: Any) -> None:
    torch = pytest.importorskip("torch")
    ours, theirs = _clip_pair(torch, dtype)
    clip_grad_value_(ours, 0.5)
    torch.nn.utils.clip_grad_value_(theirs, 0.5, foreach=False)
    for p, tp in zip(ours, theirs, strict=True):
        if tp.grad is not None:
            np.testing.assert_array_equal(p.grad, tp.grad.numpy())


# -- errors: each says what it received, what it expected, and how to fix it -------------------
def _param() -> Parameter:
    return Parameter(np.zeros(2))


def _step_with(opt: Optimizer) -> None:
    for group in opt.param_groups:
        for p in group["params"]:
            p.grad = np.ones_like(p.data)
    for _ in range(5):
        opt.step()


def _load_mismatched_sizes() -> None:
    sd = SGD([_param(), _param()], lr=0.1).state_dict()
    SGD([_param()], lr=0.1).load_state_dict(sd)


def _load_wrong_shape() -> None:
    p = _param()
    opt = SGD([p], lr=0.1, momentum=0.9)
    _step_with(opt)
    SGD([Parameter(np.zeros(3))], lr=0.1, momentum=0.9).load_state_dict(opt.state_dict())


def _load_schedule_into_number() -> None:
    sd = SGD([_param()], lr=schedules.constant(0.1)).state_dict()
    SGD([_param()], lr=0.1).load_state_dict(sd)


def _load_other_optimizer() -> None:
    SGD([_param()], lr=0.1).load_state_dict(Adam([_param()]).state_dict())


def _set_negative_lr() -> None:
    SGD([_param()], lr=0.1).lr = -1.0


def _set_negative_lr_scale() -> None:
    SGD([_param()], lr=0.1).lr_scale = -0.5


ERRORS: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("negative lr", lambda: SGD([_param()], lr=-0.1), ValueError, r"lr=-0\.1"),
    ("momentum 1", lambda: SGD([_param()], lr=0.1, momentum=1.0), ValueError, r"momentum=1\.0.*\[0, 1\)"),
    ("negative momentum", lambda: SGD([_param()], lr=0.1, momentum=-0.5), ValueError, "momentum"),
    ("nesterov no momentum", lambda: SGD([_param()], lr=0.1, nesterov=True), ValueError, "nesterov"),
    (
        "nesterov dampening",
        lambda: SGD([_param()], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
        ValueError,
        "dampening",
    ),
    ("beta1 is 1", lambda: Adam([_param()], betas=(1.0, 0.999)), ValueError, r"betas\[0\]"),
    ("beta2 negative", lambda: AdamW([_param()], betas=(0.9, -0.1)), ValueError, r"betas\[1\]"),
    ("betas not a pair", lambda: Adam([_param()], betas=(0.9,)), ValueError, "pair"),  # type: ignore[arg-type]
    ("negative eps", lambda: Adam([_param()], eps=-1.0), ValueError, "eps"),
    ("alpha above 1", lambda: RMSprop([_param()], alpha=1.5), ValueError, "alpha"),
    ("negative lr_decay", lambda: Adagrad([_param()], lr_decay=-1.0), ValueError, "lr_decay"),
    (
        "negative accumulator",
        lambda: Adagrad([_param()], initial_accumulator_value=-1.0),
        ValueError,
        "initial_accumulator_value",
    ),
    ("amsgrad not bool", lambda: Adam([_param()], amsgrad="yes"), TypeError, "amsgrad"),  # type: ignore[arg-type]
    ("lr is a string", lambda: SGD([_param()], lr="0.1"), TypeError, "number or a schedule"),  # type: ignore[arg-type]
    ("empty params", lambda: SGD([], lr=0.1), ValueError, "empty"),
    ("empty generator", lambda: SGD(nn.ReLU().parameters(), lr=0.1), ValueError, "empty"),
    ("model not params", lambda: SGD(nn.Linear(2, 2), lr=0.1), TypeError, r"model\.parameters\(\)"),  # type: ignore[arg-type]
    ("ndarray in params", lambda: SGD([np.zeros(2)], lr=0.1), TypeError, "ndarray"),
    ("duplicate", lambda: SGD([p := _param(), p], lr=0.1), ValueError, "twice"),
    ("group without params", lambda: SGD([{"lr": 0.1}], lr=0.1), ValueError, "'params'"),
    ("unknown group key", lambda: SGD([{"params": [_param()], "lrr": 0.1}], lr=0.1), ValueError, "lrr"),
    (
        "schedule goes bad",
        lambda: _step_with(SGD([_param()], lr=lambda t: 0.1 - 0.04 * t)),
        ValueError,
        "schedule .* at step t=3",
    ),
    ("schedule bad at 0", lambda: SGD([_param()], lr=0.1, momentum=lambda t: 2.0), ValueError, "t=0"),
    ("set lr negative", _set_negative_lr, ValueError, "lr=-1"),
    ("set lr_scale negative", _set_negative_lr_scale, ValueError, "lr_scale"),
    ("load: group sizes", _load_mismatched_sizes, ValueError, "sizes"),
    ("load: state shape", _load_wrong_shape, ValueError, "shape"),
    ("load: other optimizer", _load_other_optimizer, ValueError, "betas"),
    ("load: lost schedule", _load_schedule_into_number, ValueError, "schedule"),
    ("constant not a number", lambda: schedules.constant("a"), ValueError, "value"),  # type: ignore[arg-type]
    ("step_size 0", lambda: schedules.step_decay(0.1, 0), ValueError, "step_size"),
    ("gamma 0", lambda: schedules.exponential(0.1, 0.0), ValueError, "gamma"),
    ("tau 0", lambda: schedules.inverse_time(0.1, 0), ValueError, "tau"),
    ("total_steps 0", lambda: schedules.cosine(0.1, 0), ValueError, "total_steps"),
    ("warmup_steps 0", lambda: schedules.linear_warmup(0.1, 0), ValueError, "warmup_steps"),
    ("then not callable", lambda: schedules.linear_warmup(0.1, 5, then=0.1), ValueError, "then"),  # type: ignore[arg-type]
    ("mu_max 1", lambda: schedules.sutskever_momentum(1.0), ValueError, "mu_max"),
    ("period 0", lambda: schedules.sutskever_momentum(0.9, period=0), ValueError, "period"),
    ("norm_type 0", lambda: clip_grad_norm_([_param()], 1.0, norm_type=0), ValueError, "norm_type"),
    ("max_norm negative", lambda: clip_grad_norm_([_param()], -1.0), ValueError, "max_norm"),
    ("clip_value negative", lambda: clip_grad_value_([_param()], -1.0), ValueError, "clip_value"),
    ("clip non-parameter", lambda: clip_grad_value_([np.zeros(2)], 1.0), TypeError, "ndarray"),  # type: ignore[list-item]
]


@pytest.mark.parametrize(("make", "exc", "match"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_error_messages(make: Callable[[], object], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match) as info:
        make()
    message = str(info.value)
    assert "expected" in message.lower() and "fix" in message.lower(), message


def test_hyperparameter_changes_take_effect_between_steps() -> None:
    # Validated values are reused while nothing changes; a changed group entry or lr_scale is seen at once.
    p = nn.Parameter(np.ones(3))
    opt = nn.optim.SGD([p], lr=0.1)
    p.grad = np.ones(3)
    opt.step()
    np.testing.assert_allclose(p.data, 0.9)
    opt.param_groups[0]["lr"] = 0.5
    opt.step()
    np.testing.assert_allclose(p.data, 0.4)
    opt.lr_scale = 0.1
    opt.step()
    np.testing.assert_allclose(p.data, 0.35)
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.step()
