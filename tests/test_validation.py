"""check_finite: every path (small arrays, the BLAS fast path, its overflow fallback, strided
arrays) finds each NaN/inf and names the first one."""

from __future__ import annotations

import numpy as np
import pytest

from nablanet._validation import check_finite

SIZES = [(7, 3), (400, 300)]  # below and above the small-array threshold


@pytest.mark.parametrize("shape", SIZES, ids=["small", "large"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_each_non_finite_value_is_found(shape, dtype, bad, layout) -> None:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    x[shape[0] // 2, 1] = bad
    arr = {"C": x, "F": np.asfortranarray(x), "strided": np.repeat(x, 2, axis=1)[:, ::2]}[layout]
    with pytest.raises(ValueError, match=rf"1 NaN/inf value\(s\), the first at index \({shape[0] // 2}, 1\)"):
        check_finite(arr, "x")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_finite_values_whose_squares_overflow_pass(dtype) -> None:  # type: ignore[no-untyped-def]
    x = np.full((400, 300), np.finfo(dtype).max / 2, dtype=dtype)
    x[::2] *= -1
    check_finite(x, "x")  # Σx² overflows to inf; the exact test must still accept the data


def test_finite_data_passes_and_integers_are_skipped() -> None:
    check_finite(np.random.default_rng(0).standard_normal((400, 300)), "x")
    check_finite(np.arange(10), "labels")
