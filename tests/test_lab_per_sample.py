"""Per-sample gradients, their norms and batch-gradient norms: PyTorch parity (torch.func.vmap of
torch.func.grad on the same weights), closed forms against materialized gradients, the mean/sum
convention, errors, and a hand-worked example."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import rel_err

import nablanet as nn
import nablanet.layers.conv as conv_module
from nablanet.lab import per_sample as ps
from nablanet.lab._tape import per_sample_factor, run_tape
from nablanet.lab.grad_norms import grad_norms, grad_norms_from_tape
from nablanet.lab.per_sample import (
    layer_norms,
    per_sample_grad_norms,
    per_sample_grad_norms_from_tape,
    per_sample_grads,
    per_sample_grads_from_tape,
)
from nablanet.lab.registry import Registry
from nablanet.lab.rules import conv as conv_rules
from nablanet.lab.rules import linear as linear_rules
from nablanet.lab.rules.conv import conv_uses_gram
from nablanet.lab.rules.linear import linear_uses_gram
from nablanet.parameter import Parameter

TOL = 1e-10

Spec = list[tuple[str, dict[str, Any]]]


def _lin(i: int, o: int, bias: bool = True) -> tuple[str, dict[str, Any]]:
    return ("Linear", {"in_features": i, "out_features": o, "bias": bias})


def _mlp(i: int, h: int, o: int, act: str, bias: bool = True) -> Spec:
    return [_lin(i, h, bias), (act, {}), _lin(h, o, bias)]

# (model: layer class names and PyTorch-style arguments; "in_features": -1 is filled in from the
#  shape flowing into that Linear), input shape, loss ("ce", "mse", "quad"), reduction
CASES: dict[str, tuple[Spec, tuple[int, ...], str, str]] = {
    "mlp-tanh-ce-mean": (
        _mlp(5, 7, 3, "Tanh"),
        (6, 5), "ce", "mean"),
    "mlp-relu-nobias-ce-sum": (
        _mlp(5, 8, 3, "ReLU", bias=False),
        (6, 5), "ce", "sum"),
    "mlp-sigmoid-mse-mean": (
        _mlp(5, 6, 4, "Sigmoid"),
        (7, 5), "mse", "mean"),
    "mlp-tanh-quad-mean": (
        _mlp(4, 6, 2, "Tanh"),
        (5, 4), "quad", "mean"),
    "mlp-relu-quad-sum": (
        _mlp(4, 6, 2, "ReLU"),
        (5, 4), "quad", "sum"),
    # x (N, R, i): the first Linear takes the Gram branch (R(i+o) = 42 < i·o = 48), the second materializes
    "linear3d-gram-mse-mean": (
        _mlp(8, 6, 2, "Tanh"),
        (5, 3, 8), "mse", "mean"),
    "linear3d-materialize-quad-sum": (
        [_lin(3, 2), ("Sigmoid", {}), _lin(2, 3, bias=False)],
        (4, 6, 3), "quad", "sum"),
    "conv2d-stride-pad-maxpool-ce-mean": (
        [("Conv2d", {"in_channels": 2, "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1}), ("ReLU", {}),
         ("MaxPool2d", {"kernel_size": 2}), ("Flatten", {}), ("Linear", {"in_features": -1, "out_features": 3})],
        (4, 2, 9, 8), "ce", "mean"),
    "conv2d-groups-ce-sum": (
        [("Conv2d", {"in_channels": 4, "out_channels": 6, "kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 0),
                     "groups": 2}), ("Tanh", {}),
         ("Conv2d", {"in_channels": 6, "out_channels": 4, "kernel_size": 2, "groups": 2, "bias": False}),
         ("Flatten", {}), ("Linear", {"in_features": -1, "out_features": 3})],
        (3, 4, 8, 7), "ce", "sum"),
    "conv2d-gram-mse-mean": (  # P = 4 positions, K = 72, O = 16: the Gram branch
        [("Conv2d", {"in_channels": 8, "out_channels": 16, "kernel_size": 3}), ("Tanh", {}),
         ("Conv2d", {"in_channels": 16, "out_channels": 16, "kernel_size": 2, "groups": 2}), ("Flatten", {}),
         ("Linear", {"in_features": -1, "out_features": 3})],
        (3, 8, 4, 4), "mse", "mean"),
    "conv1d-groups-maxpool-ce-sum": (
        [("Conv1d", {"in_channels": 3, "out_channels": 6, "kernel_size": 5, "stride": 2, "padding": 1, "groups": 3}),
         ("ReLU", {}), ("MaxPool1d", {"kernel_size": 2}),
         ("Conv1d", {"in_channels": 6, "out_channels": 4, "kernel_size": 3, "padding": "same"}), ("Flatten", {}),
         ("Linear", {"in_features": -1, "out_features": 3})],
        (4, 3, 20), "ce", "sum"),
    "conv1d-gram-quad-mean": (  # P = 3, K = 48, O = 12: Gram
        [("Conv1d", {"in_channels": 16, "out_channels": 12, "kernel_size": 3, "stride": 2}), ("Sigmoid", {}),
         ("Flatten", {}), ("Linear", {"in_features": -1, "out_features": 2})],
        (4, 16, 7), "quad", "mean"),
    "layernorm-ce-mean": (
        [("Linear", {"in_features": 5, "out_features": 6}), ("LayerNorm", {"normalized_shape": 6}), ("Tanh", {}),
         ("Linear", {"in_features": 6, "out_features": 3})],
        (6, 5), "ce", "mean"),
    "conv-layernorm-mse-sum": (
        [("Conv2d", {"in_channels": 2, "out_channels": 3, "kernel_size": 3}),
         ("LayerNorm", {"normalized_shape": (3, 4, 4)}), ("Tanh", {}), ("Flatten", {}),
         ("Linear", {"in_features": -1, "out_features": 2})],
        (3, 2, 6, 6), "mse", "sum"),
    "batchnorm1d-eval-ce-mean": (
        [("Linear", {"in_features": 5, "out_features": 6}), ("BatchNorm1d", {"num_features": 6}), ("ReLU", {}),
         ("Linear", {"in_features": 6, "out_features": 3})],
        (6, 5), "ce", "mean"),
    "batchnorm2d-eval-quad-mean": (
        [("Conv2d", {"in_channels": 2, "out_channels": 4, "kernel_size": 3, "padding": 1}),
         ("BatchNorm2d", {"num_features": 4}), ("ReLU", {}), ("MaxPool2d", {"kernel_size": 2}), ("Flatten", {}),
         ("Linear", {"in_features": -1, "out_features": 2})],
        (4, 2, 6, 6), "quad", "mean"),
}


def _torch_model(spec: Spec, shape: tuple[int, ...]) -> tuple[Any, Spec]:
    """The PyTorch model in float64 (eval mode, random running statistics) and the spec with every
    ``in_features=-1`` resolved."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    mods: list[Any] = []
    resolved: Spec = []
    h = torch.zeros(shape, dtype=torch.float64)
    for name, kw in spec:
        kw = dict(kw)
        if kw.get("in_features") == -1:
            kw["in_features"] = h.shape[-1]
        mod = getattr(torch.nn, name)(**kw).double()
        if name.startswith("BatchNorm"):
            with torch.no_grad():
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
        if name == "LayerNorm":
            with torch.no_grad():
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
        mod.eval()
        with torch.no_grad():
            h = mod(h)
        mods.append(mod)
        resolved.append((name, kw))
    return torch.nn.Sequential(*mods).eval(), resolved


def _models(spec: Spec, shape: tuple[int, ...]) -> tuple[Any, nn.Sequential]:
    """The same model in PyTorch and nablanet (float64), nablanet loaded from PyTorch's state_dict."""
    tmodel, resolved = _torch_model(spec, shape)
    model = nn.Sequential(*(getattr(nn, name)(**kw) for name, kw in resolved))
    model.to(np.float64)
    model.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})
    return tmodel, model


def _loss(kind: str, reduction: str) -> nn.Loss:
    return {"ce": nn.CrossEntropyLoss, "mse": nn.MSELoss, "quad": nn.QuadraticLoss}[kind](reduction=reduction)


def _data(model: nn.Layer, shape: tuple[int, ...], kind: str, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    y, _ = model.forward(x, train=False)  # eval mode: leaves batch norm's running statistics alone
    if kind == "ce":
        return x, np.asarray(rng.integers(0, y.shape[1], y.shape[0]))
    return x, rng.standard_normal(y.shape)


def _torch_per_sample(tmodel: Any, kind: str, reduction: str, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    """vmap(grad(ℓ)) with ℓ the PyTorch loss of a batch holding one sample (our ℓₙ)."""
    torch = pytest.importorskip("torch")
    functional_call = torch.func.functional_call
    grad = torch.func.grad
    vmap = torch.func.vmap

    f = torch.nn.functional
    params = {k: v.detach() for k, v in tmodel.named_parameters()}
    buffers = {k: v.detach() for k, v in tmodel.named_buffers()}

    def loss_one(p: dict[str, Any], xn: Any, tn: Any) -> Any:
        out = functional_call(tmodel, (p, buffers), (xn.unsqueeze(0),))
        tn = tn.unsqueeze(0)
        if kind == "ce":
            return f.cross_entropy(out, tn, reduction=reduction)
        if kind == "mse":
            return f.mse_loss(out, tn, reduction=reduction)
        return 0.5 * ((out - tn) ** 2).sum()  # ½‖yₙ − dₙ‖², the same for a batch of one under mean or sum

    g = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, torch.from_numpy(x), torch.from_numpy(t))
    return {k: v.numpy() for k, v in g.items()}


def _torch_norms(g: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.linalg.norm(v.reshape(v.shape[0], -1), axis=1) for k, v in g.items()}


@pytest.fixture
def float64() -> None:
    nn.set_default_dtype(np.float64)


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("case", list(CASES))
def test_per_sample_grads_match_torch_vmap(case: str) -> None:
    spec, shape, kind, reduction = CASES[case]
    tmodel, model = _models(spec, shape)
    loss = _loss(kind, reduction)
    x, t = _data(model, shape, kind)
    ref = _torch_per_sample(tmodel, kind, reduction, x, t)
    ours = per_sample_grads(model, loss, x, t)
    assert set(ours) == set(ref)
    for name, g in ours.items():
        assert g.shape == ref[name].shape
        assert rel_err(g, ref[name]) <= TOL, name


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("case", list(CASES))
def test_per_sample_grad_norms_match_torch_vmap(case: str) -> None:
    spec, shape, kind, reduction = CASES[case]
    tmodel, model = _models(spec, shape)
    loss = _loss(kind, reduction)
    x, t = _data(model, shape, kind)
    ref = _torch_norms(_torch_per_sample(tmodel, kind, reduction, x, t))
    ours = per_sample_grad_norms(model, loss, x, t)
    assert set(ours) == set(ref)
    for name, v in ours.items():
        assert v.shape == (shape[0],)
        assert rel_err(v, ref[name]) <= TOL, name
    # per layer and total: √(Σ squares) of PyTorch's norms
    combined = layer_norms(ours)
    for key, v in combined.items():
        names = [k for k in ref if key == "total" or k.rpartition(".")[0] == key]
        assert rel_err(v, np.sqrt(sum(ref[k] ** 2 for k in names))) <= TOL, key


def _materialized_norms(model: nn.Layer, loss: nn.Loss, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    grads = per_sample_grads(model, loss, x, t)
    return {k: np.linalg.norm(g.reshape(g.shape[0], -1), axis=1) for k, g in grads.items()}


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("block_bytes", [conv_module._BLOCK_BYTES, 1])
@pytest.mark.parametrize("case", [c for c in CASES if "conv" in c or "linear3d" in c])
def test_closed_forms_equal_materialized_norms(case: str, block_bytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conv_module, "_BLOCK_BYTES", block_bytes)
    spec, shape, kind, reduction = CASES[case]
    _, model = _models(spec, shape)
    loss = _loss(kind, reduction)
    x, t = _data(model, shape, kind)
    if block_bytes == 1:  # one block per sample
        run = run_tape(model, loss, x, t)
        assert all(len(e.cache.starts) - 1 == shape[0] for e in run.tape if isinstance(e.layer, nn.Conv2d | nn.Conv1d))
    ref = _materialized_norms(model, loss, x, t)
    for branch in (True, False):  # force each branch of the convolution and Linear rules on every geometry
        monkeypatch.setattr(conv_rules, "conv_uses_gram", lambda *_, b=branch: b)
        monkeypatch.setattr(linear_rules, "linear_uses_gram", lambda *_, b=branch: b)
        ours = per_sample_grad_norms(model, loss, x, t)
        for name, v in ours.items():
            assert rel_err(v, ref[name]) <= 1e-12, (name, branch)


def test_branch_choice_by_cost() -> None:
    # Conv2d(8, 16, 3) on 4×4: P = 4, O_g = 16, K_g = 72:  Gram 16·88 = 1408 < materialize 4·16·72 = 4608
    assert conv_uses_gram(4, 16, 72)
    # Conv2d(1, 2, 3) on 8×8: P = 36, O_g = 2, K_g = 9:  Gram 1296·11 > materialize 36·18
    assert not conv_uses_gram(36, 2, 9)
    # Linear on (N, R, i): Gram R²(i + o) vs materialize R·i·o
    assert linear_uses_gram(3, 8, 6)
    assert not linear_uses_gram(6, 3, 2)


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("case", ["mlp-tanh-ce-mean", "conv2d-groups-ce-sum", "batchnorm2d-eval-quad-mean",
                                  "conv-layernorm-mse-sum", "linear3d-gram-mse-mean"])
def test_per_sample_grads_average_to_batch_gradient(case: str, reduction: str) -> None:
    spec, shape, kind, _ = CASES[case]
    _, model = _models(spec, shape)
    loss = _loss(kind, reduction)
    x, t = _data(model, shape, kind)
    _, batch = nn.value_and_grad(model, loss, x, t, train=False)
    per = per_sample_grads(model, loss, x, t)
    for name, g in batch.items():
        combined = per[name].mean(axis=0) if reduction == "mean" else per[name].sum(axis=0)
        assert rel_err(combined, g) <= 1e-12, name


@pytest.mark.usefixtures("float64")
def test_tape_functions_read_a_training_tape() -> None:
    """What a Recorder gets: the tape of an ordinary backward, and the factor N (mean) or 1 (sum)."""
    spec, shape, kind, reduction = CASES["mlp-tanh-ce-mean"]
    _, model = _models(spec, shape)
    loss = _loss(kind, reduction)
    x, t = _data(model, shape, kind)
    y, caches = model.forward(x, train=True)
    _, lcache = loss.forward(y, t)
    tape = model.backward(caches, loss.vjp(lcache))
    factor = per_sample_factor(loss, shape[0])
    assert factor == shape[0]
    grads = per_sample_grads_from_tape(tape, factor)
    norms = per_sample_grad_norms_from_tape(tape, factor)
    ref = per_sample_grads(model, loss, x, t)
    for name in ref:
        assert rel_err(grads[name], ref[name]) <= 1e-13
        assert rel_err(norms[name], np.linalg.norm(ref[name].reshape(shape[0], -1), axis=1)) <= 1e-13
    params = dict(model.named_parameters())
    for name in ref:  # backward accumulated the batch gradient into .grad: the mean of the per-sample ones
        g = params[name].grad
        assert g is not None
        assert rel_err(grads[name].mean(axis=0), g) <= 1e-12


def test_hand_worked_linear_example() -> None:
    # y = W x + b with W = [[1, 2]], b = [0]; samples x₁ = (1, 0), x₂ = (0, 1); targets 0; ℓₙ = ½ yₙ².
    # y₁ = 1, y₂ = 2, so ∂ℓₙ/∂yₙ = yₙ = 1, 2 and dWₙ = yₙ xₙ: dW₁ = (1, 0), dW₂ = (0, 2); dbₙ = yₙ.
    # Norms: ‖dW₁‖ = 1·‖x₁‖ = 1, ‖dW₂‖ = 2·‖x₂‖ = 2; per layer √(1 + 1) = √2 and √(4 + 4) = √8.
    # Under reduction="mean" the batch gradient is their mean: dW = (0.5, 1), db = 1.5.
    lin = nn.Linear(2, 1, dtype=np.float64)
    lin.weight.data[...] = [[1.0, 2.0]]
    lin.bias.data[...] = 0.0  # type: ignore[union-attr]
    model = nn.Sequential(lin)
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    d = np.zeros((2, 1))
    loss = nn.QuadraticLoss()
    g = per_sample_grads(model, loss, x, d)
    np.testing.assert_array_equal(g["0.weight"], [[[1.0, 0.0]], [[0.0, 2.0]]])
    np.testing.assert_array_equal(g["0.bias"], [[1.0], [2.0]])
    norms = per_sample_grad_norms(model, loss, x, d)
    np.testing.assert_array_equal(norms["0.weight"], [1.0, 2.0])
    np.testing.assert_allclose(layer_norms(norms)["0"], [np.sqrt(2.0), np.sqrt(8.0)], rtol=1e-15)
    np.testing.assert_allclose(layer_norms(norms)["total"], [np.sqrt(2.0), np.sqrt(8.0)], rtol=1e-15)
    gn = grad_norms(model, loss, x, d)
    assert gn["0.weight"] == pytest.approx(np.sqrt(0.25 + 1.0), rel=1e-15)
    assert gn["0.bias"] == pytest.approx(1.5, rel=1e-15)
    assert gn["0"] == pytest.approx(np.sqrt(1.25 + 2.25), rel=1e-15) == gn["total"]


def test_layer_norms_combines_squares() -> None:
    norms = {"0.weight": np.array([3.0, 0.0]), "0.bias": np.array([4.0, 1.0]), "2.weight": np.array([12.0, 0.0])}
    out = layer_norms(norms)
    assert set(out) == {"0", "2", "total"}
    np.testing.assert_allclose(out["0"], [5.0, 1.0])
    np.testing.assert_allclose(out["2"], [12.0, 0.0])
    np.testing.assert_allclose(out["total"], [13.0, 1.0])
    assert layer_norms({"1.0.weight": np.array([2.0])})["1.0"] == 2.0  # nested Sequential prefixes
    with pytest.raises(ValueError, match="no norms"):
        layer_norms({})


@pytest.mark.usefixtures("float64")
def test_grad_norms_keys_and_values() -> None:
    spec, shape, kind, reduction = CASES["conv2d-groups-ce-sum"]
    _, model = _models(spec, shape)
    loss = _loss(kind, reduction)
    x, t = _data(model, shape, kind)
    _, batch = nn.value_and_grad(model, loss, x, t, train=False)
    out = grad_norms(model, loss, x, t)
    assert set(out) == {"0.weight", "0.bias", "2.weight", "4.weight", "4.bias", "0", "2", "4", "total"}
    for name, g in batch.items():
        assert out[name] == pytest.approx(float(np.linalg.norm(g)), rel=1e-13)
    assert out["0"] == pytest.approx(np.hypot(out["0.weight"], out["0.bias"]), rel=1e-13)
    assert out["total"] == pytest.approx(np.sqrt(sum(np.sum(g**2) for g in batch.values())), rel=1e-13)
    assert grad_norms_from_tape(run_tape(model, loss, x, t).tape) == out
    assert grad_norms(nn.Sequential(nn.ReLU()), nn.MSELoss(), x[:, 0, 0, :2], np.zeros((3, 2))) == {"total": 0.0}


def test_float32_norms_are_float32_and_close() -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, 3, rng=0), nn.ReLU(), nn.Flatten(), nn.Linear(48, 4, rng=1))
    x = np.random.default_rng(0).standard_normal((5, 2, 6, 6)).astype(np.float32)
    t = np.arange(5) % 4
    norms = per_sample_grad_norms(model, nn.CrossEntropyLoss(), x, t)
    model64 = nn.Sequential(nn.Conv2d(2, 3, 3, rng=0), nn.ReLU(), nn.Flatten(), nn.Linear(48, 4, rng=1)).double()
    ref = per_sample_grad_norms(model64, nn.CrossEntropyLoss(), x.astype(np.float64), t)
    for name, v in norms.items():
        assert v.dtype == np.float32
        assert rel_err(v, ref[name]) <= 1e-5


def test_parameterless_layers_contribute_nothing() -> None:
    model = nn.Sequential(nn.ReLU(), nn.Flatten())
    x = np.ones((2, 3))
    assert per_sample_grads(model, nn.MSELoss(), x, x) == {}
    assert per_sample_grad_norms(model, nn.MSELoss(), x, x) == {}


@pytest.mark.usefixtures("float64")
def test_batchnorm_in_training_mode_raises_naming_the_layer() -> None:
    spec, shape, kind, reduction = CASES["batchnorm1d-eval-ce-mean"]
    _, model = _models(spec, shape)
    x, t = _data(model, shape, kind)
    for fn in (per_sample_grads, per_sample_grad_norms):
        with pytest.raises(ValueError, match=r"layer '1' \(BatchNorm1d\).*not defined.*eval mode"):
            fn(model, _loss(kind, reduction), x, t, train=True)


class _Scale(nn.Layer):
    """y = a ⊙ x: a parameterized layer with no closed-form norm rule (the generic rule covers it)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.a = Parameter(np.linspace(0.5, 1.5, n))

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return x * self.a.data, x

    def vjp(
        self, cache: np.ndarray, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        g = dy * cache
        return dy * self.a.data, {"a": g if per_sample else g.sum(axis=-2)}


def test_generic_rule_covers_new_parameterized_layers() -> None:
    model = nn.Sequential(_Scale(3), nn.Tanh(), _Scale(3))
    x = np.random.default_rng(0).standard_normal((4, 3))
    t = np.zeros((4, 3))
    loss = nn.QuadraticLoss()
    g = per_sample_grads(model, loss, x, t)
    norms = per_sample_grad_norms(model, loss, x, t)
    assert set(norms) == {"0.a", "2.a"}
    for name in norms:
        assert rel_err(norms[name], np.linalg.norm(g[name], axis=1)) <= 1e-15
    assert model[0] in ps.per_sample_grad_norms_rules  # found along the MRO: the Layer rule


def test_registry_miss_names_the_type() -> None:
    reg = Registry("demo_norms")
    reg.register(nn.Linear)(lambda entry, factor: {})
    assert nn.Linear(2, 2) in reg
    with pytest.raises(NotImplementedError, match=r"demo_norms: no rule for layer type _Scale.*Known types: Linear"):
        reg[_Scale(2)]


def test_reduction_none_is_refused() -> None:
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="reduction='none'"):
        per_sample_grad_norms(model, nn.MSELoss(reduction="none"), np.ones((2, 2)), np.ones((2, 2)))
