"""Name the mistake when a gradient is wrong: a constant factor, a sign, a transpose, a batch axis.

A wrong VJP is rarely wrong at random. A forgotten factor makes the result a constant multiple of
the right one (2, ½, −1), a transposed weight gradient equals the right one transposed, a forgotten
batch sum leaves an extra axis of length N in front. These helpers compare what a VJP returned with
what it should have returned and say which of these it looks like, so that a check's message can
teach ("about −1× the right value: a wrong sign?") rather than only report an error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_FACTOR_RTOL = 1e-4
"""got is "k times want" when ‖got − k·want‖ ≤ this × ‖got‖ (finite differences give ~1e-8)."""

_NAMED = ((-1.0, "a wrong sign?"), (2.0, "an extra factor of 2?"), (0.5, "a missing factor of 2?"),
          (-2.0, "a wrong sign and an extra factor of 2?"), (-0.5, "a wrong sign and a missing factor of 2?"))


def constant_factor(got: Any, want: Any) -> float | None:
    """k when ``got`` ≈ k · ``want`` for one constant k ≠ 1 (least squares, residual checked), else None."""
    g = np.asarray(got, dtype=np.float64).reshape(-1)
    w = np.asarray(want, dtype=np.float64).reshape(-1)
    if g.shape != w.shape or g.size < 1:
        return None
    ww = float(w @ w)
    gg = float(g @ g)
    if ww == 0.0 or gg == 0.0:
        return None
    k = float(g @ w) / ww
    if float(np.linalg.norm(g - k * w)) > _FACTOR_RTOL * np.sqrt(gg) or abs(k - 1.0) < _FACTOR_RTOL:
        return None
    return k


def factor_hint(got: Any, want: Any, n: int | None = None) -> str:
    """A sentence naming the likely mistake when ``got`` should equal ``want``, or "".

    ``n`` is the batch size where a batch sum or mean may be involved. Recognised: a constant
    factor (−1, 2, ½, N, 1/N or any other), the transpose of the right matrix, all zeros.
    """
    g, w = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if g.shape != w.shape:
        return ""
    if g.size and not np.any(g) and np.any(w):
        return " It is zero everywhere: a term (dy, or the parameter's own path) is missing."
    if g.ndim == 2 and g.shape[0] == g.shape[1] and g.shape[0] > 1 and np.allclose(g.T, w, rtol=1e-5, atol=1e-12) \
            and not np.allclose(g, w, rtol=1e-5, atol=1e-12):
        return " It equals the right gradient transposed: check the order of the factors (dW = dyᵀ x for y = x Wᵀ)."
    k = constant_factor(g, w)
    if k is None:
        return ""
    return ratio_hint(k, n) or f" It is a constant {k:.4g}× the right value: a constant factor is wrong."


def passthrough_hint(got: Any, want: Any, dy: Any) -> str:
    """The sentence for an input gradient that is ``dy`` passed through unchanged where ``want`` is not, or ""."""
    g, w, d = (np.asarray(a, dtype=np.float64) for a in (got, want, dy))
    if g.shape != d.shape or g.shape != w.shape or not np.allclose(g, d, rtol=1e-10, atol=0.0) \
            or np.allclose(w, d, rtol=1e-5, atol=1e-12):
        return ""
    return (" It is dy passed through unchanged: the layer's own derivative is missing (an activation f gives "
            "dx = dy ⊙ f′(x), e.g. σ′(x) = σ(x)(1 − σ(x))).")


def missing_factor_hint(got: Any, want: Any, factors: dict[str, Any]) -> str:
    """The sentence for ``got`` that times one of ``factors`` (name: array) would be ``want``, or ""."""
    g, w = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    for name, factor in factors.items():
        fixed = g * np.asarray(factor, dtype=np.float64)
        if fixed.shape == w.shape and np.allclose(fixed, w, rtol=1e-8, atol=1e-12) and not np.allclose(g, w):
            return f" It lacks the factor {name}: multiply by it."
    return ""


def ratio_hint(k: float, n: int | None = None) -> str:
    """The sentence for a ratio got/want ≈ ``k`` that names a mistake (−1, 2, ½, N, 1/N), or ""."""
    for value, meaning in _NAMED:
        if abs(k - value) <= 1e-3 * abs(value):
            return f" It is about {value:g}× the right value: {meaning}"
    if n is not None and n > 1:
        if abs(k - n) <= 1e-3 * n:
            return f" It is about N = {n} times the right value: a sum over the batch where a mean belongs?"
        if abs(k - 1.0 / n) <= 1e-3 / n:
            return f" It is about 1/N = 1/{n} of the right value: a mean over the batch where a sum belongs?"
    return ""


def shape_hint(got: tuple[int, ...], want: tuple[int, ...], n: int | None = None) -> str:
    """A sentence naming the likely mistake when an array of shape ``got`` should have ``want``, or ""."""
    got, want = tuple(got), tuple(want)
    if got == want:
        return ""
    if n is not None and got == (n, *want):
        return f" The extra leading axis has the batch size N = {n}: sum over the samples (axis 0)."
    if n is not None and want == (n, *got):
        return (f" The batch axis N = {n} is missing in front: with per_sample=True keep each sample's term "
                "instead of summing over the batch.")
    if len(got) == len(want) == 2 and got == want[::-1]:
        return " It is the right shape transposed: check the order of the factors (dW = dyᵀ x for y = x Wᵀ)."
    if len(got) == len(want) >= 3 and got[:2] == want[:2] and all(g >= w for g, w in zip(got, want, strict=True)):
        extra = tuple(g - w for g, w in zip(got[2:], want[2:], strict=True))
        return f" It is larger by {extra} on the spatial axes: is the padding still on (crop it off)?"
    if len(got) > len(want) and got[len(got) - len(want):] == want:
        return f" The leading axes {got[:len(got) - len(want)]} are extra: sum them away, or are they vector axes?"
    return ""
