"""value_and_grad, jacobian and gradcheck as a user calls them."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import rel_err

import nablanet as nn
from nablanet.layers.activations import Elementwise


def _data(n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 64)), rng.integers(0, 10, n)


def test_value_and_grad_names_shapes_and_torch_parity() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10)).double()
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)).double()
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    x, y = _data()
    value, grads = nn.value_and_grad(model, nn.CrossEntropyLoss(), x, y)
    assert {k: g.shape for k, g in grads.items()} == {
        "0.weight": (32, 64), "0.bias": (32,), "2.weight": (10, 32), "2.bias": (10,),
    }
    tl = torch.nn.functional.cross_entropy(tmodel(torch.tensor(x)), torch.tensor(y))
    tl.backward()
    assert abs(value - tl.item()) <= 1e-12 * abs(value)
    for k, p in tmodel.named_parameters():
        assert rel_err(grads[k], p.grad.numpy()) <= 1e-10
    assert all(p.grad is None for p in model.parameters())  # pure: .grad untouched


def test_value_and_grad_of_a_model_that_is_one_layer_of_your_own() -> None:
    """The model's forward and VJP go through the same dispatch: a layer of the user's gets its own cache
    back (it used to get the contract's LeafCache, and a gradient of the wrong shape)."""
    class Scale(nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(np.array([1.0, 2.0, 3.0]))

        def forward(self, x, *, train=False, rng=None):  # type: ignore[no-untyped-def]
            return x * self.weight.data, x

        def vjp(self, cache, dy):  # type: ignore[no-untyped-def]
            return dy * self.weight.data, {"weight": (dy * cache).sum(axis=0)}

    x = np.random.default_rng(0).standard_normal((4, 3))
    _, grads = nn.value_and_grad(Scale(), nn.MSELoss(reduction="sum"), x, np.zeros((4, 3)))
    np.testing.assert_allclose(grads["weight"], (2 * x * np.array([1.0, 2.0, 3.0]) * x).sum(axis=0), rtol=1e-12)


def test_jacobian_of_model_matches_torch_per_sample() -> None:
    torch = pytest.importorskip("torch")
    tmodel = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Sigmoid(), torch.nn.Linear(5, 3)).double()
    model = nn.Sequential(nn.Linear(4, 5), nn.Sigmoid(), nn.Linear(5, 3)).double()
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((6, 4))
    J = nn.jacobian(model, x)
    assert J.shape == (6, 3, 4)
    for n in range(6):
        Jt = torch.autograd.functional.jacobian(tmodel, torch.tensor(x[n : n + 1]))
        assert rel_err(J[n], Jt.numpy().reshape(3, 4)) <= 1e-12


def test_jacobian_singular_values_of_linear_layer_are_weights() -> None:
    layer = nn.Linear(4, 3, dtype=np.float64)
    J = nn.jacobian(layer, np.zeros((2, 4)))
    np.testing.assert_allclose(J[0], layer.weight.data)
    sv = np.linalg.svd(layer.weight.data, compute_uv=False)
    np.testing.assert_allclose(np.linalg.svd(J[1], compute_uv=False), sv)


def test_gradcheck_passes_on_a_correct_model() -> None:
    model = nn.Sequential(nn.Linear(6, 5), nn.Softplus(), nn.Linear(5, 4), nn.LogSoftmax(dim=-1))
    x = np.random.default_rng(0).standard_normal((3, 6))
    report = nn.gradcheck(model, nn.NLLLoss(), x, np.array([0, 3, 1]))
    assert report.passed, str(report)
    assert set(report.rel_errors) == {"0.weight", "0.bias", "2.weight", "2.bias", "input"}
    assert report.max_rel_error <= 1e-6
    assert report.n_checked["0.weight"] == 30
    assert model[0].weight.dtype == np.float32  # the user's model is untouched


class _WrongTanh(Elementwise):
    """tanh with a wrong derivative (1 − y instead of 1 − y²): gradcheck must catch it."""

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 1 - y


def test_gradcheck_catches_a_wrong_vjp_and_raises_on_request() -> None:
    model = nn.Sequential(nn.Linear(3, 4), _WrongTanh(), nn.Linear(4, 2))
    x = np.random.default_rng(1).standard_normal((5, 3))
    report = nn.gradcheck(model, nn.MSELoss(), x, np.zeros((5, 2)))
    assert not report.passed
    assert "2.weight" not in report.failed  # layers above the bug are right
    assert "0.weight" in report.failed and "input" in report.failed
    with pytest.raises(nn.GradcheckError, match="gradcheck failed for"):
        nn.gradcheck(model, nn.MSELoss(), x, np.zeros((5, 2)), raise_exception=True)


def test_gradcheck_subsamples_entries() -> None:
    model = nn.Sequential(nn.Linear(20, 10))
    x = np.random.default_rng(0).standard_normal((4, 20))
    report = nn.gradcheck(model, nn.MSELoss(), x, np.zeros((4, 10)), max_entries=7)
    assert report.n_checked["0.weight"] == 7 and report.passed
    assert "0.weight" in str(report)


def test_value_and_grad_rejects_unreduced_loss() -> None:
    x, y = _data()
    with pytest.raises(ValueError, match="needs a scalar loss"):
        nn.value_and_grad(nn.Linear(64, 10), nn.CrossEntropyLoss(reduction="none"), x, y)
