"""Loss landscapes: interpolation end points, weight restoration, filter normalization, an exact quadratic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nablanet as nn
from nablanet.lab.landscape import LossSurface, interpolate, loss_surface_2d, plot_surface, random_directions


def _classifier(seed: int = 0) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, dtype=np.float64, rng=rng), nn.BatchNorm2d(3, dtype=np.float64), nn.ReLU(), nn.Flatten(),
        nn.Linear(12, 3, dtype=np.float64, rng=rng),
    )


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.standard_normal((6, 1, 4, 4)), np.array([0, 1, 2, 0, 1, 2])


def _loss_at(model: nn.Layer, loss: nn.Loss, x: np.ndarray, t: np.ndarray, state: dict[str, np.ndarray]) -> float:
    saved = model.state_dict()
    model.load_state_dict(state)
    y, _ = model.forward(x, train=False)
    model.load_state_dict(saved)
    return float(loss(y, t))


def _same_state(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_interpolation_ends_are_the_two_losses_and_weights_are_restored() -> None:
    model = _classifier()
    x, t = _data()
    loss = nn.CrossEntropyLoss()
    theta_a = model.state_dict()
    theta_b = _classifier(seed=5).state_dict()
    theta_b["1.running_mean"] += 0.3  # buffers move along the line too
    before = model.state_dict()
    rows = interpolate(model, loss, x, t, theta_a, theta_b)
    assert _same_state(model.state_dict(), before)
    alphas = [r["alpha"] for r in rows]
    assert len(rows) == 25 and alphas[0] == -0.5 and alphas[-1] == 1.5
    at = {r["alpha"]: r for r in rows}
    assert 0.0 in at and 1.0 in at  # the default grid hits both ends exactly
    assert at[0.0]["loss"] == pytest.approx(_loss_at(model, loss, x, t, theta_a), rel=1e-13)
    assert at[1.0]["loss"] == pytest.approx(_loss_at(model, loss, x, t, theta_b), rel=1e-13)
    assert all(set(r) == {"alpha", "loss", "accuracy"} for r in rows)
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    # the midpoint is the average of the weights
    mid = interpolate(model, loss, x, t, theta_a, theta_b, alphas=[0.5])[0]
    half = {k: 0.5 * (theta_a[k] + theta_b[k]) if v.dtype.kind == "f" else v for k, v in theta_a.items()}
    assert mid["loss"] == pytest.approx(_loss_at(model, loss, x, t, half), rel=1e-13)


def test_interpolation_accuracy_only_for_classification() -> None:
    model = nn.Sequential(nn.Linear(3, 2)).double()
    x = np.random.default_rng(2).standard_normal((4, 3))
    a = model.state_dict()
    b = {k: v + 1.0 for k, v in a.items()}
    rows = interpolate(model, nn.MSELoss(), x, np.zeros((4, 2)), a, b, alphas=np.linspace(0, 1, 3))
    assert [set(r) for r in rows] == [{"alpha", "loss"}] * 3
    assert rows[0]["loss"] == pytest.approx(float(np.mean(model(x) ** 2)), rel=1e-13)


class _FailingLoss(nn.MSELoss):
    """Raises on its third evaluation, in the middle of a scan."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, input: Any, target: Any) -> Any:
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("boom")
        return super().forward(input, target)


def test_weights_are_restored_when_the_loss_raises() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).double()
    x = np.random.default_rng(3).standard_normal((4, 3))
    before = model.state_dict()
    other = {k: (v + 1.0 if v.dtype.kind == "f" else v) for k, v in before.items()}
    with pytest.raises(RuntimeError, match="boom"):
        interpolate(model, _FailingLoss(), x, np.zeros((4, 2)), before, other)
    assert _same_state(model.state_dict(), before)
    with pytest.raises(RuntimeError, match="boom"):
        loss_surface_2d(model, _FailingLoss(), x, np.zeros((4, 2)), steps=3)
    assert _same_state(model.state_dict(), before)


def test_filter_normalized_directions() -> None:
    model = _classifier()
    d = random_directions(model, seed=3)
    params = dict(model.named_parameters())
    assert list(d) == list(params)
    for name in ("0.weight", "4.weight"):  # conv (3, 1, 3, 3): filter = output channel; linear (3, 12): row
        w = params[name].data
        np.testing.assert_allclose(
            np.linalg.norm(d[name].reshape(w.shape[0], -1), axis=1), np.linalg.norm(w.reshape(w.shape[0], -1), axis=1),
            rtol=1e-13,
        )
        assert d[name].dtype == np.float64 and d[name].shape == w.shape
    for name in ("0.bias", "1.weight", "1.bias", "4.bias"):  # biases and batch-norm parameters stay put
        assert np.count_nonzero(d[name]) == 0
    again = random_directions(model, seed=3)
    assert all(np.array_equal(d[k], again[k]) for k in d)
    other = random_directions(model, seed=4)
    assert not np.array_equal(d["0.weight"], other["0.weight"])


def test_layer_none_and_kept_bias_directions() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2)).double()
    raw = random_directions(model, seed=7, normalization="none", ignore_biases_and_norm=False)
    gen = np.random.default_rng(7)
    for name, p in model.named_parameters():  # one draw per parameter, in named_parameters order
        np.testing.assert_array_equal(raw[name], gen.standard_normal(p.shape))
    layer = random_directions(model, seed=7, normalization="layer")
    w = model[0].weight.data
    assert np.linalg.norm(layer["0.weight"]) == pytest.approx(np.linalg.norm(w), rel=1e-13)
    np.testing.assert_allclose(layer["0.weight"] / np.linalg.norm(w), raw["0.weight"] / np.linalg.norm(raw["0.weight"]))
    assert np.count_nonzero(layer["1.weight"]) == 0  # LayerNorm ignored by default
    kept = random_directions(model, seed=7, ignore_biases_and_norm=False)
    np.testing.assert_array_equal(kept["0.bias"], model[0].bias.data)  # Li et al.'s code: d = θ for 1-D params
    np.testing.assert_array_equal(kept["1.weight"], model[1].weight.data)
    with pytest.raises(ValueError, match="'filter'"):
        random_directions(model, normalization="row")


def test_quadratic_model_surface_is_the_analytic_quadratic_form() -> None:
    rng = np.random.default_rng(8)
    n, i = 10, 4
    model = nn.Sequential(nn.Linear(i, 1)).double()
    x = rng.standard_normal((n, i))
    t = rng.standard_normal((n, 1))
    # L(w, b) = (1/N) Σₙ ½ (xₙ·w + b − tₙ)²: with A = [X, 1], θ = (w, b), r = Aθ − t:
    # L(θ + δ) = L(θ) + gᵀδ + ½ δᵀ H δ,  g = Aᵀr / N,  H = AᵀA / N
    d1 = {"0.weight": rng.standard_normal((1, i)), "0.bias": rng.standard_normal(1)}
    d2 = {"0.weight": rng.standard_normal((1, i))}  # the bias does not move along d₂
    before = model.state_dict()
    surf = loss_surface_2d(model, nn.QuadraticLoss(), x, t, directions=(d1, d2), span=0.7, steps=9)
    assert _same_state(model.state_dict(), before)
    assert isinstance(surf, LossSurface) and surf.loss.shape == (9, 9) and surf.accuracy is None
    a_mat = np.hstack([x, np.ones((n, 1))])
    theta = np.concatenate([model[0].weight.data.ravel(), model[0].bias.data])
    r = a_mat @ theta - t.ravel()
    l0, g, h = 0.5 * r @ r / n, a_mat.T @ r / n, a_mat.T @ a_mat / n
    v1 = np.concatenate([d1["0.weight"].ravel(), d1["0.bias"]])
    v2 = np.concatenate([d2["0.weight"].ravel(), [0.0]])
    for ii, a in enumerate(surf.alphas):
        for jj, b in enumerate(surf.betas):
            delta = a * v1 + b * v2
            assert surf.loss[ii, jj] == pytest.approx(l0 + g @ delta + 0.5 * delta @ h @ delta, rel=1e-12)
    np.testing.assert_allclose(surf.alphas, np.linspace(-0.7, 0.7, 9))
    rows = surf.to_records()
    assert len(rows) == 81 and set(rows[0]) == {"alpha", "beta", "loss"}
    assert rows[1] == {"alpha": surf.alphas[0], "beta": surf.betas[1], "loss": surf.loss[0, 1]}


def test_random_surface_centre_is_the_current_loss_and_seed_repeats() -> None:
    model = _classifier()
    x, t = _data()
    loss = nn.CrossEntropyLoss()
    before = model.state_dict()
    surf = loss_surface_2d(model, loss, x, t, steps=5, seed=11)
    assert _same_state(model.state_dict(), before)
    assert surf.alphas[2] == 0.0 and surf.betas[2] == 0.0
    assert surf.loss[2, 2] == pytest.approx(_loss_at(model, loss, x, t, before), rel=1e-13)
    assert surf.accuracy is not None and surf.accuracy.shape == (5, 5)
    d1, d2 = surf.directions
    assert not np.array_equal(d1["0.weight"], d2["0.weight"])
    again = loss_surface_2d(model, loss, x, t, steps=5, seed=11)
    np.testing.assert_array_equal(again.loss, surf.loss)
    np.testing.assert_array_equal(surf.to_records()[0]["accuracy"], surf.accuracy[0, 0])


def test_plot_surface_writes_a_file(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    model = nn.Sequential(nn.Linear(2, 2)).double()
    surf = loss_surface_2d(model, nn.MSELoss(), np.eye(2), np.zeros((2, 2)), steps=5)
    out = plot_surface(surf, tmp_path / "surface.png", levels=8, title="test")
    assert out == tmp_path / "surface.png" and out.stat().st_size > 0


def test_bad_arguments_say_what_to_pass() -> None:
    model = nn.Sequential(nn.Linear(2, 2)).double()
    x, t = np.eye(2), np.zeros((2, 2))
    sd = model.state_dict()
    with pytest.raises(ValueError, match="steps"):
        interpolate(model, nn.MSELoss(), x, t, sd, sd, steps=1)
    with pytest.raises(ValueError, match="reduction='none'"):
        interpolate(model, nn.MSELoss(reduction="none"), x, t, sd, sd)
    with pytest.raises(KeyError, match="lacks"):
        interpolate(model, nn.MSELoss(), x, t, {**sd, "9.weight": np.zeros(1)}, sd)
    with pytest.raises(KeyError, match="same keys"):
        interpolate(model, nn.MSELoss(), x, t, sd, {"0.weight": sd["0.weight"]})
    with pytest.raises(ValueError, match="shape"):
        interpolate(model, nn.MSELoss(), x, t, sd, {**sd, "0.bias": np.zeros(3)})
    with pytest.raises(ValueError, match="span"):
        loss_surface_2d(model, nn.MSELoss(), x, t, span=0)
    with pytest.raises(KeyError, match="not a parameter"):
        loss_surface_2d(model, nn.MSELoss(), x, t, directions=({"0.w": np.zeros(1)}, {}))
    with pytest.raises(TypeError, match="pair"):
        loss_surface_2d(model, nn.MSELoss(), x, t, directions=random_directions(model))  # type: ignore[arg-type]
