"""Norms of the batch gradient ∂L/∂θ, per parameter, per layer and in total.

Key scheme of the returned dict (one flat dict, so it drops straight into a record):

    "0.weight", "0.bias", …   ‖∂L/∂θ‖ per parameter (state_dict names)
    "0", "2", …               per layer: √(Σ over the layer's parameters of ‖∂L/∂θ‖²)
    "total"                   over every parameter: ‖∇L‖, the norm of the whole gradient vector

Layer keys are state_dict prefixes ("1.0" inside a nested Sequential; "" when the model is a single
layer whose parameters are named "weight", "bias"). The gradient is the one backward computed
(the tape's ``grads``): under reduction="mean" it is the mean of the per-sample gradients.
Sums of squares are accumulated in float64 whatever the model's dtype.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nablanet._random import RNGLike
from nablanet.lab._params import selected_tape
from nablanet.lab._tape import run_tape, tape_parameters
from nablanet.lab.per_sample import TOTAL, layer_of
from nablanet.layers.base import Layer, Tape
from nablanet.losses.base import Loss


def grad_norms_from_tape(tape: Tape) -> dict[str, float]:
    """‖∂L/∂θ‖ per parameter, per layer and in total, from the gradients on the tape (see the module
    docstring for the keys). A model without parameters gives ``{"total": 0.0}``."""
    squares: dict[str, float] = {}
    layers: dict[str, float] = {}
    for name, entry, local in tape_parameters(tape):
        g = entry.grads[local]
        sq = float(np.sum(np.square(g), dtype=np.float64))
        squares[name] = sq
        key = layer_of(name)
        layers[key] = layers.get(key, 0.0) + sq
    out = {name: math.sqrt(sq) for name, sq in squares.items()}
    out.update({key: math.sqrt(sq) for key, sq in layers.items()})
    out[TOTAL] = math.sqrt(sum(layers.values()))
    return out


def grad_norms(
    model: Layer, loss: Loss, x: Any, target: Any, *, train: bool = False, rng: RNGLike = None, params: Any = None
) -> dict[str, float]:
    """‖∂L/∂θ‖ of ``loss(model(x), target)`` per parameter, per layer and in total, e.g.
    ``{"0.weight": …, "0.bias": …, "0": …, "total": …}``.

    Runs one forward and backward without touching ``.grad``, in eval mode unless ``train=True``.
    ``params`` (names or Parameters, default all) restricts it to those parameters.
    """
    tape = run_tape(model, loss, x, target, train=train, rng=rng).tape
    return grad_norms_from_tape(selected_tape(model, tape, params, "grad_norms"))
