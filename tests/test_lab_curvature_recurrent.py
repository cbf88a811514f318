"""Curvature through recurrent layers (RNN, GRU, LSTM, LastStep): exact Hessian-vector products
against PyTorch's double backward (float64), the dense Hessian against torch's, the top eigenvalue
against the dense Hessian's; the rules against central differences for every option of the layers;
and truncated BPTT refused by every curvature function, because its gradient is not the gradient of
any loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import rel_err

import nablanet as nn
from nablanet.lab import curvature
from nablanet.lab._per_layer import check_rop
from nablanet.layers.recurrent import RNNBase
from nablanet.train import callbacks as cbs

F64 = np.float64
N, L, I_, H = 2, 3, 2, 2
KINDS = {"RNN": nn.RNN, "GRU": nn.GRU, "LSTM": nn.LSTM}


def _model(kind: str, *, num_layers: int = 2, bidirectional: bool = True, batch_first: bool = True,
           dropout: float = 0.0, out: int = 3, seed: int = 0, inputs: int = I_) -> nn.Sequential:
    rnn = KINDS[kind](inputs, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                      dropout=dropout, dtype=F64, rng=seed)
    d = 2 if bidirectional else 1
    return nn.Sequential(rnn, nn.LastStep(dim=1 if batch_first else 0), nn.Linear(d * H, out, dtype=F64, rng=seed + 1))


def _data(batch_first: bool, loss: str, out: int = 3, seed: int = 1, inputs: int = I_) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, L, inputs) if batch_first else (L, N, inputs))
    target = rng.integers(0, out, N) if loss == "ce" else rng.standard_normal((N, out))
    return x, target


def _torch_twin(torch: Any, ours: nn.Sequential, kind: str) -> Any:
    """The same model in torch, our weights loaded (the recurrent names are PyTorch's)."""
    rnn, head = ours[0], ours[2]
    assert isinstance(rnn, RNNBase)
    cls = {"RNN": torch.nn.RNN, "GRU": torch.nn.GRU, "LSTM": torch.nn.LSTM}[kind]

    class Twin(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.add_module("0", cls(rnn.input_size, H, num_layers=rnn.num_layers, bidirectional=rnn.bidirectional,
                                     batch_first=rnn.batch_first))
            self.add_module("2", torch.nn.Linear(head.in_features, head.out_features))

        def forward(self, x: Any) -> Any:
            seq = getattr(self, "0")(x)[0]
            return getattr(self, "2")(seq[:, -1] if rnn.batch_first else seq[-1])

    twin = Twin().double()
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    return twin


def _torch_loss(torch: Any, loss: str) -> Callable[[Any, Any], Any]:
    return torch.nn.functional.cross_entropy if loss == "ce" else torch.nn.functional.mse_loss


def _our_loss(loss: str) -> nn.Loss:
    return nn.CrossEntropyLoss() if loss == "ce" else nn.MSELoss()


@pytest.mark.parametrize("kind,batch_first,loss", [("RNN", True, "ce"), ("GRU", False, "mse"), ("LSTM", True, "mse")])
def test_hvp_of_two_bidirectional_layers_matches_torch_double_backward(kind: str, batch_first: bool,
                                                                      loss: str) -> None:
    torch = pytest.importorskip("torch")
    model = _model(kind, batch_first=batch_first)
    x, target = _data(batch_first, loss)
    rng = np.random.default_rng(2)
    v = {name: rng.standard_normal(p.shape) for name, p in model.named_parameters()}
    got = nn.lab.hvp(model, _our_loss(loss), x, target, v)
    twin = _torch_twin(torch, model, kind)
    params = dict(twin.named_parameters())
    value = _torch_loss(torch, loss)(twin(torch.tensor(x)), torch.tensor(target))
    grads = torch.autograd.grad(value, list(params.values()), create_graph=True)
    gv = sum((g * torch.tensor(v[name])).sum() for name, g in zip(params, grads, strict=True))
    want = dict(zip(params, torch.autograd.grad(gv, list(params.values())), strict=True))
    for name in v:
        assert rel_err(got[name], want[name].numpy()) <= 1e-8, name


@pytest.mark.parametrize("kind", list(KINDS))
def test_dense_hessian_matches_torch_and_its_top_eigenvalue(kind: str) -> None:
    """One layer, one direction, I = 1, H = 2: P ≤ 46, so the dense Hessian is ≤ 46 exact products."""
    torch = pytest.importorskip("torch")
    model = _model(kind, num_layers=1, bidirectional=False, out=2, inputs=1)
    x, target = _data(True, "ce", out=2, inputs=1)
    h = nn.lab.hessian(model, nn.CrossEntropyLoss(), x, target)
    twin = _torch_twin(torch, model, kind)
    names = [name for name, _ in twin.named_parameters()]
    shapes = [p.shape for _, p in twin.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in twin.parameters()])

    def f(flat: Any) -> Any:
        parts = torch.split(flat, [int(np.prod(s)) for s in shapes])
        params = {n: p.reshape(s) for n, p, s in zip(names, parts, shapes, strict=True)}
        y = torch.func.functional_call(twin, params, (torch.tensor(x),))
        return torch.nn.functional.cross_entropy(y, torch.tensor(target))

    assert names == [name for name, _ in model.named_parameters()]
    assert rel_err(h, torch.autograd.functional.hessian(f, flat0).numpy()) <= 1e-8
    top = nn.lab.hessian_eigenvalues(model, nn.CrossEntropyLoss(), x, target, k=1)
    assert abs(top[0] - np.linalg.eigvalsh(h)[-1]) <= 1e-8 * np.abs(h).max()


def test_hvp_in_train_mode_holds_the_dropout_masks_between_layers() -> None:
    """train=True: the masks between stacked layers come from rng and stay fixed, so H v equals central
    differences of the gradient under the same masks (the same seed)."""
    model = _model("GRU", num_layers=3, dropout=0.5, batch_first=False)
    x, target = _data(False, "ce")
    loss = nn.CrossEntropyLoss()
    rng = np.random.default_rng(3)
    v = {name: rng.standard_normal(p.shape) for name, p in model.named_parameters()}
    got = curvature.flatten_params(nn.lab.hvp(model, loss, x, target, v, train=True, rng=4), model)
    theta, vf, eps = curvature.flatten_params(dict(model.state_dict()), model), curvature.flatten_params(v, model), 1e-5
    grads = []
    for sign in (1, -1):
        model.load_state_dict(curvature.unflatten_params(theta + sign * eps * vf, model))
        grads.append(curvature.flatten_params(nn.value_and_grad(model, loss, x, target, train=True, rng=4)[1], model))
    model.load_state_dict(curvature.unflatten_params(theta, model))
    assert rel_err(got, (grads[0] - grads[1]) / (2 * eps)) <= 1e-7
    # the masks matter: in eval mode (no dropout) the product differs
    evaluated = curvature.flatten_params(nn.lab.hvp(model, loss, x, target, v), model)
    assert rel_err(evaluated, got) > 1e-3


OPTIONS: dict[str, Callable[[], RNNBase]] = {
    "RNN-relu-2-bidirectional": lambda: nn.RNN(2, 2, num_layers=2, nonlinearity="relu", bidirectional=True,
                                               dtype=F64, rng=0),
    "RNN-tanh-no-bias": lambda: nn.RNN(2, 3, bias=False, batch_first=True, dtype=F64, rng=0),
    "GRU-2-bidirectional-batch-first": lambda: nn.GRU(2, 2, num_layers=2, bidirectional=True, batch_first=True,
                                                      dtype=F64, rng=0),
    "GRU-no-bias": lambda: nn.GRU(2, 2, num_layers=2, bias=False, dtype=F64, rng=0),
    "LSTM-2-bidirectional": lambda: nn.LSTM(2, 2, num_layers=2, bidirectional=True, dtype=F64, rng=0),
    "LSTM-no-bias-batch-first": lambda: nn.LSTM(2, 2, bias=False, batch_first=True, dtype=F64, rng=0),
}


# dropout acts only between stacked layers, so train mode is checked on the stacks
CHECKS = [(option, mode) for option in OPTIONS for mode in ("eval", "train-dropout", "initial-state")
          if mode != "train-dropout" or OPTIONS[option]().num_layers > 1]


@pytest.mark.parametrize("option,mode", CHECKS, ids=[f"{o}-{m}" for o, m in CHECKS])
def test_rules_match_central_differences_for_every_option(option: str, mode: str) -> None:
    """jvp and vjp_rop against central differences of the forward and the VJP: in eval mode, in train mode
    with dropout between layers (masks fixed by the seed), and from a given initial state (h₀, c₀)."""
    layer = OPTIONS[option]()
    if mode == "train-dropout":
        layer.dropout = 0.4
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, L, 2) if layer.batch_first else (L, N, 2))
    shape = (layer.num_layers * layer.num_directions, N, layer.hidden_size)
    h0, c0 = rng.standard_normal(shape), rng.standard_normal(shape)

    def forward(la: nn.Layer, xe: Any) -> tuple[Any, Any]:
        assert isinstance(la, RNNBase)
        hx = None if mode != "initial-state" else (h0, c0) if isinstance(la, nn.LSTM) else h0
        out, _, cache = la.forward_state(xe, hx, train=mode == "train-dropout", rng=np.random.default_rng(5))
        return out, cache

    rows = check_rop(option, layer, x, forward, np.random.default_rng(2))
    assert len(rows) == 3 + len(dict(layer.named_parameters()))  # ẏ, (dx)˙, each (dθ)˙, ẋ = None
    assert all(r.status == "pass" for r in rows), [(r.tensor, r.detail) for r in rows if r.status != "pass"]


def test_last_step_rules_are_its_linear_map() -> None:
    layer, rng = nn.LastStep(dim=0), np.random.default_rng(0)
    x, xdot, dydot = rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 2, 4)), rng.standard_normal((2, 4))
    _, cache = layer.forward(x)
    assert np.array_equal(nn.lab.rop.jvp(layer, cache, xdot, {}), xdot[-1])
    dxdot, grads = nn.lab.rop.vjp_rop(layer, cache, dydot, dydot, xdot, {})
    assert grads == {} and np.array_equal(dxdot[-1], dydot) and not dxdot[:-1].any()


# -- truncated BPTT is refused ---------------------------------------------------------------------------------
TRUNCATED = r"truncated backpropagation through time .* not the gradient of any loss .* bptt_truncate=None"
CURVATURE: dict[str, Callable[[nn.Layer, nn.Loss, Any, Any], Any]] = {
    "hvp": lambda m, lo, x, t: nn.lab.hvp(m, lo, x, t, {n: np.ones(p.shape) for n, p in m.named_parameters()}),
    "ggn_vp": lambda m, lo, x, t: nn.lab.ggn_vp(m, lo, x, t, {n: np.ones(p.shape) for n, p in m.named_parameters()}),
    "hessian": nn.lab.hessian,
    "hessian_eigenvalues": nn.lab.hessian_eigenvalues,
    "hutchinson_trace": lambda m, lo, x, t: nn.lab.hutchinson_trace(m, lo, x, t, n_samples=2),
    "step_size_report": nn.lab.step_size_report,
    "newton_step": lambda m, lo, x, t: nn.lab.newton_step(m, lo, x, t, method="direct"),
}


@pytest.mark.parametrize("fn", list(CURVATURE))
def test_every_curvature_function_refuses_truncated_bptt(fn: str) -> None:
    model = _model("LSTM", num_layers=1, bidirectional=False)
    model[0].bptt_truncate = 2
    x, target = _data(True, "ce")
    with pytest.raises(ValueError, match=TRUNCATED):
        CURVATURE[fn](model, nn.CrossEntropyLoss(), x, target)
    model[0].bptt_truncate = None  # the fix the message gives
    CURVATURE[fn](model, nn.CrossEntropyLoss(), x, target)


def test_curvature_inside_fit_with_truncated_bptt_is_refused() -> None:
    """fit(bptt_truncate=k) sets k on every recurrent layer while it runs: a callback that measures
    curvature there is refused with the same reason; after fit the layer is back to full BPTT."""
    model = _model("GRU", num_layers=1, bidirectional=False)
    x, target = _data(True, "ce")
    v = {n: np.ones(p.shape) for n, p in model.named_parameters()}
    measure = cbs.LambdaCallback(on_epoch_end=lambda epoch, logs: nn.lab.hvp(model, nn.CrossEntropyLoss(), x,
                                                                             target, v))
    with pytest.raises(ValueError, match=TRUNCATED):
        nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), train=(x, target), epochs=1,
               bptt_truncate=2, callbacks=[measure])
    assert model[0].bptt_truncate is None
    nn.lab.hvp(model, nn.CrossEntropyLoss(), x, target, v)
