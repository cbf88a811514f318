"""Lab rules for ``RNN``, ``GRU``, ``LSTM`` and ``LastStep`` (``layers/recurrent.py``): the forward
R-pass through time and the tangent of backpropagation through time (BPTT).

Notation of ``layers/recurrent.py`` (t time in scan order, n batch, h hidden unit, G·H stacked gates)
and of ``nablanet.lab.rop`` (a dot is d/dε along θ̇ and ẋ; dy = ∂L/∂y). The initial state h₀ (c₀) is
a constant: ḣ₀ = 0 (ċ₀ = 0), whether it is zero or was handed to ``forward_state``.

Forward R-pass (jvp), per layer k and direction d, mirroring ``RNNBase._forward_stack``:

    ẋ of layer k > 0 = [ḣ of layer k − 1's directions, in time order] ⊙ dropout mask (fixed by the forward)
    Ȧˣ = Ẋ W_ihᵀ + X Ẇ_ihᵀ + ḃ_ih                   (all steps at once, in scan order, like ``_project``)
    Ġʰₜ = ḣₜ₋₁ W_hhᵀ + hₜ₋₁ Ẇ_hhᵀ + ḃ_hh            (one GEMM per step)

then one cell JVP per cell type from (Ȧˣₜ, Ġʰₜ), reading the cached gates (see ``_rnn_cell_jvp``,
``_gru_cell_jvp``, ``_lstm_cell_jvp``). The tangents of one direction, ``_DirDot``, mirror its
``_DirCache``.

Backward R-pass (vjp_rop), mirroring ``RNNBase._vjp_stack``: the tangent of each direction's BPTT.
The primal carry dhₜ is not cached and the second-order terms need it (GRU dhₜ ⊙ żₜ, LSTM dcₜ ⊙ ḟₜ),
so each step runs the primal carry and the tangent carry together; the cell's part is its
``*_cell_rop``, giving (daˣ, daʰ) and their tangents. Around it, for every cell:

    carryₕ = direct + daʰ W_hh                       (direct: GRU's dhₜ ⊙ zₜ, else 0)
    (carryₕ)˙ = (direct)˙ + (daʰ)˙ W_hh + daʰ Ẇ_hh
    (dW_ih)˙ = Σₜₙ (daˣ)˙ᵀ x + daˣᵀ ẋ      (dW_hh)˙ = Σₜₙ (daʰ)˙ᵀ hₜ₋₁ + daʰᵀ ḣₜ₋₁
    (db_ih)˙ = Σₜₙ (daˣ)˙                 (db_hh)˙ = Σₜₙ (daʰ)˙
    (dx)˙ = (daˣ)˙ W_ih + daˣ Ẇ_ih       (into layer k − 1, times its dropout mask)

Truncated BPTT (``bptt_truncate``) is refused: its gradient is not the gradient of any loss.

``LastStep`` is a linear map, y = x[:, −1]: ẏ = ẋ[:, −1] and (dx)˙ = Jᵀ dẏ (``rop.jvp_linear_map``,
``rop.vjp_rop_fixed_jacobian``).

Shapes: x, ẋ (L, N, I) time-major inside (the layer's layout outside); ḣs (L+1, N, H) in scan order;
dy, dẏ carry one vector axis V = 1 inside, as ``_vjp_stack``'s: (L, 1, N, D·H).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from nablanet.lab.registry import activation_rules, jvp_rules, vjp_rop_rules
from nablanet.lab.rop import RopResult, Tangents, add, jvp_linear_map, vjp_rop_fixed_jacobian
from nablanet.layers.base import NO_DX
from nablanet.layers.recurrent import (
    GRU,
    LSTM,
    RNN,
    LastStep,
    LSTMStep,
    RecurrentCache,
    RNNBase,
    _DirCache,
    _layer_output,
    _project,
    _sum_tn,
    gru_step_factors,
    lstm_cell_dgates,
    lstm_gate_derivatives,
    rnn_dphi,
)

jvp_rules.register(LastStep)(jvp_linear_map)
vjp_rop_rules.register(LastStep)(vjp_rop_fixed_jacobian)


def refuse_truncated(layer: RNNBase) -> None:
    """Curvature needs the gradient of a loss; truncated BPTT's is not one, so it is refused by name."""
    k = layer.bptt_truncate
    if k is not None:
        raise ValueError(
            f"{type(layer).__name__}(bptt_truncate={k}): truncated backpropagation through time gives a gradient that "
            "is not the gradient of any loss (its Jacobian is not symmetric), so there is no Hessian to take. Fix: "
            "set bptt_truncate=None for the measurement (layer.bptt_truncate = None), outside fit(bptt_truncate=...) "
            "and truncated_bptt(...) blocks, which set it while they run."
        )


class _DirDot(NamedTuple):
    """The tangents of one direction's ``_DirCache`` fields, in scan order (None: not used by the cell)."""

    x: np.ndarray | None  # ẋ (L, N, I) in time order, like _DirCache.x (None: zero)
    hs: np.ndarray  # ḣ (L+1, N, H), ḣ₀ = 0
    acts: np.ndarray | None  # the gates' tangents (L, N, G·H): GRU [ṙ, ż, ṅ], LSTM [i̇, ḟ, ġ, ȯ]
    cs: np.ndarray | None  # LSTM ċ (L+1, N, H), ċ₀ = 0
    hn: np.ndarray | None  # GRU (W_hn hₜ₋₁ + b_hn)˙ (L, N, H)


class _StepDot(NamedTuple):
    """One step's tangents: ḣₜ, and where the cell has them ċₜ, its gates' tangents and GRU's (hn)˙."""

    h: np.ndarray
    c: np.ndarray | None = None
    acts: np.ndarray | None = None
    hn: np.ndarray | None = None


class _CellRop(NamedTuple):
    """One step's cell VJP and its tangent: daˣ, daʰ (*V, N, G·H), the direct path into dhₜ₋₁
    (GRU's dhₜ ⊙ zₜ) and LSTM's dcₜ₋₁, each with its tangent (None: the cell has no such path)."""

    dai: np.ndarray
    dah: np.ndarray
    dai_dot: np.ndarray
    dah_dot: np.ndarray
    direct: np.ndarray | None = None
    direct_dot: np.ndarray | None = None
    dc_prev: np.ndarray | None = None
    dc_prev_dot: np.ndarray | None = None


def _gates(a: np.ndarray, g: int) -> list[np.ndarray]:
    """The g gate blocks of a stacked (…, g·H) array."""
    return np.split(a, g, axis=-1)


def _lstm_step(dc: _DirCache, s: int) -> LSTMStep:
    assert dc.cs is not None and dc.tcs is not None  # an LSTM's cache
    i, f, g, o = _gates(dc.acts[s], 4)
    return LSTMStep(i, f, g, o, dc.cs[s], dc.tcs[s])


# -- cell JVPs: (Ȧˣₜ, Ġʰₜ, ḣₜ₋₁, ċₜ₋₁) → the step's tangents ------------------------------------------------
def _rnn_cell_jvp(layer: RNNBase, dc: _DirCache, s: int, ax: np.ndarray, gh: np.ndarray, h_prev: np.ndarray,
                  c_prev: np.ndarray | None) -> _StepDot:
    """hₜ = φ(aₜ):  ḣₜ = φ′(aₜ) ȧₜ,  ȧₜ = Ȧˣₜ + Ġʰₜ;  φ′ = 1 − hₜ² (tanh) or [aₜ ≥ 0] (ReLU)."""
    return _StepDot((ax + gh) * rnn_dphi(layer.mode, dc.acts[s], dc.hs[s + 1]))


def _gru_cell_jvp(layer: RNNBase, dc: _DirCache, s: int, ax: np.ndarray, gh: np.ndarray, h_prev: np.ndarray,
                  c_prev: np.ndarray | None) -> _StepDot:
    """ṙ = r(1−r)(Ȧˣ_r + Ġʰ_r)   ż = z(1−z)(Ȧˣ_z + Ġʰ_z)   (hn)˙ = Ġʰₙ = ḣₜ₋₁W_hnᵀ + hₜ₋₁Ẇ_hnᵀ + ḃ_hn
    ṅ = (1−n²)(Ȧˣₙ + ṙ ⊙ hn + r ⊙ (hn)˙)        ḣₜ = ṅ + ż ⊙ (hₜ₋₁ − n) + z ⊙ (ḣₜ₋₁ − ṅ)
    (b_hn sits inside r ⊙ (W_hn h + b_hn), so its tangent is multiplied by r.)"""
    assert dc.hn is not None  # a GRU's cache
    r, z, n = _gates(dc.acts[s], 3)
    ax_r, ax_z, ax_n = _gates(ax, 3)
    gh_r, gh_z, hn_dot = _gates(gh, 3)
    r_dot, z_dot = r * (1.0 - r) * (ax_r + gh_r), z * (1.0 - z) * (ax_z + gh_z)
    n_dot = (1.0 - n * n) * (ax_n + r_dot * dc.hn[s] + r * hn_dot)
    h_dot = n_dot + z_dot * (dc.hs[s] - n) + z * (h_prev - n_dot)
    return _StepDot(h_dot, acts=np.concatenate([r_dot, z_dot, n_dot], axis=-1), hn=hn_dot)


def _lstm_cell_jvp(layer: RNNBase, dc: _DirCache, s: int, ax: np.ndarray, gh: np.ndarray, h_prev: np.ndarray,
                   c_prev: np.ndarray | None) -> _StepDot:
    """[i̇, ḟ, ġ, ȯ] = [i(1−i), f(1−f), 1−g², o(1−o)] ⊙ (Ȧˣₜ + Ġʰₜ)
    ċₜ = ḟ cₜ₋₁ + f ċₜ₋₁ + i̇ g + i ġ        ḣₜ = ȯ tanh cₜ + o (1 − tanh²cₜ) ċₜ"""
    step = _lstm_step(dc, s)
    acts = lstm_gate_derivatives(step) * (ax + gh)
    i_dot, f_dot, g_dot, o_dot = _gates(acts, 4)
    c_dot = f_dot * step.c_prev + i_dot * step.g + step.i * g_dot
    if c_prev is not None:
        c_dot += step.f * c_prev
    h_dot = o_dot * step.tanh_c + step.o * (1.0 - step.tanh_c ** 2) * c_dot
    return _StepDot(h_dot, c_dot, acts)


CellJvp = Callable[[RNNBase, _DirCache, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None], _StepDot]


def _dir_param_tangents(thetadot: Tangents, k: int, d: int) -> list[np.ndarray | None]:
    """(Ẇ_ih, Ẇ_hh, ḃ_ih, ḃ_hh) of layer k, direction d (None: zero)."""
    return [thetadot.get(name) for name in RNNBase._param_names(k, d)]


def _dir_jvp(layer: RNNBase, cell: CellJvp, dc: _DirCache, xdot: np.ndarray | None, thetadot: Tangents, k: int,
             d: int) -> _DirDot:
    """One direction's forward R-pass: Ȧˣ and hₜ₋₁Ẇ_hhᵀ + ḃ_hh for all steps at once, then the recurrence."""
    w_ih, w_hh, _, _ = layer._weights(k, d)
    wi_dot, wh_dot, bi_dot, bh_dot = _dir_param_tangents(thetadot, k, d)
    L, n, H = len(dc.acts), dc.hs.shape[1], layer.hidden_size
    ax = np.zeros((L, n, w_ih.shape[0]), dc.hs.dtype)  # Ȧˣ in scan order
    if xdot is not None:
        ax += _project(xdot, w_ih, None, dc.reverse)
    if wi_dot is not None:
        ax += _project(dc.x, wi_dot, None, dc.reverse)
    if bi_dot is not None:
        ax += bi_dot
    gh_theta = np.zeros_like(ax) if wh_dot is None else dc.hs[:-1] @ wh_dot.T  # hₜ₋₁ Ẇ_hhᵀ + ḃ_hh
    if bh_dot is not None:
        gh_theta += bh_dot
    steps: list[_StepDot] = [_StepDot(np.zeros((n, H), dc.hs.dtype))]
    for s in range(L):
        steps.append(cell(layer, dc, s, ax[s], steps[-1].h @ w_hh.T + gh_theta[s], steps[-1].h, steps[-1].c))

    def stacked(field: str, first: np.ndarray | None = None) -> np.ndarray | None:
        arrs = [getattr(st, field) for st in steps[1:]]
        return None if arrs[0] is None else np.stack(arrs if first is None else [first, *arrs])

    cs = stacked("c", np.zeros((n, H), dc.hs.dtype))
    hs = stacked("h", steps[0].h)
    assert hs is not None
    return _DirDot(xdot, hs, stacked("acts"), cs, stacked("hn"))


_CELL_JVPS: dict[str, CellJvp] = {"RNN_TANH": _rnn_cell_jvp, "RNN_RELU": _rnn_cell_jvp, "GRU": _gru_cell_jvp,
                                  "LSTM": _lstm_cell_jvp}


def _stack_jvp(layer: RNNBase, cache: RecurrentCache, xdot: np.ndarray | None,
               thetadot: Tangents) -> tuple[np.ndarray, list[_DirDot]]:
    """The forward R-pass of the whole stack: ẏ in the output's layout, and every direction's tangents."""
    refuse_truncated(layer)
    D, cell = layer.num_directions, _CELL_JVPS[layer.mode]
    layer_in = None if xdot is None else layer._time_major(np.asarray(xdot, cache.dirs[0].hs.dtype))
    dots: list[_DirDot] = []
    for k in range(layer.num_layers):
        if k > 0:
            mask = cache.masks[k - 1]
            layer_in = _layer_output([t.hs for t in dots[-D:]])
            layer_in = layer_in if mask is None else layer_in * mask
        dots += [_dir_jvp(layer, cell, cache.dirs[k * D + d], layer_in, thetadot, k, d) for d in range(D)]
    out = _layer_output([t.hs for t in dots[-D:]])
    return (out.swapaxes(0, 1) if layer.batch_first else out), dots


@jvp_rules.register(RNN, GRU, LSTM)
def _jvp_recurrent(layer: RNNBase, cache: RecurrentCache, xdot: np.ndarray | None, thetadot: Tangents) -> np.ndarray:
    """ẏ through time: the module docstring's forward R-pass, layer by layer and direction by direction."""
    return _stack_jvp(layer, cache, xdot, thetadot)[0]


# -- cell R-ops: the tangent of one step's cell VJP, (dhₜ, (dhₜ)˙, dcₜ, (dcₜ)˙) → _CellRop -------------------
def _rnn_cell_rop(layer: RNNBase, dc: _DirCache, t: _DirDot, s: int, dh: np.ndarray, dh_dot: np.ndarray,
                  dcn: np.ndarray, dcn_dot: np.ndarray) -> _CellRop:
    """daₜ = dhₜ ⊙ φ′(aₜ):  (daₜ)˙ = (dhₜ)˙ ⊙ φ′ + dhₜ ⊙ (φ′)˙,  (φ′)˙ = −2 hₜ ḣₜ (tanh), 0 (ReLU)."""
    h = dc.hs[s + 1]
    dphi = rnn_dphi(layer.mode, dc.acts[s], h)
    da, da_dot = dh * dphi, dh_dot * dphi
    if layer.mode != "RNN_RELU":
        da_dot -= 2.0 * dh * h * t.hs[s + 1]
    return _CellRop(da, da, da_dot, da_dot)


def _gru_cell_rop(layer: RNNBase, dc: _DirCache, t: _DirDot, s: int, dh: np.ndarray, dh_dot: np.ndarray,
                  dcn: np.ndarray, dcn_dot: np.ndarray) -> _CellRop:
    """GRU's step VJP (``GRU``'s docstring) with p_n = (1−z)(1−n²), p_z = (hₜ₋₁ − n) z(1−z), p_r = hn r(1−r):
        daₙ = dh p_n   da_z = dh p_z   da_r = daₙ p_r   daˣ = [da_r, da_z, daₙ]   daʰ = [da_r, da_z, daₙ r]
    and its tangent by the product rule, with
        ṗ_n = −ż(1−n²) − 2(1−z) n ṅ      ṗ_z = (ḣₜ₋₁ − ṅ) z(1−z) + (hₜ₋₁ − n)(1−2z) ż
        ṗ_r = (hn)˙ r(1−r) + hn (1−2r) ṙ  direct = dh z,  (direct)˙ = (dh)˙ z + dh ż"""
    assert dc.hn is not None and t.acts is not None and t.hn is not None  # a GRU's cache and tangents
    (r, z, n), (r_dot, z_dot, n_dot) = _gates(dc.acts[s], 3), _gates(t.acts[s], 3)
    hn, hn_dot, h_prev, h_prev_dot = dc.hn[s], t.hn[s], dc.hs[s], t.hs[s]
    p_n, p_z, p_r = gru_step_factors(r, z, n, h_prev, hn)
    pd_n = -z_dot * (1.0 - n * n) - 2.0 * (1.0 - z) * n * n_dot
    pd_z = (h_prev_dot - n_dot) * z * (1.0 - z) + (h_prev - n) * (1.0 - 2.0 * z) * z_dot
    pd_r = hn_dot * r * (1.0 - r) + hn * (1.0 - 2.0 * r) * r_dot
    da_n, da_z = dh * p_n, dh * p_z
    dd_n, dd_z = dh_dot * p_n + dh * pd_n, dh_dot * p_z + dh * pd_z
    da_r, dd_r = da_n * p_r, dd_n * p_r + da_n * pd_r
    cat = np.concatenate
    return _CellRop(cat([da_r, da_z, da_n], -1), cat([da_r, da_z, da_n * r], -1),
                    cat([dd_r, dd_z, dd_n], -1), cat([dd_r, dd_z, dd_n * r + da_n * r_dot], -1),
                    dh * z, dh_dot * z + dh * z_dot)


def _lstm_cell_rop(layer: RNNBase, dc: _DirCache, t: _DirDot, s: int, dh: np.ndarray, dh_dot: np.ndarray,
                   dcn: np.ndarray, dcn_dot: np.ndarray) -> _CellRop:
    """The tangent of ``lstm_cell_vjp`` (dcₜ = dc + dh o(1−tanh²cₜ), dgates = [dcₜ g, dcₜ cₜ₋₁, dcₜ i, dh tanh cₜ],
    daₜ = dgates ⊙ D, D = [i(1−i), f(1−f), 1−g², o(1−o)], dcₜ₋₁ = dcₜ f), with (tanh cₜ)˙ = (1−tanh²cₜ) ċₜ:
        (dcₜ)˙ = (dc)˙ + (dh)˙ o(1−tanh²c) + e,   e = dh (ȯ(1−tanh²c) − 2 o tanh c (tanh c)˙)
        (dgates)˙ = [(dcₜ)˙ g + dcₜ ġ, (dcₜ)˙ cₜ₋₁ + dcₜ ċₜ₋₁, (dcₜ)˙ i + dcₜ i̇, (dh)˙ tanh c + dh (tanh c)˙]
        (daₜ)˙ = (dgates)˙ ⊙ D + dgates ⊙ Ḋ,  Ḋ = [i̇(1−2i), ḟ(1−2f), −2gġ, ȯ(1−2o)]
        (dcₜ₋₁)˙ = (dcₜ)˙ f + dcₜ ḟ"""
    assert t.acts is not None and t.cs is not None  # an LSTM's tangents
    step = _lstm_step(dc, s)
    i_dot, f_dot, g_dot, o_dot = _gates(t.acts[s], 4)
    tc2 = 1.0 - step.tanh_c ** 2
    tc_dot = tc2 * t.cs[s + 1]
    dgates, dct = lstm_cell_dgates(step, dh, dcn)  # lstm_cell_vjp's first lines; D is needed below
    d = lstm_gate_derivatives(step)
    da, dc_prev = dgates * d, dct * step.f
    e = dh * (o_dot * tc2 - 2.0 * step.o * step.tanh_c * tc_dot)
    dgates_dot, dct_dot = lstm_cell_dgates(step, dh_dot, dcn_dot + e)  # the parts linear in the tangents
    dgates_dot += np.concatenate([dct * g_dot, dct * t.cs[s], dct * i_dot, dh * tc_dot], axis=-1)
    d_dot = np.concatenate([i_dot * (1.0 - 2.0 * step.i), f_dot * (1.0 - 2.0 * step.f), -2.0 * step.g * g_dot,
                            o_dot * (1.0 - 2.0 * step.o)], axis=-1)
    da_dot = dgates_dot * d + dgates * d_dot
    return _CellRop(da, da, da_dot, da_dot, dc_prev=dc_prev, dc_prev_dot=dct_dot * step.f + dct * f_dot)


CellRop = Callable[[RNNBase, _DirCache, _DirDot, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray], _CellRop]
_CELL_ROPS: dict[str, CellRop] = {"RNN_TANH": _rnn_cell_rop, "RNN_RELU": _rnn_cell_rop, "GRU": _gru_cell_rop,
                                  "LSTM": _lstm_cell_rop}


def _dir_bptt_rop(layer: RNNBase, dc: _DirCache, t: _DirDot, dys: np.ndarray, dys_dot: np.ndarray,
                  wh_dot: np.ndarray | None, k: int, d: int) -> tuple[np.ndarray, ...]:
    """One direction's BPTT and its tangent together, steps L−1 … 0: (daˣ, daʰ, (daˣ)˙, (daʰ)˙) (L, V, N, G·H)."""
    cell, w_hh = _CELL_ROPS[layer.mode], layer._weights(k, d)[1]
    out = [np.empty((*dys.shape[:-1], w_hh.shape[0]), dys.dtype) for _ in range(4)]
    zero = np.zeros(dys.shape[1:], dys.dtype)
    carry, carry_dot, dcn, dcn_dot = zero, zero, zero, zero
    for s in reversed(range(len(dys))):
        step = cell(layer, dc, t, s, dys[s] + carry, dys_dot[s] + carry_dot, dcn, dcn_dot)
        for buf, part in zip(out, step[:4], strict=True):
            buf[s] = part
        carry = add(step.direct, step.dah @ w_hh)  # → dhₜ₋₁
        carry_dot = add(step.direct_dot, step.dah_dot @ w_hh)
        if wh_dot is not None:
            carry_dot = carry_dot + step.dah @ wh_dot
        if step.dc_prev is not None and step.dc_prev_dot is not None:  # LSTM: → dcₜ₋₁
            dcn, dcn_dot = step.dc_prev, step.dc_prev_dot
    return tuple(out)


def _dir_param_rop(layer: RNNBase, dc: _DirCache, t: _DirDot, das: tuple[np.ndarray, ...], k: int,
                   d: int) -> dict[str, np.ndarray]:
    """(dW_ih)˙ = Σ (daˣ)˙ᵀ x + daˣᵀ ẋ,  (dW_hh)˙ = Σ (daʰ)˙ᵀ hₜ₋₁ + daʰᵀ ḣₜ₋₁,  (db)˙ = Σ (da)˙ (V = 1 leading)."""
    dai, dah, dai_dot, dah_dot = das
    grads = layer._param_grads(k, d, dc, dai_dot, dah_dot, per_sample=False)  # the sums of (da)˙
    w_ih, w_hh = RNNBase._param_names(k, d)[:2]
    if t.x is not None:
        grads[w_ih] += _sum_tn(dai, t.x[::-1] if dc.reverse else t.x, False)
    grads[w_hh] += _sum_tn(dah, t.hs[:-1], False)
    return grads


@vjp_rop_rules.register(RNN, GRU, LSTM)
def _rop_recurrent(
    layer: RNNBase, cache: RecurrentCache, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None,
    thetadot: Tangents, need_dx: bool,
) -> RopResult:
    """The tangent of BPTT (the module docstring), layer by layer from the top; the forward tangents are
    recomputed by the forward R-pass."""
    dots = _stack_jvp(layer, cache, xdot, thetadot)[1]
    vshape, dout = layer._dy_time_major(cache, dy)  # (L, 1, N, D·H)
    _, dout_dot = layer._dy_time_major(cache, dydot)
    H, D = layer.hidden_size, layer.num_directions
    grads: dict[str, np.ndarray] = {}
    for k in reversed(range(layer.num_layers)):
        want_dx = need_dx or k > 0
        dlayer: np.ndarray | None = None
        dlayer_dot: np.ndarray | None = None
        for d in range(D):
            j, cols = k * D + d, slice(d * H, (d + 1) * H)
            dys, dys_dot = dout[..., cols], dout_dot[..., cols]
            wi_dot, wh_dot = _dir_param_tangents(thetadot, k, d)[:2]
            das = _dir_bptt_rop(layer, cache.dirs[j], dots[j], dys[::-1] if d else dys,
                                dys_dot[::-1] if d else dys_dot, wh_dot, k, d)
            grads.update(_dir_param_rop(layer, cache.dirs[j], dots[j], das, k, d))
            if want_dx:  # dx = daˣ W_ih and (dx)˙ = (daˣ)˙ W_ih + daˣ Ẇ_ih, in time order
                w_ih = layer._weights(k, d)[0]
                dx, dx_dot = das[0] @ w_ih, das[2] @ w_ih
                dx_dot = dx_dot if wi_dot is None else dx_dot + das[0] @ wi_dot
                dlayer = add(dlayer, dx[::-1] if d else dx)
                dlayer_dot = add(dlayer_dot, dx_dot[::-1] if d else dx_dot)
        if dlayer is None or dlayer_dot is None:  # layer 0 with need_dx=False: nothing flows below
            break
        mask = cache.masks[k - 1] if k > 0 else None
        dout, dout_dot = (dlayer, dlayer_dot) if mask is None else (dlayer * mask[:, None], dlayer_dot * mask[:, None])
    ordered = {name: grads[name].reshape(layer._parameters[name].shape) for name in layer._parameters}
    return (layer._dx_layout(cache, dout_dot, vshape) if need_dx else NO_DX), ordered


# -- activation statistics, per part ------------------------------------------------------------------------
_GATES = {"GRU": "rzn", "LSTM": "ifgo"}
_TANH_GATES = "ng"


@activation_rules.register(RNNBase)
def _recurrent_saturation(layer: RNNBase, x: Any, y: Any, cache: _DirCache, eps: float) -> dict[str, float]:
    """Per part (a layer and direction, ``nablanet.lab.parts``): gate saturation from the gate values the forward
    kept: the ReLU's zero and dead fractions, or the fraction of units with |f′| < eps, per gate of a GRU or LSTM."""
    a = cache.acts
    if layer.mode == "RNN_RELU":
        zero = np.asarray(y) == 0  # (N, L, H)
        return {"zero_fraction": float(np.mean(zero)), "dead_fraction": float(np.mean(np.all(zero, axis=(0, 1))))}
    if layer.mode == "RNN_TANH":  # acts holds hₜ = tanh(aₜ)
        return {"saturation_fraction": float(np.mean(1 - a * a < eps))}
    H, out = layer.hidden_size, {}
    for j, gate in enumerate(_GATES[layer.mode]):
        g = a[..., j * H:(j + 1) * H]
        slope = 1 - g * g if gate in _TANH_GATES else g * (1 - g)
        out[f"saturation_fraction_{gate}"] = float(np.mean(np.abs(slope) < eps))
    return out
