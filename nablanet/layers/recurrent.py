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

Code: each cell's ``_scan`` (one direction's forward) and ``_bptt`` (its BPTT) sit under the cell's
equations; ``RNNBase`` runs them over layers and directions. Faster LSTM and GRU recurrences, used in
training: ``nablanet/layers/kernels/recurrent.py``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from nablanet._dtype import resolve_dtype
from nablanet._random import RNGLike, get_rng
from nablanet._validation import as_float_input, check_finite
from nablanet.layers.activations import sigmoid
from nablanet.layers.base import NO_DX, Layer, n_vector_axes
from nablanet.parameter import Parameter

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "GRU": 3, "LSTM": 4}

State = np.ndarray | tuple[np.ndarray, np.ndarray]
"""A recurrent state: h (RNN, GRU) or the pair (h, c) (LSTM)."""


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


ScanFn = Callable[[np.ndarray, int, int, np.ndarray, np.ndarray | None], _DirCache]
"""One direction's forward: (x, layer k, direction d, h₀, c₀) → its cache."""
BpttFn = Callable[
    [_DirCache, np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray, bool],
    tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None],
]
"""One direction's BPTT: (cache, dy, dhₙ, dcₙ, W_hh, need_dh0) → (daˣ, daʰ, dh₀, dc₀), in scan order."""


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

    @staticmethod
    def _param_name(kind: str, k: int, d: int) -> str:
        """PyTorch's name of a parameter of layer k, direction d: ``_param_name("weight_ih", 1, 1)`` is
        ``"weight_ih_l1_reverse"``."""
        return f"{kind}_l{k}{'_reverse' if d else ''}"

    @classmethod
    def _param_names(cls, k: int, d: int) -> tuple[str, str, str, str]:
        """The names of (W_ih, W_hh, b_ih, b_hh) of layer k, direction d."""
        kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        w_ih, w_hh, b_ih, b_hh = (cls._param_name(kind, k, d) for kind in kinds)
        return w_ih, w_hh, b_ih, b_hh

    def _param(self, kind: str, k: int, d: int) -> np.ndarray | None:
        p = self._parameters.get(self._param_name(kind, k, d))
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
        return self._forward_stack(x, hx, train=train, rng=rng, scan=self._scan)

    def _forward_stack(self, x: np.ndarray, hx: State | None, *, train: bool, rng: RNGLike,
                       scan: ScanFn) -> tuple[np.ndarray, State, RecurrentCache]:
        """The stack of layers and directions around ``scan``, one direction's recurrence."""
        x = self._check_x(x)
        xt = self._time_major(x)
        n, dt, H, D = xt.shape[1], xt.dtype, self.hidden_size, self.num_directions
        h0s, c0s = self._split_hx(hx, n)
        dirs: list[_DirCache] = []
        masks: list[np.ndarray | None] = []
        layer_in = xt
        gen = get_rng(rng) if train and self.dropout > 0 and self.num_layers > 1 else None
        for k in range(self.num_layers):
            if k > 0:  # dropout on layer k's input: keep with probability 1 − p, scaled by 1/(1 − p)
                factor = None if gen is None else (gen.random(layer_in.shape) >= self.dropout).astype(dt)
                if factor is not None and self.dropout < 1:
                    factor *= dt.type(1.0 / (1.0 - self.dropout))
                layer_in = layer_in if factor is None else layer_in * factor
                masks.append(factor)
            for d in range(D):
                j = k * D + d
                h0 = np.zeros((n, H), dt) if h0s is None else h0s[j]
                c0 = None if self.mode != "LSTM" else (np.zeros((n, H), dt) if c0s is None else c0s[j])
                dirs.append(scan(layer_in, k, d, h0, c0))
            layer_in = _layer_output([dc.hs for dc in dirs[k * D:]])
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
        return self._vjp_stack(cache, dy, dh_n, per_sample=per_sample, need_dx=need_dx, need_dhx=need_dhx,
                               bptt=self._bptt)

    def _vjp_stack(
        self, cache: RecurrentCache, dy: np.ndarray, dh_n: State | None, *, per_sample: bool, need_dx: bool,
        need_dhx: bool, bptt: BpttFn,
    ) -> tuple[np.ndarray, State | None, dict[str, np.ndarray]]:
        """The stack of layers and directions around ``bptt``, one direction's backpropagation through time."""
        vshape, dout = self._dy_time_major(cache, dy)  # (L, V, N, D·H)
        L, V, n, _ = dout.shape
        H, D = self.hidden_size, self.num_directions
        dhn_h, dhn_c = self._split_dstate(dh_n, vshape, V, n)
        grads: dict[str, np.ndarray] = {}
        dh0: dict[int, Any] = {}  # the initial states' gradients by j = k·D + d (None without need_dhx)
        dc0: dict[int, Any] = {}
        for k in reversed(range(self.num_layers)):
            want_dx = need_dx or k > 0
            dlayer = np.zeros((L, V, n, cache.dirs[k * D].x.shape[-1]), dout.dtype) if want_dx else NO_DX
            for d in range(D):
                j = k * D + d
                dys = dout[..., d * H:(d + 1) * H]
                dai, dah, dh0[j], dc0[j] = bptt(
                    cache.dirs[j], dys[::-1] if d else dys, None if dhn_h is None else dhn_h[:, j],
                    None if dhn_c is None else dhn_c[:, j], self._weights(k, d)[1], need_dhx)
                grads.update(self._param_grads(k, d, cache.dirs[j], dai, dah, per_sample))
                if want_dx:  # dxₜ = daˣₜ W_ih, in time order
                    dlayer += (dai[::-1] if d else dai) @ self._weights(k, d)[0]
            mask = cache.masks[k - 1] if k > 0 else None
            dout = dlayer if mask is None else dlayer * mask[:, None]  # the gradient of layer k − 1's output
        ordered = {name: grads[name].reshape(*vshape, *grads[name].shape[1:]) for name in self._parameters}
        dx = NO_DX
        if need_dx:
            dx = self._dx_layout(cache, dout, vshape)
        if not need_dhx:
            return dx, None, ordered
        shape = (*vshape, D * self.num_layers, n, H)
        dhx = np.stack([dh0[j] for j in sorted(dh0)], axis=1).reshape(shape)
        if self.mode != "LSTM":
            return dx, dhx, ordered
        return dx, (dhx, np.stack([dc0[j] for j in sorted(dc0)], axis=1).reshape(shape)), ordered

    def _time_major(self, x: np.ndarray) -> np.ndarray:
        """x (L, N, F), or (N, L, F) with batch_first, as (L, N, F): the order the scans read."""
        return np.ascontiguousarray(x.swapaxes(0, 1) if self.batch_first else x)

    def _dx_layout(self, cache: RecurrentCache, dout: np.ndarray, vshape: tuple[int, ...]) -> np.ndarray:
        """The input's gradient (L, V, N, I) in time order → (*V, *x.shape), the input's layout."""
        dxv = dout.transpose(1, 2, 0, 3) if self.batch_first else dout.transpose(1, 0, 2, 3)
        return np.ascontiguousarray(dxv).reshape(*vshape, *cache.x_shape)

    def _dy_time_major(self, cache: RecurrentCache, dy: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
        """dy (*V, output) → (V-shape, dy as (L, V, N, D·H)), checked against the output's shape."""
        who = type(self).__name__
        nv = n_vector_axes(dy, cache.out_ndim, who)
        L, n = cache.dirs[0].x.shape[:2]
        expected = (*((n, L) if self.batch_first else (L, n)), self.num_directions * self.hidden_size)
        if dy.shape[nv:] != expected:
            raise ValueError(
                f"{who}.vjp got dy.shape={dy.shape}; expected (*V, {', '.join(map(str, expected))}), "
                "the output's shape with optional leading vector axes"
            )
        dy4 = dy.astype(cache.dirs[0].hs.dtype, copy=False).reshape(-1, *expected)
        return dy.shape[:nv], dy4.transpose(2, 0, 1, 3) if self.batch_first else dy4.transpose(1, 0, 2, 3)

    def _param_grads(self, k: int, d: int, dc: _DirCache, dai: np.ndarray, dah: np.ndarray,
                     per_sample: bool) -> dict[str, np.ndarray]:
        """Parameters are shared across time steps, so each gradient sums over t (and n unless per sample):
        dW_ih = Σ daˣᵀ x,  dW_hh = Σ daʰᵀ hₜ₋₁,  db_ih = Σ daˣ,  db_hh = Σ daʰ; leading axis V."""
        w_ih, w_hh, b_ih, b_hh = self._param_names(k, d)
        x = dc.x[::-1] if dc.reverse else dc.x  # in scan order, like dai
        grads = {w_ih: _sum_tn(dai, x, per_sample), w_hh: _sum_tn(dah, dc.hs[:-1], per_sample)}
        if self.bias:
            axes = (0,) if per_sample else (0, 2)
            grads[b_ih] = dai.sum(axis=axes)
            grads[b_hh] = grads[b_ih].copy() if dah is dai else dah.sum(axis=axes)
        return grads

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


def _layer_output(states: list[np.ndarray]) -> np.ndarray:
    """One layer's output sequence (L, N, D·H) in time order, from its directions' states (L+1, N, H) in
    scan order (direction 1 scans backwards): the features of direction d are columns d·H … (d+1)·H."""
    outs = [hs[1:][::-1] if d else hs[1:] for d, hs in enumerate(states)]
    return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=-1)


def _sum_tn(da: np.ndarray, inp: np.ndarray, per_sample: bool) -> np.ndarray:
    """Σₜₙ daₜᵥₙᵀ inpₜₙ → (V, G, I), or Σₜ per sample → (V, N, G, I); da (L, V, N, G), inp (L, N, I)."""
    if per_sample:
        return np.einsum("tvng,tni->vngi", da, inp, optimize=True)
    return np.tensordot(da, inp, axes=([0, 2], [0, 1]))


def _add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return None if a is None or b is None else a + b


def _project(x: np.ndarray, w_ih: np.ndarray, bias: np.ndarray | None, reverse: bool) -> np.ndarray:
    """Aˣ = X W_ihᵀ + bias for all time steps at once (one GEMM), in scan order: x (L, N, I) → (L, N, G·H)."""
    ax = (x.reshape(-1, x.shape[-1]) @ w_ih.T).reshape(*x.shape[:-1], -1)  # one 2-D GEMM
    if bias is not None:
        ax += bias
    return ax[::-1] if reverse else ax


class RNN(RNNBase):
    """Elman RNN (PyTorch's ``nn.RNN``):  hₜ = φ(xₜ W_ihᵀ + b_ih + hₜ₋₁ W_hhᵀ + b_hh),  φ = tanh or ReLU.

    Shapes:  W_ih (H, I)  W_hh (H, H)  b_ih, b_hh (H,)  hₜ (N, H)
    BPTT, step t from L−1 down to 0 (carry = 0 before the last step, or dhₙ):
        dhₜ = dyₜ + carry        daₜ = dhₜ ⊙ φ′(aₜ)        carry = daₜ W_hh   (→ dhₜ₋₁; after t = 0: dh₀)
        φ′ = 1 − hₜ² for tanh;  for ReLU 1 where aₜ ≥ 0 and 0 elsewhere (the library's convention:
        ReLU′(0) = 1; PyTorch uses 0 at exactly 0, which random data never hits).
    Then dW_ih = Σ daₜᵀ xₜ, dW_hh = Σ daₜᵀ hₜ₋₁, db_ih = db_hh = Σ daₜ, dxₜ = daₜ W_ih (module docstring).
    """

    def _scan(self, x: np.ndarray, k: int, d: int, h0: np.ndarray, c0: np.ndarray | None) -> _DirCache:
        w_ih, w_hh, b_ih, b_hh = self._weights(k, d)
        ax = _project(x, w_ih, _add(b_ih, b_hh), reverse=bool(d))  # Aˣ = X W_ihᵀ + b_ih + b_hh, all steps
        hs, masks = [h0], []
        for s in range(len(ax)):
            a = ax[s] + hs[-1] @ w_hh.T  # aₛ
            if self.mode == "RNN_RELU":
                masks.append(a >= 0)
                hs.append(a * masks[-1])  # ReLU(aₛ)
            else:
                hs.append(np.tanh(a))
        hs_ = np.stack(hs)
        return _DirCache(x, hs_, np.stack(masks) if masks else hs_[1:], None, None, None, bool(d))

    def _bptt(
        self, dc: _DirCache, dys: np.ndarray, dh_last: np.ndarray | None, dc_last: np.ndarray | None,
        w_hh: np.ndarray, need_dh0: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        h = dc.hs[1:]
        dphi = rnn_dphi(self.mode, dc.acts, h)
        da = np.empty((*dys.shape[:-1], h.shape[-1]), h.dtype)  # (L, V, N, H)
        carry = np.zeros(da.shape[1:], h.dtype) if dh_last is None else dh_last
        for s in reversed(range(len(da))):
            da[s] = (dys[s] + carry) * dphi[s]  # daₛ = dhₛ ⊙ φ′(aₛ),  dhₛ = dyₛ + carry
            carry = np.zeros_like(carry) if self._cut(s) else da[s] @ w_hh  # → dhₛ₋₁
        return da, da, carry if need_dh0 else None, None

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

    def _scan(self, x: np.ndarray, k: int, d: int, h0: np.ndarray, c0: np.ndarray | None) -> _DirCache:
        w_ih, w_hh, b_ih, b_hh = self._weights(k, d)
        H = self.hidden_size
        b_hn = None if b_hh is None else b_hh[2 * H:]
        b_rz = None if b_ih is None or b_hh is None else b_ih + np.concatenate([b_hh[: 2 * H], np.zeros(H, b_hh.dtype)])
        ax = _project(x, w_ih, b_rz, reverse=bool(d))  # X W_ihᵀ + b_ih + [b_hr, b_hz, 0], all steps
        hs, acts, hns = [h0], [], []
        for s in range(len(ax)):
            gh = hs[-1] @ w_hh.T  # hₛ₋₁ W_hhᵀ for the three gates
            r = sigmoid(ax[s, :, :H] + gh[:, :H])
            z = sigmoid(ax[s, :, H:2 * H] + gh[:, H:2 * H])
            hns.append(gh[:, 2 * H:] if b_hn is None else gh[:, 2 * H:] + b_hn)  # W_hn hₛ₋₁ + b_hn
            n = np.tanh(ax[s, :, 2 * H:] + r * hns[-1])
            hs.append((1.0 - z) * n + z * hs[-1])
            acts.append(np.concatenate([r, z, n], axis=-1))
        return _DirCache(x, np.stack(hs), np.stack(acts), None, None, np.stack(hns), bool(d))

    def _bptt(
        self, dc: _DirCache, dys: np.ndarray, dh_last: np.ndarray | None, dc_last: np.ndarray | None,
        w_hh: np.ndarray, need_dh0: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        H = self.hidden_size
        r, z, n = dc.acts[..., :H], dc.acts[..., H:2 * H], dc.acts[..., 2 * H:]
        if dc.hn is None:  # only a cache made by GRU._scan reaches here
            raise ValueError("GRU.vjp needs a cache from GRU.forward")
        p_n, p_z, p_r = gru_step_factors(r, z, n, dc.hs[:-1], dc.hn)  # all t at once
        dai = np.empty((*dys.shape[:-1], 3 * H), dys.dtype)  # (L, V, N, 3H)
        dah = np.empty_like(dai)
        carry = np.zeros(dys.shape[1:], dys.dtype) if dh_last is None else dh_last
        for s in reversed(range(len(dai))):
            dh = dys[s] + carry
            da_n = dh * p_n[s]
            da_r = da_n * p_r[s]
            dai[s] = np.concatenate([da_r, dh * p_z[s], da_n], axis=-1)
            dah[s] = np.concatenate([da_r, dh * p_z[s], da_n * r[s]], axis=-1)
            carry = np.zeros_like(carry) if self._cut(s) else dh * z[s] + dah[s] @ w_hh  # → dhₛ₋₁
        return dai, dah, carry if need_dh0 else None, None

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



class LSTMStep(NamedTuple):
    """One time step t of an LSTM cell, as its VJP reads it: each array (N, H)."""

    i: np.ndarray  # input gate σ(aᵢ)
    f: np.ndarray  # forget gate σ(a_f)
    g: np.ndarray  # candidate tanh(a_g)
    o: np.ndarray  # output gate σ(aₒ)
    c_prev: np.ndarray  # cₜ₋₁
    tanh_c: np.ndarray  # tanh(cₜ)


CellVjp = Callable[[LSTMStep, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""One step's cell VJP: (step, dh, dc) → (da, dcₜ₋₁); see ``lstm_cell_vjp``."""


def rnn_dphi(mode: str, acts: np.ndarray, h: np.ndarray) -> np.ndarray:
    """φ′(aₜ) of an Elman RNN from its cache: [aₜ ≥ 0] (``acts``, the ReLU's masks) or 1 − hₜ² (tanh)."""
    return acts.astype(h.dtype) if mode == "RNN_RELU" else 1.0 - h * h


def gru_step_factors(r: np.ndarray, z: np.ndarray, n: np.ndarray, h_prev: np.ndarray,
                     hn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A GRU step's local derivatives p_n = ∂hₜ/∂aₙ = (1−z)(1−n²), p_z = ∂hₜ/∂a_z = (hₜ₋₁ − n) z(1−z) and
    p_r = ∂aₙ/∂a_r = hn r(1−r), for one step or all t at once."""
    return (1.0 - z) * (1.0 - n * n), (h_prev - n) * z * (1.0 - z), hn * r * (1.0 - r)


def lstm_gate_derivatives(step: LSTMStep) -> np.ndarray:
    """[i(1−i), f(1−f), 1−g², o(1−o)] (N, 4H): each gate's derivative with respect to its pre-activation."""
    i, f, g, o = step.i, step.f, step.g, step.o
    return np.concatenate([i * (1.0 - i), f * (1.0 - f), 1.0 - g * g, o * (1.0 - o)], axis=-1)


def lstm_cell_vjp(step: LSTMStep, dh: np.ndarray, dc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The VJP of one LSTM step's cell: dh = ∂L/∂hₜ (the output's and step t + 1's), dc = ∂L/∂cₜ from step
    t + 1, both (*V, N, H), to da = ∂L/∂aₜ (*V, N, 4H), gates i, f, g, o, and dcₜ₋₁ = ∂L/∂cₜ₋₁ (*V, N, H):

        dcₜ = dc + dh ⊙ oₜ ⊙ (1 − tanh²cₜ)
        [diₜ, dfₜ, dgₜ, doₜ] = [dcₜ ⊙ gₜ, dcₜ ⊙ cₜ₋₁, dcₜ ⊙ iₜ, dh ⊙ tanh cₜ]
        daₜ = [diₜ, dfₜ, dgₜ, doₜ] ⊙ [i(1−i), f(1−f), 1−g², o(1−o)]ₜ        dcₜ₋₁ = dcₜ ⊙ fₜ
    """
    dgates, dct = lstm_cell_dgates(step, dh, dc)
    return dgates * lstm_gate_derivatives(step), dct * step.f


def lstm_cell_dgates(step: LSTMStep, dh: np.ndarray, dc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first two lines of ``lstm_cell_vjp``: ([diₜ, dfₜ, dgₜ, doₜ] (*V, N, 4H), dcₜ (*V, N, H))."""
    dct = dc + dh * step.o * (1.0 - step.tanh_c ** 2)
    return np.concatenate([dct * step.g, dct * step.c_prev, dct * step.i, dh * step.tanh_c], axis=-1), dct


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
    The first three lines are one step's cell VJP, ``lstm_cell_vjp``; the loop around it is ``_bptt``.
    ``proj_size`` (PyTorch's projected LSTM) is not supported: only 0.
    """

    def _scan(self, x: np.ndarray, k: int, d: int, h0: np.ndarray, c0: np.ndarray | None) -> _DirCache:
        w_ih, w_hh, b_ih, b_hh = self._weights(k, d)
        H = self.hidden_size
        ax = _project(x, w_ih, _add(b_ih, b_hh), reverse=bool(d))  # Aˣ = X W_ihᵀ + b_ih + b_hh, all steps
        hs, cs, acts, tcs = [h0], [np.zeros_like(h0) if c0 is None else c0], [], []
        for s in range(len(ax)):
            a = ax[s] + hs[-1] @ w_hh.T  # aₛ for the four gates: one product
            i, f, g, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
            cs.append(f * cs[-1] + i * g)
            tcs.append(np.tanh(cs[-1]))
            hs.append(o * tcs[-1])
            acts.append(np.concatenate([i, f, g, o], axis=-1))
        return _DirCache(x, np.stack(hs), np.stack(acts), np.stack(cs), np.stack(tcs), None, bool(d))

    def _bptt(
        self, dc: _DirCache, dys: np.ndarray, dh_last: np.ndarray | None, dc_last: np.ndarray | None,
        w_hh: np.ndarray, need_dh0: bool, cell: CellVjp = lstm_cell_vjp,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """One direction's BPTT around ``cell``, one step's cell VJP (``lstm_cell_vjp``, or one swapped in)."""
        H = self.hidden_size
        if dc.cs is None or dc.tcs is None:  # only a cache made by LSTM._scan reaches here
            raise ValueError("LSTM.vjp needs a cache from LSTM.forward")
        i, f, g, o = (dc.acts[..., j * H:(j + 1) * H] for j in range(4))
        da = np.empty((*dys.shape[:-1], 4 * H), dys.dtype)  # (L, V, N, 4H)
        carry_h = np.zeros(dys.shape[1:], dys.dtype) if dh_last is None else dh_last
        carry_c = np.zeros(dys.shape[1:], dys.dtype) if dc_last is None else dc_last
        for s in reversed(range(len(da))):
            da[s], dc_prev = cell(LSTMStep(i[s], f[s], g[s], o[s], dc.cs[s], dc.tcs[s]), dys[s] + carry_h, carry_c)
            if self._cut(s):
                carry_h, carry_c = np.zeros_like(carry_h), np.zeros_like(carry_c)
            else:
                carry_h, carry_c = da[s] @ w_hh, dc_prev  # → dhₛ₋₁, dcₛ₋₁
        return da, da, carry_h if need_dh0 else None, carry_c if need_dh0 else None

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
