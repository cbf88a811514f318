"""A chain of layers and its backward pass: the chain rule, read right to left."""

from __future__ import annotations

from typing import Any, overload

import numpy as np

from nablanet._random import RNGLike, get_rng
from nablanet.layers import kernels
from nablanet.layers.base import Combinator, Layer, Tape, TapeEntry

__all__ = ["Sequential", "Tape", "TapeEntry"]  # Tape and TapeEntry (base.py) were long imported from here


class Sequential(Combinator):
    """Layers applied in order: y = fₖ(… f₂(f₁(x))).

    Backward is the chain rule read right to left, one VJP per layer:
    dyₖ = ∂L/∂y, then dyₗ₋₁ = VJPₗ(dyₗ) for l = k … 1, and dx = dy₀.
    Children are named ``"0"``, ``"1"``, … as in PyTorch, so state_dict keys match.
    ``vjp`` and ``backward`` (the flat tape) follow from ``_backward`` (see ``Container``); a child
    container (``Sequential``, ``Residual``, ``Parallel``, …) runs its own children, so the tape
    lists leaf layers.
    """

    @overload
    def __getitem__(self, idx: int) -> Layer: ...
    @overload
    def __getitem__(self, idx: slice) -> Sequential: ...
    def __getitem__(self, idx: int | slice) -> Layer | Sequential:
        layers = list(self._modules.values())
        if isinstance(idx, slice):
            return Sequential(*layers[idx])
        if not isinstance(idx, int | np.integer):
            raise TypeError(f"Sequential indices must be int or slice, not {type(idx).__name__}")
        if not -len(layers) <= idx < len(layers):
            raise IndexError(f"index {idx} is out of range for a Sequential of {len(layers)} layers")
        return layers[idx]

    def append(self, layer: Layer) -> Sequential:
        if not isinstance(layer, Layer):
            raise TypeError(f"append expects a layer, got {type(layer).__name__}")
        self._modules[str(len(self._modules))] = layer
        return self

    # -- math -----------------------------------------------------------------------------------
    def forward(
        self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None
    ) -> tuple[np.ndarray, list[Any]]:
        """y₀ = x, yₗ = fₗ(yₗ₋₁) for l = 1 … k; the cache is the list of the layers' caches."""
        gen = get_rng(rng) if train else rng
        caches: list[Any] = []
        for layer in self._modules.values():
            x, cache = kernels.forward(layer, x, train=train, rng=gen)
            caches.append(cache)
        return x, caches

    def _backward(
        self, caches: list[Any], dy: np.ndarray, per_sample: bool, prefix: str, tape: Tape, need_dx: bool = True
    ) -> np.ndarray:
        """dyₖ = dy, then dyₗ₋₁ = VJPₗ(dyₗ) for l = k … 1; returns dx = dy₀.

        Layer l's entries go into their own slot so that the tape lists the layers in forward order.
        Only the first layer's input gradient, dy₀, may go unused: it is skipped unless ``need_dx``.
        """
        layers = list(self._modules.items())
        if len(caches) != len(layers):
            raise ValueError(f"Sequential of {len(layers)} layers got {len(caches)} caches; pass what forward returned")
        entries: list[Tape] = [[] for _ in layers]
        for l in reversed(range(len(layers))):
            name, layer = layers[l]
            dy = layer._backward(caches[l], dy, per_sample, f"{prefix}{name}.", entries[l], need_dx or l > 0)
        for layer_entries in entries:
            tape.extend(layer_entries)
        return dy
