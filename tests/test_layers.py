"""Every layer: finite differences, PyTorch parity, conventions at kinks, vector axes, shapes."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from helpers import check_layer_fd, rel_err

import nablanet as nn

F64 = np.float64

# (name, nablanet factory, torch factory or None, input shape)
LAYER_CASES: list[tuple[str, Callable[[], nn.Layer], Callable[..., object] | None, tuple[int, ...]]] = [
    ("linear", lambda: nn.Linear(5, 4), lambda t: t.nn.Linear(5, 4), (3, 5)),
    ("linear_nobias", lambda: nn.Linear(5, 4, bias=False), lambda t: t.nn.Linear(5, 4, bias=False), (3, 5)),
    ("linear_3d", lambda: nn.Linear(5, 2), lambda t: t.nn.Linear(5, 2), (3, 4, 5)),
    ("identity", nn.Identity, lambda t: t.nn.Identity(), (3, 4)),
    ("relu", nn.ReLU, lambda t: t.nn.ReLU(), (3, 7)),
    ("leaky_relu", lambda: nn.LeakyReLU(0.2), lambda t: t.nn.LeakyReLU(0.2), (3, 7)),
    ("sigmoid", nn.Sigmoid, lambda t: t.nn.Sigmoid(), (3, 7)),
    ("tanh", nn.Tanh, lambda t: t.nn.Tanh(), (3, 7)),
    ("softplus", nn.Softplus, lambda t: t.nn.Softplus(), (3, 7)),
    ("softplus_beta", lambda: nn.Softplus(beta=2.0, threshold=3.0), lambda t: t.nn.Softplus(2.0, 3.0), (3, 7)),
    ("softmax", lambda: nn.Softmax(dim=-1), lambda t: t.nn.Softmax(dim=-1), (3, 6)),
    ("softmax_dim1_4d", lambda: nn.Softmax(dim=1), lambda t: t.nn.Softmax(dim=1), (2, 3, 2, 2)),
    ("log_softmax", lambda: nn.LogSoftmax(dim=-1), lambda t: t.nn.LogSoftmax(dim=-1), (3, 6)),
    ("log_softmax_dim1", lambda: nn.LogSoftmax(dim=1), lambda t: t.nn.LogSoftmax(dim=1), (2, 4, 3)),
    ("flatten", nn.Flatten, lambda t: t.nn.Flatten(), (2, 3, 4)),
    ("flatten_mid", lambda: nn.Flatten(1, 2), lambda t: t.nn.Flatten(1, 2), (2, 3, 4, 2)),
    (
        "mlp",
        lambda: nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.Sigmoid(), nn.Linear(5, 3)),
        lambda t: t.nn.Sequential(t.nn.Linear(4, 6), t.nn.Tanh(), t.nn.Linear(6, 5), t.nn.Sigmoid(), t.nn.Linear(5, 3)),
        (3, 4),
    ),
    (
        "nested",
        lambda: nn.Sequential(nn.Sequential(nn.Linear(4, 5), nn.ReLU()), nn.Linear(5, 2), nn.LogSoftmax(dim=-1)),
        lambda t: t.nn.Sequential(
            t.nn.Sequential(t.nn.Linear(4, 5), t.nn.ReLU()), t.nn.Linear(5, 2), t.nn.LogSoftmax(dim=-1)
        ),
        (3, 4),
    ),
]
IDS = [c[0] for c in LAYER_CASES]


def _input(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(shape)
    # keep entries away from ReLU's kink so central differences see one smooth branch
    return np.where(np.abs(x) < 1e-3, 0.5, x)


@pytest.mark.parametrize("name,make,_t,shape", LAYER_CASES, ids=IDS)
def test_finite_differences_float64(
    name: str, make: Callable[[], nn.Layer], _t: object, shape: tuple[int, ...]
) -> None:
    layer = make().double()
    assert check_layer_fd(layer, _input(shape)) <= 1e-6


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("name,make,make_torch,shape", LAYER_CASES, ids=IDS)
def test_torch_parity(
    name: str, make: Callable[[], nn.Layer], make_torch: Callable[..., object], shape: tuple[int, ...],
    dtype: type, tol: float,
) -> None:
    torch = pytest.importorskip("torch")
    layer = make().to(dtype)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tlayer = make_torch(torch).to(tdtype)
    # PyTorch names and layouts: load torch's initial weights through our state_dict
    layer.load_state_dict({k: v.detach().numpy() for k, v in tlayer.state_dict().items()})
    x = _input(shape).astype(dtype)
    y, cache = layer.forward(x)
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    dx, grads = layer.vjp(cache, dy)

    tx = torch.tensor(x, requires_grad=True)
    ty = tlayer(tx)
    ty.backward(torch.tensor(dy))
    assert y.dtype == dtype and dx.dtype == dtype
    assert rel_err(y, ty.detach().numpy()) <= tol
    assert rel_err(dx, tx.grad.numpy()) <= tol
    tgrads = dict(tlayer.named_parameters())
    assert set(grads) == set(tgrads)
    for k, g in grads.items():
        assert g.dtype == dtype
        assert rel_err(g, tgrads[k].grad.numpy()) <= tol, k


def test_relu_derivative_is_one_at_the_kink() -> None:
    # The notes' subgradient convention: f'(0) = 1 (PyTorch uses 0 at exactly 0).
    x = np.array([[-1.0, 0.0, 2.0]])
    y, cache = nn.ReLU().forward(x)
    dx, _ = nn.ReLU().vjp(cache, np.ones_like(x))
    np.testing.assert_array_equal(y, [[0.0, 0.0, 2.0]])
    np.testing.assert_array_equal(dx, [[0.0, 1.0, 1.0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_matches_the_scalar_maximum_on_special_values(dtype: type) -> None:
    # NaN propagates, ±inf and signed zeros come out as NumPy's maximum gives them, in any memory layout
    x = np.array([np.nan, -0.0, 0.0, -np.inf, np.inf, -1.5, 2.5], dtype=dtype)
    for xs in (x[None], np.asfortranarray(np.stack([x, x])), np.stack([x, x]).T):
        y = nn.ReLU().forward(xs)[0]
        want = np.maximum(xs, 0)
        assert y.dtype == dtype
        np.testing.assert_array_equal(y, want)
        np.testing.assert_array_equal(np.signbit(y), np.signbit(want))


def test_leaky_relu_derivative_is_one_at_the_kink() -> None:
    layer = nn.LeakyReLU(0.1)
    x = np.array([[-2.0, 0.0, 3.0]])
    y, cache = layer.forward(x)
    dx, _ = layer.vjp(cache, np.ones_like(x))
    np.testing.assert_allclose(y, [[-0.2, 0.0, 3.0]])
    np.testing.assert_allclose(dx, [[0.1, 1.0, 1.0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_has_no_overflow_warnings(dtype: type) -> None:
    x = np.array([[-1e4, -800.0, -50.0, 0.0, 50.0, 800.0, 1e4]], dtype=dtype)
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        y, cache = nn.Sigmoid().forward(x)
        dx, _ = nn.Sigmoid().vjp(cache, np.ones_like(x))
    assert y.dtype == dtype
    np.testing.assert_allclose(y[0, [0, 3, 6]], [0.0, 0.5, 1.0])
    assert np.all(np.isfinite(dx))


def test_softplus_linear_above_threshold_and_no_overflow() -> None:
    x = np.array([[-1e4, 0.0, 19.0, 21.0, 1e4]])
    with warnings.catch_warnings(), np.errstate(over="raise"):
        warnings.simplefilter("error")
        y, cache = nn.Softplus().forward(x)
        dx, _ = nn.Softplus().vjp(cache, np.ones_like(x))
    np.testing.assert_allclose(y[0, [0, 1, 3, 4]], [0.0, np.log(2.0), 21.0, 1e4])
    np.testing.assert_allclose(dx[0, [1, 3, 4]], [0.5, 1.0, 1.0])


def test_softmax_jacobian_equals_closed_form() -> None:
    # ∂y_j/∂z_i = y_j (δ_ij − y_i)
    z = np.random.default_rng(0).standard_normal((4, 5))
    y = nn.Softmax(dim=-1)(z)
    J = nn.jacobian(nn.Softmax(dim=-1), z)
    closed = np.einsum("nj,ij->nji", y, np.eye(5)) - np.einsum("nj,ni->nji", y, y)
    assert J.shape == (4, 5, 5)
    np.testing.assert_allclose(J, closed, atol=1e-15)


def test_log_softmax_jacobian_equals_closed_form() -> None:
    # ∂y_j/∂z_i = δ_ij − softmax(z)_i
    z = np.random.default_rng(0).standard_normal((3, 4))
    p = nn.Softmax(dim=-1)(z)
    J = nn.jacobian(nn.LogSoftmax(dim=-1), z)
    np.testing.assert_allclose(J, np.eye(4)[None] - p[:, None, :], atol=1e-15)


@pytest.mark.parametrize("name,make,_t,shape", LAYER_CASES, ids=IDS)
def test_vector_axes_equal_separate_vjps(
    name: str, make: Callable[[], nn.Layer], _t: object, shape: tuple[int, ...]
) -> None:
    layer = make().double()
    x = _input(shape)
    y, cache = layer.forward(x)
    dys = np.random.default_rng(3).standard_normal((2, 3, *y.shape))  # V = (2, 3)
    dx, grads = layer.vjp(cache, dys)
    assert dx.shape == (2, 3, *x.shape)
    for a in range(2):
        for b in range(3):
            dx1, g1 = layer.vjp(cache, dys[a, b])
            np.testing.assert_allclose(dx[a, b], dx1, rtol=1e-12, atol=1e-14)
            for k in g1:
                np.testing.assert_allclose(grads[k][a, b], g1[k], rtol=1e-12, atol=1e-14)


def test_linear_per_sample_grads_sum_to_batch_and_norm_identity() -> None:
    layer = nn.Linear(5, 3, dtype=F64)
    x = _input((6, 5))
    y, cache = layer.forward(x)
    dy = np.random.default_rng(4).standard_normal(y.shape)
    _, g = layer.vjp(cache, dy)
    _, gn = layer.vjp(cache, dy, per_sample=True)
    assert gn["weight"].shape == (6, 3, 5) and gn["bias"].shape == (6, 3)
    np.testing.assert_allclose(gn["weight"].sum(0), g["weight"], rtol=1e-12)
    np.testing.assert_allclose(gn["bias"].sum(0), g["bias"], rtol=1e-12)
    # ‖dW_n‖² = ‖dy_n‖² ‖x_n‖²
    lhs = (gn["weight"] ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(lhs, (dy**2).sum(1) * (x**2).sum(1), rtol=1e-12)


def test_batch_equals_stacked_singletons() -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3), nn.Softmax(dim=-1)).double()
    x = _input((5, 4))
    yb = model(x)
    ys = np.concatenate([model(x[n : n + 1]) for n in range(5)])
    np.testing.assert_allclose(yb, ys, rtol=1e-14)
    # Parameter gradients of a sum over the batch are the sum of the singletons' gradients.
    layer_y, cache = model.forward(x)
    dy = np.random.default_rng(5).standard_normal(layer_y.shape)
    _, gb = model.vjp(cache, dy)
    total = {k: np.zeros_like(v) for k, v in gb.items()}
    for n in range(5):
        _, c1 = model.forward(x[n : n + 1])
        _, g1 = model.vjp(c1, dy[n : n + 1])
        for k in total:
            total[k] += g1[k]
    for k in gb:
        np.testing.assert_allclose(gb[k], total[k], rtol=1e-12, atol=1e-15)


def test_hand_worked_two_layer_example() -> None:
    # x = [1, 2];  layer 1: W1 = [[1, 0], [−1, 1]], b1 = [0, 0]  →  z1 = [1·1 + 0·2, −1·1 + 1·2] = [1, 1]
    # ReLU: y1 = [1, 1];  layer 2: W2 = [[2, −1]], b2 = [0.5]  →  z2 = 2·1 − 1·1 + 0.5 = 1.5
    # Loss ½(z2 − d)² with d = 1  →  L = ½·0.5² = 0.125, dz2 = z2 − d = 0.5
    # dW2 = dz2 · y1 = [0.5, 0.5], db2 = 0.5, dy1 = dz2 · W2 = [1.0, −0.5]
    # ReLU' = [1, 1] (z1 > 0)  →  dz1 = [1.0, −0.5]
    # dW1 = dz1ᵀ x = [[1·1, 1·2], [−0.5·1, −0.5·2]] = [[1, 2], [−0.5, −1]], db1 = [1, −0.5]
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)).double()
    model.load_state_dict({
        "0.weight": [[1.0, 0.0], [-1.0, 1.0]], "0.bias": [0.0, 0.0], "2.weight": [[2.0, -1.0]], "2.bias": [0.5],
    })
    value, grads = nn.value_and_grad(model, nn.QuadraticLoss(), np.array([[1.0, 2.0]]), np.array([[1.0]]))
    assert value == pytest.approx(0.125, abs=1e-15)
    np.testing.assert_allclose(grads["2.weight"], [[0.5, 0.5]])
    np.testing.assert_allclose(grads["2.bias"], [0.5])
    np.testing.assert_allclose(grads["0.weight"], [[1.0, 2.0], [-0.5, -1.0]])
    np.testing.assert_allclose(grads["0.bias"], [1.0, -0.5])


def test_backward_accumulates_into_grad_and_returns_tape() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x = _input((5, 3))
    y, caches = model.forward(x, train=True)
    dy = np.ones_like(y)
    tape = model.backward(caches, dy)
    assert [e.name for e in tape] == ["0", "1", "2"]
    assert tape[-1].dy is dy
    first = model[0].weight.grad.copy()
    model.backward(caches, dy)
    np.testing.assert_allclose(model[0].weight.grad, 2 * first)
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_a_layer_on_its_own_has_a_tape_of_one_unnamed_entry() -> None:
    layer = nn.Linear(3, 2).double()
    x = _input((4, 3))
    y, cache = layer.forward(x)
    tape = layer.backward(cache, np.ones_like(y))
    assert [(e.name, e.layer) for e in tape] == [("", layer)]
    np.testing.assert_allclose(layer.weight.grad, np.ones((2, 4)) @ x)


def test_kernels_load_before_any_layer_module() -> None:
    # a variant in layers/kernels/ imports the layer module it speeds up; that import works only if
    # nablanet.layers loads kernels before the layer modules (base.py imports kernels)
    code = """
import sys
started = []  # modules in the order their import starts (a finder is asked first, then declines)
class Recorder:
    def find_spec(self, name, path, target=None):
        started.append(name)
sys.meta_path.insert(0, Recorder())
import nablanet
print(started.index("nablanet.layers.kernels") < started.index("nablanet.layers.base"))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def test_nested_tape_names_are_state_dict_prefixes() -> None:
    model = nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), nn.Linear(4, 2)).double()
    y, caches = model.forward(_input((2, 3)))
    tape = model.backward(caches, np.ones_like(y), accumulate=False)
    assert [e.name for e in tape] == ["0.0", "0.1", "1"]
    assert list(model.state_dict()) == ["0.0.weight", "0.0.bias", "1.weight", "1.bias"]


def test_flatten_default_and_shapes() -> None:
    y = nn.Flatten()(np.zeros((2, 3, 4)))
    assert y.shape == (2, 12)
    assert nn.Flatten(0)(np.zeros((2, 3))).shape == (6,)


def test_need_dx_false_skips_only_the_input_gradient() -> None:
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    y, cache = model.forward(_input((3, 4)))
    dy = np.ones_like(y)
    dx, grads = model.vjp(cache, dy)
    dx_skipped, grads_skipped = model.vjp(cache, dy, need_dx=False)
    assert dx.shape == (3, 4) and dx_skipped.size == 0
    for k in grads:
        np.testing.assert_array_equal(grads[k], grads_skipped[k])
