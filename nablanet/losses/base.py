"""The loss interface and the reductions shared by every loss.

A loss computes unreduced *terms* (PyTorch's ``reduction="none"`` output, shape (N, *)) and the
VJP of those terms; the base class reduces them and scales the gradient to match:

* ``"mean"`` (and KLDivLoss's ``"batchmean"``): L = Σ terms / Z, where Z is the number of terms
  (the total weight Σₙ w_{yₙ} for class-weighted CrossEntropyLoss/NLLLoss, N for QuadraticLoss
  and KLDivLoss "batchmean"); Z = 0 (every target ignored) gives L = NaN, as in PyTorch;
* ``"sum"``:  L = Σ terms;
* ``"none"``: the terms themselves; ``vjp`` then takes their cotangent ``dvalue`` (shape of terms).

``per_sample(cache)`` gives one number per sample, ℓₙ, chosen so that L = mean(ℓ) under "mean"
and L = Σ ℓ under "sum": the batch gradient under ``reduction="mean"`` is then the mean of the
per-sample gradients ∇ℓₙ (the convention the gradient lab documents). Without weights this is the
loss of a batch holding sample n alone; with class weights or ignored targets PyTorch divides by the
batch's total weight Z, so ℓₙ = (N/Z) Σ termsₙ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from nablanet._swaps import Swaps
from nablanet._validation import as_float_input, as_numeric_array, check_finite

REDUCTIONS = ("mean", "sum", "none")
# Reductions that divide the sum of the terms by the normalizer Z (KLDivLoss adds "batchmean").
_AVERAGING = ("mean", "batchmean")


# Measured fast variants of a loss's terms, by the loss's exact type (nablanet/losses/kernels.py registers
# them; the same rule as nablanet.layers.kernels: a benchmark ratio in the docstring and an equality test).
TermsFn = Callable[..., tuple[np.ndarray, Any]]
_TERMS_KERNELS: dict[type, TermsFn] = {}


def terms_kernel(cls: type) -> Callable[[TermsFn], TermsFn]:
    """Register ``fn(loss, input, target) -> (terms, aux)`` as ``cls``'s ``_terms``; ``aux`` must be the
    reference's (the VJP and the lab read it). ``fn`` calls ``loss._terms`` for a case it does not cover."""
    def register(fn: TermsFn) -> TermsFn:
        _TERMS_KERNELS[cls] = fn
        return fn
    return register


# A function run in place of a loss's ``_terms_vjp`` for a while, by the loss's exact type (a student's, through
# nablanet.testing.replace_vjp): ``fn(loss, cache, dterms) -> ∂(Σ dterms ⊙ terms)/∂input``, with the whole cache.
TermsVjpFn = Callable[..., np.ndarray]
_TERMS_VJP_SWAPS: Swaps[TermsVjpFn] = Swaps()


def swap_terms_vjp(cls: type, fn: TermsVjpFn) -> Callable[[], None]:
    """Run ``fn`` for losses of exactly ``cls`` in place of their ``_terms_vjp`` until the returned function is
    called (``vjp``, ``per_sample_vjp`` and so every caller of them); swaps nest (``nablanet._swaps``)."""
    return _TERMS_VJP_SWAPS.push(cls, fn)


class LossCache(NamedTuple):
    """What a loss's forward keeps for its VJP: the terms, the normalizer Z, and loss-specific data."""

    terms: np.ndarray
    normalizer: float
    input_shape: tuple[int, ...]
    dtype: np.dtype[Any]
    aux: Any


class Loss:
    """Base class: subclasses implement ``_terms``, ``_terms_vjp`` (and ``_normalizer`` if needed)."""

    reductions: tuple[str, ...] = REDUCTIONS

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in self.reductions:
            raise ValueError(
                f"{type(self).__name__}(reduction={reduction!r}): expected one of {list(self.reductions)}. "
                f"Fix: pass e.g. reduction={self.reductions[0]!r}."
            )
        self.reduction = reduction

    # -- implemented by each loss -----------------------------------------------------------------
    def _terms(self, input: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, Any]:
        """Unreduced terms (N, *) and whatever ``_terms_vjp`` needs."""
        raise NotImplementedError

    def _terms_vjp(self, aux: Any, dterms: np.ndarray) -> np.ndarray:
        """∂(Σ dterms ⊙ terms)/∂input, with ``dterms`` broadcastable to the terms' shape."""
        raise NotImplementedError

    def _normalizer(self, terms: np.ndarray, aux: Any) -> float:
        """Z of the mean reduction; the number of terms unless a loss says otherwise."""
        return float(terms.size)

    def _prepare_target(self, input: np.ndarray, target: Any) -> np.ndarray:
        """Validate and convert the target; by default a float array of the input's shape."""
        t = as_numeric_array(target, "target")
        if t.shape != input.shape:
            raise ValueError(
                f"{type(self).__name__} got input.shape={input.shape} and target.shape={t.shape}; "
                "they must be equal. For class indices use CrossEntropyLoss or NLLLoss."
            )
        t = t.astype(input.dtype, copy=False)
        check_finite(t, "target")
        return t

    # -- shared machinery ---------------------------------------------------------------------------
    def forward(self, input: Any, target: Any) -> tuple[float | np.ndarray, LossCache]:
        """The reduced loss (a float, or the terms for ``"none"``) and the cache for ``vjp``."""
        x = as_float_input(input, "input")
        check_finite(x, "input")
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"{type(self).__name__} got input.shape={x.shape}; expected a batch (N, ...) with N ≥ 1")
        t = self._prepare_target(x, target)
        fast = _TERMS_KERNELS.get(type(self))  # the one dispatch point (a subclass gets the reference)
        return self._reduce(x, *(self._terms(x, t) if fast is None else fast(self, x, t)))

    def _reduce(self, x: np.ndarray, terms: np.ndarray, aux: Any) -> tuple[float | np.ndarray, LossCache]:
        """The reduction of the terms, and the cache."""
        z = self._normalizer(terms, aux)
        cache = LossCache(terms, z, x.shape, x.dtype, aux)
        if self.reduction == "none":
            return terms, cache
        total = float(terms.sum(dtype=np.float64))
        if self.reduction not in _AVERAGING:
            return total, cache
        # Z = 0 (every target ignored, or zero total weight): PyTorch's 0/0 gives NaN, not an exception.
        return (total / z if z != 0 else float("nan")), cache

    def __call__(self, input: Any, target: Any) -> float | np.ndarray:
        return self.forward(input, target)[0]

    def _scale(self, cache: LossCache) -> float:
        """∂L/∂termsₖ for the scalar reductions."""
        if self.reduction in _AVERAGING:
            return 1.0 / cache.normalizer if cache.normalizer != 0 else 0.0
        return 1.0

    def vjp(self, cache: LossCache, dvalue: Any = None) -> np.ndarray:
        """∂L/∂input (the input's shape). ``dvalue`` is ∂(outer)/∂L: 1 by default; for
        ``reduction="none"`` an array of the terms' shape (ones by default)."""
        if self.reduction == "none":
            d = np.ones_like(cache.terms) if dvalue is None else np.asarray(dvalue, dtype=cache.dtype)
            if d.shape != cache.terms.shape:
                raise ValueError(f"vjp with reduction='none' needs dvalue.shape={cache.terms.shape}; got {d.shape}")
        else:
            d = np.asarray(self._scale(cache) * (1.0 if dvalue is None else float(dvalue)), dtype=cache.dtype)
        return self._input_grad(cache, d)

    def _input_grad(self, cache: LossCache, dterms: np.ndarray) -> np.ndarray:
        """∂(Σ dterms ⊙ terms)/∂input in the input's dtype: ``_terms_vjp``, or the function swapped in for the class."""
        swapped = _TERMS_VJP_SWAPS.current.get(type(self))
        g = self._terms_vjp(cache.aux, dterms) if swapped is None else swapped(self, cache, dterms)
        return g.astype(cache.dtype, copy=False)

    def per_sample(self, cache: LossCache) -> np.ndarray:
        """ℓₙ (N,): L = mean(ℓ) under "mean", L = Σ ℓ under "sum" (see the module docstring)."""
        n = cache.input_shape[0]
        per = cache.terms.reshape(n, -1).sum(axis=1)
        if self.reduction in _AVERAGING:
            per = per * (n * self._scale(cache))
        return per

    def per_sample_vjp(self, cache: LossCache) -> np.ndarray:
        """∂ℓₙ/∂inputₙ stacked over n (the input's shape): each sample's gradient of its own ℓₙ."""
        n = cache.input_shape[0]
        scale = n * self._scale(cache) if self.reduction in _AVERAGING else 1.0
        return self._input_grad(cache, np.full(cache.terms.shape, scale, dtype=cache.dtype))

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
