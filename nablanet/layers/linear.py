"""The affine layer."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from nablanet._dtype import resolve_dtype
from nablanet._random import RNGLike, get_rng
from nablanet.layers.base import NO_DX, Layer, n_vector_axes
from nablanet.parameter import Parameter


class LinearCache(NamedTuple):
    x: np.ndarray


class Linear(Layer):
    """Affine map  y = x Wᵀ + b  (the notes' z = W y⁽ᵏ⁻¹⁾ + b, one row per sample).

    Shapes:  x (N, *, i)   W (o, i)   b (o,)   y (N, *, o)   (* : extra axes r, e.g. time)
    VJP:     dx = dy W      dW = Σₙᵣ dyₙᵣᵀ xₙᵣ      db = Σₙᵣ dyₙᵣ
             (per element: ∂Div/∂wₒᵢ = Σₙ dyₙₒ xₙᵢ, ∂Div/∂xₙᵢ = Σₒ wₒᵢ dyₙₒ)
    Per-sample:  dWₙ = Σᵣ dyₙᵣᵀ xₙᵣ,  dbₙ = Σᵣ dyₙᵣ;  for x (N, i):  ‖dWₙ‖² = ‖dyₙ‖² ‖xₙ‖²
    Vector axes: dy (*V, N, *, o) gives dx (*V, N, *, i), dW (*V, o, i), db (*V, o)  (per-sample: *V, N, …).
    Init (PyTorch's): W, b ~ U(−1/√i, 1/√i).
    The input is converted to the weight's dtype. With need_dx=False, dx (o·i FLOPs per row) is skipped.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        dtype: Any = None,
        rng: RNGLike = None,
    ) -> None:
        super().__init__()
        for arg, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"Linear({arg}={value!r}): expected a positive int, e.g. Linear(64, 10)")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        dt = resolve_dtype(dtype)
        gen = get_rng(rng)
        bound = 1.0 / math.sqrt(self.in_features)
        self.weight = Parameter(gen.uniform(-bound, bound, (self.out_features, self.in_features)).astype(dt))
        self.bias: Parameter | None = (
            Parameter(gen.uniform(-bound, bound, self.out_features).astype(dt)) if bias else None
        )

    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, LinearCache]:
        if x.ndim < 2 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear(in_features={self.in_features}) got x.shape={x.shape}; expected (N, {self.in_features}) "
                f"(the last axis must be {self.in_features}). "
                + ("Add a batch axis with x[None]." if x.ndim < 2 else "Check the previous layer or Flatten first.")
            )
        w = self.weight.data
        if x.dtype != w.dtype:
            x = x.astype(w.dtype)
        y = x @ w.T
        if self.bias is not None:
            y += self.bias.data
        return y, LinearCache(x)

    def vjp(
        self, cache: LinearCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        x = cache.x
        nv = n_vector_axes(dy, x.ndim, "Linear")
        dx = dy @ self.weight.data if need_dx else NO_DX
        n, vshape = x.shape[0], dy.shape[:nv]
        if per_sample:  # dWₙ = Σᵣ dyₙᵣᵀ xₙᵣ, r the extra axes
            xr: np.ndarray = x.reshape(n, -1, self.in_features)  # (n, r, i)
            dyr = dy.reshape(*vshape, n, -1, self.out_features)  # (*V, n, r, o)
            grads = {"weight": np.einsum("...nro,nri->...noi", dyr, xr, optimize=True)}
        else:  # dW = Σₘ dyₘᵀ xₘ over the rows m = (n, r): one matrix product
            xr = x.reshape(-1, self.in_features)  # (m, i)
            dyr = dy.reshape(*vshape, -1, self.out_features)  # (*V, m, o)
            grads = {"weight": dyr.swapaxes(-1, -2) @ xr}
        if self.bias is not None:
            grads["bias"] = dyr.sum(axis=-2)
        return dx, grads

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def get_config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None,
                "dtype": str(self.weight.dtype)}
