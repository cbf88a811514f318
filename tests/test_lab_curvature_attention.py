"""Curvature through attention, embeddings and the bilinear layer.

Hessian-vector products against PyTorch's double backward (float64, ≤ 1e-8 relative; torch runs its
explicit attention path, need_weights=True, because the fused kernel has no double backward), the
dense Hessian against torch.autograd.functional.hessian and the top eigenvalue against it, and each
attention option's rules against central differences (no torch needed).

Masks reach MultiheadAttention only as arguments of its forward (``key_padding_mask``,
``attn_mask``, ``is_causal``); a Sequential calls its children with x alone. A masked attention is
therefore a model of its own here: ``_our_hvp`` runs the lab's forward-over-reverse stage by stage
through the layers' rules (ẏ by jvp, ∇²L ẏ by loss_hvp, vjp_rop backwards), and a model without
masks goes through ``nn.lab.hvp`` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import rel_err

import nablanet as nn
from nablanet.lab import rop
from nablanet.lab._per_layer import check_rop

N, L, E, H = 2, 3, 4, 2
F64 = np.float64
Stage = tuple[str, nn.Layer, dict[str, Any]]  # (state_dict prefix, layer, forward keyword arguments)

_X = np.random.default_rng(0).standard_normal((N, L, E))
_KPM = np.array([[False, False, True], [False, True, False]])  # (N, S), True = padding key
_FLOAT_MASK = np.array([[0.0, 0.3, -np.inf], [-0.5, 0.0, 1.0], [0.2, -np.inf, 0.0]])  # (L, S), added to A
_HEAD_MASK = np.zeros((N * H, L, L), dtype=bool)
_HEAD_MASK[[0, 3], 1, 0] = True  # (N·h, L, S): one key hidden from one query in two heads
MASKS: dict[str, dict[str, Any]] = {
    "key-padding-mask": {"key_padding_mask": _KPM},
    "causal": {"is_causal": True},
    "float-attn-mask": {"attn_mask": _FLOAT_MASK},
    "per-head-bool-mask": {"attn_mask": _HEAD_MASK},
}


# -- each rule against central differences ------------------------------------------------------------------
OPTIONS: dict[str, tuple[dict[str, Any], dict[str, Any], bool]] = {  # (constructor, forward, train)
    **{name: ({}, kw, False) for name, kw in MASKS.items()},
    "float-key-padding-with-causal": ({}, {"key_padding_mask": np.where(_KPM, -np.inf, 0.4), "is_causal": True},
                                      False),
    "dropout-train-sequence-first-no-bias": ({"dropout": 0.4, "bias": False, "batch_first": False}, {}, True),
}


@pytest.mark.parametrize("option", list(OPTIONS))
def test_attention_rules_match_central_differences(option: str) -> None:
    ctor, kw, train = OPTIONS[option]
    mha = nn.MultiheadAttention(E, H, dtype=F64, rng=1, **{"batch_first": True, **ctor})
    x = _X if mha.batch_first else _X.swapaxes(0, 1).copy()

    def forward(layer: nn.Layer, xe: Any) -> tuple[Any, Any]:
        return layer.forward(xe, train=train, rng=np.random.default_rng(5), **kw)

    rows = check_rop(option, mha, x, forward, np.random.default_rng(2))
    assert [r for r in rows if r.status != "pass"] == []
    names = {"in_proj_weight", "out_proj.weight", *(() if ctor.get("bias") is False else ("in_proj_bias",
                                                                                          "out_proj.bias"))}
    assert {r.tensor for r in rows} == {"ẏ", "(dx)˙", "ẋ = None", *(f"(d{k})˙" for k in names)}


def test_cross_attention_rules_with_other_key_and_value_widths() -> None:
    """forward_qkv (kdim, vdim ≠ E: separate projection weights): the tangent is (q̇, k̇, v̇)."""
    mha = nn.MultiheadAttention(E, H, kdim=3, vdim=5, batch_first=True, dtype=F64, rng=1)
    rng = np.random.default_rng(3)
    qkv = (_X, rng.standard_normal((N, 4, 3)), rng.standard_normal((N, 4, 5)))

    def forward(layer: Any, xe: Any) -> tuple[Any, Any]:
        y, _, cache = layer.forward_qkv(*xe, key_padding_mask=np.array([[0, 0, 1, 0], [1, 0, 0, 0]], dtype=bool))
        return y, cache

    rows = check_rop("qkv", mha, qkv, forward, np.random.default_rng(2))
    assert [r for r in rows if r.status != "pass"] == []
    assert {"(dx.0)˙", "(dx.1)˙", "(dx.2)˙", "(dq_proj_weight)˙", "(dk_proj_weight)˙", "(dv_proj_weight)˙"} <= {
        r.tensor for r in rows}


def test_embedding_rules_freeze_the_padding_row() -> None:
    emb = nn.Embedding(4, 2, padding_idx=1, dtype=F64)
    idx = np.array([[1, 2, 1], [0, 2, 3]])
    _, cache = emb.forward(idx)
    wdot = np.arange(8.0).reshape(4, 2) + 1.0
    ydot = rop.jvp(emb, cache, None, {"weight": wdot})
    want = wdot[idx]
    want[idx == 1] = 0.0  # the padding row does not move
    np.testing.assert_array_equal(ydot, want)
    dydot = np.random.default_rng(0).standard_normal((2, 3, 2))
    dx, g = rop.vjp_rop(emb, cache, dydot, dydot, None, {"weight": wdot}, need_dx=True)
    assert dx.size == 0  # no tangent for indices (NO_DX)
    np.testing.assert_array_equal(g["weight"][1], 0.0)
    np.testing.assert_allclose(g["weight"][2], dydot[0, 1] + dydot[1, 1])
    # so the Hessian is symmetric, with a zero row and column for the padding row (rows 2, 3 of the flat W)
    model = nn.Sequential(emb, nn.Flatten(), nn.Linear(6, 2, dtype=F64, rng=0))
    h = nn.lab.hessian(model, nn.CrossEntropyLoss(), idx, np.array([0, 1]))
    np.testing.assert_allclose(h, h.T, rtol=0, atol=1e-12)
    assert np.all(h[2:4] == 0) and np.all(h[:, 2:4] == 0)


def test_bilinear_rules_take_a_pair_with_a_missing_part() -> None:
    bil = nn.Bilinear(3, 2, 4, dtype=F64, rng=0)
    rng = np.random.default_rng(1)
    x1, x2, t2 = rng.standard_normal((2, 3)), rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
    _, cache = bil.forward((x1, x2))
    dy, dydot = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    theta = {"weight": rng.standard_normal((4, 3, 2))}
    zero = np.zeros_like(x1)
    np.testing.assert_array_equal(rop.jvp(bil, cache, (None, t2), theta), rop.jvp(bil, cache, (zero, t2), theta))
    got = rop.vjp_rop(bil, cache, dy, dydot, (None, t2), theta)
    want = rop.vjp_rop(bil, cache, dy, dydot, (zero, t2), theta)
    for a, b in [*zip(got[0], want[0], strict=True), (got[1]["weight"], want[1]["weight"])]:
        np.testing.assert_array_equal(a, b)
    assert rop.jvp(bil, cache, None, {}) is None  # nothing moves: ẏ = 0


# -- against PyTorch's double backward ------------------------------------------------------------------------
def _our_hvp(stages: list[Stage], loss: nn.Loss, x: Any, target: Any, v: dict[str, np.ndarray]) -> dict[str, Any]:
    """H v: nn.lab.hvp on the Sequential of the stages, or, when a stage takes forward arguments (masks),
    the same forward-over-reverse run by hand through each stage's rules."""
    if not any(kw for _, _, kw in stages):
        return nn.lab.hvp(nn.Sequential(*[layer for _, layer, _ in stages]), loss, x, target, v)
    caches, h = [], x
    for _, layer, kw in stages:
        h, cache = layer.forward(h, **kw)
        caches.append(cache)
    _, lcache = loss.forward(h, target)
    thetas = [rop.child_tangents(v, prefix) for prefix, _, _ in stages]
    xdots: list[Any] = [None]  # ẋ at each stage's input: zero at the model's
    for (_, layer, _), cache, theta in zip(stages, caches, thetas, strict=True):
        xdots.append(rop.jvp(layer, cache, xdots[-1], theta))
    ydot = xdots.pop()
    dy, dydot, out = loss.vjp(lcache), rop.loss_hvp(loss, lcache, ydot), {}
    for i in range(len(stages) - 1, -1, -1):
        prefix, layer, _ = stages[i]
        dx, _ = layer.vjp(caches[i], dy, need_dx=i > 0)  # the primal dy of the stage below
        dydot, grads = rop.vjp_rop(layer, caches[i], dy, dydot, xdots[i], thetas[i], need_dx=i > 0)
        out.update(rop.prefixed(prefix, grads))
        dy = dx
    return out


def _torch_stage(tc: Any, prefix: str, layer: nn.Layer, kw: dict[str, Any], p: dict[str, Any], h: Any) -> Any:
    """Our stage in torch.nn.functional, on the parameter tensors ``p`` (by our state_dict names)."""
    def param(name: str) -> Any:
        return p.get(f"{prefix}.{name}")

    if isinstance(layer, nn.Embedding):
        return tc.nn.functional.embedding(h, param("weight"), padding_idx=layer.padding_idx)
    if isinstance(layer, nn.Flatten):
        return h.flatten(1)
    if isinstance(layer, nn.Linear):
        return tc.nn.functional.linear(h, param("weight"), param("bias"))
    assert isinstance(layer, nn.MultiheadAttention) and layer.batch_first and layer.dropout == 0.0
    masks = {k: tc.tensor(m) for k, m in kw.items() if k != "is_causal"}
    if kw.get("is_causal"):
        masks["attn_mask"] = tc.tensor(np.triu(np.ones((h.shape[1],) * 2, dtype=bool), k=1))
    q = h.transpose(0, 1)  # torch's functional form is sequence first
    y, _ = tc.nn.functional.multi_head_attention_forward(
        q, q, q, layer.embed_dim, layer.num_heads, param("in_proj_weight"), param("in_proj_bias"), None, None, False,
        0.0, param("out_proj.weight"), param("out_proj.bias"), training=False, need_weights=True, **masks)
    return y.transpose(0, 1)


def _torch_hvp(tc: Any, f: Callable[[dict[str, Any]], Any], params: dict[str, np.ndarray],
               v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(∇θ ⟨∇θ f, v⟩) by torch.autograd.grad with create_graph=True."""
    p = {k: tc.tensor(a, requires_grad=True) for k, a in params.items()}
    g = tc.autograd.grad(f(p), list(p.values()), create_graph=True)
    gv = sum((gi * tc.tensor(v[k])).sum() for gi, k in zip(g, p, strict=True))
    hv = tc.autograd.grad(gv, list(p.values()), allow_unused=True)
    return {k: np.zeros_like(params[k]) if t is None else t.numpy() for k, t in zip(p, hv, strict=True)}


def _compare_with_torch(stages: list[Stage], x: Any, target: np.ndarray,
                        frozen: dict[str, int] | None = None) -> float:
    """Relative error of our H v against torch's, on a cross-entropy loss, v random (0 on frozen rows)."""
    tc = pytest.importorskip("torch")
    params = {f"{pre}.{k}": p.data for pre, layer, _ in stages for k, p in layer.named_parameters()}
    rng = np.random.default_rng(4)
    v = {k: rng.standard_normal(a.shape) for k, a in params.items()}
    for name, row in (frozen or {}).items():
        v[name][row] = 0.0

    def f(p: dict[str, Any]) -> Any:
        h = tc.as_tensor(x)
        for prefix, layer, kw in stages:
            h = _torch_stage(tc, prefix, layer, kw, p, h)
        return tc.nn.functional.cross_entropy(h, tc.as_tensor(target))

    ours, want = _our_hvp(stages, nn.CrossEntropyLoss(), x, target, v), _torch_hvp(tc, f, params, v)
    for name, row in (frozen or {}).items():  # torch's vᵀ∂(dW)/∂W has the frozen row; the Hessian has zeros
        assert np.all(ours[name][row] == 0.0)
        want[name][row] = 0.0
    assert set(ours) == set(want)
    return rel_err(np.concatenate([ours[k].ravel() for k in want]), np.concatenate([w.ravel() for w in want.values()]))


def _mha_stages(mask: dict[str, Any]) -> list[Stage]:
    return [("0", nn.MultiheadAttention(E, H, batch_first=True, dtype=F64, rng=1), mask), ("1", nn.Flatten(), {}),
            ("2", nn.Linear(L * E, 3, dtype=F64, rng=2), {})]


def _randomize_biases(stages: list[Stage]) -> None:
    """PyTorch's init zeroes the attention biases; give them values so that their terms are exercised."""
    rng = np.random.default_rng(6)
    for _, layer, _ in stages:
        for name, p in layer.named_parameters():
            if name.endswith("bias"):
                p.data[...] = 0.3 * rng.standard_normal(p.shape)


@pytest.mark.parametrize("mask", ["none", "key-padding-mask", "causal", "float-attn-mask"])
def test_attention_hvp_matches_torch(mask: str) -> None:
    stages = _mha_stages(MASKS.get(mask, {}))
    _randomize_biases(stages)
    assert _compare_with_torch(stages, _X, np.array([0, 2])) <= 1e-8


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "padding-keys-masked"])
def test_embedding_attention_hvp_matches_torch(masked: bool) -> None:
    """Embedding(padding_idx) → attention → Flatten → Linear; tokens include the padding index, whose
    row is frozen (v[pad] = 0, and torch's row at pad is not compared: see rules/embedding.py)."""
    idx = np.array([[2, 5, 1], [3, 1, 4]])
    pad = 1
    stages = [("0", nn.Embedding(6, E, padding_idx=pad, dtype=F64, rng=0), {}),
              *[(str(int(p) + 1), layer, kw) for p, layer, kw in _mha_stages({"key_padding_mask": idx == pad}
                                                                             if masked else {})]]
    _randomize_biases(stages)
    assert _compare_with_torch(stages, idx, np.array([1, 0]), frozen={"0.weight": pad}) <= 1e-8


def test_pair_bilinear_hvp_matches_torch() -> None:
    tc = pytest.importorskip("torch")
    model = nn.Sequential(nn.Pair(nn.Linear(3, 4, dtype=F64, rng=0), nn.Linear(3, 2, dtype=F64, rng=1)),
                          nn.Bilinear(4, 2, 3, dtype=F64, rng=2))
    rng = np.random.default_rng(5)
    x, target = rng.standard_normal((N, 3)), np.array([0, 2])
    params = {k: p.data for k, p in model.named_parameters()}
    v = {k: rng.standard_normal(a.shape) for k, a in params.items()}

    def f(p: dict[str, Any]) -> Any:
        lin, xt = tc.nn.functional.linear, tc.as_tensor(x)
        y = tc.nn.functional.bilinear(lin(xt, p["0.0.weight"], p["0.0.bias"]), lin(xt, p["0.1.weight"], p["0.1.bias"]),
                                      p["1.weight"], p["1.bias"])
        return tc.nn.functional.cross_entropy(y, tc.as_tensor(target))

    ours, want = nn.lab.hvp(model, nn.CrossEntropyLoss(), x, target, v), _torch_hvp(tc, f, params, v)
    assert rel_err(np.concatenate([ours[k].ravel() for k in want]),
                   np.concatenate([w.ravel() for w in want.values()])) <= 1e-8


def test_attention_hessian_and_top_eigenvalue_match_torch() -> None:
    """The dense Hessian (P = 76) against torch.autograd.functional.hessian; Lanczos's top eigenvalue."""
    tc = pytest.importorskip("torch")
    stages: list[Stage] = [("0", nn.MultiheadAttention(E, H, bias=False, batch_first=True, dtype=F64, rng=1), {}),
                           ("1", nn.Flatten(), {}), ("2", nn.Linear(L * E, 1, bias=False, dtype=F64, rng=2), {})]
    model = nn.Sequential(*[layer for _, layer, _ in stages])
    target = np.array([[0.5], [-1.0]])
    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat0 = nn.lab.flatten_params(dict(model.named_parameters()), model)

    def f(flat: Any) -> Any:
        parts = tc.split(flat, [int(np.prod(s)) for s in shapes])
        p = {k: t.reshape(s) for k, t, s in zip(names, parts, shapes, strict=True)}
        h = tc.as_tensor(_X)
        for prefix, layer, kw in stages:
            h = _torch_stage(tc, prefix, layer, kw, p, h)
        return tc.nn.functional.mse_loss(h, tc.as_tensor(target))

    threads = tc.get_num_threads()
    tc.set_num_threads(1)  # 77 backward passes of tiny matrices: threads only spin-wait (seconds on a busy machine)
    try:
        want = tc.autograd.functional.hessian(f, tc.tensor(flat0)).numpy()
    finally:
        tc.set_num_threads(threads)
    got = nn.lab.hessian(model, nn.MSELoss(), _X, target)
    assert got.shape == (76, 76)
    assert rel_err(got, want) <= 1e-8
    top = nn.lab.hessian_eigenvalues(model, nn.MSELoss(), _X, target, k=1)[0]
    assert abs(top - np.linalg.eigvalsh(want)[-1]) <= 1e-8 * abs(np.linalg.eigvalsh(want)[-1])
