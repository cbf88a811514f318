"""Initializers: PyTorch's formulas, seeded reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nablanet as nn
from nablanet import init


def test_linear_default_init_is_pytorchs_bound() -> None:
    layer = nn.Linear(400, 300, rng=0)
    bound = 1 / math.sqrt(400)
    for p in (layer.weight.data, layer.bias.data):
        assert p.min() >= -bound and p.max() <= bound
        assert p.min() < -0.95 * bound and p.max() > 0.95 * bound
    assert layer.weight.data.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)


def test_seeded_init_is_reproducible_and_manual_seed_works() -> None:
    a = nn.Linear(5, 4, rng=3).weight.data
    b = nn.Linear(5, 4, rng=np.random.default_rng(3)).weight.data
    np.testing.assert_array_equal(a, b)
    nn.manual_seed(7)
    c = nn.Linear(5, 4).weight.data
    nn.manual_seed(7)
    d = nn.Linear(5, 4).weight.data
    np.testing.assert_array_equal(c, d)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    "fn,expected_std",
    [
        (lambda w: init.xavier_uniform_(w, rng=0), math.sqrt(2 / (200 + 300))),
        (lambda w: init.xavier_normal_(w, gain=2.0, rng=0), 2 * math.sqrt(2 / (200 + 300))),
        (lambda w: init.kaiming_uniform_(w, nonlinearity="relu", rng=0), math.sqrt(2 / 300)),
        (lambda w: init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu", rng=0), math.sqrt(2 / 200)),
        (lambda w: init.lecun_normal_(w, rng=0), math.sqrt(1 / 300)),
        (lambda w: init.lecun_uniform_(w, rng=0), math.sqrt(1 / 300)),
    ],
)
def test_variance_formulas(fn, expected_std: float) -> None:  # type: ignore[no-untyped-def]
    w = np.zeros((200, 300))
    fn(w)
    assert w.std() == pytest.approx(expected_std, rel=0.02)
    assert abs(w.mean()) < 0.05 * expected_std * 10


def test_xavier_uniform_bound_and_conv_fans() -> None:
    w = nn.Parameter(np.zeros((8, 3, 5, 5)))
    init.xavier_uniform_(w, rng=0)
    a = math.sqrt(6 / (3 * 25 + 8 * 25))
    assert np.abs(w.data).max() <= a
    assert init.calculate_fan_in_and_fan_out(w) == (75, 200)


def test_gains_match_pytorch() -> None:
    torch = pytest.importorskip("torch")
    for name in ["linear", "sigmoid", "tanh", "relu", "selu"]:
        assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(torch.nn.init.calculate_gain("leaky_relu", 0.2))


def test_constant_zeros_ones_keep_dtype() -> None:
    w = np.empty((2, 3), dtype=np.float32)
    init.constant_(w, 0.5)
    assert w.dtype == np.float32 and np.all(w == 0.5)
    init.zeros_(w)
    assert np.all(w == 0)
    init.ones_(w)
    assert np.all(w == 1)


def test_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 axes"):
        init.xavier_uniform_(np.zeros(3))
    with pytest.raises(ValueError, match="unknown nonlinearity 'swish'"):
        init.calculate_gain("swish")
    with pytest.raises(TypeError, match=r"rng must be a numpy\.random\.Generator"):
        init.normal_(np.zeros((2, 2)), rng="seed")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fill an ndarray or Parameter"):
        init.zeros_([1.0, 2.0])  # type: ignore[arg-type]
