"""Combinators (Residual, Parallel, Multiply, Pair): math, the flat tape, vector axes, per-sample, save/load."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import check_layer_fd, numeric_grad, rel_err

import nablanet as nn
from nablanet.layers import base, graph, kernels, sequential
from nablanet.layers.attention import MultiheadAttention
from nablanet.layers.bilinear import Bilinear
from nablanet.layers.graph import Container, Multiply, Pair, Parallel, Residual

F64 = np.float64


def _x(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.where(np.abs(x) < 1e-3, 0.5, x)


def _lin(i: int, o: int, seed: int, bias: bool = True) -> nn.Linear:
    return nn.Linear(i, o, bias=bias, dtype=F64, rng=seed)


# (name, factory, input shape) — every combinator, nested ones included, float64
CASES: list[tuple[str, Callable[[], nn.Layer], tuple[int, ...]]] = [
    ("residual_mlp", lambda: Residual(_lin(4, 6, 0), nn.Tanh(), _lin(6, 4, 1)), (3, 4)),
    ("residual_one", lambda: Residual(_lin(4, 4, 0)), (3, 4)),
    ("parallel_sum", lambda: Parallel(_lin(4, 3, 0), nn.Sequential(_lin(4, 3, 1), nn.Tanh()), combine="sum"), (3, 4)),
    ("parallel_mul3", lambda: Parallel(_lin(4, 3, 0), _lin(4, 3, 1), nn.Sequential(_lin(4, 3, 2), nn.Sigmoid()),
                                       combine="mul"), (3, 4)),
    ("parallel_concat", lambda: Parallel(_lin(4, 3, 0), _lin(4, 2, 1), nn.Tanh(), combine="concat"), (3, 4)),
    ("parallel_concat_dim1", lambda: Parallel(_lin(4, 3, 0), _lin(4, 3, 1), combine="concat", dim=1), (3, 2, 4)),
    ("multiply_glu", lambda: Multiply(nn.Sequential(_lin(4, 5, 0), nn.Sigmoid()), _lin(4, 5, 1)), (3, 4)),
    ("nested", lambda: nn.Sequential(
        _lin(4, 6, 0),
        Residual(Multiply(nn.Sequential(_lin(6, 6, 1), nn.Sigmoid()), _lin(6, 6, 2))),
        Parallel(Residual(_lin(6, 6, 3), nn.Tanh()), _lin(6, 6, 4), combine="sum"),
        _lin(6, 2, 5),
    ), (3, 4)),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("name,make,shape", CASES, ids=IDS)
def test_finite_differences_float64(name: str, make: Callable[[], nn.Layer], shape: tuple[int, ...]) -> None:
    assert check_layer_fd(make(), _x(shape)) <= 1e-6


@pytest.mark.parametrize("name,make,shape", CASES, ids=IDS)
def test_vector_axes_equal_separate_vjps(name: str, make: Callable[[], nn.Layer], shape: tuple[int, ...]) -> None:
    layer = make()
    y, cache = layer.forward(_x(shape))
    dys = np.random.default_rng(3).standard_normal((2, 3, *y.shape))
    dx, grads = layer.vjp(cache, dys)
    assert dx.shape == (2, 3, *shape)
    for a in range(2):
        for b in range(3):
            dx1, g1 = layer.vjp(cache, dys[a, b])
            np.testing.assert_allclose(dx[a, b], dx1, rtol=1e-12, atol=1e-14)
            assert set(g1) == set(grads)
            for k in g1:
                np.testing.assert_allclose(grads[k][a, b], g1[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,make,shape", CASES, ids=IDS)
def test_per_sample_grads_sum_to_batch_and_equal_singletons(
    name: str, make: Callable[[], nn.Layer], shape: tuple[int, ...]
) -> None:
    layer = make()
    x = _x(shape)
    y, cache = layer.forward(x)
    dy = np.random.default_rng(4).standard_normal(y.shape)
    _, g = layer.vjp(cache, dy)
    _, gn = layer.vjp(cache, dy, per_sample=True)
    assert set(gn) == set(g) == {k for k, _ in layer.named_parameters()}
    for k in g:
        assert gn[k].shape == (shape[0], *g[k].shape)
        np.testing.assert_allclose(gn[k].sum(0), g[k], rtol=1e-12, atol=1e-14)
    for n in range(shape[0]):  # sample n's gradient is the gradient of that sample alone
        _, c1 = layer.forward(x[n : n + 1])
        _, g1 = layer.vjp(c1, dy[n : n + 1])
        for k in g:
            np.testing.assert_allclose(gn[k][n], g1[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,make,shape", CASES, ids=IDS)
def test_need_dx_false_keeps_the_grads(name: str, make: Callable[[], nn.Layer], shape: tuple[int, ...]) -> None:
    layer = make()
    y, cache = layer.forward(_x(shape))
    dy = np.ones_like(y)
    _, g = layer.vjp(cache, dy)
    dx, g0 = layer.vjp(cache, dy, need_dx=False)
    assert dx.size == 0
    for k in g:
        np.testing.assert_array_equal(g[k], g0[k])


# -- against the same math written by hand (PyTorch where it has the pieces) --------------------------------
def _torch_parity(model: nn.Layer, tmodel: Any, torch: Any, dtype: type, tol: float, shape: tuple[int, ...]) -> None:
    model.to(dtype)
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    tmodel.to(tdt)
    model.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})
    x = _x(shape).astype(dtype)
    y, cache = model.forward(x)
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    dx, grads = model.vjp(cache, dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = tmodel(tx)
    ty.backward(torch.tensor(dy))
    assert y.dtype == dtype and dx.dtype == dtype
    assert rel_err(y, ty.detach().numpy()) <= tol
    assert rel_err(dx, tx.grad.numpy()) <= tol
    tgrads = dict(tmodel.named_parameters())
    assert set(grads) == set(tgrads)
    for k, g in grads.items():
        assert g.dtype == dtype
        assert rel_err(g, tgrads[k].grad.numpy()) <= tol, k


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_residual_mlp_matches_torch_written_by_hand(dtype: type, tol: float) -> None:
    torch = pytest.importorskip("torch")

    class TorchResidual(torch.nn.Sequential):  # y = x + f(x): the state_dict keys of ours
        def forward(self, x: Any) -> Any:
            return x + super().forward(x)

    model = nn.Sequential(_lin(4, 6, 0), Residual(_lin(6, 8, 1), nn.Tanh(), _lin(8, 6, 2)), nn.ReLU(), _lin(6, 3, 3))
    tmodel = torch.nn.Sequential(
        torch.nn.Linear(4, 6), TorchResidual(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 6)),
        torch.nn.ReLU(), torch.nn.Linear(6, 3),
    )
    _torch_parity(model, tmodel, torch, dtype, tol, (5, 4))


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("combine", ["sum", "mul", "concat"])
def test_parallel_matches_torch_written_by_hand(combine: str, dtype: type, tol: float) -> None:
    torch = pytest.importorskip("torch")

    class TorchParallel(torch.nn.ModuleList):
        def forward(self, x: Any) -> Any:
            outs = [m(x) for m in self]
            if combine == "concat":
                return torch.cat(outs, dim=-1)
            total = outs[0]
            for o in outs[1:]:
                total = total + o if combine == "sum" else total * o
            return total

    model = nn.Sequential(
        Parallel(nn.Sequential(_lin(4, 5, 0), nn.Sigmoid()), _lin(4, 5, 1), nn.Sequential(_lin(4, 5, 2), nn.Tanh()),
                 combine=combine),
        _lin(15 if combine == "concat" else 5, 2, 3),
    )
    tmodel = torch.nn.Sequential(
        TorchParallel([torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Sigmoid()), torch.nn.Linear(4, 5),
                       torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh())]),
        torch.nn.Linear(15 if combine == "concat" else 5, 2),
    )
    _torch_parity(model, tmodel, torch, dtype, tol, (6, 4))


def test_parallel_against_its_branches_by_hand() -> None:
    a, b = _lin(4, 3, 0), nn.Sequential(_lin(4, 3, 1), nn.Tanh())
    x = _x((5, 4))
    ya, ca = a.forward(x)
    yb, cb = b.forward(x)
    dy = np.random.default_rng(7).standard_normal((5, 3))
    for combine, expect, dya, dyb in [
        ("sum", ya + yb, dy, dy),
        ("mul", ya * yb, dy * yb, dy * ya),  # the notes: each factor's gradient picks up the other factor
    ]:
        y, cache = Parallel(a, b, combine=combine).forward(x)
        np.testing.assert_allclose(y, expect, rtol=1e-15)
        dx, g = Parallel(a, b, combine=combine).vjp(cache, dy)
        dxa, ga = a.vjp(ca, dya)
        dxb, gb = b.vjp(cb, dyb)
        np.testing.assert_allclose(dx, dxa + dxb, rtol=1e-13)
        np.testing.assert_allclose(g["0.weight"], ga["weight"], rtol=1e-13)
        np.testing.assert_allclose(g["1.0.weight"], gb["0.weight"], rtol=1e-13)
    y, cache = Parallel(a, b, combine="concat", dim=-1).forward(x)
    np.testing.assert_array_equal(y, np.concatenate([ya, yb], axis=-1))
    dy6 = np.random.default_rng(8).standard_normal((5, 6))
    dx, _ = Parallel(a, b, combine="concat").vjp(cache, dy6)
    np.testing.assert_allclose(dx, a.vjp(ca, dy6[:, :3])[0] + b.vjp(cb, dy6[:, 3:])[0], rtol=1e-13)


def test_multiply_hand_worked_example() -> None:
    # x = [1, 2]; branch a: Linear with W = [[1, 1]], b = 0 → a = 3; branch b: W = [[2, −1]], b = 1 → b = 1
    # y = a·b = 3;  dy = 2  →  da = dy·b = 2,  db = dy·a = 6
    # dW_a = da·x = [2, 4];  dW_b = db·x = [6, 12], db_b = 6;  dx = da·W_a + db·W_b = [2, 2] + [12, −6] = [14, −4]
    gate = Multiply(_lin(2, 1, 0, bias=False), _lin(2, 1, 1))
    gate.load_state_dict({"0.weight": [[1.0, 1.0]], "1.weight": [[2.0, -1.0]], "1.bias": [1.0]})
    y, cache = gate.forward(np.array([[1.0, 2.0]]))
    dx, g = gate.vjp(cache, np.array([[2.0]]))
    np.testing.assert_allclose(y, [[3.0]])
    np.testing.assert_allclose(g["0.weight"], [[2.0, 4.0]])
    np.testing.assert_allclose(g["1.weight"], [[6.0, 12.0]])
    np.testing.assert_allclose(g["1.bias"], [6.0])
    np.testing.assert_allclose(dx, [[14.0, -4.0]])


def test_multiply_with_a_zero_factor_still_has_the_other_gradients() -> None:
    # ∏_{j≠k} yⱼ is built from running products, never by dividing y by yₖ
    model = Parallel(nn.Identity(), nn.Identity(), nn.Identity(), combine="mul")
    x = np.array([[0.0, 2.0]])
    _, cache = model.forward(x)
    dx, _ = model.vjp(cache, np.ones_like(x))
    np.testing.assert_allclose(dx, [[0.0, 3 * 4.0]])  # d(x³)/dx = 3x²


# -- the tape --------------------------------------------------------------------------------------------
def _graph_model() -> nn.Sequential:
    return nn.Sequential(
        _lin(4, 8, 0),
        Residual(_lin(8, 8, 1), nn.Tanh()),
        Multiply(nn.Sequential(_lin(8, 8, 2), nn.Sigmoid()), _lin(8, 8, 3)),
        Parallel(_lin(8, 3, 4), Residual(_lin(8, 8, 5)), combine="concat"),
        nn.Sequential(Pair(_lin(11, 3, 6), _lin(11, 2, 7)), Bilinear(3, 2, 4, dtype=F64, rng=8)),
        nn.Tanh(),
        _lin(4, 3, 9),
    )


def _leaf_names(layer: nn.Layer, prefix: str = "") -> list[str]:
    if isinstance(layer, Container) and not isinstance(layer, MultiheadAttention):
        return [n for name, child in layer.named_children() for n in _leaf_names(child, f"{prefix}{name}.")]
    return [prefix[:-1]]


def test_backward_returns_a_flat_tape_with_every_leaf_in_forward_order() -> None:
    model = _graph_model()
    expected = ["0", "1.0", "1.1", "2.0.0", "2.0.1", "2.1", "3.0", "3.1.0", "4.0.0", "4.0.1", "4.1", "5", "6"]
    assert _leaf_names(model) == expected
    y, caches = model.forward(_x((5, 4)))
    tape = model.backward(caches, np.ones_like(y), accumulate=False)
    assert [e.name for e in tape] == expected
    assert all(not isinstance(e.layer, Container) for e in tape)
    params = dict(model.named_parameters())
    for e in tape:  # each entry's grads are its own layer's, and re-running its VJP on the entry reproduces them
        assert set(e.grads) == set(e.layer._parameters)
        _, again = e.layer.vjp(e.cache, e.dy)
        for k, g in e.grads.items():
            np.testing.assert_array_equal(again[k], g)
            assert params[f"{e.name}.{k}"] is e.layer._parameters[k]


def test_backward_accumulates_what_value_and_grad_returns() -> None:
    model = _graph_model()
    x, target = _x((6, 4)), np.array([0, 1, 2, 0, 1, 2])
    loss = nn.CrossEntropyLoss()
    value, grads = nn.value_and_grad(model, loss, x, target)
    y, caches = model.forward(x, train=True)
    v2, lcache = loss.forward(y, target)
    tape = model.backward(caches, loss.vjp(lcache))
    assert float(v2) == pytest.approx(value, rel=1e-15)
    assert len(tape) == 13
    for name, p in model.named_parameters():
        assert p.grad is not None
        np.testing.assert_allclose(p.grad, grads[name], rtol=1e-12, atol=1e-15)


def test_whole_graph_model_finite_differences() -> None:
    # Sequential(Pair, Bilinear) inside, tuple gradients included
    assert check_layer_fd(_graph_model(), _x((3, 4))) <= 1e-6


def test_the_container_protocol_has_one_home() -> None:
    # graph.py, sequential.py and nablanet re-export base.py's classes; none holds a copy
    assert Container is base.Container and nn.Container is base.Container
    assert graph.backward_child is base.backward_child
    assert sequential.TapeEntry is base.TapeEntry and nn.layers.TapeEntry is base.TapeEntry
    assert issubclass(MultiheadAttention, base.Container) and issubclass(nn.Sequential, base.Container)


def test_a_users_container_runs_its_child_with_backward_child() -> None:
    class Tripled(Container):  # y = 3 f(x), dx = J_fᵀ (3 dy)
        def __init__(self, f: nn.Layer) -> None:
            super().__init__()
            self.f = f

        def forward(self, x: Any, *, train: bool = False, rng: Any = None) -> tuple[Any, Any]:
            y, cache = self.f.forward(x, train=train, rng=rng)
            return 3.0 * y, cache

        def _backward(
            self, cache: Any, dy: Any, per_sample: bool, prefix: str, tape: list, need_dx: bool = True
        ) -> Any:
            return base.backward_child(self.f, "f", cache, 3.0 * dy, per_sample, prefix, tape, need_dx)

    model = nn.Sequential(Tripled(_lin(4, 3, 0)), nn.Tanh())
    assert check_layer_fd(model, _x((3, 4))) <= 1e-6
    y, caches = model.forward(_x((3, 4)))
    assert [e.name for e in model.backward(caches, np.ones_like(y))] == ["0.f", "1"]
    assert list(model.state_dict()) == ["0.f.weight", "0.f.bias"]


class _Scale(nn.Layer):
    """y = 2x, a leaf layer of this test only, whose kernels count their calls."""

    def forward(self, x: Any, *, train: bool = False, rng: Any = None) -> tuple[Any, None]:
        return 2.0 * x, None

    def vjp(self, cache: Any, dy: Any, *, per_sample: bool = False, need_dx: bool = True) -> tuple[Any, dict]:
        return 2.0 * dy, {}


def test_every_container_runs_its_leaves_through_the_kernels_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"forward": 0, "vjp": 0}

    def fast_forward(layer: _Scale, x: Any, *, train: bool, rng: Any) -> tuple[Any, None]:
        calls["forward"] += 1
        return layer.forward(x, train=train, rng=rng)

    def fast_vjp(layer: _Scale, cache: Any, dy: Any, *, per_sample: bool, need_dx: bool) -> tuple[Any, dict]:
        calls["vjp"] += 1
        return layer.vjp(cache, dy, per_sample=per_sample, need_dx=need_dx)

    monkeypatch.setitem(kernels._FORWARD, _Scale, fast_forward)
    monkeypatch.setitem(kernels._VJP, _Scale, fast_vjp)
    model = nn.Sequential(_Scale(), Residual(_Scale(), nn.Tanh()), Multiply(_Scale(), nn.Sequential(_Scale())),
                          nn.Sequential(Pair(_Scale(), _Scale()), Bilinear(3, 3, 2, dtype=F64, rng=0)))
    y, caches = model.forward(_x((4, 3)))
    assert calls == {"forward": 6, "vjp": 0}
    tape = model.backward(caches, np.ones_like(y))
    assert calls == {"forward": 6, "vjp": 6}
    assert [e.name for e in tape] == ["0", "1.0", "1.1", "2.0", "2.1.0", "3.0.0", "3.0.1", "3.1"]
    _Scale().backward(None, np.ones(3))  # a layer on its own goes through the dispatch too
    assert calls["vjp"] == 7


def test_a_container_repr_puts_its_options_above_its_children() -> None:
    class Gate(Container):  # a user's container with options, printed as PyTorch prints one
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(2, 2)

        def extra_repr(self) -> str:
            return "gain=2"

    assert repr(Gate()) == "Gate(\n  gain=2\n  (proj): Linear(in_features=2, out_features=2, bias=True)\n)"
    assert repr(Multiply(nn.ReLU(), nn.Tanh())) == "Multiply(\n  (0): ReLU()\n  (1): Tanh()\n)"


def test_state_dict_keys_are_the_tape_names() -> None:
    model = _graph_model()
    assert list(model.state_dict())[:6] == ["0.weight", "0.bias", "1.0.weight", "1.0.bias", "2.0.0.weight",
                                            "2.0.0.bias"]
    assert "4.1.weight" in model.state_dict()
    assert repr(Parallel(nn.ReLU(), nn.Tanh(), combine="concat")).startswith("Parallel(\n  combine='concat', dim=-1")


def test_training_mode_and_rng_reach_the_branches() -> None:
    model = Parallel(nn.Dropout(0.5), nn.Dropout(0.5), combine="concat")
    x = np.ones((4, 6))
    y1, _ = model.forward(x, train=True, rng=np.random.default_rng(0))
    y2, _ = model.forward(x, train=True, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(y1[:, :6], y1[:, 6:])  # one generator, drawn in turn: different masks
    model.eval()
    assert all(not m.training for m in model.children())
    np.testing.assert_array_equal(model(x), np.ones((4, 12)))


# -- save / load -----------------------------------------------------------------------------------------
def test_save_load_round_trip_of_a_graph_model(tmp_path: Any) -> None:
    model = nn.Sequential(
        nn.Linear(4, 8, rng=0),
        Residual(nn.Linear(8, 8, rng=1), nn.Tanh()),
        Multiply(nn.Sequential(nn.Linear(8, 8, rng=2), nn.Sigmoid()), nn.Linear(8, 8, rng=3)),
        Parallel(nn.Linear(8, 3, rng=4), nn.Linear(8, 5, rng=5), combine="concat", dim=-1),
        nn.Sequential(Pair(nn.Linear(8, 3, rng=6), nn.Linear(8, 2, rng=7)), Bilinear(3, 2, 8, rng=8)),
        nn.Flatten(0, 0),
    )
    path = nn.save(model, tmp_path / "graph.npz")
    loaded = nn.load(path)
    assert repr(loaded) == repr(model)
    assert list(loaded.state_dict()) == list(model.state_dict())
    x = _x((5, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))
    with zipfile.ZipFile(path) as z:
        meta = json.loads(np.load(path)["__meta__"].tobytes())
        assert all(name.endswith(".npy") for name in z.namelist())
    assert meta["model"]["layers"][1] == {"class": "Residual", "config": {}, "children": [
        {"class": "Linear", "config": {"in_features": 8, "out_features": 8, "bias": True, "dtype": "float32"}},
        {"class": "Tanh", "config": {}}]}


def test_save_load_round_trip_with_attention(tmp_path: Any) -> None:
    model = nn.Sequential(
        nn.Linear(3, 8, dtype=F64, rng=0),
        Residual(MultiheadAttention(8, 2, batch_first=True, dtype=F64, rng=1)),
        Residual(MultiheadAttention(8, 4, bias=False, batch_first=True, dtype=F64, rng=2)),
        nn.Linear(8, 2, dtype=F64, rng=3),
    )
    for p in model.parameters():  # make the zero-initialized biases non-trivial
        p.data += 0.01
    loaded = nn.load(nn.save(model, tmp_path / "attn.npz"))
    assert repr(loaded) == repr(model)
    x = _x((2, 5, 3))
    np.testing.assert_array_equal(loaded(x), model(x))
    assert loaded[1][0].num_heads == 2 and loaded[2][0].in_proj_bias is None
    assert all(p.dtype == F64 for p in loaded.parameters())


def test_old_format_sequential_file_still_loads(tmp_path: Any) -> None:
    # a plain Sequential is still written in the original format: {"class": "Sequential", "layers": [...]}
    model = nn.Sequential(nn.Linear(4, 5, rng=0), nn.ReLU(), nn.Sequential(nn.Linear(5, 2, rng=1), nn.Tanh()))
    path = nn.save(model, tmp_path / "old.npz")
    meta = json.loads(np.load(path)["__meta__"].tobytes())
    assert meta["version"] == 1
    assert meta["model"] == {"class": "Sequential", "layers": [
        {"class": "Linear", "config": {"in_features": 4, "out_features": 5, "bias": True, "dtype": "float32"}},
        {"class": "ReLU", "config": {}},
        {"class": "Sequential", "layers": [
            {"class": "Linear", "config": {"in_features": 5, "out_features": 2, "bias": True, "dtype": "float32"}},
            {"class": "Tanh", "config": {}}]},
    ]}
    assert "children" not in json.dumps(meta)
    loaded = nn.load(path)
    x = _x((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))


def test_load_refuses_children_on_a_leaf(tmp_path: Any) -> None:
    meta = json.dumps({"format": "nablanet-model", "version": 1,
                       "model": {"class": "Linear", "config": {"in_features": 2, "out_features": 2}, "children": []}})
    np.savez(tmp_path / "odd.npz", __meta__=np.frombuffer(meta.encode(), dtype=np.uint8))
    with pytest.raises(ValueError, match="not a container that takes them"):
        nn.load(tmp_path / "odd.npz")


def test_save_refuses_a_user_composite_layer(tmp_path: Any) -> None:
    class Mine(nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(2, 2)

    with pytest.raises(TypeError, match="not a nablanet container"):
        nn.save(Mine(), tmp_path / "mine.npz")


# -- errors ----------------------------------------------------------------------------------------------
def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match=r"combine='max'.*expected one of"):
        Parallel(nn.ReLU(), combine="max")
    with pytest.raises(TypeError, match="argument 1 is a type"):
        Parallel(nn.ReLU(), nn.Tanh)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2"):
        Multiply(nn.ReLU())
    with pytest.raises(ValueError, match="at least 1"):
        Residual()
    with pytest.raises(TypeError, match="dim must be an int"):
        Parallel(nn.ReLU(), combine="concat", dim=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"maps x of shape \(2, 4\) to \(2, 3\).*keep the shape"):
        Residual(nn.Linear(4, 3)).forward(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"shapes \[\(2, 3\), \(2, 2\)\] differ"):
        Parallel(nn.Linear(4, 3), nn.Linear(4, 2), combine="mul").forward(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="differ off the concatenation axis"):
        Parallel(nn.Linear(4, 3), nn.Linear(4, 2), combine="concat", dim=0).forward(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"dim must be in \[-2, 1\]"):
        Parallel(nn.ReLU(), combine="concat", dim=2).forward(np.zeros((2, 4)))
    pair = Pair(nn.ReLU(), nn.Tanh())
    y, cache = pair.forward(np.ones((2, 3)))
    assert isinstance(y, tuple) and len(y) == 2
    with pytest.raises(ValueError, match="expects dy as a tuple of 2 arrays"):
        pair.vjp(cache, np.ones((2, 3)))
    with pytest.raises(IndexError, match="has 2 children"):
        pair[2]


def test_pair_vjp_adds_both_branch_gradients() -> None:
    a, b = _lin(3, 2, 0), nn.Tanh()
    x = _x((4, 3))
    (ya, yb), cache = Pair(a, b).forward(x)
    dya, dyb = np.ones_like(ya), np.full_like(yb, 2.0)
    dx, g = Pair(a, b).vjp(cache, (dya, dyb))
    np.testing.assert_allclose(dx, dya @ a.weight.data + dyb * (1 - np.tanh(x) ** 2), rtol=1e-14)
    assert set(g) == {"0.weight", "0.bias"}

    def f() -> float:
        ya2, yb2 = Pair(a, b).forward(x)[0]
        return float(np.sum(ya2 * dya) + np.sum(yb2 * dyb))

    assert rel_err(dx, numeric_grad(f, x)) <= 1e-6
