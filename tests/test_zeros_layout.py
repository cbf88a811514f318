"""The shared zero views behind ReLU's SIMD path: zeros, read-only, laid out like the input."""

from __future__ import annotations

import numpy as np
import pytest

import nablanet as nn
from nablanet.layers._zeros import zeros_like_layout


@pytest.mark.parametrize("make", [
    lambda a: a,
    lambda a: a.transpose(0, 2, 3, 1),
    lambda a: np.asfortranarray(a),
    lambda a: a[:1],
], ids=["C", "permuted", "F", "slice"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_view_shares_the_layout_and_cannot_be_written(make, dtype) -> None:  # type: ignore[no-untyped-def]
    x = make(np.random.default_rng(0).standard_normal((3, 4, 5, 6)).astype(dtype))
    z = zeros_like_layout(x)
    assert isinstance(z, np.ndarray)
    assert z.shape == x.shape and z.strides == x.strides and z.dtype == x.dtype
    assert not z.any()
    with pytest.raises(ValueError, match="read-only"):
        z[(0,) * z.ndim] = 1
    np.testing.assert_array_equal(np.maximum(x, z), np.maximum(x, 0))


def test_layouts_with_gaps_or_broadcasts_fall_back_to_the_scalar() -> None:
    a = np.ones((4, 6))
    assert zeros_like_layout(a[:, ::2]) == 0
    assert zeros_like_layout(a[::-1]) == 0
    assert zeros_like_layout(np.broadcast_to(np.ones(3), (4, 3))) == 0
    assert zeros_like_layout(np.ones((0, 3))) == 0


def test_a_larger_array_grows_the_buffer_and_old_views_stay_zero() -> None:
    small = zeros_like_layout(np.ones(10, dtype=np.float32))
    big = zeros_like_layout(np.ones((1000, 1000), dtype=np.float32))
    assert isinstance(small, np.ndarray) and isinstance(big, np.ndarray)
    assert not small.any() and not big.any()


def test_relu_matches_the_scalar_maximum_on_special_values() -> None:
    x = np.array([np.nan, -0.0, 0.0, -np.inf, np.inf, -1.5, 2.5], dtype=np.float32)
    y = nn.ReLU().forward(x[None])[0][0]
    want = np.maximum(x, 0)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(np.signbit(y), np.signbit(want))
