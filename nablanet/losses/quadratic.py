"""Squared-error losses: PyTorch's MSELoss and the notes' L2 divergence ½‖y − d‖²."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nablanet.losses.base import Loss


class _DiffCache(NamedTuple):
    diff: np.ndarray


class MSELoss(Loss):
    """Mean squared error, PyTorch's ``MSELoss``.

    Terms:   ℓₙₖ = (xₙₖ − yₙₖ)²                  (k runs over every non-batch position)
    Reduce:  "mean" L = Σ ℓ / (N·K)   "sum" L = Σ ℓ   "none" ℓ
    VJP:     dxₙₖ = 2 (xₙₖ − yₙₖ) · dℓₙₖ          (dℓ = 1/(N·K) under "mean", 1 under "sum")
    Shapes:  input x, target y, terms ℓ all (N, *)
    """

    def _terms(self, input: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, _DiffCache]:
        diff = input - target
        return diff * diff, _DiffCache(diff)

    def _terms_vjp(self, aux: _DiffCache, dterms: np.ndarray) -> np.ndarray:
        return 2 * aux.diff * dterms


class QuadraticLoss(Loss):
    """The L2 divergence of the notes, Div(Y, d) = ½‖Y − d‖², averaged over the batch.

    Terms:   ℓₙₖ = ½ (yₙₖ − dₙₖ)²
    Reduce:  "mean" L = (1/N) Σₙ ½‖yₙ − dₙ‖²  (divided by the batch size N, not by N·K as in
             MSELoss, so ∂L/∂yₙ = (yₙ − dₙ)/N)   "sum" L = Σ ℓ   "none" ℓ
    VJP:     dyₙₖ = (yₙₖ − dₙₖ) · dℓₙₖ
    Shapes:  input y, target d, terms ℓ all (N, *)
    Per-sample: ℓₙ = ½‖yₙ − dₙ‖², whose gradient is yₙ − dₙ.
    """

    def _terms(self, input: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, _DiffCache]:
        diff = input - target
        return 0.5 * diff * diff, _DiffCache(diff)

    def _terms_vjp(self, aux: _DiffCache, dterms: np.ndarray) -> np.ndarray:
        return aux.diff * dterms

    def _normalizer(self, terms: np.ndarray, aux: _DiffCache) -> float:
        return float(terms.shape[0])
