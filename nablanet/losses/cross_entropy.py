"""Cross-entropy on logits and negative log-likelihood on log-probabilities (PyTorch's CrossEntropyLoss
and NLLLoss), with class weights, ignore_index, label smoothing and K-dimensional inputs.

Both losses reduce to one form. With an *effective target* r along the class axis,

    ℓ = −Σ_c r_c s_c,

where s is log softmax(z) for CrossEntropyLoss and the input itself for NLLLoss. Every option only
changes r, so one VJP serves them all.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from nablanet._validation import as_numeric_array, check_finite
from nablanet.layers.softmax import log_softmax
from nablanet.losses.base import Loss


class _CECache(NamedTuple):
    r: np.ndarray  # effective target (N, C, *)
    r_sum: np.ndarray  # Σ_c r_c (N, 1, *)
    p: np.ndarray  # softmax(z) (N, C, *)
    z: float  # the mean reduction's normalizer


class _NLLCache(NamedTuple):
    r: np.ndarray  # w_y ⊙ onehot(y) (N, C, *)
    z: float


# -- checks shared by both losses -------------------------------------------------------------------
def _class_weight(weight: Any, who: str) -> np.ndarray | None:
    if weight is None:
        return None
    w = as_numeric_array(weight, "weight")
    if w.ndim != 1 or w.size == 0:
        raise ValueError(
            f"{who} got weight.shape={w.shape}; expected a 1-D array with one rescaling weight per class, "
            "shape (C,). Fix: pass weight=np.array([w_0, ..., w_{C-1}]) or weight=None."
        )
    w = w.astype(np.float64)
    check_finite(w, "weight")
    return w


def _ignore_index(ignore_index: Any, who: str) -> int:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int | np.integer):
        raise TypeError(
            f"{who}(ignore_index={ignore_index!r}): expected an int (a class index that never occurs "
            "or the label to skip). Fix: pass e.g. ignore_index=-100 (the default)."
        )
    return int(ignore_index)


def _check_input(who: str, x: np.ndarray, weight: np.ndarray | None) -> None:
    if x.ndim < 2:
        raise ValueError(
            f"{who} got input.shape={x.shape}; expected scores of shape (N, C) or (N, C, d1, ...) with the "
            "class axis second. For a single sample add a batch axis: input[None], target[None]."
        )
    if weight is not None and weight.size != x.shape[1]:
        raise ValueError(
            f"{who} got weight with {weight.size} entries but input.shape={x.shape} has C={x.shape[1]} "
            f"classes on axis 1; expected one weight per class. Fix: pass weight of shape ({x.shape[1]},)."
        )


def _class_indices(who: str, x: np.ndarray, t: np.ndarray, ignore_index: int, probs_ok: bool) -> np.ndarray:
    """``t`` as int64 class indices of shape (N, d1, ...), every one in [0, C) or ignore_index."""
    n_classes = x.shape[1]
    index_shape = (x.shape[0], *x.shape[2:])
    if t.shape != index_shape:
        alt = f" or class probabilities of the input's shape {x.shape}" if probs_ok else ""
        if not probs_ok and t.shape == x.shape:
            alt = " (for probability targets use CrossEntropyLoss on logits)"
        raise ValueError(
            f"{who} got input.shape={x.shape} and target.shape={t.shape}; expected class indices of shape "
            f"{index_shape} (one integer per sample{' and position' if x.ndim > 2 else ''}){alt}. "
            f"Fix: pass integer labels of shape {index_shape}, e.g. target.reshape({index_shape})."
        )
    if t.dtype.kind == "f":
        check_finite(t, "target")
        frac = np.argwhere(t != np.round(t))
        if len(frac):
            first = tuple(int(i) for i in frac[0])
            raise ValueError(
                f"{who} got a class-index target with {len(frac)} fractional value(s), the first "
                f"{t[first]} at index {first}; expected integer class indices in [0, {n_classes}). "
                "Fix: pass integer labels, e.g. target.astype(np.int64)"
                + (f", or probabilities of the input's shape {x.shape}." if probs_ok else ".")
            )
    idx = t.astype(np.int64)
    if idx.size and 0 <= idx.min() and idx.max() < n_classes:  # the common case, without a mask
        return idx
    bad = np.argwhere((idx != ignore_index) & ((idx < 0) | (idx >= n_classes)))
    if len(bad):
        first = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"{who} got class index {idx[first]} at target index {first} ({len(bad)} out of range in all); "
            f"expected indices in [0, {n_classes}) for input.shape={x.shape}, or ignore_index={ignore_index}. "
            "Fix: relabel the classes to 0..C-1, or set ignore_index to the label to skip."
        )
    return idx


def _class_axis(v: np.ndarray, ndim: int) -> np.ndarray:
    """A per-class vector (C,) shaped (1, C, 1, ...) to broadcast along axis 1 of an ndim-D input."""
    return v.reshape((1, v.size) + (1,) * (ndim - 2))


def _onehot(idx: np.ndarray, n_classes: int, ignore_index: int) -> np.ndarray:
    """[c = yₙ] as a bool array (N, C, d1, ...) with the class axis 1; a zero row where yₙ = ignore_index."""
    classes = _class_axis(np.arange(n_classes), idx.ndim + 1)
    return (idx[:, None] == classes) & (classes != ignore_index)


def _along_classes(dterms: np.ndarray) -> np.ndarray:
    """``dterms`` (a scalar or the terms' shape (N, d1, ...)) broadcastable over (N, C, d1, ...)."""
    return dterms[:, None] if dterms.ndim else dterms


# -- the losses -------------------------------------------------------------------------------------
class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits, PyTorch's ``CrossEntropyLoss``.

    Input z (N, C) or (N, C, d1, ...) of logits; target either class indices y (N,) / (N, d1, ...)
    (any integer dtype, or floats with integral values) or class probabilities q of the input's shape.
    With class weights w (C,) (ones if None), smoothing ε and C classes, the effective target is

        indices:        r_c = (1 − ε) w_y [c = y] + (ε/C) w_c,   r = 0 where y = ignore_index
        probabilities:  r_c = w_c ((1 − ε) q_c + ε/C)

    Terms:   ℓₙ = −Σ_c r_nc log softmax(zₙ)_c                      (N,) or (N, d1, ...)
    Reduce:  "mean" L = Σ ℓ / Z with Z = Σₙ w_{yₙ} over non-ignored targets (their count if
             weight is None; PyTorch divides the smoothing term by the same Z) for indices, and
             Z = number of terms for probabilities;   "sum" L = Σ ℓ;   "none" ℓ
    VJP:     dz_nc = (softmax(zₙ)_c Σ_c' r_nc' − r_nc) · dℓₙ    (fused: no log-of-softmax chain, so
             it stays exact for saturated logits); unweighted probabilities give softmax(z) − q
    Per-sample: ℓₙ scaled by N/Z (see losses.base), so L = mean(ℓ) also with weights or ignored rows.
    """

    def __init__(
        self,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(reduction)
        name = type(self).__name__
        self.weight = _class_weight(weight, name)
        self.ignore_index = _ignore_index(ignore_index, name)
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, int | float | np.integer | np.floating):
            raise TypeError(
                f"{name}(label_smoothing={label_smoothing!r}): expected a float in [0.0, 1.0]. "
                "Fix: pass e.g. label_smoothing=0.1, or 0.0 for none."
            )
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ValueError(
                f"{name}(label_smoothing={label_smoothing!r}): expected a float in [0.0, 1.0] (the share of "
                "the target spread uniformly over the classes). Fix: pass e.g. label_smoothing=0.1."
            )
        self.label_smoothing = float(label_smoothing)

    def _prepare_target(self, input: np.ndarray, target: Any) -> np.ndarray:
        name = type(self).__name__
        _check_input(name, input, self.weight)
        t = as_numeric_array(target, "target")
        if t.shape == input.shape:
            t = t.astype(input.dtype, copy=False)
            check_finite(t, "target")
            return t
        return _class_indices(name, input, t, self.ignore_index, probs_ok=True)

    def _terms(self, input: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, _CECache]:
        n_classes, eps = input.shape[1], self.label_smoothing
        w = _class_axis(np.ones(n_classes) if self.weight is None else self.weight, input.ndim).astype(input.dtype)
        if target.shape == input.shape:  # probabilities q
            q, kept, z = target, 1.0, float(target.size // n_classes)
        else:  # indices: q = onehot(y), kept = Σ_c q_c is 0 on ignored rows
            q = _onehot(target, n_classes, self.ignore_index)
            kept = q.sum(axis=1, keepdims=True)
            z = float((w * q).sum(dtype=np.float64))  # Σₙ w_{yₙ} over the rows kept
        r = (w * ((1 - eps) * q + (eps / n_classes) * kept)).astype(input.dtype, copy=False)
        log_p = log_softmax(input, axis=1)
        terms = -(r * log_p).sum(axis=1)
        return terms, _CECache(r, r.sum(axis=1, keepdims=True), np.exp(log_p), z)

    def _terms_vjp(self, aux: _CECache, dterms: np.ndarray) -> np.ndarray:
        return (aux.p * aux.r_sum - aux.r) * _along_classes(dterms)

    def _normalizer(self, terms: np.ndarray, aux: _CECache) -> float:
        return aux.z

    def extra_repr(self) -> str:
        parts = [] if self.weight is None else [f"weight={self.weight.tolist()}"]
        parts += [f"ignore_index={self.ignore_index}", f"reduction={self.reduction!r}"]
        return ", ".join([*parts, f"label_smoothing={self.label_smoothing}"])


class NLLLoss(Loss):
    """Negative log-likelihood on log-probabilities, PyTorch's ``NLLLoss`` (pair it with LogSoftmax(dim=1)).

    Input s (N, C) or (N, C, d1, ...) of log-probabilities; target class indices y (N,) / (N, d1, ...);
    class weights w (C,) (ones if None).

    Terms:   ℓₙ = −w_{yₙ} s_{n,yₙ}    (0 where yₙ = ignore_index)          (N,) or (N, d1, ...)
    Reduce:  "mean" L = Σ ℓ / Σₙ w_{yₙ} over non-ignored targets;   "sum" L = Σ ℓ;   "none" ℓ
    VJP:     ds_nc = −w_{yₙ} [c = yₙ] · dℓₙ
    Per-sample: ℓₙ scaled by N/Z (see losses.base), so L = mean(ℓ) also with weights or ignored rows.
    """

    def __init__(self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.weight = _class_weight(weight, "NLLLoss")
        self.ignore_index = _ignore_index(ignore_index, "NLLLoss")

    def _prepare_target(self, input: np.ndarray, target: Any) -> np.ndarray:
        _check_input("NLLLoss", input, self.weight)
        t = as_numeric_array(target, "target")
        return _class_indices("NLLLoss", input, t, self.ignore_index, probs_ok=False)

    def _terms(self, input: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, _NLLCache]:
        n_classes = input.shape[1]
        w = _class_axis(np.ones(n_classes) if self.weight is None else self.weight, input.ndim).astype(input.dtype)
        r = w * _onehot(target, n_classes, self.ignore_index)
        terms = -(r * input).sum(axis=1)
        return terms, _NLLCache(r, float(r.sum(dtype=np.float64)))

    def _terms_vjp(self, aux: _NLLCache, dterms: np.ndarray) -> np.ndarray:
        return -aux.r * _along_classes(dterms)

    def _normalizer(self, terms: np.ndarray, aux: _NLLCache) -> float:
        return aux.z

    def extra_repr(self) -> str:
        parts = [] if self.weight is None else [f"weight={self.weight.tolist()}"]
        return ", ".join([*parts, f"ignore_index={self.ignore_index}", f"reduction={self.reduction!r}"])
