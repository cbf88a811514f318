"""Multi-head scaled dot-product attention (PyTorch's ``nn.MultiheadAttention``) with an explicit VJP."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np

from nablanet._dtype import resolve_dtype
from nablanet._random import RNGLike, get_rng
from nablanet._validation import as_float_input, as_numeric_array, check_finite
from nablanet.layers import kernels
from nablanet.layers.base import NO_DX, Container, Tape, TapeEntry, n_vector_axes
from nablanet.layers.contract import LeafCache
from nablanet.layers.linear import Linear, LinearCache
from nablanet.layers.softmax import softmax
from nablanet.parameter import Parameter


class AttentionCache(NamedTuple):
    """What the in-projection and attention VJP needs (the cache of the layer's own tape entry).

    All batch first: n batch, h heads, l target (query) position, s source (key) position, d head dim.
    """

    q: np.ndarray  # (N, L, E) query input
    k: np.ndarray  # (N, S, kdim) key input
    v: np.ndarray  # (N, S, vdim) value input
    Q: np.ndarray  # (N, h, L, d) projected queries
    K: np.ndarray  # (N, h, S, d) projected keys
    V: np.ndarray  # (N, h, S, d) projected values
    P: np.ndarray  # (N, h, L, S) attention probabilities, softmax before dropout
    drop: np.ndarray | None  # (N, h, L, S) dropout factor m/(1 − p); None without dropout
    self_attention: bool  # q, k and v were one input x (forward): dx = dq + dk + dv
    batch_first: bool  # the layout of the caller's arrays

    @property
    def Pd(self) -> np.ndarray:
        """P̃ = P ⊙ m/(1 − p), the probabilities after dropout (P without it)."""
        return self.P if self.drop is None else self.P * self.drop


def split_heads(a: np.ndarray, h: int) -> np.ndarray:
    """(*V, N, T, E) → (*V, N, h, T, d), d = E/h."""
    return np.swapaxes(a.reshape(*a.shape[:-1], h, a.shape[-1] // h), -2, -3)


def join_heads(a: np.ndarray) -> np.ndarray:
    """(*V, N, h, T, d) → (*V, N, T, E), the heads concatenated."""
    a = np.swapaxes(a, -2, -3)
    return a.reshape(*a.shape[:-2], -1)


def attention_scores_vjp(c: AttentionCache, dO: np.ndarray) -> tuple[np.ndarray, ...]:
    """The VJP of O = P̃ V, P̃ = P ⊙ m/(1 − p), P = softmax(A), A = Q Kᵀ/√d (masks are constants), per
    head: from dO (*V, N, h, L, d) the gradients (dP, dA, dQ, dK, dV) of P (through the dropout mask),
    A (*V, N, h, L, S), Q (*V, N, h, L, d), K and V (*V, N, h, S, d)."""
    scale = 1.0 / math.sqrt(c.Q.shape[-1])
    dPd = dO @ c.V.swapaxes(-1, -2)  # (*V, N, h, L, S)
    dV = c.Pd.swapaxes(-1, -2) @ dO  # (*V, N, h, S, d)
    dP = dPd if c.drop is None else dPd * c.drop
    dA = c.P * (dP - (dP * c.P).sum(axis=-1, keepdims=True))
    dQ = (dA @ c.K) * scale  # (*V, N, h, L, d)
    dK = (dA.swapaxes(-1, -2) @ c.Q) * scale  # (*V, N, h, S, d)
    return dP, dA, dQ, dK, dV


class MultiheadAttentionCache(NamedTuple):
    attn: AttentionCache  # in-projection and attention
    out: LinearCache  # out_proj's cache: the heads concatenated (N, L, E)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(
            f"MultiheadAttention({name}={value!r}): expected an int ≥ {minimum}, e.g. MultiheadAttention(64, 4)"
        )
    return int(value)


class MultiheadAttention(Container):
    """Multi-head attention, PyTorch's arguments, parameter names and layouts.

    Index letters: n batch, l target position (L), s source position (S), h head, d head dim
    (E = h·d), e/i embedding input axis. Arrays below are batch first; with ``batch_first=False``
    (PyTorch's default) the caller's query is (L, N, E), key/value (S, N, ·) and the output (L, N, E).

    Forward:
        Q = q W_qᵀ + b_q  (N, L, E)     K = k W_kᵀ + b_k  (N, S, E)     V = v W_vᵀ + b_v  (N, S, E)
        split heads: Q → (N, h, L, d), K, V → (N, h, S, d)
        A = Q Kᵀ/√d + M  (N, h, L, S)   M: additive mask, −∞ where a key is masked
        P = softmax over s of A          P̃ = P ⊙ m/(1 − p) while training (dropout), else P
        O = P̃ V  (N, h, L, d), heads joined to (N, L, E)
        y = O W_oᵀ + b_o  (N, L, E)      (``out_proj``, a child Linear)
        weights = P̃ averaged over heads (N, L, S), or per head (N, h, L, S)
    VJP (dy = ∂L/∂y; out_proj's VJP gives dO):
        dP̃ = dO Vᵀ  (N, h, L, S)        dV = P̃ᵀ dO  (N, h, S, d)
        dP = dP̃ ⊙ m/(1 − p)             dA = P ⊙ (dP − Σₛ dP ⊙ P)   (softmax's VJP)
        dQ = dA K/√d  (N, h, L, d)       dK = dAᵀ Q/√d  (N, h, S, d)
        heads joined: dQ, dK, dV (N, ·, E)
        dW_q = Σₙₗ dQₙₗ ⊗ qₙₗ   db_q = Σₙₗ dQₙₗ   dq = dQ W_q    (likewise k, v over s)
        Attention multiplies its inputs (P̃ V, Q Kᵀ), so each factor's gradient picks up the other.
    Parameters: ``in_proj_weight`` (3E, E) = [W_q; W_k; W_v], ``in_proj_bias`` (3E,),
    ``out_proj.weight`` (E, E), ``out_proj.bias`` (E,). With kdim or vdim ≠ E (cross-attention on
    other widths), as in PyTorch: ``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim),
    ``v_proj_weight`` (E, vdim) instead of ``in_proj_weight``.
    Init (PyTorch's): Xavier-uniform projections, zero biases, out_proj.weight ~ U(±1/√E).

    Calling it:
    * ``mha(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
      average_attn_weights=True, is_causal=False) -> (attn_output, attn_weights)`` as in PyTorch
      (weights ``None`` when ``need_weights=False``). Inputs are batched (3-D).
    * Inside a ``Sequential``: ``forward(x)`` is self-attention, query = key = value = x; the
      tape gets two entries: this layer (its in-projection and attention; cache ``AttentionCache``,
      dy = ∂L/∂O batch first) and ``"<name>.out_proj"`` (a Linear, batch first).
    * Cross-attention with gradients: ``forward_qkv(q, k, v, ...) -> (y, weights, cache)`` and
      ``vjp_qkv(cache, dy) -> (dq, dk, dv, grads)``. Gradients flow through y only, not the weights.
    ``vjp`` accepts both caches: the full one (any forward) gives every gradient, keyed by state_dict
    name; an ``AttentionCache`` (a tape entry's) gives the in-projection gradients and dx.

    Masks: ``key_padding_mask`` (N, S), bool (True = ignore that key) or float (added to A);
    ``attn_mask`` (L, S) or (N·h, L, S), bool (True = not allowed) or float (added);
    ``is_causal=True`` without ``attn_mask`` masks s > l (PyTorch requires the mask itself and
    takes ``is_causal`` as a hint; with ``attn_mask`` given, so do we). A query whose keys are all
    masked raises a ValueError (PyTorch returns NaN there).
    Dropout on P while training draws its mask from the ``rng`` handed to forward.
    Per-sample gradients keep the batch axis N first, whatever ``batch_first``; vector axes lead
    dy as in every layer: (*V, N, L, E) batch first, (*V, L, N, E) otherwise.
    Not supported (PyTorch options that raise here): ``add_bias_kv=True``, ``add_zero_attn=True``.
    """

    builds_own_children: ClassVar[bool] = True

    def _forward(
        self, query: Any, key: Any, value: Any, *, key_padding_mask: Any, attn_mask: Any, is_causal: bool,
        train: bool, rng: RNGLike, self_attention: bool,
    ) -> tuple[np.ndarray, np.ndarray, MultiheadAttentionCache]:
        """Attention output (caller's layout), P̃ (N, h, L, S), cache."""
        q = self._batch_first(query, "query", self.embed_dim, "L")
        if self_attention:
            k = v = q
        else:
            k = self._batch_first(key, "key", self.kdim, "S")
            v = self._batch_first(value, "value", self.vdim, "S")
            if k.shape[:2] != v.shape[:2] or k.shape[0] != q.shape[0]:
                raise ValueError(
                    f"MultiheadAttention: query, key and value must share the batch size, and key and value the "
                    f"source length; got query {np.shape(query)}, key {np.shape(key)}, value {np.shape(value)} "
                    f"(batch_first={self.batch_first})."
                )
        n, tgt = q.shape[:2]
        src = k.shape[1]
        h, d = self.num_heads, self.head_dim
        mask = self._mask(n, tgt, src, key_padding_mask, attn_mask, is_causal)
        Qm, Km, Vm = (self._project(a, role) for role, a in enumerate((q, k, v)))  # (N, L or S, E)
        Q, K, V = (np.ascontiguousarray(split_heads(a, h)) for a in (Qm, Km, Vm))  # (N, h, T, d)
        A = (Q @ K.swapaxes(-1, -2)) * (1.0 / math.sqrt(d))
        if mask is not None:
            A += mask
        P = softmax(A, axis=-1)
        drop: np.ndarray | None = None
        Pd = P
        if train and self.dropout > 0.0:
            keep = get_rng(rng).random(P.shape) >= self.dropout  # P(keep) = 1 − p
            drop = np.where(keep, 1.0 / (1.0 - self.dropout), 0.0).astype(P.dtype)
            Pd = P * drop
        O = join_heads(Pd @ V)
        # through the dispatch like every child's forward (the lab watches it there); the VJP below is Linear's
        # own, so the cache a swapped Linear VJP wraps (nablanet.testing.replace_vjp) is unwrapped
        y, out_cache = kernels.forward(self.out_proj, O, train=train, rng=rng)
        if type(out_cache) is LeafCache:
            out_cache = out_cache.cache
        cache = AttentionCache(q, k, v, Q, K, V, P, drop, self_attention, self.batch_first)
        return (y if self.batch_first else y.swapaxes(0, 1)), Pd, MultiheadAttentionCache(cache, out_cache)

    def _attention_vjp(
        self, c: AttentionCache, dO_cat: np.ndarray, per_sample: bool, need_dx: bool, fuse: bool
    ) -> tuple[Any, dict[str, np.ndarray]]:
        """From dO (*V, N, L, E) batch first: (dx, in-projection grads).

        dx is (dq, dk, dv) in the caller's layout, or their sum when ``fuse`` (self-attention);
        ``NO_DX`` when ``need_dx`` is False.
        """
        n_vector_axes(dO_cat, 3, "MultiheadAttention")
        _, _, dQ, dK, dV = attention_scores_vjp(c, split_heads(dO_cat, self.num_heads))
        dR = [join_heads(a) for a in (dQ, dK, dV)]  # dQ, dK, dV with the heads joined (*V, N, ·, E)
        dWs = [weight_grad(d, a, per_sample) for d, a in zip(dR, (c.q, c.k, c.v), strict=True)]
        grads = self._in_proj_grads(dWs, [bias_grad(d, per_sample) for d in dR])
        if not need_dx:
            return NO_DX, grads
        dq, dk, dv = (self._layout(d @ self._w(r)) for r, d in enumerate(dR))
        return (dq + dk + dv if fuse else (dq, dk, dv)), grads

    def _in_proj_grads(self, dWs: list[np.ndarray], dbs: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The query, key and value roles' weight and bias gradients under the parameter names."""
        grads: dict[str, np.ndarray] = {}
        if self.in_proj_weight is not None:
            grads["in_proj_weight"] = np.concatenate(dWs, axis=-2)
        else:
            grads.update(q_proj_weight=dWs[0], k_proj_weight=dWs[1], v_proj_weight=dWs[2])
        if self.in_proj_bias is not None:
            grads["in_proj_bias"] = np.concatenate(dbs, axis=-1)
        return grads

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        *,
        dtype: Any = None,
        rng: RNGLike = None,
    ) -> None:
        super().__init__()
        E = _check_int("embed_dim", embed_dim, 1)
        h = _check_int("num_heads", num_heads, 1)
        if E % h:
            raise ValueError(
                f"MultiheadAttention(embed_dim={E}, num_heads={h}): embed_dim must be divisible by num_heads "
                f"(each head gets embed_dim // num_heads features); try num_heads in "
                f"{[k for k in range(1, E + 1) if E % k == 0]}."
            )
        if isinstance(dropout, bool) or not isinstance(dropout, int | float | np.integer | np.floating) \
                or not 0.0 <= float(dropout) < 1.0:
            raise ValueError(
                f"MultiheadAttention(dropout={dropout!r}): expected the drop probability of attention weights "
                "in [0, 1), e.g. dropout=0.1 (0.0 switches it off)."
            )
        if add_bias_kv:
            raise ValueError(
                "MultiheadAttention(add_bias_kv=True) is not supported: nablanet has no learned bias_k/bias_v. "
                "Use add_bias_kv=False (PyTorch's default)."
            )
        if add_zero_attn:
            raise ValueError(
                "MultiheadAttention(add_zero_attn=True) is not supported: nablanet does not append a zero key. "
                "Use add_zero_attn=False (PyTorch's default)."
            )
        self.embed_dim = E
        self.num_heads = h
        self.head_dim = E // h
        self.dropout = float(dropout)
        self.kdim = E if kdim is None else _check_int("kdim", kdim, 1)
        self.vdim = E if vdim is None else _check_int("vdim", vdim, 1)
        self.batch_first = bool(batch_first)
        self._qkv_same_embed_dim = self.kdim == E and self.vdim == E
        dt = resolve_dtype(dtype)
        gen = get_rng(rng)

        def xavier(rows: int, cols: int) -> np.ndarray:  # Xavier (Glorot) uniform, PyTorch's in-proj init
            bound = math.sqrt(6.0 / (rows + cols))
            return gen.uniform(-bound, bound, (rows, cols)).astype(dt)

        self.in_proj_weight: Parameter | None = None
        self.q_proj_weight: Parameter | None = None
        self.k_proj_weight: Parameter | None = None
        self.v_proj_weight: Parameter | None = None
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(xavier(3 * E, E))
        else:
            self.q_proj_weight = Parameter(xavier(E, E))
            self.k_proj_weight = Parameter(xavier(E, self.kdim))
            self.v_proj_weight = Parameter(xavier(E, self.vdim))
        self.in_proj_bias: Parameter | None = Parameter(np.zeros(3 * E, dtype=dt)) if bias else None
        self.out_proj = Linear(E, E, bias=bias, dtype=dt, rng=gen)
        if self.out_proj.bias is not None:
            self.out_proj.bias.data[...] = 0.0

    # -- parameters by role ------------------------------------------------------------------------
    def _role(self, tensors: Mapping[str, np.ndarray], role: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(W, b) of role 0, 1, 2 (query, key, value) in ``tensors``, keyed by parameter name: rows of
        ``in_proj_weight`` and ``in_proj_bias``, or ``q/k/v_proj_weight``; None where absent. Reads the
        parameters (``_w``, ``_b``) and the lab's tangents of them alike."""
        E = self.embed_dim
        rows = slice(role * E, (role + 1) * E)
        w = tensors.get("in_proj_weight")
        w = w[rows] if w is not None else tensors.get(("q_proj_weight", "k_proj_weight", "v_proj_weight")[role])
        b = tensors.get("in_proj_bias")
        return w, (None if b is None else b[rows])

    def _w(self, role: int) -> np.ndarray:
        """W_q, W_k or W_v (role 0, 1, 2): (E, E), (E, kdim), (E, vdim)."""
        w, _ = self._role({k: p.data for k, p in self._parameters.items()}, role)
        if w is None:  # pragma: no cover - __init__ sets all three
            raise RuntimeError("MultiheadAttention lost a projection weight")
        return w

    def _b(self, role: int) -> np.ndarray | None:
        return self._role({k: p.data for k, p in self._parameters.items()}, role)[1]

    @property
    def _dtype(self) -> np.dtype[Any]:
        return self.out_proj.weight.dtype

    # -- forward -----------------------------------------------------------------------------------
    def _batch_first(self, a: Any, name: str, width: int, role: str) -> np.ndarray:
        arr = np.asarray(a)
        layout = "(N, {0}, {1})" if self.batch_first else "({0}, N, {1})"
        if arr.ndim != 3 or arr.shape[-1] != width:
            raise ValueError(
                f"MultiheadAttention(batch_first={self.batch_first}) got {name}.shape={arr.shape}; expected "
                f"{layout.format(role, width)}. "
                + ("Unbatched inputs are not supported: add a batch axis." if arr.ndim == 2 else
                   f"The last axis must be {width}" + (" (kdim/vdim)." if name != "query" else " (embed_dim)."))
            )
        arr = arr.astype(self._dtype, copy=False)
        return arr if self.batch_first else arr.swapaxes(0, 1)

    def _mask(
        self, n: int, tgt: int, src: int, key_padding_mask: Any, attn_mask: Any, is_causal: bool
    ) -> np.ndarray | None:
        """The additive mask M, broadcastable to (N, h, L, S), or None when nothing is masked."""
        dt = self._dtype
        parts: list[np.ndarray] = []

        def additive(m: Any, name: str) -> np.ndarray:
            arr = as_numeric_array(m, name)
            if arr.dtype == np.bool_:
                return np.where(arr, -np.inf, 0.0).astype(dt)
            if arr.dtype.kind != "f":
                raise TypeError(
                    f"MultiheadAttention: {name} has dtype {arr.dtype}; expected bool (True = masked) or float "
                    "(added to the attention scores). Convert it, e.g. mask.astype(bool)."
                )
            return arr.astype(dt, copy=False)

        if attn_mask is not None:
            m = additive(attn_mask, "attn_mask")
            if m.shape == (tgt, src):
                parts.append(m)
            elif m.shape == (n * self.num_heads, tgt, src):
                parts.append(m.reshape(n, self.num_heads, tgt, src))
            else:
                raise ValueError(
                    f"MultiheadAttention: attn_mask.shape={m.shape}; expected (L, S) = {(tgt, src)} or "
                    f"(N·num_heads, L, S) = {(n * self.num_heads, tgt, src)}."
                )
        elif is_causal:
            parts.append(np.where(np.triu(np.ones((tgt, src), dtype=bool), k=1), -np.inf, 0.0).astype(dt))
        if key_padding_mask is not None:
            m = additive(key_padding_mask, "key_padding_mask")
            if m.shape != (n, src):
                raise ValueError(
                    f"MultiheadAttention: key_padding_mask.shape={m.shape}; expected (N, S) = {(n, src)}, "
                    "True where a key is padding."
                )
            parts.append(m[:, None, None, :])
        if not parts:
            return None
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        dead = np.isneginf(total).all(axis=-1)
        if dead.any():
            where = tuple(int(i) for i in np.argwhere(dead)[0])
            raise ValueError(
                f"MultiheadAttention: the masks hide every key from some query (first at mask index {where}); "
                "softmax over no keys is undefined (PyTorch returns NaN). Leave at least one key visible per "
                "query, e.g. do not pad a whole sequence, or do not combine a causal mask with left padding."
            )
        return total

    def _project(self, a: np.ndarray, role: int) -> np.ndarray:
        out = a @ self._w(role).T
        b = self._b(role)
        if b is not None:
            out += b
        return out

    def forward(
        self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None,
        key_padding_mask: Any = None, attn_mask: Any = None, is_causal: bool = False,
    ) -> tuple[np.ndarray, MultiheadAttentionCache]:
        """Self-attention y = MHA(x, x, x): x (N, L, E) with batch_first, else (L, N, E)."""
        if not self._qkv_same_embed_dim:
            raise ValueError(
                f"MultiheadAttention(embed_dim={self.embed_dim}, kdim={self.kdim}, vdim={self.vdim}).forward(x) "
                "is self-attention and needs kdim = vdim = embed_dim; use forward_qkv(query, key, value) for "
                "cross-attention."
            )
        y, _, cache = self._forward(x, x, x, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                                    is_causal=is_causal, train=train, rng=rng, self_attention=True)
        return y, cache

    def forward_qkv(
        self, query: Any, key: Any, value: Any, *, key_padding_mask: Any = None, need_weights: bool = True,
        attn_mask: Any = None, average_attn_weights: bool = True, is_causal: bool = False,
        train: bool = False, rng: RNGLike = None,
    ) -> tuple[np.ndarray, np.ndarray | None, MultiheadAttentionCache]:
        """(attn_output, attn_weights, cache) for separate query, key and value; see the class docstring."""
        y, Pd, cache = self._forward(query, key, value, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                                     is_causal=is_causal, train=train, rng=rng, self_attention=False)
        weights = None if not need_weights else Pd.mean(axis=1) if average_attn_weights else Pd
        return y, weights, cache

    def __call__(  # type: ignore[override]
        self, query: Any, key: Any, value: Any, key_padding_mask: Any = None, need_weights: bool = True,
        attn_mask: Any = None, average_attn_weights: bool = True, is_causal: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """PyTorch's call: ``(attn_output, attn_weights)`` in the current mode (dropout while training)."""
        arrays = []
        for name, a in (("query", query), ("key", key), ("value", value)):
            arr = as_float_input(a, name)
            check_finite(arr, name)
            arrays.append(arr)
        y, w, _ = self.forward_qkv(*arrays, key_padding_mask=key_padding_mask, need_weights=need_weights,
                                   attn_mask=attn_mask, average_attn_weights=average_attn_weights,
                                   is_causal=is_causal, train=self.training)
        return y, w

    # -- backward ----------------------------------------------------------------------------------
    def _layout(self, a: np.ndarray) -> np.ndarray:
        """(*V, N, T, ·) batch first → the caller's layout."""
        return a if self.batch_first else np.swapaxes(a, -2, -3)

    def _dy_batch_first(self, dy: np.ndarray) -> np.ndarray:
        n_vector_axes(dy, 3, "MultiheadAttention")
        return dy if self.batch_first else np.swapaxes(dy, -2, -3)

    def _backward(
        self, cache: MultiheadAttentionCache, dy: np.ndarray, per_sample: bool, prefix: str, tape: Tape,
        need_dx: bool = True,
    ) -> Any:
        """Two tape entries: this layer (cache.attn, dy = ∂L/∂O) and out_proj (a Linear)."""
        dyb = self._dy_batch_first(dy)
        dO, out_grads = self.out_proj.vjp(cache.out, dyb, per_sample=per_sample)
        dx, grads = self._attention_vjp(cache.attn, dO, per_sample, need_dx, fuse=cache.attn.self_attention)
        tape.append(TapeEntry(prefix[:-1], self, cache.attn, dO, grads))
        tape.append(TapeEntry(prefix + "out_proj", self.out_proj, cache.out, dyb, out_grads))
        return dx

    def vjp(
        self, cache: Any, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[Any, dict[str, np.ndarray]]:
        """Full cache: dx and all gradients (``"in_proj_weight"``, ``"out_proj.weight"``, …); dx is the
        sum of the query, key and value gradients for self-attention, the tuple (dq, dk, dv) otherwise.
        ``AttentionCache`` (this layer's tape entry, dy = ∂L/∂O batch first): the in-projection part only."""
        if isinstance(cache, AttentionCache):
            return self._attention_vjp(cache, dy, per_sample, need_dx, fuse=cache.self_attention)
        if not isinstance(cache, MultiheadAttentionCache):
            raise TypeError(
                f"MultiheadAttention.vjp got a cache of type {type(cache).__name__}; expected the cache its "
                "forward or forward_qkv returned (or an AttentionCache from its tape entry)."
            )
        return super().vjp(cache, dy, per_sample=per_sample, need_dx=need_dx)

    def vjp_qkv(
        self, cache: MultiheadAttentionCache, dy: np.ndarray, *, per_sample: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """(dq, dk, dv, grads) from dy = ∂L/∂attn_output, each input's gradient in the caller's layout."""
        if not isinstance(cache, MultiheadAttentionCache):
            raise TypeError(
                f"MultiheadAttention.vjp_qkv got a cache of type {type(cache).__name__}; expected the cache "
                "that forward_qkv (or forward) returned."
            )
        dyb = self._dy_batch_first(dy)
        dO, out_grads = self.out_proj.vjp(cache.out, dyb, per_sample=per_sample)
        dx, grads = self._attention_vjp(cache.attn, dO, per_sample, True, fuse=False)
        grads.update({f"out_proj.{k}": g for k, g in out_grads.items()})
        dq, dk, dv = dx
        return dq, dk, dv, grads

    # -- conveniences --------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {"embed_dim": self.embed_dim, "num_heads": self.num_heads, "dropout": self.dropout,
                "bias": self.in_proj_bias is not None, "kdim": self.kdim, "vdim": self.vdim,
                "batch_first": self.batch_first, "dtype": str(self._dtype)}


def weight_grad(g: np.ndarray, x: np.ndarray, per_sample: bool) -> np.ndarray:
    """dW = Σₙₜ gₙₜ ⊗ xₙₜ: g (*V, N, T, o), x (N, T, i) → (*V, o, i), or (*V, N, o, i) per sample."""
    if per_sample:
        return np.einsum("...nto,nti->...noi", g, x, optimize=True)
    g2 = g.reshape(*g.shape[:-3], -1, g.shape[-1])
    return np.swapaxes(g2, -1, -2) @ x.reshape(-1, x.shape[-1])


def bias_grad(g: np.ndarray, per_sample: bool) -> np.ndarray:
    """db = Σₙₜ gₙₜ: (*V, o), or (*V, N, o) per sample."""
    return g.sum(axis=-2) if per_sample else g.sum(axis=(-3, -2))
