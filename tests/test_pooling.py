"""Max, average and adaptive average pooling: finite differences, PyTorch parity, ties, vector axes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import check_layer_fd, rel_err

import nablanet as nn

POOL_CASES: list[tuple[str, dict[str, Any], tuple[int, ...]]] = [
    ("MaxPool2d", {"kernel_size": 2}, (2, 3, 8, 7)),
    ("MaxPool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, (2, 3, 9, 8)),
    ("MaxPool2d", {"kernel_size": (2, 3), "stride": (1, 2), "dilation": (2, 1)}, (2, 2, 7, 9)),
    ("MaxPool2d", {"kernel_size": 3, "stride": 1}, (1, 2, 5, 5)),
    ("MaxPool1d", {"kernel_size": 2}, (2, 3, 9)),
    ("MaxPool1d", {"kernel_size": 3, "stride": 1, "padding": 1}, (2, 3, 9)),
    ("MaxPool1d", {"kernel_size": 4, "stride": 3, "padding": 2, "dilation": 1}, (2, 2, 14)),
    ("AvgPool2d", {"kernel_size": 2}, (2, 3, 8, 7)),
    ("AvgPool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, (2, 3, 9, 8)),
    ("AvgPool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, (2, 3, 9, 8)),
    ("AvgPool2d", {"kernel_size": (2, 3), "stride": 1}, (1, 2, 4, 5)),
    ("AvgPool1d", {"kernel_size": 4, "stride": 3, "padding": 2}, (2, 3, 13)),
    ("AvgPool1d", {"kernel_size": 3, "padding": 1, "count_include_pad": False}, (2, 3, 10)),
    ("AdaptiveAvgPool2d", {"output_size": 1}, (2, 3, 5, 6)),
    ("AdaptiveAvgPool2d", {"output_size": (3, 4)}, (2, 3, 7, 5)),
    ("AdaptiveAvgPool2d", {"output_size": (None, 2)}, (2, 3, 4, 5)),
    ("AdaptiveAvgPool1d", {"output_size": 5}, (2, 3, 12)),
    ("AdaptiveAvgPool1d", {"output_size": 1}, (2, 3, 7)),
]
IDS = [f"{c}-{i}" for i, (c, _, _) in enumerate(POOL_CASES)]


def _x(shape: tuple[int, ...], dtype: Any = np.float64, seed: int = 1) -> np.ndarray:
    # distinct values: finite differences must not straddle a change of argmax
    n = int(np.prod(shape))
    vals = np.random.default_rng(seed).permutation(n) / n * 4 - 2
    return vals.reshape(shape).astype(dtype)


@pytest.mark.parametrize("name,kw,shape", POOL_CASES, ids=IDS)
def test_finite_differences_float64(name: str, kw: dict[str, Any], shape: tuple[int, ...]) -> None:
    assert check_layer_fd(getattr(nn, name)(**kw), _x(shape)) <= 1e-6


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("name,kw,shape", POOL_CASES, ids=IDS)
def test_torch_parity(name: str, kw: dict[str, Any], shape: tuple[int, ...], dtype: Any, tol: float) -> None:
    torch = pytest.importorskip("torch")
    layer = getattr(nn, name)(**kw)
    tlayer = getattr(torch.nn, name)(**kw)
    x = _x(shape, dtype)
    y, cache = layer.forward(x)
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    dx, grads = layer.vjp(cache, dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = tlayer(tx)
    ty.backward(torch.tensor(dy))
    assert grads == {} and y.dtype == dtype and dx.dtype == dtype
    assert y.shape == tuple(ty.shape)
    assert rel_err(y, ty.detach().numpy()) <= tol
    assert rel_err(dx, tx.grad.numpy()) <= tol


@pytest.mark.parametrize("name,kw,shape", POOL_CASES, ids=IDS)
def test_vector_axes_equal_separate_vjps(name: str, kw: dict[str, Any], shape: tuple[int, ...]) -> None:
    layer = getattr(nn, name)(**kw)
    y, cache = layer.forward(_x(shape))
    dys = np.random.default_rng(4).standard_normal((2, 3, *y.shape))
    dx, _ = layer.vjp(cache, dys)
    assert dx.shape == (2, 3, *shape)
    for a in range(2):
        for b in range(3):
            np.testing.assert_allclose(dx[a, b], layer.vjp(cache, dys[a, b])[0], rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 1, "padding": 1},
                                {"kernel_size": 2, "stride": 1}])
def test_max_pool_ties_send_the_gradient_to_the_first_maximum(kw: dict[str, Any]) -> None:
    # All-equal windows: the whole gradient goes to the first entry of each window (row-major),
    # so overlapping windows pile their gradients on the same first entries (as PyTorch's CPU kernel).
    x = np.zeros((1, 1, 4, 4))
    layer = nn.MaxPool2d(**kw)
    y, cache = layer.forward(x)
    dx, _ = layer.vjp(cache, np.ones_like(y))
    assert dx.sum() == y.size  # every window routes its gradient to exactly one entry
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.MaxPool2d(**kw)(tx).sum().backward()
    np.testing.assert_array_equal(dx, tx.grad.numpy())


def test_max_pool_hand_worked() -> None:
    x = np.array([[[[1.0, 3.0, 2.0, 2.0],
                    [3.0, 0.0, 1.0, 0.0],
                    [5.0, 6.0, 7.0, 8.0],
                    [6.0, 6.0, 8.0, 1.0]]]])
    layer = nn.MaxPool2d(2)
    y, cache = layer.forward(x)
    np.testing.assert_array_equal(y, [[[[3.0, 2.0], [6.0, 8.0]]]])
    dx, _ = layer.vjp(cache, np.array([[[[10.0, 20.0], [30.0, 40.0]]]]))
    # window 1: 3 at (0,1) and (1,0) tie, the first (0,1) wins; window 2: 2 at (0,2), (0,3), first wins;
    # window 3: 6 at (2,1), (3,0), (3,1), first (2,1) wins; window 4: 8 at (2,3) and (3,2), first (2,3) wins.
    expected = np.zeros((4, 4))
    expected[0, 1], expected[0, 2], expected[2, 1], expected[2, 3] = 10, 20, 30, 40
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_avg_pool_divisors() -> None:
    x = np.ones((1, 1, 3, 3))
    inc = nn.AvgPool2d(3, stride=1, padding=1)(x)
    exc = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)(x)
    assert inc[0, 0, 0, 0] == pytest.approx(4 / 9) and inc[0, 0, 1, 1] == pytest.approx(1.0)
    np.testing.assert_allclose(exc, 1.0)


def test_global_average_pool_equals_mean() -> None:
    x = _x((2, 3, 5, 4))
    np.testing.assert_allclose(nn.AdaptiveAvgPool2d(1)(x)[..., 0, 0], x.mean(axis=(2, 3)), rtol=1e-14)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: nn.MaxPool2d(2, padding=2), "at most half"),
        (lambda: nn.MaxPool2d(0), "kernel_size"),
        (lambda: nn.MaxPool2d(2, ceil_mode=True), "ceil_mode"),
        (lambda: nn.AvgPool1d((2, 2)), "kernel_size"),
        (lambda: nn.AdaptiveAvgPool2d(0), "output_size"),
    ],
)
def test_bad_arguments(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"expected \(N, C, H, W\)"):
        nn.MaxPool2d(2)(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="larger than the padded input"):
        nn.AvgPool2d(3)(np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match=r"expected \(N, C, L\)"):
        nn.AdaptiveAvgPool1d(1)(np.zeros((2, 3)))
