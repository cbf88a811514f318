"""The coding study's quick run: Huffman block codes inside Shannon's bound, the entropy function's
identities, codes built for the wrong p costing H(q, p) (arithmetic, Shannon) but Huffman's not bounded
by it, and a classifier's labels coded with its probabilities in its cross-entropy's bits."""

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
from nablanet.studies import coding
from nablanet.studies.base import Records, StudyResult, pyplot, run_study

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyResult, Path]:
    return run_study(coding.STUDY, tmp_path_factory.mktemp("coding"), quick=True)


def _part(result: StudyResult, part: str) -> list[dict[str, Any]]:
    return [r for r in result.records if r["part"] == part]


# -- the pieces, by hand ------------------------------------------------------------------------------------
def test_shannon_block_cost_by_hand() -> None:
    # m = 2, p = ¼: lengths ⌈−log₂ p(b)⌉ by the number of ones k: k = 0: ⌈0.830⌉ = 1, k = 1: ⌈2.415⌉ = 3,
    # k = 2: ⌈4⌉ = 4. Under q = ¼ the block has k = 0, 1, 2 with probability 9/16, 6/16, 1/16:
    # E = (9·1 + 6·3 + 1·4)/16 = 31/16 bits per block, 31/32 per symbol, in [H(q, p), H(q, p) + ½) = [0.811, 1.311)
    expected, measured = coding.shannon_block_cost(np.array([0, 0, 0, 1, 1, 1]), 2, 0.25, 0.25)
    assert expected == 31 / 32
    assert measured == (1 + 3 + 4) / 6  # blocks 00, 01, 11
    h = nn.info.binary_cross_entropy(q=0.25, p=0.25)
    assert h <= expected < h + 1 / 2
    assert coding.shannon_block_cost(np.array([0, 1, 1, 0]), 1, 0.5, 0.1) == (1.0, 1.0)  # p = ½: one bit each


def test_huffman_for_the_wrong_p_is_not_bounded_by_the_cross_entropy() -> None:
    """The issue's counterexample: q = 0.1, p = 0.05, m = 8 expects 0.4889 bits < H(q, p) = 0.4988, yet > H(q)."""
    r = coding.huffman_on_stream(nn.info.bernoulli_stream(0.1, 800, rng=0), 8, 0.05, 0.1)
    assert r["expected"] == pytest.approx(0.48885123625, abs=1e-10) and r["round_trip"]
    assert nn.info.binary_entropy(0.1) < r["expected"] < nn.info.binary_cross_entropy(q=0.1, p=0.05) - 0.009


def test_code_labels_round_trips_within_the_bound() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=40)
    labels = np.array([rng.choice(5, p=row) for row in probs])
    r = coding.code_labels(labels, probs)
    ideal = float(-np.log2(probs[np.arange(40), labels]).sum())
    assert r["round_trip"] and r["ideal_bits"] == pytest.approx(ideal, rel=1e-14)
    assert ideal - 1e-6 <= r["bits"] <= ideal + r["overhead_bound"] and r["overhead_bound"] < 2 + 1e-6
    uniform = coding.code_labels(labels, np.full(5, 0.2))
    assert uniform["ce_bits_per_label"] == pytest.approx(math.log2(5), rel=1e-14)


@pytest.mark.parametrize(("overrides", "match"), [
    ({"n_bits": 50}, r"n_bits=50: expected at least 10 blocks of the longest m \(8\)"),
    ({"entropy_grid": 2}, r"entropy_grid=2: expected at least 3 points"),
])
def test_bad_settings_are_refused(overrides: dict[str, Any], match: str) -> None:
    cfg = coding.STUDY.config(quick=True, overrides=overrides)
    with pytest.raises(ValueError, match=match):
        coding.measure(cfg)


@pytest.mark.parametrize(("key", "value"), [("q", 1.0), ("wrong_ps", [0.0]), ("block_sizes", [17]),
                                            ("entropy_qs", [1.5]), ("hidden", [0])])
def test_out_of_range_settings_are_refused_before_any_work(key: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"{key}="):
        coding.STUDY.config(quick=True, overrides={key: value})


# -- the quick run ------------------------------------------------------------------------------------------
def test_huffman_blocks_obey_shannons_bound(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    blocks = sorted(_part(result, "block"), key=lambda r: r["m"])
    assert [b["m"] for b in blocks] == coding.STUDY.quick["block_sizes"]
    h = nn.info.binary_entropy(coding.STUDY.quick["q"])
    for b in blocks:
        assert b["entropy"] == h and b["round_trip"]
        assert h <= b["expected"] < h + 1 / b["m"] == b["upper_bound"]
        assert b["measured"] == b["coded_bits"] / b["n_bits"] and b["n_bits"] % b["m"] == 0
    assert blocks[0]["expected"] == 1.0 == blocks[0]["measured"]  # one symbol per bit costs one bit
    assert blocks[-1]["expected"] < blocks[0]["expected"] - 0.5
    by_m = {b["m"]: b for b in blocks}
    assert f"{by_m[1]['expected']:.4f} (m = 1), {by_m[4]['expected']:.4f} (m = 4)" in result.verdict
    assert "inside Shannon's bound H(q) ≤ E/m < H(q) + 1/m at every m tried" in result.verdict


def test_the_entropy_function(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    curve = _part(result, "entropy_curve")
    assert len(curve) == coding.STUDY.quick["entropy_grid"]
    assert curve[0]["entropy"] == 0.0 == curve[-1]["entropy"]
    assert next(r for r in curve if r["q"] == 0.5)["entropy"] == 1.0
    assert max(abs(r["entropy"] - r["entropy_mirror"]) for r in curve) < 1e-15  # H(q) = H(1 − q)
    assert max(r["entropy"] for r in curve) == 1.0
    for p in _part(result, "entropy_point"):
        assert p["huffman_round_trip"] and p["arithmetic_round_trip"]
        assert p["entropy"] <= p["huffman_expected"] < p["entropy"] + 1 / p["m"]
        assert p["arithmetic_ideal"] == pytest.approx(nn.info.binary_cross_entropy(q=p["empirical_q"], p=p["q"]),
                                                      abs=1e-12)
        assert 0 <= p["arithmetic_coded_bits"] - p["arithmetic_ideal"] * p["n_bits"] <= 2 + 1e-6


def test_the_wrong_code_costs_the_cross_entropy(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    cfg = coding.STUDY.quick
    wrong = sorted(_part(result, "wrong"), key=lambda r: r["p"])
    assert [r["p"] for r in wrong] == sorted({*cfg["wrong_ps"], cfg["q"]})
    for r in wrong:
        assert r["arithmetic_round_trip"] and r["huffman_round_trip"]
        # the arithmetic code spends the stream's own cross entropy H(q̂, p), within its bound 2 + Nδ
        assert r["arithmetic_ideal"] == pytest.approx(nn.info.binary_cross_entropy(q=r["empirical_q"], p=r["p"]),
                                                      abs=1e-12)
        assert r["arithmetic_ideal"] <= r["arithmetic"] <= r["arithmetic_ideal"] + r["arithmetic_overhead"]
        assert r["cross_entropy"] == pytest.approx(r["entropy"] + r["kl"], abs=1e-12)  # H(q, p) = H(q) + KL(q‖p)
        # Shannon's lengths: H(q, p) ≤ E/m < H(q, p) + 1/m; any prefix code: E/m ≥ H(q)
        assert r["cross_entropy"] <= r["shannon_expected"] < r["cross_entropy"] + 1 / r["m"]
        assert r["huffman_expected"] >= r["entropy"]
    at_q = next(r for r in wrong if r["p"] == cfg["q"])
    assert at_q["kl"] == 0.0 and at_q["cross_entropy"] == at_q["entropy"]
    huff = next(r for r in wrong if r["p"] == 0.05)["huffman_expected"]
    assert huff < next(r for r in wrong if r["p"] == 0.05)["cross_entropy"]
    assert f"p = 0.05 ({huff:.4f} < 0.4988)" in result.verdict
    assert "so H(q, p) bounds the Shannon and arithmetic codes, not Huffman's; none expects less than H(q)" \
        in result.verdict


def test_the_classifier_labels_cost_its_cross_entropy(quick: tuple[StudyResult, Path]) -> None:
    result, _ = quick
    labels = _part(result, "labels")
    net = sorted((r for r in labels if r["code"] == "network"), key=lambda r: r["epoch"])
    assert [r["epoch"] for r in net] == list(range(coding.STUDY.quick["epochs"] + 1))
    for r in labels:
        assert r["round_trip"]
        assert r["ideal_bits"] - 1e-6 * r["n_labels"] <= r["bits"] <= r["ideal_bits"] + r["overhead_bound"]
    for r in net:  # the loss, in bits, is the mean codeword length −log₂ p_y
        assert r["loss_bits_per_label"] == pytest.approx(r["ce_bits_per_label"], abs=1e-12)
    uniform = next(r for r in labels if r["code"] == "uniform")
    assert uniform["ce_bits_per_label"] == pytest.approx(math.log2(10), rel=1e-14)
    end = net[-1]
    assert end["accuracy"] > 0.9 and end["bits"] < 0.1 * uniform["bits"] < net[0]["bits"]
    cost = _part(result, "label_cost")
    assert len(cost) == end["n_labels"]
    assert sum(r["bits"] for r in cost) == pytest.approx(end["ideal_bits"], rel=1e-12)
    assert sum(r["bits"] for r in cost if not r["correct"]) == pytest.approx(end["error_bits"], rel=1e-12)
    assert sum(not r["correct"] for r in cost) == end["n_errors"]
    assert f"spent {end['bits']} bits ({end['bits_per_label']:.4f} per label)" in result.verdict
    assert "Every code was within its bound and decoded back to the labels." in result.verdict


def test_files_headline_and_answer(quick: tuple[StudyResult, Path]) -> None:
    result, out = quick
    assert_answers_first(result, out)
    meta = json.loads((out / "result.json").read_text())
    assert meta["verdict"] == result.verdict and meta["study"] == "coding"
    assert (out / "index.html").read_text().count("data:image/png;base64,") == len(result.figures) == 4
    with open(out / "records.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(result.records)
    # every headline number is a finite number, so --seeds K can take medians of all of them
    assert all(isinstance(v, int | float) and math.isfinite(v) for v in result.headline.values())
    last = max(r["m"] for r in _part(result, "block"))
    assert f"{result.headline[f'Huffman, m = {last}: expected bits per symbol']:.4f} bits per symbol" \
        in result.answer.text


def test_verdict_and_figures_are_computed_from_the_rows(quick: tuple[StudyResult, Path]) -> None:
    result, out = quick
    cfg = json.loads((out / "result.json").read_text())["config"]
    rows = Records(copy.deepcopy(result.records))
    assert coding.STUDY.verdict(rows, cfg) == (result.verdict, result.headline)
    drawn = coding.STUDY.figures(rows, cfg)
    assert {stem: f.caption for stem, f in drawn.items()} == result.captions
    pyplot().close("all")
