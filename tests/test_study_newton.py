"""The newton study's quick run: one Newton step solves the quadratic; GD at 1/λ_max converges in the
predicted number of steps, at 2/λ_max it does not, above it diverges; Newton solves logistic regression
in a handful of steps."""

from __future__ import annotations

import copy
import csv
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_answers_first

from nablanet.studies import newton
from nablanet.studies.base import Records, StudyResult, pyplot, run_study

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyResult, Path]:
    return run_study(newton.STUDY, tmp_path_factory.mktemp("newton"), quick=True)


def _summary(result: StudyResult, problem: str, method: str) -> dict[str, Any]:
    return next(r for r in result.records if r["part"] == "summary" and r["problem"] == problem
                and r["method"] == method)


def test_quadratic_problem_has_the_known_hessian() -> None:
    import nablanet as nn

    prob = newton.quadratic_problem(6, 50.0, seed=3)
    h = nn.lab.hessian(prob["model"], prob["loss"], prob["x"], prob["target"])
    np.testing.assert_allclose(h, prob["q"] @ np.diag(prob["lam"]) @ prob["q"].T, atol=1e-12)
    np.testing.assert_allclose(np.linalg.eigvalsh(h), np.logspace(0, math.log10(50.0), 6), rtol=1e-12)


def test_predicted_gd_iterations_by_hand() -> None:
    # one mode, λ = 2, c = 1, η = 0.25: ‖g(t)‖ = 2 · 0.5^t; below 0.1 first at t = 5 (2/32 = 0.0625)
    assert newton.predicted_gd_iterations(np.array([2.0]), np.array([1.0]), 0.25, 0.1, 100) == 5
    assert newton.predicted_gd_iterations(np.array([2.0]), np.array([1.0]), 1.0, 0.1, 100) is None  # factor −1


def test_newton_solves_the_quadratic_in_one_step(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    cfg = newton.STUDY.quick
    s = _summary(result, "quadratic", "Newton")
    assert s["converged"] and s["iterations"] == 1 and s["final_grad_norm"] < cfg["grad_tol"]
    assert result.headline["quadratic: Newton iterations"] == 1
    assert result.headline["quadratic: λ_max relative error"] < 1e-8
    assert result.headline["sweep: Newton iterations"] == [1] * len(cfg["kappa_sweep"])


def test_gd_steps_on_the_quadratic(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    cfg = newton.STUDY.quick
    one = _summary(result, "quadratic", "GD η = 1/λ_max")
    assert one["converged"] and abs(one["iterations"] - one["predicted_iterations"]) <= 1
    best = _summary(result, "quadratic", "GD η = 2/(λ_max + λ_min)")
    assert best["converged"] and best["iterations"] < one["iterations"]
    # at 2/λ_max the top mode oscillates with constant amplitude: ‖∇L‖ stays at |λ_max c_max|
    two = _summary(result, "quadratic", "GD η = 2/λ_max")
    assert not two["converged"] and not two["diverged"] and two["iterations"] == cfg["max_iters"]
    assert two["final_grad_norm"] == pytest.approx(result.headline["quadratic: top mode's initial gradient "
                                                                   "|λ_max c_max|"], rel=1e-6)
    assert _summary(result, "quadratic", "GD η = 2.1/λ_max")["diverged"]
    # iterations at 1/λ_max grow about linearly in κ, as predicted from the eigenvalues
    assert result.headline["sweep: fitted exponent of iterations vs κ"] == pytest.approx(1.0, abs=0.15)
    for r in (r for r in result.records if r["part"] == "sweep" and r["method"] == "GD η = 1/λ_max"):
        assert r["converged"] and abs(r["iterations"] - r["predicted_iterations"]) <= 1


def test_logistic_regression(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    cfg = newton.STUDY.quick
    h = result.headline
    nt = _summary(result, "logistic", "Newton")
    assert nt["converged"] and nt["iterations"] < 10
    gd = _summary(result, "logistic", "GD η = 1/λ_max(θ*)")
    assert gd["converged"] and gd["iterations"] > 10 * nt["iterations"]
    assert not _summary(result, "logistic", "GD η = 2/λ_max(θ*)")["converged"]
    assert not _summary(result, "logistic", "GD η = 2.1/λ_max(θ*)")["converged"]
    # σ′ ≤ ¼ = σ′(0): the curvature at θ₀ = 0 bounds it everywhere, so 2/λ_max(θ₀) still converges
    assert h["logistic: λ_max at θ*"] < h["logistic: λ_max at θ₀ = 0"]
    assert _summary(result, "logistic", "GD η = 2/λ_max(θ₀)")["converged"]
    # the features' different scales are axis-aligned ill-conditioning: Jacobi removes most of it
    pre = _summary(result, "logistic", "Jacobi-preconditioned GD")
    assert pre["converged"] and pre["iterations"] < gd["iterations"] / 3
    # Newton's last steps converge quadratically: each gradient norm below the square of the one before (×10)
    norms = [r["grad_norm"] for r in result.records if r["part"] == "trajectory" and r["problem"] == "logistic"
             and r["method"] == "Newton"]
    assert norms[-1] < cfg["grad_tol"] and norms[-1] < 10 * norms[-2] ** 2


def test_files_and_verdict(quick: tuple[StudyResult, Path]) -> None:
    result, out = quick
    h = result.headline
    meta = json.loads((out / "result.json").read_text())
    assert meta["verdict"] == result.verdict and meta["study"] == "newton"
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64,") == len(result.figures) == 4
    with open(out / "records.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(result.records)
    assert f"Newton {h['logistic: Newton iterations']} iterations" in result.verdict
    assert "Newton 1 iteration " in result.verdict
    assert f"GD at 1/λ_max {h['quadratic: GD η = 1/λ_max: iterations']} iterations" in result.verdict


def test_verdict_and_figures_are_computed_from_the_rows(quick: tuple[StudyResult, Path]) -> None:
    """The three parts: ``verdict`` and ``figures`` read nothing but the rows ``measure`` returned and
    the configuration, so a copy of the rows gives the same text, numbers, figure stems and captions."""
    result, out = quick
    cfg = json.loads((out / "result.json").read_text())["config"]
    rows = Records(copy.deepcopy(result.records))
    assert newton.STUDY.verdict(rows, cfg) == (result.verdict, result.headline)
    drawn = newton.STUDY.figures(rows, cfg)
    assert {stem: f.caption for stem, f in drawn.items()} == result.captions
    pyplot().close("all")


def test_the_corrected_claims(quick: tuple[StudyResult, Path]) -> None:
    """Issue 15: η = 2/λ_max is on the stability bound, not inside it; Newton's quadratic convergence
    needs H(θ*) ≻ 0, and at a degenerate minimum (f = x⁴'s case) it is linear with ratio 2/3."""
    result, _ = quick
    h = result.headline
    assert "exactly on the stability bound (convergence is guaranteed only for η < 2/λ_max)" in result.verdict
    assert "the bound guarantees nothing at η = 2/L" in result.verdict
    assert f"λ_max(θ*) = {h['logistic: λ_max at θ*']:.4g})" in result.verdict
    # the logistic minimum is non-degenerate, which is what its quadratic convergence rests on
    assert h["logistic: λ_min at θ*"] > 0
    assert f"H(θ*) ≻ 0 (λ_min(θ*) = {h['logistic: λ_min at θ*']:.3g})" in result.verdict
    # the degenerate minimum: every step multiplies a by 2/3 (x ← x − 4x³/12x²), not squaring the error
    ratios = [r["ratio"] for r in result.records if r["part"] == "degenerate" and r["ratio"] is not None]
    assert len(ratios) == newton.STUDY.quick["degenerate_steps"]
    np.testing.assert_allclose(ratios, 2 / 3, rtol=1e-9)
    assert h["degenerate: Newton's ratio a(t+1)/a(t), median"] == pytest.approx(2 / 3, rel=1e-9)
    assert "a ratio of 0.6667 per step (2/3 predicted): only linear convergence" in result.verdict
    # wall times vary from run to run, so no sentence rests on one: they stay in the headline and a figure
    assert not re.search(r"\d s\b", result.verdict) and h["logistic: Newton seconds"] > 0


def test_the_report_answers_first(quick: tuple[StudyResult, Path]) -> None:
    result, out = quick
    assert_answers_first(result, out)
    h = result.headline
    assert f"converges in {h['logistic: Newton iterations']} steps" in result.answer.text
    runs = [v for k, v in h.items() if k.startswith("logistic: GD η") and k.endswith(": iterations") and v]
    assert f"the best of the fixed steps tried needs {min(runs)}." in result.answer.text
