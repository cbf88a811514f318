"""Schedules: callables ``t -> value`` for any optimizer hyperparameter (lr, momentum, betas, ...).

t is the optimizer's step counter, the number of steps taken before the current one (0 first).
Any plain function ``lambda t: ...`` works as a schedule too; these classes add a readable repr
and checked arguments. The lower-case names (``cosine(...)``) are the same classes.

    constant(v)                            v
    step_decay(α₀, s, γ=0.1)               α₀ · γ^⌊t/s⌋
    exponential(α₀, γ)                     α₀ · γᵗ
    inverse_time(α₀, τ)                    α₀ / (1 + t/τ)
    cosine(α₀, T, final=α_T)               α_T + (α₀ − α_T)(1 + cos(π min(t, T)/T))/2
    linear_warmup(α, W, then=None)         α (t + 1)/W  for t < W,  then then(t − W)  (or α)
    sutskever_momentum(μ_max, period=250)  min(1 − 2^(−1 − log₂(⌊t/period⌋ + 1)), μ_max)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def _number(who: str, name: str, value: object, *, positive: bool = False, unit: bool = False) -> float:
    v = math.nan
    if not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating):
        v = float(value)
    expected = "a number in [0, 1)" if unit else "a number > 0" if positive else "a finite number"
    bad = not math.isfinite(v) or (positive and v <= 0) or (unit and not 0 <= v < 1)
    if bad:
        raise ValueError(f"{who}: received {name}={value!r}; expected {expected}. Fix: pass e.g. {name}=0.5.")
    return v


def _count(who: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{who}: received {name}={value!r}; expected a positive int. Fix: pass e.g. {name}=100.")
    return int(value)


@dataclass(frozen=True)
class Constant:
    """v at every step."""

    value: float

    def __post_init__(self) -> None:
        _number("constant", "value", self.value)

    def __call__(self, t: int) -> float:
        return float(self.value)


@dataclass(frozen=True)
class StepDecay:
    """α₀ · γ^⌊t/s⌋: multiply by γ every s steps (PyTorch's StepLR)."""

    initial: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _number("step_decay", "initial", self.initial)
        _count("step_decay", "step_size", self.step_size)
        _number("step_decay", "gamma", self.gamma, positive=True)

    def __call__(self, t: int) -> float:
        return float(self.initial * self.gamma ** (t // self.step_size))


@dataclass(frozen=True)
class Exponential:
    """α₀ · γᵗ (PyTorch's ExponentialLR)."""

    initial: float
    gamma: float

    def __post_init__(self) -> None:
        _number("exponential", "initial", self.initial)
        _number("exponential", "gamma", self.gamma, positive=True)

    def __call__(self, t: int) -> float:
        return float(self.initial * self.gamma**t)


@dataclass(frozen=True)
class InverseTime:
    """α₀ / (1 + t/τ): halves after τ steps, then decays like 1/t (the classic SGD condition
    Σαₜ = ∞, Σαₜ² < ∞)."""

    initial: float
    tau: float

    def __post_init__(self) -> None:
        _number("inverse_time", "initial", self.initial)
        _number("inverse_time", "tau", self.tau, positive=True)

    def __call__(self, t: int) -> float:
        return float(self.initial / (1 + t / self.tau))


@dataclass(frozen=True)
class Cosine:
    """α_T + (α₀ − α_T)(1 + cos(π min(t, T)/T))/2: from α₀ at t = 0 down to α_T at t = T, then
    α_T (held, unlike PyTorch's CosineAnnealingLR, which rises again after T)."""

    initial: float
    total_steps: int
    final: float = 0.0

    def __post_init__(self) -> None:
        _number("cosine", "initial", self.initial)
        _count("cosine", "total_steps", self.total_steps)
        _number("cosine", "final", self.final)

    def __call__(self, t: int) -> float:
        frac = min(t, self.total_steps) / self.total_steps
        return float(self.final + (self.initial - self.final) * (1 + math.cos(math.pi * frac)) / 2)


@dataclass(frozen=True)
class LinearWarmup:
    """α (t + 1)/W for t < W, then ``then(t − W)`` (or α when ``then`` is None).

    The ramp starts at α/W rather than 0 so the first step is not wasted, and reaches α on step
    t = W − 1. ``then`` sees its own clock, starting at 0 after the warmup, so e.g.
    ``linear_warmup(0.1, 100, then=cosine(0.1, 900))`` warms up for 100 steps and decays over 900.
    """

    target: float
    warmup_steps: int
    then: Callable[[int], float] | None = None

    def __post_init__(self) -> None:
        _number("linear_warmup", "target", self.target)
        _count("linear_warmup", "warmup_steps", self.warmup_steps)
        if self.then is not None and not callable(self.then):
            raise ValueError(
                f"linear_warmup: received then={self.then!r}; expected a schedule (a callable "
                "t -> value) or None. Fix: pass e.g. then=cosine(0.1, 1000)."
            )

    def __call__(self, t: int) -> float:
        if t < self.warmup_steps:
            return float(self.target * (t + 1) / self.warmup_steps)
        return float(self.target if self.then is None else self.then(t - self.warmup_steps))


@dataclass(frozen=True)
class SutskeverMomentum:
    """μₜ = min(1 − 2^(−1 − log₂(⌊t/period⌋ + 1)), μ_max)   (Sutskever, Martens, Dahl & Hinton 2013).

    With j = ⌊t/period⌋ + 1 that is min(1 − 1/(2j), μ_max): 0.5 for t < 250, then 0.75, 0.8333,
    0.875, 0.9 at t = 1000, ..., 0.99 at t = 12250, capped at μ_max. The closed form is computed
    because it is exact where the power of a logarithm is not.
    """

    mu_max: float
    period: int = 250

    def __post_init__(self) -> None:
        _number("sutskever_momentum", "mu_max", self.mu_max, unit=True)
        _count("sutskever_momentum", "period", self.period)

    def __call__(self, t: int) -> float:
        j = t // self.period + 1
        return float(min(1 - 1 / (2 * j), self.mu_max))


constant = Constant
step_decay = StepDecay
exponential = Exponential
inverse_time = InverseTime
cosine = Cosine
linear_warmup = LinearWarmup
sutskever_momentum = SutskeverMomentum
