"""Normalization layers: batch norm (statistics over the batch) and layer norm (over each sample).

Both standardize, x̂ = (x − μ)/√(σ² + ε), then scale and shift, y = γ x̂ + β. The VJP of the
standardization, with means over the axes that μ and σ² were taken over (m entries each), is

    dx = (1/√(σ² + ε)) · (g − mean(g) − x̂ · mean(g x̂)),   g = γ dy

the input gradient minus its projection onto the two directions (constant, x̂) that the
normalization removes. Batch norm takes its statistics over the batch, so each sample's output
depends on the others (no per-sample gradients in training mode); layer norm takes them over each
sample's own features, so per-sample gradients are defined.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from nablanet._dtype import resolve_dtype
from nablanet._random import RNGLike
from nablanet._validation import as_float_input
from nablanet.layers.base import NO_DX, Layer, n_vector_axes
from nablanet.parameter import Parameter


def _check_eps(who: str, eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, int | float | np.integer | np.floating) or not (
        math.isfinite(eps) and eps > 0
    ):
        raise ValueError(f"{who}(eps={eps!r}): expected a positive finite number added to the variance, e.g. 1e-5")
    return float(eps)


def _check_flag(who: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{who}({name}={value!r}): expected True or False")
    return bool(value)


def _float_input(x: np.ndarray, dtype: np.dtype[Any] | None) -> np.ndarray:
    """``x`` in the layer's dtype (its parameters' or buffers'), or as a float when it has neither."""
    if dtype is None:
        return x if x.dtype.kind == "f" else as_float_input(x)
    return x if x.dtype == dtype else x.astype(dtype)


class BatchNormCache(NamedTuple):
    xhat: np.ndarray  # (N, C, *S): the standardized input
    inv_std: np.ndarray  # (C, 1, …): 1/√(σ² + ε), broadcasting against x
    batch_stats: bool  # True: normalized with this batch's statistics (training mode)


_BN_DOC = """

    Forward (per channel c; μ_c, σ²_c over the batch axis n and the spatial axes, biased variance):
        x̂ = (x − μ_c)/√(σ²_c + ε)      y = γ_c x̂ + β_c
    Running statistics (training mode with track_running_stats=True), PyTorch's semantics:
        running_mean ← (1 − f)·running_mean + f·μ_c
        running_var  ← (1 − f)·running_var  + f·σ²_c·m/(m − 1)   (unbiased; m values per channel)
        num_batches_tracked ← num_batches_tracked + 1, and f = momentum, or 1/num_batches_tracked
        when momentum is None (a cumulative moving average).
      forward(train=True) therefore changes these buffers in place: a documented side effect, as in
      PyTorch, and the one exception to "forward is pure". The training-mode output does not read them.
    Eval mode (forward(train=False)) normalizes with the running statistics instead; with
    track_running_stats=False there are none, and the batch statistics are used in both modes.
    VJP, batch statistics (sums and means over n and the spatial axes, per channel c):
        dγ_c = Σ dy·x̂      dβ_c = Σ dy
        dx = (γ_c/√(σ²_c + ε)) · (dy − mean(dy) − x̂·mean(dy·x̂))
    VJP, running statistics:  dx = dy·γ_c/√(running_var_c + ε),  dγ_c and dβ_c as above.
    Vector axes: dy (*V, N, C, …) gives dx (*V, N, C, …), dγ, dβ (*V, C); each vector slice has its
    own sums and means.
    Per-sample: not defined with batch statistics (every output depends on the whole batch, the
    samples are coupled), so per_sample=True raises a ValueError there; use eval mode, or a per-sample
    normalization such as LayerNorm. In eval mode dγ, dβ come per sample, (*V, N, C).
    Parameters (affine=True): weight γ (C,) ones, bias β (C,) zeros (none with bias=False). Buffers
    (track_running_stats=True): running_mean (C,) zeros, running_var (C,) ones,
    num_batches_tracked int64 (). Names and state_dict keys are PyTorch's. The input is converted
    to the parameters' (or buffers') dtype. With need_dx=False the input gradient is skipped.
    """


class _BatchNorm(Layer):
    __doc__ = "Batch normalization, per channel c (shared code of BatchNorm1d and BatchNorm2d)." + _BN_DOC

    _ndims: tuple[int, ...] = ()
    _expected: str = ""

    def forward(
        self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None
    ) -> tuple[np.ndarray, BatchNormCache]:
        """Normalize per channel; in training mode also update the running statistics in place."""
        who = type(self).__name__
        if x.ndim not in self._ndims or x.shape[1] != self.num_features:
            raise ValueError(
                f"{who}(num_features={self.num_features}) got x.shape={x.shape}; expected {self._expected} "
                f"with C = {self.num_features}. "
                + (
                    f"Check the previous layer's channels or set num_features={x.shape[1]}."
                    if x.ndim in self._ndims
                    else "Use BatchNorm1d for (N, C) or (N, C, L) and BatchNorm2d for (N, C, H, W)."
                )
            )
        x = _float_input(x, self._array_dtype())
        axes = (0, *range(2, x.ndim))  # every axis but C
        bshape = (self.num_features,) + (1,) * (x.ndim - 2)  # per-channel arrays broadcast against x
        batch_stats = train or not self.track_running_stats
        if batch_stats:
            m = x.size // self.num_features
            if m < 2:
                raise ValueError(
                    f"{who}: expected more than 1 value per channel when training, got input size {x.shape}. "
                    "Batch statistics need at least 2 values per channel: use a batch of 2 or more samples, "
                    "or eval mode (forward(train=False)) with running statistics."
                )
            mean = x.mean(axis=axes, keepdims=True)
            xc = x - mean
            var = np.mean(xc * xc, axis=axes, keepdims=True)  # biased, as used for normalizing
            inv_std = 1.0 / np.sqrt(var + self.eps)
            if train and self.track_running_stats:
                self._update_running_stats(mean.reshape(-1), var.reshape(-1) * (m / (m - 1)))
        else:
            inv_std = (1.0 / np.sqrt(self._buffers["running_var"] + self.eps)).reshape(bshape)
            xc = x - self._buffers["running_mean"].reshape(bshape)
        xhat = xc * inv_std
        inv_std = inv_std.reshape(bshape)
        y = xhat
        if self.weight is not None:
            y = xhat * self.weight.data.reshape(bshape)
        if self.bias is not None:
            y = y + self.bias.data.reshape(bshape)
        return y, BatchNormCache(xhat, inv_std, batch_stats)

    def vjp(
        self, cache: BatchNormCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        who = type(self).__name__
        xhat, inv_std, batch_stats = cache
        nv = n_vector_axes(dy, xhat.ndim, who)
        if per_sample and batch_stats:
            raise ValueError(
                f"{who}: per-sample gradients are not defined for batch norm with batch statistics (training "
                "mode or track_running_stats=False): every output depends on the whole batch, so the samples "
                "are coupled. Run the layer in eval mode (forward(train=False)) with running statistics, or use "
                "a per-sample normalization such as LayerNorm (or GroupNorm)."
            )
        axes = (nv, *range(nv + 2, dy.ndim))  # n and the spatial axes of each vector slice
        sums = axes[1:] if per_sample else axes  # per sample: the batch axis is kept
        grads: dict[str, np.ndarray] = {}
        if self.weight is not None:
            grads["weight"] = (dy * xhat).sum(axis=sums)  # dγ_c = Σ dy·x̂
        if self.bias is not None:
            grads["bias"] = dy.sum(axis=sums)  # dβ_c = Σ dy
        if not need_dx:
            return NO_DX, grads
        scale = inv_std if self.weight is None else inv_std * self.weight.data.reshape(inv_std.shape)  # γ/√(σ² + ε)
        if not batch_stats:
            return dy * scale, grads
        mean_dy, mean_dyx = dy.mean(axis=axes, keepdims=True), (dy * xhat).mean(axis=axes, keepdims=True)
        return scale * (dy - mean_dy - xhat * mean_dyx), grads

    def _update_running_stats(self, mean: np.ndarray, unbiased_var: np.ndarray) -> None:
        """running ← (1 − f)·running + f·batch, f = momentum, or 1/num_batches_tracked when None."""
        nbt = self._buffers["num_batches_tracked"]
        nbt[...] += 1
        f = 1.0 / float(nbt) if self.momentum is None else self.momentum
        for name, stat in (("running_mean", mean), ("running_var", unbiased_var)):
            buf = self._buffers[name]
            buf *= 1.0 - f
            buf += f * stat


    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        bias: bool = True,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        who = type(self).__name__
        if isinstance(num_features, bool) or not isinstance(num_features, int | np.integer) or num_features < 1:
            raise ValueError(
                f"{who}(num_features={num_features!r}): expected a positive int, the number of channels C "
                f"of inputs {self._expected}, e.g. {who}(16)"
            )
        self.num_features = int(num_features)
        self.eps = _check_eps(who, eps)
        if momentum is not None and (
            isinstance(momentum, bool)
            or not isinstance(momentum, int | float | np.integer | np.floating)
            or not 0.0 <= momentum <= 1.0
        ):
            raise ValueError(
                f"{who}(momentum={momentum!r}): expected a number in [0, 1] (weight of the new batch in the "
                "running statistics, PyTorch's default 0.1) or None for a cumulative average"
            )
        self.momentum = None if momentum is None else float(momentum)
        self.affine = _check_flag(who, "affine", affine)
        self.track_running_stats = _check_flag(who, "track_running_stats", track_running_stats)
        self._bias_arg = _check_flag(who, "bias", bias)
        dt = resolve_dtype(dtype)
        self._init_dtype = dt
        c = self.num_features
        self.weight: Parameter | None = Parameter(np.ones(c, dtype=dt)) if self.affine else None
        self.bias: Parameter | None = Parameter(np.zeros(c, dtype=dt)) if self.affine and self._bias_arg else None
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, dtype=dt))
            self.register_buffer("running_var", np.ones(c, dtype=dt))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))

    def _array_dtype(self) -> np.dtype[Any] | None:
        if self.weight is not None:
            return self.weight.dtype
        if self.track_running_stats:
            return self._buffers["running_mean"].dtype
        return None

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}"
        )

    def get_config(self) -> dict[str, Any]:
        dt = self._array_dtype()
        return {
            "num_features": self.num_features,
            "eps": self.eps,
            "momentum": self.momentum,
            "affine": self.affine,
            "track_running_stats": self.track_running_stats,
            "bias": self._bias_arg,
            "dtype": str(self._init_dtype if dt is None else dt),
        }


class BatchNorm1d(_BatchNorm):
    __doc__ = "Batch normalization of inputs (N, C) or (N, C, L), per channel c." + _BN_DOC
    _ndims = (2, 3)
    _expected = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    __doc__ = "Batch normalization of images (N, C, H, W), per channel c." + _BN_DOC
    _ndims = (4,)
    _expected = "(N, C, H, W)"


class LayerNormCache(NamedTuple):
    xhat: np.ndarray  # (N, …, *D): the standardized input
    inv_std: np.ndarray  # (N, …, 1, …, 1): 1/√(σ² + ε) per normalized slice


class LayerNorm(Layer):
    """Layer normalization over the trailing axes D = normalized_shape of each sample.

    Forward (μ, σ² over the k normalized axes of each sample/position, biased variance, m = ∏D):
        x̂ = (x − μ)/√(σ² + ε)      y = γ ⊙ x̂ + β        (γ, β of shape D, elementwise)
    VJP (g = γ ⊙ dy; means over the normalized axes of each slice):
        dx = (1/√(σ² + ε)) · (g − mean(g) − x̂·mean(g·x̂))
        dγ = Σₙ dy ⊙ x̂      dβ = Σₙ dy      (sums over the batch and any axes between N and D)
    Shapes: x, y (N, …, *D); dy (*V, N, …, *D) gives dx of that shape and dγ, dβ (*V, *D).
    Per-sample: defined, since the statistics are each sample's own: dγₙ, dβₙ (*V, N, *D).
    Parameters: weight γ (ones) when elementwise_affine, bias β (zeros) when also bias=True;
    PyTorch's names. The input is converted to the parameters' dtype; no running statistics.
    """

    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, LayerNormCache]:
        k = len(self.normalized_shape)
        if x.ndim <= k or x.shape[x.ndim - k :] != self.normalized_shape:
            raise ValueError(
                f"LayerNorm(normalized_shape={self.normalized_shape}) got x.shape={x.shape}; expected "
                f"(N, …, {', '.join(map(str, self.normalized_shape))}): a batch axis, then trailing axes equal to "
                "normalized_shape. "
                + (
                    "For a single sample add a batch axis: x[None]."
                    if x.shape[max(x.ndim - k, 0) :] == self.normalized_shape
                    else "Check the previous layer or set normalized_shape to the input's trailing axes."
                )
            )
        x = _float_input(x, None if self.weight is None else self.weight.dtype)
        axes = tuple(range(-k, 0))
        mean = x.mean(axis=axes, keepdims=True)
        xc = x - mean
        inv_std = 1.0 / np.sqrt(np.mean(xc * xc, axis=axes, keepdims=True) + self.eps)
        xhat = xc * inv_std
        y = xhat
        if self.weight is not None:
            y = xhat * self.weight.data
        if self.bias is not None:
            y = y + self.bias.data
        return y, LayerNormCache(xhat, inv_std)

    def vjp(
        self, cache: LayerNormCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        xhat, inv_std = cache
        nv = n_vector_axes(dy, xhat.ndim, "LayerNorm")
        k = len(self.normalized_shape)
        lead = tuple(range(nv + 1 if per_sample else nv, dy.ndim - k))  # batch (unless per-sample) and middle axes
        grads: dict[str, np.ndarray] = {}
        if self.weight is not None:
            grads["weight"] = (dy * xhat).sum(axis=lead)
        if self.bias is not None:
            grads["bias"] = dy.sum(axis=lead)
        if not need_dx:
            return NO_DX, grads
        g = dy if self.weight is None else dy * self.weight.data
        axes = tuple(range(-k, 0))
        mean_g = g.mean(axis=axes, keepdims=True)
        mean_gx = (g * xhat).mean(axis=axes, keepdims=True)
        return inv_std * (g - mean_g - xhat * mean_gx), grads

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...] | list[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        *,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int | np.integer) else normalized_shape
        try:
            dims = tuple(shape)
        except TypeError:
            dims = ()
        if not dims or any(isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 1 for s in dims):
            raise ValueError(
                f"LayerNorm(normalized_shape={normalized_shape!r}): expected a positive int or a non-empty tuple "
                "of positive ints, the trailing axes to normalize over, e.g. LayerNorm(64) for x (N, 64) or "
                "LayerNorm((8, 8)) for x (N, C, 8, 8)"
            )
        self.normalized_shape = tuple(int(s) for s in dims)
        self.eps = _check_eps("LayerNorm", eps)
        self.elementwise_affine = _check_flag("LayerNorm", "elementwise_affine", elementwise_affine)
        self._bias_arg = _check_flag("LayerNorm", "bias", bias)
        dt = resolve_dtype(dtype)
        self._init_dtype = dt
        self.weight: Parameter | None = (
            Parameter(np.ones(self.normalized_shape, dtype=dt)) if self.elementwise_affine else None
        )
        self.bias: Parameter | None = (
            Parameter(np.zeros(self.normalized_shape, dtype=dt)) if self.elementwise_affine and self._bias_arg else None
        )

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
            f"bias={self.bias is not None}"
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "normalized_shape": list(self.normalized_shape),
            "eps": self.eps,
            "elementwise_affine": self.elementwise_affine,
            "bias": self._bias_arg,
            "dtype": str(self._init_dtype if self.weight is None else self.weight.dtype),
        }
