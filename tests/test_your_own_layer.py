"""A layer of your own, as an instructor writes one from the documentation (issue 14's cases).

The documented example (docs/your-own-layer.md, a learnable Swish) must work with every public
function; each classic mistake in a VJP must be caught where the user meets it, with a message that
names the layer and the mistake's shape or factor.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nablanet as nn
from nablanet.train import _architecture

F64 = np.float64
DOC = Path(__file__).resolve().parents[1] / "docs" / "your-own-layer.md"


@pytest.fixture(autouse=True)
def _registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test registers its own layers and leaves none behind."""
    monkeypatch.setattr(_architecture, "_registered", {})


def _documented() -> dict[str, Any]:
    """The documented Swish and its curvature rules: the page's example up to its registration call."""
    block = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)[-1]
    code = block[: block.index("nn.lab.rules.register(Swish") ]
    code += "nn.lab.rules.register(Swish, jvp=swish_jvp, vjp_rop=swish_vjp_rop)\n"
    namespace: dict[str, Any] = {"__name__": "documented_swish"}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace


def _data(n: int = 32, i: int = 4, c: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, i)), rng.integers(0, c, n)


def _model(layer: nn.Layer, i: int = 4, h: int = 6, c: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h, dtype=F64, rng=1), layer, nn.Linear(h, c, dtype=F64, rng=2))


# -- the documented layer, end to end ----------------------------------------------------------------------
def test_the_documented_layer_works_with_every_public_function(tmp_path: Path) -> None:
    swish = _documented()["Swish"]
    x, y = _data()
    loss = nn.CrossEntropyLoss()
    model = _model(swish(0.8))
    checked = nn.testing.check_layer(swish(0.8), x[:4], curvature=True)
    assert [c.status for c in checked.checks if c.check == "save and load"] == ["pass"]
    assert nn.gradcheck(model, loss, x[:6], y[:6]).passed
    _, grads = nn.value_and_grad(model, loss, x, y)
    assert grads["1.beta"].shape == ()

    per = nn.lab.per_sample_grads(model, loss, x, y)
    assert per["1.beta"].shape == (32,)
    np.testing.assert_allclose(per["1.beta"].mean(axis=0), grads["1.beta"], rtol=1e-12)
    norms = nn.lab.per_sample_grad_norms(model, loss, x, y)
    np.testing.assert_allclose(norms["1.beta"], np.abs(per["1.beta"]), rtol=1e-12)
    assert nn.lab.grad_norms(model, loss, x, y)["1"] == pytest.approx(abs(float(grads["1.beta"])))
    assert nn.lab.gradient_stats(model, loss, x, y)["1.beta"].batch_size == 32
    assert len(nn.lab.batch_size_sweep(model, loss, x, y, [4, 8], draws=3, seed=0).to_records()) > 0

    jac = nn.jacobian(model, x[:3])
    fd = _fd_jacobian(model, x[:3])
    np.testing.assert_allclose(jac, fd, rtol=1e-6, atol=1e-9)
    assert set(nn.lab.layer_jacobians(model, x[:3])) == {"0", "1", "2"}
    assert set(nn.lab.jacobian_singular_values(model, x[:3], per_layer=True)) == {"0", "1", "2"}
    assert nn.lab.activation_stats(model, x)["1"].layer_type == "Swish"

    v = {k: np.random.default_rng(3).standard_normal(p.shape) for k, p in model.named_parameters()}
    hv = nn.lab.hvp(model, loss, x, y, v)
    np.testing.assert_allclose(_flat(hv), _flat(_fd_hvp(model, loss, x, y, v)), rtol=1e-6, atol=1e-9)
    assert _flat(nn.lab.ggn_vp(model, loss, x, y, v)).shape == _flat(hv).shape
    eig = nn.lab.hessian_eigenvalues(model, loss, x, y, k=2)
    dense = np.linalg.eigvalsh(nn.lab.hessian(model, loss, x, y))
    np.testing.assert_allclose(eig, dense[::-1][:2], rtol=1e-6)
    assert np.isfinite(nn.lab.hutchinson_trace(model, loss, x, y, n_samples=4, seed=0)[0])
    assert nn.lab.step_size_report(model, loss, x, y)["lambda_max"] == pytest.approx(dense[-1], rel=1e-6)
    assert set(nn.lab.newton_step(model, loss, x, y, damping=1.0)) == set(v)

    rec = nn.lab.Recorder(every=1, quantities=list(nn.lab.Recorder.QUANTITIES))
    nn.fit(model, loss, nn.optim.Adam(model.parameters(), lr=0.01), (x, y), epochs=2, batch_size=8, callbacks=[rec])
    rows = rec.to_pandas()
    swish_rows = set(rows[rows.layer == "1"].quantity)
    assert {"activation_mean", "activation_std", "grad_variance_trace", "per_sample_grad_norm_mean"} <= swish_rows
    nn.save(model, tmp_path / "swish.npz")
    np.testing.assert_array_equal(nn.load(tmp_path / "swish.npz")(x), model(x))


def test_the_documented_hvp_equals_pytorchs_double_backward() -> None:
    torch = pytest.importorskip("torch")
    swish = _documented()["Swish"]
    x, y = _data()
    model, loss = _model(swish(0.8)), nn.CrossEntropyLoss()
    v = {k: np.random.default_rng(3).standard_normal(p.shape) for k, p in model.named_parameters()}
    ours = nn.lab.hvp(model, loss, x, y, v)
    params = {k: torch.tensor(p.data, requires_grad=True) for k, p in model.named_parameters()}

    def torch_loss() -> Any:
        h = torch.tensor(x) @ params["0.weight"].T + params["0.bias"]
        h = h * torch.sigmoid(params["1.beta"] * h)
        out = h @ params["2.weight"].T + params["2.bias"]
        return torch.nn.functional.cross_entropy(out, torch.tensor(y))

    g = torch.autograd.grad(torch_loss(), list(params.values()), create_graph=True)
    dot = sum((gi * torch.tensor(v[k])).sum() for gi, k in zip(g, params, strict=True))
    theirs = torch.autograd.grad(dot, list(params.values()))
    for (k, t) in zip(params, theirs, strict=True):
        np.testing.assert_allclose(ours[k], t.numpy(), rtol=1e-8, atol=1e-12, err_msg=k)


def test_the_short_form_gets_per_sample_gradients_and_jacobians_by_nablanets_loops() -> None:
    full = _documented()["Swish"]

    class ShortSwish(nn.Layer):
        """The documented Swish with the short-form VJP, vjp(cache, dy)."""

        def __init__(self, beta: float = 1.0) -> None:
            super().__init__()
            self.beta = nn.Parameter(np.array(beta))

        def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, Any]:
            return full.forward(self, x)

        def vjp(self, cache: Any, dy: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            x, s = cache
            ds = s * (1 - s)
            return dy * (s + self.beta.data * x * ds), {"beta": np.sum(dy * x * x * ds)}

    x, y = _data()
    loss = nn.CrossEntropyLoss()
    short, reference = _model(ShortSwish(0.8)), _model(full(0.8))
    per_short, per_full = (nn.lab.per_sample_grads(m, loss, x, y) for m in (short, reference))
    for k in per_full:
        np.testing.assert_allclose(per_short[k], per_full[k], rtol=1e-12, atol=1e-15, err_msg=k)
    np.testing.assert_allclose(nn.jacobian(short, x[:3]), nn.jacobian(reference, x[:3]), rtol=1e-12)
    stats = nn.lab.gradient_stats(short, loss, x, y)["1.beta"]
    assert stats.batch_size == 32  # not "N=1": the fallback keeps the batch axis
    report = nn.testing.check_layer(ShortSwish(0.8), x[:4])
    assert any(c.check == "VJP form" and "short form" in c.detail for c in report.checks)


def test_a_full_form_vjp_without_need_dx_works_inside_a_model() -> None:
    class NoNeedDx(MyLinear):
        """The form the README once gave, vjp(cache, dy, *, per_sample=False): need_dx is not passed to it."""

        def vjp(self, cache: np.ndarray, dy: np.ndarray, *,  # type: ignore[override]
                per_sample: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            return super().vjp(cache, dy, per_sample=per_sample)

    x, y = _data()
    model = nn.Sequential(NoNeedDx(4, 5), nn.Tanh(), nn.Linear(5, 3, dtype=F64))  # first layer: need_dx=False
    history = nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), (x, y), epochs=2)
    assert history.to_records()[-1]["loss"] < history.to_records()[0]["loss"]
    assert nn.lab.per_sample_grads(model, nn.CrossEntropyLoss(), x, y)["0.weight"].shape == (32, 5, 4)


def test_curvature_lists_every_missing_rule_at_once_and_names_the_one_call() -> None:
    swish = _documented()["Swish"]

    class Bare(swish):  # type: ignore[misc,valid-type]
        """No rules of its own: the documented ones are registered for Swish, which it inherits..."""

    class Bare2(nn.Layer):
        def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, Any]:
            return x * x, x

        def vjp(self, cache: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            return 2 * cache * dy, {}

    x, y = _data()
    model = nn.Sequential(nn.Linear(4, 6, dtype=F64), Bare(), Bare2(), nn.Linear(6, 3, dtype=F64))
    with pytest.raises(NotImplementedError) as info:
        nn.lab.hvp(model, nn.CrossEntropyLoss(), x, y, {k: p.data for k, p in model.named_parameters()})
    msg = str(info.value)
    assert "Bare2 (test_your_own_layer) has no jvp and no vjp_rop rule" in msg
    assert "nn.lab.rules.register(Bare2, jvp=..., vjp_rop=...)" in msg
    assert "Bare " not in msg  # a subclass inherits its base's rules


# -- the classic mistakes, each caught with a message that names the layer and the mistake -------------------
class Square(nn.Layer):
    """y = x², the short form: dx = 2x ⊙ dy."""

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, Any]:
        return x * x, x

    def vjp(self, cache: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return 2 * cache * dy, {}


class MyLinear(nn.Layer):
    """y = x Wᵀ, the full form: dx = dy W, dW = Σₙ dyₙᵀ xₙ (per sample: dyₙᵀ xₙ)."""

    def __init__(self, i: int = 6, o: int = 5) -> None:
        super().__init__()
        self.weight = nn.Parameter(np.random.default_rng(7).standard_normal((o, i)))

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, Any]:
        return x @ self.weight.data.T, x

    def vjp(self, cache: np.ndarray, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        spec = "...no,ni->...noi" if per_sample else "...no,ni->...oi"
        return dy @ self.weight.data, {"weight": np.einsum(spec, dy, cache)}


def _mistake(name: str, base: type, vjp: Any) -> nn.Layer:
    return type(name, (base,), {"vjp": vjp, "__module__": __name__})()


def _full(fn: Any) -> Any:
    def vjp(self: Any, cache: Any, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True) -> Any:
        return fn(self, cache, dy, per_sample)
    return vjp


def _short(fn: Any) -> Any:
    def vjp(self: Any, cache: Any, dy: np.ndarray) -> Any:
        return fn(self, cache, dy)
    return vjp


def _w(self: Any) -> np.ndarray:
    return np.asarray(self.weight.data)


MISTAKES: dict[str, tuple[type, Any, str]] = {
    "forgotten batch sum": (MyLinear, _full(lambda s, x, dy, ps: (dy @ _w(s), {"weight": np.einsum(
        "...no,ni->...noi", dy, x)})), r"dweight of shape \(\d, 5, 6\).*extra leading axis has the batch size N = \d"),
    "transposed gradient": (MyLinear, _full(lambda s, x, dy, ps: (dy @ _w(s), {"weight": x.T @ dy})),
                            r"dweight of shape \(6, 5\).*the right shape transposed"),
    "wrong sign": (MyLinear, _full(lambda s, x, dy, ps: (dy @ _w(s), {"weight": -np.einsum(
        "...no,ni->...noi" if ps else "...no,ni->...oi", dy, x)})), r"dweight: .*-1× the right value: a wrong sign"),
    "missing factor of 2": (Square, _short(lambda s, x, dy: (x * dy, {})), r"dx: .*0\.5× the right value: a missing "
                            "factor of 2"),
    "forgotten dy": (Square, _short(lambda s, x, dy: (2 * x, {})), r"dx: backprop gives the slope .*a forgotten dy"),
    "mean instead of sum": (MyLinear, _full(lambda s, x, dy, ps: (dy @ _w(s), {"weight": np.einsum(
        "...no,ni->...noi" if ps else "...no,ni->...oi", dy, x) / (1 if ps else len(x))})),
        r"dweight: .*1/N = 1/\d of the right value: a mean over the batch where a sum belongs"),
    "per_sample ignored": (MyLinear, _full(lambda s, x, dy, ps: (dy @ _w(s), {"weight": np.einsum(
        "...no,ni->...oi", dy, x)})), r"per_sample=True\) returned dweight of shape \(5, 6\).*batch axis N = \d is "
                                     "missing"),
    "vector axes ignored": (MyLinear, _full(lambda s, x, dy, ps: (dy @ _w(s), {"weight": np.einsum(
        "no,ni->noi" if ps else "no,ni->oi", dy, x)})), r"vector axes: .*promises vector axes"),
    "dx of the wrong shape": (Square, _short(lambda s, x, dy: ((2 * x * dy).T, {})),
                              r"dx of shape \(6, \d\); expected the input's shape \(\d, 6\)"),
    "a missing gradient": (MyLinear, _full(lambda s, x, dy, ps: (dy @ _w(s), {})), r"\(missing: \['weight'\]\)"),
    "a misnamed gradient": (MyLinear, _full(lambda s, x, dy, ps: (dy @ _w(s), {"weights": x.T @ dy})),
                            r"no such parameter: \['weights'\]"),
    "per-sample terms that do not sum": (MyLinear, _full(lambda s, x, dy, ps: (dy @ _w(s), {"weight": np.einsum(
        "...no,ni->...noi" if ps else "...no,ni->...oi", dy, x) * (2 if ps else 1)})),
        r"does not sum over the samples to the batch gradient"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_fit_stops_at_the_first_step_naming_the_layer_and_the_mistake(mistake: str) -> None:
    base, vjp, message = MISTAKES[mistake]
    layer = _mistake(f"Wrong{base.__name__}", base, vjp)
    model = nn.Sequential(nn.Linear(4, 6, dtype=F64, rng=1), layer,
                          nn.Linear(5 if base is MyLinear else 6, 3, dtype=F64, rng=2))
    before = {k: p.data.copy() for k, p in model.named_parameters()}
    x, y = _data()
    with pytest.raises(nn.LayerContractError, match=rf"Wrong{base.__name__}") as info:
        nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), (x, y), epochs=1)
    assert re.search(message, str(info.value), flags=re.S), str(info.value)
    for k, p in model.named_parameters():  # no step was taken with a wrong gradient
        np.testing.assert_array_equal(p.data, before[k])
    with pytest.raises(nn.LayerContractError, match=message):  # the lab stops as well
        nn.lab.per_sample_grads(model, nn.CrossEntropyLoss(), x, y)
    with pytest.raises(nn.LayerContractError, match=message):
        nn.jacobian(model, x[:3])


def test_a_wrong_second_derivative_rule_is_caught_with_its_factor() -> None:
    doc = _documented()

    class Swish2(doc["Swish"]):  # type: ignore[misc,valid-type]
        pass

    nn.lab.rules.register(Swish2, jvp=lambda la, c, xd, td: None if (y := doc["swish_jvp"](la, c, xd, td)) is None
                          else 2 * y, vjp_rop=doc["swish_vjp_rop"])
    x, y = _data()
    report = nn.testing.check_layer(Swish2(0.8), x[:4], curvature=True, raise_exception=False)
    failed = [c for c in report.failures if c.check == "jvp rule"]
    assert failed and "Swish2" in failed[0].detail and "2× the right value" in failed[0].detail
    diagnosis = nn.gradcheck(_model(Swish2(0.8)), nn.CrossEntropyLoss(), x[:6], y[:6]).diagnosis
    assert "layer '1' (Swish2)" in diagnosis and "jvp" in diagnosis
    with pytest.raises(ValueError, match=r"(?s)layer '1' \(Swish2\) disagree.*about 2× the right value"):
        nn.lab.hessian_eigenvalues(_model(Swish2(0.8)), nn.CrossEntropyLoss(), x, y, k=2)  # not wrong numbers


def test_a_transposed_square_weight_gradient_is_named_by_gradcheck() -> None:
    layer = _mistake("SquareWeight", MyLinear, _full(lambda s, x, dy, ps: (dy @ _w(s), {"weight": np.einsum(
        "...no,ni->...io", dy, x)})))
    layer.weight = nn.Parameter(np.random.default_rng(8).standard_normal((6, 6)))
    x, y = _data()
    model = _model(layer)
    diagnosis = nn.gradcheck(model, nn.CrossEntropyLoss(), x[:6], y[:6]).diagnosis
    assert "layer '1' (SquareWeight)" in diagnosis and "transposed" in diagnosis
    with pytest.raises(nn.LayerContractError, match=r"(?s)SquareWeight.*dweight: backprop gives the slope"):
        nn.value_and_grad(model, nn.CrossEntropyLoss(), x, y)


def test_check_layer_fails_a_registered_layer_whose_config_does_not_rebuild_it() -> None:
    @nn.register_layer
    class Gain(nn.Layer):
        def __init__(self, features: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(np.ones(features))

        def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, Any]:
            return x * self.weight.data, x

        def vjp(self, cache: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            return dy * self.weight.data, {"weight": np.sum(dy * cache, axis=0)}

    report = nn.testing.check_layer(Gain(4), _data()[0][:4], raise_exception=False)
    [failed] = report.failures
    assert failed.check == "save and load" and "Gain needs ['features']" in failed.detail


def test_a_straight_through_estimator_opts_out_of_the_derivative_check() -> None:
    class Sign(nn.Layer):
        """y = sign(x), backward as if y = x (straight-through): deliberately not the derivative."""

        exact_vjp = False

        def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, Any]:
            return np.sign(x), None

        def vjp(self, cache: Any, dy: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            return dy, {}

    x, y = _data()
    model = _model(Sign())
    history = nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), (x, y), epochs=2)
    assert len(history.to_records()) == 2


def test_a_layer_that_cannot_run_on_a_few_samples_trains_unchecked_with_a_warning() -> None:
    class Batch32(Square):
        """Works only on batches of 32 (a hard-coded batch size): the check on 4 samples cannot run it."""

        def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, Any]:
            return (x.reshape(32, -1) ** 2).reshape(x.shape), x

    x, y = _data()
    model = _model(Batch32())
    with pytest.warns(RuntimeWarning, match=r"could not check Batch32 .*runs unchecked"):
        nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), (x, y), epochs=1)


def test_a_subclass_of_batch_norm_in_training_mode_is_checked_without_a_warning() -> None:
    my_bn = type("MyBatchNorm", (nn.BatchNorm1d,), {"__module__": __name__})  # per-sample: refused, by design
    x, y = _data()
    model = nn.Sequential(nn.Linear(4, 6, dtype=F64), my_bn(6, dtype=F64), nn.Linear(6, 3, dtype=F64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), (x, y), epochs=1)


def test_the_shape_check_runs_on_every_call_not_only_the_first() -> None:
    class Flaky(MyLinear):
        """Right on a batch of 4 (the spot check's), wrong on larger ones."""

        def vjp(self, cache: np.ndarray, dy: np.ndarray, *, per_sample: bool = False,
                need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            dx, grads = super().vjp(cache, dy, per_sample=per_sample)
            return dx, {"weight": grads["weight"][None]} if len(cache) > 4 else grads

    x, y = _data()
    with pytest.raises(nn.LayerContractError, match=r"layer '1' \(Flaky.*dweight of shape \(1, 5, 6\)"):
        nn.value_and_grad(nn.Sequential(nn.Linear(4, 6, dtype=F64), Flaky(), nn.Linear(5, 3, dtype=F64)),
                          nn.CrossEntropyLoss(), x, y)


# -- helpers ---------------------------------------------------------------------------------------------------
def _flat(d: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([np.ravel(d[k]) for k in sorted(d)])


def _fd_jacobian(model: nn.Layer, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    cols = []
    for j in range(x.shape[1]):
        e = np.zeros_like(x)
        e[:, j] = eps
        cols.append((model(x + e) - model(x - e)) / (2 * eps))
    return np.stack(cols, axis=-1)  # (N, o, i)


def _fd_hvp(model: nn.Layer, loss: nn.Loss, x: np.ndarray, y: np.ndarray, v: dict[str, np.ndarray],
            eps: float = 1e-5) -> dict[str, np.ndarray]:
    params = dict(model.named_parameters())
    saved = {k: p.data.copy() for k, p in params.items()}

    def grad_at(s: float) -> dict[str, np.ndarray]:
        for k, p in params.items():
            p.data[...] = saved[k] + s * v[k]
        return nn.value_and_grad(model, loss, x, y)[1]

    up, down = grad_at(eps), grad_at(-eps)
    for k, p in params.items():
        p.data[...] = saved[k]
    return {k: (up[k] - down[k]) / (2 * eps) for k in params}
