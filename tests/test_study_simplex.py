"""The simplex study's quick run: the training set's image in the softmax simplex at init, mid-training and the
end; the fraction inside its regions equals 1 − the training error sample for sample; the margins grow; the
figures are drawn from the records; bad settings are refused."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_answers_first

from nablanet.studies import simplex
from nablanet.studies.base import StudyResult, run_study

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

QUICK = simplex.STUDY.quick


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyResult, Path]:
    return run_study(simplex.STUDY, tmp_path_factory.mktemp("simplex"), quick=True)


def _epochs(result: StudyResult, run: str) -> list[dict[str, Any]]:
    return [r for r in result.records if r["part"] == "epoch" and r["run"] == run]


def _points(result: StudyResult, run: str, time: str) -> list[dict[str, Any]]:
    return [r for r in result.records if r["part"] == "point" and r["run"] == run and r["time"] == time]


def test_the_report_answers_first_with_its_four_figures(quick: tuple[StudyResult, Path]) -> None:
    result, out = quick
    assert_answers_first(result, out)
    assert sorted(result.figures) == ["inside_vs_error", "margins", "segment", "simplex"]
    assert result.answer is not None and result.answer.figure == "simplex"
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "$" not in html


@pytest.mark.parametrize("run", simplex.RUNS)
def test_inside_is_one_minus_the_training_error_at_every_epoch(quick: tuple[StudyResult, Path], run: str) -> None:
    result, _ = quick
    eps = _epochs(result, run)
    assert [r["epoch"] for r in eps] == list(range(QUICK["epochs"] + 1))
    for r in eps:  # membership from p and correctness from the logits, counted apart, agree sample for sample
        assert r["disagreements"] == 0 and r["n_inside"] == r["n_correct"]
        assert r["inside"] == r["n_inside"] / r["n"] and r["error"] == pytest.approx(1 - r["n_correct"] / r["n"])
    h = result.headline
    assert h[f"{run}: samples where inside ≠ correct, over all epochs"] == 0
    assert h[f"{run}: sample-epochs measured"] == eps[0]["n"] * (QUICK["epochs"] + 1)
    assert f"agree exactly at all {QUICK['epochs'] + 1} epochs measured" in result.verdict


@pytest.mark.parametrize(("run", "n_classes"), [("3-class", 3), ("2-class", 2)])
def test_the_epoch_rows_summarize_the_kept_points(quick: tuple[StudyResult, Path], run: str, n_classes: int) -> None:
    """At init, mid and end the per-point rows reproduce the epoch row; each point's margin and membership
    follow from its p (the definitions, recomputed here by hand)."""
    result, _ = quick
    by_epoch = {r["epoch"]: r for r in _epochs(result, run)}
    for epoch, time in ((0, "init"), (QUICK["epochs"] // 2, "mid"), (QUICK["epochs"], "end")):
        pts = _points(result, run, time)
        row = by_epoch[epoch]
        assert len(pts) == row["n"] and {p["epoch"] for p in pts} == {epoch}
        p = np.array([[q[f"p_{c}"] for c in range(n_classes)] for q in pts])
        y = np.array([q["label"] for q in pts])
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
        rival = np.where(np.eye(n_classes, dtype=bool)[y], -np.inf, p).max(axis=1)
        margin = (p[np.arange(len(y)), y] - rival) / math.sqrt(2)
        np.testing.assert_allclose([q["margin"] for q in pts], margin, rtol=1e-12, atol=1e-15)
        assert [q["inside"] for q in pts] == (margin >= 0).tolist()
        assert row["inside"] == pytest.approx(np.mean(margin >= 0))
        assert row["margin_median"] == pytest.approx(np.median(margin))
        assert row["margin_min"] == pytest.approx(margin.min())
        assert [q["predicted"] for q in pts] == p.argmax(axis=1).tolist()


def test_training_carries_the_cloud_from_the_centre_into_the_regions(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    h = result.headline
    e = QUICK["epochs"]
    assert h["3-class: largest distance to 1/C at init"] < 0.3  # small logits: every point near 1/3
    assert h[f"3-class: inside fraction at end (epoch {e})"] > 0.9 > h["3-class: inside fraction at init (epoch 0)"]
    assert h[f"2-class: inside fraction at end (epoch {e})"] > 0.9
    for run in simplex.RUNS:
        medians_at = [h[f"{run}: median margin at {t}"] for t in simplex.TIMES]
        assert medians_at == sorted(medians_at) and len(set(medians_at)) == 3
        assert h[f"{run}: median margin at end"] < simplex.MAX_MARGIN
        medians = [r["margin_median"] for r in _epochs(result, run)]
        assert h[f"{run}: epochs in which the median margin grew"] == sum(b > a for a, b in itertools.pairwise(medians))
    # every number the verdict and the answer quote is the records'
    start, end = h["3-class: inside fraction at init (epoch 0)"], h[f"3-class: inside fraction at end (epoch {e})"]
    assert f"{start:.1%} at init (epoch 0; training error {1 - start:.1%})" in result.verdict
    assert f"{end:.1%} at the end (epoch {e}" in result.verdict
    assert result.answer is not None
    assert f"at the end {end:.1%}" in result.answer.text and f"against {start:.1%}" in result.answer.text
    assert f"grows to {h['3-class: median margin at end']:.2f}" in result.answer.text
    assert "exactly one minus the training error" in result.answer.text


def test_the_recorder_followed_the_batches_during_fit(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    rows = [r for r in result.records if r["part"] == "recorder" and r["quantity"] == "simplex_inside"]
    steps = [r["step"] for r in rows]
    assert steps[0] == 0 and all(s % QUICK["record_every"] == 0 for s in steps) and steps == sorted(steps)
    assert all(0 <= r["value"] <= 1 for r in rows)
    assert result.headline["3-class: batch inside fraction at the last recorded step"] == rows[-1]["value"]


def test_the_figures_are_drawn_from_the_recorded_points(quick: tuple[StudyResult, Path]) -> None:
    from matplotlib.collections import PathCollection

    result, _ = quick
    for stem, run, time_axes in (("simplex", "3-class", 3), ("segment", "2-class", 3)):
        axes = result.figures[stem].axes
        assert len(axes) == time_axes
        for ax, time in zip(axes, simplex.TIMES, strict=True):
            drawn = np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])
            pts = _points(result, run, time)
            assert len(drawn) == len(pts)
            np.testing.assert_allclose(np.sort(drawn[:, 0]), np.sort([p["x"] for p in pts]))
            if run == "3-class":
                np.testing.assert_allclose(np.sort(drawn[:, 1]), np.sort([p["y"] for p in pts]))


def test_a_run_that_does_not_learn_says_so() -> None:
    cfg = {**QUICK, "epochs": 2, "lr": 1e-5}
    records = simplex.measure(cfg)
    text, _ = simplex.verdict(records, cfg)
    assert "The 3-class run ended at" in text and "the run did not learn" in text
    assert "stayed near chance" in simplex.answer(records, cfg).text


@pytest.mark.parametrize(("overrides", "message"), [
    ({"classes": [0, 1]}, r"classes=\[0, 1\]: expected 3 different digits"),
    ({"classes": [0, 1, 1]}, r"expected 3 different digits"),
    ({"binary_classes": [3, 3]}, r"binary_classes=\[3, 3\]: expected 2 different digits"),
    ({"epochs": 1}, r"epochs=1: expected at least 2"),
    ({"classes": [0, 1, 10]}, r"classes=.*in \[0, 9\]"),
])
def test_bad_settings_are_refused_before_any_work(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simplex.STUDY.config(True, overrides)


def test_a_run_that_fit_stopped_early_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import nablanet as nn

    real = nn.fit

    def stopped(*args: Any, **kwargs: Any) -> Any:
        history = real(*args, **kwargs)
        history.stop_reason = "the training loss became nan at epoch 1"  # as the divergence guard says it
        return history

    monkeypatch.setattr(nn, "fit", stopped)
    with pytest.raises(ValueError, match=r"the 3-class run stopped after 2 epochs \(the training loss became nan.*"
                                         r"Fix: a smaller rate"):
        simplex.measure({**QUICK, "epochs": 2})
