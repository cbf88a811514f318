"""Curvature rules for ``MSELoss`` and ``QuadraticLoss`` (``losses/quadratic.py``)."""

from __future__ import annotations

import numpy as np

from nablanet.lab.registry import loss_hvp_rules
from nablanet.losses.base import LossCache
from nablanet.losses.quadratic import MSELoss, QuadraticLoss


@loss_hvp_rules.register(MSELoss)
def _hvp_mse(loss: MSELoss, cache: LossCache, ydot: np.ndarray) -> np.ndarray:
    """∂L/∂x = 2 s (x − y):  ∇²L ẋ = 2 s ẋ  (s = 1/(N·K) under "mean")."""
    return 2 * loss._scale(cache) * ydot


@loss_hvp_rules.register(QuadraticLoss)
def _hvp_quadratic(loss: QuadraticLoss, cache: LossCache, ydot: np.ndarray) -> np.ndarray:
    """∂L/∂y = s (y − d):  ∇²L ẏ = s ẏ  (s = 1/N under "mean")."""
    return loss._scale(cache) * ydot
