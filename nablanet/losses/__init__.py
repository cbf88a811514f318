"""Losses (divergences): each gives the reduced value, per-sample values, and an explicit VJP."""

from nablanet.losses import kernels  # noqa: F401  (registers the measured fast variants)
from nablanet.losses.base import Loss, LossCache
from nablanet.losses.binary import BCELoss, BCEWithLogitsLoss
from nablanet.losses.cross_entropy import CrossEntropyLoss, NLLLoss
from nablanet.losses.kl import KLDivLoss
from nablanet.losses.quadratic import MSELoss, QuadraticLoss

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "KLDivLoss",
    "Loss",
    "LossCache",
    "MSELoss",
    "NLLLoss",
    "QuadraticLoss",
]
