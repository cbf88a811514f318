"""The convexity study: the linear softmax risk is convex (exact Hessian ⪰ 0 and its formula), a hidden layer
breaks it, the quadratic loss on one sigmoid neuron is concave past σ = 2/3, and the notes' Figure 2."""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_answers_first

import nablanet as nn
from nablanet.studies import convexity
from nablanet.studies.base import Records, StudyResult, pyplot, run_study

pytest.importorskip("matplotlib")
QUICK = convexity.STUDY.quick


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyResult, Path]:
    return run_study(convexity.STUDY, tmp_path_factory.mktemp("convexity"), quick=True)


def _rows(result: StudyResult, part: str, **match: Any) -> list[dict[str, Any]]:
    return [r for r in result.records if r["part"] == part and all(r[k] == v for k, v in match.items())]


# -- the instruments on tiny inputs ------------------------------------------------------------------------
def test_the_softmax_hessian_formula_is_the_lab_hessian_and_a_variance() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((7, 3)), rng.integers(0, 4, 7)
    model = nn.Sequential(nn.Linear(3, 4, rng=rng, dtype=np.float64))
    formula, j_min = convexity.softmax_hessian(model, x)
    lab = nn.lab.hessian(model, nn.CrossEntropyLoss(), x, y)
    np.testing.assert_allclose(formula, lab, rtol=0, atol=1e-14)
    assert j_min > -1e-15
    # vᵀHv = (1/N) Σₙ Var_{c∼pₙ}(uₙ,c) with uₙ = U x̃ₙ, computed here without the Kronecker product
    u = rng.standard_normal((4, 4))  # a direction [dW dB], (C, d + 1)
    v = np.concatenate([u[:, :3].reshape(-1), u[:, 3]])  # the lab's order: weight (C, d), then bias
    z = model(x)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    un = np.hstack([x, np.ones((7, 1))]) @ u.T
    variance = np.sum(p * un**2, axis=1) - np.sum(p * un, axis=1) ** 2
    assert v @ lab @ v == pytest.approx(variance.mean(), rel=1e-12)
    assert np.all(variance >= 0)


def test_the_neuron_hessian_by_hand() -> None:
    # t = 0, w = 1, b = 0.5: z = 1.5, σ = 0.81757, σ′ = σ(1 − σ) = 0.14915, σ(2 − 3σ) = −0.37013, so
    # g″ = σ′σ(2 − 3σ) = −0.05520;
    # H = g″ (x, 1)(x, 1)ᵀ with x = 1: every entry g″, eigenvalues 2g″ and 0
    parts = convexity.neuron(0.0)
    h = convexity._neuron_hessian(parts, 1.0, 0.5)
    s = 1 / (1 + math.exp(-1.5))
    g2 = s * (1 - s) * s * (2 - 3 * s)
    assert g2 == pytest.approx(-0.05520, abs=1e-5)
    np.testing.assert_allclose(h, np.full((2, 2), g2), rtol=1e-12)
    assert convexity.negative(float(np.linalg.eigvalsh(h)[0]), float(np.linalg.eigvalsh(h)[1]), 1e-9)


@pytest.mark.parametrize(("t", "z", "output"), [(0.0, math.log(2), 2 / 3), (1.0, -math.log(2), 1 / 3)])
def test_the_neuron_boundary_is_ln2(t: float, z: float, output: float) -> None:
    edge = convexity.boundary(t, 4.0)
    assert edge["z"] == pytest.approx(z, abs=1e-12) and edge["theory_z"] == pytest.approx(z, abs=1e-15)
    assert edge["output"] == pytest.approx(output, abs=1e-12) and edge["bracket"] < 1e-12


def test_negative_uses_the_tolerance() -> None:
    assert not convexity.negative(-1e-12, 1.0, 1e-9)  # rounding, not curvature
    assert convexity.negative(-1e-8, 1.0, 1e-9)
    assert convexity.negative(-1.0, 1e-20, 1e-9)  # a rank-one concave Hessian: scaled by max |λ|
    assert not convexity.negative(0.0, 0.0, 1e-9)


def test_slices_of_a_quadratic_are_exact_and_convex() -> None:
    # a bias-free Linear(2, 1) under ½(w·x − t)² is a convex quadratic: f″ = dᵀHd exactly, no midpoint violation
    x, t = np.array([[1.0, 2.0], [0.5, -1.0]]), np.array([[1.0], [0.0]])
    model = nn.Sequential(nn.Linear(2, 1, bias=False, dtype=np.float64))
    theta = np.array([0.3, -0.2])
    convexity.set_flat(model, theta)
    d = np.array([0.6, 0.8])
    cfg = {"slice_radius": 1.0, "slice_steps": 11, "tol": 1e-9}
    rows = convexity.slices("q", model, nn.QuadraticLoss(), x, t, theta, {"random": d}, cfg)
    summary = rows[-1]
    h = nn.lab.hessian(model, nn.QuadraticLoss(), x, t)
    assert summary["curvature"] == pytest.approx(d @ h @ d, rel=1e-12)
    assert summary["second_difference_at_0"] == pytest.approx(d @ h @ d, rel=1e-9)
    assert summary["midpoint_violation"] < 0 and not summary["violated"]
    np.testing.assert_array_equal(convexity.flat(model), theta)  # the model is left at θ
    assert len([r for r in rows if r["part"] == "slice"]) == 11


def test_the_cross_entropy_curves_meet_at_one_bit() -> None:
    rows = convexity.ce_part()
    one = {r["p"]: r for r in rows if r["label"] == 1}
    zero = {r["p"]: r for r in rows if r["label"] == 0}
    assert one[0.5]["bits"] == 1.0 and zero[0.5]["bits"] == 1.0
    assert all(abs(r["bits"] - zero[1 - p]["bits"]) <= 1e-15 * max(1.0, r["bits"]) for p, r in one.items())
    assert [one[2.0**-k]["bits"] for k in (1, 10, 40)] == pytest.approx([1, 10, 40], abs=1e-13)
    assert one[0.5]["zero_one"] == 1 and zero[0.5]["zero_one"] == 0  # the tie goes to class 0
    assert one[0.25]["quadratic"] == 0.5625 and zero[0.25]["quadratic"] == 0.0625
    assert all(r["bits"] >= r["zero_one"] for r in rows)


def test_bad_settings_say_how_to_fix_them() -> None:
    study = convexity.STUDY
    for overrides, needle in (({"pool": 3}, "pool=3"), ({"slice_steps": 40}, "slice_steps=40"),
                              ({"train_points": 50}, "train_points=50"), ({"activation": "gelu"}, "activation")):
        with pytest.raises(ValueError, match=needle) as err:
            study.config(True, overrides)
        assert "Fix" in str(err.value) or "e.g." in str(err.value)


# -- the quick run -----------------------------------------------------------------------------------------
def test_the_linear_risk_is_convex_at_every_point(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    pts = _rows(result, "point", model="linear")
    assert len(pts) == QUICK["train_points"] + 1 + len(QUICK["scales"]) * QUICK["points_per_scale"]
    assert {r["method"] for r in pts} == {"dense"} and not any(r["negative"] for r in pts)
    # far inside the tolerance: the ratios are rounding, which the Hessian's asymmetry measures
    assert max(abs(r["ratio"]) for r in pts) < QUICK["tol"] / 100
    assert max(r["formula_error"] for r in pts) < 1e-10 and min(r["j_min"] for r in pts) > -1e-14
    # the null space: softmax's shift (one row added to every class) and the pixels that are 0 everywhere
    spectrum = np.array([r["eigenvalue"] for r in _rows(result, "spectrum", model="linear")])
    assert np.sum(np.abs(spectrum) <= 1e-12 * spectrum.max()) >= _rows(result, "point")[0]["features"] + 1
    losses = [r["loss"] for r in sorted(_rows(result, "point", model="linear", kind="training"),
                                        key=lambda r: r["epoch"])]
    assert losses == sorted(losses, reverse=True)  # gradient descent on a convex risk at a small step


def test_a_hidden_layer_has_negative_curvature(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    h = result.headline
    pts = _rows(result, "point", model="hidden")
    assert {r["method"] for r in pts} == {"lanczos"}
    assert sum(r["negative"] for r in pts) == h["hidden: points with negative curvature"] >= len(pts) // 2
    assert h["hidden: most negative λ_min/λ_max"] < -0.1
    # Lanczos against the dense spectrum at the trained point
    assert h[convexity.LANCZOS_CHECK] < 1e-8
    spectrum = [r["eigenvalue"] for r in _rows(result, "spectrum", model="hidden")]
    assert len(spectrum) == pts[0]["params"] and min(spectrum) < 0


def test_the_neuron_is_concave_past_two_thirds(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    h = result.headline
    for t, sign in ((0.0, 1), (1.0, -1)):
        grid = _rows(result, "neuron", target=t)
        assert len(grid) == QUICK["neuron_grid"] ** 2
        assert all(r["negative"] == (sign * (r["z"] - sign * math.log(2)) > 0) for r in grid)
        assert h[f"neuron t={t:g}: |boundary − theory ±ln 2|"] < 1e-12
    assert h["neuron t=0: grid points with negative curvature"] > 0


def test_slices_witness_the_same(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    summary = {(r["model"], r["direction"]): r for r in _rows(result, "slice_summary")}
    assert not any(summary["linear", d]["violated"] for d in convexity.DIRECTIONS)
    assert min(summary["linear", d]["min_second_difference"] for d in ("top", "random")) > 0
    assert abs(summary["linear", "bottom"]["curvature"]) < 1e-12  # a null direction: flat
    for model in ("hidden", "neuron"):
        bottom = summary[model, "bottom"]
        assert bottom["violated"] and bottom["midpoint_violation"] > 1e-3 * bottom["loss_scale"]
        assert bottom["curvature"] < 0 and bottom["second_difference_at_0"] < 0
    # the bottom eigenvector's curvature is λ_min of the trained point
    trained = max(_rows(result, "point", model="hidden", kind="training"), key=lambda r: r["epoch"])
    assert summary["hidden", "bottom"]["curvature"] == pytest.approx(trained["lambda_min"], rel=1e-6)
    assert result.headline[convexity.FD_KEY] < 0.02


def test_the_verdict_quotes_the_records(quick: tuple[StudyResult, Path]) -> None:
    result, out = quick
    h = result.headline
    n = h["linear: points tried"]
    assert f"λ_min ≥ −tol·λ_max held at all {n} points" in result.verdict
    assert f"down to λ_min/λ_max = {h['hidden: most negative λ_min/λ_max']:.3g}" in result.verdict
    assert f"z = w + b = {math.log(2):.6f} (output 0.6667) for t = 0" in result.verdict
    assert "ℓ(1, ½) = 1 and ℓ(0, ½) = 1 bits; max |ℓ(1, p) − ℓ(0, 1 − p)| = 0;" in result.verdict
    assert "the loss is at least the 0-1 loss at every grid point" in result.verdict
    meta = json.loads((out / "result.json").read_text())
    assert meta["verdict"] == result.verdict and meta["study"] == "convexity"
    with open(out / "records.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(result.records)
    assert (out / "index.html").read_text().count("data:image/png;base64,") == len(result.figures) == 3
    assert "$" not in result.verdict + result.answer.text + "".join(result.captions.values())


def test_verdict_and_figures_are_computed_from_the_rows(quick: tuple[StudyResult, Path]) -> None:
    result, out = quick
    cfg = json.loads((out / "result.json").read_text())["config"]
    rows = Records(copy.deepcopy(result.records))
    assert convexity.STUDY.verdict(rows, cfg) == (result.verdict, result.headline)
    drawn = convexity.STUDY.figures(rows, cfg)
    assert {stem: f.caption for stem, f in drawn.items()} == result.captions
    pyplot().close("all")


def test_the_report_answers_first(quick: tuple[StudyResult, Path]) -> None:
    result, out = quick
    assert_answers_first(result, out)
    h = result.headline
    k, n = h["hidden: points with negative curvature"], h["hidden: points tried"]
    assert result.answer.figure == "spectra"
    assert f"at {convexity._count(k, n)} points tried" in result.answer.text


def test_lanczos_and_the_dense_hessian_agree() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((20, 3)), rng.integers(0, 3, 20)
    model = nn.Sequential(nn.Linear(3, 4, rng=rng, dtype=np.float64), nn.Tanh(),
                          nn.Linear(4, 3, rng=rng, dtype=np.float64))
    dense, _, _, _ = convexity.curvature(model, x, y, "dense", 0)
    lanczos, l_lo, l_hi, _ = convexity.curvature(model, x, y, "lanczos", 0)
    assert lanczos["lambda_min"] == pytest.approx(dense["lambda_min"], rel=1e-9)
    assert lanczos["lambda_max"] == pytest.approx(dense["lambda_max"], rel=1e-9)
    assert dense["lambda_min"] < 0 < dense["lambda_max"]  # the hidden layer's negative curvature, at a random init
    h = nn.lab.hessian(model, nn.CrossEntropyLoss(), x, y)
    for vec, lam in ((l_lo, lanczos["lambda_min"]), (l_hi, lanczos["lambda_max"])):
        np.testing.assert_allclose(h @ vec, lam * vec, atol=1e-8 * abs(dense["lambda_max"]))
