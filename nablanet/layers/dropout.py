"""Random layers: RReLU (random leaky slopes) and dropout. Each draws from the generator its forward is handed.

The forward pass draws the random slopes or mask and puts them in the cache, so the VJP applies the
very same diagonal Jacobian the forward used: dx = dy ⊙ (what x was multiplied by). Shapes: x, y
(N, *); dy (*V, N, *) broadcasts against the cached factors over any leading vector axes.
No parameters, so the gradient dict is always empty.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from nablanet._random import RNGLike, get_rng
from nablanet._validation import as_float_input
from nablanet.layers.base import NO_DX, Layer, n_vector_axes


class ScaleCache(NamedTuple):
    """What the VJP needs: ``factor`` (broadcastable to y, or None for the identity) and y's rank."""

    factor: np.ndarray | None
    y_ndim: int


def _scaled_vjp(cache: ScaleCache, dy: np.ndarray, who: str, need_dx: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """dx = dy ⊙ factor, the VJP of y = x ⊙ factor with the factor held fixed."""
    n_vector_axes(dy, cache.y_ndim, who)
    if not need_dx:
        return NO_DX, {}
    if cache.factor is None:
        return dy, {}
    return dy * cache.factor, {}


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


class RReLU(Layer):
    """Randomized leaky ReLU:  y = x for x ≥ 0, a x for x < 0.

    Training:   a ~ U(lower, upper), drawn independently for every element from ``rng``
                (one draw per element of x, whatever its sign, so the stream does not depend on the data).
    Evaluation: a = (lower + upper)/2 for every element, as in PyTorch.
    VJP:        dx = dy ⊙ s,  s = 1 for x ≥ 0, a for x < 0, with the slopes s kept in the cache, so
                the gradient uses the slopes the forward drew.
    At x = 0 the derivative is 1, the convention of ReLU and LeakyReLU here (PyTorch uses a there).
    Shapes: x, y (N, *)  slopes (N, *)  dy (*V, N, *).
    """

    def __init__(self, lower: float = 1.0 / 8.0, upper: float = 1.0 / 3.0) -> None:
        super().__init__()
        if not (_is_real(lower) and _is_real(upper) and np.isfinite(lower) and np.isfinite(upper)
                and lower <= upper):
            raise ValueError(
                f"RReLU(lower={lower!r}, upper={upper!r}): expected finite numbers with lower ≤ upper, "
                "e.g. RReLU(1/8, 1/3); swap them if they are reversed."
            )
        self.lower = float(lower)
        self.upper = float(upper)

    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, ScaleCache]:
        if x.dtype.kind != "f":
            x = as_float_input(x)
        if train:
            a = get_rng(rng).uniform(self.lower, self.upper, size=x.shape).astype(x.dtype, copy=False)
            slopes = np.where(x >= 0, x.dtype.type(1), a)
        else:
            slopes = np.where(x >= 0, 1.0, 0.5 * (self.lower + self.upper)).astype(x.dtype, copy=False)
        return x * slopes, ScaleCache(slopes, x.ndim)

    def vjp(
        self, cache: ScaleCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return _scaled_vjp(cache, dy, "RReLU", need_dx)

    def extra_repr(self) -> str:
        return f"lower={self.lower}, upper={self.upper}"

    def get_config(self) -> dict[str, float]:
        return {"lower": self.lower, "upper": self.upper}


_SCALES = ("inverted", "notes")


class Dropout(Layer):
    """Dropout: zero each element with probability p while training (p is the DROP probability, as in PyTorch).

    scale="inverted" (default, PyTorch):
        training    y = x ⊙ m / (1 − p),  mₙᵢ ~ Bernoulli(1 − p) independently
        inference   y = x
    scale="notes" (the source notes' dropout section; their p is the keep probability, here 1 − p):
        training    y = x ⊙ m             (unscaled)
        inference   y = x (1 − p)         (≡ multiplying the next layer's weights by the keep probability)
    Both make the expected training output equal the inference output.
    VJP: dx = dy ⊙ m / (1 − p) (inverted) or dy ⊙ m (notes) while training, with the mask m the
    forward drew (kept in the cache); at inference dx = dy or dy (1 − p).
    p = 0 is the identity (nothing is drawn); p = 1 gives zeros while training (no division by 0).
    The mask comes from the ``rng`` handed to forward (``get_rng``: a Generator, a seed, or None for
    the global generator). Shapes: x, y, m (N, *)  dy (*V, N, *).
    """

    def __init__(self, p: float = 0.5, *, scale: str = "inverted") -> None:
        super().__init__()
        name = type(self).__name__
        if not (_is_real(p) and 0.0 <= p <= 1.0):
            raise ValueError(
                f"{name}(p={p!r}): p is the probability of dropping (zeroing) an element and must be a "
                f"number in [0, 1], e.g. {name}(p=0.5). To keep each element with probability q, pass p=1 - q."
            )
        if scale not in _SCALES:
            raise ValueError(
                f"{name}(scale={scale!r}): expected 'inverted' (PyTorch: scale by 1/(1 - p) while training, "
                "identity at inference) or 'notes' (no scaling while training, multiply by 1 - p at inference)."
            )
        self.p = float(p)
        self.scale = scale

    def _mask_shape(self, x: np.ndarray) -> tuple[int, ...]:
        return x.shape

    def _check_input(self, x: np.ndarray) -> None:
        return None

    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, ScaleCache]:
        if x.dtype.kind != "f":
            x = as_float_input(x)
        self._check_input(x)
        keep = 1.0 - self.p
        if not train:
            if self.scale == "inverted" or self.p == 0.0:
                return x, ScaleCache(None, x.ndim)
            factor = np.asarray(keep, dtype=x.dtype)
            return x * factor, ScaleCache(factor, x.ndim)
        if self.p == 0.0:
            return x, ScaleCache(None, x.ndim)
        mask = get_rng(rng).random(self._mask_shape(x)) >= self.p  # P(keep) = 1 − p
        gain = 1.0 / keep if self.scale == "inverted" and keep > 0.0 else 1.0
        factor = mask.astype(x.dtype)
        if gain != 1.0:
            factor *= x.dtype.type(gain)
        return x * factor, ScaleCache(factor, x.ndim)

    def vjp(
        self, cache: ScaleCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return _scaled_vjp(cache, dy, type(self).__name__, need_dx)

    def extra_repr(self) -> str:
        return f"p={self.p}" + (f", scale={self.scale!r}" if self.scale != "inverted" else "")

    def get_config(self) -> dict[str, Any]:
        return {"p": self.p, "scale": self.scale}


class Dropout2d(Dropout):
    """Channel dropout: zero whole channels xₙ꜀ (all H×W entries together) with probability p.

    Training:  y = x ⊙ m / (1 − p),  m (N, C, 1, 1) ~ Bernoulli(1 − p), broadcast over H, W.
    Inference: y = x.      VJP: dx = dy ⊙ m / (1 − p) with the cached mask (identity at inference).
    Shapes: x, y (N, C, H, W)  m (N, C, 1, 1)  dy (*V, N, C, H, W).
    Only 4-D input is accepted: PyTorch 2.13 reads a 3-D input as (N, C, L) with a deprecation
    warning that this will change to (C, H, W), so the meaning is ambiguous and it is refused here.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)

    def _mask_shape(self, x: np.ndarray) -> tuple[int, ...]:
        return (x.shape[0], x.shape[1], 1, 1)

    def _check_input(self, x: np.ndarray) -> None:
        if x.ndim != 4:
            fix = {
                3: "For one (C, H, W) image add a batch axis with x[None]; to drop channels of an (N, C, L) "
                "signal, reshape it to (N, C, L, 1) with x[..., None].",
                2: "For (N, features) input use Dropout instead.",
            }.get(x.ndim, "Reshape it to (N, C, H, W).")
            raise ValueError(f"Dropout2d got x.shape={x.shape} ({x.ndim}-D); expected (N, C, H, W). {fix}")

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def get_config(self) -> dict[str, Any]:
        return {"p": self.p}
