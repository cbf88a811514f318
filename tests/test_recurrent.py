"""RNN, GRU, LSTM: PyTorch parity, finite differences, BPTT truncation, vector axes, per-sample, errors."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import check_layer_fd, numeric_grad, rel_err

import nablanet as nn
from nablanet.layers.base import NO_DX
from nablanet.layers.recurrent import GRU, LSTM, RNN, LastStep, RNNBase

KINDS = ["rnn_tanh", "rnn_relu", "gru", "lstm"]
I, H, N = 3, 4, 2


def make(kind: str, num_layers: int = 1, bias: bool = True, batch_first: bool = False,
         bidirectional: bool = False, dtype: Any = np.float64, **kw: Any) -> RNNBase:
    args = (I, H, num_layers)
    if kind.startswith("rnn"):
        return RNN(*args, kind[4:], bias, batch_first, 0.0, bidirectional, dtype=dtype, rng=0, **kw)
    cls = GRU if kind == "gru" else LSTM
    return cls(*args, bias, batch_first, 0.0, bidirectional, dtype=dtype, rng=0, **kw)


def make_torch(torch: Any, kind: str, layer: RNNBase) -> Any:
    t = torch.nn
    args = (layer.input_size, layer.hidden_size, layer.num_layers)
    kw = {"bias": layer.bias, "batch_first": layer.batch_first, "bidirectional": layer.bidirectional}
    if kind.startswith("rnn"):
        tl = t.RNN(*args, nonlinearity=kind[4:], **kw)
    else:
        tl = (t.GRU if kind == "gru" else t.LSTM)(*args, **kw)
    tl = tl.to(torch.float64 if layer._compute_dtype() == np.float64 else torch.float32)
    # PyTorch's names and layouts: torch's initial weights load straight into ours
    layer.load_state_dict({k: v.detach().numpy() for k, v in tl.state_dict().items()})
    return tl


def data(layer: RNNBase, L: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    dt = layer._compute_dtype()
    shape = (N, L, layer.input_size) if layer.batch_first else (L, N, layer.input_size)
    state = (layer.num_directions * layer.num_layers, N, layer.hidden_size)
    return (rng.standard_normal(shape).astype(dt), rng.standard_normal(state).astype(dt),
            rng.standard_normal(state).astype(dt))


def state_of(kind: str, h: np.ndarray, c: np.ndarray) -> Any:
    return (h, c) if kind == "lstm" else h


# -- PyTorch parity ------------------------------------------------------------------------------
PARITY = list(itertools.product(KINDS, [1, 2], [False, True], [False, True], [1, 5], [True, False], [False, True]))


def _pid(case: tuple[Any, ...]) -> str:
    kind, nl, bid, bf, L, bias, init = case
    direction, layout = "bi" if bid else "uni", "bf" if bf else "tm"
    return f"{kind}-l{nl}-{direction}-{layout}-L{L}-{'b' if bias else 'nob'}-{'h0' if init else 'zero'}"


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)], ids=["f64", "f32"])
@pytest.mark.parametrize("case", PARITY, ids=[_pid(c) for c in PARITY])
def test_torch_parity(case: tuple[Any, ...], dtype: type, tol: float) -> None:
    torch = pytest.importorskip("torch")
    kind, nl, bid, bf, L, bias, init = case
    layer = make(kind, nl, bias, bf, bid, dtype)
    tl = make_torch(torch, kind, layer)
    x, h0, c0 = data(layer, L)
    out, final, cache = layer.forward_state(x, state_of(kind, h0, c0) if init else None)
    rng = np.random.default_rng(2)
    dy = rng.standard_normal(out.shape).astype(dtype)
    dh, dc = rng.standard_normal(h0.shape).astype(dtype), rng.standard_normal(h0.shape).astype(dtype)
    dx, dhx, grads = layer.vjp_state(cache, dy, state_of(kind, dh, dc))

    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    tout, tfinal = tl(tx, state_of(kind, th, tc) if init else None)
    # loss = Σ dy ⊙ output + Σ dh ⊙ h_n (+ Σ dc ⊙ c_n)
    th_n, tc_n = tfinal if kind == "lstm" else (tfinal, None)
    loss = (tout * torch.tensor(dy)).sum() + (th_n * torch.tensor(dh)).sum()
    if tc_n is not None:
        loss = loss + (tc_n * torch.tensor(dc)).sum()
    loss.backward()

    h_n, c_n = final if kind == "lstm" else (final, None)
    dh0, dc0 = dhx if kind == "lstm" else (dhx, None)
    pairs = [(out, tout), (h_n, th_n), (dx, tx.grad)]
    if kind == "lstm":
        pairs.append((c_n, tc_n))
    if init:
        pairs.append((dh0, th.grad))
        if kind == "lstm":
            pairs.append((dc0, tc.grad))
    for ours, theirs in pairs:
        assert ours.dtype == dtype
        assert ours.shape == tuple(theirs.shape)
        assert rel_err(ours, theirs.detach().numpy()) <= tol
    tgrads = dict(tl.named_parameters())
    assert list(grads) == list(tgrads)  # the same names in the same order
    for k, g in grads.items():
        assert g.dtype == dtype
        assert rel_err(g, tgrads[k].grad.numpy()) <= tol, k


# -- finite differences --------------------------------------------------------------------------
FD = [(k, nl, bid, bf) for k in KINDS for nl, bid, bf in [(1, False, False), (2, True, True)]]


@pytest.mark.parametrize("kind,nl,bid,bf", FD, ids=[f"{k}-l{nl}-{'bi' if b else 'uni'}" for k, nl, b, _ in FD])
def test_finite_differences_float64(kind: str, nl: int, bid: bool, bf: bool) -> None:
    layer = make(kind, nl, True, bf, bid)
    x, h0, c0 = data(layer, 4)
    rng = np.random.default_rng(3)
    out, _, cache = layer.forward_state(x, state_of(kind, h0, c0))
    dy = rng.standard_normal(out.shape)
    dh, dc = rng.standard_normal(h0.shape), rng.standard_normal(h0.shape)
    dx, dhx, grads = layer.vjp_state(cache, dy, state_of(kind, dh, dc))

    def f() -> float:
        o, fin, _ = layer.forward_state(x, state_of(kind, h0, c0))
        hn, cn = fin if kind == "lstm" else (fin, None)
        return float(np.sum(o * dy) + np.sum(hn * dh) + (0.0 if cn is None else np.sum(cn * dc)))

    assert rel_err(dx, numeric_grad(f, x)) <= 1e-6
    dh0, dc0 = dhx if kind == "lstm" else (dhx, None)
    assert rel_err(dh0, numeric_grad(f, h0)) <= 1e-6
    if kind == "lstm":
        assert rel_err(dc0, numeric_grad(f, c0)) <= 1e-6
    for name, p in layer.named_parameters():
        assert rel_err(grads[name], numeric_grad(f, p.data)) <= 1e-6, name


def test_finite_differences_with_dropout_between_layers() -> None:
    # training mode: the cached masks make the VJP the derivative of the very function computed
    layer = LSTM(I, H, 3, dropout=0.4, bidirectional=True, dtype=np.float64, rng=0)
    x = np.random.default_rng(0).standard_normal((4, N, I))
    assert check_layer_fd(layer, x, train=True) <= 1e-6
    y1, c1 = layer.forward(x, train=True, rng=np.random.default_rng(5))
    y2, _ = layer.forward(x, train=True, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(y1, y2)  # masks come from the generator handed in
    assert all(m is not None and np.any(m == 0) for m in c1.masks)
    y_eval, c_eval = layer.forward(x, train=False)
    assert all(m is None for m in c_eval.masks)
    assert not np.allclose(y1, y_eval)


def test_relu_rnn_derivative_is_one_at_the_kink() -> None:
    # all-zero weights and input: every pre-activation is exactly 0; the library's ReLU′(0) = 1
    layer = RNN(2, 3, nonlinearity="relu", dtype=np.float64)
    for p in layer.parameters():
        p.data[...] = 0.0
    x = np.zeros((4, 2, 2))
    y, cache = layer.forward(x)
    _, grads = layer.vjp(cache, np.ones_like(y))
    np.testing.assert_array_equal(y, 0.0)
    np.testing.assert_array_equal(grads["bias_ih_l0"], np.full(3, 4 * 2.0))  # Σₜₙ dyₜₙ · 1


# -- in a model ------------------------------------------------------------------------------------
def test_sequential_gru_flatten_linear_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    L = 5
    model = nn.Sequential(GRU(I, H, batch_first=True, bidirectional=True, rng=0), nn.Flatten(),
                          nn.Linear(L * 2 * H, 3, rng=1)).double()

    class TorchModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = torch.nn.GRU(I, H, batch_first=True, bidirectional=True)
            self.lin = torch.nn.Linear(L * 2 * H, 3)

        def forward(self, x: Any) -> Any:
            return self.lin(self.gru(x)[0].flatten(1))

    tm = TorchModel().double()
    tm.load_state_dict({k.replace("0.", "gru.", 1).replace("2.", "lin.", 1): torch.from_numpy(v)
                        for k, v in model.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((N, L, I))
    y, caches = model.forward(x)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dx, grads = model.vjp(caches, dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = tm(tx)
    ty.backward(torch.tensor(dy))
    assert rel_err(y, ty.detach().numpy()) <= 1e-10
    assert rel_err(dx, tx.grad.numpy()) <= 1e-10
    tgrads = {k.replace("gru.", "0.").replace("lin.", "2."): p.grad.numpy() for k, p in tm.named_parameters()}
    assert set(grads) == set(tgrads)
    for k in grads:
        assert rel_err(grads[k], tgrads[k]) <= 1e-10, k
    assert check_layer_fd(model, x) <= 1e-6


def test_lstm_last_step_linear_matches_torch_and_trains() -> None:
    torch = pytest.importorskip("torch")
    model = nn.Sequential(LSTM(I, H, batch_first=True, rng=0), LastStep(), nn.Linear(H, 2, rng=1)).double()
    lstm, lin = torch.nn.LSTM(I, H, batch_first=True).double(), torch.nn.Linear(H, 2).double()
    sd = model.state_dict()
    lstm.load_state_dict({k[2:]: torch.from_numpy(v) for k, v in sd.items() if k.startswith("0.")})
    lin.load_state_dict({k[2:]: torch.from_numpy(v) for k, v in sd.items() if k.startswith("2.")})
    x = np.random.default_rng(0).standard_normal((N, 6, I))
    y, caches = model.forward(x)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dx, grads = model.vjp(caches, dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = lin(lstm(tx)[0][:, -1])
    ty.backward(torch.tensor(dy))
    assert rel_err(y, ty.detach().numpy()) <= 1e-10
    assert rel_err(dx, tx.grad.numpy()) <= 1e-10
    assert rel_err(grads["0.weight_hh_l0"], lstm.weight_hh_l0.grad.numpy()) <= 1e-10
    assert rel_err(grads["2.weight"], lin.weight.grad.numpy()) <= 1e-10
    # and it learns: the sign of the sum of the sequence
    rng = np.random.default_rng(2)
    xs = rng.standard_normal((128, 6, I))
    ys = (xs.sum(axis=(1, 2)) > 0).astype(np.int64)
    hist = nn.fit(model, nn.CrossEntropyLoss(), nn.optim.Adam(model.parameters(), lr=0.02), train=(xs, ys),
                  epochs=15, batch_size=32)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]


def test_last_step_layer() -> None:
    x = np.random.default_rng(0).standard_normal((3, 4, 2))
    for dim, expect in [(1, x[:, -1]), (0, x[-1])]:
        layer = LastStep(dim)
        y, cache = layer.forward(x)
        np.testing.assert_array_equal(y, expect)
        assert check_layer_fd(layer, x) <= 1e-6
        dys = np.random.default_rng(1).standard_normal((2, *y.shape))
        dx, _ = layer.vjp(cache, dys)
        for v in range(2):
            np.testing.assert_array_equal(dx[v], layer.vjp(cache, dys[v])[0])
    with pytest.raises(ValueError, match="time axis"):
        LastStep(2)
    with pytest.raises(ValueError, match="non-empty time axis"):
        LastStep().forward(np.zeros(3))


# -- calling conventions -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_call_returns_output_and_final_state_like_torch(kind: str) -> None:
    torch = pytest.importorskip("torch")
    layer = make(kind, 2, bidirectional=True)
    tl = make_torch(torch, kind, layer)
    x, h0, c0 = data(layer, 3)
    out, final = layer(x, state_of(kind, h0, c0))
    tout, tfinal = tl(torch.tensor(x), state_of(kind, torch.tensor(h0), torch.tensor(c0)))
    assert rel_err(out, tout.detach().numpy()) <= 1e-12
    for ours, theirs in zip(final if kind == "lstm" else [final], tfinal if kind == "lstm" else [tfinal],
                            strict=True):
        assert rel_err(ours, theirs.detach().numpy()) <= 1e-12
    # an unbatched (L, H_in) sequence with an unbatched state, as in PyTorch
    xu, hu, cu = x[:, 0], h0[:, 0], c0[:, 0]
    out_u, final_u = layer(xu, state_of(kind, hu, cu))
    tout_u, tfinal_u = tl(torch.tensor(xu), state_of(kind, torch.tensor(hu), torch.tensor(cu)))
    assert out_u.shape == tuple(tout_u.shape) == (3, 2 * H)
    assert rel_err(out_u, tout_u.detach().numpy()) <= 1e-12
    hn_u = final_u[0] if kind == "lstm" else final_u
    thn_u = tfinal_u[0] if kind == "lstm" else tfinal_u
    assert hn_u.shape == tuple(thn_u.shape) == (4, H)
    # forward (the layer protocol) gives the output sequence alone, from a zero state
    y, _ = layer.forward(x)
    np.testing.assert_array_equal(y, layer(x)[0])


def test_repr_and_names_match_torch() -> None:
    torch = pytest.importorskip("torch")
    t = torch.nn
    cases = [(GRU(1, 6, bidirectional=True, batch_first=True), t.GRU(1, 6, bidirectional=True, batch_first=True)),
             (RNN(3, 4, 2, bias=False), torch.nn.RNN(3, 4, 2, bias=False)),
             (LSTM(3, 4, dropout=0.5, num_layers=2), torch.nn.LSTM(3, 4, dropout=0.5, num_layers=2))]
    for ours, theirs in cases:
        assert repr(ours) == repr(theirs)
        assert [(k, p.shape) for k, p in ours.named_parameters()] == [
            (k, tuple(p.shape)) for k, p in theirs.named_parameters()
        ]
    assert repr(LSTM(2, 3, bptt_truncate=5)) == "LSTM(2, 3, bptt_truncate=5)"
    assert repr(RNN(2, 3, nonlinearity="relu")) == "RNN(2, 3, nonlinearity='relu')"  # PyTorch's omits it


def test_init_is_pytorchs_uniform_and_seeded() -> None:
    layer = LSTM(5, 16, 2, bidirectional=True, rng=0)
    bound = 1 / 4
    for _, p in layer.named_parameters():
        assert p.dtype == np.float32
        assert np.all(np.abs(p.data) <= bound)
    allw = np.concatenate([p.data.ravel() for p in layer.parameters()])
    assert abs(allw.std() - bound / np.sqrt(3)) < 0.01  # U(−b, b) has standard deviation b/√3
    again = LSTM(5, 16, 2, bidirectional=True, rng=0)
    for a, b in zip(layer.parameters(), again.parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data)


# -- vector axes, per-sample gradients -----------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_vector_axes_equal_separate_vjps(kind: str) -> None:
    layer = make(kind, 2, batch_first=True, bidirectional=True)
    x, h0, c0 = data(layer, 4)
    out, _, cache = layer.forward_state(x, state_of(kind, h0, c0))
    rng = np.random.default_rng(4)
    dys = rng.standard_normal((2, 3, *out.shape))  # V = (2, 3)
    dhs = rng.standard_normal((2, 3, *h0.shape))
    dcs = rng.standard_normal((2, 3, *h0.shape))
    dx, dhx, grads = layer.vjp_state(cache, dys, state_of(kind, dhs, dcs))
    assert dx.shape == (2, 3, *x.shape)
    for a, b in itertools.product(range(2), range(3)):
        dx1, dhx1, g1 = layer.vjp_state(cache, dys[a, b], state_of(kind, dhs[a, b], dcs[a, b]))
        np.testing.assert_allclose(dx[a, b], dx1, rtol=1e-12, atol=1e-14)
        for s, s1 in zip(dhx if kind == "lstm" else [dhx], dhx1 if kind == "lstm" else [dhx1], strict=True):
            np.testing.assert_allclose(s[a, b], s1, rtol=1e-12, atol=1e-14)
        for k in g1:
            assert grads[k].shape == (2, 3, *g1[k].shape)
            np.testing.assert_allclose(grads[k][a, b], g1[k], rtol=1e-12, atol=1e-14)
    # per-sample with vector axes: (*V, N, *param)
    _, gps = layer.vjp(cache, dys, per_sample=True)
    for k, g in gps.items():
        assert g.shape == (2, 3, N, *layer._parameters[k].shape)
        np.testing.assert_allclose(g.sum(axis=2), layer.vjp(cache, dys)[1][k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
def test_per_sample_grads_sum_to_batch_and_equal_singletons(kind: str) -> None:
    layer = make(kind, 2, bidirectional=True)
    n = 3
    x = np.random.default_rng(0).standard_normal((5, n, I))
    y, cache = layer.forward(x)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    _, g = layer.vjp(cache, dy)
    _, gn = layer.vjp(cache, dy, per_sample=True)
    for k, p in layer.named_parameters():
        assert gn[k].shape == (n, *p.shape)
        np.testing.assert_allclose(gn[k].sum(0), g[k], rtol=1e-12, atol=1e-14)
    for j in range(n):  # parameters are shared across time: sample j's gradient sums its own steps
        _, c1 = layer.forward(x[:, j:j + 1])
        _, g1 = layer.vjp(c1, dy[:, j:j + 1])
        for k in g1:
            np.testing.assert_allclose(gn[k][j], g1[k], rtol=1e-10, atol=1e-13)


def test_need_dx_false_skips_dx_only() -> None:
    layer = make("lstm", 2)
    x, _, _ = data(layer, 3)
    y, cache = layer.forward(x)
    dy = np.ones_like(y)
    dx0, g0 = layer.vjp(cache, dy, need_dx=False)
    _, g1 = layer.vjp(cache, dy)
    assert dx0 is NO_DX
    for k in g1:
        np.testing.assert_array_equal(g0[k], g1[k])


def test_float32_stays_float32() -> None:
    layer = GRU(I, H, bidirectional=True)
    x = np.random.default_rng(0).standard_normal((3, N, I))  # float64 input is converted to the weights' dtype
    y, cache = layer.forward(x)
    dx, grads = layer.vjp(cache, np.ones(y.shape))
    assert y.dtype == dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())


# -- truncated backpropagation through time -------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_truncation_at_or_beyond_length_is_full_bptt(kind: str) -> None:
    full = make(kind, 2, bidirectional=True)
    x, h0, c0 = data(full, 5)
    out, _, cache = full.forward_state(x, state_of(kind, h0, c0))
    dy = np.random.default_rng(3).standard_normal(out.shape)
    dh = state_of(kind, h0 * 0.5, c0 * 0.3)
    ref = full.vjp_state(cache, dy, dh)
    for k in (5, 7):
        full.bptt_truncate = k
        dx, _, grads = full.vjp_state(cache, dy, dh)
        np.testing.assert_array_equal(dx, ref[0])
        for name in grads:
            np.testing.assert_array_equal(grads[name], ref[2][name])


def test_truncation_one_step_equals_hand_computed_gradient() -> None:
    # k = 1: every step sees hₜ₋₁ as a constant, so for hₜ = tanh(xₜ W_ihᵀ + b_ih + hₜ₋₁ W_hhᵀ + b_hh):
    #   daₜ = (dyₜ [+ dhₙ at the last step]) ⊙ (1 − hₜ²)   (no gradient arrives from step t + 1)
    #   dW_ih = Σₜ daₜᵀ xₜ   dW_hh = Σₜ daₜᵀ hₜ₋₁   db = Σₜ daₜ   dxₜ = daₜ W_ih   dh₀ = da₀ W_hh
    layer = RNN(I, H, bptt_truncate=1, dtype=np.float64, rng=0)
    L = 5
    x, h0, _ = data(layer, L)
    out, _, cache = layer.forward_state(x, h0)
    rng = np.random.default_rng(6)
    dy, dh = rng.standard_normal(out.shape), rng.standard_normal(h0.shape)
    dx, dh0, grads = layer.vjp_state(cache, dy, dh)
    hs = np.concatenate([h0, out])  # h₋₁ = h₀ (PyTorch's h0), then h₀ … h_{L−1}
    g = dy.copy()
    g[-1] += dh[0]
    da = g * (1 - out**2)
    w_ih, w_hh = layer.weight_ih_l0.data, layer.weight_hh_l0.data
    np.testing.assert_allclose(grads["weight_ih_l0"], np.einsum("tnh,tni->hi", da, x), rtol=1e-12)
    np.testing.assert_allclose(grads["weight_hh_l0"], np.einsum("tnh,tnj->hj", da, hs[:-1]), rtol=1e-12)
    np.testing.assert_allclose(grads["bias_hh_l0"], da.sum((0, 1)), rtol=1e-12)
    np.testing.assert_allclose(dx, da @ w_ih, rtol=1e-12)
    np.testing.assert_allclose(dh0[0], da[0] @ w_hh, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_truncation_equals_chunks_with_constant_initial_states(kind: str) -> None:
    # L = 6, k = 2: the sequence cut into 3 chunks, each run from the full run's state at its start
    # (a constant), has gradients summing to the truncated gradient.
    k, L = 2, 6
    layer = make(kind, 2, bidirectional=True, bptt_truncate=k)
    x, _, _ = data(layer, L)
    out, final, cache = layer.forward_state(x)
    rng = np.random.default_rng(7)
    dy = rng.standard_normal(out.shape)
    dfinal = state_of(kind, rng.standard_normal(final[0].shape if kind == "lstm" else final.shape),
                      rng.standard_normal(final[0].shape if kind == "lstm" else final.shape))
    dx, _, grads = layer.vjp_state(cache, dy, dfinal)

    plain = make(kind, 2, bidirectional=True)
    plain.load_state_dict(layer.state_dict())
    # the states at chunk boundaries, per (layer, direction), from each direction's own cache
    total = {name: np.zeros_like(g) for name, g in grads.items()}
    dx_chunks = np.zeros_like(dx)
    D = 2
    for start in range(0, L, k):
        stop = start + k
        h_init = np.stack([c.hs[start] if not c.reverse else c.hs[L - stop] for c in cache.dirs])
        c_init = (np.stack([c.cs[start] if not c.reverse else c.cs[L - stop] for c in cache.dirs])
                  if kind == "lstm" else h_init)
        # the reverse direction's chunk state at scan index L − stop = its state before reading x[stop − 1]
        o, _, cc = plain.forward_state(x[start:stop], state_of(kind, h_init, c_init))
        np.testing.assert_allclose(o, out[start:stop], rtol=1e-12, atol=1e-14)
        # final-state gradient: the forward direction's last chunk ends at L, the reverse one's first chunk at 0
        dh_part = np.zeros((D * 2, N, H))
        dc_part = np.zeros((D * 2, N, H))
        dh_full, dc_full = dfinal if kind == "lstm" else (dfinal, dfinal)
        for j in range(D * 2):
            if (j % 2 == 0 and stop == L) or (j % 2 == 1 and start == 0):
                dh_part[j], dc_part[j] = dh_full[j], dc_full[j]
        dxc, _, gc = plain.vjp_state(cc, dy[start:stop], state_of(kind, dh_part, dc_part))
        dx_chunks[start:stop] = dxc
        for name in total:
            total[name] += gc[name]
    np.testing.assert_allclose(dx, dx_chunks, rtol=1e-10, atol=1e-13)
    for name in grads:
        np.testing.assert_allclose(grads[name], total[name], rtol=1e-10, atol=1e-13, err_msg=name)


def test_truncation_changes_the_gradient() -> None:
    layer = make("gru", bptt_truncate=None)
    x, _, _ = data(layer, 6)
    y, cache = layer.forward(x)
    dy = np.zeros_like(y)
    dy[-1] = 1.0  # only the last step's output: with k = 2 no gradient reaches x beyond the last chunk
    dx_full, _ = layer.vjp(cache, dy)
    layer.bptt_truncate = 2
    dx_cut, _ = layer.vjp(cache, dy)
    assert np.all(dx_full[:4] != 0) and np.all(dx_cut[:4] == 0)
    np.testing.assert_allclose(dx_cut[4:], dx_full[4:], rtol=1e-12)  # the last chunk is not cut inside


# -- save / load, errors ----------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path: Path) -> None:
    model = nn.Sequential(
        LSTM(I, H, 2, batch_first=True, bidirectional=True, dropout=0.25, bptt_truncate=3, rng=0),
        GRU(2 * H, H, batch_first=True, rng=1), RNN(H, 2, nonlinearity="relu", bias=False, batch_first=True, rng=2),
        LastStep(), nn.Linear(2, 3, rng=3),
    )
    path = nn.save(model, tmp_path / "rnn.npz")
    loaded = nn.load(path)
    assert repr(loaded) == repr(model)
    x = np.random.default_rng(0).standard_normal((N, 5, I)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))
    lstm = loaded[0]
    assert isinstance(lstm, LSTM) and lstm.bptt_truncate == 3 and lstm.dropout == 0.25
    assert isinstance(loaded[2], RNN) and loaded[2].nonlinearity == "relu"
    single = nn.load(nn.save(GRU(2, 3, dtype=np.float64), tmp_path / "gru.npz"))
    assert isinstance(single, GRU) and single.dtype == np.float64


def test_clear_errors() -> None:
    gru = GRU(I, H, batch_first=True)
    with pytest.raises(ValueError, match=r"expected a 3-D batch \(N, L, H_in\)"):
        gru.forward(np.zeros((5, I)))
    with pytest.raises(ValueError, match="expected 3"):
        gru.forward(np.zeros((N, 5, I + 1)))
    with pytest.raises(ValueError, match="empty sequence"):
        gru.forward(np.zeros((N, 0, I)))
    with pytest.raises(ValueError, match=r"expected \(D·num_layers, N, hidden_size\) = \(1, 2, 4\)"):
        gru.forward_state(np.zeros((N, 5, I)), np.zeros((2, N, H)))
    with pytest.raises(TypeError, match="pair"):
        LSTM(I, H).forward_state(np.zeros((5, N, I)), np.zeros((1, N, H)))
    with pytest.raises(TypeError, match="one array"):
        gru.forward_state(np.zeros((N, 5, I)), (np.zeros((1, N, H)), np.zeros((1, N, H))))
    y, cache = gru.forward(np.zeros((N, 5, I)))
    with pytest.raises(ValueError, match=r"dy\.shape"):
        gru.vjp(cache, np.zeros((N, 4, H)))
    with pytest.raises(ValueError, match=r"dh_n\.shape"):
        gru.vjp_state(cache, np.zeros(y.shape), np.zeros((N, H)))
    with pytest.raises(ValueError, match="proj_size"):
        LSTM(I, H, proj_size=2)
    with pytest.raises(ValueError, match="nonlinearity"):
        RNN(I, H, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size"):
        GRU(I, 0)
    with pytest.raises(ValueError, match="num_layers"):
        GRU(I, H, num_layers=0)
    with pytest.raises(ValueError, match="dropout"):
        GRU(I, H, 2, dropout=1.5)
    with pytest.raises(TypeError, match="batch_first"):
        GRU(I, H, batch_first="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bptt_truncate"):
        GRU(I, H, bptt_truncate=0)
    with pytest.raises(ValueError, match="bptt_truncate"):
        gru.bptt_truncate = -2
    with pytest.warns(UserWarning, match="no effect"):
        GRU(I, H, dropout=0.5)


def test_fit_trains_with_truncated_bptt_and_restores_the_setting() -> None:
    import nablanet as nn

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 6, 2)), rng.integers(0, 2, 16)

    def trained(k: int | None) -> dict[str, np.ndarray]:
        gru = nn.GRU(2, 3, batch_first=True, dtype=np.float64, rng=1)
        model = nn.Sequential(gru, nn.LastStep(), nn.Linear(3, 2, dtype=np.float64, rng=2))
        nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.5), train=(x, y), epochs=2,
               batch_size=8, seed=0, bptt_truncate=k)
        assert gru.bptt_truncate is None
        return model.state_dict()

    full, long_cut, short_cut = trained(None), trained(6), trained(1)
    for k in full:  # a cut no shorter than the sequence changes nothing; a 1-step cut changes the updates
        np.testing.assert_array_equal(long_cut[k], full[k])
    assert any(not np.allclose(short_cut[k], full[k]) for k in full)
    with pytest.raises(ValueError, match="no recurrent layer"):
        model = nn.Sequential(nn.Linear(2, 2))
        nn.fit(model, nn.MSELoss(), nn.optim.SGD(model.parameters(), lr=0.1), train=(x[:, 0], x[:, 0]),
               bptt_truncate=3)
