"""The saturation study's quick run: the single neuron stalls at the wrong end under the quadratic cost;
in the network the saturated start shows in the escape time (MSE later than BCE, and not from the
unsaturated control), while the final-accuracy gap stays without the saturated start (the shared rate);
a run at chance level is reported as such, not as a finding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_answers_first

from nablanet.studies import saturation
from nablanet.studies._guard import over_seeds
from nablanet.studies.base import StudyResult, run_study

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

QUICK = saturation.STUDY.quick
STARTS = ("saturated", "unsaturated")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyResult, Path]:
    return run_study(saturation.STUDY, tmp_path_factory.mktemp("saturation"), quick=True)


def _runs(result: StudyResult, loss: str, start: str, lr: float) -> list[dict[str, Any]]:
    return [r for r in result.records if r["part"] == "run" and r["loss"] == loss and r["start"] == start
            and r["lr"] == lr]


def test_saturation_reproduces_the_single_neuron_numbers(quick: tuple[StudyResult, Path]) -> None:
    result, out = quick
    h = result.headline
    assert h["quadratic (0.6, 0.9): a at step 0"] == pytest.approx(0.82, abs=0.005)
    assert h["quadratic (0.6, 0.9): a at step 300"] == pytest.approx(0.09, abs=0.01)
    # from w = b = 2 the quadratic cost barely moves the output for ~150 steps; cross-entropy does not stall
    assert h["quadratic (2, 2): a at step 0"] - h["quadratic (2, 2): a at step 150"] < 0.06
    assert h["cross-entropy (2, 2): a at step 150"] < 0.05
    meta = json.loads((out / "result.json").read_text())
    assert meta["verdict"] == result.verdict and meta["config"]["eta"] == 0.15
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64,") == len(result.figures) == 2
    assert "records.csv" in html and (out / "records.csv").stat().st_size > 0


def test_every_network_claim_rests_on_three_seeds(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    assert QUICK["n_seeds"] >= 3
    for start in STARTS:
        for loss in saturation.LOSSES:
            runs = _runs(result, loss, start, QUICK["lr"])
            assert sorted(r["seed"] for r in runs) == list(range(QUICK["seed"], QUICK["seed"] + QUICK["n_seeds"]))
            assert len(result.headline[f"{loss} {start}: final test accuracies"]) == QUICK["n_seeds"]


def test_escape_step_is_the_first_step_below_one_half(quick: tuple[StudyResult, Path]) -> None:
    """The summary's escape step is recomputed from the per-step trace of the wrong-end output."""
    result, _ = quick
    for r in (r for r in result.records if r["part"] == "run"):
        trace = [t for t in result.records if t["part"] == "escape" and all(t[k] == r[k] for k in
                                                                            ("loss", "start", "lr", "seed"))]
        assert [t["step"] for t in trace] == list(range(len(trace)))
        below = [t["step"] for t in trace if t["wrong_end_output"] < 0.5]
        assert below == [r["escape_step"]] and trace[-1]["step"] == r["escape_step"]
        assert all(t["wrong_end_output"] >= 0.5 for t in trace[:-1])


def test_saturation_shows_in_the_escape_time_and_only_from_the_saturated_start(
        quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    h = result.headline
    bce, mse = h["bce saturated: escape steps"], h["mse saturated: escape steps"]
    assert all(b < m for b, m in zip(bce, mse, strict=True))  # every seed: MSE leaves the wrong end later
    assert h["bce saturated: escape step"] < h["mse saturated: escape step"]
    # the control starts at ½: neither loss has anything to escape, so no delay
    assert max(h["bce unsaturated: escape steps"] + h["mse unsaturated: escape steps"]) <= 1
    delay = h["MSE's escape delay behind BCE, saturated"]
    assert delay == pytest.approx(np.mean(mse) - np.mean(bce)) and delay > 3
    assert abs(h["MSE's escape delay behind BCE, unsaturated"]) < delay / 2
    assert f"MSE {over_seeds(mse)} steps" in result.verdict and f"BCE {over_seeds(bce)} steps" in result.verdict
    assert "later than BCE from the saturated start and not from the control" in result.verdict


def test_the_accuracy_gap_stays_without_the_saturated_start(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    h = result.headline
    for start in STARTS:
        for loss in saturation.LOSSES:
            accs = [r["final_accuracy"] for r in _runs(result, loss, start, QUICK["lr"])]
            assert h[f"{loss} {start}: final test accuracy"] == pytest.approx(np.mean(accs))
            assert h[f"{loss} {start}: final test accuracy"] > 0.1 + 0.05  # learned: above chance + 5 points
    gap_sat, gap_uns = h["accuracy gap BCE − MSE, saturated"], h["accuracy gap BCE − MSE, unsaturated"]
    assert gap_sat == pytest.approx(h["bce saturated: final test accuracy"] - h["mse saturated: final test accuracy"])
    assert gap_sat > 0.2 and gap_uns > 0.2  # the control's gap is present ...
    assert h["gap kept without saturation (unsaturated / saturated)"] == pytest.approx(gap_uns / gap_sat)
    assert gap_uns / gap_sat > 0.5  # ... and most of the saturated start's
    assert f"a gap of {100 * gap_sat:.1f} points" in result.verdict
    assert f"a gap of {100 * gap_uns:.1f} points" in result.verdict
    # the cause named is the shared rate and MSE's 2σ′(z) factor, measured on its outputs (≤ ½ always)
    two_sp = h["mse: mean 2σ′(z) over training"]
    assert 0 < two_sp <= 0.5 and f"2σ′(z) averaged {two_sp:.2f}" in result.verdict
    assert "one rate shared by both losses" in result.verdict and "shared rate" in result.verdict
    assert "not the effect of starting at the wrong end" in result.verdict or "its main cause is not" in result.verdict
    assert "Both losses share lr = 8 here" in result.verdict  # no lr_grid in the quick run: it says so


def test_a_run_that_cannot_learn_gives_the_did_not_learn_sentence() -> None:
    cfg = {**QUICK, "steps": 10, "epochs": 1, "lr": 0.05}  # one epoch at a tiny rate: chance level
    records = saturation.measure(cfg)
    text, head = saturation.verdict(records, cfg)
    answer = saturation.answer(records, cfg)  # the answer too: no accuracy gap to read, so it says so
    assert "stayed near chance accuracy, so their final accuracies are not a finding" in answer.text
    assert "final accuracy gap" not in answer.text
    assert "the run did not learn, so its numbers are not a finding" in text
    assert "Fix: train longer or at a larger rate" in text
    assert "a gap of" not in text and "accuracy gap BCE − MSE, saturated" not in head
    for start in STARTS:
        for loss in saturation.LOSSES:
            acc = head[f"{loss} {start}: final test accuracy"]
            if acc <= 0.15:
                assert f"{loss.upper()} from the {start} start (lr = 0.05, 1 epochs, mean over seeds) ended at " \
                       f"{acc:.1%} accuracy" in text


def test_lr_grid_compares_the_losses_at_rates_tuned_per_loss() -> None:
    cfg = {**QUICK, "steps": 10, "epochs": 3, "lr_grid": [8.0, 16.0]}
    records = saturation.measure(cfg)
    text, head = saturation.verdict(records, cfg)
    for start in STARTS:
        for loss in saturation.LOSSES:
            mean = {lr: np.mean([r["final_accuracy"] for r in records.rows if r["part"] == "run" and r["loss"] == loss
                                 and r["start"] == start and r["lr"] == lr]) for lr in cfg["lr_grid"]}
            best = max(mean, key=lambda lr: mean[lr])
            assert head[f"tuned {loss} {start}: lr"] == best
            assert head[f"tuned {loss} {start}: final test accuracy"] == pytest.approx(mean[best])
            assert mean[best] >= head[f"{loss} {start}: final test accuracy"]  # the shared lr is in the grid
    assert "At the rate best for each loss (best of lr ∈ [8.0, 16.0], 3 epochs)" in text
    assert f"a gap of {100 * head['tuned accuracy gap BCE − MSE, saturated']:.1f} points" in text


def test_the_network_figure_draws_every_run(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    left, right = result.figures["network"].axes
    n_curves = len(saturation.LOSSES) * len(STARTS)
    assert len(left.get_lines()) == n_curves * QUICK["n_seeds"] + 1  # a trace per run, + the line at 0.5
    assert len(right.get_lines()) == n_curves + 1  # the median per (loss, start), + chance


@pytest.mark.parametrize("grid", [[-1], [0.5, 0], ["fast"], [True]])
def test_a_bad_lr_grid_is_refused_before_any_work(grid: list[Any]) -> None:
    # the empty quick default gives no element type: the check takes it from the setting's example
    with pytest.raises(ValueError, match=r"lr_grid=.*: expected a list of positive numbers \(.* is not one; the quick "
                                         r"default is \[\]\), e\.g\. 'lr_grid=\[0\.5,2\.0,8\.0\]'; or \[\] to train"):
        saturation.STUDY.config(True, {"lr_grid": grid})
    assert saturation.STUDY.config(True, {"lr_grid": [1, 2.5]})["lr_grid"] == [1, 2.5]


def test_the_report_answers_first(quick: tuple[StudyResult, Path]) -> None:
    result, out = quick
    assert_answers_first(result, out)
    h = result.headline
    delay = h["MSE's escape delay behind BCE, saturated"]
    kept = h["gap kept without saturation (unsaturated / saturated)"]
    assert (f"needs {delay:.2g} more steps" in result.answer.text) == (delay is not None and delay > 0)
    assert (f"But {kept:.0%} of its final accuracy gap remains" in result.answer.text) == (
        kept is not None and kept > 0.5)
