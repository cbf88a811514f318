"""Layer Jacobians, the chain rule over them, and their singular values, against PyTorch."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pytest
from helpers import rel_err

import nablanet as nn
from nablanet.lab.jacobian import jacobian, jacobian_singular_values, layer_jacobians

jacobian_module = importlib.import_module("nablanet.lab.jacobian")  # the package attribute is the function


def _mlp_pair() -> tuple[nn.Sequential, Any]:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(
        torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 6), torch.nn.Sigmoid(),
        torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Softplus()), torch.nn.LogSoftmax(dim=-1),
    ).double()
    model = nn.Sequential(
        nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.Sigmoid(),
        nn.Sequential(nn.Linear(6, 4), nn.Softplus()), nn.LogSoftmax(dim=-1),
    ).double()
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    return model, tmodel


def _conv_pair() -> tuple[nn.Sequential, Any]:
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    # x (N, 2, 8, 8) → conv (N, 3, 8, 8) → pool (N, 3, 4, 4) → ReLU → conv (N, 4, 2, 2) → tanh → 16 → 5
    tmodel = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.MaxPool2d(2), torch.nn.ReLU(), torch.nn.Conv2d(3, 4, 3),
        torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(16, 5),
    ).double()
    model = _conv_model()
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    return model, tmodel


def _conv_model() -> nn.Sequential:
    """_conv_pair's architecture in nablanet alone, with its own seeded weights (no PyTorch needed)."""
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, rng=1), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(3, 4, 3, rng=2),
        nn.Tanh(), nn.Flatten(), nn.Linear(16, 5, rng=3),
    ).double()


def _torch_layer_jacobians(tmodel: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """torch.func.jacrev of every leaf module at the input it receives, per sample: (N, out, in)."""
    torch = pytest.importorskip("torch")

    leaves = [(name, m) for name, m in tmodel.named_modules() if name and not list(m.children())]
    h = torch.tensor(x)
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for name, m in leaves:
            per_sample = [
                torch.func.jacrev(lambda z, m=m: m(z[None])[0])(h[n]).reshape(-1, h[n].numel()) for n in range(len(h))
            ]
            out[name] = torch.stack(per_sample).numpy()
            h = m(h)
    return out


@pytest.mark.parametrize("make", [_mlp_pair, _conv_pair], ids=["mlp", "conv"])
def test_layer_jacobians_match_torch_jacrev(make: Any) -> None:
    model, tmodel = make()
    shape = (3, 5) if make is _mlp_pair else (3, 2, 8, 8)
    x = np.random.default_rng(0).standard_normal(shape)
    ours = layer_jacobians(model, x)
    theirs = _torch_layer_jacobians(tmodel, x)
    assert list(ours) == list(theirs)  # the tape's names, nested ones included ("4.0")
    for name, j in ours.items():
        assert j.shape == theirs[name].shape, name
        assert rel_err(j, theirs[name]) <= 1e-10, name


@pytest.mark.parametrize("make", [_mlp_pair, _conv_pair], ids=["mlp", "conv"])
def test_model_jacobian_is_the_product_of_layer_jacobians(make: Any) -> None:
    model, tmodel = make()
    shape = (4, 5) if make is _mlp_pair else (4, 2, 8, 8)
    x = np.random.default_rng(2).standard_normal(shape)
    layers = list(layer_jacobians(model, x).values())
    product = layers[0]
    for j in layers[1:]:
        product = j @ product  # Jₙ = J⁽ᴸ⁾ₙ ⋯ J⁽¹⁾ₙ
    full = jacobian(model, x)
    assert rel_err(product, full) <= 1e-12
    torch = pytest.importorskip("torch")

    for n in range(len(x)):
        jt = torch.autograd.functional.jacobian(tmodel, torch.tensor(x[n : n + 1])).numpy()
        assert rel_err(full[n], jt.reshape(full.shape[1:])) <= 1e-10


def test_singular_values_match_svd_of_torch_jacobian() -> None:
    torch = pytest.importorskip("torch")

    model, tmodel = _conv_pair()
    x = np.random.default_rng(3).standard_normal((3, 2, 8, 8))
    sv = jacobian_singular_values(model, x)
    assert isinstance(sv, np.ndarray) and sv.shape == (3, 5)  # min(out = 5, in = 128)
    for n in range(3):
        jt = torch.func.jacrev(lambda z: tmodel(z[None])[0])(torch.tensor(x[n])).reshape(5, -1).detach().numpy()
        assert rel_err(sv[n], np.linalg.svd(jt, compute_uv=False)) <= 1e-10
    per_layer = jacobian_singular_values(model, x, per_layer=True)
    assert isinstance(per_layer, dict)
    assert per_layer["6"].shape == (3, 5) and per_layer["0"].shape == (3, 128)  # Linear 16→5; conv 192 out, 128 in
    jl = layer_jacobians(model, x)
    for name, s in per_layer.items():
        assert rel_err(s, np.linalg.svd(jl[name], compute_uv=False)) <= 1e-12


def _orthogonal(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Orthonormal rows (rows ≤ cols) or columns (rows ≥ cols), from the QR of a Gaussian matrix."""
    q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    q = q * np.sign(np.diag(r))
    return q if rows >= cols else q.T


def test_orthogonal_linear_layers_have_unit_singular_values() -> None:
    rng = np.random.default_rng(4)
    model = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 4)).double()
    for layer, (o, i) in zip(model, [(6, 6), (6, 6), (4, 6)], strict=True):
        layer.weight.data[...] = _orthogonal(o, i, rng)
    x = rng.standard_normal((5, 6))
    for name, s in jacobian_singular_values(model, x, per_layer=True).items():
        np.testing.assert_allclose(s, 1.0, rtol=0, atol=1e-13, err_msg=name)
    # the product of orthogonal maps (and a row-orthonormal one) is again an isometry on its row space
    np.testing.assert_allclose(jacobian_singular_values(model, x), 1.0, rtol=0, atol=1e-13)


def test_deep_tanh_product_spreads_singular_values() -> None:
    """Glorot & Bengio's picture: the product's singular values spread out with depth."""
    rng = np.random.default_rng(5)
    layers: list[nn.Layer] = []
    for _ in range(8):
        lin = nn.Linear(10, 10, dtype=np.float64, rng=rng)
        lin.weight.data[...] = 2.5 * rng.standard_normal((10, 10)) / np.sqrt(10)  # too large a gain
        layers += [lin, nn.Tanh()]
    model = nn.Sequential(*layers)
    x = rng.standard_normal((4, 10))
    s = jacobian_singular_values(model, x)
    assert isinstance(s, np.ndarray)
    assert np.all(s[:, 0] / s[:, -1] > 1e3)  # condition number of the product
    assert np.all(s[:, :-1] >= s[:, 1:])  # descending


def test_single_layer_gets_the_empty_name_and_dropout_uses_the_forward_mask() -> None:
    x = np.random.default_rng(6).standard_normal((4, 9))
    layer = nn.Dropout(0.5)
    j = layer_jacobians(layer, x, train=True, rng=7)
    assert list(j) == [""]
    y, _ = layer.forward(x, train=True, rng=7)
    diag = np.diagonal(j[""], axis1=1, axis2=2)
    np.testing.assert_array_equal(diag * x, y)  # the same mask the forward drew
    assert set(np.unique(diag)) <= {0.0, 2.0}
    assert np.count_nonzero(j[""] - diag[:, :, None] * np.eye(9)) == 0


def test_chunked_basis_gives_the_same_jacobian(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _conv_model()
    x = np.random.default_rng(8).standard_normal((2, 2, 8, 8))
    whole = layer_jacobians(model, x)
    monkeypatch.setattr(jacobian_module, "_CHUNK_ENTRIES", 1)  # one basis vector per VJP call
    for name, j in layer_jacobians(model, x).items():
        np.testing.assert_array_equal(j, whole[name], err_msg=name)


def test_too_large_a_jacobian_raises_with_the_numbers() -> None:
    model = nn.Sequential(nn.Linear(50, 40), nn.ReLU())
    x = np.zeros((10, 50), dtype=np.float32)
    with pytest.raises(ValueError, match=r"layer '1' \(ReLU\).* 10·40·40 = 16,000 entries.*max_entries=1,000"):
        layer_jacobians(model, x, max_entries=1000)  # the walk starts at the output
    with pytest.raises(ValueError, match=r"layer '0' \(Linear\).* 10·40·50 = 20,000 entries"):
        layer_jacobians(model, x, max_entries=16_000)
    with pytest.raises(ValueError, match="max_entries"):
        jacobian_singular_values(model, x, max_entries=1000)
    with pytest.raises(ValueError, match="positive int"):
        layer_jacobians(model, x, max_entries=0)
    assert layer_jacobians(model, x, max_entries=20_000)["0"].shape == (10, 40, 50)


def test_batch_norm_with_batch_statistics_is_refused() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).double()
    x = np.random.default_rng(9).standard_normal((5, 3))
    with pytest.raises(ValueError, match="batch statistics"):
        layer_jacobians(model, x, train=True)
    with pytest.raises(ValueError, match="batch statistics"):
        jacobian(model, x, train=True)
    assert layer_jacobians(model, x)["1"].shape == (5, 4, 4)  # eval mode: running statistics, per-sample


def test_jacobian_needs_a_batch() -> None:
    with pytest.raises(ValueError, match="batch"):
        layer_jacobians(nn.Sequential(nn.Tanh()), np.float64(1.0))
