"""Gradient statistics over a batch: against a per-sample loop by hand, the cheap noise scale against
the materialized one, zero-variance conventions, and the batch-size sweep against the exact
sampling-without-replacement prediction."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from helpers import rel_err

import nablanet as nn
from nablanet.lab._tape import per_sample_factor, run_tape
from nablanet.lab.variance import (
    GradientStats,
    batch_size_sweep,
    gradient_stats,
    gradient_stats_from_tape,
    noise_scale_from_tape,
)


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 5, dtype=np.float64, rng=0), nn.Tanh(), nn.Linear(5, 3, dtype=np.float64, rng=1))


def _cnn() -> nn.Sequential:
    f64 = np.float64
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, groups=2, dtype=f64, rng=0), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 2, dtype=f64, rng=1), nn.Flatten(), nn.Linear(6, 3, dtype=f64, rng=2),
    )


def _problem(kind: str, n: int = 9, seed: int = 0) -> tuple[nn.Sequential, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "mlp":
        return _mlp(), rng.standard_normal((n, 4)), rng.integers(0, 3, n)
    return _cnn(), rng.standard_normal((n, 2, 4, 4)), rng.integers(0, 3, n)


def _loop_per_sample(model: nn.Layer, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    """gₙ by hand: the gradient of the loss of a batch holding sample n alone, for every n."""
    rows = [nn.value_and_grad(model, nn.CrossEntropyLoss(), x[i : i + 1], t[i : i + 1], train=False)[1]
            for i in range(len(x))]
    return {name: np.stack([r[name] for r in rows]) for name in rows[0]}


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_gradient_stats_match_a_per_sample_loop(kind: str, reduction: str) -> None:
    model, x, t = _problem(kind)
    n = len(x)
    report = gradient_stats(model, nn.CrossEntropyLoss(reduction=reduction), x, t)
    per = _loop_per_sample(model, x, t)
    assert set(report.params) == set(per)
    tr_total = gsq_total = 0.0
    for name, g in per.items():
        s = report[name]
        mean = sum(g[i] for i in range(n)) / n
        var = sum((g[i] - mean) ** 2 for i in range(n)) / (n - 1)  # unbiased, 1/(N − 1)
        assert s.batch_size == n
        assert rel_err(s.mean, mean) <= 1e-12
        assert rel_err(s.variance, var) <= 1e-12
        assert rel_err(s.second_moment, sum(g[i] ** 2 for i in range(n)) / n) <= 1e-12
        assert rel_err(s.snr, mean**2 / var) <= 1e-10
        assert s.trace_cov == pytest.approx(var.sum(), rel=1e-12)
        assert s.grad_sq_norm == pytest.approx(np.sum(mean**2), rel=1e-12)
        assert s.noise_scale == pytest.approx(var.sum() / np.sum(mean**2), rel=1e-10)
        tr_total += var.sum()
        gsq_total += np.sum(mean**2)
    assert report.total.trace_cov == pytest.approx(tr_total, rel=1e-12)
    assert report.total.noise_scale == pytest.approx(tr_total / gsq_total, rel=1e-10)
    if reduction == "mean":  # the mean of the per-sample gradients is the batch gradient
        _, batch = nn.value_and_grad(model, nn.CrossEntropyLoss(), x, t, train=False)
        for name, g in batch.items():
            assert rel_err(report[name].mean, g) <= 1e-12
    rows = report.to_records()
    assert [r["parameter"] for r in rows] == [*per, "total"]
    assert set(rows[0]) == {"parameter", "batch_size", "trace_cov", "grad_sq_norm", "noise_scale"}


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_noise_scale_from_tape_equals_materialized(kind: str, reduction: str) -> None:
    model, x, t = _problem(kind, n=11, seed=3)
    loss = nn.CrossEntropyLoss(reduction=reduction)
    tape = run_tape(model, loss, x, t).tape
    factor = per_sample_factor(loss, len(x))
    cheap = noise_scale_from_tape(tape, factor)
    full = gradient_stats_from_tape(tape, factor)
    assert set(cheap) == {*full.params, "total"}
    for name, s in full.params.items():
        assert cheap[name].trace_cov == pytest.approx(s.trace_cov, rel=1e-10), name
        assert cheap[name].grad_sq_norm == pytest.approx(s.grad_sq_norm, rel=1e-12), name
        assert cheap[name].noise_scale == pytest.approx(s.noise_scale, rel=1e-10), name
    assert cheap["total"].trace_cov == pytest.approx(full.total.trace_cov, rel=1e-10)
    assert cheap["total"].noise_scale == pytest.approx(full.total.noise_scale, rel=1e-10)


def test_zero_variance_conventions() -> None:
    # two identical samples: variance 0 everywhere; snr = ḡ²/0 = inf where ḡ ≠ 0 and 0/0 = nan where ḡ = 0
    s = GradientStats.from_per_sample(np.array([[1.0, 0.0], [1.0, 0.0]]))
    np.testing.assert_array_equal(s.variance, [0.0, 0.0])
    assert s.snr[0] == math.inf
    assert math.isnan(s.snr[1])
    assert s.trace_cov == 0.0
    assert s.noise_scale == 0.0  # tr(Σ) = 0 over ‖ḡ‖² = 1
    zero = GradientStats.from_per_sample(np.zeros((3, 2)))
    assert math.isnan(zero.noise_scale)  # 0/0
    noisy = GradientStats.from_per_sample(np.array([[1.0], [-1.0]]))
    assert noisy.noise_scale == math.inf  # tr(Σ) = 2 over ‖ḡ‖² = 0
    assert noisy.variance[0] == 2.0  # ((1 − 0)² + (−1 − 0)²)/(2 − 1)


def test_one_sample_is_refused() -> None:
    model, x, t = _problem("mlp")
    with pytest.raises(ValueError, match=r"at least 2 samples.*N=1"):
        gradient_stats(model, nn.CrossEntropyLoss(), x[:1], t[:1])
    tape = run_tape(model, nn.CrossEntropyLoss(), x[:1], t[:1]).tape
    with pytest.raises(ValueError, match="at least 2 samples"):
        noise_scale_from_tape(tape, 1.0)


def test_batchnorm_training_mode_is_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 3, rng=0), nn.BatchNorm1d(3)).double()
    x = np.random.default_rng(0).standard_normal((5, 4))
    with pytest.raises(ValueError, match=r"layer '1' \(BatchNorm1d\)"):
        gradient_stats(model, nn.MSELoss(), x, np.zeros((5, 3)), train=True)


def _sweep_problem() -> tuple[nn.Sequential, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    model = nn.Sequential(nn.Linear(3, 4, dtype=np.float64, rng=0), nn.Tanh(), nn.Linear(4, 2, dtype=np.float64, rng=1))
    return model, rng.standard_normal((24, 3)), rng.standard_normal((24, 2))


def test_batch_size_sweep_without_replacement_matches_the_exact_prediction() -> None:
    model, x, t = _sweep_problem()
    sizes = [1, 2, 3, 4, 6, 8, 12, 24]
    res = batch_size_sweep(model, nn.QuadraticLoss(), x, t, sizes, draws=400, seed=0)
    rows = res.to_records()
    assert [r["batch_size"] for r in rows] == sizes
    assert set(rows[0]) == {"batch_size", "measured", "stderr", "fit", "predicted"}
    ref = gradient_stats(model, nn.QuadraticLoss(), x, t).total.trace_cov
    assert res.trace_cov == pytest.approx(ref, rel=1e-10)
    for r in rows[:-1]:
        b = r["batch_size"]
        assert r["predicted"] == pytest.approx(ref / b * (24 - b) / 24, rel=1e-10)
        # E m_B is exact; the mean of 400 draws lies within a few standard errors of it
        assert abs(r["measured"] - r["predicted"]) <= 4 * r["stderr"], r
        assert r["fit"] == pytest.approx(res.c / b)
    assert rows[-1]["measured"] == 0.0  # B = N without replacement: the whole data, g_B = g exactly
    assert rows[-1]["predicted"] == 0.0
    assert 0.9 < res.r2 <= 1.0
    # deterministic for a fixed seed
    again = batch_size_sweep(model, nn.QuadraticLoss(), x, t, sizes, draws=400, seed=0)
    assert again.to_records() == rows
    assert (res.n, res.draws, res.seed, res.replace) == (24, 400, 0, False)


def test_batch_size_sweep_with_replacement_follows_the_one_over_b_law() -> None:
    model, x, t = _sweep_problem()
    sizes = [1, 2, 4, 8, 16, 32]  # B may exceed N when sampling with replacement
    res = batch_size_sweep(model, nn.QuadraticLoss(reduction="sum"), x, t, sizes, draws=400, seed=1, replace=True)
    c_exact = res.trace_cov * 23 / 24  # E m_B = tr(Σ_pop)/B, tr(Σ_pop) = tr(Σ)·(N − 1)/N
    for r in res.to_records():
        assert r["predicted"] == pytest.approx(c_exact / r["batch_size"], rel=1e-12)
        assert abs(r["measured"] - r["predicted"]) <= 4 * r["stderr"], r
    assert res.c == pytest.approx(c_exact, rel=0.1)
    assert res.r2 > 0.95


def test_sweep_to_pandas_and_missing_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x, t = _sweep_problem()
    res = batch_size_sweep(model, nn.QuadraticLoss(), x, t, [2, 4], draws=3)
    pd = pytest.importorskip("pandas")
    df = res.to_pandas()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["batch_size", "measured", "stderr", "fit", "predicted"]
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install pandas.*to_records"):
        res.to_pandas()


def test_sweep_argument_errors() -> None:
    model, x, t = _sweep_problem()
    loss = nn.QuadraticLoss()
    with pytest.raises(ValueError, match="exceeds the 24 samples"):
        batch_size_sweep(model, loss, x, t, [25])
    with pytest.raises(ValueError, match="draws"):
        batch_size_sweep(model, loss, x, t, [2], draws=0)
    with pytest.raises(ValueError, match="not a positive int"):
        batch_size_sweep(model, loss, x, t, [0])
    with pytest.raises(ValueError, match="no batch sizes"):
        batch_size_sweep(model, loss, x, t, [])
    with pytest.raises(ValueError, match="same number of samples"):
        batch_size_sweep(model, loss, x, t[:5], [2])
