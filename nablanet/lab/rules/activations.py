"""Lab rules for the scalar activations and ``Identity`` (``layers/activations.py``).

Curvature: an elementwise y = f(x) has ẏ = f′(x) ⊙ ẋ and (dx)˙ = dẏ ⊙ f′(x) + dy ⊙ f″(x) ⊙ ẋ, with f′
the layer's own ``df`` and f″ from ``d2f_rules``, one rule per activation below. Identity is a
linear map (``rop.jvp_linear_map``).

Activation statistics (``nablanet.lab.activation_stats`` and the Recorder): saturating activations
report ``saturation_fraction``, ReLU its zero, dead and dead-channel fractions (see
``nablanet.lab.activations`` for the definitions).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nablanet.lab.registry import activation_rules, d2f_rules, jvp_rules, vjp_rop_rules
from nablanet.lab.rop import RopResult, Tangents, d2f, jvp_linear_map, no_params, vjp_rop_fixed_jacobian
from nablanet.layers.activations import (
    ELU,
    GELU,
    GELU_TANH_COEF,
    SQRT_2_OVER_PI,
    Elementwise,
    ElementwiseCache,
    Hardtanh,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
    gelu_tanh_arg,
    normal_pdf,
    sigmoid,
)
from nablanet.layers.base import NO_DX

jvp_rules.register(Identity)(jvp_linear_map)
vjp_rop_rules.register(Identity)(vjp_rop_fixed_jacobian)


# -- curvature: f′ from the layer, f″ from d2f_rules -----------------------------------------------------
@jvp_rules.register(Elementwise)
def _jvp_elementwise(
    layer: Elementwise, cache: ElementwiseCache, xdot: np.ndarray | None, thetadot: Tangents
) -> np.ndarray | None:
    """y = f(x) elementwise:  ẏ = f′(x) ⊙ ẋ  (f′ is the layer's own ``df``)."""
    no_params(layer, thetadot)
    return None if xdot is None else xdot * layer.df(cache.x, cache.y)


@vjp_rop_rules.register(Elementwise)
def _rop_elementwise(
    layer: Elementwise, cache: ElementwiseCache, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None,
    thetadot: Tangents, need_dx: bool,
) -> RopResult:
    """dx = dy ⊙ f′(x):  (dx)˙ = dẏ ⊙ f′(x) + dy ⊙ f″(x) ⊙ ẋ."""
    no_params(layer, thetadot)
    if not need_dx:
        return NO_DX, {}
    dxdot = dydot * layer.df(cache.x, cache.y)
    if xdot is not None:
        f2 = d2f(layer, cache.x, cache.y)
        if f2 is not None:
            dxdot = dxdot + dy * f2 * xdot
    return dxdot, {}


@d2f_rules.register(ReLU, LeakyReLU, Hardtanh)
def _d2f_piecewise_linear(layer: Elementwise, x: np.ndarray, y: np.ndarray) -> None:
    """Piecewise linear (ReLU, LeakyReLU, Hardtanh): f″ = 0 away from the kinks (and taken as 0 there)."""
    return None


@d2f_rules.register(Sigmoid)
def _d2f_sigmoid(layer: Sigmoid, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """y = σ(x), f′ = y(1 − y):  f″ = y(1 − y)(1 − 2y)."""
    return y * (1 - y) * (1 - 2 * y)


@d2f_rules.register(Tanh)
def _d2f_tanh(layer: Tanh, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """y = tanh x, f′ = 1 − y²:  f″ = −2y(1 − y²)."""
    return -2 * y * (1 - y * y)


@d2f_rules.register(Softplus)
def _d2f_softplus(layer: Softplus, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """f′ = σ(βx):  f″ = β σ(βx)(1 − σ(βx)), and 0 where βx > threshold (the linear branch, as PyTorch)."""
    bx = layer.beta * x
    s = sigmoid(bx)
    return np.where(bx > layer.threshold, 0.0, layer.beta * s * (1 - s)).astype(x.dtype, copy=False)


@d2f_rules.register(ELU)
def _d2f_elu(layer: ELU, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """f′ = 1 (x > 0), α eˣ (x ≤ 0):  f″ = 0 (x > 0), α eˣ = y + α (x ≤ 0), the x ≤ 0 branch at 0 as f′."""
    return np.where(x > 0, 0.0, y + layer.alpha).astype(x.dtype, copy=False)


@d2f_rules.register(GELU)
def _d2f_gelu(layer: GELU, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact:  f′ = Φ + x φ, φ′ = −x φ  ⇒  f″ = 2φ + x φ′ = φ(x)(2 − x²).

    tanh form, t = tanh u, u = √(2/π)(x + c x³), u′ = √(2/π)(1 + 3c x²), u″ = √(2/π)·6c x:
        f′ = ½(1 + t) + ½ x (1 − t²) u′   ⇒   f″ = (1 − t²) (u′ − x t u′² + ½ x u″).
    x is clipped as in the layer (±40 in φ, ±10 in u), where f″ is already 0 in floating point. The
    constants and φ are the layer's own.
    """
    x64 = x.astype(np.float64, copy=False)
    if layer.approximate == "tanh":
        xc = np.clip(x64, -10, 10)
        t = np.tanh(gelu_tanh_arg(xc))
        du = SQRT_2_OVER_PI * (1 + 3 * GELU_TANH_COEF * xc * xc)
        d2u = SQRT_2_OVER_PI * 6 * GELU_TANH_COEF * xc
        out = (1 - t * t) * (du - xc * t * du * du + 0.5 * xc * d2u)
    else:
        xc = np.clip(x64, -40, 40)
        out = normal_pdf(xc) * (2 - xc * xc)
    return out.astype(x.dtype, copy=False)


@d2f_rules.register(SiLU)
def _d2f_silu(layer: SiLU, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """y = x σ(x), f′ = σ(1 + x(1 − σ)):  f″ = σ(1 − σ)(2 + x(1 − 2σ))."""
    s = sigmoid(x)
    return s * (1 - s) * (2 + x * (1 - 2 * s))


# -- activation statistics -------------------------------------------------------------------------
def _input_output(x: np.ndarray, y: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) as the elementwise layer saw them (its cache holds x in the floating dtype it used)."""
    if isinstance(cache, ElementwiseCache):
        return cache.x, cache.y
    return x, y


@activation_rules.register(Sigmoid, Tanh, Hardtanh, Softplus, ELU)
def _saturation(layer: Elementwise, x: np.ndarray, y: np.ndarray, cache: Any, eps: float) -> dict[str, float]:
    """saturation_fraction = mean over all N·U entries of [|f′(x)| < eps], f′ = ``layer.df``."""
    xe, ye = _input_output(x, y, cache)
    return {"saturation_fraction": float(np.mean(np.abs(layer.df(xe, ye)) < eps))}


@activation_rules.register(ReLU)
def _dead_units(layer: ReLU, x: np.ndarray, y: np.ndarray, cache: Any, eps: float) -> dict[str, float]:
    """zero_fraction, dead_fraction (units zero for every sample) and, for (N, C, *S), dead_channel_fraction."""
    _, ye = _input_output(x, y, cache)
    zero = ye == 0
    out = {
        "zero_fraction": float(np.mean(zero)),
        "dead_fraction": float(np.mean(np.all(zero.reshape(zero.shape[0], -1), axis=0))),
    }
    if zero.ndim >= 3:
        out["dead_channel_fraction"] = float(np.mean(np.all(zero, axis=(0, *range(2, zero.ndim)))))
    return out
