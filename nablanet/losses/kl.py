"""Kullback-Leibler divergence, PyTorch's KLDivLoss (input log-probabilities, target probabilities)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from nablanet.losses.base import Loss


class _KLCache(NamedTuple):
    neg_t: np.ndarray  # −t (probabilities), the terms' derivative in the input


class KLDivLoss(Loss):
    """KL(t ‖ p) with log p given, PyTorch's ``KLDivLoss``.

    Input x = log p (N, *) of log-probabilities; target t (N, *) of probabilities, or of
    log-probabilities with ``log_target=True`` (then t = exp(target)).

    Terms:   ℓ = t (log t − x)    with 0 · log 0 = 0 (a zero target contributes nothing)
    Reduce:  "batchmean" L = Σ ℓ / N, the true KL divergence averaged over the batch;
             "mean" L = Σ ℓ / (number of terms) (PyTorch's default, which also divides by the
             class count);  "sum" L = Σ ℓ;  "none" ℓ
    VJP:     dx = −t · dℓ
    Per-sample (batchmean): ℓₙ = Σ_c ℓ_nc = KL(tₙ ‖ pₙ).
    """

    reductions = ("mean", "batchmean", "sum", "none")

    def __init__(self, reduction: str = "mean", log_target: bool = False) -> None:
        super().__init__(reduction)
        if not isinstance(log_target, bool | np.bool_):
            raise TypeError(
                f"KLDivLoss(log_target={log_target!r}): expected a bool. Fix: pass log_target=True when the "
                "target holds log-probabilities, else False."
            )
        self.log_target = bool(log_target)

    def _prepare_target(self, input: np.ndarray, target: Any) -> np.ndarray:
        t = super()._prepare_target(input, target)
        negative = np.argwhere(t < 0) if not self.log_target else np.empty((0, t.ndim), dtype=np.intp)
        if len(negative):
            first = tuple(int(i) for i in negative[0])
            raise ValueError(
                f"KLDivLoss got {len(negative)} negative target value(s), the first {t[first]} at index {first}; "
                "expected probabilities ≥ 0. Fix: pass probabilities, or log-probabilities with log_target=True."
            )
        return t

    def _terms(self, input: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, _KLCache]:
        if self.log_target:
            t = np.exp(target)
            terms = t * (target - input)
        else:
            t = target
            positive = t > 0
            t_log_t = np.where(positive, t * np.log(np.where(positive, t, 1)), 0)
            terms = t_log_t - t * input
        return terms, _KLCache(-t)

    def _terms_vjp(self, aux: _KLCache, dterms: np.ndarray) -> np.ndarray:
        return aux.neg_t * dterms

    def _normalizer(self, terms: np.ndarray, aux: _KLCache) -> float:
        return float(terms.shape[0]) if self.reduction == "batchmean" else float(terms.size)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, log_target={self.log_target}"
