"""Measured fast variants equal their references to float64 precision on random inputs.

Each variant (nablanet/layers/kernels/, nablanet/losses/kernels.py) is compared with the reference it
replaces, on the cases it covers and on the cases it hands back to the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nablanet.losses import CrossEntropyLoss
from nablanet.losses.base import _TERMS_KERNELS
from nablanet.losses.kernels import cross_entropy_class_indices


class _ReferenceCrossEntropy(CrossEntropyLoss):
    """A subclass: the dispatch runs variants for exact types only, so this one runs the reference."""


def _assert_float64_equal(a: Any, b: Any) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("n,c", [(1, 1), (1, 7), (10, 10), (128, 10), (33, 1000)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_class_indices_equals_the_reference(n: int, c: int, reduction: str) -> None:
    assert _TERMS_KERNELS[CrossEntropyLoss] is cross_entropy_class_indices
    rng = np.random.default_rng(n * c)
    z = 3 * rng.standard_normal((n, c))
    y = rng.integers(0, c, n)
    fast, ref = CrossEntropyLoss(reduction=reduction), _ReferenceCrossEntropy(reduction=reduction)
    (v1, c1), (v2, c2) = fast.forward(z, y), ref.forward(z, y)
    # the cache is the reference's, field by field: the VJP and the lab's curvature rules read it
    assert type(c1.aux) is type(c2.aux)
    for a, b in zip(c1.aux, c2.aux, strict=True):
        _assert_float64_equal(a, b)
    _assert_float64_equal(v1, v2)
    _assert_float64_equal(c1.terms, c2.terms)
    assert c1.normalizer == c2.normalizer
    dvalue = rng.standard_normal(n) if reduction == "none" else 0.7
    _assert_float64_equal(fast.vjp(c1, dvalue), ref.vjp(c2, dvalue))
    _assert_float64_equal(fast.per_sample(c1), ref.per_sample(c2))
    _assert_float64_equal(fast.per_sample_vjp(c1), ref.per_sample_vjp(c2))


def test_cross_entropy_class_indices_is_exact_for_saturated_logits() -> None:
    z = np.array([[1000.0, 0.0, -1000.0], [0.0, 800.0, 0.0]])
    y = np.array([2, 1])
    fast, ref = CrossEntropyLoss(reduction="none"), _ReferenceCrossEntropy(reduction="none")
    (v1, c1), (v2, c2) = fast.forward(z, y), ref.forward(z, y)
    _assert_float64_equal(v1, v2)
    _assert_float64_equal(fast.vjp(c1), ref.vjp(c2))


def test_cross_entropy_class_indices_float32_matches_the_reference() -> None:
    rng = np.random.default_rng(5)
    z = rng.standard_normal((64, 10)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    (v1, c1), (v2, c2) = CrossEntropyLoss().forward(z, y), _ReferenceCrossEntropy().forward(z, y)
    d1, d2 = CrossEntropyLoss().vjp(c1), _ReferenceCrossEntropy().vjp(c2)
    assert d1.dtype == d2.dtype == np.float32
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
    np.testing.assert_allclose(d1, d2, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("make,target", [
    (lambda: CrossEntropyLoss(weight=np.arange(1.0, 5.0)), lambda rng: rng.integers(0, 4, 6)),
    (lambda: CrossEntropyLoss(label_smoothing=0.2), lambda rng: rng.integers(0, 4, 6)),
    (lambda: CrossEntropyLoss(ignore_index=2), lambda rng: np.array([0, 2, 1, 3, 2, 0])),
    (lambda: CrossEntropyLoss(), lambda rng: np.array([0, -100, 1, 3, 2, 0])),
    (lambda: CrossEntropyLoss(), lambda rng: rng.dirichlet(np.ones(4), 6)),
], ids=["weight", "smoothing", "ignored_in_range", "ignored_default", "probabilities"])
def test_cross_entropy_class_indices_hands_other_cases_to_the_reference(make: Any, target: Any) -> None:
    rng = np.random.default_rng(1)
    loss = make()
    z = rng.standard_normal((6, 4))
    t = loss._prepare_target(z, target(rng))
    terms, aux = cross_entropy_class_indices(loss, z, t)
    ref_terms, ref_aux = loss._terms(z, t)
    np.testing.assert_array_equal(terms, ref_terms)
    for a, b in zip(aux, ref_aux, strict=True):
        np.testing.assert_array_equal(a, b)


def test_cross_entropy_class_indices_hands_k_dimensional_inputs_to_the_reference() -> None:
    rng = np.random.default_rng(2)
    z = rng.standard_normal((3, 4, 5))
    y = rng.integers(0, 4, (3, 5))
    (v1, c1), (v2, c2) = CrossEntropyLoss().forward(z, y), _ReferenceCrossEntropy().forward(z, y)
    assert v1 == v2
    np.testing.assert_array_equal(CrossEntropyLoss().vjp(c1), _ReferenceCrossEntropy().vjp(c2))
