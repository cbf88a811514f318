"""The small networks several studies train, built in one place."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import nablanet as nn


def mlp(n_in: int, hidden: list[int], n_out: int, rng: np.random.Generator,
        activation: Callable[[], nn.Layer] = nn.ReLU) -> nn.Sequential:
    """Linear → ``activation()`` for each width in ``hidden``, then Linear(·, n_out), in float64 (PyTorch's
    default initialization, drawn from ``rng`` layer by layer in that order). ``hidden=[]``: one Linear."""
    layers: list[nn.Layer] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width, rng=rng, dtype=np.float64), activation()]
        n_in = width
    layers.append(nn.Linear(n_in, n_out, rng=rng, dtype=np.float64))
    return nn.Sequential(*layers)


def set_flat(model: nn.Layer, theta: np.ndarray) -> None:
    """Write the flat parameter vector θ (P,), in ``nablanet.lab.flatten_params``'s order, into the model's
    parameters (in place)."""
    for (_, p), value in zip(model.named_parameters(), nn.lab.unflatten_params(theta, model).values(), strict=True):
        p.data[...] = value
