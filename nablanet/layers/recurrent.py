"""Recurrent layers — Elman RNN (tanh/ReLU), GRU, LSTM — with backpropagation through time written out.

Index letters: t time (scan step), n batch, h hidden unit, i input feature, v vector axis.
Sizes: L sequence length, N batch, I input size, H hidden size, G·H the stacked gates (G = 1 RNN,
3 GRU, 4 LSTM), D = 2 if bidirectional else 1.

Every layer of the stack runs, in each direction, the same two-stage computation:

* **Input projection, all time steps at once** (one GEMM): Aˣ = X W_ihᵀ + b_ih, X (L·N, I), Aˣ (L, N, G·H).
* **Recurrence, one step at a time** (one GEMM per step): aₜ = Aˣₜ + hₜ₋₁ W_hhᵀ + b_hh, then the
  cell's gate equations turn aₜ into hₜ (and cₜ for the LSTM).

Backpropagation through time (BPTT) walks the steps backwards. At step t the gradient reaching hₜ is
what the output sends (dyₜ) plus what step t+1 sends back through the recurrence:

    dhₜ = dyₜ + daₜ₊₁ʰ W_hh     (+ the cell's direct path, e.g. GRU's dhₜ₊₁ ⊙ zₜ₊₁)

where daₜ = ∂L/∂aₜ (one row of gates per sample) is the cell's VJP (see each class). After the loop,
with the pre-activation gradients of all steps stacked (daˣ for the input side, daʰ for the hidden
side; they differ only in the GRU's n gate), the parameter gradients and the input gradient are one
GEMM each, since the parameters are shared across time steps:

    dW_ih = Σₜₙ daˣₜₙᵀ xₜₙ     dW_hh = Σₜₙ daʰₜₙᵀ hₜ₋₁,ₙ     db_ih = Σₜₙ daˣₜₙ     db_hh = Σₜₙ daʰₜₙ
    dxₜ = daˣₜ W_ih        dh₀ = da₀ʰ W_hh (+ direct path)

Per-sample gradients keep n and sum over that sample's time steps only: dW_hh,ₙ = Σₜ daʰₜₙᵀ hₜ₋₁,ₙ.

Stacks and directions (PyTorch's layout): layer k > 0 reads the concatenated outputs of both
directions of layer k − 1 (D·H features), with dropout between layers while training; the reverse
direction scans t = L−1 … 0 and its output at time t is its state after reading xₜ. The final
state hₙ (D·num_layers, N, H) is indexed k·D + d. Parameter names are PyTorch's: ``weight_ih_l{k}``
(G·H, I or D·H), ``weight_hh_l{k}`` (G·H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (G·H,), with the
suffix ``_reverse`` for the reverse direction; gate blocks are stacked in PyTorch's order (GRU r, z,
n; LSTM i, f, g, o). Init (PyTorch's): every parameter ~ U(−1/√H, 1/√H).

Truncated BPTT (``bptt_truncate=k``): counting the steps of each direction in its own scan order
s = 0, 1, …, L−1, the gradient through the recurrent state from step s−1 into step s (hₛ₋₁ → hₛ,
and cₛ₋₁ → cₛ for the LSTM) is dropped whenever s is a positive multiple of k. This is the gradient
of the sequence cut into chunks [0, k), [k, 2k), … whose initial states are held constant; the
first chunk starts from h₀, whose gradient is still returned. The forward pass is unchanged, the
gradient between stacked layers is not truncated, and k ≥ L is full BPTT.

Shapes: x (L, N, I) or (N, L, I) with batch_first; output (L, N, D·H) or (N, L, D·H); h₀, hₙ (and
c₀, cₙ) (D·num_layers, N, H); dy (*V, …output) with leading vector axes, pushed through together.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np

from nablanet._dtype import resolve_dtype
from nablanet._random import RNGLike, get_rng
from nablanet._validation import as_float_input, check_finite
from nablanet.layers.base import NO_DX, Layer, n_vector_axes
from nablanet.parameter import Parameter

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "GRU": 3, "LSTM": 4}

State = np.ndarray | tuple[np.ndarray, np.ndarray]
"""A recurrent state: h (RNN, GRU) or the pair (h, c) (LSTM)."""


def _sigmoid_(a: np.ndarray) -> np.ndarray:
    """σ(a) = ½ + ½ tanh(a/2) in place: the same function as 1/(1 + e⁻ᵃ), without overflow."""
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


class _DirCache(NamedTuple):
    """What one direction of one layer kept for its VJP; arrays in scan order (s = 0 … L−1)."""

    x: np.ndarray  # (L, N, I) the layer's input in time order (shared by both directions)
    hs: np.ndarray  # (L+1, N, H): h₀ (s = 0) then the state after each step
    acts: np.ndarray  # (L, N, G·H) the gate activations (RNN: the output hₛ itself; ReLU: the mask a ≥ 0)
    cs: np.ndarray | None  # LSTM (L+1, N, H): c₀ then the cell state after each step
    tcs: np.ndarray | None  # LSTM (L, N, H): tanh(cₛ)
    hn: np.ndarray | None  # GRU (L, N, H): W_hn hₛ₋₁ + b_hn, the term the reset gate multiplies
    reverse: bool


class RecurrentCache(NamedTuple):
    """The forward pass of a whole stack: one entry per (layer k, direction d), index k·D + d."""

    dirs: tuple[_DirCache, ...]
    masks: tuple[np.ndarray | None, ...]  # dropout factor on layer k's input, k = 1 … num_layers−1
    x_shape: tuple[int, ...]
    out_ndim: int


class RNNBase(Layer):
    """Shared code of ``RNN``, ``GRU`` and ``LSTM`` (PyTorch's ``RNNBase``); see the module docstring."""

    _bptt_truncate: int | None

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        bptt_truncate: int | None = None,
        dtype: Any = None,
        rng: RNGLike = None,
    ) -> None:
        super().__init__()
        who = type(self).__name__
        if mode not in _GATES:
            raise ValueError(f"{who}: unknown mode {mode!r}; expected one of {sorted(_GATES)}")
        for arg, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{who}({arg}={value!r}): expected a positive int, e.g. {who}(8, 16, num_layers=1)")
        for arg, flag in (("bias", bias), ("batch_first", batch_first), ("bidirectional", bidirectional)):
            if not isinstance(flag, bool | np.bool_):
                raise TypeError(f"{who}({arg}={flag!r}): expected True or False")
        if isinstance(dropout, bool) or not isinstance(dropout, int | float | np.integer | np.floating) or not (
            0.0 <= float(dropout) <= 1.0
        ):
            raise ValueError(
                f"{who}(dropout={dropout!r}): expected the probability of zeroing a layer's output in [0, 1] "
                "(applied between stacked layers while training), e.g. dropout=0.2"
            )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"{who}(dropout={dropout}, num_layers=1): dropout acts only between stacked layers, so it has no "
                "effect here (as in PyTorch); use num_layers > 1 or a Dropout layer after this one.",
                UserWarning,
                stacklevel=3,
            )
        self.mode = mode
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.bptt_truncate = bptt_truncate  # validated by the property setter
        dt = resolve_dtype(dtype)
        gen = get_rng(rng)
        gh, h = _GATES[mode] * self.hidden_size, self.hidden_size
        bound = 1.0 / math.sqrt(h)
        for k in range(self.num_layers):
            fan_in = self.input_size if k == 0 else self.num_directions * h
            for sfx in self._suffixes():
                shapes: list[tuple[str, tuple[int, ...]]] = [
                    (f"weight_ih_l{k}{sfx}", (gh, fan_in)), (f"weight_hh_l{k}{sfx}", (gh, h))
                ]
                if self.bias:
                    shapes += [(f"bias_ih_l{k}{sfx}", (gh,)), (f"bias_hh_l{k}{sfx}", (gh,))]
                for name, shape in shapes:  # PyTorch's order: every parameter ~ U(−1/√H, 1/√H) in turn
                    setattr(self, name, Parameter(gen.uniform(-bound, bound, shape).astype(dt)))

    # -- configuration -------------------------------------------------------------------------
    @property
    def bptt_truncate(self) -> int | None:
        """Truncated BPTT: cut the state gradient every k scan steps (None: full BPTT); see the module docs."""
        return self._bptt_truncate

    @bptt_truncate.setter
    def bptt_truncate(self, k: int | None) -> None:
        if k is not None and (isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1):
            raise ValueError(
                f"{type(self).__name__}(bptt_truncate={k!r}): expected None (full backpropagation through time) "
                "or a positive int k, the chunk length after which the state gradient is cut, e.g. 20"
            )
        object.__setattr__(self, "_bptt_truncate", None if k is None else int(k))

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def _param(self, kind: str, k: int, d: int) -> np.ndarray | None:
        p = self._parameters.get(f"{kind}_l{k}{'_reverse' if d else ''}")
        return None if p is None else p.data

    def _weights(self, k: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        w_ih, w_hh = self._param("weight_ih", k, d), self._param("weight_hh", k, d)
        if w_ih is None or w_hh is None:  # never for a layer built by __init__
            raise KeyError(f"{type(self).__name__}: the weights of layer {k}, direction {d} are missing")
        return w_ih, w_hh, self._param("bias_ih", k, d), self._param("bias_hh", k, d)

    def _compute_dtype(self) -> np.dtype[Any]:
        return self._parameters["weight_ih_l0"].data.dtype

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.bptt_truncate is not None:
            s += f", bptt_truncate={self.bptt_truncate}"
        return s

    def get_config(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size, "hidden_size": self.hidden_size, "num_layers": self.num_layers,
            "bias": self.bias, "batch_first": self.batch_first, "dropout": self.dropout,
            "bidirectional": self.bidirectional, "bptt_truncate": self.bptt_truncate,
            "dtype": str(self._compute_dtype()),
        }

    # -- checks ----------------------------------------------------------------------------------
    def _check_x(self, x: np.ndarray) -> np.ndarray:
        who = type(self).__name__
        layout = "(N, L, H_in)" if self.batch_first else "(L, N, H_in)"
        if x.ndim != 3:
            fix = ("Call the layer itself, layer(x), for one unbatched (L, H_in) sequence, or add a batch axis."
                   if x.ndim == 2 else f"Reshape it to {layout}.")
            raise ValueError(
                f"{who}(input_size={self.input_size}, batch_first={self.batch_first}) got x.shape={x.shape}; "
                f"expected a 3-D batch {layout}. {fix}"
            )
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"{who}(input_size={self.input_size}) got x.shape={x.shape} with {x.shape[-1]} features in the last "
                f"axis; expected {self.input_size} (layout {layout}). Check the previous layer or input_size."
            )
        seq_len = x.shape[1] if self.batch_first else x.shape[0]
        if seq_len == 0:
            raise ValueError(f"{who} got x.shape={x.shape}, an empty sequence; expected at least one time step")
        dt = self._compute_dtype()
        if x.dtype != dt:
            x = x.astype(dt)
        return x

    def _check_state(self, value: Any, name: str, n: int) -> np.ndarray:
        expected = (self.num_directions * self.num_layers, n, self.hidden_size)
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{type(self).__name__}: {name} has dtype {arr.dtype}; expected floats")
        if arr.shape != expected:
            raise ValueError(
                f"{type(self).__name__}: {name}.shape={arr.shape}; expected (D·num_layers, N, hidden_size) = "
                f"{expected} (D = {self.num_directions}, num_layers = {self.num_layers}, N = {n})."
            )
        return arr.astype(self._compute_dtype(), copy=False)

    def _split_hx(self, hx: State | None, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        if hx is None:
            return None, None
        if self.mode == "LSTM":
            if not isinstance(hx, tuple | list) or len(hx) != 2:
                raise TypeError(
                    f"LSTM: the initial state must be a pair (h0, c0) of arrays (D·num_layers, N, hidden_size); "
                    f"got {type(hx).__name__}"
                )
            return self._check_state(hx[0], "h0", n), self._check_state(hx[1], "c0", n)
        if isinstance(hx, tuple | list):
            raise TypeError(f"{type(self).__name__}: the initial state is one array h0, not a {type(hx).__name__}")
        return self._check_state(hx, "h0", n), None

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, RecurrentCache]:
        """The layer protocol: the output sequence (what ``Sequential`` passes on) and the cache; h₀ = 0."""
        out, _, cache = self.forward_state(x, None, train=train, rng=rng)
        return out, cache

    def forward_state(
        self, x: np.ndarray, hx: State | None = None, *, train: bool = False, rng: RNGLike = None
    ) -> tuple[np.ndarray, State, RecurrentCache]:
        """Run the stack from the initial state ``hx`` (None: zeros); return (output, final state, cache).

        The final state is hₙ (D·num_layers, N, H), or (hₙ, cₙ) for the LSTM. Dropout between layers
        (training only) draws its masks from ``rng``.
        """
        x = self._check_x(x)
        xt = np.ascontiguousarray(x.swapaxes(0, 1) if self.batch_first else x)  # (L, N, I) time-major
        n = xt.shape[1]
        h0s, c0s = self._split_hx(hx, n)
        dt, H, D = xt.dtype, self.hidden_size, self.num_directions
        dirs: list[_DirCache] = []
        masks: list[np.ndarray | None] = []
        layer_in = xt
        gen = get_rng(rng) if train and self.dropout > 0 and self.num_layers > 1 else None
        for k in range(self.num_layers):
            if k > 0:
                factor = None
                if gen is not None:
                    keep = 1.0 - self.dropout
                    factor = (gen.random(layer_in.shape) >= self.dropout).astype(dt)
                    if keep > 0:
                        factor *= dt.type(1.0 / keep)
                    layer_in = layer_in * factor
                masks.append(factor)
            outs = []
            for d in range(D):
                j = k * D + d
                h0 = np.zeros((n, H), dt) if h0s is None else h0s[j]
                c0 = None if self.mode != "LSTM" else (np.zeros((n, H), dt) if c0s is None else c0s[j])
                dc = self._scan(layer_in, k, d, h0, c0)
                dirs.append(dc)
                outs.append(dc.hs[1:][::-1] if d else dc.hs[1:])
            layer_in = outs[0] if D == 1 else np.concatenate(outs, axis=-1)
        out = layer_in.swapaxes(0, 1) if self.batch_first else layer_in
        h_n = np.stack([dc.hs[-1] for dc in dirs])
        final: State = h_n
        if self.mode == "LSTM":
            final = (h_n, np.stack([dc.cs[-1] for dc in dirs if dc.cs is not None]))
        return out, final, RecurrentCache(tuple(dirs), tuple(masks), x.shape, out.ndim)

    def _scan(self, x: np.ndarray, k: int, d: int, h0: np.ndarray, c0: np.ndarray | None) -> _DirCache:
        raise NotImplementedError

    # -- backward --------------------------------------------------------------------------------
    def vjp(
        self, cache: RecurrentCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The layer protocol: the VJP of the output sequence alone (no gradient on the final state)."""
        dx, _, grads = self.vjp_state(cache, dy, None, per_sample=per_sample, need_dx=need_dx, need_dhx=False)
        return dx, grads

    def vjp_state(
        self,
        cache: RecurrentCache,
        dy: np.ndarray,
        dh_n: State | None = None,
        *,
        per_sample: bool = False,
        need_dx: bool = True,
        need_dhx: bool = True,
    ) -> tuple[np.ndarray, State | None, dict[str, np.ndarray]]:
        """BPTT for L = Σ dy ⊙ output + Σ dhₙ ⊙ hₙ (+ Σ dcₙ ⊙ cₙ): returns (dx, dhx, grads).

        ``dy`` is shaped like the output, optionally with leading vector axes (*V, …); ``dh_n`` like the
        final state with the same leading axes ((dhₙ, dcₙ) for the LSTM; None or a None entry: zero).
        dhx is the gradient of the initial state in the same layout (None with ``need_dhx=False``); dx is
        ``NO_DX`` with ``need_dx=False``. Parameter gradients are (*V, *param), or (*V, N, *param) with
        ``per_sample=True`` (each sample's own time steps summed).
        """
        who = type(self).__name__
        nv = n_vector_axes(dy, cache.out_ndim, who)
        vshape = dy.shape[:nv]
        out_shape = cache.dirs[0].x.shape[:2]  # (L, N)
        L, n = out_shape
        H, D = self.hidden_size, self.num_directions
        expected = (L, n) if not self.batch_first else (n, L)
        if dy.shape[nv:] != (*expected, D * H):
            raise ValueError(
                f"{who}.vjp got dy.shape={dy.shape}; expected (*V, {', '.join(map(str, (*expected, D * H)))}), "
                "the output's shape with optional leading vector axes"
            )
        dt = cache.dirs[0].hs.dtype
        V = math.prod(vshape)
        dy4 = dy.astype(dt, copy=False).reshape(V, *dy.shape[nv:])
        dout = dy4.transpose(2, 0, 1, 3) if self.batch_first else dy4.transpose(1, 0, 2, 3)  # (L, V, N, D·H)
        dhn_h, dhn_c = self._split_dstate(dh_n, vshape, V, n)
        grads: dict[str, np.ndarray] = {}
        dh0 = np.zeros((V, D * self.num_layers, n, H), dt) if need_dhx else None
        dc0 = np.zeros_like(dh0) if need_dhx and self.mode == "LSTM" else None
        dlayer: np.ndarray = NO_DX
        for k in reversed(range(self.num_layers)):
            want_dx = need_dx or k > 0
            x_k = cache.dirs[k * D].x
            dlayer = np.zeros((L, V, n, x_k.shape[-1]), dt) if want_dx else NO_DX
            for d in range(D):
                j = k * D + d
                dc = cache.dirs[j]
                w_ih, w_hh, b_ih, b_hh = self._weights(k, d)
                dys = dout[..., d * H:(d + 1) * H]
                if d:
                    dys = dys[::-1]  # scan order
                dh_last = None if dhn_h is None else dhn_h[:, j]
                dc_last = None if dhn_c is None else dhn_c[:, j]
                dai, dah, g_h0, g_c0 = self._bptt(dc, dys, dh_last, dc_last, w_hh, need_dhx)
                if dh0 is not None and g_h0 is not None:
                    dh0[:, j] = g_h0
                if dc0 is not None and g_c0 is not None:
                    dc0[:, j] = g_c0
                # input side in time order: dxₜ = daˣₜ W_ih,  dW_ih = Σₜₙ daˣₜₙᵀ xₜₙ
                dai_t = np.ascontiguousarray(dai[::-1]) if d else dai
                sfx = f"_l{k}{'_reverse' if d else ''}"
                if want_dx:
                    dlayer += (dai_t.reshape(-1, dai_t.shape[-1]) @ w_ih).reshape(dlayer.shape)
                grads["weight_ih" + sfx] = _outer_sum(dai_t, dc.x, per_sample)
                grads["weight_hh" + sfx] = _outer_sum(dah, dc.hs[:-1], per_sample)
                if b_ih is not None and b_hh is not None:
                    axes = (0,) if per_sample else (0, 2)
                    grads["bias_ih" + sfx] = dai.sum(axis=axes)
                    grads["bias_hh" + sfx] = dah.sum(axis=axes) if dah is not dai else grads["bias_ih" + sfx].copy()
            if k > 0:
                mask = cache.masks[k - 1]
                if mask is not None:
                    dlayer *= mask[:, None]
                dout = dlayer  # gradient of layer k−1's output, (L, V, N, D·H)
        ordered = {}
        for name in self._parameters:  # PyTorch's parameter order, vector axes restored
            g = grads[name]
            ordered[name] = g.reshape(*vshape, *g.shape[1:])
        dx = NO_DX
        if need_dx:
            dxv = dlayer.transpose(1, 2, 0, 3) if self.batch_first else dlayer.transpose(1, 0, 2, 3)
            dx = np.ascontiguousarray(dxv).reshape(*vshape, *cache.x_shape)
        dhx: State | None = None
        if dh0 is not None:
            dhx = dh0.reshape(*vshape, *dh0.shape[1:])
            if dc0 is not None:
                dhx = (dhx, dc0.reshape(*vshape, *dc0.shape[1:]))
        return dx, dhx, ordered

    def _split_dstate(
        self, dh_n: State | None, vshape: tuple[int, ...], V: int, n: int
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        if dh_n is None:
            return None, None
        parts: tuple[Any, Any]
        if self.mode == "LSTM":
            if not isinstance(dh_n, tuple | list) or len(dh_n) != 2:
                raise TypeError("LSTM.vjp_state: dh_n must be a pair (dh_n, dc_n); either entry may be None")
            parts = (dh_n[0], dh_n[1])
        else:
            parts = (dh_n, None)
        expected = (*vshape, self.num_directions * self.num_layers, n, self.hidden_size)
        out: list[np.ndarray | None] = []
        for name, p in zip(("dh_n", "dc_n"), parts, strict=True):
            if p is None:
                out.append(None)
                continue
            arr = np.asarray(p)
            if arr.shape != expected:
                raise ValueError(
                    f"{type(self).__name__}.vjp_state: {name}.shape={arr.shape}; expected {expected} "
                    "(dy's vector axes, then the final state's shape)"
                )
            out.append(arr.astype(self._compute_dtype(), copy=False).reshape(V, *expected[len(vshape):]))
        return out[0], out[1]

    def _bptt(
        self, dc: _DirCache, dys: np.ndarray, dh_last: np.ndarray | None, dc_last: np.ndarray | None,
        w_hh: np.ndarray, need_dh0: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(daˣ, daʰ, dh₀, dc₀) of one direction, all in scan order; shapes (L, V, N, G·H), (V, N, H)."""
        raise NotImplementedError

    def _cut(self, s: int) -> bool:
        """True where truncated BPTT drops the state gradient from step s back into step s − 1."""
        k = self._bptt_truncate
        return k is not None and s > 0 and s % k == 0

    # -- PyTorch's calling convention --------------------------------------------------------------
    def __call__(self, x: Any, hx: State | None = None) -> tuple[np.ndarray, State]:  # type: ignore[override]
        """``(output, h_n)`` — ``(output, (h_n, c_n))`` for the LSTM — as PyTorch returns them.

        Runs in the current mode (dropout between layers in ``train()`` mode, from the global
        generator). An unbatched (L, H_in) sequence with an unbatched state (D·num_layers, H) gives an
        unbatched output (L, D·H) and state (D·num_layers, H), as in PyTorch.
        """
        arr = as_float_input(x, "x")
        check_finite(arr, "x")
        unbatched = arr.ndim == 2
        if unbatched:
            arr = arr[:, None] if not self.batch_first else arr[None]
            if isinstance(hx, tuple | list) and len(hx) == 2:
                hx = (np.asarray(hx[0])[:, None], np.asarray(hx[1])[:, None])
            elif hx is not None and not isinstance(hx, tuple | list):
                hx = np.asarray(hx)[:, None]
        out, final, _ = self.forward_state(arr, hx, train=self.training)
        if not unbatched:
            return out, final
        out = out[:, 0] if not self.batch_first else out[0]
        if isinstance(final, tuple):
            return out, (final[0][:, 0], final[1][:, 0])
        return out, final[:, 0]


def _outer_sum(da: np.ndarray, inp: np.ndarray, per_sample: bool) -> np.ndarray:
    """Σₜₙ daₜᵥₙᵀ inpₜₙ → (V, G, I), or Σₜ per sample → (V, N, G, I); da (L, V, N, G), inp (L, N, I)."""
    L, V, n, g = da.shape
    i = inp.shape[-1]
    if per_sample:
        return np.einsum("tvng,tni->vngi", da, inp, optimize=True)
    if V == 1:  # the training case: one GEMM over all (t, n) pairs
        return (da.reshape(L * n, g).T @ inp.reshape(L * n, i))[None]
    return np.matmul(da.transpose(1, 3, 0, 2).reshape(V, g, L * n), inp.reshape(L * n, i))


class RNN(RNNBase):
    """Elman RNN (PyTorch's ``nn.RNN``):  hₜ = φ(xₜ W_ihᵀ + b_ih + hₜ₋₁ W_hhᵀ + b_hh),  φ = tanh or ReLU.

    Shapes:  W_ih (H, I)  W_hh (H, H)  b_ih, b_hh (H,)  hₜ (N, H)
    BPTT, step t from L−1 down to 0 (carry = 0 before the last step, or dhₙ):
        dhₜ = dyₜ + carry        daₜ = dhₜ ⊙ φ′(aₜ)        carry = daₜ W_hh   (→ dhₜ₋₁; after t = 0: dh₀)
        φ′ = 1 − hₜ² for tanh;  for ReLU 1 where aₜ ≥ 0 and 0 elsewhere (the library's convention:
        ReLU′(0) = 1; PyTorch uses 0 at exactly 0, which random data never hits).
    Then dW_ih = Σ daₜᵀ xₜ, dW_hh = Σ daₜᵀ hₜ₋₁, db_ih = db_hh = Σ daₜ, dxₜ = daₜ W_ih (module docstring).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        bptt_truncate: int | None = None,
        dtype: Any = None,
        rng: RNGLike = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN(nonlinearity={nonlinearity!r}): expected 'tanh' or 'relu'")
        super().__init__(
            "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, num_layers, bias,
            batch_first, dropout, bidirectional, bptt_truncate=bptt_truncate, dtype=dtype, rng=rng,
        )
        self.nonlinearity = nonlinearity

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "nonlinearity": self.nonlinearity}

    def _scan(self, x: np.ndarray, k: int, d: int, h0: np.ndarray, c0: np.ndarray | None) -> _DirCache:
        w_ih, w_hh, b_ih, b_hh = self._weights(k, d)
        L, n, _ = x.shape
        H = self.hidden_size
        ax = (x.reshape(L * n, -1) @ w_ih.T).reshape(L, n, H)  # input projection, all steps: one GEMM
        if b_ih is not None and b_hh is not None:
            ax += b_ih + b_hh
        if d:
            ax = ax[::-1]
        whh_t = w_hh.T
        hs = np.empty((L + 1, n, H), x.dtype)
        hs[0] = h0
        relu = self.mode == "RNN_RELU"
        mask = np.empty((L, n, H), bool) if relu else hs[1:]
        for s in range(L):
            a = np.matmul(hs[s], whh_t, out=hs[s + 1])  # aₛ = hₛ₋₁ W_hhᵀ + Aˣₛ, written where hₛ goes
            a += ax[s]
            if relu:
                np.greater_equal(a, 0, out=mask[s])
                a *= mask[s]
            else:
                np.tanh(a, out=a)
        return _DirCache(x, hs, mask, None, None, None, bool(d))

    def _bptt(
        self, dc: _DirCache, dys: np.ndarray, dh_last: np.ndarray | None, dc_last: np.ndarray | None,
        w_hh: np.ndarray, need_dh0: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        L, V, n, H = dys.shape
        if self.mode == "RNN_RELU":
            dphi = dc.acts.astype(dc.hs.dtype)  # φ′(aₜ): the mask aₜ ≥ 0
        else:
            dphi = 1.0 - dc.hs[1:] ** 2  # tanh′(aₜ) = 1 − hₜ²
        da = np.empty((L, V, n, H), dc.hs.dtype)
        carry = np.zeros((V, n, H), dc.hs.dtype) if dh_last is None else dh_last.copy()
        dh0 = None
        for s in reversed(range(L)):
            np.add(dys[s], carry, out=da[s])  # dhₛ = dyₛ + carry
            da[s] *= dphi[s]  # daₛ = dhₛ ⊙ φ′(aₛ)
            if self._cut(s):
                carry[...] = 0.0
            elif s > 0 or need_dh0:
                np.matmul(da[s], w_hh, out=carry)  # dhₛ₋₁ ← daₛ W_hh
        if need_dh0:
            dh0 = carry
        return da, da, dh0, None


class GRU(RNNBase):
    """Gated recurrent unit (PyTorch's ``nn.GRU``), gates stacked r, z, n:

        rₜ = σ(W_ir xₜ + b_ir + W_hr hₜ₋₁ + b_hr)            (reset)
        zₜ = σ(W_iz xₜ + b_iz + W_hz hₜ₋₁ + b_hz)            (update)
        nₜ = tanh(W_in xₜ + b_in + rₜ ⊙ (W_hn hₜ₋₁ + b_hn))   (candidate; r multiplies W_hn h + b_hn, as in PyTorch)
        hₜ = (1 − zₜ) ⊙ nₜ + zₜ ⊙ hₜ₋₁

    Shapes:  W_ih (3H, I)  W_hh (3H, H)  b_ih, b_hh (3H,)
    BPTT, step t from L−1 down to 0 (dhₜ = dyₜ + carry):
        daₙ = dhₜ ⊙ (1 − zₜ) ⊙ (1 − nₜ²)             (n's pre-activation)
        da_z = dhₜ ⊙ (hₜ₋₁ − nₜ) ⊙ zₜ(1 − zₜ)
        da_r = daₙ ⊙ (W_hn hₜ₋₁ + b_hn) ⊙ rₜ(1 − rₜ)
        input side   daˣ = [da_r, da_z, daₙ]        (→ W_ih, b_ih, x)
        hidden side  daʰ = [da_r, da_z, daₙ ⊙ rₜ]   (→ W_hh, b_hh)
        carry = dhₜ ⊙ zₜ + daʰ W_hh                 (→ dhₜ₋₁; after t = 0: dh₀)
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        bptt_truncate: int | None = None,
        dtype: Any = None,
        rng: RNGLike = None,
    ) -> None:
        super().__init__(
            "GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            bptt_truncate=bptt_truncate, dtype=dtype, rng=rng,
        )

    def _scan(self, x: np.ndarray, k: int, d: int, h0: np.ndarray, c0: np.ndarray | None) -> _DirCache:
        w_ih, w_hh, b_ih, b_hh = self._weights(k, d)
        L, n, _ = x.shape
        H = self.hidden_size
        ax = (x.reshape(L * n, -1) @ w_ih.T).reshape(L, n, 3 * H)
        b_hn = None
        if b_ih is not None and b_hh is not None:
            ax += b_ih
            ax[..., : 2 * H] += b_hh[: 2 * H]  # r and z add both biases; b_hn stays inside r ⊙ (…)
            b_hn = b_hh[2 * H:]
        if d:
            ax = ax[::-1]
        whh_t = w_hh.T
        hs = np.empty((L + 1, n, H), x.dtype)
        hs[0] = h0
        acts = np.empty((L, n, 3 * H), x.dtype)
        hn = np.empty((L, n, H), x.dtype)
        gh = np.empty((n, 3 * H), x.dtype)
        for s in range(L):
            np.matmul(hs[s], whh_t, out=gh)  # hₛ₋₁ W_hhᵀ, all three gates
            rz, nn_ = acts[s, :, : 2 * H], acts[s, :, 2 * H:]
            np.add(gh[:, : 2 * H], ax[s, :, : 2 * H], out=rz)
            _sigmoid_(rz)
            if b_hn is not None:
                np.add(gh[:, 2 * H:], b_hn, out=hn[s])  # W_hn hₛ₋₁ + b_hn
            else:
                hn[s] = gh[:, 2 * H:]
            np.multiply(rz[:, :H], hn[s], out=nn_)  # r ⊙ (W_hn h + b_hn)
            nn_ += ax[s, :, 2 * H:]
            np.tanh(nn_, out=nn_)
            h = hs[s + 1]
            np.subtract(hs[s], nn_, out=h)  # hₛ = nₛ + zₛ ⊙ (hₛ₋₁ − nₛ)
            h *= rz[:, H:]
            h += nn_
        return _DirCache(x, hs, acts, None, None, hn, bool(d))

    def _bptt(
        self, dc: _DirCache, dys: np.ndarray, dh_last: np.ndarray | None, dc_last: np.ndarray | None,
        w_hh: np.ndarray, need_dh0: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        L, V, n, H = dys.shape
        dt = dc.hs.dtype
        r, z, nn_ = dc.acts[..., :H], dc.acts[..., H:2 * H], dc.acts[..., 2 * H:]
        if dc.hn is None:  # only a cache made by GRU._scan reaches here
            raise ValueError("GRU.vjp needs a cache from GRU.forward")
        # the step's local derivatives for all t at once (vectorized before the loop)
        p_n = (1.0 - z) * (1.0 - nn_ * nn_)  # ∂hₜ/∂aₙ
        p_z = (dc.hs[:-1] - nn_) * z * (1.0 - z)  # ∂hₜ/∂a_z
        p_r = dc.hn * r * (1.0 - r)  # ∂aₙ/∂a_r
        dai = np.empty((L, V, n, 3 * H), dt)
        dah = np.empty((L, V, n, 3 * H), dt)
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
            if self._cut(s):
                carry[...] = 0.0
            elif s > 0 or need_dh0:
                np.matmul(dah[s], w_hh, out=carry)  # dhₛ₋₁ ← daʰₛ W_hh + dhₛ ⊙ zₛ
                dh *= z[s]
                carry += dh
        return dai, dah, (carry if need_dh0 else None), None


class LSTM(RNNBase):
    """Long short-term memory (PyTorch's ``nn.LSTM``), gates stacked i, f, g, o:

        [iₜ, fₜ, gₜ, oₜ] = [σ, σ, tanh, σ](xₜ W_ihᵀ + b_ih + hₜ₋₁ W_hhᵀ + b_hh)
        cₜ = fₜ ⊙ cₜ₋₁ + iₜ ⊙ gₜ          hₜ = oₜ ⊙ tanh(cₜ)

    Shapes:  W_ih (4H, I)  W_hh (4H, H)  b_ih, b_hh (4H,)  hₜ, cₜ (N, H)
    BPTT, step t from L−1 down to 0 (dhₜ = dyₜ + carryₕ; carry_c = 0 before the last step, or dcₙ):
        dcₜ = carry_c + dhₜ ⊙ oₜ ⊙ (1 − tanh²cₜ)
        doₜ = dhₜ ⊙ tanh cₜ     diₜ = dcₜ ⊙ gₜ     dfₜ = dcₜ ⊙ cₜ₋₁     dgₜ = dcₜ ⊙ iₜ
        daₜ = [diₜ, dfₜ, dgₜ, doₜ] ⊙ [i(1−i), f(1−f), 1−g², o(1−o)]ₜ   (one product over the 4H gates)
        carry_c = dcₜ ⊙ fₜ (→ dcₜ₋₁)      carryₕ = daₜ W_hh (→ dhₜ₋₁)      (after t = 0: dc₀, dh₀)
    Computation: one GEMM per step for all four gates; σ(a) = ½ + ½ tanh(a/2), with the ½ folded into
    the weights, so the four gate nonlinearities are a single tanh over (N, 4H) and one affine map.
    ``proj_size`` (PyTorch's projected LSTM) is not supported: only 0.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        bptt_truncate: int | None = None,
        dtype: Any = None,
        rng: RNGLike = None,
    ) -> None:
        if proj_size != 0:
            raise ValueError(
                f"LSTM(proj_size={proj_size!r}): projected LSTMs (hₜ = W_hr(oₜ ⊙ tanh cₜ)) are not supported; "
                "use proj_size=0, or add a Linear layer after the LSTM to project its output."
            )
        super().__init__(
            "LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            bptt_truncate=bptt_truncate, dtype=dtype, rng=rng,
        )

    def _scan(self, x: np.ndarray, k: int, d: int, h0: np.ndarray, c0: np.ndarray | None) -> _DirCache:
        w_ih, w_hh, b_ih, b_hh = self._weights(k, d)
        L, n, _ = x.shape
        H = self.hidden_size
        dt = x.dtype
        # s = [½, ½, 1, ½] per gate block: σ(a) = ½ + ½ tanh(a/2) = s tanh(s a) + (1 − s) on the σ gates,
        # and tanh(a) = s tanh(s a) + (1 − s) with s = 1 on g. Scaling by ½ is exact in floating point.
        scale = np.repeat(np.array([0.5, 0.5, 1.0, 0.5], dt), H)
        shift = (1.0 - scale).astype(dt)
        ax = (x.reshape(L * n, -1) @ (w_ih.T * scale)).reshape(L, n, 4 * H)  # s ⊙ (X W_ihᵀ), one GEMM
        if b_ih is not None and b_hh is not None:
            ax += (b_ih + b_hh) * scale
        if d:
            ax = ax[::-1]
        whh_t = w_hh.T * scale  # (H, 4H)
        hs = np.empty((L + 1, n, H), dt)
        cs = np.empty((L + 1, n, H), dt)
        hs[0] = h0
        cs[0] = c0 if c0 is not None else 0.0
        acts = np.empty((L, n, 4 * H), dt)
        tcs = np.empty((L, n, H), dt)
        ig = np.empty((n, H), dt)
        for s in range(L):
            a = np.matmul(hs[s], whh_t, out=acts[s])  # s ⊙ aₛ for all four gates: one GEMM
            a += ax[s]
            np.tanh(a, out=a)
            a *= scale
            a += shift  # [i, f, g, o]
            i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            c = np.multiply(f, cs[s], out=cs[s + 1])  # cₛ = fₛ ⊙ cₛ₋₁ + iₛ ⊙ gₛ
            np.multiply(i, g, out=ig)
            c += ig
            np.tanh(c, out=tcs[s])
            np.multiply(o, tcs[s], out=hs[s + 1])  # hₛ = oₛ ⊙ tanh cₛ
        return _DirCache(x, hs, acts, cs, tcs, None, bool(d))

    def _bptt(
        self, dc: _DirCache, dys: np.ndarray, dh_last: np.ndarray | None, dc_last: np.ndarray | None,
        w_hh: np.ndarray, need_dh0: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        L, V, n, H = dys.shape
        dt = dc.hs.dtype
        acts, cs, tcs = dc.acts, dc.cs, dc.tcs
        if cs is None or tcs is None:  # only a cache made by LSTM._scan reaches here
            raise ValueError("LSTM.vjp needs a cache from LSTM.forward")
        # the gates' local derivatives [i(1−i), f(1−f), 1−g², o(1−o)] = (1 − a)(a + β), β = 1 on g, are
        # computed step by step while aₛ is in cache (faster than one pass over all of (L, N, 4H) first)
        beta = np.zeros(4 * H, dt)
        beta[2 * H:3 * H] = 1.0
        da = np.empty((L, V, n, 4 * H), dt)
        carry_h = np.zeros((V, n, H), dt) if dh_last is None else dh_last.copy()
        carry_c = np.zeros((V, n, H), dt) if dc_last is None else dc_last.copy()
        dh = np.empty((V, n, H), dt)
        tmp = np.empty((V, n, H), dt)
        k_c = np.empty((n, H), dt)
        dact = np.empty((n, 4 * H), dt)
        dact2 = np.empty((n, 4 * H), dt)
        for s in reversed(range(L)):
            a, tc = acts[s], tcs[s]
            np.add(dys[s], carry_h, out=dh)  # dhₛ = dyₛ + carryₕ
            np.multiply(tc, tc, out=k_c)
            np.subtract(1.0, k_c, out=k_c)
            k_c *= a[:, 3 * H:]  # ∂hₛ/∂cₛ = oₛ ⊙ (1 − tanh²cₛ)
            np.multiply(dh, k_c, out=tmp)
            carry_c += tmp  # dcₛ = carry_c + dhₛ ⊙ oₛ ⊙ (1 − tanh²cₛ)
            das = da[s]
            np.multiply(carry_c, a[:, 2 * H:3 * H], out=das[..., :H])  # diₛ = dcₛ ⊙ gₛ
            np.multiply(carry_c, cs[s], out=das[..., H:2 * H])  # dfₛ = dcₛ ⊙ cₛ₋₁
            np.multiply(carry_c, a[:, :H], out=das[..., 2 * H:3 * H])  # dgₛ = dcₛ ⊙ iₛ
            np.multiply(dh, tc, out=das[..., 3 * H:])  # doₛ = dhₛ ⊙ tanh cₛ
            np.subtract(1.0, a, out=dact)
            np.add(a, beta, out=dact2)
            dact *= dact2
            das *= dact  # through the gate nonlinearities: daₛ
            if self._cut(s):
                carry_h[...] = 0.0
                carry_c[...] = 0.0
            elif s > 0 or need_dh0:
                carry_c *= a[:, H:2 * H]  # dcₛ₋₁ = dcₛ ⊙ fₛ
                np.matmul(das, w_hh, out=carry_h)  # dhₛ₋₁ = daₛ W_hh
        return da, da, (carry_h if need_dh0 else None), (carry_c if need_dh0 else None)


class LastStepCache(NamedTuple):
    x_shape: tuple[int, ...]
    dim: int


class LastStep(Layer):
    """The last time step of a sequence:  y = x[:, −1]  (``dim=1``, batch_first) or  y = x[−1]  (``dim=0``).

    For a classifier on a recurrent layer's output ("many to one"), e.g.
    ``Sequential(LSTM(32, 128, batch_first=True), LastStep(), Linear(128, 10))``.
    Shapes:  x (N, L, F) → y (N, F) with dim=1;  x (L, N, F) → y (N, F) with dim=0.
    VJP:     dx = dy at the last step, zero at every other step.
    With ``bidirectional=True`` the reverse direction's features at the last step have read only
    that step; concatenate with the first step's if a full summary of both directions is wanted.
    """

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        if dim not in (0, 1) or isinstance(dim, bool):
            raise ValueError(
                f"LastStep(dim={dim!r}): expected the time axis, 1 for batch_first (N, L, F) or 0 for (L, N, F)"
            )
        self.dim = int(dim)

    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, LastStepCache]:
        if x.ndim < 2 or x.shape[self.dim] == 0:
            raise ValueError(
                f"LastStep(dim={self.dim}) got x.shape={x.shape}; expected a sequence with a non-empty time axis "
                f"{self.dim} ((N, L, F) for dim=1, (L, N, F) for dim=0)"
            )
        y = x[:, -1] if self.dim == 1 else x[-1]
        return y, LastStepCache(x.shape, self.dim)

    def vjp(
        self, cache: LastStepCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        nv = n_vector_axes(dy, len(cache.x_shape) - 1, "LastStep")
        if not need_dx:
            return NO_DX, {}
        dx = np.zeros(dy.shape[:nv] + cache.x_shape, dy.dtype)
        index = (slice(None),) * (nv + cache.dim) + (-1,)
        dx[index] = dy
        return dx, {}

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def get_config(self) -> dict[str, Any]:
        return {"dim": self.dim}


# -- truncated BPTT for a whole model (what fit(bptt_truncate=k) uses) ---------------------------
def recurrent_layers(model: Layer) -> list[RNNBase]:
    """Every recurrent layer (RNN, GRU, LSTM) in ``model``, the model itself included, depth first."""
    found: list[RNNBase] = [model] if isinstance(model, RNNBase) else []
    for child in model.children():
        found += recurrent_layers(child)
    return found


def truncated_bptt(model: Layer, k: int, *, caller: str = "truncated_bptt") -> _TruncatedBPTT:
    """``with truncated_bptt(model, k):`` every recurrent layer of ``model`` has ``bptt_truncate = k``
    inside the block (see the module docs); each gets its own setting back afterwards. A model
    without a recurrent layer is refused; ``caller`` names the function in that message.
    """
    layers = recurrent_layers(model)
    if not layers:
        raise ValueError(f"{caller}(bptt_truncate={k!r}): the model has no recurrent layer (RNN, GRU, LSTM)")
    return _TruncatedBPTT(layers, k)


class _TruncatedBPTT:
    """The context manager ``truncated_bptt`` returns: sets k on entry, restores each layer's own on exit."""

    def __init__(self, layers: list[RNNBase], k: int) -> None:
        self.layers, self.k = layers, k
        self.saved = [m.bptt_truncate for m in layers]

    def __enter__(self) -> None:
        try:
            for m in self.layers:
                m.bptt_truncate = self.k  # validated by the layer
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        for m, k in zip(self.layers, self.saved, strict=True):
            m.bptt_truncate = k
