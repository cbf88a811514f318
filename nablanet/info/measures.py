"""Entropy, cross entropy and KL divergence of discrete distributions, in any base, with their VJPs.

q is the true distribution and p the estimate, as in H(q, p); both are keyword-only in the two-argument
functions, so the order cannot be confused with ``F.cross_entropy(input, target)``. Categorical
distributions lie along ``axis`` (every other axis is a batch axis); the binary forms take Bernoulli
parameters, the probability of a 1, elementwise, and are the categorical ones on (1 − q, q).

Conventions: 0 · log 0 = 0 (the limit of x log x as x → 0⁺), so a term with qᵢ = 0 adds nothing
whatever pᵢ is; where qᵢ > 0 and pᵢ = 0 the code built for p has no word for outcome i and H(q, p)
and KL(q‖p) are +inf. The base b is 2 (bits, the default), e (nats, what the losses use), 10, or
any number > 0 and ≠ 1: log_b x = ln x / ln b.

The VJPs are the gradients of the formulas with every entry an independent variable (the formulas
are defined off the simplex too); they exist where the derivatives are finite, so each VJP refuses
a point on the boundary (an entry of 0, or of 1 for a Bernoulli parameter) with a message.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nablanet.info._checks import (
    check_axis,
    check_base,
    cotangent,
    log,
    positive,
    probabilities,
    same_shape,
    sums_to_one,
)


# -- the formulas (no checks; the public functions below validate, then call these) -------------------------
def _xlog(x: np.ndarray, y: np.ndarray, base: float) -> np.ndarray:
    """x · log_b y termwise, 0 wherever x = 0 (the 0 · log 0 = 0 convention), −inf where y = 0 < x."""
    pos = x > 0
    with np.errstate(divide="ignore"):
        return np.where(pos, x * log(np.where(pos, y, 1), base), 0)


def _entropy(q: np.ndarray, base: float, axis: int) -> np.ndarray:
    return 0.0 - _xlog(q, q, base).sum(axis=axis)  # 0 − Σ, not −Σ: a certain outcome gives +0.0, not −0.0


def _cross_entropy(q: np.ndarray, p: np.ndarray, base: float, axis: int) -> np.ndarray:
    return 0.0 - _xlog(q, p, base).sum(axis=axis)


def _kl_divergence(q: np.ndarray, p: np.ndarray, base: float, axis: int) -> np.ndarray:
    # ln(q/p) as ln(1 + (q − p)/p): exactly 0 at p = q and no cancellation near it (H(q, p) − H(q) has some)
    pos = q > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log1p((q - p) / np.where(pos, p, 1))
        return np.where(pos, q * log_ratio, 0).sum(axis=axis) / math.log(base)


def _entropy_vjp(dh: np.ndarray, q: np.ndarray, base: float, axis: int) -> np.ndarray:
    return -np.expand_dims(dh, axis) * (log(q, base) + 1 / math.log(base))


def _cross_entropy_vjp(dh: np.ndarray, q: np.ndarray, p: np.ndarray, base: float,
                       axis: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.expand_dims(dh, axis)
    return -d * log(p, base), -d * q / (math.log(base) * p)


def _kl_divergence_vjp(dh: np.ndarray, q: np.ndarray, p: np.ndarray, base: float,
                       axis: int) -> tuple[np.ndarray, np.ndarray]:
    dq_cross, dp = _cross_entropy_vjp(dh, q, p, base, axis)  # KL(q‖p) = H(q, p) − H(q)
    return dq_cross - _entropy_vjp(dh, q, base, axis), dp


def _two_point(x: np.ndarray) -> np.ndarray:
    """A Bernoulli parameter q as the distribution (1 − q, q) on a new last axis."""
    return np.stack([1 - x, x], axis=-1)


def _from_two_point(dx: np.ndarray) -> np.ndarray:
    """The VJP through q ↦ (1 − q, q): dq = d(q)₁ − d(1 − q)₀."""
    return dx[..., 1] - dx[..., 0]


def _out(x: np.ndarray) -> np.ndarray | float:
    return float(x) if x.ndim == 0 else x


# -- checks ------------------------------------------------------------------------------------------------
def _distribution(q: Any, axis: Any, who: str) -> tuple[np.ndarray, int]:
    arr = probabilities(q, "q", who)
    ax = check_axis(axis, arr.ndim, "q", who)
    sums_to_one(arr, ax, "q", who)
    return arr, ax


def _pair(q: Any, p: Any, axis: Any, who: str) -> tuple[np.ndarray, np.ndarray, int]:
    q_arr, p_arr = probabilities(q, "q", who), probabilities(p, "p", who)
    same_shape(q_arr, p_arr, who)
    ax = check_axis(axis, q_arr.ndim, "q", who)
    sums_to_one(q_arr, ax, "q", who)
    sums_to_one(p_arr, ax, "p", who)
    return q_arr, p_arr, ax


def _binary_pair(q: Any, p: Any, who: str) -> tuple[np.ndarray, np.ndarray]:
    q_arr, p_arr = probabilities(q, "q", who, upper=1), probabilities(p, "p", who, upper=1)
    same_shape(q_arr, p_arr, who)
    return q_arr, p_arr


# -- categorical -------------------------------------------------------------------------------------------
def entropy(q: Any, *, base: float = 2, axis: int = -1) -> np.ndarray | float:
    """Entropy H(q) = −Σᵢ qᵢ log_b qᵢ of each distribution q along ``axis``, in bits for base 2.

    The fewest bits per symbol, on average, that any code can spend on symbols drawn from q
    (Shannon's source coding theorem); 0 for a certain outcome, log_b k for k equally likely ones.
    Shapes:  q (*, k, *) with the k outcomes along ``axis``   →   H (*, *) (a float for 1-D q)
    q must be ≥ 0 and sum to 1 along ``axis`` (within √ε of its dtype); 0 · log 0 counts as 0.
    """
    q_arr, ax = _distribution(q, axis, "entropy")
    return _out(_entropy(q_arr, check_base(base, "entropy"), ax))


def cross_entropy(*, q: Any, p: Any, base: float = 2, axis: int = -1) -> np.ndarray | float:
    """Cross entropy H(q, p) = −Σᵢ qᵢ log_b pᵢ: bits per symbol of a code built for p on symbols from q.

    q is the true distribution, p the estimate (keyword-only, so the order cannot be misread).
    H(q, p) ≥ H(q), with equality iff p = q. With q the one-hot label and p a classifier's softmax
    output it is the cross-entropy loss −log_b p_y (nablanet.CrossEntropyLoss in base e).
    Shapes:  q, p (*, k, *) alike, the k outcomes along ``axis``   →   H (*, *) (a float for 1-D)
    +inf where some qᵢ > 0 has pᵢ = 0 (the code has no word for an outcome that occurs).
    """
    q_arr, p_arr, ax = _pair(q, p, axis, "cross_entropy")
    return _out(_cross_entropy(q_arr, p_arr, check_base(base, "cross_entropy"), ax))


def kl_divergence(*, q: Any, p: Any, base: float = 2, axis: int = -1) -> np.ndarray | float:
    """Kullback–Leibler divergence KL(q‖p) = Σᵢ qᵢ log_b(qᵢ/pᵢ) = H(q, p) − H(q).

    The extra bits per symbol paid for coding symbols from q with a code built for p; ≥ 0 (Gibbs'
    inequality, up to rounding) and exactly 0 at p = q (each term is computed as qᵢ ln(1 + (qᵢ − pᵢ)/pᵢ)).
    Shapes:  q, p (*, k, *) alike, the k outcomes along ``axis``   →   KL (*, *) (a float for 1-D)
    +inf where some qᵢ > 0 has pᵢ = 0.
    """
    q_arr, p_arr, ax = _pair(q, p, axis, "kl_divergence")
    return _out(_kl_divergence(q_arr, p_arr, check_base(base, "kl_divergence"), ax))


def entropy_vjp(dh: Any, q: Any, *, base: float = 2, axis: int = -1) -> np.ndarray | float:
    """VJP of ``entropy``: dq = ∂L/∂q given dh = ∂L/∂H.

    Forward: H = −Σᵢ qᵢ log_b qᵢ        VJP: dqᵢ = −dh (log_b qᵢ + 1/ln b)
    Shapes:  q (*, k, *)   dh like H (q's shape without ``axis``)   dq like q
    Needs every qᵢ > 0 (the slope of −q log q is +∞ at q = 0).
    """
    q_arr, ax = _distribution(q, axis, "entropy_vjp")
    positive(q_arr, "q", "entropy_vjp")
    d = cotangent(dh, q_arr.shape[:ax] + q_arr.shape[ax + 1:], "entropy_vjp")
    return _out(_entropy_vjp(d, q_arr, check_base(base, "entropy_vjp"), ax))


def cross_entropy_vjp(dh: Any, *, q: Any, p: Any, base: float = 2,
                      axis: int = -1) -> tuple[np.ndarray | float, np.ndarray | float]:
    """VJP of ``cross_entropy``: (dq, dp) given dh = ∂L/∂H.

    Forward: H = −Σᵢ qᵢ log_b pᵢ
    VJP:     dqᵢ = −dh log_b pᵢ      dpᵢ = −dh qᵢ / (pᵢ ln b)
    Shapes:  q, p (*, k, *)   dh like H (their shape without ``axis``)   dq, dp like q
    Needs every pᵢ > 0 (log pᵢ and 1/pᵢ are infinite at 0).
    """
    q_arr, p_arr, ax = _pair(q, p, axis, "cross_entropy_vjp")
    positive(p_arr, "p", "cross_entropy_vjp")
    d = cotangent(dh, q_arr.shape[:ax] + q_arr.shape[ax + 1:], "cross_entropy_vjp")
    dq, dp = _cross_entropy_vjp(d, q_arr, p_arr, check_base(base, "cross_entropy_vjp"), ax)
    return _out(dq), _out(dp)


def kl_divergence_vjp(dh: Any, *, q: Any, p: Any, base: float = 2,
                      axis: int = -1) -> tuple[np.ndarray | float, np.ndarray | float]:
    """VJP of ``kl_divergence``: (dq, dp) given dh = ∂L/∂KL.

    Forward: KL = Σᵢ qᵢ log_b(qᵢ/pᵢ)
    VJP:     dqᵢ = dh (log_b(qᵢ/pᵢ) + 1/ln b)      dpᵢ = −dh qᵢ / (pᵢ ln b)
    Shapes:  q, p (*, k, *)   dh like KL (their shape without ``axis``)   dq, dp like q
    Needs every qᵢ > 0 and pᵢ > 0.
    """
    q_arr, p_arr, ax = _pair(q, p, axis, "kl_divergence_vjp")
    positive(q_arr, "q", "kl_divergence_vjp")
    positive(p_arr, "p", "kl_divergence_vjp")
    d = cotangent(dh, q_arr.shape[:ax] + q_arr.shape[ax + 1:], "kl_divergence_vjp")
    dq, dp = _kl_divergence_vjp(d, q_arr, p_arr, check_base(base, "kl_divergence_vjp"), ax)
    return _out(dq), _out(dp)


# -- binary: a Bernoulli parameter q (the probability of a 1) is the distribution (1 − q, q) ------------------
def binary_entropy(q: Any, *, base: float = 2) -> np.ndarray | float:
    """Entropy of a Bernoulli(q) source, elementwise: H(q) = −q log_b q − (1 − q) log_b(1 − q).

    H(0) = H(1) = 0, H(½) = 1 bit, H(q) = H(1 − q), and H(q) ≤ 1 bit: at most one bit per symbol.
    Shapes:  q any shape, entries in [0, 1]   →   H like q (a float for a scalar)
    """
    q_arr = probabilities(q, "q", "binary_entropy", upper=1)
    return _out(_entropy(_two_point(q_arr), check_base(base, "binary_entropy"), -1))


def binary_cross_entropy(*, q: Any, p: Any, base: float = 2) -> np.ndarray | float:
    """Binary cross entropy H(q, p) = −q log_b p − (1 − q) log_b(1 − p), elementwise.

    With q = y ∈ {0, 1} the label and p the predicted probability of a 1 it is the two-class
    cross-entropy loss ℓ(y, p) (nablanet.BCELoss in base e): ℓ(1, p) = ℓ(0, 1 − p), the two curves
    meeting at ℓ(1, ½) = ℓ(0, ½) = 1 bit, and ℓ(1, p) → ∞ as p → 0 (+inf at p = 0).
    Shapes:  q, p alike, entries in [0, 1]   →   H like q (a float for scalars)
    """
    q_arr, p_arr = _binary_pair(q, p, "binary_cross_entropy")
    return _out(_cross_entropy(_two_point(q_arr), _two_point(p_arr), check_base(base, "binary_cross_entropy"), -1))


def binary_kl_divergence(*, q: Any, p: Any, base: float = 2) -> np.ndarray | float:
    """KL(q‖p) = q log_b(q/p) + (1 − q) log_b((1 − q)/(1 − p)) between Bernoulli(q) and Bernoulli(p), elementwise.

    Shapes:  q, p alike, entries in [0, 1]   →   KL like q (a float for scalars)
    """
    q_arr, p_arr = _binary_pair(q, p, "binary_kl_divergence")
    return _out(_kl_divergence(_two_point(q_arr), _two_point(p_arr), check_base(base, "binary_kl_divergence"), -1))


def binary_entropy_vjp(dh: Any, q: Any, *, base: float = 2) -> np.ndarray | float:
    """VJP of ``binary_entropy``: dq given dh = ∂L/∂H.

    Forward: H = −q log_b q − (1 − q) log_b(1 − q)        VJP: dq = dh log_b((1 − q)/q)
    Shapes:  q, dh, dq alike.   Needs 0 < q < 1.
    """
    q_arr = probabilities(q, "q", "binary_entropy_vjp", upper=1)
    positive(q_arr, "q", "binary_entropy_vjp", below_one=True)
    d = cotangent(dh, q_arr.shape, "binary_entropy_vjp")
    return _out(_from_two_point(_entropy_vjp(d, _two_point(q_arr), check_base(base, "binary_entropy_vjp"), -1)))


def binary_cross_entropy_vjp(dh: Any, *, q: Any, p: Any,
                             base: float = 2) -> tuple[np.ndarray | float, np.ndarray | float]:
    """VJP of ``binary_cross_entropy``: (dq, dp) given dh = ∂L/∂H.

    Forward: H = −q log_b p − (1 − q) log_b(1 − p)
    VJP:     dq = dh log_b((1 − p)/p)      dp = dh (p − q) / (p (1 − p) ln b)
    Shapes:  q, p, dh, dq, dp alike.   Needs 0 < p < 1.
    """
    q_arr, p_arr = _binary_pair(q, p, "binary_cross_entropy_vjp")
    positive(p_arr, "p", "binary_cross_entropy_vjp", below_one=True)
    d = cotangent(dh, q_arr.shape, "binary_cross_entropy_vjp")
    b = check_base(base, "binary_cross_entropy_vjp")
    dq, dp = _cross_entropy_vjp(d, _two_point(q_arr), _two_point(p_arr), b, -1)
    return _out(_from_two_point(dq)), _out(_from_two_point(dp))


def binary_kl_divergence_vjp(dh: Any, *, q: Any, p: Any,
                             base: float = 2) -> tuple[np.ndarray | float, np.ndarray | float]:
    """VJP of ``binary_kl_divergence``: (dq, dp) given dh = ∂L/∂KL.

    Forward: KL = q log_b(q/p) + (1 − q) log_b((1 − q)/(1 − p))
    VJP:     dq = dh [log_b(q/(1 − q)) − log_b(p/(1 − p))]      dp = dh (p − q) / (p (1 − p) ln b)
    Shapes:  q, p, dh, dq, dp alike.   Needs 0 < q < 1 and 0 < p < 1.
    """
    q_arr, p_arr = _binary_pair(q, p, "binary_kl_divergence_vjp")
    positive(q_arr, "q", "binary_kl_divergence_vjp", below_one=True)
    positive(p_arr, "p", "binary_kl_divergence_vjp", below_one=True)
    d = cotangent(dh, q_arr.shape, "binary_kl_divergence_vjp")
    b = check_base(base, "binary_kl_divergence_vjp")
    dq, dp = _kl_divergence_vjp(d, _two_point(q_arr), _two_point(p_arr), b, -1)
    return _out(_from_two_point(dq)), _out(_from_two_point(dp))
