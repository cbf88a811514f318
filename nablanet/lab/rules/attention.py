"""Lab rules for ``MultiheadAttention`` (``layers/attention.py``), a container: in-projection and
attention are its own, then the child ``out_proj`` (a Linear, through its own rules).

Index letters as in the layer: n batch, h head, l target position, s source position, d head dim,
E = h·d; r is a role (query, key, value) and R its projection (Q, K or V), a its input (q, k or v).
Everything below is batch first; the caller's layout is converted at the rule's edges.

Forward (jvp):
    Ṙ = ȧ W_rᵀ + a Ẇ_rᵀ + ḃ_r  (N, T, E), split into heads  (Ẇ_r, ḃ_r: rows of θ̇["in_proj_weight"], …)
    Ȧ = (Q̇ Kᵀ + Q K̇ᵀ)/√d        Ṗ = P ⊙ (Ȧ − ⟨P, Ȧ⟩)  (softmax's tangent, ⟨·,·⟩ over s)
    Ȯ = Ṗ̃ V + P̃ V̇  with Ṗ̃ = Ṗ ⊙ m/(1 − p)  (the dropout mask m is fixed by the cache)
    ẏ = out_proj's jvp at Ȯ, θ̇["out_proj.*"]
Backward (vjp_rop), the tangent of the layer's VJP line by line (dO and (dO)˙ from out_proj's VJP and
vjp_rop; dP, dA, dQ, dK, dV the primal VJP, ``attention_scores_vjp``):
    (dP̃)˙ = (dO)˙ Vᵀ + dO V̇ᵀ        (dV)˙ = Ṗ̃ᵀ dO + P̃ᵀ (dO)˙        (dP)˙ = (dP̃)˙ ⊙ m/(1 − p)
    (dA)˙ = Ṗ ⊙ (dP − ⟨dP, P⟩) + P ⊙ ((dP)˙ − ⟨(dP)˙, P⟩ − ⟨dP, Ṗ⟩)   (softmax's, shared with Softmax)
    (dQ)˙ = ((dA)˙ K + dA K̇)/√d     (dK)˙ = ((dA)˙ᵀ Q + dAᵀ Q̇)/√d
    (dW_r)˙ = Σₙₜ (dR)˙ ⊗ a + dR ⊗ ȧ     (db_r)˙ = Σₙₜ (dR)˙     (da)˙ = (dR)˙ W_r + dR Ẇ_r
Self-attention (``forward(x)``, every model) has q = k = v = x, so ȧ = ẋ for all roles and
(dx)˙ = (dq)˙ + (dk)˙ + (dv)˙; after ``forward_qkv`` (cross-attention, kdim or vdim ≠ E included) the
input tangent is the triple (q̇, k̇, v̇), parts None for zero, and (dx)˙ the triple.

Masks (key padding, causal, bool or float ``attn_mask``) are constants added to A: they have no
tangent, and P = 0 on a key masked with −∞, so Ṗ, Ṗ̃ and (dA)˙ are 0 there. No rule reads A, so an
infinity never meets arithmetic. Covered: every option the layer accepts (bias or not, batch_first,
dropout in train mode with the cache's mask, kdim/vdim via ``forward_qkv``); the layer itself
refuses ``add_bias_kv`` and ``add_zero_attn``, which nablanet does not have.
θ̇ and (dθ)˙ use the layer's state_dict names: ``in_proj_weight`` (or ``q/k/v_proj_weight``),
``in_proj_bias``, ``out_proj.weight``, ``out_proj.bias``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from nablanet.lab import rop
from nablanet.lab.registry import jvp_rules, vjp_rop_rules
from nablanet.lab.rop import Tangents, add
from nablanet.lab.rules.softmax import softmax_tangent, softmax_vjp_tangent
from nablanet.layers.attention import (
    AttentionCache,
    MultiheadAttention,
    MultiheadAttentionCache,
    attention_scores_vjp,
    bias_grad,
    join_heads,
    split_heads,
    weight_grad,
)
from nablanet.layers.base import NO_DX

_Maybe = np.ndarray | None


class _Forward(NamedTuple):
    """The forward tangents of one attention pass (None: zero), batch first."""

    inputs: list[_Maybe]  # q̇, k̇, v̇  (N, T, ·)
    heads: list[_Maybe]  # Q̇, K̇, V̇ split into heads  (N, h, T, d)
    Pdot: _Maybe  # Ṗ  (N, h, L, S), before dropout
    Odot: _Maybe  # Ȯ  (N, L, E), the heads joined: out_proj's input tangent


def _input_tangents(layer: MultiheadAttention, c: AttentionCache, xdot: Any) -> list[_Maybe]:
    """(q̇, k̇, v̇) batch first, from ẋ (self-attention) or the triple (q̇, k̇, v̇) (forward_qkv)."""
    if xdot is None:
        return [None, None, None]
    if c.self_attention:
        x = layer._dy_batch_first(xdot)
        return [x, x, x]
    if not isinstance(xdot, tuple | list) or len(xdot) != 3:
        raise TypeError("MultiheadAttention after forward_qkv takes the input tangent as the triple (q̇, k̇, v̇) or "
                        f"None; got {type(xdot).__name__}.")
    return [None if t is None else layer._dy_batch_first(t) for t in xdot]


def _projection_tangent(layer: MultiheadAttention, a: np.ndarray, adot: _Maybe, role: int,
                        thetadot: Tangents) -> _Maybe:
    """Ṙ = ȧ W_rᵀ + a Ẇ_rᵀ + ḃ_r  (N, T, E) for one role."""
    wdot, bdot = layer._role(thetadot, role)
    rdot = None if adot is None else adot @ layer._w(role).T
    if wdot is not None:
        rdot = add(rdot, a @ wdot.T)
    if bdot is not None and layer.in_proj_bias is not None:
        rdot = add(rdot, np.broadcast_to(bdot, (*a.shape[:-1], layer.embed_dim)))
    return rdot


def _attention_tangent(c: AttentionCache, Qdot: _Maybe, Kdot: _Maybe, Vdot: _Maybe) -> tuple[_Maybe, _Maybe]:
    """(Ṗ, Ȯ per head): Ȧ = (Q̇ Kᵀ + Q K̇ᵀ)/√d, Ṗ = P ⊙ (Ȧ − ⟨P, Ȧ⟩), Ȯ = Ṗ̃ V + P̃ V̇."""
    scale = 1.0 / math.sqrt(c.Q.shape[-1])
    Adot = add(None if Qdot is None else Qdot @ c.K.swapaxes(-1, -2),
               None if Kdot is None else c.Q @ Kdot.swapaxes(-1, -2))
    Pdot = None if Adot is None else softmax_tangent(c.P, Adot * scale, axis=-1)
    Pd_dot = Pdot if Pdot is None or c.drop is None else Pdot * c.drop
    Odot = add(None if Pd_dot is None else Pd_dot @ c.V, None if Vdot is None else c.Pd @ Vdot)
    return Pdot, Odot


def _forward_tangents(layer: MultiheadAttention, c: AttentionCache, xdot: Any, thetadot: Tangents) -> _Forward:
    """Every forward tangent up to out_proj's input, from ẋ and the in-projection's θ̇."""
    inputs = _input_tangents(layer, c, xdot)
    proj = [_projection_tangent(layer, a, adot, r, thetadot)
            for r, (a, adot) in enumerate(zip((c.q, c.k, c.v), inputs, strict=True))]
    heads = [None if t is None else split_heads(t, layer.num_heads) for t in proj]
    Pdot, Odot = _attention_tangent(c, *heads)
    return _Forward(inputs, heads, Pdot, None if Odot is None else join_heads(Odot))


@jvp_rules.register(MultiheadAttention)
def _jvp_attention(layer: MultiheadAttention, cache: MultiheadAttentionCache, xdot: Any,
                   thetadot: Tangents) -> np.ndarray | None:
    """ẏ = out_proj's jvp at Ȯ (the equations are in the module docstring), in the caller's layout."""
    f = _forward_tangents(layer, cache.attn, xdot, thetadot)
    ydot = rop.jvp(layer.out_proj, cache.out, f.Odot, rop.child_tangents(thetadot, "out_proj"))
    return None if ydot is None else layer._layout(ydot)


def _scores_vjp_tangent(c: AttentionCache, f: _Forward, dO: np.ndarray, dOdot: np.ndarray, dP: np.ndarray,
                        dA: np.ndarray) -> list[np.ndarray]:
    """((dQ)˙, (dK)˙, (dV)˙) per head: the tangent of ``attention_scores_vjp`` line by line (dP, dA its own)."""
    scale = 1.0 / math.sqrt(c.Q.shape[-1])
    Qdot, Kdot, Vdot = f.heads
    Pd_dot = f.Pdot if f.Pdot is None or c.drop is None else f.Pdot * c.drop
    dPd_dot = add(dOdot @ c.V.swapaxes(-1, -2), None if Vdot is None else dO @ Vdot.swapaxes(-1, -2))
    dV_dot = add(c.Pd.swapaxes(-1, -2) @ dOdot, None if Pd_dot is None else Pd_dot.swapaxes(-1, -2) @ dO)
    dP_dot = dPd_dot if c.drop is None else dPd_dot * c.drop
    dA_dot = softmax_vjp_tangent(c.P, f.Pdot, dP, dP_dot, axis=-1)
    dQ_dot = add(dA_dot @ c.K, None if Kdot is None else dA @ Kdot) * scale
    dK_dot = add(dA_dot.swapaxes(-1, -2) @ c.Q, None if Qdot is None else dA.swapaxes(-1, -2) @ Qdot) * scale
    return [dQ_dot, dK_dot, dV_dot]


def _projection_vjp_tangent(
    layer: MultiheadAttention, c: AttentionCache, f: _Forward, dR: list[np.ndarray], dR_dot: list[np.ndarray],
    thetadot: Tangents, need_dx: bool,
) -> tuple[Any, dict[str, np.ndarray]]:
    """(dW_r)˙ = Σ (dR)˙ ⊗ a + dR ⊗ ȧ,  (db_r)˙ = Σ (dR)˙,  (da)˙ = (dR)˙ W_r + dR Ẇ_r  (dR with heads joined)."""
    roles = list(zip((c.q, c.k, c.v), f.inputs, dR, dR_dot, strict=True))
    dWs = [add(weight_grad(gdot, a, False), None if adot is None else weight_grad(g, adot, False))
           for a, adot, g, gdot in roles]
    grads = layer._in_proj_grads(dWs, [bias_grad(gdot, False) for gdot in dR_dot])
    if not need_dx:
        return NO_DX, grads
    dxs = []
    for r, (g, gdot) in enumerate(zip(dR, dR_dot, strict=True)):
        wdot, _ = layer._role(thetadot, r)
        dxs.append(layer._layout(add(gdot @ layer._w(r), None if wdot is None else g @ wdot)))
    return (dxs[0] + dxs[1] + dxs[2] if c.self_attention else tuple(dxs)), grads


@vjp_rop_rules.register(MultiheadAttention)
def _rop_attention(
    layer: MultiheadAttention, cache: MultiheadAttentionCache, dy: np.ndarray, dydot: np.ndarray, xdot: Any,
    thetadot: Tangents, need_dx: bool,
) -> tuple[Any, dict[str, np.ndarray]]:
    """out_proj's vjp_rop gives (dO)˙, then the attention and in-projection tangents (module docstring)."""
    c = cache.attn
    dyb, dydot_b = layer._dy_batch_first(dy), layer._dy_batch_first(dydot)
    f = _forward_tangents(layer, c, xdot, thetadot)
    dO, _ = layer.out_proj.vjp(cache.out, dyb)
    dOdot, out_grads = rop.vjp_rop(layer.out_proj, cache.out, dyb, dydot_b, f.Odot,
                                   rop.child_tangents(thetadot, "out_proj"), need_dx=True)
    h = layer.num_heads
    dP, dA, *dRh = attention_scores_vjp(c, split_heads(dO, h))
    dR_dot = [join_heads(t) for t in _scores_vjp_tangent(c, f, split_heads(dO, h), split_heads(dOdot, h), dP, dA)]
    dR = [join_heads(t) for t in dRh]
    dxdot, grads = _projection_vjp_tangent(layer, c, f, dR, dR_dot, thetadot, need_dx)
    return dxdot, {**grads, **rop.prefixed("out_proj", out_grads)}
