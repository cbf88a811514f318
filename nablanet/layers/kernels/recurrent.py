"""LSTM and GRU for training: the references' recurrences (``nablanet/layers/recurrent.py``) with fewer
passes over memory per time step.

Per step the references allocate each intermediate and apply σ gate by gate; here each step writes
into preallocated buffers (``out=``), the σ gates share one pass, and the LSTM folds σ(a) = ½ + ½ tanh(a/2)
into its weights so that one tanh covers all four gates. Only one direction's recurrence (``scan``,
``bptt``) is replaced: the stack of layers and directions, dropout, truncated BPTT, vector axes and
per-sample gradients are the reference's own code (``RNNBase._forward_stack``, ``_vjp_stack``).

Measured on one training step, CPU time with one BLAS thread, reference and variant alternating in
one process, median of the paired ratios, reference / variant: ``benchmarks/lstm_epoch.py``'s LSTM(32,
128), batch 64, 50 steps: 1.65. Within it, σ as its own passes per gate instead of the tanh folded
into the weights makes the forward pass 1.09 slower, and the gate derivatives formed for all t before
the loop instead of step by step make the backward pass 1.18 slower.
``benchmarks/reference_gru.py``'s GRU(1, 6), bidirectional, batch 100, 40 steps: 1.18.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, cast

import numpy as np

from nablanet.layers.kernels import VjpFn, forward_kernel, vjp_kernel
from nablanet.layers.recurrent import GRU, LSTM, CellVjp, RecurrentCache, RNNBase, _DirCache, _project


@forward_kernel(LSTM)
@forward_kernel(GRU)
def recurrent_forward(layer: RNNBase, x: np.ndarray, *, train: bool, rng: Any) -> tuple[np.ndarray, RecurrentCache]:
    scan = partial(_lstm_scan, layer) if isinstance(layer, LSTM) else partial(_gru_scan, cast(GRU, layer))
    out, _, cache = layer._forward_stack(x, None, train=train, rng=rng, scan=scan)
    return out, cache


@vjp_kernel(LSTM)
@vjp_kernel(GRU)
def recurrent_vjp(
    layer: RNNBase, cache: RecurrentCache, dy: np.ndarray, *, per_sample: bool, need_dx: bool
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    bptt = partial(_lstm_bptt, layer) if isinstance(layer, LSTM) else partial(_gru_bptt, cast(GRU, layer))
    dx, _, grads = layer._vjp_stack(cache, dy, None, per_sample=per_sample, need_dx=need_dx, need_dhx=False,
                                    bptt=bptt)
    return dx, grads


def lstm_vjp_with_cell(cell_for: Callable[[LSTM], CellVjp]) -> VjpFn:
    """An LSTM VJP for ``nablanet.layers.kernels.swap`` whose BPTT runs ``cell_for(layer)`` as each step's cell
    VJP in place of ``lstm_cell_vjp`` (a student's: ``nablanet.testing.replace_vjp(nn.LSTM, …)``). The rest of
    backpropagation through time (the recurrence, truncation, parameter sums, vector axes, per-sample
    gradients) is the reference's own code."""
    def vjp(layer: LSTM, cache: RecurrentCache, dy: np.ndarray, *, per_sample: bool, need_dx: bool,
            prefix: str = "", vector_axes: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        dx, _, grads = layer._vjp_stack(cache, dy, None, per_sample=per_sample, need_dx=need_dx, need_dhx=False,
                                        bptt=partial(layer._bptt, cell=cell_for(layer)))
        return dx, grads

    return vjp


def _sigmoid_(a: np.ndarray) -> np.ndarray:
    """σ(a) = ½ + ½ tanh(a/2) in place: the same function as 1/(1 + e⁻ᵃ), without overflow."""
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


def _lstm_scan(layer: LSTM, x: np.ndarray, k: int, d: int, h0: np.ndarray, c0: np.ndarray | None) -> _DirCache:
    """``LSTM._scan`` with s = [½, ½, 1, ½] per gate block folded into the weights: then
    [i, f, g, o] = s ⊙ tanh(s ⊙ a) + (1 − s), one tanh over (N, 4H) (scaling by ½ is exact)."""
    w_ih, w_hh, b_ih, b_hh = layer._weights(k, d)
    L, n, _ = x.shape
    H, dt = layer.hidden_size, x.dtype
    scale = np.repeat(np.array([0.5, 0.5, 1.0, 0.5], dt), H)
    shift = (1.0 - scale).astype(dt)
    bias = None if b_ih is None or b_hh is None else (b_ih + b_hh) * scale
    ax = _project(x, w_ih * scale[:, None], bias, reverse=bool(d))  # s ⊙ Aˣ
    whh_t = w_hh.T * scale  # (H, 4H)
    hs, cs = np.empty((L + 1, n, H), dt), np.empty((L + 1, n, H), dt)
    hs[0] = h0
    cs[0] = 0.0 if c0 is None else c0
    acts, tcs, ig = np.empty((L, n, 4 * H), dt), np.empty((L, n, H), dt), np.empty((n, H), dt)
    for s in range(L):
        a = np.matmul(hs[s], whh_t, out=acts[s])  # s ⊙ aₛ for all four gates: one GEMM
        a += ax[s]
        np.tanh(a, out=a)
        a *= scale
        a += shift  # [i, f, g, o]
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        c = np.multiply(f, cs[s], out=cs[s + 1])  # cₛ = fₛ ⊙ cₛ₋₁ + iₛ ⊙ gₛ
        c += np.multiply(i, g, out=ig)
        np.tanh(c, out=tcs[s])
        np.multiply(o, tcs[s], out=hs[s + 1])  # hₛ = oₛ ⊙ tanh cₛ
    return _DirCache(x, hs, acts, cs, tcs, None, bool(d))


def _lstm_bptt(
    layer: LSTM, dc: _DirCache, dys: np.ndarray, dh_last: np.ndarray | None, dc_last: np.ndarray | None,
    w_hh: np.ndarray, need_dh0: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``LSTM._bptt`` in preallocated buffers; the gates' derivatives [i(1−i), f(1−f), 1−g², o(1−o)] =
    (1 − a)(a + β), β = 1 on g, are formed step by step while aₛ is in cache."""
    L, V, n, H = dys.shape
    dt, acts, cs, tcs = dc.hs.dtype, dc.acts, dc.cs, dc.tcs
    if cs is None or tcs is None:
        raise ValueError("LSTM.vjp needs a cache from LSTM.forward")
    beta = np.zeros(4 * H, dt)
    beta[2 * H:3 * H] = 1.0
    da = np.empty((L, V, n, 4 * H), dt)
    carry_h = np.zeros((V, n, H), dt) if dh_last is None else dh_last.copy()
    carry_c = np.zeros((V, n, H), dt) if dc_last is None else dc_last.copy()
    dh, tmp, k_c = np.empty((V, n, H), dt), np.empty((V, n, H), dt), np.empty((n, H), dt)
    dact, dact2 = np.empty((n, 4 * H), dt), np.empty((n, 4 * H), dt)
    for s in reversed(range(L)):
        a, tc, das = acts[s], tcs[s], da[s]
        np.add(dys[s], carry_h, out=dh)  # dhₛ = dyₛ + carryₕ
        np.multiply(tc, tc, out=k_c)
        np.subtract(1.0, k_c, out=k_c)
        k_c *= a[:, 3 * H:]  # ∂hₛ/∂cₛ = oₛ ⊙ (1 − tanh²cₛ)
        carry_c += np.multiply(dh, k_c, out=tmp)  # dcₛ
        np.multiply(carry_c, a[:, 2 * H:3 * H], out=das[..., :H])  # diₛ = dcₛ ⊙ gₛ
        np.multiply(carry_c, cs[s], out=das[..., H:2 * H])  # dfₛ = dcₛ ⊙ cₛ₋₁
        np.multiply(carry_c, a[:, :H], out=das[..., 2 * H:3 * H])  # dgₛ = dcₛ ⊙ iₛ
        np.multiply(dh, tc, out=das[..., 3 * H:])  # doₛ = dhₛ ⊙ tanh cₛ
        np.subtract(1.0, a, out=dact)
        das *= np.multiply(dact, np.add(a, beta, out=dact2), out=dact)  # daₛ
        if layer._cut(s):
            carry_h[...] = 0.0
            carry_c[...] = 0.0
        elif s > 0 or need_dh0:
            carry_c *= a[:, H:2 * H]  # dcₛ₋₁ = dcₛ ⊙ fₛ
            np.matmul(das, w_hh, out=carry_h)  # dhₛ₋₁ = daₛ W_hh
    return da, da, (carry_h if need_dh0 else None), (carry_c if need_dh0 else None)


def _gru_scan(layer: GRU, x: np.ndarray, k: int, d: int, h0: np.ndarray, c0: np.ndarray | None) -> _DirCache:
    """``GRU._scan`` in preallocated buffers, σ over the r and z gates in one pass."""
    w_ih, w_hh, b_ih, b_hh = layer._weights(k, d)
    L, n, _ = x.shape
    H, dt = layer.hidden_size, x.dtype
    b_hn = None if b_hh is None else b_hh[2 * H:]
    b_rz = None if b_ih is None or b_hh is None else b_ih + np.concatenate([b_hh[: 2 * H], np.zeros(H, dt)])
    ax = _project(x, w_ih, b_rz, reverse=bool(d))
    whh_t = w_hh.T
    hs = np.empty((L + 1, n, H), dt)
    hs[0] = h0
    acts, hn, gh = np.empty((L, n, 3 * H), dt), np.empty((L, n, H), dt), np.empty((n, 3 * H), dt)
    for s in range(L):
        np.matmul(hs[s], whh_t, out=gh)  # hₛ₋₁ W_hhᵀ, all three gates
        rz, nn_ = acts[s, :, : 2 * H], acts[s, :, 2 * H:]
        _sigmoid_(np.add(gh[:, : 2 * H], ax[s, :, : 2 * H], out=rz))
        if b_hn is not None:
            np.add(gh[:, 2 * H:], b_hn, out=hn[s])  # W_hn hₛ₋₁ + b_hn
        else:
            hn[s] = gh[:, 2 * H:]
        np.multiply(rz[:, :H], hn[s], out=nn_)  # r ⊙ (W_hn h + b_hn)
        nn_ += ax[s, :, 2 * H:]
        np.tanh(nn_, out=nn_)
        h = np.subtract(hs[s], nn_, out=hs[s + 1])  # hₛ = nₛ + zₛ ⊙ (hₛ₋₁ − nₛ)
        h *= rz[:, H:]
        h += nn_
    return _DirCache(x, hs, acts, None, None, hn, bool(d))


def _gru_bptt(
    layer: GRU, dc: _DirCache, dys: np.ndarray, dh_last: np.ndarray | None, dc_last: np.ndarray | None,
    w_hh: np.ndarray, need_dh0: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``GRU._bptt`` in preallocated buffers."""
    L, V, n, H = dys.shape
    dt = dc.hs.dtype
    r, z, nn_ = dc.acts[..., :H], dc.acts[..., H:2 * H], dc.acts[..., 2 * H:]
    if dc.hn is None:
        raise ValueError("GRU.vjp needs a cache from GRU.forward")
    p_n = (1.0 - z) * (1.0 - nn_ * nn_)  # ∂hₜ/∂aₙ
    p_z = (dc.hs[:-1] - nn_) * z * (1.0 - z)  # ∂hₜ/∂a_z
    p_r = dc.hn * r * (1.0 - r)  # ∂aₙ/∂a_r
    dai, dah = np.empty((L, V, n, 3 * H), dt), np.empty((L, V, n, 3 * H), dt)
    carry = np.zeros((V, n, H), dt) if dh_last is None else dh_last.copy()
    dh = np.empty((V, n, H), dt)
    for s in reversed(range(L)):
        np.add(dys[s], carry, out=dh)  # dhₛ = dyₛ + carry
        da_r, da_z, da_n = dai[s, ..., :H], dai[s, ..., H:2 * H], dai[s, ..., 2 * H:]
        np.multiply(dh, p_n[s], out=da_n)
        np.multiply(dh, p_z[s], out=da_z)
        np.multiply(da_n, p_r[s], out=da_r)
        dah[s, ..., : 2 * H] = dai[s, ..., : 2 * H]
        np.multiply(da_n, r[s], out=dah[s, ..., 2 * H:])
        if layer._cut(s):
            carry[...] = 0.0
        elif s > 0 or need_dh0:
            np.matmul(dah[s], w_hh, out=carry)  # dhₛ₋₁ ← daʰₛ W_hh + dhₛ ⊙ zₛ
            dh *= z[s]
            carry += dh
    return dai, dah, (carry if need_dh0 else None), None
