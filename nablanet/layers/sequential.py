"""A chain of layers, its backward pass, and the tape that instruments read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, overload

import numpy as np

from nablanet._random import RNGLike, get_rng
from nablanet.layers import kernels
from nablanet.layers.base import Layer, Tape, TapeEntry
from nablanet.layers.graph import Container


class Sequential(Container):
    """Layers applied in order: y = fₖ(… f₂(f₁(x))).

    Backward is the chain rule read right to left, one VJP per layer:
    dyₖ = ∂L/∂y, then dyₗ₋₁ = VJPₗ(dyₗ) for l = k … 1, and dx = dy₀.
    Children are named ``"0"``, ``"1"``, … as in PyTorch, so state_dict keys match.
    ``vjp`` and ``backward`` (the flat tape) come from ``Container``; any child container
    (``Sequential``, ``Residual``, ``Parallel``, …) is recursed into, so the tape lists leaf layers.
    """

    def __init__(self, *layers: Layer) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"Sequential argument {i} is a {type(layer).__name__}; expected a layer such as "
                    "nn.Linear(4, 3). Pass layers, not classes or arrays (nn.ReLU(), not nn.ReLU)."
                )
            self._modules[str(i)] = layer

    # -- container protocol (PyTorch's) --------------------------------------------------------
    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self._modules.values())

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
        """Run every layer; the cache is the list of the layers' caches."""
        gen = get_rng(rng) if train else rng
        caches: list[Any] = []
        for layer in self._modules.values():
            x, cache = kernels.forward(layer, x, train=train, rng=gen)
            caches.append(cache)
        return x, caches

    def _backward(
        self, caches: list[Any], dy: np.ndarray, per_sample: bool, prefix: str, tape: Tape, need_dx: bool = True
    ) -> np.ndarray:
        entries: list[TapeEntry] = []
        last = len(self._modules) - 1
        for i, ((name, layer), cache) in enumerate(zip(reversed(self._modules.items()), reversed(caches), strict=True)):
            want_dx = need_dx or i < last  # only the first layer's input gradient may go unused
            if isinstance(layer, Container):
                sub: Tape = []
                dy = layer._backward(cache, dy, per_sample, f"{prefix}{name}.", sub, want_dx)
                entries.extend(reversed(sub))
                continue
            dx, grads = kernels.vjp(layer, cache, dy, per_sample=per_sample, need_dx=want_dx)
            entries.append(TapeEntry(prefix + name, layer, cache, dy, grads))
            dy = dx
        tape.extend(reversed(entries))
        return dy
