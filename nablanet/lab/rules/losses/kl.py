"""Curvature rule for ``KLDivLoss`` (``losses/kl.py``)."""

from __future__ import annotations

import numpy as np

from nablanet.lab.registry import loss_hvp_rules
from nablanet.losses.base import LossCache
from nablanet.losses.kl import KLDivLoss


@loss_hvp_rules.register(KLDivLoss)
def _hvp_kl(loss: KLDivLoss, cache: LossCache, ydot: np.ndarray) -> np.ndarray:
    """KLDivLoss, s Σ t (log t − x) with x the input log-probabilities, is linear in x: ∇²L = 0."""
    return np.zeros_like(ydot)
