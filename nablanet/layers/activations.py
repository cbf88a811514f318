"""Scalar (elementwise) activations: y = f(x), whose Jacobian is diagonal, so dx = dy ⊙ f′(x).

Each activation gives ``f`` and ``df``; the shared base does the VJP. Shapes: x, y (N, *);
dy (*V, N, *) broadcasts against f′(x) (N, *) over any leading vector axes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from nablanet._random import RNGLike
from nablanet._validation import as_float_input
from nablanet.layers._zeros import zeros_like_layout
from nablanet.layers.base import Layer, n_vector_axes


class ElementwiseCache(NamedTuple):
    x: np.ndarray
    y: np.ndarray


class Elementwise(Layer):
    """Base of scalar activations: ``f(x)`` forward, ``df(x, y)`` = f′(x) for the VJP."""

    def f(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(
        self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None
    ) -> tuple[np.ndarray, ElementwiseCache]:
        if x.dtype.kind != "f":
            x = as_float_input(x)
        y = self.f(x)
        return y, ElementwiseCache(x, y)

    def vjp(
        self, cache: ElementwiseCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n_vector_axes(dy, cache.y.ndim, type(self).__name__)
        return dy * self.df(cache.x, cache.y), {}


class Identity(Layer):
    """y = x;  dx = dy. Accepts any shape."""

    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, None]:
        return x, None

    def vjp(
        self, cache: None, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return dy, {}


class ReLU(Elementwise):
    """y = max(x, 0);  f′(x) = 1 for x ≥ 0, 0 for x < 0.

    At the kink x = 0 the derivative is taken as 1, the subgradient the source notes choose
    (any value in [0, 1] is a subgradient). PyTorch uses 0 there; away from 0 both agree.
    """

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, zeros_like_layout(x))  # against an array of 0s NumPy runs its SIMD loop

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x >= 0).astype(x.dtype)

    def vjp(
        self, cache: ElementwiseCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if dy.ndim < cache.x.ndim:
            n_vector_axes(dy, cache.x.ndim, "ReLU")  # raises the error
        return dy * (cache.x >= 0), {}  # a product with the bool mask is several times faster than np.where


class LeakyReLU(Elementwise):
    """y = x for x ≥ 0, a·x for x < 0;  f′(x) = 1 for x ≥ 0, a for x < 0 (a = negative_slope).

    As for ReLU, the derivative at x = 0 is 1 (PyTorch uses a there).
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        if not np.isfinite(negative_slope):
            raise ValueError(f"LeakyReLU(negative_slope={negative_slope!r}): expected a finite number like 0.01")
        self.negative_slope = float(negative_slope)

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.where(x >= 0, x, x * self.negative_slope)

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.where(x >= 0, 1.0, self.negative_slope).astype(x.dtype)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"

    def get_config(self) -> dict[str, float]:
        return {"negative_slope": self.negative_slope}


class Sigmoid(Elementwise):
    """y = σ(x) = 1 / (1 + e⁻ˣ);  f′(x) = y (1 − y).

    Computed from e^(−|x|) ≤ 1, so no overflow for any finite x: σ(x) = 1/(1 + e^(−|x|)) for
    x ≥ 0 and e^(−|x|)/(1 + e^(−|x|)) for x < 0.
    """

    def f(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(x)

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return y * (1 - y)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, no overflow warnings."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class Tanh(Elementwise):
    """y = tanh(x);  f′(x) = 1 − y²."""

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 1 - y * y


class Softplus(Elementwise):
    """y = (1/β) log(1 + e^(βx));  f′(x) = σ(βx).

    Where βx > threshold the function is taken as linear, y = x and f′ = 1, as in PyTorch.
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        if not (np.isfinite(beta) and beta > 0):
            raise ValueError(f"Softplus(beta={beta!r}): expected a positive finite number such as 1.0")
        self.beta = float(beta)
        self.threshold = float(threshold)

    def f(self, x: np.ndarray) -> np.ndarray:
        bx = self.beta * x
        # log(1 + e^t) = max(t, 0) + log1p(e^(−|t|)): exact and overflow-free
        soft = (np.maximum(bx, 0) + np.log1p(np.exp(-np.abs(bx)))) / self.beta
        return np.where(bx > self.threshold, x, soft).astype(x.dtype, copy=False)

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        bx = self.beta * x
        return np.where(bx > self.threshold, 1.0, sigmoid(bx)).astype(x.dtype, copy=False)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"

    def get_config(self) -> dict[str, float]:
        return {"beta": self.beta, "threshold": self.threshold}


class ELU(Elementwise):
    """y = x for x > 0, α(eˣ − 1) for x ≤ 0;  f′(x) = 1 for x > 0, α eˣ = y + α for x ≤ 0.

    eˣ − 1 is computed as expm1(min(x, 0)): accurate near 0 and no overflow for large x.
    At x = 0 the derivative is α, the x ≤ 0 branch, as in PyTorch.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        if not np.isfinite(alpha):
            raise ValueError(f"ELU(alpha={alpha!r}): expected a finite number such as 1.0")
        self.alpha = float(alpha)

    def f(self, x: np.ndarray) -> np.ndarray:
        neg = self.alpha * np.expm1(np.minimum(x, 0))
        return np.where(x > 0, x, neg).astype(x.dtype, copy=False)

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.where(x > 0, 1.0, y + self.alpha).astype(x.dtype, copy=False)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"

    def get_config(self) -> dict[str, float]:
        return {"alpha": self.alpha}


class GELU(Elementwise):
    """Gaussian error linear unit, y = x Φ(x), Φ the standard normal CDF.

    approximate="none" (exact):   y = x Φ(x),  Φ(x) = ½ erfc(−x/√2);  f′(x) = Φ(x) + x φ(x),
                                  φ(x) = e^(−x²/2) / √(2π).
    approximate="tanh":           y = ½x (1 + tanh u),  u = √(2/π) (x + 0.044715 x³);
                                  f′(x) = ½(1 + tanh u) + ½x (1 − tanh² u) √(2/π) (1 + 3·0.044715 x²).

    NumPy has no erf, so Φ comes from ``erfc`` below (W. J. Cody's rational approximations, float64
    precision); float32 inputs are evaluated in float64 and rounded back. No overflow for any
    finite x: the exact form clips x to ±40 inside φ (where e^(−x²/2) is already 0), the tanh form
    clips x to ±10 inside u (where tanh u is already ±1 in float32 and float64), so the results
    equal the unclipped formulas. (PyTorch's tanh form gives NaN gradients for |x| ≳ 1e103; here 0 or 1.)
    """

    _APPROXIMATIONS = ("none", "tanh")

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in self._APPROXIMATIONS:
            raise ValueError(
                f"GELU(approximate={approximate!r}): expected 'none' (exact x·Φ(x)) or 'tanh' "
                "(the tanh approximation), as in torch.nn.GELU; pass one of these strings."
            )
        self.approximate = approximate

    def f(self, x: np.ndarray) -> np.ndarray:
        if self.approximate == "tanh":
            t = np.tanh(_gelu_tanh_arg(x))
            return (0.5 * x * (1 + t)).astype(x.dtype, copy=False)
        return (x * normal_cdf(x)).astype(x.dtype, copy=False)

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.approximate == "tanh":
            xc = np.clip(x, -10, 10)
            t = np.tanh(_gelu_tanh_arg(x))
            du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_TANH_COEF * xc * xc)
            return (0.5 * (1 + t) + 0.5 * xc * (1 - t * t) * du).astype(x.dtype, copy=False)
        x64 = x.astype(np.float64, copy=False)
        xc = np.clip(x64, -40, 40)
        pdf = np.exp(-0.5 * xc * xc) * _INV_SQRT_2PI
        return (normal_cdf(x64) + x64 * pdf).astype(x.dtype, copy=False)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"

    def get_config(self) -> dict[str, str]:
        return {"approximate": self.approximate}


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_GELU_TANH_COEF = 0.044715


def _gelu_tanh_arg(x: np.ndarray) -> np.ndarray:
    """u = √(2/π)(x + 0.044715 x³) with x clipped to ±10: tanh u is ±1 there, and x³ cannot overflow."""
    xc = np.clip(x, -10, 10)
    return _SQRT_2_OVER_PI * (xc + _GELU_TANH_COEF * xc * xc * xc)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Φ(x) = ½ erfc(−x/√2) in float64 (accurate in both tails, no cancellation in 1 + erf)."""
    return 0.5 * erfc(-np.asarray(x, dtype=np.float64) * (1 / math.sqrt(2)))


# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969),
# coefficients as in his CALERF (netlib specfun). Relative error ≲ 1e-16 in each interval.
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02, 3.20937758913846947e03,
          1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03)
_ERF_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01, 2.98635138197400131e02,
          8.81952221241769090e02, 1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03,
          2.15311535474403846e-8)
_ERF_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02, 1.62138957456669019e03,
          3.29079923573345963e03, 4.36261909014324716e03, 3.43936767414372164e03, 1.23033935480374942e03)
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2,
          6.58749161529837803e-4, 1.63153871373020978e-2)
_ERF_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1, 6.05183413124413191e-2,
          2.33520497626869185e-3)
_ERF_SMALL = 0.46875  # |x| ≤ this: erf from a rational function of x²
_ERF_MID = 4.0  # up to this: erfc(|x|) = e^(−x²) R(|x|);  beyond: e^(−x²)/|x| (1/√π − R(1/x²)/x²)
_ERF_ZERO = 27.0  # erfc(|x|) < 1e-318 beyond this; taken as 0 (Cody's XBIG is 26.543)


def erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function erfc(x) = 1 − erf(x) = (2/√π) ∫ₓ^∞ e^(−t²) dt, elementwise, float64.

    Cody's three rational approximations (coefficients above), vectorized: each interval is
    evaluated on a clipped copy of |x| (so no division by zero or overflow) and the right one picked
    with ``np.where``; intervals no entry falls in are skipped. e^(−x²) is computed as
    e^(−s²) e^(−(|x|−s)(|x|+s)) with s = |x| rounded down to a multiple of 1/16, which keeps its
    relative error near 1 ulp for large |x|. erfc(x) = 2 − erfc(−x) for x ≤ −0.46875.
    Agrees with ``math.erfc`` to a few ulp (tested), at a fraction of ``np.frompyfunc(math.erfc)``'s cost.
    """
    x = np.asarray(x, dtype=np.float64)
    ax = np.abs(x)
    out = np.ones_like(x)
    if np.any(ax <= _ERF_SMALL):  # erf(x) = x P(x²)/Q(x²)
        xs = np.clip(x, -_ERF_SMALL, _ERF_SMALL)
        r = _cody_ratio(xs * xs, _ERF_A, _ERF_B)
        r *= xs
        np.subtract(1, r, out=out)
    if not np.all(ax <= _ERF_SMALL):  # (NaN takes this path and stays NaN)
        ym = np.clip(ax, _ERF_SMALL, _ERF_MID)
        tail = _cody_ratio(ym, _ERF_C, _ERF_D)  # erfc(|x|) e^(x²) = P(|x|)/Q(|x|)
        if np.any(ax > _ERF_MID):  # erfc(|x|) e^(x²) |x| = 1/√π − w P(w)/Q(w),  w = 1/x²
            yb = np.clip(ax, _ERF_MID, _ERF_ZERO)
            w = yb * yb
            np.divide(1, w, out=w)
            big = _cody_ratio(w, _ERF_P, _ERF_Q)
            big *= w
            np.subtract(1 / math.sqrt(math.pi), big, out=big)
            big /= yb
            tail = np.where(ax <= _ERF_MID, tail, big)
        yc = np.minimum(ax, _ERF_ZERO)
        s = yc * 16
        np.trunc(s, out=s)
        s /= 16
        d = yc - s
        d *= yc + s
        np.negative(d, out=d)
        np.exp(d, out=d)
        np.multiply(s, s, out=s)
        np.negative(s, out=s)
        np.exp(s, out=s)
        tail *= s
        tail *= d  # × e^(−x²)
        tail[ax > _ERF_ZERO] = 0.0
        out = np.where(ax <= _ERF_SMALL, out, np.where(x < 0, 2 - tail, tail))
    return out


def _cody_ratio(t: np.ndarray, num: tuple[float, ...], den: tuple[float, ...]) -> np.ndarray:
    """Cody's rational form, in place: ((num[-1] t + num[0]) t + … + num[-2]) / ((t + den[0]) t + … + den[-1])."""
    p = t * num[-1]
    q = t.copy()
    for a, b in zip(num[:-2], den[:-1], strict=True):
        p += a
        p *= t
        q += b
        q *= t
    p += num[-2]
    q += den[-1]
    p /= q
    return p


class SiLU(Elementwise):
    """y = x σ(x) (also "swish");  f′(x) = σ(x) (1 + x (1 − σ(x))).

    σ is the overflow-free ``sigmoid`` above.
    """

    def f(self, x: np.ndarray) -> np.ndarray:
        return x * sigmoid(x)

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        s = sigmoid(x)
        return s * (1 + x * (1 - s))


class Hardtanh(Elementwise):
    """y = clip(x, min_val, max_val);  f′(x) = 1 for min_val < x < max_val, 0 otherwise.

    At the corners x = min_val and x = max_val the derivative is 0, as PyTorch's gradient is
    (checked against torch 2.13; the tests pin it).
    """

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0) -> None:
        super().__init__()
        if not float(min_val) < float(max_val):
            raise ValueError(
                f"Hardtanh(min_val={min_val!r}, max_val={max_val!r}): expected min_val < max_val, "
                "e.g. Hardtanh(-1.0, 1.0); swap the two values if they are reversed."
            )
        self.min_val = float(min_val)
        self.max_val = float(max_val)

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.min_val, self.max_val).astype(x.dtype, copy=False)

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return ((x > self.min_val) & (x < self.max_val)).astype(x.dtype)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}"

    def get_config(self) -> dict[str, float]:
        return {"min_val": self.min_val, "max_val": self.max_val}
