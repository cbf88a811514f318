"""The instruments see inside containers: every leaf layer of a Residual, a Parallel, a
MultiheadAttention and each layer and direction of a recurrent stack, named by its state_dict prefix."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import rel_err
from model_zoo import MODELS, Zoo

import nablanet as nn
from nablanet.lab._tape import forward_trace, run_tape
from nablanet.lab.parts import entry_parts, leaves
from nablanet.lab.per_sample import layer_of
from nablanet.layers import kernels

F64 = np.float64


def _residual() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 4, dtype=F64, rng=0), nn.Residual(nn.Linear(4, 4, dtype=F64, rng=1), nn.Tanh()),
                         nn.Linear(4, 2, dtype=F64, rng=2))


def _parallel() -> nn.Sequential:
    return nn.Sequential(nn.Parallel(nn.Linear(3, 2, dtype=F64, rng=0),
                                     nn.Sequential(nn.Linear(3, 2, dtype=F64, rng=1), nn.Sigmoid()), combine="concat"),
                         nn.Linear(4, 2, dtype=F64, rng=2))


def _attention() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 4, dtype=F64, rng=0),
                         nn.MultiheadAttention(4, 2, batch_first=True, dtype=F64, rng=1), nn.Tanh())


def _gru() -> nn.Sequential:
    return nn.Sequential(nn.GRU(3, 2, num_layers=2, bidirectional=True, batch_first=True, dtype=F64, rng=0),
                         nn.LastStep(), nn.Linear(4, 2, dtype=F64, rng=1))


CASES: dict[str, tuple[Any, tuple[int, ...], list[str]]] = {
    "residual": (_residual, (3, 3), ["0", "1.0", "1.1", "2"]),
    "parallel": (_parallel, (3, 3), ["0.0", "0.1.0", "0.1.1", "1"]),
    "attention": (_attention, (2, 3, 3), ["0", "1", "1.out_proj", "2"]),
    "gru": (_gru, (2, 3, 3), ["0.l0", "0.l0_reverse", "0.l1", "0.l1_reverse", "1", "2"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_leaf_and_part_is_named_by_its_state_dict_prefix(case: str) -> None:
    make, shape, names = CASES[case]
    model = make()
    x = np.random.default_rng(0).standard_normal(shape)
    assert list(nn.lab.activation_stats(model, x).layers) == names
    assert list(nn.lab.layer_jacobians(model, x)) == names
    owners = {name: owner for name, owner, _ in model._named_slots()}
    assert {layer_of(name, owners[name]) for name, _ in model.named_parameters()} <= set(names)


def test_a_leaf_inside_a_residual_has_the_jacobian_of_the_leaf_at_its_own_input() -> None:
    model = _residual()
    x = np.random.default_rng(1).standard_normal((3, 3))
    jac = nn.lab.layer_jacobians(model, x)
    h = model[0](x)  # the Residual's input, which its first child reads
    inner = model[1]
    np.testing.assert_allclose(jac["1.0"], nn.lab.jacobian(inner[0], h), rtol=0, atol=1e-14)
    np.testing.assert_allclose(jac["1.1"], nn.lab.jacobian(inner[1], inner[0](h)), rtol=0, atol=1e-14)
    # not a chain: the Residual's Jacobian is I + J_tanh J_linear, not the product of its leaves'
    whole = nn.lab.jacobian(inner, h)
    assert rel_err(whole, np.eye(4) + jac["1.1"] @ jac["1.0"]) <= 1e-14
    sv = nn.lab.jacobian_singular_values(model, x, per_layer=True)
    assert list(sv) == ["0", "1.0", "1.1", "2"]
    for name, s in sv.items():
        np.testing.assert_allclose(s, np.linalg.svd(jac[name], compute_uv=False), rtol=1e-12, atol=1e-14)


def test_each_direction_of_each_recurrent_layer_has_its_own_jacobian() -> None:
    """Layer 1's reverse direction against a one-layer bidirectional GRU with layer 1's weights, run on
    layer 1's input (the whole model's Jacobian of that layer, through its own VJP)."""
    gru = nn.GRU(3, 2, num_layers=2, bidirectional=True, batch_first=True, dtype=F64, rng=0)
    x = np.random.default_rng(2).standard_normal((2, 3, 3))
    jac = nn.lab.layer_jacobians(gru, x)
    assert list(jac) == ["l0", "l0_reverse", "l1", "l1_reverse"]
    layer0, layer1 = (nn.GRU(3 if k == 0 else 4, 2, bidirectional=True, batch_first=True, dtype=F64) for k in (0, 1))
    for k, one in enumerate((layer0, layer1)):
        sd = gru.state_dict()
        one.load_state_dict({name.replace(f"_l{k}", "_l0"): v for name, v in sd.items() if f"_l{k}" in name})
    h = layer0(x)[0]  # (N, L, 2H): layer 1's input
    for k, (one, inp) in enumerate(((layer0, x), (layer1, h))):
        both = nn.lab.jacobian(one, inp).reshape(2, 3, 2, 2, -1)  # (N, t, direction, h, t'·i)
        for d, sfx in enumerate(("", "_reverse")):
            np.testing.assert_allclose(jac[f"l{k}{sfx}"], both[:, :, d].reshape(2, 6, -1), rtol=0, atol=1e-14)


def test_attentions_own_part_is_its_output_before_out_proj() -> None:
    mha = nn.MultiheadAttention(4, 2, batch_first=True, dtype=F64, rng=3)
    x = np.random.default_rng(3).standard_normal((2, 3, 4))
    jac = nn.lab.layer_jacobians(mha, x)
    assert list(jac) == ["", "out_proj"]
    np.testing.assert_allclose(jac["out_proj"], np.broadcast_to(np.kron(np.eye(3), mha.out_proj.weight.data),
                                                                (2, 12, 12)), rtol=0, atol=1e-15)
    mha.out_proj.weight.data[...] = np.eye(4)
    assert mha.out_proj.bias is not None
    mha.out_proj.bias.data[...] = 0.0  # y = O: the whole layer's Jacobian is its own part's
    np.testing.assert_allclose(jac[""], nn.lab.jacobian(mha, x), rtol=0, atol=1e-14)


def test_gate_saturation_per_direction_is_read_off_the_gates() -> None:
    gru = nn.GRU(2, 3, bidirectional=True, batch_first=True, dtype=F64, rng=0)
    for name, p in gru.named_parameters():  # forward: weights 0, so the gates are their biases' σ and tanh
        p.data[...] = 50.0 if name == "bias_ih_l0_reverse" else 0.0  # reverse: r = z = 1 and n = tanh(50) = 1
    stats = nn.lab.activation_stats(gru, np.ones((2, 4, 2)))
    assert [s.name for s in stats] == ["l0", "l0_reverse"] and stats["l0"].shape == (2, 4, 3)
    gates = ("saturation_fraction_r", "saturation_fraction_z", "saturation_fraction_n")
    assert stats["l0"].quantities == dict.fromkeys(gates, 0.0)  # σ′(0) = 1/4, tanh′(0) = 1
    assert stats["l0_reverse"].quantities == dict.fromkeys(gates, 1.0)


def test_the_recorder_has_rows_per_layer_and_direction() -> None:
    model = _gru()
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((4, 3, 3)), rng.integers(0, 2, 4)
    rec = nn.lab.Recorder(quantities=["grad_norm", "per_sample_grad_norm", "grad_variance", "activations"])
    nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), train=(x, y), epochs=1,
           batch_size=4, callbacks=[rec], verbose=0)
    rows = [r for r in rec.records if r["layer"] == "0.l1_reverse"]
    params = ["0.weight_ih_l1_reverse", "0.weight_hh_l1_reverse", "0.bias_ih_l1_reverse", "0.bias_hh_l1_reverse"]
    assert {r["parameter"] for r in rows} == {"", *params}
    assert {r["quantity"] for r in rows if r["parameter"] == ""} == {
        "grad_norm", "per_sample_grad_norm_mean", "per_sample_grad_norm_std", "per_sample_grad_norm_max",
        "activation_mean", "activation_std", "saturation_fraction_r", "saturation_fraction_z",
        "saturation_fraction_n"}
    norms = {r["parameter"]: r["value"] for r in rows if r["quantity"] == "grad_norm"}
    assert norms[""] == pytest.approx(np.sqrt(sum(norms[p] ** 2 for p in params)), rel=1e-12)
    assert {r["layer"] for r in rec.records} == {"", "0.l0", "0.l0_reverse", "0.l1", "0.l1_reverse", "2"}


@pytest.mark.parametrize("zoo", MODELS, ids=[m.id for m in MODELS])
def test_the_instruments_layers_are_the_tapes(zoo: Zoo) -> None:
    """Forward order and names: the leaves the instruments read from a forward are the tape's entries
    (a recurrent entry split into its parts)."""
    model, loss, x, target = zoo.build(np.random.default_rng(5))
    run = run_tape(model, loss, x, target, train=zoo.train, rng=0)
    on_tape = [p.name for e in run.tape for p in (entry_parts(e) or [e])]
    assert [u.name for u in leaves(forward_trace(model, x, train=zoo.train, rng=0))] == on_tape


class _Twice(nn.Layer):
    """A container of the user's calling its child twice through the dispatch, and another directly."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Tanh()
        self.g = nn.Sigmoid()

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, Any]:
        h, c1 = kernels.forward(self.f, x, train=train, rng=rng)
        u, c2 = kernels.forward(self.f, h, train=train, rng=rng)
        y, c3 = self.g.forward(u)
        return y, (c1, c2, c3)

    def vjp(self, cache: Any, dy: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        du = self.g.vjp(cache[2], dy)[0]
        return self.f.vjp(cache[0], self.f.vjp(cache[1], du)[0])[0], {}


class _Opaque(nn.Layer):
    """A container of the user's whose child runs off the dispatch: one layer to the instruments."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Tanh()

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, Any]:
        return self.f.forward(x)

    def vjp(self, cache: Any, dy: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.f.vjp(cache, dy)[0], {}


def test_shared_and_repeated_layers_and_a_container_that_hides_its_children() -> None:
    lin = nn.Linear(2, 2, dtype=F64, rng=0)
    x = np.ones((1, 2))
    shared = nn.Sequential(lin, nn.Tanh(), lin)
    assert [t.name for t in forward_trace(shared, x)] == ["", "0", "1", "2"]  # as on the tape and in the state_dict
    names = [(t.name, t.depth, t.inside) for t in forward_trace(nn.Sequential(_Twice(), _Opaque()), x)]
    assert names == [("", 0, 4), ("0", 0, 2), ("0.f", 1, 0), ("0.f#2", 1, 0), ("1", 0, 0)]
    assert list(nn.lab.activation_stats(nn.Sequential(_Twice(), _Opaque()), x).layers) == ["0.f", "0.f#2", "1"]


def test_layer_of_names_a_recurrent_part_only_given_its_layer() -> None:
    gru = nn.GRU(2, 2, num_layers=2, bidirectional=True)
    assert layer_of("0.weight_ih_l1_reverse", gru) == "0.l1_reverse"
    assert layer_of("weight_hh_l0", gru) == "l0"
    assert layer_of("0.weight_ih_l1_reverse") == "0"
    assert layer_of("1.0.bias", nn.Linear(2, 2)) == "1.0"


def test_gradcheck_checks_a_layer_that_its_container_runs_through_a_fast_kernel() -> None:
    """The GRU's forward inside a Residual is the fast variant; gradcheck reaches it at the dispatch."""
    model = nn.Sequential(nn.Residual(nn.GRU(2, 1, bidirectional=True, batch_first=True, rng=0)), nn.LastStep(),
                          nn.Linear(2, 2, rng=1))
    x = np.random.default_rng(6).standard_normal((2, 3, 2))
    report = nn.gradcheck(model, nn.CrossEntropyLoss(), x, np.array([0, 1]), curvature=False)
    rows = [r for r in report.layers if r.layer == "0.0"]
    assert {r.kind for r in rows} == {"GRU"} and len(rows) == 9 and all(r.status == "pass" for r in rows)
