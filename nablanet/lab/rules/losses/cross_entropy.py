"""Curvature rules for ``CrossEntropyLoss`` and ``NLLLoss`` (``losses/cross_entropy.py``)."""

from __future__ import annotations

import numpy as np

from nablanet.lab.registry import loss_hvp_rules
from nablanet.losses.base import LossCache
from nablanet.losses.cross_entropy import CrossEntropyLoss, NLLLoss


@loss_hvp_rules.register(CrossEntropyLoss)
def _hvp_cross_entropy(loss: CrossEntropyLoss, cache: LossCache, ydot: np.ndarray) -> np.ndarray:
    """∂L/∂z = s (p Σ_c r_c − r), with r the effective target (indices, probabilities, weights, label
    smoothing, ignored rows r = 0), so the Hessian is s Σ_c r_c (diag p − p pᵀ) per sample/position:

        (∂L/∂z)˙ = s Σ_c r_c · p ⊙ (ż − ⟨p, ż⟩)     (along the class axis 1)
    """
    aux = cache.aux
    p = aux.p
    pdot = p * (ydot - (p * ydot).sum(axis=1, keepdims=True))
    return pdot * aux.r_sum * loss._scale(cache)


@loss_hvp_rules.register(NLLLoss)
def _hvp_nll(loss: NLLLoss, cache: LossCache, ydot: np.ndarray) -> np.ndarray:
    """NLLLoss, −s w_y x_y summed, is linear in its input x (log-probabilities): ∇²L = 0."""
    return np.zeros_like(ydot)
