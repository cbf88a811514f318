"""Curvature rules for ``BCEWithLogitsLoss`` and ``BCELoss`` (``losses/binary.py``)."""

from __future__ import annotations

import numpy as np

from nablanet.lab.registry import loss_hvp_rules
from nablanet.losses.base import LossCache
from nablanet.losses.binary import _GRAD_EPS, BCELoss, BCEWithLogitsLoss


@loss_hvp_rules.register(BCEWithLogitsLoss)
def _hvp_bce_logits(loss: BCEWithLogitsLoss, cache: LossCache, ydot: np.ndarray) -> np.ndarray:
    """∂L/∂x = s w [(1 + (p − 1) y) σ(x) − p y]:  ∇²L ẋ = s w (1 + (p − 1) y) σ(x)(1 − σ(x)) ẋ."""
    aux = cache.aux
    sig = aux.sigma
    return loss._scale(cache) * aux.w * (1 + (aux.pos_w - 1) * aux.y) * sig * (1 - sig) * ydot


@loss_hvp_rules.register(BCELoss)
def _hvp_bce(loss: BCELoss, cache: LossCache, ydot: np.ndarray) -> np.ndarray:
    """∂L/∂x = s w (x − y)/max(x(1 − x), ϵ) (ϵ = 10⁻¹², PyTorch's floor), whose derivative is

        s w (x² − 2xy + y)/(x(1 − x))²   where x(1 − x) > ϵ,     s w/ϵ   where the floor is active.
    (PyTorch's double backward adds ϵ to x and 1 − x instead; the two differ by O(ϵ/(x(1 − x))).)
    """
    aux = cache.aux
    x, y = aux.x, aux.y
    den = x * (1 - x)
    safe = np.maximum(den, _GRAD_EPS)
    h = np.where(den > _GRAD_EPS, (x * x - 2 * x * y + y) / (safe * safe), 1.0 / _GRAD_EPS)
    return loss._scale(cache) * aux.w * h * ydot
