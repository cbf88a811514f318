"""The Recorder callback: what it records during fit, from the tape, and its exports and plots."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import nablanet as nn
from nablanet.lab.recorder import COLUMNS, Recorder


def _problem(seed: int = 0) -> tuple[nn.Sequential, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((64, 5))
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1).astype(int)
    model = nn.Sequential(nn.Linear(5, 8, rng=rng), nn.Tanh(), nn.Linear(8, 3, rng=rng)).double()
    return model, x, y


def test_records_every_kth_step_with_tidy_columns() -> None:
    model, x, y = _problem()
    rec = Recorder(every=3, quantities=["loss", "lr", "grad_norm", "weight_norm", "dy_norm"])
    opt = nn.optim.SGD(model.parameters(), lr=0.1)
    nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=2, batch_size=16, seed=0, callbacks=[rec])
    rows = rec.to_records()
    assert rows and all(tuple(r) == COLUMNS for r in rows)
    assert sorted({r["step"] for r in rows}) == [0, 3, 6]  # 8 steps in all
    assert {r["epoch"] for r in rows} == {0, 1}
    assert {r["quantity"] for r in rows} == {"loss", "lr", "grad_norm", "weight_norm", "dy_norm"}
    steps, lrs = rec.series("lr")
    np.testing.assert_array_equal(steps, [0, 3, 6])
    np.testing.assert_allclose(lrs, 0.1)


def test_grad_norm_rows_equal_the_batch_gradient_of_that_step() -> None:
    # Record every step with SGD(lr=0) so the weights never move: each step's gradient is then the
    # gradient of its batch at the initial weights, which value_and_grad computes independently.
    model, x, y = _problem()
    loss = nn.CrossEntropyLoss()
    rec = Recorder(every=1, quantities=["grad_norm", "loss"])
    nn.fit(model, loss, nn.optim.SGD(model.parameters(), lr=0.0), train=(x, y), epochs=1, batch_size=16, seed=0,
           shuffle=False, callbacks=[rec])
    for step in range(4):
        xb, yb = x[16 * step : 16 * (step + 1)], y[16 * step : 16 * (step + 1)]
        value, grads = nn.value_and_grad(model, loss, xb, yb)
        rows = {(r["layer"], r["parameter"]): r["value"] for r in rec.records
                if r["step"] == step and r["quantity"] == "grad_norm"}
        for name, g in grads.items():
            assert rows[(name.split(".")[0], name)] == pytest.approx(np.linalg.norm(g), rel=1e-12)
        layer0 = np.sqrt(np.sum(grads["0.weight"] ** 2) + np.sum(grads["0.bias"] ** 2))
        assert rows[("0", "")] == pytest.approx(layer0, rel=1e-12)
        total = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
        assert rows[("", "")] == pytest.approx(total, rel=1e-12)
        assert rec.series("loss")[1][step] == pytest.approx(value, rel=1e-12)


def test_update_ratio_is_the_steps_relative_change() -> None:
    model, x, y = _problem()
    w0 = model[0].weight.data.copy()  # type: ignore[union-attr]
    rec = Recorder(every=2, quantities=["update_ratio"])
    opt = nn.optim.SGD(model.parameters(), lr=0.5)
    snapshots: list[np.ndarray] = []
    probe = nn.callbacks.LambdaCallback(on_batch_end=lambda step, logs, tape: snapshots.append(
        model[0].weight.data.copy()))  # type: ignore[union-attr]
    nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=1, batch_size=16, seed=0, callbacks=[rec, probe])
    steps, ratios = rec.series("update_ratio", parameter="0.weight")
    np.testing.assert_array_equal(steps, [0, 2])
    before = [w0, snapshots[1]]  # weights before steps 0 and 2
    for k, s in enumerate(steps):
        expected = np.linalg.norm(snapshots[s] - before[k]) / np.linalg.norm(before[k])
        assert ratios[k] == pytest.approx(expected, rel=1e-12)


def test_csv_and_pandas_exports(tmp_path: Path) -> None:
    model, x, y = _problem()
    rec = Recorder(every=2, quantities=["loss", "grad_norm"])
    nn.fit(model, nn.CrossEntropyLoss(), nn.optim.Adam(model.parameters()), train=(x, y), epochs=1, batch_size=16,
           callbacks=[rec])
    path = rec.to_csv(tmp_path / "records.csv")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(rec.records) and tuple(rows[0]) == COLUMNS
    pd = pytest.importorskip("pandas")
    df = rec.to_pandas()
    assert isinstance(df, pd.DataFrame) and list(df.columns) == list(COLUMNS) and len(df) == len(rows)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="every"):
        Recorder(every=0)
    with pytest.raises(ValueError, match="unknown"):
        Recorder(quantities=["grad_nrom"])


def test_plots_write_pngs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from nablanet.lab import plots

    model, x, y = _problem()
    rec = Recorder(every=1, quantities=["grad_norm"])
    nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), train=(x, y), epochs=1,
           batch_size=16, callbacks=[rec])
    plots.plot_quantity(rec, "grad_norm", path=tmp_path / "a.png")
    plots.plot_quantity(rec, "grad_norm", by="layer", path=tmp_path / "b.png")
    counts, edges = np.histogram(x, bins=10)
    plots.plot_histograms({"x": (counts, edges)}, path=tmp_path / "c.png")
    plots.plot_spectrum({"0": [3.0, 1.0, 2.0]}, path=tmp_path / "d.png")
    for name in "abcd":
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no records"):
        plots.plot_quantity(rec, "loss")


def test_activation_quantities_come_from_the_tape() -> None:
    model, x, y = _problem()
    model.append(nn.Sigmoid())  # a saturating output layer (MSE on one-hot targets)
    model[2].weight.data *= 50  # type: ignore[union-attr]  # push the sigmoid's inputs onto its tails
    d = np.eye(3)[y]
    rec = Recorder(every=100, quantities=["activations"], eps=1e-3)
    nn.fit(model, nn.MSELoss(), nn.optim.SGD(model.parameters(), lr=0.0), train=(x, d), epochs=1, batch_size=64,
           shuffle=False, callbacks=[rec])
    rows = {(r["layer"], r["quantity"]): r["value"] for r in rec.records}
    z = model[:3](x)
    s = 1 / (1 + np.exp(-z))
    assert rows[("3", "saturation_fraction")] == pytest.approx(np.mean(s * (1 - s) < 1e-3))
    assert rows[("3", "activation_mean")] == pytest.approx(s.mean(), rel=1e-12)
    h = np.tanh(model[0](x))
    assert rows[("1", "activation_std")] == pytest.approx(h.std(), rel=1e-12)


def test_per_sample_quantities_match_the_on_demand_instruments() -> None:
    from nablanet.lab.per_sample import per_sample_grad_norms
    from nablanet.lab.variance import gradient_stats

    model, x, y = _problem()
    loss = nn.CrossEntropyLoss()
    rec = Recorder(every=2, quantities=["per_sample_grad_norm", "grad_variance"])
    nn.fit(model, loss, nn.optim.SGD(model.parameters(), lr=0.0), train=(x, y), epochs=1, batch_size=16,
           shuffle=False, callbacks=[rec])
    for step in (0, 2):
        xb, yb = x[16 * step : 16 * (step + 1)], y[16 * step : 16 * (step + 1)]
        norms = per_sample_grad_norms(model, loss, xb, yb)
        rows = {(r["parameter"], r["quantity"]): r["value"] for r in rec.records if r["step"] == step}
        for name, v in norms.items():
            assert rows[(name, "per_sample_grad_norm_mean")] == pytest.approx(v.mean(), rel=1e-12)
            assert rows[(name, "per_sample_grad_norm_max")] == pytest.approx(v.max(), rel=1e-12)
        stats = gradient_stats(model, loss, xb, yb)
        assert rows[("", "noise_scale")] == pytest.approx(stats.total.noise_scale, rel=1e-8)
        for name, s in stats.params.items():
            assert rows[(name, "grad_variance_trace")] == pytest.approx(s.trace_cov, rel=1e-8)
