"""BatchNorm1d, BatchNorm2d, LayerNorm: finite differences, PyTorch parity (running statistics too),
vector axes, per-sample gradients, errors, dtype conversion, state_dict compatibility."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import check_layer_fd, rel_err

import nablanet as nn
from nablanet.layers.base import NO_DX
from nablanet.layers.normalization import BatchNorm1d, BatchNorm2d, LayerNorm

F64 = np.float64


def _input(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    return 2.0 * np.random.default_rng(seed).standard_normal(shape) + 0.5


def _randomize(layer: nn.Layer, seed: int = 7) -> nn.Layer:
    """Non-trivial parameters and running statistics (γ away from 0, running_var positive)."""
    rng = np.random.default_rng(seed)
    for name, p in layer.named_parameters():
        p.data[...] = rng.uniform(0.5, 1.5, p.shape) if name == "weight" else rng.standard_normal(p.shape)
    for name, b in layer.named_buffers():
        if name == "running_mean":
            b[...] = rng.standard_normal(b.shape)
        elif name == "running_var":
            b[...] = rng.uniform(0.5, 2.0, b.shape)
    return layer


# (name, factory taking a dtype, input shape)
FD_CASES: list[tuple[str, Callable[[Any], nn.Layer], tuple[int, ...]]] = [
    ("bn1d_nc", lambda dt: BatchNorm1d(3, dtype=dt), (6, 3)),
    ("bn1d_ncl", lambda dt: BatchNorm1d(3, dtype=dt), (4, 3, 5)),
    ("bn1d_noaffine", lambda dt: BatchNorm1d(3, affine=False, dtype=dt), (4, 3, 2)),
    ("bn1d_nostats", lambda dt: BatchNorm1d(3, track_running_stats=False, dtype=dt), (5, 3)),
    ("bn2d", lambda dt: BatchNorm2d(2, dtype=dt), (3, 2, 3, 4)),
    ("bn2d_noaffine", lambda dt: BatchNorm2d(2, affine=False, dtype=dt), (2, 2, 3, 3)),
    ("bn2d_nobias", lambda dt: BatchNorm2d(2, bias=False, dtype=dt), (2, 2, 3, 3)),
    ("ln_1axis", lambda dt: LayerNorm(5, dtype=dt), (4, 5)),
    ("ln_1axis_3d", lambda dt: LayerNorm(4, dtype=dt), (2, 3, 4)),
    ("ln_2axes", lambda dt: LayerNorm((3, 4), dtype=dt), (2, 3, 4)),
    ("ln_noaffine", lambda dt: LayerNorm((3, 4), elementwise_affine=False, dtype=dt), (2, 3, 4)),
    ("ln_nobias", lambda dt: LayerNorm(5, bias=False, dtype=dt), (3, 5)),
]
FD_IDS = [c[0] for c in FD_CASES]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name,make,shape", FD_CASES, ids=FD_IDS)
def test_finite_differences_float64(
    name: str, make: Callable[[Any], nn.Layer], shape: tuple[int, ...], train: bool
) -> None:
    layer = _randomize(make(F64))
    assert check_layer_fd(layer, _input(shape), train=train) <= 1e-6


# (name, ours(dtype), torch(torch module), input shape)
BN_CASES: list[tuple[str, Callable[[Any], nn.Layer], Callable[[Any], Any], tuple[int, ...]]] = [
    ("bn1d_nc", lambda dt: BatchNorm1d(3, dtype=dt), lambda t: t.nn.BatchNorm1d(3), (6, 3)),
    ("bn1d_ncl", lambda dt: BatchNorm1d(3, dtype=dt), lambda t: t.nn.BatchNorm1d(3), (4, 3, 5)),
    ("bn1d_cma", lambda dt: BatchNorm1d(3, momentum=None, dtype=dt), lambda t: t.nn.BatchNorm1d(3, momentum=None),
     (5, 3, 2)),
    ("bn1d_m03_eps", lambda dt: BatchNorm1d(4, eps=1e-3, momentum=0.3, dtype=dt),
     lambda t: t.nn.BatchNorm1d(4, eps=1e-3, momentum=0.3), (3, 4)),
    ("bn1d_noaffine", lambda dt: BatchNorm1d(3, affine=False, dtype=dt),
     lambda t: t.nn.BatchNorm1d(3, affine=False), (4, 3, 2)),
    ("bn1d_nostats", lambda dt: BatchNorm1d(3, track_running_stats=False, dtype=dt),
     lambda t: t.nn.BatchNorm1d(3, track_running_stats=False), (5, 3)),
    ("bn2d", lambda dt: BatchNorm2d(3, dtype=dt), lambda t: t.nn.BatchNorm2d(3), (4, 3, 5, 6)),
    ("bn2d_nobias", lambda dt: BatchNorm2d(3, bias=False, dtype=dt), lambda t: t.nn.BatchNorm2d(3, bias=False),
     (3, 3, 2, 4)),
    ("bn2d_cma", lambda dt: BatchNorm2d(2, momentum=None, dtype=dt), lambda t: t.nn.BatchNorm2d(2, momentum=None),
     (2, 2, 3, 3)),
]
BN_IDS = [c[0] for c in BN_CASES]
DTYPES = [(np.float64, 1e-10), (np.float32, 1e-5)]


def _torch_pair(torch: Any, make: Callable[[Any], nn.Layer], make_torch: Callable[[Any], Any], dtype: type,
                ) -> tuple[nn.Layer, Any]:
    torch.manual_seed(0)
    tlayer = make_torch(torch).to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():  # non-trivial affine parameters and running statistics
        for name, p in tlayer.named_parameters():
            p.uniform_(0.5, 1.5) if name == "weight" else p.normal_()
        for name, b in tlayer.named_buffers():
            if name == "running_mean":
                b.normal_()
            elif name == "running_var":
                b.uniform_(0.5, 2.0)
    layer = make(dtype)
    layer.load_state_dict({k: v.detach().numpy() for k, v in tlayer.state_dict().items()})
    return layer, tlayer


def _compare_step(torch: Any, layer: nn.Layer, tlayer: Any, x: np.ndarray, train: bool, seed: int) -> float:
    """One forward + VJP in both libraries; the worst relative error over y, dx, grads and buffers."""
    tlayer.train(train)
    tlayer.zero_grad()
    y, cache = layer.forward(x, train=train)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    dx, grads = layer.vjp(cache, dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = tlayer(tx)
    ty.backward(torch.tensor(dy))
    assert y.dtype == x.dtype and dx.dtype == x.dtype
    errs = [rel_err(y, ty.detach().numpy()), rel_err(dx, tx.grad.numpy())]
    tparams = dict(tlayer.named_parameters())
    assert set(grads) == set(tparams)
    for k, g in grads.items():
        assert g.dtype == x.dtype and g.shape == tparams[k].shape
        errs.append(rel_err(g, tparams[k].grad.numpy()))
    tbufs = dict(tlayer.named_buffers())
    assert set(dict(layer.named_buffers())) == set(tbufs)
    for k, b in layer.named_buffers():
        if k == "num_batches_tracked":
            assert b.dtype == np.int64 and b.shape == () and int(b) == int(tbufs[k])
        else:
            assert b.dtype == x.dtype
            errs.append(rel_err(b, tbufs[k].numpy()))
    return max(errs)


@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name,make,make_torch,shape", BN_CASES, ids=BN_IDS)
def test_batchnorm_torch_parity_training_steps_then_eval(
    name: str, make: Callable[[Any], nn.Layer], make_torch: Callable[[Any], Any], shape: tuple[int, ...],
    dtype: type, tol: float,
) -> None:
    torch = pytest.importorskip("torch")
    layer, tlayer = _torch_pair(torch, make, make_torch, dtype)
    assert list(layer.state_dict()) == list(tlayer.state_dict())
    for step in range(4):  # the running statistics follow PyTorch's step after step
        x = _input(shape, seed=10 + step).astype(dtype)
        assert _compare_step(torch, layer, tlayer, x, True, seed=step) <= tol
    if "nostats" not in name:
        assert int(layer.state_dict()["num_batches_tracked"]) == 4
    for step in range(2):  # eval mode: running statistics, left unchanged
        x = _input(shape, seed=20 + step).astype(dtype)
        before = layer.state_dict()
        assert _compare_step(torch, layer, tlayer, x, False, seed=5 + step) <= tol
        for k, v in layer.state_dict().items():
            np.testing.assert_array_equal(v, before[k])


LN_CASES: list[tuple[str, Callable[[Any], nn.Layer], Callable[[Any], Any], tuple[int, ...]]] = [
    ("ln_1axis", lambda dt: LayerNorm(6, dtype=dt), lambda t: t.nn.LayerNorm(6), (4, 6)),
    ("ln_1axis_3d", lambda dt: LayerNorm(5, eps=1e-3, dtype=dt), lambda t: t.nn.LayerNorm(5, eps=1e-3), (3, 4, 5)),
    ("ln_2axes", lambda dt: LayerNorm((3, 4), dtype=dt), lambda t: t.nn.LayerNorm((3, 4)), (2, 3, 4)),
    ("ln_2axes_4d", lambda dt: LayerNorm([3, 4], dtype=dt), lambda t: t.nn.LayerNorm([3, 4]), (2, 2, 3, 4)),
    ("ln_noaffine", lambda dt: LayerNorm(6, elementwise_affine=False, dtype=dt),
     lambda t: t.nn.LayerNorm(6, elementwise_affine=False), (4, 6)),
    ("ln_nobias", lambda dt: LayerNorm(6, bias=False, dtype=dt), lambda t: t.nn.LayerNorm(6, bias=False), (4, 6)),
]
LN_IDS = [c[0] for c in LN_CASES]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name,make,make_torch,shape", LN_CASES, ids=LN_IDS)
def test_layernorm_torch_parity(
    name: str, make: Callable[[Any], nn.Layer], make_torch: Callable[[Any], Any], shape: tuple[int, ...],
    dtype: type, tol: float, train: bool,
) -> None:
    torch = pytest.importorskip("torch")
    layer, tlayer = _torch_pair(torch, make, make_torch, dtype)
    assert list(layer.state_dict()) == list(tlayer.state_dict())
    assert _compare_step(torch, layer, tlayer, _input(shape).astype(dtype), train, seed=3) <= tol


def test_repr_and_state_dict_keys_match_torch() -> None:
    torch = pytest.importorskip("torch")
    pairs = [
        (BatchNorm1d(4), torch.nn.BatchNorm1d(4)),
        (BatchNorm2d(2, eps=1e-3, momentum=None, affine=False), torch.nn.BatchNorm2d(2, 1e-3, None, False)),
        (BatchNorm1d(3, track_running_stats=False), torch.nn.BatchNorm1d(3, track_running_stats=False)),
        (BatchNorm1d(3, bias=False), torch.nn.BatchNorm1d(3, bias=False)),
        (LayerNorm(3, bias=False), torch.nn.LayerNorm(3, bias=False)),
        (LayerNorm((2, 3)), torch.nn.LayerNorm((2, 3))),
        (LayerNorm(3, elementwise_affine=False), torch.nn.LayerNorm(3, elementwise_affine=False)),
    ]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        assert [k for k, _ in ours.named_parameters()] == [k for k, _ in theirs.named_parameters()]


def test_hand_worked_batchnorm_step() -> None:
    # x = [[1], [3]] (N = 2, C = 1):  μ = 2, σ² = ((1−2)² + (3−2)²)/2 = 1 (biased, for normalizing)
    # x̂ = [−1, 1]/√(1 + ε);  with ε = 0 as far as the printed digits go: y = γ x̂ + β = [−1, 1]
    # running_mean = 0.9·0 + 0.1·2 = 0.2;  unbiased σ² = 2/(2 − 1) = 2  →  running_var = 0.9·1 + 0.1·2 = 1.1
    # dy = [1, 0]:  dβ = 1, dγ = Σ dy x̂ = −1/√(1+ε);  dx = (γ/√(σ²+ε))(dy − mean dy − x̂ mean(dy x̂))
    #             = [1 − 0.5 − (−1)(−0.5), 0 − 0.5 − (1)(−0.5)] = [0, 0] (a shift of one sample by t moves
    #             μ by t/2 and leaves the normalized pair [−1, 1] where it was)
    layer = BatchNorm1d(1, eps=1e-12, dtype=F64)
    y, cache = layer.forward(np.array([[1.0], [3.0]]), train=True)
    np.testing.assert_allclose(y, [[-1.0], [1.0]], rtol=1e-10)
    np.testing.assert_allclose(layer.running_mean, [0.2], rtol=1e-15)
    np.testing.assert_allclose(layer.running_var, [1.1], rtol=1e-15)
    assert int(layer.num_batches_tracked) == 1
    dx, grads = layer.vjp(cache, np.array([[1.0], [0.0]]))
    np.testing.assert_allclose(grads["bias"], [1.0])
    np.testing.assert_allclose(grads["weight"], [-1.0], rtol=1e-10)
    np.testing.assert_allclose(dx, [[0.0], [0.0]], atol=1e-10)


def test_momentum_none_is_the_cumulative_average() -> None:
    layer = BatchNorm1d(2, momentum=None, dtype=F64)
    xs = [_input((4, 2), seed=s) for s in range(5)]
    for x in xs:
        layer.forward(x, train=True)
    np.testing.assert_allclose(layer.running_mean, np.mean([x.mean(0) for x in xs], axis=0), rtol=1e-13)
    np.testing.assert_allclose(layer.running_var, np.mean([x.var(0, ddof=1) for x in xs], axis=0), rtol=1e-13)
    assert int(layer.num_batches_tracked) == 5


VEC_CASES = [
    ("bn1d_train", lambda: BatchNorm1d(3, dtype=F64), (4, 3, 2), True),
    ("bn1d_eval", lambda: BatchNorm1d(3, dtype=F64), (4, 3, 2), False),
    ("bn2d_train", lambda: BatchNorm2d(2, dtype=F64), (3, 2, 2, 3), True),
    ("bn2d_eval", lambda: BatchNorm2d(2, dtype=F64), (3, 2, 2, 3), False),
    ("bn1d_noaffine_train", lambda: BatchNorm1d(3, affine=False, dtype=F64), (5, 3), True),
    ("ln_2axes", lambda: LayerNorm((3, 2), dtype=F64), (2, 4, 3, 2), True),
    ("ln_noaffine", lambda: LayerNorm(4, elementwise_affine=False, dtype=F64), (3, 4), False),
]


@pytest.mark.parametrize("name,make,shape,train", VEC_CASES, ids=[c[0] for c in VEC_CASES])
def test_vector_axes_equal_separate_vjps(
    name: str, make: Callable[[], nn.Layer], shape: tuple[int, ...], train: bool
) -> None:
    layer = _randomize(make())
    x = _input(shape)
    y, cache = layer.forward(x, train=train)
    dys = np.random.default_rng(3).standard_normal((2, 3, *y.shape))  # V = (2, 3)
    modes = [False] if (train and "bn" in name) else [False, True]  # per-sample: eval BN, LayerNorm
    for per_sample in modes:
        dx, grads = layer.vjp(cache, dys, per_sample=per_sample)
        assert dx.shape == (2, 3, *x.shape)
        for a in range(2):
            for b in range(3):
                dx1, g1 = layer.vjp(cache, dys[a, b], per_sample=per_sample)
                np.testing.assert_allclose(dx[a, b], dx1, rtol=1e-12, atol=1e-14)
                assert set(g1) == set(grads)
                for k in g1:
                    assert grads[k].shape == (2, 3, *g1[k].shape)
                    np.testing.assert_allclose(grads[k][a, b], g1[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("make", [lambda: BatchNorm1d(3, dtype=F64), lambda: BatchNorm2d(3, dtype=F64),
                                  lambda: BatchNorm1d(3, track_running_stats=False, dtype=F64)])
def test_batchnorm_per_sample_raises_with_batch_statistics(make: Callable[[], nn.Layer]) -> None:
    layer = make()
    x = _input((4, 3) if isinstance(layer, BatchNorm1d) else (4, 3, 2, 2))
    _, cache = layer.forward(x, train=True)
    with pytest.raises(ValueError, match=r"per-sample gradients are not defined.*LayerNorm"):
        layer.vjp(cache, np.ones_like(x), per_sample=True)
    layer.vjp(cache, np.ones_like(x))  # the batch gradient is fine
    if isinstance(layer, BatchNorm1d) and not layer.track_running_stats:
        _, cache = layer.forward(x, train=False)  # no running statistics: batch statistics in eval mode too
        with pytest.raises(ValueError, match="per-sample gradients are not defined"):
            layer.vjp(cache, np.ones_like(x), per_sample=True)


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: BatchNorm1d(3, dtype=F64), (5, 3)),
        (lambda: BatchNorm1d(3, dtype=F64), (5, 3, 4)),
        (lambda: BatchNorm2d(2, dtype=F64), (4, 2, 3, 3)),
        (lambda: LayerNorm(4, dtype=F64), (5, 3, 4)),
        (lambda: LayerNorm((3, 4), bias=False, dtype=F64), (5, 3, 4)),
    ],
    ids=["bn1d_nc", "bn1d_ncl", "bn2d", "ln", "ln_2axes_nobias"],
)
def test_per_sample_grads_sum_to_batch_and_equal_singletons(
    make: Callable[[], nn.Layer], shape: tuple[int, ...]
) -> None:
    layer = _randomize(make())
    x = _input(shape)
    y, cache = layer.forward(x, train=False)  # eval mode: running statistics
    dy = np.random.default_rng(4).standard_normal(y.shape)
    dx, g = layer.vjp(cache, dy)
    dxn, gn = layer.vjp(cache, dy, per_sample=True)
    np.testing.assert_array_equal(dx, dxn)
    for k, p in layer.named_parameters():
        assert gn[k].shape == (shape[0], *p.shape)
        np.testing.assert_allclose(gn[k].sum(0), g[k], rtol=1e-12, atol=1e-14)
    for n in range(shape[0]):  # a sample's gradient is the gradient of that sample alone
        _, c1 = layer.forward(x[n : n + 1], train=False)
        _, g1 = layer.vjp(c1, dy[n : n + 1])
        for k in g1:
            np.testing.assert_allclose(gn[k][n], g1[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("make,shape", [(lambda: BatchNorm2d(2, dtype=F64), (3, 2, 2, 2)),
                                        (lambda: LayerNorm(3, dtype=F64), (4, 3))])
def test_need_dx_false_skips_only_the_input_gradient(
    make: Callable[[], nn.Layer], shape: tuple[int, ...], train: bool
) -> None:
    layer = _randomize(make())
    y, cache = layer.forward(_input(shape), train=train)
    dy = np.random.default_rng(5).standard_normal(y.shape)
    _, grads = layer.vjp(cache, dy)
    dx, grads_skipped = layer.vjp(cache, dy, need_dx=False)
    assert dx is NO_DX
    for k in grads:
        np.testing.assert_array_equal(grads[k], grads_skipped[k])


def test_forward_is_reentrant_apart_from_the_running_statistics() -> None:
    layer = _randomize(BatchNorm1d(3, dtype=F64))
    xa, xb = _input((4, 3), seed=1), _input((6, 3), seed=2)
    ya, ca = layer.forward(xa, train=True)
    layer.forward(xb, train=True)
    dy = np.ones_like(ya)
    dxa, ga = layer.vjp(ca, dy)
    _, ca2 = BatchNorm1d(3, dtype=F64).forward(xa, train=True)
    fresh = BatchNorm1d(3, dtype=F64)
    fresh.load_state_dict(layer.state_dict())
    dxa2, ga2 = fresh.vjp(ca2, dy)
    np.testing.assert_allclose(dxa, dxa2, rtol=1e-14, atol=1e-15)
    for k in ga:
        np.testing.assert_allclose(ga[k], ga2[k], rtol=1e-14, atol=1e-15)
    # an eval-mode cache keeps the statistics it was computed with, even after a training step
    _, ce = layer.forward(xa, train=False)
    de, _ = layer.vjp(ce, dy)
    layer.forward(xb, train=True)
    de2, _ = layer.vjp(ce, dy)
    np.testing.assert_array_equal(de, de2)


def test_single_value_per_channel_in_training_raises_and_leaves_buffers() -> None:
    layer = BatchNorm1d(3, dtype=F64)
    with pytest.raises(ValueError, match="more than 1 value per channel when training"):
        layer.forward(np.ones((1, 3)), train=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm2d(3).forward(np.ones((1, 3, 1, 1)), train=True)
    assert int(layer.num_batches_tracked) == 0
    np.testing.assert_array_equal(layer.running_mean, 0.0)
    layer.forward(np.ones((1, 3, 2)), train=True)  # one sample, two positions: two values per channel
    layer.forward(np.ones((1, 3)), train=False)  # eval mode uses running statistics: fine
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm1d(3, track_running_stats=False).forward(np.ones((1, 3)), train=False)


@pytest.mark.parametrize(
    "layer,shape,match",
    [
        (BatchNorm1d(3), (2, 3, 4, 5), r"expected \(N, C\) or \(N, C, L\).*BatchNorm2d"),
        (BatchNorm1d(3), (3,), r"got x.shape=\(3,\)"),
        (BatchNorm1d(3), (4, 5), r"C = 3.*num_features=5"),
        (BatchNorm2d(3), (4, 3, 5), r"expected \(N, C, H, W\)"),
        (BatchNorm2d(3), (2, 4, 5, 5), r"num_features=4"),
        (LayerNorm(4), (3, 5), r"trailing axes"),
        (LayerNorm((2, 3)), (4, 3, 2), r"expected \(N, …, 2, 3\)"),
        (LayerNorm((2, 3)), (2, 3), r"x\[None\]"),
    ],
)
def test_bad_input_shapes(layer: nn.Layer, shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        layer.forward(np.ones(shape), train=True)


def test_bad_dy_rank() -> None:
    layer = BatchNorm1d(3)
    _, cache = layer.forward(_input((4, 3, 2)), train=True)
    with pytest.raises(ValueError, match="dy must have the output's shape"):
        layer.vjp(cache, np.ones((4, 3)))


@pytest.mark.parametrize(
    "build,exc,match",
    [
        (lambda: BatchNorm1d(0), ValueError, "num_features=0.*positive int"),
        (lambda: BatchNorm2d(3.0), ValueError, "positive int"),
        (lambda: BatchNorm1d(True), ValueError, "positive int"),
        (lambda: BatchNorm1d(3, eps=0), ValueError, "eps=0.*positive"),
        (lambda: BatchNorm1d(3, eps=float("nan")), ValueError, "eps"),
        (lambda: BatchNorm1d(3, momentum=1.5), ValueError, r"momentum=1.5.*\[0, 1\].*None"),
        (lambda: BatchNorm1d(3, momentum=-0.1), ValueError, "momentum"),
        (lambda: BatchNorm1d(3, momentum="0.1"), ValueError, "momentum"),
        (lambda: BatchNorm1d(3, affine="yes"), TypeError, "affine"),
        (lambda: BatchNorm1d(3, bias=1), TypeError, "bias"),
        (lambda: BatchNorm1d(3, dtype=np.int32), TypeError, "float32 or float64"),
        (lambda: LayerNorm(0), ValueError, "normalized_shape=0"),
        (lambda: LayerNorm(()), ValueError, "non-empty tuple"),
        (lambda: LayerNorm((3, -1)), ValueError, "positive ints"),
        (lambda: LayerNorm("a"), ValueError, "normalized_shape"),
        (lambda: LayerNorm(3, eps=-1e-5), ValueError, "eps"),
        (lambda: LayerNorm(3, bias=None), TypeError, "bias"),
    ],
)
def test_bad_constructor_arguments(build: Callable[[], nn.Layer], exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        build()


def test_to_float64_converts_parameters_and_float_buffers_only() -> None:
    layer = BatchNorm1d(3)
    assert layer.weight is not None and layer.weight.dtype == np.float32
    layer.forward(_input((4, 3)), train=True)
    layer.to(np.float64)
    sd = layer.state_dict()
    assert {k: str(v.dtype) for k, v in sd.items()} == {
        "weight": "float64", "bias": "float64", "running_mean": "float64", "running_var": "float64",
        "num_batches_tracked": "int64",
    }
    assert sd["num_batches_tracked"].shape == () and int(sd["num_batches_tracked"]) == 1
    y, _ = layer.forward(_input((4, 3)).astype(np.float32), train=True)  # input converted to float64
    assert y.dtype == np.float64
    assert layer.running_mean is layer._buffers["running_mean"]  # updates land in the converted buffer
    assert int(layer.num_batches_tracked) == 2
    # without parameters the buffers set the dtype
    y, _ = BatchNorm2d(2, affine=False, dtype=F64).forward(np.ones((2, 2, 2, 2), np.float32), train=True)
    assert y.dtype == np.float64
    ln = LayerNorm(3).to(np.float64)
    assert ln.weight is not None and ln.weight.dtype == np.float64
    assert ln.forward(np.ones((2, 3), np.float32))[0].dtype == np.float64


@pytest.mark.parametrize(
    "layer",
    [BatchNorm1d(3, eps=1e-3, momentum=None, affine=False, dtype=F64), BatchNorm2d(4),
     BatchNorm1d(2, track_running_stats=False), BatchNorm2d(2, bias=False), LayerNorm((2, 3), bias=False, dtype=F64),
     LayerNorm(5, elementwise_affine=False)],
)
def test_get_config_is_json_and_rebuilds(layer: nn.Layer) -> None:
    cfg = json.loads(json.dumps(layer.get_config()))
    again = type(layer)(**cfg)
    assert again.get_config() == layer.get_config()
    assert repr(again) == repr(layer)
    assert {k: (v.shape, v.dtype) for k, v in again.state_dict().items()} == {
        k: (v.shape, v.dtype) for k, v in layer.state_dict().items()
    }


def test_save_and_load_keep_running_statistics(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 3), BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2), LayerNorm(2)).double()
    for s in range(3):
        model.forward(_input((5, 4), seed=s), train=True)
    path = nn.save(model, tmp_path / "bn.npz")
    loaded = nn.load(path)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v)
        assert loaded.state_dict()[k].dtype == v.dtype
    x = _input((2, 4), seed=9)
    np.testing.assert_array_equal(loaded.eval()(x), model.eval()(x))
