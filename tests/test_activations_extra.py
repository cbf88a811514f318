"""ELU, GELU (exact and tanh), SiLU, Hardtanh: finite differences, PyTorch parity, kinks, tails, Φ."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import check_layer_fd, rel_err

from nablanet.layers.activations import ELU, GELU, Hardtanh, SiLU, normal_cdf
from nablanet.layers.base import Layer

# (name, nablanet factory, torch factory, kinks to keep the finite-difference inputs away from)
CASES: list[tuple[str, Callable[[], Layer], Callable[..., Any], tuple[float, ...]]] = [
    ("elu", ELU, lambda t: t.nn.ELU(), (0.0,)),
    ("elu_alpha", lambda: ELU(alpha=0.7), lambda t: t.nn.ELU(alpha=0.7), (0.0,)),
    ("gelu", GELU, lambda t: t.nn.GELU(), ()),
    ("gelu_tanh", lambda: GELU("tanh"), lambda t: t.nn.GELU(approximate="tanh"), ()),
    ("silu", SiLU, lambda t: t.nn.SiLU(), ()),
    ("hardtanh", Hardtanh, lambda t: t.nn.Hardtanh(), (-1.0, 1.0)),
    ("hardtanh_range", lambda: Hardtanh(-0.5, 2.0), lambda t: t.nn.Hardtanh(-0.5, 2.0), (-0.5, 2.0)),
]
IDS = [c[0] for c in CASES]


def _input(shape: tuple[int, ...], kinks: tuple[float, ...] = (), seed: int = 1) -> np.ndarray:
    x = 2 * np.random.default_rng(seed).standard_normal(shape)
    for k in kinks:  # central differences (step 1e-6) must stay on one smooth branch
        x = np.where(np.abs(x - k) < 1e-3, k + 0.25, x)
    return x


@pytest.mark.parametrize("name,make,_t,kinks", CASES, ids=IDS)
def test_finite_differences_float64(name: str, make: Callable[[], Layer], _t: object, kinks: tuple[float, ...]) -> None:
    assert check_layer_fd(make(), _input((4, 9), kinks)) <= 1e-6


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("name,make,make_torch,kinks", CASES, ids=IDS)
def test_torch_parity(
    name: str, make: Callable[[], Layer], make_torch: Callable[..., Any], kinks: tuple[float, ...],
    dtype: type, tol: float,
) -> None:
    torch = pytest.importorskip("torch")
    x: np.ndarray = _input((5, 3, 4), kinks).astype(dtype)
    y, cache = make().forward(x)
    dy: np.ndarray = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    dx, grads = make().vjp(cache, dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = make_torch(torch)(tx)
    ty.backward(torch.tensor(dy))
    assert y.dtype == dtype and dx.dtype == dtype and grads == {}
    assert rel_err(y, ty.detach().numpy()) <= tol
    assert rel_err(dx, tx.grad.numpy()) <= tol


@pytest.mark.parametrize("name,make,make_torch,_k", CASES, ids=IDS)
def test_torch_parity_at_kinks_and_tails(
    name: str, make: Callable[[], Layer], make_torch: Callable[..., Any], _k: object
) -> None:
    # exact kinks (ELU at 0, Hardtanh at its corners) and wide arguments, float64, elementwise
    torch = pytest.importorskip("torch")
    x = np.array([[-50.0, -8.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 8.0, 50.0]])
    y, cache = make().forward(x)
    dx, _ = make().vjp(cache, np.ones_like(x))
    tx = torch.tensor(x, requires_grad=True)
    ty = make_torch(torch)(tx)
    ty.sum().backward()
    # absolute slack: torch's exact GELU forms 1 + erf(x/√2), which loses ~ε absolutely in the left tail
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-13, atol=1e-14)


def test_hardtanh_derivative_is_zero_at_the_corners() -> None:
    # PyTorch 2.13: hardtanh's gradient is 1 only strictly inside (min_val, max_val)
    layer = Hardtanh(-1.0, 2.0)
    x = np.array([[-1.5, -1.0, -0.999, 0.0, 1.999, 2.0, 2.5]])
    y, cache = layer.forward(x)
    dx, _ = layer.vjp(cache, np.ones_like(x))
    np.testing.assert_array_equal(y, [[-1.0, -1.0, -0.999, 0.0, 1.999, 2.0, 2.0]])
    np.testing.assert_array_equal(dx, [[0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]])


def test_elu_derivative_at_zero_is_alpha() -> None:
    layer = ELU(alpha=2.0)
    x = np.array([[-1.0, 0.0, 1.0]])
    y, cache = layer.forward(x)
    dx, _ = layer.vjp(cache, np.ones_like(x))
    np.testing.assert_allclose(y, [[2.0 * (math.exp(-1.0) - 1.0), 0.0, 1.0]], rtol=1e-15)
    np.testing.assert_allclose(dx, [[2.0 * math.exp(-1.0), 2.0, 1.0]], rtol=1e-15)


def test_gelu_hand_values() -> None:
    # Φ(1) = ½(1 + erf(1/√2)) = 0.841344746068543;  GELU(1) = Φ(1), GELU(−1) = −(1 − Φ(1))
    # f′(±1) = Φ(±1) ± φ(1), φ(1) = e^(−½)/√(2π) = 0.241970724519143
    y, cache = GELU().forward(np.array([[-1.0, 0.0, 1.0]]))
    dx, _ = GELU().vjp(cache, np.ones((1, 3)))
    np.testing.assert_allclose(y, [[-0.158655253931457, 0.0, 0.841344746068543]], rtol=1e-14)
    phi1 = 0.241970724519143
    np.testing.assert_allclose(dx, [[0.158655253931457 - phi1, 0.5, 0.841344746068543 + phi1]], rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "make", [ELU, GELU, lambda: GELU("tanh"), SiLU, Hardtanh], ids=["elu", "gelu", "gelu_tanh", "silu", "hardtanh"]
)
def test_no_overflow_for_large_inputs(make: Callable[[], Layer], dtype: type) -> None:
    big = np.finfo(dtype).max / 4
    x: np.ndarray = np.array([[-big, -1e30, -1e4, -40.0, -10.0, 0.0, 10.0, 40.0, 1e4, 1e30, big]], dtype=dtype)
    layer = make()
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        y, cache = layer.forward(x)
        dx, _ = layer.vjp(cache, np.ones_like(x))
    assert y.dtype == dtype and dx.dtype == dtype
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    if not isinstance(layer, Hardtanh):
        # these all approach ReLU in the tails: y → x and f′ → 1 on the right, y → ±0 (ELU: −α) on the left
        np.testing.assert_array_equal(y[0, -3:], x[0, -3:])
        np.testing.assert_array_equal(dx[0, -3:], 1)
        np.testing.assert_array_equal(dx[0, :3], 0)


def test_gelu_tails_match_torch() -> None:
    torch = pytest.importorskip("torch")
    x = np.array([[-1e30, -1e4, -40.0, -30.0, -12.0, -6.0, 6.0, 12.0, 30.0, 40.0, 1e4, 1e30]])
    for approximate in ("none", "tanh"):
        y, cache = GELU(approximate).forward(x)
        dx, _ = GELU(approximate).vjp(cache, np.ones_like(x))
        tx = torch.tensor(x, requires_grad=True)
        ty = torch.nn.GELU(approximate=approximate)(tx)
        ty.sum().backward()
        # torch's exact form loses ~ε absolutely in the left tail (1 + erf(x/√2) cancels); compare with that slack
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-13, atol=1e-14)


def test_normal_cdf_matches_math_erfc_to_a_few_ulp() -> None:
    # GELU's Φ(x) = ½ erfc(−x/√2), against the standard library's erfc, over both tails (the same
    # rounded argument −x/√2 on both sides: in the left tail erfc's relative error grows as 2z²·δz)
    xs = np.concatenate([np.linspace(-38.0, 38.0, 54001), np.geomspace(1e-300, 38.0, 2000),
                         -np.geomspace(1e-300, 38.0, 2000), [0.6629, -0.6629, 5.657, -5.657, 0.0, -0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got = normal_cdf(xs)
    ref = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in xs])
    normal = ref > 1e-300  # below that the reference itself is subnormal
    rel = np.abs(got - ref)[normal] / ref[normal] / np.finfo(np.float64).eps
    x = xs[normal]
    assert np.max(rel[np.abs(x) <= 5]) <= 8  # a few ulp where GELU's inputs live
    # in the left tail Φ ~ e^(−x²/2): an ulp of x²/2 is x²/2 ulp of Φ, SciPy's bound there
    assert np.all(rel <= 8 + x * x / 2)
    np.testing.assert_array_equal(normal_cdf(np.array([np.inf, -np.inf, 40.0, -40.0])), [1.0, 0.0, 1.0, 0.0])
    assert np.isnan(normal_cdf(np.array([np.nan]))[0])


@pytest.mark.parametrize("name,make,_t,kinks", CASES, ids=IDS)
def test_vector_axes_equal_separate_vjps(name: str, make: Callable[[], Layer], _t: object, kinks: object) -> None:
    layer = make()
    x = _input((3, 4))
    y, cache = layer.forward(x)
    dys = np.random.default_rng(3).standard_normal((2, 3, *y.shape))
    dx, _ = layer.vjp(cache, dys)
    assert dx.shape == (2, 3, *x.shape)
    for a in range(2):
        for b in range(3):
            np.testing.assert_array_equal(dx[a, b], layer.vjp(cache, dys[a, b])[0])
    with pytest.raises(ValueError, match="dy must have the output's shape"):
        layer.vjp(cache, np.ones(4))


def test_config_and_repr_round_trip() -> None:
    for layer, rep in [
        (ELU(alpha=0.5), "ELU(alpha=0.5)"),
        (GELU("tanh"), "GELU(approximate='tanh')"),
        (SiLU(), "SiLU()"),
        (Hardtanh(-2.0, 3.0), "Hardtanh(min_val=-2.0, max_val=3.0)"),
    ]:
        assert repr(layer) == rep
        assert repr(type(layer)(**layer.get_config())) == rep


def test_bad_arguments_raise_informative_errors() -> None:
    with pytest.raises(ValueError, match=r"GELU\(approximate='exact'\): expected 'none'.*or 'tanh'"):
        GELU("exact")
    with pytest.raises(ValueError, match=r"Hardtanh\(min_val=1.0, max_val=1.0\): expected min_val < max_val"):
        Hardtanh(1.0, 1.0)
    with pytest.raises(ValueError, match=r"swap the two values"):
        Hardtanh(2.0, -2.0)
    with pytest.raises(ValueError, match=r"ELU\(alpha=nan\): expected a finite number"):
        ELU(alpha=float("nan"))
