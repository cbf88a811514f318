"""Study loss-gradients: the per-sample bound ‖∂ℓ_quad/∂z‖ ≤ ‖J(p)‖₂‖∂ℓ_CE/∂z‖ ≤ ½‖∂ℓ_CE/∂z‖ holds for every
recorded sample, carries to the last layer's weights, the ratio shrinks along the CE trajectory, and the
loss rescales every layer's gradient by about the same factor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_answers_first

import nablanet as nn
from nablanet.layers.softmax import softmax
from nablanet.studies import StudyResult, run_study
from nablanet.studies import loss_gradients as lg
from nablanet.studies._guard import over_seeds

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyResult, Path]:
    return run_study(lg.STUDY, tmp_path_factory.mktemp("loss_gradients"), quick=True)


def _probes(result: StudyResult, layer: str) -> list[dict[str, Any]]:
    return [r for r in result.records if r["part"] == "probe" and r["layer"] == layer]


def test_softmax_jacobian_norm_is_at_most_one_half_and_backprop_applies_it() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((200, 10)) * rng.uniform(0.1, 8.0, (200, 1))
    p = softmax(z, axis=1)
    jac = lg.softmax_jacobian(p)
    assert np.allclose(jac, np.swapaxes(jac, 1, 2))
    assert np.all(np.linalg.eigvalsh(jac)[:, -1] <= 0.5 + 1e-15)
    # the bound is attained: p = (½, ½, 0, …) gives J = [[¼, −¼], [−¼, ¼]] ⊕ 0, eigenvalue ½
    assert np.linalg.eigvalsh(lg.softmax_jacobian(np.array([[0.5, 0.5, 0.0]])))[0, -1] == pytest.approx(0.5)
    # Softmax + QuadraticLoss backprop gives J(p)(p − q) per sample (per_sample_vjp of ℓ through Softmax's VJP)
    y = rng.integers(0, 10, 200)
    q = np.eye(10)[y]
    quad, sm = nn.QuadraticLoss(), nn.Softmax(dim=-1)
    out, cache = sm.forward(z)
    _, lc = quad.forward(out, q)
    dz, _ = sm.vjp(cache, quad.per_sample_vjp(lc))
    assert np.allclose(dz, np.einsum("nij,nj->ni", jac, p - q), atol=1e-14)


def test_output_layer_bound_holds_for_every_recorded_sample(study: tuple[StudyResult, Path]) -> None:
    result, _ = study
    z = _probes(result, "z")
    assert len(z) >= 2000
    for r in z:
        assert r["J_norm"] <= 0.5 + 1e-12
        assert r["quad"] <= 0.5 * r["ce"] * (1 + 1e-12)
        assert r["quad"] <= r["J_norm"] * r["ce"] * (1 + 1e-9) + 1e-300  # the sharpened bound
    h = result.headline
    assert h["max ‖∂ℓ_quad/∂z‖ / ‖∂ℓ_CE/∂z‖ (bound ½)"] <= 0.5
    assert h["fraction of samples with ‖∂ℓ_quad/∂z‖ ≤ ½‖∂ℓ_CE/∂z‖"] == 1.0
    assert h["max ‖∂ℓ_quad/∂z‖ / (‖J‖₂ ‖∂ℓ_CE/∂z‖) (sharpened bound 1)"] <= 1 + 1e-9
    assert h["max rel. deviation backprop vs ‖J(p)(p − q)‖"] < 1e-9


def test_the_bound_carries_to_the_last_layer_weights(study: tuple[StudyResult, Path]) -> None:
    result, _ = study
    n_layers = max(int(r["layer"][1:]) for r in result.records if r["part"] == "probe" and r["layer"] != "z")
    out_rows = _probes(result, f"W{n_layers}")
    z_rows = {(r["trajectory"], r["step"], r["sample"]): r for r in _probes(result, "z")}
    for r in out_rows:
        dz = z_rows[r["trajectory"], r["step"], r["sample"]]
        # ‖∂ℓ/∂W_out,ₙ‖ = ‖∂ℓ/∂zₙ‖ ‖hₙ‖ for both losses, so the weight ratio equals the logit ratio
        assert r["ce"] == pytest.approx(dz["ce"] * dz["h_norm"], rel=1e-9)
        assert r["quad"] == pytest.approx(dz["quad"] * dz["h_norm"], rel=1e-9, abs=1e-300)
        assert r["quad"] <= 0.5 * r["ce"] * (1 + 1e-12)
    checks = {r["quantity"]: r["value"] for r in result.records if r["part"] == "check"}
    assert len(checks) == 4 and max(checks.values()) < 1e-9  # vs materialized per-sample gradients


def test_ratio_starts_at_one_over_c_and_shrinks_along_the_ce_trajectory(study: tuple[StudyResult, Path]) -> None:
    result, _ = study
    h = result.headline
    steps = sorted({r["step"] for r in _probes(result, "z") if r["trajectory"] == "ce"})
    start, end = h["output W: median ratio at step 0"], h[f"output W: median ratio at step {steps[-1]}"]
    assert start == pytest.approx(0.1, abs=0.02)  # p ≈ uniform at init: J acts as 1/C on p − q
    assert end < 0.5 * start
    # the quadratic gradient falls further than the cross-entropy one at the same weights
    assert (h["CE trajectory: median ‖∂ℓ_quad/∂W_out‖ end / start"]
            < h["CE trajectory: median ‖∂ℓ_CE/∂W_out‖ end / start"] < 1)
    # near the correct vertex the ratio is ≈ (1 − p_y)·[C/(C − 1), 2] (first order in 1 − p_y ≤ 0.1)
    assert h["end, correct with p_y > 0.9: samples"] > 10
    assert 10 / 9 * 0.9 <= h["end, p_y > 0.9: min ratio/(1 − p_y) (first order: C/(C−1))"]
    assert h["end, p_y > 0.9: max ratio/(1 − p_y) (first order: 2)"] <= 2 * 1.1


def test_the_loss_rescales_every_layer_alike(study: tuple[StudyResult, Path]) -> None:
    result, _ = study
    cfg = lg.STUDY.quick
    sweep = [r for r in result.records if r["part"] == "sweep"]
    assert len(sweep) == cfg["seeds"] * 2 * sum(d + 1 for d in cfg["sweep_depths"]) * len(cfg["sweep_widths"])
    assert {r["seed"] for r in sweep} == set(range(cfg["seed"], cfg["seed"] + cfg["seeds"]))
    assert result.headline["sweep trained: max over seeds and (L, m) of max/min layer ratio"] < 1.5
    assert result.headline["per sample: max/min ratio over layers, median"] < 1.1
    for r in sweep:  # every layer's gradient changes with the loss: the ratio is far from 1
        assert r["median_ratio"] < 0.5


def test_reports_are_written_and_the_verdict_quotes_the_numbers(study: tuple[StudyResult, Path]) -> None:
    result, out = study
    h = result.headline
    assert f"{h['max ‖∂ℓ_quad/∂z‖ / ‖∂ℓ_CE/∂z‖ (bound ½)']:.3f}" in result.verdict
    assert h["seeds: ce path: ratio at step 0"] in result.verdict
    assert f"{h['sweep trained: max over seeds and (L, m) of max/min layer ratio']:.3f}" in result.verdict
    assert "within the analytic bound ½" in result.verdict
    meta = json.loads((out / "result.json").read_text())
    assert meta["study"] == "loss-gradients" and meta["verdict"] == result.verdict
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64,") == len(result.figures) == 4
    assert (out / "records.csv").stat().st_size > 0
    losses = {r["loss"] for r in result.records if r["part"] == "train"}
    assert losses == {"ce", "quad", "mse"}


def test_softmax_jacobian_on_sum_zero_vectors_lies_between_p_min_and_min_p_max_one_half() -> None:
    # J = diag(p) − ppᵀ interlaces with the p_c: on 1^⊥ its eigenvalues lie in [p_min, p_max] (and ≤ ½)
    rng = np.random.default_rng(1)
    p = softmax(rng.standard_normal((500, 10)) * rng.uniform(0.1, 6.0, (500, 1)), axis=1)
    e = rng.standard_normal((500, 10))
    e -= e.mean(axis=1, keepdims=True)
    je = np.linalg.norm(np.einsum("nij,nj->ni", lg.softmax_jacobian(p), e), axis=1)
    en = np.linalg.norm(e, axis=1)
    assert np.all(je >= p.min(axis=1) * en * (1 - 1e-12))
    assert np.all(je <= np.minimum(p.max(axis=1), 0.5) * en * (1 + 1e-12))
    # attained: p uniform gives J = I/C on 1^⊥, so both ends equal 1/C
    stats = lg.logit_stats(np.zeros((1, 10)), np.array([3]))
    assert stats["Je_norm"][0] == pytest.approx(0.1 * stats["e_norm"][0])


def test_the_lower_bound_p_min_holds_on_every_measured_sample(study: tuple[StudyResult, Path]) -> None:
    result, _ = study
    z = {(r["trajectory"], r["step"], r["sample"]): r for r in _probes(result, "z")}
    for r in z.values():
        assert r["quad"] >= r["p_min"] * r["ce"] * (1 - lg.BOUND_RTOL)
        assert r["quad"] <= min(r["p_max"], 0.5) * r["ce"] * (1 + lg.BOUND_RTOL)
    n_layers = lg.STUDY.quick["depth"] + 1
    for r in _probes(result, f"W{n_layers}"):  # the output weights: the same factor ‖hₙ‖ on both sides
        assert r["quad"] >= z[r["trajectory"], r["step"], r["sample"]]["p_min"] * r["ce"] * (1 - lg.BOUND_RTOL)
    h = result.headline
    assert h["lower bound: fraction of samples with ‖∂ℓ_quad/∂z‖ ≥ p_min ‖∂ℓ_CE/∂z‖"] == 1.0
    assert h["lower bound: min ‖∂ℓ_quad/∂z‖ / (p_min ‖∂ℓ_CE/∂z‖) (≥ 1)"] >= 1 - lg.BOUND_RTOL
    # the bound says little once p leaves uniform: p_min collapses along the CE trajectory
    assert h["median p_min at end (CE)"] < 1e-2 * h["median p_min at init"]
    assert f"{h['lower bound: min ‖∂ℓ_quad/∂z‖ / (p_min ‖∂ℓ_CE/∂z‖) (≥ 1)']:.3f} ≥ 1" in result.verdict
    assert "no lower bound" in result.verdict


def test_quadratic_gradient_vanishes_like_the_square_and_on_wrong_saturated_samples(
        study: tuple[StudyResult, Path]) -> None:
    result, _ = study
    h = result.headline
    for tag in ("quad-trained", "ce-trained"):
        assert h[f"{tag}: slope of log ‖∂ℓ_quad/∂z‖ on log(1 − p_y), mean"] == pytest.approx(2, abs=0.1)
        assert h[f"{tag}: slope of log ‖∂ℓ_CE/∂z‖ on log(1 − p_y), mean"] == pytest.approx(1, abs=0.05)
        assert h[f"{tag}: correct samples with 1 − p_y < 0.1"] > 300
    samples = [r for r in result.records if r["part"] == "sample"]
    assert {r["seed"] for r in samples} == {0, 1, 2}
    for r in samples:  # the exact rate bounds of the module docstring, on every training sample
        if r["correct"] and r["p_y"] >= 0.5:
            delta = 1 - r["p_y"]
            assert delta * (1 - lg.BOUND_RTOL) <= r["ce"] <= np.sqrt(2) * delta * (1 + lg.BOUND_RTOL) + 1e-15
            assert r["quad"] <= 2 * np.sqrt(2) * delta**2 * (1 + lg.BOUND_RTOL) + 1e-15
        elif not r["correct"] and r["p_max"] >= 0.5:
            assert r["quad"] <= 2 * np.sqrt(2) * (1 - r["p_max"]) * (1 + lg.BOUND_RTOL)
            assert r["ce"] >= r["p_max"] * (1 - lg.BOUND_RTOL)
    assert h["quad-trained: misclassified with p_max ≥ ½"] > 0
    assert "wrongly, on a sample saturated at a wrong class" in result.verdict
    assert h["seeds: quad training-set median ‖∂ℓ_quad/∂z‖ at 40 epochs"] in result.verdict


def test_the_quadratic_loss_has_not_yet_reached_the_vertices_at_ten_epochs_but_does_later(
        study: tuple[StudyResult, Path]) -> None:
    result, _ = study
    h, cfg = result.headline, lg.STUDY.quick
    short, long = cfg["epochs"], cfg["long_epochs"]
    # at 10 epochs the median ‖J‖ has grown from its start (p leaving uniform), by 40 it has fallen below it
    assert h[f"seeds: quad median ‖J(p)‖₂ at {short} epochs, mean"] > h["median ‖J(p)‖₂ at init"]
    assert h[f"seeds: quad median ‖J(p)‖₂ at {long} epochs, mean"] < 0.7 * h["median ‖J(p)‖₂ at init"]
    quad_long = h[f"seeds: quad median ‖J(p)‖₂ at {long} epochs, mean"]
    assert h[f"seeds: ce median ‖J(p)‖₂ at {long} epochs, mean"] < quad_long
    assert "has not yet driven p to the vertices" in result.verdict
    assert "does not drive" not in result.verdict
    assert h[f"seeds: quad median ‖J(p)‖₂ at {long} epochs"] in result.verdict


def test_accuracies_are_over_seeds_at_one_shared_rate_and_a_chance_level_run_is_not_a_finding(
        study: tuple[StudyResult, Path]) -> None:
    result, _ = study
    h, cfg = result.headline, lg.STUDY.quick
    seeds = [r for r in result.records if r["part"] == "seed"]
    assert len(seeds) == cfg["seeds"] * (len(lg.LOSSES) + len(lg.LONG))
    assert "one shared learning rate" in result.verdict
    for name in lg.LOSSES:
        assert h[f"seeds: test accuracy {name} at {cfg['epochs']} epochs"] in result.verdict
    # with 40 epochs the quadratic loss closes most of the 10-epoch gap to CE
    gap = {n: h[f"seeds: test accuracy ce at {n} epochs, mean"] - h[f"seeds: test accuracy quad at {n} epochs, mean"]
           for n in (10, 40)}
    assert gap[40] < 0.5 * gap[10]
    chance = {**h, "seeds: test accuracy mse at 10 epochs, mean": 0.11}
    sentence = lg._accuracy_sentence(chance, cfg)
    assert "MSE (sigmoid) after 10 epochs ended at 11.0% accuracy" in sentence and "did not learn" in sentence
    assert h["seeds: test accuracy mse at 10 epochs"] not in sentence


def test_long_epochs_shorter_than_epochs_is_refused() -> None:
    with pytest.raises(ValueError, match="long_epochs=5 < epochs=10"):
        lg.check_config({**lg.STUDY.quick, "long_epochs": 5})


# -- the claims about training rest on every seed ----------------------------------------------------
def _by_seed(result: StudyResult, part: str, loss: str) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for r in result.records:
        if r["part"] == part and r["loss"] == loss:
            out.setdefault(r["seed"], []).append(r)
    return out


def _tenths(values: list[float]) -> np.ndarray:
    k = max(1, len(values) // 10)
    return np.array([np.mean(values[i : i + k]) for i in range(0, len(values) - k + 1, k)])


def test_the_seed_runs_of_seed_zero_repeat_the_probed_runs(study: tuple[StudyResult, Path]) -> None:
    # the seed runs' closed-form medians and batch gradient norms are the probed runs' own numbers on seed 0
    result, _ = study
    cfg = lg.STUDY.quick
    n_layers = cfg["depth"] + 1
    for loss in ("ce", "quad"):
        path = _by_seed(result, "path", loss)[cfg["seed"]]
        assert len(path) == len({r["step"] for r in _probes(result, "z") if r["trajectory"] == loss}) == 11
        for r in path:
            out = [q for q in _probes(result, f"W{n_layers}") if q["trajectory"] == loss and q["step"] == r["step"]]
            assert r["probe_median_ratio"] == pytest.approx(np.median([q["ratio"] for q in out]), rel=1e-9)
            assert r["probe_median_ce_W_out"] == pytest.approx(np.median([q["ce"] for q in out]), rel=1e-9)
            assert r["probe_median_quad_W_out"] == pytest.approx(np.median([q["quad"] for q in out]), rel=1e-9)
        for seed, rows in _by_seed(result, "path", loss).items():  # the path ends at the epochs checkpoint
            end = next(r for r in _by_seed(result, "seed", loss)[seed] if r["epoch"] == cfg["epochs"])
            assert rows[-1]["step"] == end["steps"] and rows[-1]["probe_median_ratio"] == end["probe_median_ratio"]
    for loss in lg.LOSSES:
        steps = next(r["steps"] for r in _by_seed(result, "seed", loss)[cfg["seed"]] if r["epoch"] == cfg["epochs"])
        mine = [r["grad_norm"] for r in _by_seed(result, "seed_grad", loss)[cfg["seed"]] if r["step"] < steps]
        probed = [r["value"] for r in result.records if r["part"] == "train" and r["loss"] == loss
                  and r["quantity"] == "grad_norm" and r["parameter"] == "" and r["layer"] == ""]
        assert mine == pytest.approx(probed, rel=1e-12)


def test_the_ce_trajectory_claims_hold_on_every_seed(study: tuple[StudyResult, Path]) -> None:
    result, _ = study
    h, cfg = result.headline, lg.STUDY.quick
    paths = _by_seed(result, "path", "ce")
    assert sorted(paths) == [0, 1, 2]
    start, peak, end, ce_fall, quad_fall = [], [], [], [], []
    for rows in paths.values():
        ratio = [r["probe_median_ratio"] for r in rows]
        top = int(np.argmax(ratio))
        assert ratio[0] == pytest.approx(0.1, abs=0.01)  # 1/C at uniform p
        assert 0 < top < len(rows) - 1 and ratio[top] > 2 * ratio[0]  # p leaves uniform: J grows, then shrinks
        assert ratio[-1] < 0.5 * ratio[0]
        fall = {k: rows[-1][f"probe_median_{k}_W_out"] / rows[0][f"probe_median_{k}_W_out"] for k in ("ce", "quad")}
        assert fall["quad"] < fall["ce"] < 1  # the quadratic gradient falls further at the same weights
        start.append(ratio[0])
        peak.append(ratio[top])
        end.append(ratio[-1])
        ce_fall.append(fall["ce"])
        quad_fall.append(fall["quad"])
    for values in (start, peak, end, ce_fall, quad_fall):
        assert over_seeds(values) in result.verdict
    assert "vanishes faster as p saturates, on every seed" in result.verdict
    assert "a peak inside the run on every seed" in result.verdict
    p_min = [(rows[0]["probe_median_p_min"], rows[-1]["probe_median_p_min"]) for rows in paths.values()]
    assert all(last < 1e-2 * first for first, last in p_min)
    assert over_seeds([last for _, last in p_min]) in result.verdict
    # where a seed disagrees the sentence says on how many seeds the claim holds
    mixed = lg._ce_trajectory_sentence({**h, "seeds: ce path: quad fell further than CE, per seed": [True, False, True],
                                        "seeds: ce path: peak inside the run, per seed": [False, True, True]}, cfg)
    assert "fell further on 2 of 3 seeds" in mixed and "vanishes faster" not in mixed
    assert "a peak inside the run on 2 of 3 seeds" in mixed


def test_the_quadratic_gradient_grows_then_shrinks_on_every_seed(study: tuple[StudyResult, Path]) -> None:
    result, _ = study
    h, cfg = result.headline, lg.STUDY.quick
    short, long = cfg["epochs"], cfg["long_epochs"]
    grew, shrank = [], []
    for seed, rows in _by_seed(result, "seed_grad", "quad").items():
        steps = {r["epoch"]: r["steps"] for r in _by_seed(result, "seed", "quad")[seed]}
        first = _tenths([r["grad_norm"] for r in rows if r["step"] < steps[short]])
        whole = _tenths([r["grad_norm"] for r in rows if r["step"] < steps[long]])
        assert first[-1] > 1.5 * first[0]  # starts small (J ≈ I/C) and grows over the first epochs
        assert whole[-1] < 0.95 * whole.max()  # and has shrunk from its largest by long_epochs
        grew.append(first[-1] / first[0])
        shrank.append(whole[-1] / whole.max())
    assert len(grew) == cfg["seeds"]
    assert over_seeds(grew) in result.verdict and over_seeds(shrank) in result.verdict
    claim = (f"grows, ending the first {short} epochs larger than it began (on every seed), and by {long} epochs it "
             "has shrunk from its largest (on every seed)")
    assert claim in result.verdict
    key = f"seeds: quad ‖∇L‖ over {short} epochs, last tenth / first tenth, per seed"
    assert h[key] == pytest.approx(grew)
    one_flat = lg._growth_sentence({**h, key: [grew[0], 0.9, grew[2]]}, cfg)
    assert f"ending the first {short} epochs larger than it began (on 2 of 3 seeds)" in one_flat
    assert "grows" not in lg._growth_sentence({**h, key: [0.9, 0.8, 0.95]}, cfg)


def test_the_quad_trajectory_and_the_layers_rest_on_every_seed(study: tuple[StudyResult, Path]) -> None:
    result, _ = study
    cfg = lg.STUDY.quick
    short, long = cfg["epochs"], cfg["long_epochs"]
    for seed, rows in _by_seed(result, "path", "quad").items():
        j = {r["epoch"]: r["probe_median_J_norm"] for r in _by_seed(result, "seed", "quad")[seed]}
        ce_long = next(r["probe_median_J_norm"] for r in _by_seed(result, "seed", "ce")[seed] if r["epoch"] == long)
        assert j[short] > rows[0]["probe_median_J_norm"] > j[long] > ce_long  # up, then down, more slowly than CE
    assert over_seeds([rows[-1]["probe_median_ratio"] for rows in _by_seed(result, "path", "quad").values()]) \
        in result.verdict
    assert "(J grew on every seed), but it does with longer training (J fell below its start by" in result.verdict
    # the per-sample spread of the ratio over the layers after CE training, seed by seed
    spread = [r["layer_spread_median"] for r in result.records
              if r["part"] == "seed" and r["loss"] == "ce" and r["epoch"] == short]
    assert len(spread) == cfg["seeds"] and max(spread) < 1.1
    assert over_seeds(spread) in result.verdict
    # the sweep's largest across-layer factor after training, seed by seed, every one below 1.5
    worst = []
    for seed in range(cfg["seed"], cfg["seed"] + cfg["seeds"]):
        cells: dict[tuple[int, int], list[float]] = {}
        for r in result.records:
            if r["part"] == "sweep" and r["stage"] == "trained" and r["seed"] == seed:
                cells.setdefault((r["depth"], r["width"]), []).append(r["median_ratio"])
        worst.append(max(max(v) / min(v) for v in cells.values()))
    assert max(worst) < 1.5 and over_seeds(worst) in result.verdict
    assert "so, on every seed and (L, m), the loss rescales" in result.verdict


def test_the_quad_and_layers_sentences_say_what_holds_when_the_seeds_or_stages_differ(
        study: tuple[StudyResult, Path]) -> None:
    result, _ = study
    h, cfg = result.headline, lg.STUDY.quick
    short, long = cfg["epochs"], cfg["long_epochs"]
    start = h["seeds: quad path: ‖J(p)‖₂ at step 0, per seed"]
    below = {**h, f"seeds: quad median ‖J(p)‖₂ at {short} epochs, per seed": [0.5 * j for j in start],
             f"seeds: quad median ‖J(p)‖₂ at {long} epochs, per seed": [0.1 * j for j in start]}
    sentence = lg._quad_trajectory_sentence(below, cfg)  # J already below its start after the first epochs
    assert "has not yet" not in sentence and f"and was already below it after {short} epochs" in sentence
    one_stuck = [start[0], *(0.1 * j for j in start[1:])]  # seed 0 back at its start after long_epochs
    stuck = {**below, f"seeds: quad median ‖J(p)‖₂ at {long} epochs, per seed": one_stuck}
    assert f"has not driven p to the vertices, where J vanishes, by {long} epochs on 1 of 3 seeds" in \
        lg._quad_trajectory_sentence(stuck, cfg)
    rough_init = {**h, "sweep init: max over seeds and (L, m) of max/min layer ratio": 1.7}
    sentence = lg._layers_sentence(rough_init, np.array([0.1, 0.2]), cfg)
    assert "so after CE training, on every seed and (L, m), the loss rescales" in sentence
    assert "at initialization some nets' layers differ by up to 1.700" in sentence
    rough = {**rough_init, "sweep trained: max over seeds and (L, m) of max/min layer ratio": 1.6}
    assert "the rescaling is not uniform" in lg._layers_sentence(rough, np.array([0.1, 0.2]), cfg)


def test_the_report_answers_first(study: tuple[StudyResult, Path]) -> None:
    result, out = study
    assert_answers_first(result, out)
    h, text = result.headline, result.answer.text
    assert text.startswith("The quadratic loss's gradient is never more than half the cross-entropy gradient")
    assert h["fraction of samples with ‖∂ℓ_quad/∂z‖ ≤ ½‖∂ℓ_CE/∂z‖"] == 1.0
    slope = "quad-trained: slope of log ‖∂ℓ_{}/∂z‖ on log(1 − p_y), mean"
    assert ("faster than cross-entropy's (like (1 − p_y)²" in text) == (
        h[slope.format("quad")] > 1.5 * h[slope.format("CE")])
    assert ("by nearly the same factor" in text) == (
        h["sweep trained: max over seeds and (L, m) of max/min layer ratio"] < 1.5)
