"""Embedding: a lookup table of learned vectors, one row per token index (PyTorch's ``nn.Embedding``)."""

from __future__ import annotations

from typing import Any, NamedTuple, cast

import numpy as np

from nablanet._dtype import resolve_dtype
from nablanet._random import RNGLike, get_rng
from nablanet._validation import as_numeric_array
from nablanet.layers.base import NO_DX, Layer, n_vector_axes
from nablanet.parameter import Parameter


class EmbeddingCache(NamedTuple):
    idx: np.ndarray  # (N, *) the indices, as int64, padding_idx already normalized
    out_ndim: int


class Embedding(Layer):
    """Row lookup  yₙⱼ = W[xₙⱼ]  (equivalently y = onehot(x) W), with E = num_embeddings, D = embedding_dim.

    Shapes:  x (N, *) integer indices in [0, E)   W (E, D)   y (N, *, D)
    VJP:     dW[e] = Σ_{n,j : xₙⱼ = e} dyₙⱼ   (a scatter-add; rows never looked up get 0)
             dW[padding_idx] = 0: the padding row receives no gradient, as in PyTorch.
             There is no gradient with respect to integer indices: the VJP returns ``NO_DX``, an empty
             array, in place of dx, so an Embedding must be the first layer of a model.
    Per-sample:  dWₙ (N, E, D), each sample's own scatter-add. This materializes N·E·D numbers
             (N = 64, E = 10,000, D = 128 is 82 M floats, 330 MB in float32); prefer the batch gradient
             or per-sample norms (‖dWₙ‖² = Σₑ ‖Σ_{j: xₙⱼ = e} dyₙⱼ‖²) for large vocabularies.
    Vector axes: dy (*V, N, *, D) gives dW (*V, E, D) (per-sample: (*V, N, E, D)).
    Init (PyTorch's): W ~ N(0, 1), with the padding_idx row set to zero.

    Indices: any integer dtype. Floating arrays holding whole numbers are accepted too, because
    ``layer(x)``, ``Sequential`` calls and ``nn.fit`` convert inputs to floats (float32 is exact for
    indices below 2²⁴); fractional values, NaN, and indices outside [0, E) are refused. ``max_norm``
    (PyTorch's in-place renormalization of looked-up rows) is not supported.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        *,
        dtype: Any = None,
        rng: RNGLike = None,
    ) -> None:
        super().__init__()
        for arg, value in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(
                    f"Embedding({arg}={value!r}): expected a positive int, e.g. Embedding(1000, 64) for a "
                    "vocabulary of 1000 tokens and 64-dimensional vectors"
                )
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, int | np.integer) or not (
                -self.num_embeddings <= padding_idx < self.num_embeddings
            ):
                raise ValueError(
                    f"Embedding(padding_idx={padding_idx!r}): expected None or an int in "
                    f"[-{self.num_embeddings}, {self.num_embeddings}) (negative counts from the end)"
                )
            padding_idx = int(padding_idx) % self.num_embeddings  # PyTorch stores it non-negative
        self.padding_idx: int | None = padding_idx
        if max_norm is not None:
            raise NotImplementedError(
                f"Embedding(max_norm={max_norm!r}) is not supported: PyTorch renormalizes the looked-up rows of "
                "the weight in place during forward, which a pure forward cannot do. Pass max_norm=None "
                "(clip the weight yourself after optimizer steps if needed)."
            )
        dt = resolve_dtype(dtype)
        w = get_rng(rng).standard_normal((self.num_embeddings, self.embedding_dim)).astype(dt)
        if self.padding_idx is not None:
            w[self.padding_idx] = 0.0
        self.weight = Parameter(w)

    def _indices(self, x: Any) -> np.ndarray:
        arr = as_numeric_array(x, "Embedding input")
        if arr.dtype.kind == "b":
            raise TypeError(
                f"Embedding got a boolean array of shape {arr.shape}; expected integer indices in "
                f"[0, {self.num_embeddings}). Convert with x.astype(np.int64) if that is really meant."
            )
        if arr.ndim < 1:
            raise ValueError(
                f"Embedding got a scalar index {arr!r}; expected an array of indices (N, *), e.g. x[None] "
                "for one sample"
            )
        if arr.dtype.kind == "f":
            if arr.size and not np.all(np.isfinite(arr)):
                raise ValueError("Embedding got NaN/inf in its indices; expected integer indices")
            if not np.array_equal(arr, np.round(arr)):
                bad = arr[arr != np.round(arr)].ravel()[0]
                raise TypeError(
                    f"Embedding got non-integer indices (dtype {arr.dtype}, e.g. {bad}); expected integers in "
                    f"[0, {self.num_embeddings}). Pass an integer array, e.g. x.astype(np.int64)."
                )
        if arr.size:
            lo, hi = arr.min(), arr.max()
            if lo < 0 or hi >= self.num_embeddings:
                bad = lo if lo < 0 else hi
                raise IndexError(
                    f"Embedding(num_embeddings={self.num_embeddings}) got index {bad.item()}; expected every index in "
                    f"[0, {self.num_embeddings - 1}]. Increase num_embeddings or map unknown tokens to a "
                    "reserved index."
                )
        return arr.astype(np.int64, copy=False)

    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, EmbeddingCache]:
        idx = self._indices(x)
        y = self.weight.data[idx]  # (N, *, D)
        return y, EmbeddingCache(idx, y.ndim)

    def vjp(
        self, cache: EmbeddingCache, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        nv = n_vector_axes(dy, cache.out_ndim, "Embedding")
        idx = cache.idx  # (N, *)
        dy = dy.astype(self.weight.dtype, copy=False)
        vsl = (slice(None),) * nv  # the vector axes, kept
        if per_sample:  # dWₙ[e] = Σ_j dyₙⱼ [xₙⱼ = e]: (*V, N, E, D)
            n = idx.shape[0]
            dw = np.zeros((*dy.shape[:nv], n, *self.weight.shape), dy.dtype)
            np.add.at(dw, cast(Any, (*vsl, np.arange(n).reshape(n, *(1,) * (idx.ndim - 1)), idx)), dy)
        else:  # dW[e] = Σ_{n,j : xₙⱼ = e} dyₙⱼ: (*V, E, D)
            dw = np.zeros((*dy.shape[:nv], *self.weight.shape), dy.dtype)
            np.add.at(dw, cast(Any, (*vsl, idx)), dy)
        if self.padding_idx is not None:
            dw[..., self.padding_idx, :] = 0.0
        return NO_DX, {"weight": dw}

    def __call__(self, x: Any) -> np.ndarray:
        """The looked-up vectors for integer indices ``x`` (N, *) → (N, *, embedding_dim)."""
        y, _ = self.forward(x, train=self.training)
        return y

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")

    def get_config(self) -> dict[str, Any]:
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "padding_idx": self.padding_idx, "dtype": str(self.weight.dtype)}
