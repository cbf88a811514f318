"""Weight initializers (PyTorch's names; each fills an array or Parameter in place and returns it).

Fans for a weight of shape (o, i, k…): fan_in = i·∏k, fan_out = o·∏k (PyTorch's rule).

* Glorot & Bengio (2010), "xavier": Var(w) = gain² · 2/(fan_in + fan_out);
  uniform bound a = gain·√(6/(fan_in + fan_out)).
* He et al. (2015), "kaiming": Var(w) = gain²/fan (fan = fan_in by default), gain from
  ``calculate_gain(nonlinearity, a)``; uniform bound √3·gain/√fan.
* LeCun (1998): Var(w) = 1/fan_in (kaiming with the linear gain 1); not in PyTorch.

All randomness comes from ``rng`` (a Generator or int seed; ``None``: the global generator).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nablanet._random import RNGLike, get_rng
from nablanet.parameter import Parameter

ArrayOrParam = np.ndarray | Parameter


def _data(tensor: ArrayOrParam) -> np.ndarray:
    if isinstance(tensor, Parameter):
        return tensor.data
    if isinstance(tensor, np.ndarray):
        return tensor
    raise TypeError(f"initializers fill an ndarray or Parameter in place; got {type(tensor).__name__}")


def _fill(tensor: ArrayOrParam, values: Any) -> ArrayOrParam:
    arr = _data(tensor)
    arr[...] = values
    return tensor


def calculate_fan_in_and_fan_out(tensor: ArrayOrParam) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight (o, i, k…); needs at least 2 axes, as in PyTorch."""
    shape = _data(tensor).shape
    if len(shape) < 2:
        raise ValueError(
            f"fan in and fan out need a weight with at least 2 axes (out, in, ...); got shape {shape}. "
            "Biases are initialized with uniform_/zeros_ instead."
        )
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


_GAINS = {
    "linear": 1.0, "identity": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "sigmoid": 1.0,
    "tanh": 5.0 / 3, "relu": math.sqrt(2.0), "selu": 3.0 / 4,
}


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """PyTorch's recommended gains: tanh 5/3, relu √2, leaky_relu √(2/(1 + a²)), linear 1, selu 3/4."""
    if nonlinearity == "leaky_relu":
        a = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + a * a))
    if nonlinearity not in _GAINS:
        known = [*_GAINS, "leaky_relu"]
        raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}; expected one of {known}")
    return _GAINS[nonlinearity]


def uniform_(tensor: ArrayOrParam, a: float = 0.0, b: float = 1.0, *, rng: RNGLike = None) -> ArrayOrParam:
    """w ~ U(a, b)."""
    arr = _data(tensor)
    return _fill(tensor, get_rng(rng).uniform(a, b, arr.shape))


def normal_(tensor: ArrayOrParam, mean: float = 0.0, std: float = 1.0, *, rng: RNGLike = None) -> ArrayOrParam:
    """w ~ N(mean, std²)."""
    arr = _data(tensor)
    return _fill(tensor, get_rng(rng).normal(mean, std, arr.shape))


def constant_(tensor: ArrayOrParam, val: float) -> ArrayOrParam:
    return _fill(tensor, val)


def zeros_(tensor: ArrayOrParam) -> ArrayOrParam:
    return _fill(tensor, 0.0)


def ones_(tensor: ArrayOrParam) -> ArrayOrParam:
    return _fill(tensor, 1.0)


def xavier_uniform_(tensor: ArrayOrParam, gain: float = 1.0, *, rng: RNGLike = None) -> ArrayOrParam:
    """Glorot uniform: w ~ U(−a, a), a = gain·√(6/(fan_in + fan_out))."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -a, a, rng=rng)


def xavier_normal_(tensor: ArrayOrParam, gain: float = 1.0, *, rng: RNGLike = None) -> ArrayOrParam:
    """Glorot normal: w ~ N(0, σ²), σ = gain·√(2/(fan_in + fan_out))."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng=rng)


def _kaiming_std(tensor: ArrayOrParam, a: float, mode: str, nonlinearity: str) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode={mode!r}: expected 'fan_in' or 'fan_out'")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(
    tensor: ArrayOrParam, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
    *, rng: RNGLike = None,
) -> ArrayOrParam:
    """He uniform: w ~ U(−b, b), b = √3 · gain/√fan."""
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, rng=rng)


def kaiming_normal_(
    tensor: ArrayOrParam, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
    *, rng: RNGLike = None,
) -> ArrayOrParam:
    """He normal: w ~ N(0, σ²), σ = gain/√fan."""
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), rng=rng)


def lecun_uniform_(tensor: ArrayOrParam, *, rng: RNGLike = None) -> ArrayOrParam:
    """LeCun uniform: w ~ U(−b, b), b = √(3/fan_in), so Var(w) = 1/fan_in."""
    return kaiming_uniform_(tensor, nonlinearity="linear", rng=rng)


def lecun_normal_(tensor: ArrayOrParam, *, rng: RNGLike = None) -> ArrayOrParam:
    """LeCun normal: w ~ N(0, 1/fan_in)."""
    return kaiming_normal_(tensor, nonlinearity="linear", rng=rng)
