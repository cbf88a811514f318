"""Per-sample gradients and their norms, read off the tape of one backward pass.

Convention (read this first). The per-sample gradient of parameter θ for sample n is the
gradient of that sample's *own, unscaled* loss ℓₙ (``Loss.per_sample``):

    gₙ = ∂ℓₙ/∂θ,   with  L = (1/N) Σₙ ℓₙ  under reduction="mean",  L = Σₙ ℓₙ  under "sum".

So under ``reduction="mean"`` the batch gradient ∂L/∂θ is the **mean** of the per-sample gradients,
and under ``"sum"`` it is their sum. (BackPACK's ``BatchGrad`` returns the pieces of the batch
gradient instead, ∂L/∂θ split by sample, which under "mean" are gₙ/N: a factor 1/N apart from ours.
``torch.func.vmap(torch.func.grad(loss_of_one_sample))`` agrees with ours.)

How. Backward stores dy = ∂L/∂y per layer on the tape. Under "mean" sample n's share of dy is
∂ℓₙ/∂yₙ / N, so every per-sample piece is multiplied by ``factor`` = N ("mean") or 1 ("sum"); see
``nablanet.lab._tape.per_sample_factor``. No second backward pass runs: the tape functions only
re-read each layer's cache and dy.

* ``per_sample_grads_from_tape``: {name: (N, *param.shape)}, one ``layer.vjp(per_sample=True)``
  per parameterized layer.
* ``per_sample_grad_norms_from_tape``: {name: (N,)} Euclidean norms ‖gₙ‖, by closed forms that
  never materialize the per-sample gradients where one exists (Linear, Conv1d, Conv2d), and by
  materializing them otherwise (any other parameterized layer, the generic ``Layer`` rule).
* ``per_sample_grads`` / ``per_sample_grad_norms``: the same on demand, running forward and backward
  with ``run_tape`` (``train=False`` by default: eval mode, so batch norm uses its running statistics
  and per-sample gradients are defined).
* ``layer_norms``: combine the per-parameter norms of one layer, ‖(dWₙ, dbₙ)‖, and of the whole model.

Layers that couple samples (batch norm with batch statistics, i.e. in training mode) have no
per-sample gradients: their VJP raises a ValueError, re-raised here naming the layer.
Index letters: n batch, i in, o out, p output position, r extra (time) position, g group.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from nablanet._random import RNGLike
from nablanet.lab._tape import batch_size_of, per_sample_factor, run_tape
from nablanet.lab.registry import Registry
from nablanet.layers.base import Layer, Tape, TapeEntry
from nablanet.layers.conv import ConvCache, _ConvNd
from nablanet.layers.linear import Linear, LinearCache
from nablanet.losses.base import Loss

TOTAL = "total"
"""The key of the norm over all parameters in ``layer_norms`` (and ``grad_norms``)."""

_CHUNK_ELEMENTS = 1 << 22  # materialized per-sample gradients are built this many entries at a time

per_sample_grad_norms_rules = Registry("per_sample_grad_norms")
"""Layer type → rule ``(entry, factor) -> {local name: (N,) norms}``; looked up along the MRO."""

NormRule = Callable[[TapeEntry, float], dict[str, np.ndarray]]


# -- materialized per-sample gradients ---------------------------------------------------------------
def _layer_per_sample_grads(entry: TapeEntry, factor: float, who: str) -> dict[str, np.ndarray]:
    """{local name: (N, *param)}: one per-sample VJP of the entry's layer, times ``factor``."""
    try:
        _, grads = entry.layer.vjp(entry.cache, entry.dy, per_sample=True, need_dx=False)
    except ValueError as exc:
        raise ValueError(
            f"{who}: per-sample gradients of layer {entry.name!r} ({type(entry.layer).__name__}) are not "
            f"available: {exc}"
        ) from exc
    return {local: g * factor if factor != 1.0 else g for local, g in grads.items()}


def per_sample_grads_from_tape(tape: Tape, factor: float) -> dict[str, np.ndarray]:
    """Per-sample gradients gₙ = ∂ℓₙ/∂θ of every parameter on the tape: {name: (N, *param.shape)}.

    ``factor`` is ``per_sample_factor(loss, N)``: N under reduction="mean", 1 under "sum". Under
    "mean", ``grads[name].mean(axis=0)`` is the batch gradient; under "sum", ``.sum(axis=0)`` is.
    Names are state_dict names ("0.weight"). Parameterless layers contribute nothing.
    Memory: N times the model's parameters; use ``per_sample_grad_norms_from_tape`` for norms only.
    """
    out: dict[str, np.ndarray] = {}
    for entry in tape:
        if not entry.grads:
            continue
        for local, g in _layer_per_sample_grads(entry, factor, "per_sample_grads").items():
            out[f"{entry.name}.{local}" if entry.name else local] = g
    return out


# -- per-sample norms: the rules -------------------------------------------------------------------
def _norms(g: np.ndarray) -> np.ndarray:
    """‖gₙ‖ over every axis but the first: (N, …) → (N,)."""
    flat = g.reshape(g.shape[0], -1)
    return np.sqrt(np.einsum("nk,nk->n", flat, flat))


def _sqrt_nonneg(sq: np.ndarray) -> np.ndarray:
    """√ of a sum of squares computed by the Gram trick, whose rounding can dip just below 0."""
    return np.sqrt(np.maximum(sq, 0.0))


@per_sample_grad_norms_rules.register(Layer)
def _materialized_norms(entry: TapeEntry, factor: float) -> dict[str, np.ndarray]:
    """Generic rule for any parameterized layer without a closed form (LayerNorm, batch norm in eval
    mode, new layers): materialize gₙ with ``vjp(per_sample=True)`` and take ‖gₙ‖.
    Cost: the layer's per-sample VJP; memory N·|θ|."""
    grads = _layer_per_sample_grads(entry, factor, "per_sample_grad_norms")
    return {local: _norms(g) for local, g in grads.items()}


def linear_uses_gram(r: int, i: int, o: int) -> bool:
    """Whether the Gram trick is cheaper than materializing dWₙ for a Linear with R extra positions.

    Per sample: Gram R²(i + o) multiply-adds (two R×R Gram matrices), materializing R·i·o (dWₙ = dyₙᵀxₙ).
    """
    return r * r * (i + o) < r * i * o


@per_sample_grad_norms_rules.register(Linear)
def _linear_norms(entry: TapeEntry, factor: float) -> dict[str, np.ndarray]:
    """Per-sample norms of an affine layer, y = x Wᵀ + b, without materializing dWₙ where cheaper.

    Input (N, i):  dWₙ = dyₙᵀ xₙ is an outer product (o × i), so  ‖dWₙ‖ = ‖dyₙ‖·‖xₙ‖  and  ‖dbₙ‖ = ‖dyₙ‖.
        Cost N(i + o), no per-sample matrix at all.
    Input (N, R, i) (extra axes flattened into R):  dWₙ = Σᵣ dyₙᵣᵀ xₙᵣ, and
        ‖dWₙ‖² = Σᵣ Σᵣ′ (dyₙᵣ·dyₙᵣ′)(xₙᵣ·xₙᵣ′)   (the Gram trick: ⟨dyᵣᵀxᵣ, dyᵣ′ᵀxᵣ′⟩ = (dyᵣ·dyᵣ′)(xᵣ·xᵣ′)),
        cost N·R²(i + o), used when ``linear_uses_gram``; otherwise dWₙ is materialized in chunks of
        samples (cost N·R·i·o). ‖dbₙ‖ = ‖Σᵣ dyₙᵣ‖.
    Every norm is multiplied by ``factor`` (N under "mean", 1 under "sum").
    """
    cache: LinearCache = entry.cache
    x, dy = cache.x, entry.dy
    n = x.shape[0]
    i, o = x.shape[-1], dy.shape[-1]
    x3 = x.reshape(n, -1, i)
    dy3 = dy.reshape(n, -1, o)
    r = x3.shape[1]
    out: dict[str, np.ndarray] = {}
    dy_norms = _norms(dy3) if r == 1 else None  # ‖dyₙ‖: both ‖dWₙ‖'s factor and ‖dbₙ‖ when R = 1
    if "weight" in entry.grads:
        if dy_norms is not None:
            w = dy_norms * _norms(x3)
        elif linear_uses_gram(r, i, o):
            gy = dy3 @ np.swapaxes(dy3, 1, 2)  # (N, R, R): dyₙᵣ·dyₙᵣ′
            gx = x3 @ np.swapaxes(x3, 1, 2)
            w = _sqrt_nonneg(np.einsum("nrs,nrs->n", gy, gx))
        else:
            w = np.empty(n, dtype=np.result_type(x, dy))
            step = max(1, _CHUNK_ELEMENTS // (i * o))
            for n0 in range(0, n, step):
                dwn = np.swapaxes(dy3[n0 : n0 + step], 1, 2) @ x3[n0 : n0 + step]  # (n, o, i)
                w[n0 : n0 + step] = _norms(dwn)
        out["weight"] = w * factor
    if "bias" in entry.grads:
        out["bias"] = (dy_norms if dy_norms is not None else _norms(dy3.sum(axis=1))) * factor
    return out


def conv_uses_gram(p: int, og: int, kg: int) -> bool:
    """Whether the Gram trick is cheaper than materializing dWₙ for one group of a convolution.

    Per sample and group, with P output positions, O_g output channels and K_g = ∏k·C_g im2col
    columns: Gram P²(O_g + K_g) multiply-adds, materializing P·O_g·K_g.
    """
    return p * p * (og + kg) < p * og * kg


@per_sample_grad_norms_rules.register(_ConvNd)
def _conv_norms(entry: TapeEntry, factor: float) -> dict[str, np.ndarray]:
    """Per-sample norms of Conv1d/Conv2d from the im2col blocks in the cache, without dWₙ where cheaper.

    Per sample n and group g the weight gradient is a matrix product over the P = ∏S′ output
    positions: dWₙ,g = dYₙ,gᵀ Xₙ,g, with dYₙ,g (P, O_g) the output gradient and Xₙ,g (P, K_g) the
    sample's im2col rows (``layer.col_blocks`` forms them block by block, rows sample-major). Then

        ‖dWₙ‖² = Σ_g ‖dYₙ,gᵀ Xₙ,g‖² = Σ_g Σ_p Σ_p′ (dYₙ,g[p]·dYₙ,g[p′]) (Xₙ,g[p]·Xₙ,g[p′])   (Gram trick)

    costs P²(O_g + K_g) per sample and group (two P×P Gram matrices) against P·O_g·K_g for
    materializing dWₙ,g; ``conv_uses_gram`` picks the cheaper. Either way the work runs block by
    block, so the extra memory is at most about one im2col block. Bias: ‖dbₙ‖ = ‖Σ_p dYₙ[p]‖.
    Every norm is multiplied by ``factor`` (N under "mean", 1 under "sum").
    """
    layer = cast(_ConvNd, entry.layer)  # registered for _ConvNd and its subclasses only
    cache: ConvCache = entry.cache
    dy = entry.dy  # (N, O, *S′)
    n, g = cache.x_shape[0], layer.groups
    og = layer.out_channels // g
    p = math.prod(cache.out_spatial)
    out: dict[str, np.ndarray] = {}
    if "weight" in entry.grads:
        dyg = np.moveaxis(dy, 1, -1).reshape(n, p, g, og)  # (N, P, G, O_g), rows as in im2col
        sq = np.empty(n, dtype=np.result_type(dy, cache.xp))
        for n0, n1, cols in layer.col_blocks(cache):
            kg = cols.shape[-1]
            xb = cols.reshape(g, n1 - n0, p, kg)  # (G, n, P, K_g)
            dyb = dyg[n0:n1].transpose(2, 0, 1, 3)  # (G, n, P, O_g)
            if conv_uses_gram(p, og, kg):
                gy = dyb @ np.swapaxes(dyb, -1, -2)  # (G, n, P, P)
                gx = xb @ np.swapaxes(xb, -1, -2)
                sq[n0:n1] = np.einsum("gnpq,gnpq->n", gy, gx)
            else:
                dw = np.swapaxes(dyb, -1, -2) @ xb  # (G, n, O_g, K_g)
                sq[n0:n1] = np.einsum("gnok,gnok->n", dw, dw)
        out["weight"] = _sqrt_nonneg(sq) * factor
    if "bias" in entry.grads:
        out["bias"] = _norms(dy.reshape(n, layer.out_channels, -1).sum(axis=-1)) * factor
    return out


def per_sample_grad_norms_from_tape(tape: Tape, factor: float) -> dict[str, np.ndarray]:
    """‖gₙ‖ for every parameter on the tape: {name: (N,)}, with gₙ = ∂ℓₙ/∂θ (see the module docstring).

    Each parameterized layer's rule comes from ``per_sample_grad_norms_rules`` (closed forms for
    Linear and Conv1d/Conv2d, materialization for any other layer). ``factor`` is
    ``per_sample_factor(loss, N)``. Parameterless layers contribute nothing. A layer that couples
    the samples (batch norm in training mode) raises a ValueError naming it.
    """
    out: dict[str, np.ndarray] = {}
    for entry in tape:
        if not entry.grads:
            continue
        rule: NormRule = per_sample_grad_norms_rules[entry.layer]
        for local, v in rule(entry, factor).items():
            out[f"{entry.name}.{local}" if entry.name else local] = v
    return out


# -- on demand -------------------------------------------------------------------------------------
def per_sample_grads(
    model: Layer, loss: Loss, x: Any, target: Any, *, train: bool = False, rng: RNGLike = None
) -> dict[str, np.ndarray]:
    """Per-sample gradients gₙ = ∂ℓₙ/∂θ of ``loss(model(x), target)``: {name: (N, *param.shape)}.

    Under reduction="mean" their mean over n is the batch gradient; under "sum", their sum.
    Runs one forward and backward (``.grad`` untouched), in eval mode unless ``train=True``.
    """
    run = run_tape(model, loss, x, target, train=train, rng=rng)
    return per_sample_grads_from_tape(run.tape, per_sample_factor(loss, batch_size_of(run.tape)))


def per_sample_grad_norms(
    model: Layer, loss: Loss, x: Any, target: Any, *, train: bool = False, rng: RNGLike = None
) -> dict[str, np.ndarray]:
    """Per-sample gradient norms ‖∂ℓₙ/∂θ‖ of every parameter: {name: (N,)}.

    Closed forms for Linear and convolutions (no per-sample gradient is built), materialization
    for other parameterized layers. Combine them per layer with ``layer_norms``. Runs one forward
    and backward (``.grad`` untouched), in eval mode unless ``train=True``.
    """
    run = run_tape(model, loss, x, target, train=train, rng=rng)
    return per_sample_grad_norms_from_tape(run.tape, per_sample_factor(loss, batch_size_of(run.tape)))


def layer_of(name: str) -> str:
    """The layer prefix of a parameter name: "0.weight" → "0", "1.0.bias" → "1.0", "weight" → ""."""
    return name.rpartition(".")[0]


def layer_norms(norms: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Combine per-parameter norms into per-layer norms and a total: √(Σ squares).

    ``{"0.weight": a, "0.bias": b, "2.weight": c}`` →
    ``{"0": √(a² + b²), "2": c, "total": √(a² + b² + c²)}``, i.e. ‖(dWₙ, dbₙ)‖ per layer and the norm
    of the whole parameter vector under ``TOTAL`` = "total". Layer keys are state_dict prefixes
    (a model that is a single layer, whose parameters are named "weight", gets the key "").
    Works elementwise, so the values may be per-sample norms (N,) or scalars.
    """
    if not norms:
        raise ValueError("layer_norms got no norms; expected {parameter name: norms}, e.g. per_sample_grad_norms(...)")
    squares: dict[str, np.ndarray] = {}
    for name, v in norms.items():
        arr = np.asarray(v)
        key = layer_of(name)
        squares[key] = squares[key] + arr * arr if key in squares else arr * arr
    out = {key: np.sqrt(sq) for key, sq in squares.items()}
    out[TOTAL] = np.sqrt(sum(squares.values()))
    return out
