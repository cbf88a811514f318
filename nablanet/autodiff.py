"""One forward and one backward pass, returned as a value and gradients by parameter name."""

from __future__ import annotations

from typing import Any

import numpy as np

from nablanet._random import RNGLike
from nablanet._validation import as_float_input, check_finite
from nablanet.layers import kernels
from nablanet.layers.base import Layer
from nablanet.losses.base import Loss


def value_and_grad(
    model: Layer, loss: Loss, x: Any, target: Any, *, train: bool = True, rng: RNGLike = None
) -> tuple[float, dict[str, np.ndarray]]:
    """L(model(x), target) and ∂L/∂θ for every parameter θ, keyed by state_dict name.

    ``train`` selects training-mode forward (dropout active, batch statistics); ``rng`` drives any
    randomness in it. Pure: the parameters' ``.grad`` fields are not touched (use
    ``Sequential.backward`` to accumulate into them). The loss must reduce to a scalar.
    """
    if loss.reduction == "none":
        raise ValueError(
            f"value_and_grad needs a scalar loss; {loss!r} returns one value per element. "
            "Use reduction='mean' or 'sum'."
        )
    xa = as_float_input(x, "x")
    check_finite(xa, "x")
    y, cache = kernels.forward(model, xa, train=train, rng=rng)  # a model of the user's own layer: checked
    value, lcache = loss.forward(y, target)
    _, grads = kernels.vjp(model, cache, loss.vjp(lcache), per_sample=False, need_dx=False)  # the forward's pair
    names = [name for name, _ in model.named_parameters()]
    return float(value), {name: grads[name] for name in names}
