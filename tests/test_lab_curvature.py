"""Curvature lab: per-rule R-op checks against central differences, HVP / Hessian / GGN parity with
PyTorch (float64), eigenvalues and traces against the dense Hessian, and the step-size facts of
the notes (one Newton step on a quadratic, the 2/λ_max stability bound of gradient descent)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import rel_err

import nablanet as nn
from nablanet.lab import rop
from nablanet.lab.curvature import (
    flatten_params,
    ggn,
    ggn_vp,
    hessian,
    hessian_eigenvalues,
    hutchinson_trace,
    hvp,
    newton_step,
    step_size_report,
    unflatten_params,
)

F64 = np.float64
HVP_TOL = 1e-13  # vs PyTorch's reverse-over-reverse, both float64; measured ≤ 8e-16
FD_TOL = 1e-7  # vs central differences with ε = 1e-6
PARAM_LAYERS = {"Linear", "Conv1d", "Conv2d", "BatchNorm1d", "BatchNorm2d", "LayerNorm"}


def _x(shape: tuple[int, ...], seed: int = 1, scale: float = 1.0) -> np.ndarray:
    return scale * np.random.default_rng(seed).standard_normal(shape)


# -- per-rule checks: jvp, vjp_rop (and loss_hvp) against central differences ------------------------------
def _layer(name: str, kw: dict[str, Any]) -> nn.Layer:
    extra: dict[str, Any] = {"dtype": F64} if name in PARAM_LAYERS else {}
    if name in ("Linear", "Conv1d", "Conv2d"):
        extra["rng"] = 0
    layer = getattr(nn, name)(**kw, **extra)
    rng = np.random.default_rng(7)
    for _, p in layer.named_parameters():  # batch/layer norm start at γ = 1, β = 0: make them generic
        p.data[...] = p.data + 0.3 * rng.standard_normal(p.shape)
    for bname, b in layer.named_buffers():
        if bname == "running_mean":
            b[...] = 0.2 * rng.standard_normal(b.shape)
        elif bname == "running_var":
            b[...] = rng.uniform(0.5, 2.0, b.shape)
    return layer


RULE_CASES: list[tuple[str, dict[str, Any], tuple[int, ...], bool]] = [
    ("Linear", {"in_features": 4, "out_features": 3}, (5, 4), False),
    ("Linear", {"in_features": 4, "out_features": 3, "bias": False}, (5, 2, 4), False),
    ("Conv1d", {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1}, (2, 3, 9), False),
    ("Conv2d", {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1, "groups": 2},
     (2, 4, 7, 6), False),
    ("Conv2d", {"in_channels": 2, "out_channels": 3, "kernel_size": 2, "dilation": 2, "bias": False}, (2, 2, 6, 5),
     False),
    ("Conv2d", {"in_channels": 16, "out_channels": 4, "kernel_size": 2, "stride": 2}, (2, 16, 4, 4), False),
    ("ReLU", {}, (4, 5), False),
    ("LeakyReLU", {"negative_slope": 0.1}, (4, 5), False),
    ("Sigmoid", {}, (4, 5), False),
    ("Tanh", {}, (4, 5), False),
    ("Softplus", {"beta": 2.0, "threshold": 3.0}, (4, 5), False),
    ("ELU", {"alpha": 0.7}, (4, 5), False),
    ("GELU", {}, (4, 5), False),
    ("GELU", {"approximate": "tanh"}, (4, 5), False),
    ("SiLU", {}, (4, 5), False),
    ("Hardtanh", {"min_val": -0.5, "max_val": 0.5}, (4, 5), False),
    ("Softmax", {"dim": 1}, (3, 5), False),
    ("Softmax", {"dim": -1}, (3, 2, 4), False),
    ("LogSoftmax", {"dim": 1}, (3, 5, 2), False),
    ("Identity", {}, (3, 4), False),
    ("Flatten", {}, (2, 3, 2, 2), False),
    ("MaxPool1d", {"kernel_size": 3, "stride": 2, "padding": 1}, (2, 3, 9), False),
    ("MaxPool2d", {"kernel_size": 2}, (2, 3, 6, 4), False),
    ("MaxPool2d", {"kernel_size": 3, "stride": 1, "padding": 1}, (2, 2, 5, 5), False),
    ("AvgPool1d", {"kernel_size": 3, "stride": 2}, (2, 3, 9), False),
    ("AvgPool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, (2, 2, 7, 6), False),
    ("AdaptiveAvgPool2d", {"output_size": (2, 3)}, (2, 2, 5, 7), False),
    ("AdaptiveAvgPool1d", {"output_size": 3}, (2, 2, 7), False),
    ("Dropout", {"p": 0.3}, (4, 5), True),
    ("Dropout2d", {"p": 0.5}, (3, 4, 2, 2), True),
    ("RReLU", {}, (4, 5), True),
    ("BatchNorm1d", {"num_features": 3}, (4, 3), False),
    ("BatchNorm2d", {"num_features": 3}, (2, 3, 4, 4), False),
    ("LayerNorm", {"normalized_shape": (3, 4)}, (2, 3, 4), False),
    ("LayerNorm", {"normalized_shape": 5, "bias": False}, (4, 5), False),
]
RULE_IDS = [f"{name}-{i}" for i, (name, _, _, _) in enumerate(RULE_CASES)]


def _perturbed(layer: nn.Layer, x: np.ndarray, xdot: np.ndarray, thetadot: dict[str, np.ndarray], eps: float,
               fn: Callable[[np.ndarray], Any]) -> Any:
    """fn(x + ε ẋ) with every parameter moved to θ + ε θ̇ (restored afterwards)."""
    saved = {name: p.data.copy() for name, p in layer.named_parameters()}
    try:
        for name, p in layer.named_parameters():
            p.data[...] = saved[name] + eps * thetadot[name]
        return fn(x + eps * xdot)
    finally:
        for name, p in layer.named_parameters():
            p.data[...] = saved[name]


@pytest.mark.parametrize("name,kw,shape,train", RULE_CASES, ids=RULE_IDS)
def test_rules_match_central_differences(name: str, kw: dict[str, Any], shape: tuple[int, ...], train: bool) -> None:
    layer = _layer(name, kw)
    rng = np.random.default_rng(3)
    x = _x(shape)
    xdot = rng.standard_normal(shape)
    thetadot = {n: rng.standard_normal(p.shape) for n, p in layer.named_parameters()}
    y, cache = layer.forward(x, train=train, rng=np.random.default_rng(0))
    dy = rng.standard_normal(y.shape)
    dydot = rng.standard_normal(y.shape)
    eps = 1e-6

    def fwd(xe: np.ndarray) -> np.ndarray:
        return layer.forward(xe, train=train, rng=np.random.default_rng(0))[0]

    ydot = rop.jvp(layer, cache, xdot, thetadot)
    assert ydot is not None and ydot.shape == y.shape
    fd = (_perturbed(layer, x, xdot, thetadot, eps, fwd) - _perturbed(layer, x, xdot, thetadot, -eps, fwd)) / (2 * eps)
    assert rel_err(ydot, fd) <= FD_TOL

    def back(sign: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        def run(xe: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            _, c = layer.forward(xe, train=train, rng=np.random.default_rng(0))
            return layer.vjp(c, dy + sign * eps * dydot)
        return _perturbed(layer, x, xdot, thetadot, sign * eps, run)

    (dx_p, g_p), (dx_m, g_m) = back(1.0), back(-1.0)
    dxdot, gdot = rop.vjp_rop(layer, cache, dy, dydot, xdot, thetadot)
    assert rel_err(dxdot, (dx_p - dx_m) / (2 * eps)) <= FD_TOL
    assert set(gdot) == set(thetadot)
    for k in gdot:
        assert rel_err(gdot[k], (g_p[k] - g_m[k]) / (2 * eps)) <= FD_TOL, k
    # a zero input tangent may be passed as None
    dxdot0, _ = rop.vjp_rop(layer, cache, dy, dydot, None, thetadot)
    dxdot_zero, _ = rop.vjp_rop(layer, cache, dy, dydot, np.zeros(shape), thetadot)
    assert rel_err(dxdot0, dxdot_zero) <= 1e-14


LOSS_CASES: list[tuple[str, Callable[[], nn.Loss], tuple[int, ...], Callable[[np.random.Generator], Any]]] = [
    ("ce-mean", lambda: nn.CrossEntropyLoss(), (5, 4), lambda r: r.integers(0, 4, 5)),
    ("ce-sum-smooth-weight", lambda: nn.CrossEntropyLoss(weight=[1.0, 2.0, 0.5, 1.5], reduction="sum",
                                                          label_smoothing=0.2), (5, 4), lambda r: r.integers(0, 4, 5)),
    ("ce-probs", lambda: nn.CrossEntropyLoss(), (5, 4), lambda r: r.dirichlet(np.ones(4), 5)),
    ("ce-kdim-ignore", lambda: nn.CrossEntropyLoss(ignore_index=1), (3, 4, 2), lambda r: r.integers(0, 4, (3, 2))),
    ("nll", lambda: nn.NLLLoss(), (5, 4), lambda r: r.integers(0, 4, 5)),
    ("mse", lambda: nn.MSELoss(), (5, 3), lambda r: r.standard_normal((5, 3))),
    ("mse-sum", lambda: nn.MSELoss(reduction="sum"), (5, 3), lambda r: r.standard_normal((5, 3))),
    ("quadratic", lambda: nn.QuadraticLoss(), (5, 3), lambda r: r.standard_normal((5, 3))),
    ("bce-logits", lambda: nn.BCEWithLogitsLoss(weight=[1.0, 0.5, 2.0], pos_weight=[2.0, 1.0, 0.5]), (5, 3),
     lambda r: r.uniform(0, 1, (5, 3))),
    ("bce", lambda: nn.BCELoss(), (5, 3), lambda r: r.uniform(0, 1, (5, 3))),
    ("kl", lambda: nn.KLDivLoss(reduction="batchmean"), (5, 3), lambda r: r.dirichlet(np.ones(3), 5)),
]


@pytest.mark.parametrize("name,make,shape,target", LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
def test_loss_hvp_matches_central_differences(
    name: str, make: Callable[[], nn.Loss], shape: tuple[int, ...], target: Callable[[np.random.Generator], Any]
) -> None:
    loss = make()
    rng = np.random.default_rng(5)
    t = target(rng)
    y = rng.standard_normal(shape)
    if name == "bce":
        y = 1 / (1 + np.exp(-y))  # probabilities, away from 0 and 1
    ydot = rng.standard_normal(shape)
    _, cache = loss.forward(y, t)
    eps = 1e-6
    fd = (loss.vjp(loss.forward(y + eps * ydot, t)[1]) - loss.vjp(loss.forward(y - eps * ydot, t)[1])) / (2 * eps)
    got = rop.loss_hvp(loss, cache, ydot)
    assert got.shape == shape
    if name in ("nll", "kl"):
        assert np.all(got == 0) and np.max(np.abs(fd)) < 1e-9
    else:
        assert rel_err(got, fd) <= FD_TOL


def test_second_derivatives_of_every_activation() -> None:
    """f″ from d2f_rules against central differences of the layer's own f′ (both branches of each kink-free
    region; Softplus past its threshold is linear, ELU's x ≤ 0 branch)."""
    x = np.linspace(-6, 6, 241) + 0.013  # no exact kinks
    for layer in (nn.Sigmoid(), nn.Tanh(), nn.Softplus(beta=2.0, threshold=5.0), nn.ELU(alpha=1.3), nn.GELU(),
                  nn.GELU("tanh"), nn.SiLU(), nn.ReLU(), nn.LeakyReLU(0.2), nn.Hardtanh()):
        eps = 1e-6
        fd = (layer.df(x + eps, layer.f(x + eps)) - layer.df(x - eps, layer.f(x - eps))) / (2 * eps)
        f2 = rop.d2f(layer, x, layer.f(x))
        got = np.zeros_like(x) if f2 is None else f2
        assert np.max(np.abs(got - fd)) <= 1e-8, type(layer).__name__


# -- parity with PyTorch: HVP, Hessian, GGN --------------------------------------------------------------------
Spec = list[tuple[str, dict[str, Any]]]


def _pair(spec: Spec, seed: int = 0, eval_mode: bool = True) -> tuple[nn.Sequential, Any]:
    """The same architecture in nablanet and PyTorch (float64), PyTorch's weights loaded into ours."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    tmodel = torch.nn.Sequential(*[getattr(torch.nn, name)(**kw) for name, kw in spec]).double()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in tmodel.modules():  # generic batch-norm statistics and affine parameters
            if isinstance(mod, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d | torch.nn.LayerNorm):
                for p in mod.parameters():
                    p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
                if isinstance(mod, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                    mod.running_mean.copy_(0.2 * torch.randn(mod.running_mean.shape, generator=gen))
                    mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=gen))
    if eval_mode:
        tmodel.eval()
    ours = nn.Sequential(*[getattr(nn, name)(**kw, **({"dtype": F64} if name in PARAM_LAYERS else {}))
                           for name, kw in spec])
    ours.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})
    return ours, tmodel


def _torch_objective(tmodel: Any, tloss: Callable[..., Any], x: np.ndarray, target: Any) -> tuple[Any, Any]:
    """f(flat θ) = loss(model_θ(x), target) through torch.func.functional_call, and θ itself."""
    torch = pytest.importorskip("torch")
    functional_call = torch.func.functional_call

    names = [n for n, _ in tmodel.named_parameters()]
    shapes = [tuple(p.shape) for _, p in tmodel.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for _, p in tmodel.named_parameters()])
    xt = torch.tensor(x)
    tt = torch.tensor(np.asarray(target))

    def f(flat: Any) -> Any:
        params, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            k = math.prod(s)
            params[n] = flat[i : i + k].reshape(s)
            i += k
        return tloss(functional_call(tmodel, params, (xt,)), tt)

    return f, flat0


def _quadratic_torch(y: Any, d: Any) -> Any:
    return 0.5 * ((y - d) ** 2).sum() / y.shape[0]


MLP = [("Linear", {"in_features": 4, "out_features": 6})]
HEAD = [("Linear", {"in_features": 6, "out_features": 3})]
ACTIVATIONS: list[tuple[str, dict[str, Any]]] = [
    ("Tanh", {}), ("Sigmoid", {}), ("Softplus", {"beta": 1.5}), ("ELU", {"alpha": 0.8}), ("GELU", {}),
    ("GELU", {"approximate": "tanh"}), ("SiLU", {}), ("ReLU", {}), ("LeakyReLU", {"negative_slope": 0.1}),
]
CONV2D: Spec = [
    ("Conv2d", {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1, "groups": 2}),
    ("Tanh", {}),
    ("MaxPool2d", {"kernel_size": 2}),
    ("Flatten", {}),
    ("Linear", {"in_features": 24, "out_features": 3}),
]
CONV2D_AVG: Spec = [
    ("Conv2d", {"in_channels": 2, "out_channels": 4, "kernel_size": 3, "padding": 1}),
    ("SiLU", {}),
    ("AvgPool2d", {"kernel_size": 2}),
    ("Conv2d", {"in_channels": 4, "out_channels": 4, "kernel_size": 2, "dilation": 1, "bias": False}),
    ("MaxPool2d", {"kernel_size": 2, "stride": 1}),
    ("Flatten", {}),
    ("Linear", {"in_features": 4, "out_features": 3}),
]
CONV1D: Spec = [
    ("Conv1d", {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1}),
    ("ELU", {}),
    ("AvgPool1d", {"kernel_size": 2}),
    ("Flatten", {}),
    ("Linear", {"in_features": 12, "out_features": 3}),
]
NORMED: Spec = [
    ("Linear", {"in_features": 4, "out_features": 6}),
    ("BatchNorm1d", {"num_features": 6}),
    ("Tanh", {}),
    ("LayerNorm", {"normalized_shape": 6}),
    ("Linear", {"in_features": 6, "out_features": 3}),
]

# (id, spec, input shape, loss name)
MODEL_CASES: list[tuple[str, Spec, tuple[int, ...], str]] = [
    *[(f"mlp-{name}{'-tanh' if kw.get('approximate') else ''}", [*MLP, (name, kw), *HEAD], (6, 4), "ce")
      for name, kw in ACTIVATIONS],
    ("mlp-deep-ce-sum", [*MLP, ("Tanh", {}), ("Linear", {"in_features": 6, "out_features": 6}), ("Sigmoid", {}),
                         *HEAD], (6, 4), "ce-sum"),
    ("mlp-mse", [*MLP, ("Tanh", {}), *HEAD], (6, 4), "mse"),
    ("mlp-quadratic", [*MLP, ("GELU", {}), *HEAD], (6, 4), "quadratic"),
    ("mlp-bce-logits", [*MLP, ("SiLU", {}), *HEAD], (6, 4), "bce-logits"),
    ("mlp-ce-smooth-probs", [*MLP, ("Softplus", {}), *HEAD], (6, 4), "ce-probs-smooth"),
    ("mlp-logsoftmax-nll", [*MLP, ("Tanh", {}), *HEAD, ("LogSoftmax", {"dim": 1})], (6, 4), "nll"),
    ("mlp-softmax-mse", [*MLP, ("Tanh", {}), *HEAD, ("Softmax", {"dim": 1})], (6, 4), "mse"),
    ("conv2d-maxpool", CONV2D, (3, 4, 8, 8), "ce"),
    ("conv2d-avgpool", CONV2D_AVG, (2, 2, 6, 6), "ce-sum"),
    ("conv1d", CONV1D, (3, 3, 12), "mse"),
    ("batchnorm-layernorm", NORMED, (6, 4), "ce"),
]


def _losses(kind: str, shape_out: tuple[int, ...], rng: np.random.Generator) -> tuple[nn.Loss, Any, Any]:
    """(our loss, PyTorch's loss function, target) of one kind."""
    torch = pytest.importorskip("torch")

    n, c = shape_out
    if kind == "ce":
        return nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss(), rng.integers(0, c, n)
    if kind == "ce-sum":
        return nn.CrossEntropyLoss(reduction="sum"), torch.nn.CrossEntropyLoss(reduction="sum"), rng.integers(0, c, n)
    if kind == "ce-probs-smooth":
        return (nn.CrossEntropyLoss(label_smoothing=0.1), torch.nn.CrossEntropyLoss(label_smoothing=0.1),
                rng.dirichlet(np.ones(c), n))
    if kind == "nll":
        return nn.NLLLoss(), torch.nn.NLLLoss(), rng.integers(0, c, n)
    if kind == "mse":
        return nn.MSELoss(), torch.nn.MSELoss(), rng.standard_normal((n, c))
    if kind == "quadratic":
        return nn.QuadraticLoss(), _quadratic_torch, rng.standard_normal((n, c))
    pw = np.array([2.0, 1.0, 0.5])
    return (nn.BCEWithLogitsLoss(pos_weight=pw), torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pw)),
            rng.uniform(0, 1, (n, c)))


def _setup(spec: Spec, shape: tuple[int, ...], loss_kind: str) -> tuple[nn.Sequential, nn.Loss, np.ndarray, Any, Any,
                                                                         Any]:
    ours, tmodel = _pair(spec)
    x = _x(shape)
    loss, tloss, target = _losses(loss_kind, (shape[0], 3), np.random.default_rng(2))
    f, flat0 = _torch_objective(tmodel, tloss, x, target)
    return ours, loss, x, target, f, flat0


@pytest.mark.parametrize("case,spec,shape,loss_kind", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_hvp_matches_torch(case: str, spec: Spec, shape: tuple[int, ...], loss_kind: str) -> None:
    torch = pytest.importorskip("torch")

    ours, loss, x, target, f, flat0 = _setup(spec, shape, loss_kind)
    rng = np.random.default_rng(11)
    v = {name: rng.standard_normal(p.shape) for name, p in ours.named_parameters()}
    got = hvp(ours, loss, x, target, v)
    assert list(got) == [name for name, _ in ours.named_parameters()]
    _, want = torch.autograd.functional.hvp(f, flat0, torch.tensor(flatten_params(v, ours)))
    assert rel_err(flatten_params(got, ours), want.numpy()) <= HVP_TOL


@pytest.mark.parametrize("case", ["mlp-Tanh", "conv1d", "batchnorm-layernorm", "mlp-logsoftmax-nll"])
def test_hessian_matches_torch_and_is_symmetric(case: str) -> None:
    torch = pytest.importorskip("torch")

    _, spec, shape, loss_kind = next(c for c in MODEL_CASES if c[0] == case)
    ours, loss, x, target, f, flat0 = _setup(spec, shape, loss_kind)
    h = hessian(ours, loss, x, target)
    p = sum(q.size for q in ours.parameters())
    assert h.shape == (p, p) and h.dtype == F64
    want = torch.autograd.functional.hessian(f, flat0).numpy()
    assert rel_err(h, want) <= HVP_TOL
    assert rel_err(h, h.T) <= 1e-13


def test_ggn_equals_explicit_jacobian_product() -> None:
    """G = Jᵀ H_L J with J = ∂(output)/∂θ and H_L = ∇²_y L built from PyTorch's dense Jacobian and Hessian."""
    torch = pytest.importorskip("torch")
    functional_call = torch.func.functional_call

    _, spec, shape, _ = next(c for c in MODEL_CASES if c[0] == "conv1d")
    ours, tmodel = _pair(spec)
    x = _x(shape)
    target = np.random.default_rng(4).integers(0, 3, shape[0])
    loss = nn.CrossEntropyLoss()
    names = [n for n, _ in tmodel.named_parameters()]
    shapes = [tuple(p.shape) for _, p in tmodel.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for _, p in tmodel.named_parameters()])

    def out(flat: Any) -> Any:
        params, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            params[n] = flat[i : i + math.prod(s)].reshape(s)
            i += math.prod(s)
        return functional_call(tmodel, params, (torch.tensor(x),))

    y0 = out(flat0).detach()
    jac = torch.autograd.functional.jacobian(out, flat0).reshape(y0.numel(), -1).numpy()
    h_l = torch.autograd.functional.hessian(
        lambda y: torch.nn.functional.cross_entropy(y.reshape(y0.shape), torch.tensor(target)), y0.reshape(-1)
    ).numpy()
    want = jac.T @ h_l @ jac
    g = ggn(ours, loss, x, target)
    assert rel_err(g, want) <= HVP_TOL
    assert rel_err(g, g.T) <= 1e-13
    assert np.linalg.eigvalsh(g).min() >= -1e-12 * np.abs(g).max()  # PSD: CE is convex in the logits
    v = {n: np.random.default_rng(9).standard_normal(p.shape) for n, p in ours.named_parameters()}
    assert rel_err(flatten_params(ggn_vp(ours, loss, x, target, v), ours), want @ flatten_params(v, ours)) <= HVP_TOL


def test_ggn_equals_hessian_for_a_linear_model() -> None:
    model = nn.Sequential(nn.Linear(3, 2, dtype=F64, rng=0))
    x, target = _x((7, 3)), _x((7, 2), seed=2)
    loss = nn.MSELoss()
    h = hessian(model, loss, x, target)
    assert rel_err(ggn(model, loss, x, target), h) <= 1e-14
    # and equals the closed form: L = Σ (x Wᵀ + b − t)²/(N·K) ⇒ ∂²L/∂W_oi∂W_o'i' = 2 δ_oo' Σₙ xₙᵢ xₙᵢ'/(N·K)
    xa = np.hstack([x, np.ones((7, 1))])
    gram = 2 * xa.T @ xa / (7 * 2)
    want = np.zeros((8, 8))
    for o in range(2):  # θ = (W (2, 3) row-major, b (2,)): output o owns W[o, :] and b[o]
        idx = [3 * o, 3 * o + 1, 3 * o + 2, 6 + o]
        want[np.ix_(idx, idx)] = gram
    assert rel_err(h, want) <= 1e-14


def test_nested_sequential_and_dropout_in_training_mode() -> None:
    """A nested chain gives the same HVP as the flat one; with train=True the dropout mask drawn from rng is
    held fixed, and H v equals central differences of the gradient under that same mask."""
    inner = nn.Sequential(nn.Linear(4, 6, dtype=F64, rng=0), nn.Tanh())
    nested = nn.Sequential(inner, nn.Dropout(0.4), nn.Linear(6, 3, dtype=F64, rng=1))
    flat = nn.Sequential(nn.Linear(4, 6, dtype=F64, rng=0), nn.Tanh(), nn.Dropout(0.4),
                         nn.Linear(6, 3, dtype=F64, rng=1))
    x, target = _x((5, 4)), np.array([0, 2, 1, 1, 0])
    loss = nn.CrossEntropyLoss()
    rng = np.random.default_rng(8)
    v_nested = {n: rng.standard_normal(p.shape) for n, p in nested.named_parameters()}
    v_flat = dict(zip([n for n, _ in flat.named_parameters()], v_nested.values(), strict=True))
    for train in (False, True):
        a = hvp(nested, loss, x, target, v_nested, train=train, rng=3)
        b = hvp(flat, loss, x, target, v_flat, train=train, rng=3)
        assert rel_err(flatten_params(a, nested), flatten_params(b, flat)) <= 1e-14
    got = flatten_params(hvp(nested, loss, x, target, v_nested, train=True, rng=3), nested)
    theta = flatten_params(dict(nested.state_dict()), nested)
    vf = flatten_params(v_nested, nested)
    eps = 1e-5
    grads = []
    for sign in (1, -1):
        nested.load_state_dict(unflatten_params(theta + sign * eps * vf, nested))
        grads.append(flatten_params(nn.value_and_grad(nested, loss, x, target, train=True, rng=3)[1], nested))
    nested.load_state_dict(unflatten_params(theta, nested))
    assert rel_err(got, (grads[0] - grads[1]) / (2 * eps)) <= 1e-8


# -- spectrum and trace ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tanh_problem() -> tuple[nn.Sequential, nn.Loss, np.ndarray, np.ndarray, np.ndarray]:
    model = nn.Sequential(nn.Linear(5, 8, dtype=F64, rng=0), nn.Tanh(), nn.Linear(8, 4, dtype=F64, rng=1))
    x = _x((10, 5), scale=2.0)
    target = np.random.default_rng(3).integers(0, 4, 10)
    loss = nn.CrossEntropyLoss(reduction="sum")
    return model, loss, x, target, hessian(model, loss, x, target)


def test_lanczos_eigenvalues_match_eigvalsh(tanh_problem: Any) -> None:
    model, loss, x, target, h = tanh_problem
    exact = np.linalg.eigvalsh(h)
    assert exact[0] < 0 < exact[-1]  # indefinite: LA, SA and LM differ
    top = hessian_eigenvalues(model, loss, x, target, k=3)
    assert rel_err(top, exact[::-1][:3]) <= 1e-10
    low = hessian_eigenvalues(model, loss, x, target, k=2, which="SA")
    assert rel_err(low, exact[:2]) <= 1e-10
    lm = hessian_eigenvalues(model, loss, x, target, k=4, which="LM")
    assert rel_err(lm, exact[np.argsort(-np.abs(exact))][:4]) <= 1e-10
    # fewer Lanczos steps than parameters (P = 84) still pin down λ_max
    short = hessian_eigenvalues(model, loss, x, target, iters=40, tol=1e-8)
    assert abs(short[0] - exact[-1]) <= 1e-6 * abs(exact[-1])
    vals, vecs = hessian_eigenvalues(model, loss, x, target, k=2, return_eigenvectors=True)
    assert vecs.shape == (h.shape[0], 2)
    assert rel_err(h @ vecs, vecs * vals) <= 1e-9
    assert rel_err(vecs.T @ vecs, np.eye(2)) <= 1e-12


def test_repeated_eigenvalues_are_found(quadratic_problem: Any) -> None:
    """Linear + MSE has H = (2/(N·K)) I_o ⊗ X̃ᵀX̃: every eigenvalue twice. With 2 samples X̃ᵀX̃ (4×4) has rank 2,
    so 0 is an eigenvalue 4 times. One Krylov space holds one copy of each; the restarts find the rest."""
    model, loss, x, target = quadratic_problem
    for n in (20, 2):
        exact = np.linalg.eigvalsh(hessian(model, loss, x[:n], target[:n]))
        scale = np.abs(exact).max()
        for which, want in (("LA", exact[::-1]), ("SA", exact)):
            got = hessian_eigenvalues(model, loss, x[:n], target[:n], k=5, which=which)
            assert np.max(np.abs(got - want[:5])) <= 1e-10 * scale, (n, which)
    power = hessian_eigenvalues(model, loss, x, target, k=2, method="power", tol=1e-9, iters=20000)
    exact = np.linalg.eigvalsh(hessian(model, loss, x, target))
    assert rel_err(power, exact[::-1][:2]) <= 1e-8


def test_power_iteration_matches_eigvalsh(tanh_problem: Any) -> None:
    model, loss, x, target, h = tanh_problem
    exact = np.linalg.eigvalsh(h)
    top = hessian_eigenvalues(model, loss, x, target, k=2, method="power", tol=1e-9, iters=20000)
    assert rel_err(top, exact[::-1][:2]) <= 1e-6
    low = hessian_eigenvalues(model, loss, x, target, k=1, method="power", which="SA", tol=1e-9, iters=20000)
    assert abs(low[0] - exact[0]) <= 1e-6 * abs(exact).max()


def test_ggn_eigenvalues_and_trace(tanh_problem: Any) -> None:
    model, loss, x, target, _ = tanh_problem
    g = ggn(model, loss, x, target)
    exact = np.linalg.eigvalsh(g)
    assert rel_err(hessian_eigenvalues(model, loss, x, target, k=2, matrix="ggn"), exact[::-1][:2]) <= 1e-10
    est, err = hutchinson_trace(model, loss, x, target, n_samples=300, matrix="ggn", seed=1)
    assert abs(est - np.trace(g)) <= 4 * err


def test_hutchinson_converges_to_the_trace(tanh_problem: Any) -> None:
    model, loss, x, target, h = tanh_problem
    exact = float(np.trace(h))
    for distribution in ("rademacher", "gaussian"):
        est, err = hutchinson_trace(model, loss, x, target, n_samples=1000, seed=0, distribution=distribution)
        assert err > 0 and abs(est - exact) <= 4 * err, distribution
    few = hutchinson_trace(model, loss, x, target, n_samples=20, seed=0)
    many = hutchinson_trace(model, loss, x, target, n_samples=1000, seed=0)
    assert many[1] < few[1]  # stderr shrinks like 1/√n
    assert hutchinson_trace(model, loss, x, target, n_samples=20, seed=0) == few  # seeded: reproducible


# -- step sizes: Newton and the 2/λ_max bound on a convex quadratic ----------------------------------------
@pytest.fixture()
def quadratic_problem() -> tuple[nn.Sequential, nn.Loss, np.ndarray, np.ndarray]:
    model = nn.Sequential(nn.Linear(3, 2, dtype=F64, rng=0))
    rng = np.random.default_rng(6)
    x = rng.standard_normal((20, 3)) * np.array([1.0, 2.0, 0.5])
    target = rng.standard_normal((20, 2))
    return model, nn.MSELoss(), x, target


@pytest.mark.parametrize("method", ["cg", "direct"])
def test_newton_step_reaches_the_minimum_of_a_quadratic(quadratic_problem: Any, method: str) -> None:
    model, loss, x, target = quadratic_problem
    g0 = flatten_params(nn.value_and_grad(model, loss, x, target)[1], model)
    step = newton_step(model, loss, x, target, method=method)
    model.load_state_dict({k: v + step[k] for k, v in model.state_dict().items()})
    value, grads = nn.value_and_grad(model, loss, x, target)
    assert np.linalg.norm(flatten_params(grads, model)) <= 1e-12 * np.linalg.norm(g0)
    # the least-squares solution is the same minimum
    xa = np.hstack([x, np.ones((20, 1))])
    coef = np.linalg.lstsq(xa, target, rcond=None)[0]
    assert rel_err(model.state_dict()["0.weight"], coef[:3].T) <= 1e-12
    assert abs(value - float(np.mean((xa @ coef - target) ** 2))) <= 1e-14


def test_damped_newton_step_solves_the_damped_system(quadratic_problem: Any) -> None:
    model, loss, x, target = quadratic_problem
    g = flatten_params(nn.value_and_grad(model, loss, x, target)[1], model)
    step = newton_step(model, loss, x, target, damping=0.5)
    lhs = flatten_params(hvp(model, loss, x, target, step), model) + 0.5 * flatten_params(step, model)
    assert rel_err(lhs, -g) <= 1e-10


def test_stability_bound_separates_convergence_from_divergence(quadratic_problem: Any) -> None:
    """Gradient descent on a quadratic multiplies the error along uᵢ by (1 − η λᵢ): below η = 2/λ_max it
    converges, above it the top-eigenvector component grows by |1 − η λ_max| > 1 every step."""
    model, loss, x, target = quadratic_problem
    report = step_size_report(model, loss, x, target)
    exact = np.linalg.eigvalsh(hessian(model, loss, x, target))
    assert abs(report["lambda_max"] - exact[-1]) <= 1e-10 * exact[-1]
    assert abs(report["lambda_min"] - exact[0]) <= 1e-10 * exact[-1]
    assert report["lr_stability_bound"] == pytest.approx(2 / exact[-1], rel=1e-10)
    assert report["lr_optimal_top"] == pytest.approx(1 / exact[-1], rel=1e-10)
    assert report["condition_number"] == pytest.approx(exact[-1] / exact[0], rel=1e-8)
    theta0 = flatten_params(model.state_dict(), model)
    theta_star = theta0 + flatten_params(newton_step(model, loss, x, target), model)

    def distance_after(lr: float, steps: int = 300) -> float:
        model.load_state_dict(unflatten_params(theta0, model))
        for _ in range(steps):
            grads = nn.value_and_grad(model, loss, x, target)[1]
            model.load_state_dict({k: v - lr * grads[k] for k, v in model.state_dict().items()})
        return float(np.linalg.norm(flatten_params(model.state_dict(), model) - theta_star))

    start = float(np.linalg.norm(theta0 - theta_star))
    bound = report["lr_stability_bound"]
    assert distance_after(0.95 * bound) < 1e-3 * start
    assert distance_after(1.05 * bound) > 1e3 * start
    # the Cauchy step minimizes the quadratic along −g exactly
    model.load_state_dict(unflatten_params(theta0, model))
    g = nn.value_and_grad(model, loss, x, target)[1]

    def loss_along(lr: float) -> float:
        m = nn.Sequential(nn.Linear(3, 2, dtype=F64))
        m.load_state_dict({k: v - lr * g[k] for k, v in model.state_dict().items()})
        return float(loss(m(x), target))

    eta = report["lr_optimal_grad"]
    assert loss_along(eta) < min(loss_along(0.9 * eta), loss_along(1.1 * eta))


# -- errors ----------------------------------------------------------------------------------------------------
def test_errors_are_clear(quadratic_problem: Any) -> None:
    model, loss, x, target = quadratic_problem
    v = {n: np.zeros(p.shape) for n, p in model.named_parameters()}
    with pytest.raises(KeyError, match="missing keys"):
        hvp(model, loss, x, target, {"0.weight": v["0.weight"]})
    with pytest.raises(ValueError, match="has shape"):
        hvp(model, loss, x, target, {**v, "0.bias": np.zeros(3)})
    with pytest.raises(TypeError, match="unflatten_params"):
        hvp(model, loss, x, target, np.zeros(8))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_params"):
        hessian(model, loss, x, target, max_params=5)
    with pytest.raises(ValueError, match="which"):
        hessian_eigenvalues(model, loss, x, target, which="largest")
    with pytest.raises(ValueError, match="method"):
        hessian_eigenvalues(model, loss, x, target, method="arnoldi")
    with pytest.raises(ValueError, match="reduction='none'"):
        hvp(model, nn.MSELoss(reduction="none"), x, target, v)
    with pytest.raises(ValueError, match="expected"):
        unflatten_params(np.zeros(7), model)


def test_batchnorm_in_training_mode_is_refused() -> None:
    model = nn.Sequential(nn.Linear(3, 4, dtype=F64, rng=0), nn.BatchNorm1d(4, dtype=F64), nn.Linear(4, 2, dtype=F64))
    x, target = _x((6, 3)), np.array([0, 1, 1, 0, 1, 0])
    with pytest.raises(ValueError, match="running statistics"):
        hessian(model, nn.CrossEntropyLoss(), x, target, train=True)
    assert hessian(model, nn.CrossEntropyLoss(), x, target).shape == (34, 34)  # eval mode is fine


class _Cube(nn.Layer):
    """y = x³, a layer the curvature rules do not know."""

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return x**3, x

    def vjp(self, cache: np.ndarray, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return 3 * cache**2 * dy, {}


class _Swish2(nn.layers.activations.Elementwise):
    """An elementwise activation with f and f′ but no registered f″."""

    def f(self, x: np.ndarray) -> np.ndarray:
        return x * x

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 2 * x


class _L1(nn.Loss):
    def _terms(self, input: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.abs(input - target), np.sign(input - target)

    def _terms_vjp(self, aux: np.ndarray, dterms: np.ndarray) -> np.ndarray:
        return aux * dterms


def test_unknown_layers_and_losses_fail_loudly() -> None:
    x, target = _x((4, 3)), np.array([0, 1, 1, 0])
    model = nn.Sequential(nn.Linear(3, 3, dtype=F64, rng=0), _Cube(), nn.Linear(3, 2, dtype=F64, rng=1))
    with pytest.raises(NotImplementedError, match="_Cube"):
        hessian(model, nn.CrossEntropyLoss(), x, target)
    # layers in front of the first parameter never need a rule (their tangent is 0)
    front = nn.Sequential(_Cube(), nn.Linear(3, 2, dtype=F64, rng=1))
    assert hessian(front, nn.CrossEntropyLoss(), x, target).shape == (8, 8)
    custom = nn.Sequential(nn.Linear(3, 3, dtype=F64, rng=0), _Swish2(), nn.Linear(3, 2, dtype=F64, rng=1))
    with pytest.raises(NotImplementedError, match="_Swish2"):
        hessian(custom, nn.CrossEntropyLoss(), x, target)
    assert ggn(custom, nn.CrossEntropyLoss(), x, target).shape == (20, 20)  # the GGN needs no f″
    with pytest.raises(NotImplementedError, match="_L1"):
        hessian(nn.Sequential(nn.Linear(3, 2, dtype=F64)), _L1(), x, np.zeros((4, 2)))


class _Skip(nn.Layer):
    """y = x + f(x) around a child f: a layer of the user's with children, its own data flow and no rules."""

    def __init__(self, f: nn.Layer) -> None:
        super().__init__()
        self.f = f

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, Any]:
        y, cache = self.f.forward(x)
        return x + y, cache

    def vjp(self, cache: Any, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        dx, grads = self.f.vjp(cache, dy, per_sample=per_sample)
        return dy + dx, {f"f.{k}": g for k, g in grads.items()}


def test_a_layer_with_children_and_no_rules_is_refused_by_name() -> None:
    x, target = _x((4, 3)), np.array([0, 1, 1, 0])
    model = nn.Sequential(nn.Linear(3, 3, dtype=F64, rng=0), _Skip(nn.Linear(3, 3, dtype=F64, rng=1)),
                          nn.Linear(3, 2, dtype=F64, rng=2))
    assert nn.value_and_grad(model, nn.CrossEntropyLoss(), x, target)[1]  # the model itself works
    for fn in (hessian, ggn):
        with pytest.raises(NotImplementedError, match="_Skip"):
            fn(model, nn.CrossEntropyLoss(), x, target)


def test_flatten_roundtrip_and_order() -> None:
    model = nn.Sequential(nn.Conv1d(2, 3, 2, dtype=F64), nn.Flatten(), nn.Linear(6, 2, bias=False, dtype=F64))
    params = dict(model.state_dict())
    vec = flatten_params(params, model)
    assert vec.shape == (3 * 2 * 2 + 3 + 12,)
    assert np.array_equal(vec[:12], params["0.weight"].reshape(-1))  # named_parameters order, C order
    back = unflatten_params(vec, model)
    assert list(back) == ["0.weight", "0.bias", "2.weight"]
    assert all(np.array_equal(back[k], params[k]) for k in params)
