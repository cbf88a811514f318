"""The softmax simplex instruments (nablanet.lab.simplex): the points, their place in the plane, region
membership and the margin to the boundaries, the Recorder's "simplex" rows and the plot."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

import nablanet as nn
from nablanet.lab.simplex import SEGMENT, TRIANGLE, simplex_coords, simplex_records

R2 = math.sqrt(2.0)


# -- coordinates ------------------------------------------------------------------------------------------------
def test_the_vertices_and_the_centre_sit_where_the_docstring_says() -> None:
    np.testing.assert_allclose(simplex_coords(np.eye(3)), [[-1 / R2, -1 / math.sqrt(6)], [1 / R2, -1 / math.sqrt(6)],
                                                           [0.0, math.sqrt(2 / 3)]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(simplex_coords(np.full((1, 3), 1 / 3)), [[0.0, 0.0]], atol=1e-15)
    np.testing.assert_allclose(simplex_coords(np.eye(2)), [[-1 / R2, 0.0], [1 / R2, 0.0]], atol=1e-15)
    np.testing.assert_allclose(simplex_coords(np.full((1, 2), 0.5)), [[0.0, 0.0]], atol=1e-15)
    # C = 5 onto classes (1, 3, 4): e₁, e₃, e₄ go to the triangle's vertices in that order, 1/5 to its centre
    np.testing.assert_allclose(simplex_coords(np.eye(5)[[1, 3, 4]], classes=(1, 3, 4)), TRIANGLE, atol=1e-15)
    np.testing.assert_allclose(simplex_coords(np.full((1, 5), 0.2), classes=(1, 3, 4)), [[0.0, 0.0]], atol=1e-15)
    # every side is √2 = |eᵢ − eⱼ|
    assert all(np.linalg.norm(TRIANGLE[i] - TRIANGLE[j]) == pytest.approx(R2) for i, j in ((0, 1), (1, 2), (0, 2)))
    assert np.linalg.norm(SEGMENT[0] - SEGMENT[1]) == pytest.approx(R2)


def test_the_picture_is_an_isometry_of_the_simplex() -> None:
    rng = np.random.default_rng(0)
    for c in (2, 3):
        p, q = rng.dirichlet(np.ones(c), 50), rng.dirichlet(np.ones(c), 50)
        np.testing.assert_allclose(np.linalg.norm(simplex_coords(p) - simplex_coords(q), axis=1),
                                   np.linalg.norm(p - q, axis=1), rtol=1e-12)


def test_the_default_projection_takes_the_three_classes_of_largest_mean_probability() -> None:
    p = np.array([[0.1, 0.4, 0.0, 0.3, 0.2], [0.1, 0.2, 0.1, 0.3, 0.3]])  # means 0.1 0.3 0.05 0.3 0.25
    assert simplex_records(p, [1, 3]).classes == (1, 3, 4)
    np.testing.assert_allclose(simplex_coords(p), simplex_coords(p, classes=(1, 3, 4)))
    q = p[:, [1, 3, 4]] / p[:, [1, 3, 4]].sum(axis=1, keepdims=True)  # renormalised over the three
    np.testing.assert_allclose(simplex_coords(p), q @ TRIANGLE)


# -- membership and margin ---------------------------------------------------------------------------------------
def test_membership_and_margin_by_hand() -> None:
    r = simplex_records([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.4, 0.4, 0.2], [0.4, 0.4, 0.2]], [0, 1, 1, 0])
    np.testing.assert_array_equal(r.inside, [True, False, True, True])  # a tie is on both regions' boundary
    np.testing.assert_allclose(r.margin, [0.2 / R2, -0.2 / R2, 0.0, 0.0], atol=1e-15)
    np.testing.assert_array_equal(r.predicted, [0, 0, 0, 0])  # the arg max takes the lower index on a tie
    np.testing.assert_allclose(r.p_label, [0.5, 0.3, 0.4, 0.4])
    two = simplex_records([[0.7, 0.3], [0.7, 0.3], [0.5, 0.5]], [0, 1, 1])
    np.testing.assert_array_equal(two.inside, [True, False, True])
    np.testing.assert_allclose(two.margin, [0.4 / R2, -0.4 / R2, 0.0], atol=1e-15)
    np.testing.assert_allclose(two.xy, [[-0.4 / R2, 0.0], [-0.4 / R2, 0.0], [0.0, 0.0]], atol=1e-15)
    # C = 5 drawn on classes (0, 1, 2): class 3 wins, off the picture; membership and margin see it anyway
    five = simplex_records([[0.1, 0.2, 0.1, 0.5, 0.1]], [1], classes=(0, 1, 2))
    assert not five.inside[0] and five.margin[0] == pytest.approx(-0.3 / R2) and five.predicted[0] == 3
    np.testing.assert_allclose(five.xy, [[0.25, 0.5, 0.25]] @ TRIANGLE)  # inside class 1's kite in the picture


@pytest.mark.parametrize("c", [2, 3, 5])
def test_the_boundaries_meet_at_one_over_c(c: int) -> None:
    centre = np.full((c, c), 1 / c)
    r = simplex_records(centre, np.arange(c))
    assert r.inside.all() and np.allclose(r.margin, 0.0, atol=1e-15)  # 1/C lies in every region, on its boundary
    # on a grid over the simplex that holds 1/C, no other point is in every region
    k = 3 * c
    grid = np.array([v for v in itertools.product(range(k + 1), repeat=c - 1) if sum(v) <= k])
    p = np.column_stack([grid, k - grid.sum(axis=1)]) / k
    everywhere = np.ones(len(p), dtype=bool)
    for y in range(c):
        everywhere &= simplex_records(p, np.full(len(p), y)).inside
    np.testing.assert_allclose(p[everywhere], [np.full(c, 1 / c)])


def _distance_to_segments_from_0(xy: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per row, the distance from xy[n] to the segment from the origin to ends[n]."""
    t = np.clip(np.sum(xy * ends, axis=1) / np.sum(ends * ends, axis=1), 0.0, 1.0)
    return np.linalg.norm(xy - t[:, None] * ends, axis=1)


def test_the_margin_inside_is_the_distance_to_the_regions_boundary_in_the_picture() -> None:
    """C = 3: P_y's boundary is the two segments from 1/3 to the midpoints of y's edges; the picture is an
    isometry, so the plane's point-to-segment distance is the distance in the simplex."""
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(3), 400)
    y = p.argmax(axis=1)  # every point inside its region
    r = simplex_records(p, y)
    dist = np.min([_distance_to_segments_from_0(r.xy, (TRIANGLE[y] + TRIANGLE[(y + s) % 3]) / 2) for s in (1, 2)],
                  axis=0)
    np.testing.assert_allclose(r.margin, dist, rtol=1e-12, atol=1e-15)


def test_the_margin_inside_is_the_distance_to_the_regions_boundary_for_c_5() -> None:
    """C = 5: the nearest point of each hyperplane p_y = p_j within the simplex's plane by least squares
    (an affine projection), which lies on P_y's boundary; and no sampled boundary point is closer."""
    rng = np.random.default_rng(2)
    c = 5
    p = rng.dirichlet(np.ones(c), 60)
    y = p.argmax(axis=1)
    r = simplex_records(p, y)
    for n in range(len(p)):
        best = np.inf
        for j in set(range(c)) - {int(y[n])}:
            a = np.vstack([np.ones(c), np.eye(c)[y[n]] - np.eye(c)[j]])
            q = p[n] - a.T @ np.linalg.solve(a @ a.T, a @ p[n] - [1.0, 0.0])
            if q.min() >= -1e-12 and q[y[n]] >= q.max() - 1e-12:  # on P_y's boundary
                best = min(best, float(np.linalg.norm(p[n] - q)))
        assert r.margin[n] == pytest.approx(best, rel=1e-12)
        # random points of P_y's boundary (q_y = q_j = the largest entry) are never closer
        q = rng.dirichlet(np.ones(c), 2000)
        j = rng.integers(0, c - 1, 2000)
        j = j + (j >= y[n])
        top = np.maximum(q.max(axis=1), 0.0)
        q[np.arange(2000), y[n]] = q[np.arange(2000), j] = top
        q /= q.sum(axis=1, keepdims=True)
        assert np.linalg.norm(q - p[n], axis=1).min() >= r.margin[n] - 1e-12


def test_outside_on_the_segment_minus_the_margin_is_the_distance_to_the_region() -> None:
    p = np.array([[0.9, 0.1], [0.6, 0.4]])
    r = simplex_records(p, [1, 1])
    assert not r.inside.any()
    np.testing.assert_allclose(-r.margin, np.linalg.norm(p - 0.5, axis=1))  # P₁'s nearest point is ½


# -- the points ---------------------------------------------------------------------------------------------------
def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_simplex_points_is_the_softmax_of_the_logits_in_eval_mode() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 4))
    body = nn.Sequential(nn.Linear(4, 3, rng=rng))
    z = nn.predict(body, x)
    p = nn.lab.simplex_points(body, x, batch_size=7)
    assert p.dtype == np.float64 and p.shape == (20, 3)
    np.testing.assert_allclose(p, _softmax(z.astype(np.float64)), rtol=1e-12)
    dropped = nn.Sequential(nn.Dropout(0.5), body)  # train mode, but the points are measured in eval mode
    np.testing.assert_array_equal(nn.lab.simplex_points(dropped, x), p)
    assert dropped.training
    # a model that ends in Softmax (or LogSoftmax) already gives the points: not softmaxed twice
    np.testing.assert_allclose(nn.lab.simplex_points(nn.Sequential(body, nn.Softmax(dim=1)), x), p, rtol=1e-6)
    np.testing.assert_allclose(nn.lab.simplex_points(nn.Sequential(body, nn.LogSoftmax(dim=-1)), x), p, rtol=1e-6)


def test_one_binary_logit_gives_the_two_columns() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 3)) * 20  # logits far out on both tails
    logit = nn.Sequential(nn.Linear(3, 1, rng=rng, dtype=np.float64))
    z = nn.predict(logit, x)[:, 0]
    sig = 1 / (1 + np.exp(-z))
    p = nn.lab.simplex_points(logit, x)
    np.testing.assert_allclose(p, np.column_stack([1 - sig, sig]), rtol=0, atol=1e-15)
    np.testing.assert_allclose(p[:, 1], sig, rtol=1e-12)
    np.testing.assert_allclose(p[:, 0], 1 / (1 + np.exp(z)), rtol=1e-12)  # 1 − σ(z) without cancellation
    np.testing.assert_allclose(nn.lab.simplex_points(nn.Sequential(logit, nn.Sigmoid()), x), p, rtol=1e-9)


# -- the Recorder -------------------------------------------------------------------------------------------------
def test_the_recorders_rows_are_the_records_of_the_batch_the_step_saw() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((30, 4)), rng.integers(0, 3, 30)
    model = nn.Sequential(nn.Linear(4, 3, rng=rng, dtype=np.float64))
    seen = [nn.lab.simplex_points(model, x)]  # the points step 0 sees; then, after each step, the next step's
    keep = nn.callbacks.LambdaCallback(on_batch_end=lambda step, logs, tape: seen.append(
        nn.lab.simplex_points(model, x)))
    rec = nn.lab.Recorder(every=1, quantities=["simplex"])
    nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=2.0), (x, y), epochs=3,
           batch_size=None, callbacks=[rec, keep])
    for step in range(3):
        r = simplex_records(seen[step], y)
        rows = {row["quantity"]: row["value"] for row in rec.records if row["step"] == step}
        assert all(row["layer"] == row["parameter"] == "" for row in rec.records)
        assert rows["simplex_inside"] == pytest.approx(r.inside.mean(), abs=1e-15)
        assert rows["simplex_margin_mean"] == pytest.approx(r.margin.mean(), rel=1e-12)
        assert rows["simplex_margin_min"] == pytest.approx(r.margin.min(), rel=1e-12)
        for c in range(3):
            mine = y == c
            assert rows[f"simplex_inside_{c}"] == pytest.approx(r.inside[mine].mean(), abs=1e-15)
            assert rows[f"simplex_margin_mean_{c}"] == pytest.approx(r.margin[mine].mean(), rel=1e-12)
            for j in range(3):
                assert rows[f"simplex_p_{c}_{j}"] == pytest.approx(r.p[mine, j].mean(), rel=1e-12)
            assert [rows[f"simplex_x_{c}"], rows[f"simplex_y_{c}"]] == pytest.approx(r.xy[mine].mean(axis=0))
        assert len(rows) == 3 + 3 * (2 + 3 + 2)
    assert rec.series("simplex_inside")[1][-1] > rec.series("simplex_inside")[1][0]  # it learns


def test_the_recorder_refuses_targets_that_name_no_class() -> None:
    rng = np.random.default_rng(0)
    x, q = rng.standard_normal((8, 4)), rng.dirichlet(np.ones(3), 8)
    model = nn.Sequential(nn.Linear(4, 3, rng=rng, dtype=np.float64))
    with pytest.raises(ValueError, match=r"'simplex' got targets of shape \(8, 3\).*needs class indices \(8,\)"):
        nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), (x, q), epochs=1,
               callbacks=[nn.lab.Recorder(quantities=["simplex"])])


# -- the plot -----------------------------------------------------------------------------------------------------
def _boundaries(ax: Any) -> list[np.ndarray]:
    return [np.asarray(line.get_xydata()) for line in ax.get_lines() if line.get_label() == "_boundary"]


def test_the_plot_draws_regions_boundaries_and_the_points() -> None:
    plt = pytest.importorskip("matplotlib.pyplot")
    from matplotlib.collections import PathCollection
    from matplotlib.patches import Polygon

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 4)), rng.integers(0, 3, 40)
    fig, ax = plt.subplots()
    assert nn.lab.plots.simplex(nn.Sequential(nn.Linear(4, 3, rng=rng)), x, y, ax=ax, title="t") is fig
    kites = [p for p in ax.patches if isinstance(p, Polygon)]
    assert len(kites) == 3 and all(np.allclose(k.get_xy()[2], 0.0) for k in kites)  # every region touches 1/3
    mids = {tuple(np.round((TRIANGLE[i] + TRIANGLE[j]) / 2, 12)) for i, j in ((0, 1), (1, 2), (0, 2))}
    lines = _boundaries(ax)
    assert len(lines) == 3 and all(np.allclose(seg[0], 0.0) for seg in lines)  # from 1/3 …
    assert {tuple(np.round(seg[1], 12)) for seg in lines} == mids  # … to the edges' midpoints
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert sorted(c.get_label() for c in dots) == ["class 0", "class 1", "class 2"]
    assert sum(len(c.get_offsets()) for c in dots) == 40
    plt.close(fig)
    two = nn.lab.plots.plot_simplex([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], [0, 1, 1], names=["zero", "one"])
    ax = two.axes[0]
    assert [seg[:, 0].tolist() for seg in _boundaries(ax)] == [[0.0, 0.0]]  # the boundary at ½ ↦ 0
    xs = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections if isinstance(c, PathCollection)])
    np.testing.assert_allclose(np.sort(xs), np.sort([-0.6 / R2, 0.4 / R2, -0.2 / R2]))
    plt.close(two)
    five = nn.lab.plots.plot_simplex(rng.dirichlet(np.ones(5), 30), rng.integers(0, 5, 30), classes=(0, 2, 4))
    labels = sorted(c.get_label() for c in five.axes[0].collections if isinstance(c, PathCollection))
    assert "other classes" in labels and "class 1" not in labels
    plt.close(five)


# -- bad input ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("call", "message"), [
    (lambda: nn.lab.simplex_points(nn.Sequential(nn.Conv1d(1, 2, 3)), np.ones((2, 1, 5))),
     r"output has shape \(2, 2, 3\); expected class scores \(N, C\)"),
    (lambda: nn.lab.simplex_points(nn.Sequential(nn.Linear(2, 3), nn.Sigmoid()), np.ones((2, 2))),
     r"ends in Sigmoid with 3 outputs"),
    (lambda: nn.lab.simplex_points(nn.Sequential(nn.Linear(2, 3), nn.Softmax(dim=0)), np.ones((2, 2))),
     r"Softmax\(dim=0\).*expected dim=1"),
    (lambda: nn.lab.simplex_points(nn.Sequential(nn.Linear(2, 3)), np.ones((2, 2)), batch_size=0),
     r"batch_size=0.*positive int"),
    (lambda: simplex_records([[0.5, 0.6]], [0]), r"row 0 sums to 1\.1"),
    (lambda: simplex_records([[2.0, -1.0]], [0]), r"negative, NaN or infinite"),
    (lambda: simplex_records([0.5, 0.5], [0]), r"p of shape \(2,\); expected probabilities \(N, C\) with C ≥ 2"),
    (lambda: simplex_records([[0.5, 0.5]], [2]), r"label 2 at index 0.*\[0, 2\)"),
    (lambda: simplex_records([[0.5, 0.5]], [0, 1]), r"labels of shape \(2,\) for 1 points"),
    (lambda: simplex_records([[0.5, 0.5]], [0.5]), r"not whole numbers"),
    (lambda: simplex_coords(np.full((1, 5), 0.2), classes=(0, 1)), r"three different class indices in \[0, 5\)"),
    (lambda: simplex_coords(np.full((1, 5), 0.2), classes=(0, 1, 1)), r"three different"),
    (lambda: simplex_coords(np.full((1, 5), 0.2), classes=(0, 1, 7)), r"three different"),
    (lambda: simplex_coords(np.full((1, 3), 1 / 3), classes=(0, 1)), r"must list 0 … 2 once each"),
    (lambda: nn.lab.plots.plot_simplex([[0.5, 0.5]], [0], names=["a"]), r"1 names for 2 classes"),
])
def test_bad_input_is_refused_with_a_fix(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
