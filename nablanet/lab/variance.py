"""Gradient statistics over a batch: mean, variance, signal-to-noise, tr(Σ), the gradient noise scale,
and a batch-size sweep that measures how the mini-batch gradient's error falls with the batch size.

The per-sample gradients are those of each sample's own, unscaled loss, gₙ = ∂ℓₙ/∂θ (see
``nablanet.lab.per_sample``), whatever the loss's reduction. Over a batch of N samples, per element:

    mean            ḡ = (1/N) Σₙ gₙ                 (= the batch gradient under reduction="mean";
                                                     under "sum" the batch gradient is N·ḡ)
    variance        s² = (1/(N−1)) Σₙ (gₙ − ḡ)²     (the unbiased estimator of the per-sample variance)
    second_moment   (1/N) Σₙ gₙ²
    snr             ḡ² / s²                          (s² = 0 gives inf where ḡ ≠ 0, nan where ḡ = 0)

and, per parameter and over all parameters (Σ the per-sample covariance, estimated unbiasedly):

    trace_cov       tr(Σ) = Σ_elements s² = (N/(N−1)) · ((1/N) Σₙ ‖gₙ‖² − ‖ḡ‖²)
    grad_sq_norm    ‖ḡ‖²
    noise_scale     B_simple = tr(Σ)/‖ḡ‖²   (McCandlish et al. 2018, "An Empirical Model of Large-Batch
                    Training", the "simple" noise scale: the batch size at which the mini-batch
                    gradient's noise, tr(Σ)/B, equals the squared signal ‖G‖²; ‖ḡ‖² = 0 gives inf,
                    or nan when tr(Σ) = 0 too)

``gradient_stats_from_tape`` materializes the per-sample gradients one layer at a time (memory
N·|θ_layer|); ``noise_scale_from_tape`` gets the scalars alone from the closed-form per-sample norms
and the batch gradient, never materializing gₙ for Linear and convolution layers (the right-hand form
of tr(Σ) above; it subtracts two nearly equal numbers when the noise is tiny next to ‖ḡ‖², so its
relative precision is then about ε·‖ḡ‖²/tr(Σ); a rounding-negative result is clipped to 0).
All statistics need N ≥ 2 (the unbiased variance divides by N − 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nablanet._random import RNGLike
from nablanet.lab._params import select, selected_tape
from nablanet.lab._tape import batch_size_of, per_sample_factor, run_tape, tape_parameters
from nablanet.lab.per_sample import TOTAL, per_sample_grad_norms_from_tape
from nablanet.lab.rules.base import layer_per_sample_grads
from nablanet.layers.base import Layer, Tape
from nablanet.losses.base import Loss


def _ratio(num: float, den: float) -> float:
    """num/den with den = 0 giving inf (num > 0) or nan (num = 0)."""
    if den > 0:
        return num / den
    return math.inf if num > 0 else math.nan


def _check_batch(n: int, who: str) -> None:
    if n < 2:
        raise ValueError(
            f"{who} needs a batch of at least 2 samples (the unbiased variance divides by N − 1); got N={n}. "
            "Pass a larger batch."
        )


@dataclass(frozen=True)
class GradientStats:
    """Statistics of one parameter's per-sample gradients over a batch (module docstring for the math).

    Arrays have the parameter's shape and are float64; ``variance`` is the unbiased 1/(N−1) estimator.
    """

    batch_size: int
    mean: np.ndarray
    variance: np.ndarray
    second_moment: np.ndarray
    snr: np.ndarray
    trace_cov: float
    grad_sq_norm: float
    noise_scale: float

    @classmethod
    def from_per_sample(cls, grads: np.ndarray) -> GradientStats:
        """Statistics of per-sample gradients ``grads`` (N, *param.shape), N ≥ 2."""
        g = np.asarray(grads, dtype=np.float64)
        if g.ndim < 1:
            raise ValueError(f"GradientStats.from_per_sample expects (N, *param.shape); got a {g.ndim}-D array")
        _check_batch(g.shape[0], "GradientStats")
        mean = g.mean(axis=0)
        variance = g.var(axis=0, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = mean * mean / variance
        trace_cov = float(variance.sum())
        grad_sq_norm = float(np.vdot(mean, mean))
        return cls(g.shape[0], mean, variance, np.mean(g * g, axis=0), snr, trace_cov, grad_sq_norm,
                   _ratio(trace_cov, grad_sq_norm))


@dataclass(frozen=True)
class NoiseScale:
    """The scalars of a batch's per-sample gradients: tr(Σ) (unbiased), ‖ḡ‖² and B_simple = tr(Σ)/‖ḡ‖²."""

    batch_size: int
    trace_cov: float
    grad_sq_norm: float
    noise_scale: float

    @classmethod
    def of(cls, batch_size: int, trace_cov: float, grad_sq_norm: float) -> NoiseScale:
        return cls(batch_size, trace_cov, grad_sq_norm, _ratio(trace_cov, grad_sq_norm))


@dataclass(frozen=True)
class GradientStatsReport:
    """``GradientStats`` per parameter (``params``, state_dict names) and the scalars over all of them
    (``total``: tr(Σ) and ‖ḡ‖² summed over parameters, and their ratio)."""

    params: dict[str, GradientStats]
    total: NoiseScale

    def __getitem__(self, name: str) -> GradientStats:
        try:
            return self.params[name]
        except KeyError:
            raise KeyError(f"no parameter {name!r}; the parameters are {list(self.params)}") from None

    def to_records(self) -> list[dict[str, Any]]:
        """One row per parameter and a "total" row: parameter, batch_size, trace_cov, grad_sq_norm, noise_scale."""
        rows = [(name, s.batch_size, s.trace_cov, s.grad_sq_norm, s.noise_scale) for name, s in self.params.items()]
        t = self.total
        rows.append((TOTAL, t.batch_size, t.trace_cov, t.grad_sq_norm, t.noise_scale))
        keys = ("parameter", "batch_size", "trace_cov", "grad_sq_norm", "noise_scale")
        return [dict(zip(keys, row, strict=True)) for row in rows]


def gradient_stats_from_tape(tape: Tape, factor: float) -> GradientStatsReport:
    """``GradientStats`` of every parameter on the tape and the totals, from per-sample gradients
    materialized one layer at a time (``factor`` = ``per_sample_factor(loss, N)``)."""
    n = batch_size_of(tape)
    _check_batch(n, "gradient_stats")
    params: dict[str, GradientStats] = {}
    for entry in tape:
        if not entry.grads:
            continue
        for local, g in layer_per_sample_grads(entry, factor, "gradient_stats").items():
            if local in entry.grads:  # a tape restricted to some parameters (params=) keeps only theirs
                params[f"{entry.name}.{local}" if entry.name else local] = GradientStats.from_per_sample(g)
    total = NoiseScale.of(n, sum(s.trace_cov for s in params.values()), sum(s.grad_sq_norm for s in params.values()))
    return GradientStatsReport(params, total)


def gradient_stats(
    model: Layer, loss: Loss, x: Any, target: Any, *, train: bool = False, rng: RNGLike = None, params: Any = None
) -> GradientStatsReport:
    """``GradientStats`` per parameter and totals for the batch ``(x, target)``: one forward and backward
    (``.grad`` untouched), eval mode unless ``train=True``. ``params`` (names or Parameters, default all)
    restricts the parameters, and the totals, to those."""
    run = run_tape(model, loss, x, target, train=train, rng=rng)
    tape = selected_tape(model, run.tape, params, "gradient_stats")
    return gradient_stats_from_tape(tape, per_sample_factor(loss, batch_size_of(run.tape)))


def noise_scale_from_tape(
    tape: Tape, factor: float, norms: dict[str, np.ndarray] | None = None
) -> dict[str, NoiseScale]:
    """tr(Σ), ‖ḡ‖² and B_simple per parameter and under "total", without per-sample gradients where a
    closed-form norm exists:

        tr(Σ) = (Σₙ ‖gₙ‖² − N ‖ḡ‖²)/(N − 1),   ḡ = factor · G / N

    with ‖gₙ‖ from ``per_sample_grad_norms_from_tape`` (or ``norms``, when the caller already has
    them) and G the tape's batch gradient (G = ḡ under "mean", where factor = N; G = N ḡ under
    "sum", where factor = 1). Cost: one per-sample-norm pass.
    """
    n = batch_size_of(tape)
    _check_batch(n, "noise_scale")
    if norms is None:
        norms = per_sample_grad_norms_from_tape(tape, factor)
    out: dict[str, NoiseScale] = {}
    for name, entry, local in tape_parameters(tape):
        gbar = np.asarray(entry.grads[local], dtype=np.float64) * (factor / n)
        gsq = float(np.vdot(gbar, gbar))
        s = np.asarray(norms[name], dtype=np.float64)
        trace = max(0.0, (float(np.dot(s, s)) - n * gsq) / (n - 1))
        out[name] = NoiseScale.of(n, trace, gsq)
    out[TOTAL] = NoiseScale.of(n, sum(v.trace_cov for v in out.values()), sum(v.grad_sq_norm for v in out.values()))
    return out


# -- batch-size sweep --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepResult:
    """What ``batch_size_sweep`` measured. Rows (``to_records``), one per batch size B:

        batch_size   B
        measured     m_B = mean over the draws of ‖g_B − g‖²
        stderr       standard error of that mean (sample std over the draws / √draws)
        fit          c/B, the least-squares fit of the 1/B law
        predicted    the exact expectation: tr(Σ)/B · (N − B)/N without replacement,
                     tr(Σ)/B · (N − 1)/N with replacement

    and the scalars: ``c`` and ``r2`` of the fit, ``trace_cov`` tr(Σ) (unbiased, of the full data's
    per-sample gradients), ``n`` the data size, ``draws``, ``seed``, ``replace``.
    """

    n: int
    draws: int
    seed: int
    replace: bool
    trace_cov: float
    c: float
    r2: float
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_records(self) -> list[dict[str, Any]]:
        """The rows as a list of dicts (batch_size, measured, stderr, fit, predicted), copies."""
        return [dict(row) for row in self.rows]

    def to_pandas(self) -> Any:
        """The rows as a ``pandas.DataFrame`` (pandas is optional; ``to_records`` needs nothing)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(
                "SweepResult.to_pandas needs pandas, which is not installed. Install it with "
                "`pip install pandas`, or use SweepResult.to_records() (a list of dicts)."
            ) from exc
        return pd.DataFrame(self.to_records())


def _flat_mean_grad(tape: Tape, loss: Loss) -> np.ndarray:
    """ḡ = (1/B) Σₙ gₙ over the tape's batch, all parameters flattened into one float64 vector."""
    b = batch_size_of(tape)
    scale = per_sample_factor(loss, b) / b
    parts = [np.asarray(e.grads[local], dtype=np.float64).ravel() for _, e, local in tape_parameters(tape)]
    return np.concatenate(parts) * scale if parts else np.zeros(0)


def _check_sweep_args(batch_sizes: Iterable[int], n: int, draws: int, replace: bool) -> list[int]:
    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 1:
        raise ValueError(f"batch_size_sweep(draws={draws!r}): expected a positive int, e.g. draws=32")
    sizes = list(batch_sizes)
    if not sizes:
        raise ValueError("batch_size_sweep got no batch sizes; pass e.g. batch_sizes=[1, 2, 4, 8, 16]")
    for b in sizes:
        if isinstance(b, bool) or not isinstance(b, int | np.integer) or b < 1:
            raise ValueError(f"batch_size_sweep: batch size {b!r} is not a positive int; got batch_sizes={sizes}")
        if not replace and b > n:
            raise ValueError(
                f"batch_size_sweep: batch size {b} exceeds the {n} samples of x, which sampling without "
                "replacement cannot draw. Use batch sizes ≤ N, or replace=True."
            )
    return [int(b) for b in sizes]


def _sweep_tape(model: Layer, loss: Loss, x: np.ndarray, target: np.ndarray, params: Any) -> Tape:
    return selected_tape(model, run_tape(model, loss, x, target).tape, params, "batch_size_sweep")


def batch_size_sweep(
    model: Layer,
    loss: Loss,
    x: Any,
    target: Any,
    batch_sizes: Iterable[int],
    *,
    draws: int = 32,
    seed: int = 0,
    replace: bool = False,
    params: Any = None,
) -> SweepResult:
    """How the mini-batch gradient's squared error falls with the batch size B.

    The notes (reference 001, "SGD vs batch vs mini-batch") state that the variance of the mini-batch
    gradient is the per-sample variance divided by the batch size b, falling as 1/b (and the full
    batch's as 1/N). This measures it. With g the gradient on all N samples of ``x`` (the mean of the
    per-sample gradients, whatever the reduction) and g_B the mean over a mini-batch of B samples:

        m_B = mean over ``draws`` mini-batches of ‖g_B − g‖²,   fitted by  m_B ≈ c/B  (least squares:
        c = Σ (m_B/B) / Σ 1/B², R² = 1 − Σ (m_B − c/B)² / Σ (m_B − mean m)²).

    The exact expectation, with tr(Σ) the unbiased trace of the per-sample covariance on all of x
    (from ``noise_scale_from_tape``):

        without replacement (``replace=False``, the default: B distinct samples per batch)
            E m_B = tr(Σ)/B · (N − B)/N   (= tr(Σ_pop)/B · (N − B)/(N − 1) with Σ_pop the 1/N
                                           covariance; the finite-population correction makes m_N = 0)
        with replacement: E m_B = tr(Σ)/B · (N − 1)/N = tr(Σ_pop)/B, the 1/B law exactly.

    So for B ≪ N, c ≈ tr(Σ). Mini-batches are drawn with ``numpy.random.default_rng(seed)``; each
    batch's indices are sorted (the same set of samples, so the same statistics). Without replacement,
    B = N draws the whole data every time and m_N = 0 exactly (no computation is run for it).
    Runs in eval mode (per-sample gradients must be defined, e.g. batch norm on running statistics).
    Cost: one forward and backward on all of x, and ``draws`` on B samples for every B. The prediction
    is exact for losses whose per-sample loss does not depend on the batch (no class weights or
    ignored targets under reduction="mean"). ``params`` (names or Parameters, default all) measures the
    gradient of those parameters only.
    """
    xa = np.asarray(x)
    ta = np.asarray(target)
    if xa.ndim < 1 or ta.ndim < 1 or xa.shape[0] != ta.shape[0]:
        raise ValueError(
            f"batch_size_sweep got x.shape={xa.shape} and target.shape={ta.shape}; expected the same number "
            "of samples N on the first axis of both."
        )
    n = int(xa.shape[0])
    sizes = _check_sweep_args(batch_sizes, n, draws, replace)
    select(model, params, "batch_size_sweep")  # a bad selection fails before any work
    full = _sweep_tape(model, loss, xa, ta, params)
    factor = per_sample_factor(loss, n)
    trace = noise_scale_from_tape(full, factor)[TOTAL].trace_cov
    g = _flat_mean_grad(full, loss)
    gen = np.random.default_rng(seed)
    measured, stderr, predicted = [], [], []
    for b in sizes:
        if not replace and b == n:
            errs = np.zeros(draws)
        else:
            errs = np.empty(draws)
            for d in range(draws):
                idx = np.sort(gen.choice(n, size=b, replace=replace))
                diff = _flat_mean_grad(_sweep_tape(model, loss, xa[idx], ta[idx], params), loss) - g
                errs[d] = float(np.dot(diff, diff))
        measured.append(float(errs.mean()))
        stderr.append(float(errs.std(ddof=1) / math.sqrt(draws)) if draws > 1 else math.nan)
        predicted.append(trace / b * ((n - 1) / n if replace else (n - b) / n))
    m = np.asarray(measured)
    inv = 1.0 / np.asarray(sizes, dtype=np.float64)
    c = float(np.dot(m, inv) / np.dot(inv, inv))
    ss_tot = float(np.sum((m - m.mean()) ** 2))
    r2 = 1.0 - float(np.sum((m - c * inv) ** 2)) / ss_tot if ss_tot > 0 else math.nan
    keys = ("batch_size", "measured", "stderr", "fit", "predicted")
    rows = [
        dict(zip(keys, (b, mb, se, c / b, pb), strict=True))
        for b, mb, se, pb in zip(sizes, measured, stderr, predicted, strict=True)
    ]
    return SweepResult(n, int(draws), seed, replace, trace, c, r2, rows)
