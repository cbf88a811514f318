"""The bilinear layer: a two-input multiplicative layer, yₒ = x₁ᵀ Wₒ x₂ + bₒ."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from nablanet._dtype import resolve_dtype
from nablanet._random import RNGLike, get_rng
from nablanet._validation import as_float_input, check_finite
from nablanet.layers.base import NO_DX, Layer, n_vector_axes
from nablanet.parameter import Parameter


class BilinearCache(NamedTuple):
    x1: np.ndarray  # (N, *, i)
    x2: np.ndarray  # (N, *, j)


class Bilinear(Layer):
    """Bilinear map (PyTorch's ``nn.Bilinear``):  yₙₒ = Σᵢⱼ x₁ₙᵢ Wₒᵢⱼ x₂ₙⱼ + bₒ.

    Two inputs, one x: ``forward((x1, x2))`` takes them as a tuple (or list), and the VJP returns
    dx as the tuple (dx₁, dx₂). Called directly, ``layer(x1, x2)`` works as in PyTorch. In a model,
    ``Sequential(Pair(f, g), Bilinear(m₁, m₂, o))`` feeds it (f(x), g(x)) and keeps a flat tape.

    Shapes:  x₁ (N, *, i)  x₂ (N, *, j)  W (o, i, j)  b (o,)  y (N, *, o)   (i = in1, j = in2;
             * : extra axes shared by both inputs)
    VJP:     dx₁ₙᵢ = Σₒⱼ dyₙₒ Wₒᵢⱼ x₂ₙⱼ      dx₂ₙⱼ = Σₒᵢ dyₙₒ x₁ₙᵢ Wₒᵢⱼ
             dWₒᵢⱼ = Σₙ dyₙₒ x₁ₙᵢ x₂ₙⱼ        dbₒ = Σₙ dyₙₒ
             (multiplicative: the gradient by one input is weighted by the other, as in the notes)
    Per-sample:  dWₙ = Σ_* dyₙ ⊗ x₁ₙ ⊗ x₂ₙ  (N, o, i, j), summed over extra axes.
    Vector axes: dy (*V, N, *, o) gives dx₁ (*V, N, *, i), dx₂ (*V, N, *, j), dW (*V, o, i, j).
    Init (PyTorch's): W, b ~ U(−1/√i, 1/√i). Inputs are converted to the weight's dtype.
    """

    def forward(self, x: Any, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, BilinearCache]:
        x1, x2 = self._split(x)
        y = np.einsum("...i,oij,...j->...o", x1, self.weight.data, x2, optimize=True)
        if self.bias is not None:
            y += self.bias.data
        return y, BilinearCache(x1, x2)

    def vjp(
        self, cache: BilinearCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[Any, dict[str, np.ndarray]]:
        x1, x2, w = cache.x1, cache.x2, self.weight.data
        nv = n_vector_axes(dy, x1.ndim, "Bilinear")
        dx: Any = NO_DX
        if need_dx:  # each input's gradient is weighted by the other input
            dx = (np.einsum("...o,oij,...j->...i", dy, w, x2, optimize=True),
                  np.einsum("...o,oij,...i->...j", dy, w, x1, optimize=True))
        n = x1.shape[0]
        g = dy.reshape(*dy.shape[:nv], n, -1, self.out_features)  # (*V, N, R, o): R the extra axes *
        a, b = x1.reshape(n, -1, self.in1_features), x2.reshape(n, -1, self.in2_features)
        spec = "...nro,nri,nrj->...noij" if per_sample else "...nro,nri,nrj->...oij"  # dW = Σ dy ⊗ x₁ ⊗ x₂
        grads = {"weight": np.einsum(spec, g, a, b, optimize=True)}
        if self.bias is not None:
            grads["bias"] = g.sum(axis=-2 if per_sample else (-3, -2))
        return dx, grads

    def __init__(
        self,
        in1_features: int,
        in2_features: int,
        out_features: int,
        bias: bool = True,
        *,
        dtype: Any = None,
        rng: RNGLike = None,
    ) -> None:
        super().__init__()
        for arg, value in (("in1_features", in1_features), ("in2_features", in2_features),
                           ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"Bilinear({arg}={value!r}): expected a positive int, e.g. Bilinear(8, 6, 4)")
        self.in1_features = int(in1_features)
        self.in2_features = int(in2_features)
        self.out_features = int(out_features)
        dt = resolve_dtype(dtype)
        gen = get_rng(rng)
        bound = 1.0 / math.sqrt(self.in1_features)
        shape = (self.out_features, self.in1_features, self.in2_features)
        self.weight = Parameter(gen.uniform(-bound, bound, shape).astype(dt))
        self.bias: Parameter | None = (
            Parameter(gen.uniform(-bound, bound, self.out_features).astype(dt)) if bias else None
        )

    def _split(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(x, tuple | list) or len(x) != 2:
            got = type(x).__name__ + (f" of length {len(x)}" if isinstance(x, tuple | list) else "")
            raise TypeError(
                f"Bilinear.forward takes its two inputs as one pair x = (x1, x2); got {got}. Call "
                "layer(x1, x2), or put Pair(f, g) before it in a Sequential."
            )
        x1, x2 = (np.asarray(a) for a in x)
        w = self.weight.data
        for k, (a, size) in enumerate(((x1, self.in1_features), (x2, self.in2_features)), start=1):
            if a.ndim < 2 or a.shape[-1] != size:
                raise ValueError(
                    f"Bilinear(in1_features={self.in1_features}, in2_features={self.in2_features}) got "
                    f"x{k}.shape={a.shape}; expected (N, *, {size}) (the last axis must be {size})."
                )
        if x1.shape[:-1] != x2.shape[:-1]:
            raise ValueError(
                f"Bilinear got x1.shape={x1.shape} and x2.shape={x2.shape}; their leading axes (N, *) must "
                "agree: sample n of x1 pairs with sample n of x2."
            )
        return x1.astype(w.dtype, copy=False), x2.astype(w.dtype, copy=False)

    def __call__(self, input1: Any, input2: Any) -> np.ndarray:  # type: ignore[override]
        """``layer(x1, x2)`` as in PyTorch: forward in the current mode, checking both inputs."""
        pair = []
        for name, a in (("input1", input1), ("input2", input2)):
            arr = as_float_input(a, name)
            check_finite(arr, name)
            pair.append(arr)
        y, _ = self.forward(tuple(pair), train=self.training)
        return y

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")

    def get_config(self) -> dict[str, Any]:
        return {"in1_features": self.in1_features, "in2_features": self.in2_features,
                "out_features": self.out_features, "bias": self.bias is not None, "dtype": str(self.weight.dtype)}
