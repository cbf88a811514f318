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
        return np.maximum(x, 0)

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x >= 0).astype(x.dtype)


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


SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
GELU_TANH_COEF = 0.044715  # c in GELU's tanh form, u = √(2/π)(x + c x³), as in PyTorch


class GELU(Elementwise):
    """Gaussian error linear unit, y = x Φ(x), Φ the standard normal CDF.

    approximate="none" (exact):   y = x Φ(x),  Φ(x) = ½ erfc(−x/√2);  f′(x) = Φ(x) + x φ(x),
                                  φ(x) = e^(−x²/2) / √(2π).
    approximate="tanh":           y = ½x (1 + tanh u),  u = √(2/π) (x + c x³),  c = 0.044715;
                                  f′(x) = ½(1 + tanh u) + ½x (1 − tanh² u) u′,  u′ = √(2/π) (1 + 3c x²).

    Φ comes from SciPy's erfc, evaluated in float64 (float32 inputs are rounded back). No overflow
    for any finite x: φ clips x to ±40 (where e^(−x²/2) is already 0), the tanh form clips x to ±10
    (where tanh u is already ±1 in float32 and float64), so the results equal the unclipped
    formulas. (PyTorch's tanh form gives NaN gradients for |x| ≳ 1e103; here 0 or 1.)
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
            t = np.tanh(gelu_tanh_arg(x))
            return (0.5 * x * (1 + t)).astype(x.dtype, copy=False)
        return (x * normal_cdf(x)).astype(x.dtype, copy=False)

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.approximate == "tanh":
            xc = np.clip(x, -10, 10)
            t = np.tanh(gelu_tanh_arg(x))
            du = SQRT_2_OVER_PI * (1 + 3 * GELU_TANH_COEF * xc * xc)
            return (0.5 * (1 + t) + 0.5 * xc * (1 - t * t) * du).astype(x.dtype, copy=False)
        x64 = x.astype(np.float64, copy=False)
        return (normal_cdf(x64) + x64 * normal_pdf(x64)).astype(x.dtype, copy=False)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"

    def get_config(self) -> dict[str, str]:
        return {"approximate": self.approximate}


def gelu_tanh_arg(x: np.ndarray) -> np.ndarray:
    """GELU's u = √(2/π)(x + c x³), x clipped to ±10: tanh u is ±1 there, and x³ cannot overflow."""
    xc = np.clip(x, -10, 10)
    return SQRT_2_OVER_PI * (xc + GELU_TANH_COEF * xc * xc * xc)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Φ(x) = ½ erfc(−x/√2) in float64 (accurate in both tails: no cancellation in 1 + erf)."""
    from scipy.special import erfc  # here, not at the top: it would add ~0.5 s to every `import nablanet`

    return 0.5 * erfc(-np.asarray(x, dtype=np.float64) / math.sqrt(2))


def normal_pdf(x: np.ndarray) -> np.ndarray:
    """φ(x) = e^(−x²/2)/√(2π), with x clipped to ±40 (φ is 0 in float64 there, and x² cannot overflow)."""
    xc = np.clip(x, -40, 40)
    return np.exp(-0.5 * xc * xc) / math.sqrt(2 * math.pi)


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
