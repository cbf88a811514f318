"""RReLU, Dropout and Dropout2d: the VJP reuses the forward's randomness; seeds, modes, edge cases, PyTorch."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from helpers import check_layer_fd, rel_err

from nablanet.layers.base import NO_DX, Layer
from nablanet.layers.dropout import Dropout, Dropout2d, RReLU


def _input(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.where(np.abs(x) < 1e-3, 0.5, x)  # away from RReLU's kink at 0


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------- RReLU


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_rrelu_finite_differences(train: bool) -> None:
    # check_layer_fd hands every forward np.random.default_rng(seed), so train mode redraws the same slopes
    assert check_layer_fd(RReLU(), _input((4, 7)), train=train) <= 1e-6
    assert check_layer_fd(RReLU(0.05, 0.6), _input((2, 3, 4)), train=train) <= 1e-6


def test_rrelu_train_slopes_are_drawn_and_the_vjp_reuses_them() -> None:
    layer = RReLU(0.1, 0.4)
    x = _input((50, 40))
    y, cache = layer.forward(x, train=True, rng=_rng(0))
    slopes = cache.factor
    assert slopes is not None
    neg = x < 0
    assert np.all(slopes[~neg] == 1.0)
    assert np.all((slopes[neg] >= 0.1) & (slopes[neg] < 0.4))
    assert np.unique(slopes[neg]).size == neg.sum()  # one slope per element
    assert abs(slopes[neg].mean() - 0.25) < 5 * (0.3 / math.sqrt(12)) / math.sqrt(neg.sum())
    np.testing.assert_array_equal(y, x * slopes)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dx, grads = layer.vjp(cache, dy)
    np.testing.assert_array_equal(dx, dy * slopes)
    assert grads == {}
    y2, _ = layer.forward(x, train=True, rng=_rng(0))
    y3, _ = layer.forward(x, train=True, rng=_rng(1))
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(y, y3)


def test_rrelu_eval_uses_the_mean_slope_and_derivative_one_at_zero() -> None:
    layer = RReLU(0.1, 0.3)
    x = np.array([[-2.0, 0.0, 3.0]])
    y, cache = layer.forward(x)
    dx, _ = layer.vjp(cache, np.ones_like(x))
    np.testing.assert_allclose(y, [[-0.4, 0.0, 3.0]], rtol=1e-15)
    np.testing.assert_allclose(dx, [[0.2, 1.0, 1.0]], rtol=1e-15)  # f′(0) = 1 as for ReLU/LeakyReLU here
    _, cache_t = layer.forward(x, train=True, rng=_rng(0))
    assert cache_t.factor is not None and cache_t.factor[0, 1] == 1.0


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("lower,upper", [(1 / 8, 1 / 3), (0.02, 0.5)])
def test_rrelu_eval_torch_parity(lower: float, upper: float, dtype: type, tol: float) -> None:
    torch = pytest.importorskip("torch")
    x: np.ndarray = _input((5, 3, 4)).astype(dtype)
    layer = RReLU(lower, upper)
    y, cache = layer.forward(x)
    dy: np.ndarray = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    dx, _ = layer.vjp(cache, dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.RReLU(lower, upper).eval()(tx)
    ty.backward(torch.tensor(dy))
    assert y.dtype == dtype and dx.dtype == dtype
    assert rel_err(y, ty.detach().numpy()) <= tol
    assert rel_err(dx, tx.grad.numpy()) <= tol


def test_rrelu_train_keeps_float32() -> None:
    x = _input((3, 4)).astype(np.float32)
    y, cache = RReLU().forward(x, train=True, rng=_rng(0))
    dx, _ = RReLU().vjp(cache, np.ones_like(y))
    assert y.dtype == np.float32 and dx.dtype == np.float32


# -------------------------------------------------------------------------------------------- Dropout


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: Dropout(0.3), (6, 7)),
        (lambda: Dropout(0.5, scale="notes"), (3, 4, 5)),
        (lambda: Dropout2d(0.4), (3, 4, 2, 3)),
    ],
    ids=["inverted", "notes", "2d"],
)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_dropout_finite_differences(make: Callable[[], Layer], shape: tuple[int, ...], train: bool) -> None:
    assert check_layer_fd(make(), _input(shape), train=train) <= 1e-6


def test_same_seed_same_mask_different_seed_different_mask() -> None:
    x = _input((20, 30))
    for layer in (Dropout(0.5), Dropout(0.5, scale="notes")):
        y1, _ = layer.forward(x, train=True, rng=_rng(7))
        y2, _ = layer.forward(x, train=True, rng=_rng(7))
        y3, _ = layer.forward(x, train=True, rng=_rng(8))
        np.testing.assert_array_equal(y1, y2)
        assert not np.array_equal(y1 == 0, y3 == 0)
    # an int seed is a generator seeded with it
    np.testing.assert_array_equal(Dropout(0.5).forward(x, train=True, rng=3)[0],
                                  Dropout(0.5).forward(x, train=True, rng=_rng(3))[0])


def test_eval_is_identity() -> None:
    x = _input((4, 5))
    y, cache = Dropout(0.7).forward(x)
    dy = np.ones_like(x)
    dx, grads = Dropout(0.7).vjp(cache, dy)
    assert y is x and dx is dy and grads == {}
    y2d, _ = Dropout2d(0.7).forward(x[:, :, None, None])
    np.testing.assert_array_equal(y2d[:, :, 0, 0], x)
    assert Dropout(0.7).eval()(x) is not None
    np.testing.assert_array_equal(Dropout(0.7).eval()(x), x)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.8])
def test_inverted_dropout_preserves_the_mean(p: float) -> None:
    # y = m/(1 − p) on x = 1: E y = 1, sd(y) = √(p/(1 − p)); the mean of n draws is within 5 sd/√n
    n = 200_000
    y, _ = Dropout(p).forward(np.ones((400, n // 400)), train=True, rng=_rng(0))
    assert abs(y.mean() - 1.0) <= 5 * math.sqrt(p / (1 - p)) / math.sqrt(n)
    kept = np.mean(y != 0)
    assert abs(kept - (1 - p)) <= 5 * math.sqrt(p * (1 - p)) / math.sqrt(n)
    np.testing.assert_allclose(y[y != 0], 1 / (1 - p), rtol=1e-15)


def test_vjp_uses_the_forward_mask() -> None:
    x = _input((30, 40))
    for layer in (Dropout(0.4), Dropout(0.4, scale="notes")):
        y, cache = layer.forward(x, train=True, rng=_rng(5))
        dy = np.random.default_rng(6).standard_normal(y.shape)
        dx, grads = layer.vjp(cache, dy)
        nz = x != 0
        np.testing.assert_allclose(dx[nz], dy[nz] * y[nz] / x[nz], rtol=1e-14)
        assert grads == {}
        assert np.all(dx[y == 0] == 0)


@pytest.mark.parametrize("scale", ["inverted", "notes"])
def test_p_zero_and_p_one(scale: str) -> None:
    x = _input((5, 6))
    dy = np.random.default_rng(1).standard_normal(x.shape)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        for train in (False, True):
            y, cache = Dropout(0.0, scale=scale).forward(x, train=train, rng=_rng(0))
            np.testing.assert_array_equal(y, x)
            np.testing.assert_array_equal(Dropout(0.0, scale=scale).vjp(cache, dy)[0], dy)
        y, cache = Dropout(1.0, scale=scale).forward(x, train=True, rng=_rng(0))
        dx, _ = Dropout(1.0, scale=scale).vjp(cache, dy)
        y_eval, _ = Dropout(1.0, scale=scale).forward(x)
        y2d, _ = Dropout2d(1.0).forward(x[:, :, None, None], train=True, rng=_rng(0))
    np.testing.assert_array_equal(y, 0)
    np.testing.assert_array_equal(dx, 0)
    np.testing.assert_array_equal(y2d, 0)
    np.testing.assert_array_equal(y_eval, x if scale == "inverted" else 0 * x)


def test_notes_scale_trains_unscaled_and_scales_at_inference() -> None:
    # The notes: drop while training, then multiply by the keep probability (1 − p) for inference
    p = 0.25
    layer = Dropout(p, scale="notes")
    x = _input((200, 500))
    y, _ = layer.forward(x, train=True, rng=_rng(0))
    kept = y != 0
    np.testing.assert_array_equal(y[kept], x[kept])  # no 1/(1 − p)
    y_eval, cache = layer.forward(x)
    np.testing.assert_allclose(y_eval, (1 - p) * x, rtol=1e-15)
    dy = np.ones_like(x)
    np.testing.assert_allclose(layer.vjp(cache, dy)[0], (1 - p) * dy, rtol=1e-15)
    # E[training output] = inference output: on x = 1 the mean is 1 − p within 5 sd/√n, sd = √(p(1 − p))
    ones, _ = layer.forward(np.ones((400, 500)), train=True, rng=_rng(1))
    assert abs(ones.mean() - (1 - p)) <= 5 * math.sqrt(p * (1 - p)) / math.sqrt(ones.size)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_keeps_dtype(dtype: type) -> None:
    x: np.ndarray = _input((4, 5)).astype(dtype)
    for layer in (Dropout(0.5), Dropout(0.5, scale="notes"), Dropout2d(0.5)):
        xi = x[:, :, None, None] if isinstance(layer, Dropout2d) else x
        for train in (False, True):
            y, cache = layer.forward(xi, train=train, rng=_rng(0))
            dx, _ = layer.vjp(cache, np.ones_like(y))
            assert y.dtype == dtype and dx.dtype == dtype


def test_dropout2d_zeroes_whole_channels() -> None:
    p = 0.5
    x = _input((8, 6, 3, 4))
    y, cache = Dropout2d(p).forward(x, train=True, rng=_rng(0))
    ratio = y / x
    per_channel = ratio.reshape(8, 6, -1)
    assert np.all(per_channel == per_channel[:, :, :1])  # one factor per (n, c)
    factors = per_channel[:, :, 0]
    assert set(np.unique(factors)) == {0.0, 1 / (1 - p)}
    dy = np.random.default_rng(1).standard_normal((2, *y.shape))  # with a vector axis
    dx, _ = Dropout2d(p).vjp(cache, dy)
    np.testing.assert_allclose(dx, dy * factors[:, :, None, None], rtol=1e-15)


def test_dropout2d_rejects_other_ranks() -> None:
    cases = [((2, 3, 4), r"x\[None\].*x\[\.\.\., None\]"), ((2, 3), "use Dropout"), ((1, 2, 3, 4, 5), "Reshape")]
    for shape, hint in cases:
        with pytest.raises(ValueError, match=r"Dropout2d got x.shape=.*expected \(N, C, H, W\)\. .*" + hint):
            Dropout2d(0.5).forward(np.ones(shape), train=True, rng=_rng(0))


@pytest.mark.parametrize(
    "make,shape",
    [(lambda: RReLU(), (3, 4)), (lambda: Dropout(0.5), (3, 4)), (lambda: Dropout2d(0.5), (3, 4, 2, 2))],
    ids=["rrelu", "dropout", "dropout2d"],
)
def test_vector_axes_equal_separate_vjps(make: Callable[[], Layer], shape: tuple[int, ...]) -> None:
    layer = make()
    y, cache = layer.forward(_input(shape), train=True, rng=_rng(0))
    dys = np.random.default_rng(3).standard_normal((2, 3, *y.shape))
    dx, grads = layer.vjp(cache, dys)
    assert dx.shape == dys.shape and grads == {}
    for a in range(2):
        for b in range(3):
            np.testing.assert_array_equal(dx[a, b], layer.vjp(cache, dys[a, b])[0])
    assert layer.vjp(cache, dys, need_dx=False)[0] is NO_DX
    with pytest.raises(ValueError, match="dy must have the output's shape"):
        layer.vjp(cache, np.ones(shape[1:]))


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_torch_dropout_semantics(p: float) -> None:
    # Different generators, so compare what can be compared: the kept factor 1/(1 − p), the channel
    # structure of Dropout2d, and the identity in eval mode.
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    x = np.ones((4, 5, 3, 3))
    ours, _ = Dropout(p).forward(x, train=True, rng=_rng(0))
    theirs = torch.nn.Dropout(p).train()(torch.tensor(x)).numpy()
    assert set(np.unique(ours)) == set(np.unique(theirs)) == {0.0, 1 / (1 - p)}
    ours2d, _ = Dropout2d(p).forward(x, train=True, rng=_rng(0))
    theirs2d = torch.nn.Dropout2d(p).train()(torch.tensor(x)).numpy()
    for arr in (ours2d, theirs2d):
        assert np.all(arr.reshape(4, 5, -1) == arr.reshape(4, 5, -1)[:, :, :1])
    np.testing.assert_array_equal(Dropout(p).forward(x)[0], torch.nn.Dropout(p).eval()(torch.tensor(x)).numpy())


def test_config_and_repr_round_trip() -> None:
    for layer, rep in [
        (RReLU(0.1, 0.2), "RReLU(lower=0.1, upper=0.2)"),
        (Dropout(0.3), "Dropout(p=0.3)"),
        (Dropout(0.3, scale="notes"), "Dropout(p=0.3, scale='notes')"),
        (Dropout2d(0.2), "Dropout2d(p=0.2)"),
    ]:
        assert repr(layer) == rep
        assert repr(type(layer)(**layer.get_config())) == rep


def test_bad_arguments_raise_informative_errors() -> None:
    for bad in (-0.1, 1.5, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match=r"Dropout\(p=.*\): p is the probability of dropping.*in \[0, 1\]"):
            Dropout(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"pass p=1 - q"):
        Dropout(2.0)
    with pytest.raises(ValueError, match=r"Dropout2d\(p=-1\): p is the probability"):
        Dropout2d(-1)
    with pytest.raises(ValueError, match=r"Dropout\(scale='keep'\): expected 'inverted' .* or 'notes'"):
        Dropout(0.5, scale="keep")
    with pytest.raises(ValueError, match=r"RReLU\(lower=0.5, upper=0.1\): expected finite numbers with lower ≤ upper"):
        RReLU(0.5, 0.1)
    with pytest.raises(ValueError, match=r"RReLU\(lower=inf"):
        RReLU(float("inf"), 1.0)
    with pytest.raises(TypeError, match="rng must be"):
        Dropout(0.5).forward(np.ones((2, 2)), train=True, rng="seed")  # type: ignore[arg-type]
