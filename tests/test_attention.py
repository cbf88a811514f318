"""MultiheadAttention: PyTorch parity over a table, finite differences, masks, vector axes, per-sample, tape."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from helpers import check_layer_fd, numeric_grad, rel_err

import nablanet as nn
from nablanet.layers.attention import AttentionCache, MultiheadAttention
from nablanet.layers.graph import Residual

F64 = np.float64
N, L, S = 3, 4, 5

# name → options: E, heads, bias, kdim, vdim, batch_first, mode ("self"/"cross"), masks, average weights
BASE: dict[str, Any] = {"E": 8, "h": 2, "bias": True, "kdim": None, "vdim": None, "bf": True, "mode": "cross",
                        "kpm": None, "mask": None, "causal": False, "avg": True}
CASES: dict[str, dict[str, Any]] = {
    "self_bf_h1": {"mode": "self", "h": 1},
    "self_bf_h2": {"mode": "self"},
    "self_bf_h4": {"mode": "self", "h": 4},
    "self_seq_h1": {"mode": "self", "bf": False, "h": 1},
    "self_seq_h2": {"mode": "self", "bf": False},
    "self_seq_h4": {"mode": "self", "bf": False, "h": 4},
    "self_nobias": {"mode": "self", "bias": False},
    "self_seq_nobias_h4": {"mode": "self", "bf": False, "bias": False, "h": 4},
    "self_causal": {"mode": "self", "causal": True},
    "self_seq_causal_kpm": {"mode": "self", "bf": False, "causal": True, "kpm": "bool"},
    "self_kpm_bool": {"mode": "self", "kpm": "bool"},
    "self_mask_bool_h4": {"mode": "self", "mask": "bool", "h": 4},
    "self_mask_float": {"mode": "self", "mask": "float"},
    "cross_bf_h1": {"h": 1},
    "cross_bf_h2": {},
    "cross_bf_h4": {"h": 4},
    "cross_seq_h2": {"bf": False},
    "cross_seq_h4_nobias": {"bf": False, "h": 4, "bias": False},
    "cross_kdim_vdim": {"kdim": 3, "vdim": 5},
    "cross_seq_kdim_vdim_nobias": {"kdim": 6, "vdim": 2, "bf": False, "bias": False},
    "cross_kdim_only_h4": {"kdim": 3, "h": 4},
    "cross_kpm_bool": {"kpm": "bool"},
    "cross_kpm_float": {"kpm": "float"},
    "cross_mask_bool": {"mask": "bool"},
    "cross_mask_float_kpm_bool": {"mask": "float", "kpm": "bool"},
    "cross_mask_3d_float": {"mask": "3d"},
    "cross_seq_mask_3d_bool_h4": {"mask": "3dbool", "bf": False, "h": 4},
    "cross_causal": {"causal": True},
    "cross_causal_kpm_per_head_weights": {"causal": True, "kpm": "bool", "avg": False},
}
IDS = list(CASES)


def _opts(name: str) -> dict[str, Any]:
    return {**BASE, **CASES[name]}


def _make(o: dict[str, Any], dtype: Any = F64, seed: int = 0) -> MultiheadAttention:
    m = MultiheadAttention(o["E"], o["h"], bias=o["bias"], kdim=o["kdim"], vdim=o["vdim"], batch_first=o["bf"],
                           dtype=dtype, rng=seed)
    rng = np.random.default_rng(seed + 100)
    for p in m.parameters():  # biases start at zero: perturb everything so every gradient is exercised
        p.data += (0.1 * rng.standard_normal(p.shape)).astype(p.dtype)
    return m


def _data(o: dict[str, Any], seed: int = 1) -> dict[str, Any]:
    """Inputs in the caller's layout and the masks, float64."""
    rng = np.random.default_rng(seed)
    src = L if o["mode"] == "self" else S
    E = o["E"]

    def layout(a: np.ndarray) -> np.ndarray:
        return a if o["bf"] else np.ascontiguousarray(a.swapaxes(0, 1))

    q = layout(rng.standard_normal((N, L, E)))
    k = q if o["mode"] == "self" else layout(rng.standard_normal((N, src, o["kdim"] or E)))
    v = q if o["mode"] == "self" else layout(rng.standard_normal((N, src, o["vdim"] or E)))
    kpm = None
    if o["kpm"] == "bool":
        kpm = np.zeros((N, src), dtype=bool)
        kpm[0, -2:] = True
        kpm[2, -1] = True
    elif o["kpm"] == "float":
        kpm = rng.standard_normal((N, src))
    mask = None
    if o["mask"] == "bool":
        mask = rng.random((L, src)) < 0.4
        mask[:, 0] = False  # every query keeps a key
    elif o["mask"] == "float":
        mask = rng.standard_normal((L, src))
    elif o["mask"] == "3d":
        mask = rng.standard_normal((N * o["h"], L, src))
    elif o["mask"] == "3dbool":
        mask = rng.random((N * o["h"], L, src)) < 0.4
        mask[..., 0] = False
    return {"q": q, "k": k, "v": v, "kpm": kpm, "mask": mask}


def _ours(m: MultiheadAttention, o: dict[str, Any], d: dict[str, Any], train: bool = False,
          rng: Any = None) -> tuple[np.ndarray, np.ndarray | None, Any]:
    """(y, weights, cache) in the mode of the case: forward(x) for self-attention, forward_qkv for cross."""
    kw = {"key_padding_mask": d["kpm"], "attn_mask": d["mask"], "is_causal": o["causal"]}
    if o["mode"] == "self":
        y, cache = m.forward(d["q"], train=train, rng=rng, **kw)
        return y, None, cache
    return m.forward_qkv(d["q"], d["k"], d["v"], average_attn_weights=o["avg"], train=train, rng=rng, **kw)


def _torch_mask(torch: Any, o: dict[str, Any], d: dict[str, Any], src: int) -> Any:
    if o["causal"]:
        return torch.triu(torch.ones(L, src, dtype=torch.bool), diagonal=1)
    return None if d["mask"] is None else torch.tensor(d["mask"])


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("name", IDS)
def test_torch_parity(name: str, dtype: type, tol: float) -> None:
    torch = pytest.importorskip("torch")
    o = _opts(name)
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    m = _make(o, dtype)
    tm = torch.nn.MultiheadAttention(o["E"], o["h"], bias=o["bias"], kdim=o["kdim"], vdim=o["vdim"],
                                     batch_first=o["bf"], dtype=tdt)
    assert list(m.state_dict()) == list(tm.state_dict())  # names, order and layouts are PyTorch's
    tm.load_state_dict({k: torch.tensor(v) for k, v in m.state_dict().items()})
    d = _data(o)
    d = {k: (v.astype(dtype) if v is not None and v.dtype.kind == "f" else v) for k, v in d.items()}
    y, w, cache = _ours(m, o, d)
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    src = L if o["mode"] == "self" else S
    tkw = {"key_padding_mask": None if d["kpm"] is None else torch.tensor(d["kpm"]),
           "attn_mask": _torch_mask(torch, o, d, src), "is_causal": o["causal"],
           "average_attn_weights": o["avg"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about a bool padding mask with a float attn_mask
        if o["mode"] == "self":
            tx = torch.tensor(d["q"], requires_grad=True)
            ty, tw = tm(tx, tx, tx, **tkw)
            ty.backward(torch.tensor(dy))
            dx, grads = m.vjp(cache, dy)
            assert rel_err(dx, tx.grad.numpy()) <= tol
            assert dx.dtype == dtype
            _, w, _ = m.forward_qkv(d["q"], d["q"], d["q"], key_padding_mask=d["kpm"], attn_mask=d["mask"],
                                    is_causal=o["causal"], average_attn_weights=o["avg"])
        else:
            tq, tk, tv = (torch.tensor(d[r], requires_grad=True) for r in "qkv")
            ty, tw = tm(tq, tk, tv, **tkw)
            ty.backward(torch.tensor(dy))
            dq, dk, dv, grads = m.vjp_qkv(cache, dy)
            for ours, t in ((dq, tq), (dk, tk), (dv, tv)):
                assert ours.dtype == dtype and ours.shape == t.shape
                assert rel_err(ours, t.grad.numpy()) <= tol
    assert y.dtype == dtype and y.shape == tuple(ty.shape)
    assert rel_err(y, ty.detach().numpy()) <= tol
    assert w is not None and w.shape == tuple(tw.shape)
    assert rel_err(w, tw.detach().numpy()) <= tol
    tgrads = dict(tm.named_parameters())
    assert set(grads) == set(tgrads)
    for k, g in grads.items():
        assert g.dtype == dtype and g.shape == tgrads[k].shape
        assert rel_err(g, tgrads[k].grad.numpy()) <= tol, k


def _fd(m: MultiheadAttention, o: dict[str, Any], d: dict[str, Any], train: bool = False) -> float:
    """Worst relative error of every input and parameter gradient against central differences."""
    y, _, cache = _ours(m, o, d, train, np.random.default_rng(9))
    dy = np.random.default_rng(3).standard_normal(y.shape)

    def f() -> float:
        return float(np.sum(_ours(m, o, d, train, np.random.default_rng(9))[0] * dy))

    if o["mode"] == "self":
        dx, grads = m.vjp(cache, dy)
        worst = rel_err(dx, numeric_grad(f, d["q"]))
    else:
        dq, dk, dv, grads = m.vjp_qkv(cache, dy)
        worst = max(rel_err(g, numeric_grad(f, d[r])) for g, r in ((dq, "q"), (dk, "k"), (dv, "v")))
    assert set(grads) == {k for k, _ in m.named_parameters()}
    for k, p in m.named_parameters():
        worst = max(worst, rel_err(grads[k], numeric_grad(f, p.data)))
    return worst


@pytest.mark.parametrize("name", IDS)
def test_finite_differences_float64(name: str) -> None:
    o = _opts(name)
    assert _fd(_make(o), o, _data(o)) <= 1e-6


@pytest.mark.parametrize("name", ["self_bf_h2", "cross_seq_h4_nobias", "cross_kdim_vdim"])
def test_finite_differences_with_dropout(name: str) -> None:
    # the same generator seed gives the same dropout mask in every forward, so the VJP is checkable
    o = _opts(name)
    m = MultiheadAttention(o["E"], o["h"], dropout=0.3, kdim=o["kdim"], vdim=o["vdim"], batch_first=o["bf"],
                           dtype=F64, rng=0)
    assert _fd(m, o, _data(o), train=True) <= 1e-6


def test_self_attention_in_check_layer_fd_and_as_forward_qkv() -> None:
    m = _make(_opts("self_bf_h2"))
    x = np.random.default_rng(0).standard_normal((2, 3, 8))
    assert check_layer_fd(m, x) <= 1e-6
    y, cache = m.forward(x)
    y2, _, cache2 = m.forward_qkv(x, x, x)
    np.testing.assert_allclose(y, y2, rtol=1e-14)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dx, g = m.vjp(cache, dy)
    dq, dk, dv, g2 = m.vjp_qkv(cache2, dy)
    dq1, dk1, dv1, _ = m.vjp_qkv(cache, dy)  # a self-attention cache gives the three roles too
    np.testing.assert_allclose(dx, dq + dk + dv, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dq1 + dk1 + dv1, dx, rtol=1e-12, atol=1e-14)
    for k in g:
        np.testing.assert_allclose(g[k], g2[k], rtol=1e-12, atol=1e-14)
    tdx, _ = m.vjp(cache2, dy)  # the full cache of forward_qkv through vjp: dx is the tuple
    assert isinstance(tdx, tuple) and len(tdx) == 3


@pytest.mark.parametrize("name", ["self_bf_h2", "self_seq_causal_kpm", "cross_seq_h2", "cross_kdim_vdim"])
def test_vector_axes_equal_separate_vjps(name: str) -> None:
    o = _opts(name)
    m = _make(o)
    y, _, cache = _ours(m, o, _data(o))
    dys = np.random.default_rng(3).standard_normal((2, 3, *y.shape))

    def vjp(dy: np.ndarray) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        if o["mode"] == "self":
            dx, g = m.vjp(cache, dy)
            return [dx], g
        *dxs, g = m.vjp_qkv(cache, dy)
        return dxs, g

    dxs, grads = vjp(dys)
    for a in range(2):
        for b in range(3):
            dxs1, g1 = vjp(dys[a, b])
            for big, one in zip(dxs, dxs1, strict=True):
                np.testing.assert_allclose(big[a, b], one, rtol=1e-12, atol=1e-14)
            for k in g1:
                np.testing.assert_allclose(grads[k][a, b], g1[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["self_bf_h2", "self_seq_causal_kpm", "cross_seq_kdim_vdim_nobias",
                                  "cross_kpm_bool"])
def test_per_sample_grads_sum_to_batch_and_equal_singletons(name: str) -> None:
    o = _opts(name)
    m = _make(o)
    d = _data(o)
    y, _, cache = _ours(m, o, d)
    dy = np.random.default_rng(4).standard_normal(y.shape)
    vjp = (lambda c, g, **kw: m.vjp(c, g, **kw)[1]) if o["mode"] == "self" else \
        (lambda c, g, **kw: m.vjp_qkv(c, g, **kw)[3])
    g = vjp(cache, dy)
    gn = vjp(cache, dy, per_sample=True)
    bax = 0 if o["bf"] else 1  # the batch axis of the caller's arrays; per-sample grads put N first regardless
    for k in g:
        assert gn[k].shape == (N, *g[k].shape)
        np.testing.assert_allclose(gn[k].sum(0), g[k], rtol=1e-12, atol=1e-14)
    for n in range(N):
        one = {r: np.take(d[r], [n], axis=bax) for r in "qkv"}
        one.update(kpm=None if d["kpm"] is None else d["kpm"][n : n + 1], mask=d["mask"])
        y1, _, c1 = _ours(m, o, one)
        g1 = vjp(c1, np.take(dy, [n], axis=bax))
        np.testing.assert_allclose(y1, np.take(y, [n], axis=bax), rtol=1e-12, atol=1e-14)
        for k in g:
            np.testing.assert_allclose(gn[k][n], g1[k], rtol=1e-12, atol=1e-14)


# -- in a model: the tape --------------------------------------------------------------------------------
def _model() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(3, 8, dtype=F64, rng=0),
        MultiheadAttention(8, 2, batch_first=True, dtype=F64, rng=1),
        nn.Tanh(),
        Residual(MultiheadAttention(8, 4, batch_first=True, dtype=F64, rng=2)),
        nn.Flatten(),
        nn.Linear(8 * 5, 3, dtype=F64, rng=3),
    )


def test_tape_has_the_attention_and_its_out_proj() -> None:
    model = _model()
    for p in model.parameters():
        p.data += 0.05
    x = np.random.default_rng(0).standard_normal((4, 5, 3))
    assert check_layer_fd(model, x) <= 1e-6
    y, caches = model.forward(x)
    target = np.array([0, 1, 2, 1])
    loss = nn.CrossEntropyLoss()
    value, grads = nn.value_and_grad(model, loss, x, target, train=False)
    _, lcache = loss.forward(y, target)
    tape = model.backward(caches, loss.vjp(lcache))
    assert [e.name for e in tape] == ["0", "1", "1.out_proj", "2", "3.0", "3.0.out_proj", "4", "5"]
    assert isinstance(tape[1].cache, AttentionCache) and tape[1].dy.shape == (4, 5, 8)
    assert set(tape[1].grads) == {"in_proj_weight", "in_proj_bias"}
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, grads[name], rtol=1e-12, atol=1e-15)
    for e in tape:  # what the gradient lab does: re-run an entry's VJP on its cache and dy
        _, again = e.layer.vjp(e.cache, e.dy)
        _, per = e.layer.vjp(e.cache, e.dy, per_sample=True, need_dx=False)
        for k, g in e.grads.items():
            np.testing.assert_allclose(again[k], g, rtol=1e-13, atol=1e-15)
            assert per[k].shape == (4, *g.shape)
            np.testing.assert_allclose(per[k].sum(0), g, rtol=1e-12, atol=1e-15)
    assert value > 0


def test_standalone_backward_tape() -> None:
    m = _make(_opts("self_seq_h2"))
    x = np.random.default_rng(0).standard_normal((L, N, 8))
    y, cache = m.forward(x)
    tape = m.backward(cache, np.ones_like(y))
    assert [e.name for e in tape] == ["", "out_proj"]
    assert tape[1].dy.shape == (N, L, 8)  # out_proj's entry is batch first whatever the layout
    assert m.in_proj_weight is not None and m.in_proj_weight.grad is not None
    assert m.out_proj.weight.grad is not None


# -- semantics -------------------------------------------------------------------------------------------
def test_call_like_pytorch_weights_and_masks() -> None:
    m = MultiheadAttention(8, 2, batch_first=True, dtype=F64, rng=0)
    rng = np.random.default_rng(0)
    q, kv = rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 6, 8))
    kpm = np.zeros((2, 6), dtype=bool)
    kpm[1, 4:] = True
    y, w = m(q, kv, kv, key_padding_mask=kpm)
    assert y.shape == (2, 3, 8) and w is not None and w.shape == (2, 3, 6)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-14)
    assert np.all(w[1, :, 4:] == 0.0)  # padded keys get no weight
    _, wh = m(q, kv, kv, average_attn_weights=False)
    assert wh is not None and wh.shape == (2, 2, 3, 6)
    assert m(q, kv, kv, need_weights=False)[1] is None


def test_causal_output_ignores_the_future() -> None:
    m = _make(_opts("self_bf_h2"))
    x = np.random.default_rng(0).standard_normal((2, 6, 8))
    y, _ = m.forward(x, is_causal=True)
    x2 = x.copy()
    x2[:, 4:] += 10.0  # change positions 4 and 5
    y2, _ = m.forward(x2, is_causal=True)
    np.testing.assert_allclose(y[:, :4], y2[:, :4], rtol=1e-13)
    assert not np.allclose(y[:, 4:], y2[:, 4:])
    causal = np.triu(np.ones((6, 6), dtype=bool), k=1)
    np.testing.assert_array_equal(y, m.forward(x, attn_mask=causal)[0])
    _, w, _ = m.forward_qkv(x, x, x, is_causal=True)
    assert w is not None and np.all(w[:, causal] == 0.0)


def test_hand_worked_single_head() -> None:
    # E = 2, one head, identity projections, zero biases: Q = K = V = x = [[1, 0], [0, 1]] (L = 2).
    # A = x xᵀ/√2 = [[1/√2, 0], [0, 1/√2]];  row 0: softmax([0.7071, 0]) = [e^0.7071, 1]/(e^0.7071 + 1)
    #   = [2.0281, 1]/3.0281 = [0.66976, 0.33024];  row 1 mirrored.  y = P V = P (V = I).
    m = MultiheadAttention(2, 1, batch_first=True, dtype=F64)
    eye = np.eye(2)
    m.load_state_dict({"in_proj_weight": np.vstack([eye, eye, eye]), "in_proj_bias": np.zeros(6),
                       "out_proj.weight": eye, "out_proj.bias": np.zeros(2)})
    y, w = m(eye[None], eye[None], eye[None])
    p0 = math.exp(1 / math.sqrt(2)) / (math.exp(1 / math.sqrt(2)) + 1)
    np.testing.assert_allclose(y[0], [[p0, 1 - p0], [1 - p0, p0]], rtol=1e-14)
    np.testing.assert_allclose(w[0], y[0], rtol=1e-14)  # type: ignore[index]
    assert p0 == pytest.approx(0.66976, abs=1e-5)


def test_dropout_uses_the_generator_and_only_in_training() -> None:
    m = MultiheadAttention(8, 2, dropout=0.5, batch_first=True, dtype=F64, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 8))
    a, _, _ = m.forward_qkv(x, x, x, train=True, rng=np.random.default_rng(1))
    b, _, _ = m.forward_qkv(x, x, x, train=True, rng=np.random.default_rng(1))
    c, _, _ = m.forward_qkv(x, x, x, train=True, rng=np.random.default_rng(2))
    e, w, _ = m.forward_qkv(x, x, x, train=False, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, e)
    assert w is not None
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-14)
    m.eval()
    np.testing.assert_array_equal(m(x, x, x)[0], e)


def test_init_and_names_match_pytorch() -> None:
    m = MultiheadAttention(8, 2, rng=0)
    assert list(m.state_dict()) == ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    assert m.in_proj_weight is not None and m.in_proj_weight.shape == (24, 8)
    assert np.abs(m.in_proj_weight.data).max() <= math.sqrt(6 / (24 + 8))  # Xavier uniform on (3E, E)
    assert m.in_proj_bias is not None and not m.in_proj_bias.data.any()
    assert m.out_proj.bias is not None and not m.out_proj.bias.data.any()
    assert np.abs(m.out_proj.weight.data).max() <= 1 / math.sqrt(8)
    assert m.dtype == np.float32
    m2 = MultiheadAttention(8, 2, bias=False, kdim=3, vdim=5, rng=0)
    assert list(m2.state_dict()) == ["q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj.weight"]
    assert m2.k_proj_weight is not None and m2.k_proj_weight.shape == (8, 3)


def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match=r"add_bias_kv=True\) is not supported"):
        MultiheadAttention(8, 2, add_bias_kv=True)
    with pytest.raises(ValueError, match=r"add_zero_attn=True\) is not supported"):
        MultiheadAttention(8, 2, add_zero_attn=True)
    with pytest.raises(ValueError, match=r"divisible by num_heads.*\[1, 2, 4, 8\]"):
        MultiheadAttention(8, 3)
    with pytest.raises(ValueError, match=r"dropout=1\.0"):
        MultiheadAttention(8, 2, dropout=1.0)
    with pytest.raises(ValueError, match="kdim = vdim = embed_dim; use forward_qkv"):
        MultiheadAttention(8, 2, kdim=3).forward(np.zeros((2, 3, 8)))
    m = MultiheadAttention(8, 2, batch_first=True)
    x = np.zeros((2, 3, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="Unbatched inputs are not supported"):
        m(x[0], x[0], x[0])
    with pytest.raises(ValueError, match=r"expected \(N, L, 8\)"):
        m.forward(np.zeros((2, 3, 7)))
    with pytest.raises(ValueError, match="share the batch size"):
        m.forward_qkv(x, np.zeros((3, 3, 8)), np.zeros((3, 3, 8)))
    with pytest.raises(ValueError, match=r"attn_mask.shape=\(3, 4\); expected \(L, S\) = \(3, 3\)"):
        m.forward(x, attn_mask=np.zeros((3, 4), dtype=bool))
    with pytest.raises(ValueError, match=r"key_padding_mask.shape=\(3, 3\); expected \(N, S\) = \(2, 3\)"):
        m.forward(x, key_padding_mask=np.zeros((3, 3), dtype=bool))
    with pytest.raises(TypeError, match="expected bool"):
        m.forward(x, attn_mask=np.zeros((3, 3), dtype=np.int64))
    kpm = np.zeros((2, 3), dtype=bool)
    kpm[1] = True
    with pytest.raises(ValueError, match="hide every key from some query"):
        m.forward(x, key_padding_mask=kpm)
    with pytest.raises(TypeError, match="expected the cache"):
        m.vjp([1, 2], np.zeros((2, 3, 8)))
    with pytest.raises(ValueError, match="NaN"):
        m(np.full((1, 2, 8), np.nan), x, x)
