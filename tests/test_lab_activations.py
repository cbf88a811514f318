"""Activation statistics and gradient histograms on hand-built cases whose answers are known exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import nablanet as nn
from nablanet.lab._tape import run_tape
from nablanet.lab.activations import (
    Histogram,
    activation_rules,
    activation_stats,
    gradient_histograms,
    histogram,
)


def test_relu_dead_and_zero_fractions_of_a_hand_built_layer() -> None:
    lin = nn.Linear(2, 4, dtype=np.float64)
    # unit 0: x₀ (half the samples negative); unit 1: −5 (always off); unit 2: +1 (always on);
    # unit 3: x₁, negative for every sample in this batch (off for the batch)
    lin.weight.data[...] = [[1, 0], [0, 0], [0, 0], [0, 1]]
    lin.bias.data[...] = [0, -5, 1, 0]
    model = nn.Sequential(lin, nn.ReLU())
    x = np.array([[1.0, -1.0], [-1.0, -2.0], [2.0, -0.5], [-2.0, -3.0]])
    stats = activation_stats(model, x)
    q = stats["1"].quantities
    assert q["dead_fraction"] == 2 / 4  # units 1 and 3
    assert q["zero_fraction"] == (2 + 4 + 0 + 4) / 16
    assert "dead_channel_fraction" not in q  # (N, o) output: no channels
    assert "dead_fraction" not in stats["0"].quantities  # Linear: generic quantities only
    assert stats["1"].layer_type == "ReLU" and stats["1"].shape == (4, 4)


def test_relu_dead_units_and_channels_on_conv_feature_maps() -> None:
    conv = nn.Conv2d(1, 3, 1, dtype=np.float64)
    conv.weight.data[...] = np.array([1.0, 0.0, 0.0]).reshape(3, 1, 1, 1)
    conv.bias.data[...] = [0.0, -1.0, 1.0]  # channel 0 copies x, channel 1 is off, channel 2 is on
    model = nn.Sequential(conv, nn.ReLU())
    x = np.random.default_rng(0).uniform(0.5, 2.0, size=(5, 1, 3, 3))
    x[:, 0, 0, 0] *= -1  # position (0, 0) negative for every sample: that unit of channel 0 is dead
    x[0, 0, 1, 1] *= -1  # negative for one sample only: not dead
    q = activation_stats(model, x)["1"].quantities
    assert q["dead_channel_fraction"] == 1 / 3
    assert q["dead_fraction"] == (1 + 9) / 27  # units = channel × position
    assert q["zero_fraction"] == (5 + 1 + 45) / (5 * 27)


def test_saturation_fractions_are_exact() -> None:
    # |σ′(x)| < 0.01 ⇔ |x| > 4.585…;  |tanh′(x)| < 0.01 ⇔ |x| > 2.993…;
    # hardtanh′ = 0 outside (−1, 1) and on the corner x = 1 (PyTorch's convention)
    x = np.array([[0.0, 1.0, -4.0, 4.7], [-5.0, 10.0, 2.5, -3.5]])
    for layer, expected in ((nn.Sigmoid(), 3 / 8), (nn.Tanh(), 5 / 8), (nn.Hardtanh(), 7 / 8)):
        s = activation_stats(nn.Sequential(layer), x)["0"]
        assert s.quantities == {"saturation_fraction": expected}, type(layer).__name__
    # softplus: f′ = σ(x), flat only on the left tail
    s = activation_stats(nn.Sequential(nn.Softplus()), x)["0"]
    assert s.quantities["saturation_fraction"] == 1 / 8  # only x = −5
    # eps moves the threshold: |σ′| < 0.2 ⇔ σ > (1 + √0.2)/2 ⇔ |x| > 0.962…
    s = activation_stats(nn.Sequential(nn.Sigmoid()), x, eps=0.2)["0"]
    assert s.quantities["saturation_fraction"] == 7 / 8


def test_non_saturating_activations_get_generic_quantities_only() -> None:
    x = np.random.default_rng(1).standard_normal((6, 5))
    for layer in (nn.SiLU(), nn.GELU(), nn.LeakyReLU(), nn.Identity()):
        s = activation_stats(nn.Sequential(layer), x)["0"]
        assert s.quantities == {}


def test_generic_mean_std_and_histogram_of_every_layer() -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(12, 4)).double()
    x = np.random.default_rng(2).standard_normal((7, 2, 4, 4))
    stats = activation_stats(model, x, bins=11)
    assert [s.name for s in stats] == ["0", "1", "2", "3"] and len(stats) == 4
    h = x
    for s, layer in zip(stats, model, strict=True):
        h, _ = layer.forward(h)
        assert s.shape == h.shape
        assert s.mean == pytest.approx(np.mean(h), rel=1e-12)
        assert s.std == pytest.approx(np.std(h), rel=1e-12)
        assert s.histogram.counts.shape == (11,) and s.histogram.edges.shape == (12,)
        assert s.histogram.counts.sum() == h.size == s.histogram.total
        np.testing.assert_array_equal(s.histogram.counts, np.histogram(h, bins=11)[0])


def test_tidy_records() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.ReLU(), nn.Linear(4, 2)))
    stats = activation_stats(model, np.random.default_rng(3).standard_normal((5, 3)), bins=4)
    rows = stats.to_records()
    assert {tuple(sorted(r)) for r in rows} == {("layer", "layer_type", "quantity", "value")}
    assert [(r["layer"], r["quantity"]) for r in rows if r["layer"] == "1.0"] == [
        ("1.0", "mean"), ("1.0", "std"), ("1.0", "zero_fraction"), ("1.0", "dead_fraction")
    ]
    with_hist = stats.to_records(histograms=True)
    hist_rows = [r for r in with_hist if r["quantity"] == "histogram"]
    assert len(hist_rows) == 3 * 4
    assert sum(r["value"] for r in hist_rows if r["layer"] == "1.1") == 5 * 2
    with pytest.raises(KeyError, match="layers are"):
        stats["7"]


def test_training_forward_is_the_models_forward() -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.3), nn.Linear(6, 2)))
    x = np.random.default_rng(4).standard_normal((8, 4)).astype(np.float32)
    y, _ = model.forward(x, train=True, rng=5)
    s = activation_stats(model, x, train=True, rng=5)["2.1"]
    assert s.mean == pytest.approx(float(np.mean(y, dtype=np.float64)), rel=1e-12)  # the same masks were drawn


def test_histogram_counts_nonfinite_apart_and_checks_bins() -> None:
    h = histogram(np.array([0.0, 1.0, np.nan, np.inf, 2.0]), bins=4)
    assert h.counts.sum() == 3 and h.n_nonfinite == 2 and h.total == 5
    fixed = histogram(np.arange(10.0), bins=np.linspace(0, 4, 5))
    np.testing.assert_array_equal(fixed.counts, [1, 1, 1, 2])  # the last bin is closed; 5…9 fall outside
    assert fixed.to_records(step=3)[0] == {"step": 3, "bin": 0, "left": 0.0, "right": 1.0, "count": 1}
    for bad in (0, True, [1.0], [2.0, 1.0], "ten"):
        with pytest.raises(ValueError, match="bins="):
            histogram(np.zeros(3), bins=bad)


def test_bad_arguments_say_what_to_pass() -> None:
    model = nn.Sequential(nn.Tanh())
    with pytest.raises(ValueError, match="eps"):
        activation_stats(model, np.zeros((2, 2)), eps=0)
    with pytest.raises(ValueError, match="non-empty batch"):
        activation_stats(model, np.zeros((0, 2)))


def test_a_registered_rule_applies_to_its_type() -> None:
    class Doubler(nn.Identity):
        pass

    @activation_rules.register(Doubler)
    def _max_abs(layer: Any, x: np.ndarray, y: np.ndarray, cache: Any, eps: float) -> dict[str, float]:
        return {"max_abs": float(np.max(np.abs(y)))}

    s = activation_stats(nn.Sequential(Doubler()), np.array([[1.0, -3.0]]))["0"]
    assert s.quantities == {"max_abs": 3.0}


def test_gradient_histograms_from_a_tape() -> None:
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Sequential(nn.Linear(5, 2)))
    x = np.random.default_rng(6).standard_normal((4, 3))
    run = run_tape(model, nn.CrossEntropyLoss(), x, np.array([0, 1, 1, 0]))
    hists = gradient_histograms(run.tape, bins=7)
    assert list(hists) == ["dy/0", "dy/1", "dy/2.0", "grad/0.weight", "grad/0.bias", "grad/2.0.weight", "grad/2.0.bias"]
    sizes = {"dy/0": 20, "dy/1": 20, "dy/2.0": 8, "grad/0.weight": 15, "grad/0.bias": 5, "grad/2.0.weight": 10,
             "grad/2.0.bias": 2}
    for key, h in hists.items():
        assert isinstance(h, Histogram) and h.counts.sum() == sizes[key] and len(h.counts) == 7
    entry = run.tape[2]
    np.testing.assert_array_equal(hists["grad/2.0.weight"].counts, np.histogram(entry.grads["weight"], bins=7)[0])
