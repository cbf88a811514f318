"""SGD (with momentum and Nesterov), Adam, AdamW, RMSprop and Adagrad: one per-array rule each.

Every rule is PyTorch's single-tensor algorithm (``foreach=False``), written out for NumPy and
updating ``p.data`` in place, in its own dtype. Notation: g = ∂L/∂w (``p.grad``), α the learning
rate after ``lr_scale``, λ the weight decay, t the optimizer's step counter (which schedules
see), k the number of updates this parameter has received including this one (Adam's bias
correction and Adagrad's decay count k, as PyTorch does; k = t + 1 unless some steps found
``p.grad is None``, which skips the parameter).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np

from nablanet.optim.base import Optimizer, Range, Schedule
from nablanet.parameter import Parameter

Hyper = float | Schedule

_NONNEG = Range(0.0)
_UNIT_OPEN = Range(0.0, 1.0, hi_open=True)
_UNIT = Range(0.0, 1.0)


def _check_flags(who: str, h: Mapping[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        if not isinstance(h[name], bool):
            raise TypeError(
                f"{who}: received {name}={h[name]!r}; expected True or False. Fix: pass {name}=True or {name}=False."
            )


def _next_count(state: dict[str, np.ndarray]) -> int:
    """k ← k + 1 for this parameter, kept as a 0-d array so the state stays arrays only."""
    k = int(state["step"]) + 1 if "step" in state else 1
    state["step"] = np.array(k, dtype=np.int64)
    return k


def _zeros(state: dict[str, np.ndarray], name: str, p: Parameter, fill: float = 0.0) -> np.ndarray:
    if name not in state:
        state[name] = np.full_like(p.data, fill)
    return state[name]


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum, dampening, Nesterov and weight decay.

    PyTorch's rule, with buffer b (no momentum when μ = 0; then d = g):
        g ← g + λ w                                     (weight decay, when λ ≠ 0)
        b ← g  on the first step,   b ← μ b + (1 − τ) g  after      (τ: dampening)
        d ← g + μ b  (nesterov)     or   d ← b
        w ← w − α d

    The notes' momentum method (Sutskever et al. 2013) keeps a velocity v instead:
        v ← μ v − α ∇L,     w ← w + v
    The two are the same iteration for a constant α and τ = 0: with v = −α b,
        v_new = μ v − α g = −α (μ b + g) = −α b_new,   and   w + v_new = w − α b_new.
    On the first step v = −α g = −α b also holds, since the notes start from v = 0. With a
    time-varying μₜ (e.g. ``schedules.sutskever_momentum``) the identity still holds; with a
    time-varying α it does not (v keeps old α's, b does not).

    Hyperparameters (each a number or a schedule t -> value): lr ≥ 0, 0 ≤ momentum < 1,
    0 ≤ dampening ≤ 1, weight_decay ≥ 0. nesterov=True needs momentum > 0 and dampening = 0.
    """

    ranges: ClassVar[dict[str, Range]] = {
        "lr": _NONNEG,
        "momentum": _UNIT_OPEN,
        "dampening": _UNIT,
        "weight_decay": _NONNEG,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: Hyper,
        momentum: Hyper = 0.0,
        dampening: Hyper = 0.0,
        nesterov: bool = False,
        weight_decay: Hyper = 0.0,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
        }
        super().__init__(params, defaults)

    def _check(self, h: Mapping[str, Any]) -> None:
        _check_flags("SGD", h, ("nesterov",))
        if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
            raise ValueError(
                f"SGD: received nesterov=True with momentum={h['momentum']!r}, "
                f"dampening={h['dampening']!r}; expected momentum > 0 and dampening = 0. "
                "Fix: pass momentum=0.9 (and dampening=0), or nesterov=False."
            )

    def _update(self, p: Parameter, g: np.ndarray, state: dict[str, np.ndarray], h: dict[str, Any]) -> None:
        mu = h["momentum"]
        if h["weight_decay"] != 0:
            g = g + h["weight_decay"] * p.data
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g, dtype=p.dtype, copy=True)
            else:
                buf *= mu
                buf += g if h["dampening"] == 0 else (1 - h["dampening"]) * g
            g = g + mu * buf if h["nesterov"] else buf
        p.data -= h["lr"] * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), optionally AMSGrad; L2 weight decay added to the gradient.

        g ← g + λ w                                  (Adam, λ ≠ 0; AdamW decays w instead)
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        v̂ ← max(v̂, v)  (amsgrad)   or   v̂ ← v
        w ← w − α/(1 − β₁ᵏ) · m / (√v̂ / √(1 − β₂ᵏ) + ε)

    m, v, v̂ start at 0; k counts this parameter's updates (1 on the first). State names follow
    PyTorch: step, exp_avg, exp_avg_sq, max_exp_avg_sq.
    Hyperparameters (each a number or a schedule): lr ≥ 0, 0 ≤ β₁, β₂ < 1 (``betas``), eps ≥ 0,
    weight_decay ≥ 0.
    """

    ranges: ClassVar[dict[str, Range]] = {
        "lr": _NONNEG,
        "betas": _UNIT_OPEN,
        "eps": _NONNEG,
        "weight_decay": _NONNEG,
    }
    decoupled_weight_decay: ClassVar[bool] = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: Hyper = 1e-3,
        betas: tuple[Hyper, Hyper] = (0.9, 0.999),
        eps: Hyper = 1e-8,
        weight_decay: Hyper = 0.0,
        amsgrad: bool = False,
    ) -> None:
        if not isinstance(betas, tuple | list) or len(betas) != 2:
            raise ValueError(
                f"{type(self).__name__}: received betas={betas!r}; expected a pair (β₁, β₂). "
                "Fix: pass e.g. betas=(0.9, 0.999)."
            )
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
        }
        super().__init__(params, defaults)

    def _check(self, h: Mapping[str, Any]) -> None:
        _check_flags(type(self).__name__, h, ("amsgrad",))

    def _update(self, p: Parameter, g: np.ndarray, state: dict[str, np.ndarray], h: dict[str, Any]) -> None:
        lr, (b1, b2), wd = h["lr"], h["betas"], h["weight_decay"]
        k = _next_count(state)
        if wd != 0 and self.decoupled_weight_decay:
            p.data *= 1 - lr * wd  # AdamW: decay the weights, not the gradient
        elif wd != 0:
            g = g + wd * p.data
        m, v = _zeros(state, "exp_avg", p), _zeros(state, "exp_avg_sq", p)
        m += (1 - b1) * (g - m)  # = β₁ m + (1 − β₁) g, in one pass over m
        v *= b2
        v += (1 - b2) * (g * g)
        if h["amsgrad"]:
            v = np.maximum(_zeros(state, "max_exp_avg_sq", p), v, out=state["max_exp_avg_sq"])
        denom = np.sqrt(v) / math.sqrt(1 - b2**k) + h["eps"]
        p.data -= lr / (1 - b1**k) * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): w ← (1 − α λ) w before the
    Adam step, instead of adding λ w to the gradient. Default weight_decay = 1e-2 (PyTorch's).
    """

    decoupled_weight_decay: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: Hyper = 1e-3,
        betas: tuple[Hyper, Hyper] = (0.9, 0.999),
        eps: Hyper = 1e-8,
        weight_decay: Hyper = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e), optionally centered and with momentum.

        g ← g + λ w                                   (λ ≠ 0)
        v ← α' v + (1 − α') g²                         (α': the smoothing constant ``alpha``)
        ḡ ← α' ḡ + (1 − α') g,   s ← √(v − ḡ²) + ε    (centered)   or   s ← √v + ε
        b ← μ b + g / s,  w ← w − α b                  (momentum μ > 0)   or   w ← w − α g / s

    v, ḡ, b start at 0. State names: step, square_avg, grad_avg, momentum_buffer.
    Hyperparameters (each a number or a schedule): lr ≥ 0, 0 ≤ alpha ≤ 1, eps ≥ 0,
    weight_decay ≥ 0, 0 ≤ momentum < 1.
    """

    ranges: ClassVar[dict[str, Range]] = {
        "lr": _NONNEG,
        "alpha": _UNIT,
        "eps": _NONNEG,
        "weight_decay": _NONNEG,
        "momentum": _UNIT_OPEN,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: Hyper = 1e-2,
        alpha: Hyper = 0.99,
        eps: Hyper = 1e-8,
        weight_decay: Hyper = 0.0,
        momentum: Hyper = 0.0,
        centered: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
        }
        super().__init__(params, defaults)

    def _check(self, h: Mapping[str, Any]) -> None:
        _check_flags("RMSprop", h, ("centered",))

    def _update(self, p: Parameter, g: np.ndarray, state: dict[str, np.ndarray], h: dict[str, Any]) -> None:
        a = h["alpha"]
        _next_count(state)
        if h["weight_decay"] != 0:
            g = g + h["weight_decay"] * p.data
        v = _zeros(state, "square_avg", p)
        v *= a
        v += (1 - a) * (g * g)
        if h["centered"]:
            gbar = _zeros(state, "grad_avg", p)
            gbar += (1 - a) * (g - gbar)
            s = np.sqrt(v - gbar * gbar) + h["eps"]
        else:
            s = np.sqrt(v) + h["eps"]
        if h["momentum"] > 0:
            buf = _zeros(state, "momentum_buffer", p)
            buf *= h["momentum"]
            buf += g / s
            p.data -= h["lr"] * buf
        else:
            p.data -= h["lr"] * (g / s)


class Adagrad(Optimizer):
    """Adagrad (Duchi, Hazan & Singer 2011) with PyTorch's learning-rate decay.

        g ← g + λ w                                   (λ ≠ 0)
        αₖ = α / (1 + (k − 1) η)                      (η: ``lr_decay``; k counts this parameter's updates)
        S ← S + g²                                    (S starts at ``initial_accumulator_value``)
        w ← w − αₖ g / (√S + ε)

    State names: step, sum. Hyperparameters (each a number or a schedule): lr ≥ 0,
    lr_decay ≥ 0, weight_decay ≥ 0, eps ≥ 0; initial_accumulator_value ≥ 0 is a number (it is
    used once, when S is created).
    """

    ranges: ClassVar[dict[str, Range]] = {
        "lr": _NONNEG,
        "lr_decay": _NONNEG,
        "weight_decay": _NONNEG,
        "eps": _NONNEG,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: Hyper = 1e-2,
        lr_decay: Hyper = 0.0,
        weight_decay: Hyper = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: Hyper = 1e-10,
    ) -> None:
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "eps": eps,
        }
        super().__init__(params, defaults)

    def _check(self, h: Mapping[str, Any]) -> None:
        s0 = h["initial_accumulator_value"]
        if isinstance(s0, bool) or not isinstance(s0, int | float) or not s0 >= 0:
            raise ValueError(
                f"Adagrad: received initial_accumulator_value={s0!r}; expected a number >= 0. "
                "Fix: pass e.g. initial_accumulator_value=0.1 (it cannot be a schedule)."
            )

    def _update(self, p: Parameter, g: np.ndarray, state: dict[str, np.ndarray], h: dict[str, Any]) -> None:
        k = _next_count(state)
        if h["weight_decay"] != 0:
            g = g + h["weight_decay"] * p.data
        lr_k = h["lr"] / (1 + (k - 1) * h["lr_decay"])
        s = _zeros(state, "sum", p, fill=h["initial_accumulator_value"])
        s += g * g
        p.data -= lr_k * (g / (np.sqrt(s) + h["eps"]))
