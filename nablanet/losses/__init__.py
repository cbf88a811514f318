"""Losses (divergences): each gives the reduced value, per-sample values, and an explicit VJP."""

from nablanet.losses.base import Loss, LossCache

__all__ = ["Loss", "LossCache"]
