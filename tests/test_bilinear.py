"""Bilinear: finite differences, PyTorch parity, vector axes, per-sample gradients, use after Pair."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import check_layer_fd, numeric_grad, rel_err

import nablanet as nn
from nablanet.layers.bilinear import Bilinear
from nablanet.layers.graph import Pair

F64 = np.float64

# (in1, in2, out, bias, leading axes of the inputs)
CASES = [
    (3, 4, 5, True, (6,)),
    (3, 4, 5, False, (6,)),
    (1, 1, 1, True, (2,)),
    (5, 2, 3, True, (4, 3)),  # an extra axis (e.g. time), as torch's (N, *, H_in)
    (4, 4, 2, True, (2, 2, 3)),
]
IDS = [f"{i}x{j}to{o}{'' if b else '_nobias'}_{'x'.join(map(str, lead))}" for i, j, o, b, lead in CASES]


def _inputs(i: int, j: int, lead: tuple[int, ...], seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((*lead, i)), rng.standard_normal((*lead, j))


def _fd(layer: Bilinear, x1: np.ndarray, x2: np.ndarray) -> float:
    """Worst relative error of (dx₁, dx₂, dW, db) against central differences of ⟨dy, y⟩."""
    y, cache = layer.forward((x1, x2))
    dy = np.random.default_rng(0).standard_normal(y.shape)
    (dx1, dx2), grads = layer.vjp(cache, dy)

    def f() -> float:
        return float(np.sum(layer.forward((x1, x2))[0] * dy))

    worst = max(rel_err(dx1, numeric_grad(f, x1)), rel_err(dx2, numeric_grad(f, x2)))
    for name, p in layer.named_parameters():
        worst = max(worst, rel_err(grads[name], numeric_grad(f, p.data)))
    return worst


@pytest.mark.parametrize("i,j,o,bias,lead", CASES, ids=IDS)
def test_finite_differences_float64(i: int, j: int, o: int, bias: bool, lead: tuple[int, ...]) -> None:
    layer = Bilinear(i, j, o, bias, dtype=F64, rng=0)
    assert _fd(layer, *_inputs(i, j, lead)) <= 1e-6


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("i,j,o,bias,lead", CASES, ids=IDS)
def test_torch_parity(i: int, j: int, o: int, bias: bool, lead: tuple[int, ...], dtype: type, tol: float) -> None:
    torch = pytest.importorskip("torch")
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    tlayer = torch.nn.Bilinear(i, j, o, bias=bias, dtype=tdt)
    layer = Bilinear(i, j, o, bias, dtype=dtype)
    layer.load_state_dict({k: v.detach().numpy() for k, v in tlayer.state_dict().items()})
    x1, x2 = (a.astype(dtype) for a in _inputs(i, j, lead))
    y, cache = layer.forward((x1, x2))
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    (dx1, dx2), grads = layer.vjp(cache, dy)
    t1, t2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
    ty = tlayer(t1, t2)
    ty.backward(torch.tensor(dy))
    assert y.dtype == dx1.dtype == dx2.dtype == dtype
    assert rel_err(y, ty.detach().numpy()) <= tol
    assert rel_err(dx1, t1.grad.numpy()) <= tol
    assert rel_err(dx2, t2.grad.numpy()) <= tol
    tgrads = dict(tlayer.named_parameters())
    assert set(grads) == set(tgrads)
    for k, g in grads.items():
        assert g.dtype == dtype
        assert rel_err(g, tgrads[k].grad.numpy()) <= tol, k
    np.testing.assert_allclose(layer(x1, x2), y)  # the PyTorch-style call


def test_init_matches_pytorch_bounds() -> None:
    layer = Bilinear(16, 3, 50, rng=0)
    bound = 1 / np.sqrt(16)  # U(±1/√in1) for weight and bias
    assert layer.weight.shape == (50, 16, 3) and layer.bias is not None and layer.bias.shape == (50,)
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.weight.data).max() > 0.9 * bound
    assert np.abs(layer.bias.data).max() <= bound
    assert layer.weight.dtype == np.float32


@pytest.mark.parametrize("i,j,o,bias,lead", CASES, ids=IDS)
def test_vector_axes_equal_separate_vjps(i: int, j: int, o: int, bias: bool, lead: tuple[int, ...]) -> None:
    layer = Bilinear(i, j, o, bias, dtype=F64, rng=0)
    y, cache = layer.forward(_inputs(i, j, lead))
    dys = np.random.default_rng(3).standard_normal((2, 3, *y.shape))
    (dx1, dx2), grads = layer.vjp(cache, dys)
    assert dx1.shape == (2, 3, *lead, i) and dx2.shape == (2, 3, *lead, j)
    for a in range(2):
        for b in range(3):
            (e1, e2), g1 = layer.vjp(cache, dys[a, b])
            np.testing.assert_allclose(dx1[a, b], e1, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(dx2[a, b], e2, rtol=1e-12, atol=1e-14)
            for k in g1:
                np.testing.assert_allclose(grads[k][a, b], g1[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("i,j,o,bias,lead", CASES, ids=IDS)
def test_per_sample_grads_sum_to_batch_and_equal_singletons(
    i: int, j: int, o: int, bias: bool, lead: tuple[int, ...]
) -> None:
    layer = Bilinear(i, j, o, bias, dtype=F64, rng=0)
    x1, x2 = _inputs(i, j, lead)
    y, cache = layer.forward((x1, x2))
    dys = np.random.default_rng(4).standard_normal((2, *y.shape))  # with a vector axis too
    _, g = layer.vjp(cache, dys)
    _, gn = layer.vjp(cache, dys, per_sample=True)
    n = lead[0]
    for k in g:
        assert gn[k].shape == (2, n, *g[k].shape[1:])
        np.testing.assert_allclose(gn[k].sum(1), g[k], rtol=1e-12, atol=1e-14)
    for s in range(n):
        _, c1 = layer.forward((x1[s : s + 1], x2[s : s + 1]))
        _, g1 = layer.vjp(c1, dys[:, s : s + 1])
        for k in g:
            np.testing.assert_allclose(gn[k][:, s], g1[k], rtol=1e-12, atol=1e-14)


def test_hand_worked_example() -> None:
    # W₀ = [[1, 2], [0, −1]], b₀ = 0.5;  x₁ = [1, 3], x₂ = [2, 1]
    # y = x₁ᵀ W₀ x₂ + b = [1, 3]·[1·2 + 2·1, 0·2 − 1·1] + 0.5 = [1, 3]·[4, −1] + 0.5 = 1 + 0.5 = 1.5
    # dy = 1: dx₁ = W₀ x₂ = [4, −1];  dx₂ = W₀ᵀ x₁ = [1, 2 − 3] = [1, −1];  dW₀ = x₁ x₂ᵀ = [[2, 1], [6, 3]]
    layer = Bilinear(2, 2, 1, dtype=F64)
    layer.load_state_dict({"weight": [[[1.0, 2.0], [0.0, -1.0]]], "bias": [0.5]})
    y, cache = layer.forward((np.array([[1.0, 3.0]]), np.array([[2.0, 1.0]])))
    (dx1, dx2), g = layer.vjp(cache, np.ones((1, 1)))
    np.testing.assert_allclose(y, [[1.5]])
    np.testing.assert_allclose(dx1, [[4.0, -1.0]])
    np.testing.assert_allclose(dx2, [[1.0, -1.0]])
    np.testing.assert_allclose(g["weight"], [[[2.0, 1.0], [6.0, 3.0]]])
    np.testing.assert_allclose(g["bias"], [1.0])


def _pair_model(dtype: Any = F64) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(4, 5, dtype=dtype, rng=0),
        nn.Tanh(),
        Pair(nn.Linear(5, 3, dtype=dtype, rng=1), nn.Sequential(nn.Linear(5, 2, dtype=dtype, rng=2), nn.Sigmoid())),
        Bilinear(3, 2, 6, dtype=dtype, rng=3),
        nn.Linear(6, 2, dtype=dtype, rng=4),
    )


def test_in_a_sequential_after_pair_finite_differences_and_tape() -> None:
    model = _pair_model()
    x = np.random.default_rng(5).standard_normal((4, 4))
    assert check_layer_fd(model, x) <= 1e-6
    y, caches = model.forward(x)
    tape = model.backward(caches, np.ones_like(y), accumulate=False)
    assert [e.name for e in tape] == ["0", "1", "2.0", "2.1.0", "2.1.1", "3", "4"]
    assert isinstance(tape[5].layer, Bilinear) and tape[5].dy.shape == (4, 6)
    _, gn = model.vjp(caches, np.ones_like(y), per_sample=True)
    _, g = model.vjp(caches, np.ones_like(y))
    for k in g:
        np.testing.assert_allclose(gn[k].sum(0), g[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_pair_bilinear_model_matches_torch(dtype: type, tol: float) -> None:
    torch = pytest.importorskip("torch")
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    t0, t2a, t2b, t3, t4 = (torch.nn.Linear(4, 5), torch.nn.Linear(5, 3), torch.nn.Linear(5, 2),
                            torch.nn.Bilinear(3, 2, 6), torch.nn.Linear(6, 2))
    mods = torch.nn.ModuleDict({"0": t0, "2a": t2a, "2b": t2b, "3": t3, "4": t4}).to(tdt)
    model = _pair_model(dtype)
    names = {"0": "0", "2a": "2.0", "2b": "2.1.0", "3": "3", "4": "4"}
    model.load_state_dict({f"{names[k.split('.')[0]]}.{k.split('.')[1]}": v.detach().numpy()
                           for k, v in mods.state_dict().items()})
    x = np.random.default_rng(6).standard_normal((5, 4)).astype(dtype)
    y, caches = model.forward(x)
    dy = np.random.default_rng(7).standard_normal(y.shape).astype(dtype)
    dx, grads = model.vjp(caches, dy)
    tx = torch.tensor(x, requires_grad=True)
    h = torch.tanh(t0(tx))
    ty = t4(t3(t2a(h), torch.sigmoid(t2b(h))))
    ty.backward(torch.tensor(dy))
    assert rel_err(y, ty.detach().numpy()) <= tol
    assert rel_err(dx, tx.grad.numpy()) <= tol
    for k, p in mods.named_parameters():
        ours = f"{names[k.split('.')[0]]}.{k.split('.')[1]}"
        assert rel_err(grads[ours], p.grad.numpy()) <= tol, ours


def test_errors_are_clear() -> None:
    layer = Bilinear(3, 2, 4)
    with pytest.raises(TypeError, match=r"pair x = \(x1, x2\); got ndarray"):
        layer.forward(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="got tuple of length 3"):
        layer.forward((np.zeros((2, 3)),) * 3)
    with pytest.raises(ValueError, match=r"x2.shape=\(2, 3\); expected \(N, \*, 2\)"):
        layer.forward((np.zeros((2, 3)), np.zeros((2, 3))))
    with pytest.raises(ValueError, match="leading axes"):
        layer.forward((np.zeros((2, 3)), np.zeros((3, 2))))
    with pytest.raises(ValueError, match="in2_features=0"):
        Bilinear(3, 0, 4)
    with pytest.raises(ValueError, match="NaN"):
        layer(np.full((1, 3), np.nan), np.zeros((1, 2)))
