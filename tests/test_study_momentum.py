"""Study ``momentum``: measured convergence rates on the quadratic match theory; momentum beats plain SGD."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_answers_first

import nablanet as nn
from nablanet.studies import momentum
from nablanet.studies.base import Records, StudyResult, pyplot, run_study

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyResult, Path]:
    pytest.importorskip("sklearn")
    return run_study(momentum.STUDY, tmp_path_factory.mktemp("momentum"), quick=True)


def test_the_quadratic_model_has_hessian_a() -> None:
    lam, b, w0 = momentum.quadratic_problem(30.0, 6, seed=3)
    model, loss, target = momentum.quadratic_model(b, w0)
    a = b.T @ b
    np.testing.assert_allclose(np.linalg.eigvalsh(a), lam, rtol=1e-12)
    np.testing.assert_allclose(nn.lab.hessian(model, loss, b, target), a, rtol=1e-12, atol=1e-12)
    value, grads = nn.value_and_grad(model, loss, b, target)
    assert value == pytest.approx(0.5 * w0 @ a @ w0, rel=1e-12)
    np.testing.assert_allclose(grads["weight"][0], a @ w0, rtol=1e-12)


@pytest.mark.parametrize("kappa", [10.0, 100.0, 1000.0])
def test_spectral_radius_matches_the_closed_forms(kappa: float) -> None:
    lam = np.geomspace(1.0, kappa, 40)
    sk = math.sqrt(kappa)
    mu_star = ((sk - 1) / (sk + 1)) ** 2
    alpha_star = 4 / (math.sqrt(kappa) + 1) ** 2
    assert momentum.spectral_radius(lam, 2 / (kappa + 1), 0.0) == pytest.approx((kappa - 1) / (kappa + 1), rel=1e-12)
    assert momentum.spectral_radius(lam, alpha_star, mu_star) == pytest.approx(math.sqrt(mu_star), rel=1e-6)
    assert momentum.spectral_radius(lam, 1 / kappa, (sk - 1) / (sk + 1), nesterov=True) == pytest.approx(
        1 - 1 / sk, rel=1e-6)
    assert momentum.spectral_radius(lam, 1 / kappa, (1 - 1 / sk) ** 2) == pytest.approx(1 - 1 / sk, rel=1e-6)
    # outside the stable region the radius exceeds 1
    assert momentum.spectral_radius(lam, 2.5 / kappa, 0.0) > 1


def test_measured_rates_match_theory(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    h = result.headline
    sk = 10.0  # κ = 100
    # Heavy ball at (α*, μ*) has a double root, where the radius moves by √ε under a last-bit change of
    # the Lanczos λ's (6e-8 seen with NumPy 2.4): the same 1e-6 as the closed-form test above.
    assert h["κ=100 heavy_ball: rate predicted"] == pytest.approx((sk - 1) / (sk + 1), rel=1e-6)
    assert h["κ=100 heavy_ball: rate measured"] == pytest.approx((sk - 1) / (sk + 1), rel=0.01)
    assert h["κ=100 gd: rate measured"] == pytest.approx(99 / 101, rel=1e-3)
    assert h["κ=100 nesterov: rate measured"] == pytest.approx(1 - 1 / sk, rel=0.01)
    assert h["κ=100 sutskever: rate measured"] == pytest.approx(1 - 1 / sk, rel=0.01)
    assert h["κ=100 momentum_0.9: rate measured"] == pytest.approx(math.sqrt(0.9), rel=0.01)
    for method in momentum.QUAD_METHODS:
        assert abs(h[f"κ=100 {method}: relative error"]) < 0.01, method
    # momentum reaches the tolerance several times sooner than plain gradient descent
    steps = {m: h[f"κ=100 {m}: steps to 1e-08"] for m in momentum.QUAD_METHODS}
    assert steps["heavy_ball"] < steps["gd"] / 5
    assert max(steps["nesterov"], steps["sutskever"], steps["momentum_0.9"]) < steps["gd"]
    rows = [r for r in result.records if r["part"] == "quadratic_rate"]
    assert {r["method"] for r in rows} == set(momentum.QUAD_METHODS)
    for r in rows:  # α and μ came from the lab's Lanczos eigenvalues, which match the constructed ones
        assert r["lambda_max_lanczos"] == pytest.approx(r["lambda_max_true"], rel=1e-9)
        assert r["lambda_min_lanczos"] == pytest.approx(r["lambda_min_true"], rel=1e-9)


def test_momentum_escapes_the_sigmoid_plateau(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    h = result.headline
    plain = h["net depth 3 sgd: final train loss"]
    assert plain > 2.0  # still at ln 10 ≈ 2.30: the plateau
    for method in ("momentum", "nesterov", "sutskever"):
        assert h[f"net depth 3 {method}: final train loss"] < 0.3 * plain, method
        assert h[f"net depth 3 {method}: test accuracy"] > 0.8, method
    rows = [r for r in result.records if r["part"] == "network"]
    assert {r["method"] for r in rows} == set(momentum.NET_METHODS)
    mus = [r["momentum"] for r in rows if r["method"] == "sutskever"]
    assert mus[0] == 0.5 and max(mus) > 0.9  # the schedule ramped μ up


def test_outputs_and_verdict(quick: tuple[StudyResult, Path]) -> None:
    result, out = quick
    h = result.headline
    for key in ("κ=100 heavy_ball: rate measured", "κ=100 heavy_ball: rate predicted", "κ=100 gd: rate measured"):
        assert f"{h[key]:.4f}" in result.verdict, key
    assert h["net depth 3 momentum: final train loss over seeds"] in result.verdict
    meta = json.loads((out / "result.json").read_text())
    assert meta["verdict"] == result.verdict and meta["config"]["kappas"] == [100]
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64,") == len(result.figures) == 3
    assert (out / "records.csv").stat().st_size > 0


def test_verdict_and_figures_are_computed_from_the_rows(quick: tuple[StudyResult, Path]) -> None:
    """The three parts: ``verdict`` and ``figures`` read nothing but the rows ``measure`` returned and
    the configuration, so a copy of the rows gives the same text, numbers, figure stems and captions."""
    result, out = quick
    cfg = json.loads((out / "result.json").read_text())["config"]
    rows = Records(copy.deepcopy(result.records))
    assert momentum.STUDY.verdict(rows, cfg) == (result.verdict, result.headline)
    drawn = momentum.STUDY.figures(rows, cfg)
    assert {stem: f.caption for stem, f in drawn.items()} == result.captions
    pyplot().close("all")


def test_the_network_part_is_interpreted(quick: tuple[StudyResult, Path]) -> None:
    """Issue 15: over ≥ 3 seeds, SGD at α/(1 − μ) leaves the plateau at the same step as momentum (the
    early gain is the effective step size); momentum's advantage is the final loss; plain SGD at α, at
    chance, is reported as not learned rather than as a finding."""
    result, _ = quick
    h = result.headline
    cfg = momentum.STUDY.quick
    assert cfg["net_seeds"] >= 3
    k = "net depth 3"
    eff, mom = h[f"{k} sgd_lr/(1-mu): median step loss < 1"], h[f"{k} momentum: median step loss < 1"]
    assert eff is not None and mom is not None and abs(eff - mom) <= cfg["eval_every"]
    assert h[f"{k} sgd_lr/(1-mu): seeds off the plateau"] == h[f"{k} momentum: seeds off the plateau"] == 3
    assert np.mean(h[f"{k} momentum: final train loss per seed"]) < np.mean(
        h[f"{k} sgd_lr/(1-mu): final train loss per seed"])
    assert "momentum's early gain is its effective step size α/(1 − μ)" in result.verdict
    assert (f"its advantage is the final loss, {h[f'{k} momentum: final train loss over seeds']} vs "
            f"{h[f'{k} sgd_lr/(1-mu): final train loss over seeds']}") in result.verdict
    assert h[f"{k} sgd: test accuracy"] < 0.15
    assert "sgd ended at 10.0% accuracy" in result.verdict and "the run did not learn" in result.verdict


def test_the_report_answers_first(quick: tuple[StudyResult, Path]) -> None:
    result, out = quick
    assert_answers_first(result, out)
    h, kappa = result.headline, max(momentum.STUDY.quick["kappas"])
    assert (f"needs {h[f'κ={kappa:g} heavy_ball: steps to 1e-08']:.0f} steps where gradient descent needs "
            f"{h[f'κ={kappa:g} gd: steps to 1e-08']:.0f}") in result.answer.text
