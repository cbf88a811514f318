"""Binary cross-entropy on probabilities (BCELoss) and on logits (BCEWithLogitsLoss), as in PyTorch."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from nablanet._validation import as_numeric_array, check_finite
from nablanet.layers.activations import sigmoid
from nablanet.losses.base import Loss

# PyTorch clamps log x at −100 so that x = 0 or 1 gives a finite loss, and floors the denominator
# x(1 − x) of BCELoss's gradient at 1e-12; both are kept so values and gradients match it exactly.
# PyTorch's 1e-12 is a C float, so the floor is float32(1e-12) ≈ 9.999999996e-13 even in float64.
_LOG_FLOOR = -100.0
_GRAD_EPS = float(np.float32(1e-12))


def _optional_array(value: Any, name: str) -> np.ndarray | None:
    if value is None:
        return None
    arr = as_numeric_array(value, name).astype(np.float64)
    check_finite(arr, name)
    return arr


def _broadcast_to_input(arr: np.ndarray | None, x: np.ndarray, name: str, who: str) -> np.ndarray:
    """``arr`` in the input's dtype, checked to broadcast to the input's shape (1 if None)."""
    if arr is None:
        return np.ones((), dtype=x.dtype)
    try:
        ok = np.broadcast_shapes(arr.shape, x.shape) == x.shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{who} got {name}.shape={arr.shape}, which does not broadcast to input.shape={x.shape}; expected "
            f"a shape that broadcasts against the input's trailing axes, e.g. ({x.shape[-1]},) for one value "
            f"per class on the last axis, or {x.shape}. Fix: reshape {name} or pass {name}=None."
        )
    return arr.astype(x.dtype)


class _BCECache(NamedTuple):
    x: np.ndarray
    y: np.ndarray
    w: np.ndarray


class BCELoss(Loss):
    """Binary cross-entropy on probabilities, PyTorch's ``BCELoss`` (pair it with Sigmoid).

    Input x ∈ [0, 1] and target y, both (N, *); weight w broadcasts to (N, *) (1 if None).

    Terms:   ℓ = −w [y max(log x, −100) + (1 − y) max(log(1 − x), −100)]
    Reduce:  "mean" L = Σ ℓ / (number of terms)   "sum" L = Σ ℓ   "none" ℓ
    VJP:     dx = w (x − y) / max(x (1 − x), 10⁻¹²) · dℓ    (PyTorch's formula: finite at x = 0, 1)
    For logits prefer BCEWithLogitsLoss: it never forms x = σ(z), so it is stable for large |z|.
    """

    def __init__(self, weight: Any = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.weight = _optional_array(weight, "weight")

    def _terms(self, input: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, _BCECache]:
        outside = np.argwhere((input < 0) | (input > 1))
        if len(outside):
            first = tuple(int(i) for i in outside[0])
            raise ValueError(
                f"BCELoss got {len(outside)} input value(s) outside [0, 1], the first {input[first]} at index "
                f"{first}; expected probabilities in [0, 1]. Fix: apply Sigmoid first, or pass the logits to "
                "BCEWithLogitsLoss (more stable)."
            )
        w = _broadcast_to_input(self.weight, input, "weight", "BCELoss")
        with np.errstate(divide="ignore"):
            log_x = np.maximum(np.log(input), _LOG_FLOOR)
            log_1mx = np.maximum(np.log(1 - input), _LOG_FLOOR)
        terms = w * ((target - 1) * log_1mx - target * log_x)
        return terms, _BCECache(input, target, w)

    def _terms_vjp(self, aux: _BCECache, dterms: np.ndarray) -> np.ndarray:
        x, y = aux.x, aux.y
        return aux.w * (x - y) / np.maximum((1 - x) * x, _GRAD_EPS) * dterms

    def extra_repr(self) -> str:
        return ("" if self.weight is None else "weight=..., ") + f"reduction={self.reduction!r}"


class _LogitsCache(NamedTuple):
    sigma: np.ndarray  # σ(x)
    y: np.ndarray
    w: np.ndarray
    pos_w: np.ndarray


class BCEWithLogitsLoss(Loss):
    """Sigmoid + binary cross-entropy on logits, PyTorch's ``BCEWithLogitsLoss``.

    Input logits x and target y, both (N, *); weight w broadcasts to (N, *); pos_weight p weights
    the positive term and broadcasts over the trailing axes, e.g. (C,) for one weight per class on
    the last axis (both 1 if None).

    Terms:   ℓ = w [(1 − y) x + (1 + (p − 1) y) softplus(−x)]
                = −w [p y log σ(x) + (1 − y) log(1 − σ(x))]
             with softplus(−x) = log(1 + e^(−|x|)) + max(−x, 0), finite for every x.
    Reduce:  "mean" L = Σ ℓ / (number of terms)   "sum" L = Σ ℓ   "none" ℓ
    VJP:     dx = w [(1 + (p − 1) y) σ(x) − p y] · dℓ    (= w (σ(x) − y) dℓ without pos_weight)
    """

    def __init__(self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None) -> None:
        super().__init__(reduction)
        self.weight = _optional_array(weight, "weight")
        self.pos_weight = _optional_array(pos_weight, "pos_weight")

    def _terms(self, input: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, _LogitsCache]:
        w = _broadcast_to_input(self.weight, input, "weight", "BCEWithLogitsLoss")
        pos_w = _broadcast_to_input(self.pos_weight, input, "pos_weight", "BCEWithLogitsLoss")
        softplus_neg = np.log1p(np.exp(-np.abs(input))) + np.maximum(-input, 0)
        terms = w * ((1 - target) * input + (1 + (pos_w - 1) * target) * softplus_neg)
        return terms, _LogitsCache(sigmoid(input), target, w, pos_w)

    def _terms_vjp(self, aux: _LogitsCache, dterms: np.ndarray) -> np.ndarray:
        y, p = aux.y, aux.pos_w
        return aux.w * ((1 + (p - 1) * y) * aux.sigma - p * y) * dterms

    def extra_repr(self) -> str:
        parts = [] if self.weight is None else ["weight=..."]
        parts.append(f"reduction={self.reduction!r}")
        return ", ".join(parts + ([] if self.pos_weight is None else ["pos_weight=..."]))
