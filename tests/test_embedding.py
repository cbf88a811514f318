"""Embedding: PyTorch parity, finite differences, padding_idx, per-sample gradients, index checks, save/load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import numeric_grad, rel_err

import nablanet as nn
from nablanet.layers.base import NO_DX
from nablanet.layers.embedding import Embedding
from nablanet.layers.recurrent import GRU, LastStep

E, D = 7, 3


def indices(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    idx = np.random.default_rng(seed).integers(0, E, shape)
    idx.reshape(-1)[:2] = 2  # a repeated index: its gradient rows must add up
    return idx


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)], ids=["f64", "f32"])
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
@pytest.mark.parametrize("shape", [(5,), (4, 6), (3, 2, 2)])
def test_torch_parity(shape: tuple[int, ...], padding_idx: int | None, dtype: type, tol: float) -> None:
    torch = pytest.importorskip("torch")
    layer = Embedding(E, D, padding_idx=padding_idx, dtype=dtype, rng=0)
    temb = torch.nn.Embedding(E, D, padding_idx=padding_idx).to(torch.float64 if dtype == np.float64 else torch.float32)
    assert layer.padding_idx == temb.padding_idx
    layer.load_state_dict({k: v.detach().numpy() for k, v in temb.state_dict().items()})
    idx = indices(shape)
    y, cache = layer.forward(idx)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    dx, grads = layer.vjp(cache, dy)
    ty = temb(torch.from_numpy(idx))
    ty.backward(torch.from_numpy(dy))
    assert y.shape == (*shape, D) and y.dtype == dtype
    assert rel_err(y, ty.detach().numpy()) <= tol
    assert dx is NO_DX  # no gradient with respect to integer indices
    assert grads["weight"].dtype == dtype
    assert rel_err(grads["weight"], temb.weight.grad.numpy()) <= tol


def test_finite_differences_float64() -> None:
    layer = Embedding(E, D, padding_idx=4, dtype=np.float64, rng=0)
    idx = indices((3, 5))
    idx[0, 0] = 4
    y, cache = layer.forward(idx)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    _, grads = layer.vjp(cache, dy)

    def f() -> float:
        return float(np.sum(layer.forward(idx)[0] * dy))

    fd = numeric_grad(f, layer.weight.data)
    fd[4] = 0.0  # the padding row is looked up but, as in PyTorch, receives no gradient
    assert rel_err(grads["weight"], fd) <= 1e-6
    np.testing.assert_array_equal(grads["weight"][4], 0.0)


def test_init_and_padding_row() -> None:
    layer = Embedding(2000, 50, padding_idx=3, rng=0)
    w = layer.weight.data
    assert w.dtype == np.float32 and w.shape == (2000, 50)
    np.testing.assert_array_equal(w[3], 0.0)
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1.0) < 0.01  # N(0, 1)
    np.testing.assert_array_equal(Embedding(2000, 50, padding_idx=3, rng=0).weight.data, w)


def test_vector_axes_and_per_sample() -> None:
    layer = Embedding(E, D, padding_idx=0, dtype=np.float64, rng=0)
    idx = indices((4, 5))
    y, cache = layer.forward(idx)
    dys = np.random.default_rng(3).standard_normal((2, 3, *y.shape))
    _, g = layer.vjp(cache, dys)
    assert g["weight"].shape == (2, 3, E, D)
    for a in range(2):
        for b in range(3):
            np.testing.assert_allclose(g["weight"][a, b], layer.vjp(cache, dys[a, b])[1]["weight"], rtol=1e-12)
    _, gn = layer.vjp(cache, dys[0, 0], per_sample=True)
    assert gn["weight"].shape == (4, E, D)
    np.testing.assert_allclose(gn["weight"].sum(0), layer.vjp(cache, dys[0, 0])[1]["weight"], rtol=1e-12)
    for n in range(4):  # a batch's per-sample gradients equal its singletons' gradients
        _, c1 = layer.forward(idx[n:n + 1])
        np.testing.assert_allclose(gn["weight"][n], layer.vjp(c1, dys[0, 0, n:n + 1])[1]["weight"], rtol=1e-12)
    _, gnv = layer.vjp(cache, dys, per_sample=True)
    assert gnv["weight"].shape == (2, 3, 4, E, D)
    np.testing.assert_allclose(gnv["weight"][1, 2], layer.vjp(cache, dys[1, 2], per_sample=True)[1]["weight"])


def test_integer_input_passes_through_call_and_sequential() -> None:
    torch = pytest.importorskip("torch")
    L = 6
    model = nn.Sequential(Embedding(E, D, rng=0), GRU(D, 4, batch_first=True, rng=1), LastStep(),
                          nn.Linear(4, 2, rng=2)).double()
    idx = indices((3, L))
    y, caches = model.forward(idx)  # Sequential.forward hands the integer array to Embedding unchanged
    assert caches[0].idx.dtype == np.int64
    np.testing.assert_array_equal(model(idx), y)  # layer(x) converts to floats; whole numbers are accepted
    np.testing.assert_array_equal(model[0](idx), model[0](idx.astype(np.float32)))
    dy = np.random.default_rng(4).standard_normal(y.shape)
    dx, grads = model.vjp(caches, dy)
    assert dx is NO_DX

    temb, tgru, tlin = torch.nn.Embedding(E, D), torch.nn.GRU(D, 4, batch_first=True), torch.nn.Linear(4, 2)
    sd = model.state_dict()
    for prefix, mod in (("0.", temb), ("1.", tgru), ("3.", tlin)):
        mod.double().load_state_dict({k[2:]: torch.from_numpy(v) for k, v in sd.items() if k.startswith(prefix)})
    ty = tlin(tgru(temb(torch.from_numpy(idx)))[0][:, -1])
    ty.backward(torch.from_numpy(dy))
    assert rel_err(y, ty.detach().numpy()) <= 1e-10
    assert rel_err(grads["0.weight"], temb.weight.grad.numpy()) <= 1e-10
    assert rel_err(grads["1.weight_hh_l0"], tgru.weight_hh_l0.grad.numpy()) <= 1e-10
    # and nn.fit, which converts inputs to floats, trains it
    rng = np.random.default_rng(5)
    xs = rng.integers(0, E, (96, L))
    ys = (xs[:, -1] % 2).astype(np.int64)
    hist = nn.fit(model, nn.CrossEntropyLoss(), nn.optim.Adam(model.parameters(), lr=0.05), train=(xs, ys),
                  epochs=10, batch_size=32)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = nn.Sequential(Embedding(E, D, padding_idx=1, dtype=np.float64, rng=0), nn.Flatten(), nn.Linear(4 * D, 2))
    loaded = nn.load(nn.save(model, tmp_path / "emb.npz"))
    assert repr(loaded) == repr(model) and "padding_idx=1" in repr(loaded)
    idx = indices((3, 4))
    np.testing.assert_array_equal(loaded(idx), model(idx))
    emb = loaded[0]
    assert isinstance(emb, Embedding) and emb.padding_idx == 1 and emb.dtype == np.float64


@pytest.mark.parametrize(
    "bad,error,match",
    [
        (np.array([[0, E]]), IndexError, r"index 7.*\[0, 6\]"),
        (np.array([[-1, 0]]), IndexError, "index -1"),
        (np.array([[0.5, 1.0]]), TypeError, "non-integer"),
        (np.array([[np.nan, 1.0]]), ValueError, "NaN"),
        (np.array([[True, False]]), TypeError, "boolean"),
        (np.array(["a", "b"]), TypeError, "dtype"),
        (np.int64(3), ValueError, "scalar"),
    ],
    ids=["too_large", "negative", "fractional", "nan", "bool", "strings", "scalar"],
)
def test_clear_errors_for_bad_indices(bad: Any, error: type[Exception], match: str) -> None:
    layer = Embedding(E, D)
    with pytest.raises(error, match=match):
        layer.forward(bad)
    with pytest.raises(error, match=match):
        layer(bad)


def test_clear_errors_for_bad_arguments() -> None:
    with pytest.raises(NotImplementedError, match="max_norm"):
        Embedding(E, D, max_norm=1.0)
    with pytest.raises(ValueError, match="padding_idx"):
        Embedding(E, D, padding_idx=E)
    with pytest.raises(ValueError, match="padding_idx"):
        Embedding(E, D, padding_idx=-E - 1)
    with pytest.raises(ValueError, match="num_embeddings"):
        Embedding(0, D)
    with pytest.raises(ValueError, match="embedding_dim"):
        Embedding(E, 2.5)  # type: ignore[arg-type]
