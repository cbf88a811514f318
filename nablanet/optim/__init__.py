"""Optimizers, hyperparameter schedules and gradient clipping.

Optimizers see parameters and gradients, never layers:  ``opt = SGD(model.parameters(), lr=0.1,
momentum=schedules.sutskever_momentum(0.99))``, then ``opt.zero_grad()``, backward, ``opt.step()``.
"""

from nablanet.optim import schedules
from nablanet.optim.base import Optimizer, Range, Schedule
from nablanet.optim.clipping import clip_grad_norm_, clip_grad_value_
from nablanet.optim.optimizers import SGD, Adagrad, Adam, AdamW, RMSprop

__all__ = [
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSprop",
    "Range",
    "Schedule",
    "clip_grad_norm_",
    "clip_grad_value_",
    "schedules",
]
