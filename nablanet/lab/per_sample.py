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
* ``per_sample_grad_norms_from_tape``: {name: (N,)} Euclidean norms ‖gₙ‖, by each layer's rule in
  ``per_sample_grad_norms_rules``: closed forms that never materialize the per-sample gradients where
  one exists (Linear, Conv1d, Conv2d: ``rules/linear.py``, ``rules/conv.py``), and materializing them
  otherwise (any other parameterized layer: the generic ``Layer`` rule in ``rules/base.py``).
* ``per_sample_grads`` / ``per_sample_grad_norms``: the same on demand, running forward and backward
  with ``run_tape`` (``train=False`` by default: eval mode, so batch norm uses its running statistics
  and per-sample gradients are defined).
* ``layer_norms``: combine the per-parameter norms of one layer, ‖(dWₙ, dbₙ)‖, and of the whole model.

Layers that couple samples (batch norm with batch statistics, i.e. in training mode) have no
per-sample gradients: their VJP raises a ValueError, re-raised here naming the layer.
Index letters: n batch, i in, o out, p output position, r extra (time) position, g group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nablanet._random import RNGLike
from nablanet.lab._params import selected_tape
from nablanet.lab._tape import batch_size_of, per_sample_factor, run_tape
from nablanet.lab.registry import per_sample_grad_norms_rules
from nablanet.lab.rules.base import layer_per_sample_grads, materialized_norms
from nablanet.layers import kernels
from nablanet.layers.base import Layer, Tape, TapeEntry
from nablanet.losses.base import Loss

TOTAL = "total"
"""The key of the norm over all parameters in ``layer_norms`` (and ``grad_norms``)."""

NormRule = Callable[[TapeEntry, float], dict[str, np.ndarray]]


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
        for local, g in layer_per_sample_grads(entry, factor, "per_sample_grads").items():
            if local in entry.grads:  # a tape restricted to some parameters (params=) keeps only theirs
                out[f"{entry.name}.{local}" if entry.name else local] = g
    return out


# -- per-sample norms ------------------------------------------------------------------------------
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
        # a VJP swapped in for the class (nn.testing.replace_vjp) is what backward ran: materialize its gradients
        # rather than trust the class's closed form
        swapped = kernels.swapped(type(entry.layer))
        rule: NormRule = materialized_norms if swapped else per_sample_grad_norms_rules[entry.layer]
        got = rule(entry, factor)
        lengths = {np.shape(v) for v in got.values()}
        if not set(entry.grads) <= set(got) or len(lengths) != 1 or len(next(iter(lengths))) != 1:
            raise ValueError(
                f"per_sample_grad_norms: the rule {rule.__module__}.{rule.__qualname__} of layer {entry.name!r} "
                f"({type(entry.layer).__name__}) returned {({k: np.shape(v) for k, v in got.items()})}; expected one "
                f"(N,) array of norms per parameter {sorted(entry.grads)}."
            )
        for local in entry.grads:
            out[f"{entry.name}.{local}" if entry.name else local] = got[local]
    return out


# -- on demand -------------------------------------------------------------------------------------
def per_sample_grads(
    model: Layer, loss: Loss, x: Any, target: Any, *, train: bool = False, rng: RNGLike = None, params: Any = None
) -> dict[str, np.ndarray]:
    """Per-sample gradients gₙ = ∂ℓₙ/∂θ of ``loss(model(x), target)``: {name: (N, *param.shape)}.

    Under reduction="mean" their mean over n is the batch gradient; under "sum", their sum.
    Runs one forward and backward (``.grad`` untouched), in eval mode unless ``train=True``.
    ``params`` (names or Parameters, default all) restricts it to those parameters.
    """
    run = run_tape(model, loss, x, target, train=train, rng=rng)
    tape = selected_tape(model, run.tape, params, "per_sample_grads")
    return per_sample_grads_from_tape(tape, per_sample_factor(loss, batch_size_of(run.tape)))


def per_sample_grad_norms(
    model: Layer, loss: Loss, x: Any, target: Any, *, train: bool = False, rng: RNGLike = None, params: Any = None
) -> dict[str, np.ndarray]:
    """Per-sample gradient norms ‖∂ℓₙ/∂θ‖ of every parameter: {name: (N,)}.

    Closed forms for Linear and convolutions (no per-sample gradient is built), materialization
    for other parameterized layers. Combine them per layer with ``layer_norms``. Runs one forward
    and backward (``.grad`` untouched), in eval mode unless ``train=True``. ``params`` (names or
    Parameters, default all) restricts it to those parameters.
    """
    run = run_tape(model, loss, x, target, train=train, rng=rng)
    tape = selected_tape(model, run.tape, params, "per_sample_grad_norms")
    return per_sample_grad_norms_from_tape(tape, per_sample_factor(loss, batch_size_of(run.tape)))


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
