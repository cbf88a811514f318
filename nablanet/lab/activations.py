"""Activation statistics from one forward pass, and gradient histograms from a tape.

The questions they answer are the ones of the source notes on vanishing gradients (references 002
and 004): a sigmoid unit whose input sits on a flat tail passes back dy·σ′(x) with σ′(x) ≈ 0, so
the layers below it learn slowly ("saturation"); a ReLU unit whose input is negative for every
sample passes back nothing at all and never recovers ("dead" unit).

``activation_stats(model, x)`` runs ONE forward pass and reads the output y and cache of every leaf
layer, wherever it sits (inside Sequential, Residual, Parallel, MultiheadAttention, …; names as on
the tape and in the state_dict: ``"0"``, ``"2.1"``, ``"1.out_proj"``), with a recurrent stack per
layer and direction (``"0.l0"``, ``"0.l0_reverse"``: its hidden states, batch first) and
MultiheadAttention's in-projection and attention apart from its ``out_proj`` (see
``nablanet.lab.parts``):

* every layer (the generic default): mean and standard deviation of y over all N·units entries,
  and a histogram of y;
* per-type rules from the ``activation_rules`` registry (looked up along the class's MRO):

  - saturating activations, ``saturation_fraction`` = #{(n, u) : |f′(xₙᵤ)| < eps} / (N·U) with f′
    the layer's own ``df``. Registered for Sigmoid and Tanh (both tails flat), Hardtanh (f′ = 0
    outside [min_val, max_val]), Softplus and ELU (left tail flat: f′ = σ(βx), α eˣ → 0 as
    x → −∞). Not for SiLU and GELU: their f′ crosses 0 near x ≈ −1.28 and −0.75, so a small f′
    there is not a saturated tail; nor LeakyReLU/RReLU, whose f′ never drops below the slope.
  - ReLU, with a unit u = one entry of a sample's output (a feature of (N, o), a channel × position
    of a conv map (N, C, *S)):
      ``zero_fraction``  = #{(n, u) : yₙᵤ = 0} / (N·U)            (zero outputs overall)
      ``dead_fraction``  = #{u : yₙᵤ = 0 for every n} / U         (units off for the whole batch)
      ``dead_channel_fraction`` (outputs with 3 or more axes, read as (N, C, *S), PyTorch's layout
      of conv feature maps) = #{c : yₙ꜀ₛ = 0 for every n and s} / C.
    yₙᵤ = 0 means xₙᵤ ≤ 0. A unit dead on one batch may be alive on another: use a batch large
    enough to speak for the data.

  - recurrent stacks, per layer and direction: the fraction of saturated gate values per gate
    (``saturation_fraction_z`` …; see ``nablanet.lab.parts``).

Other layer types get the generic quantities only. The rules sit beside their layers, in
``nablanet/lab/rules/activations.py`` (the recurrent one in ``nablanet/lab/rules/recurrent.py``);
register one for a new type with
``@activation_rules.register(MyLayer)`` (``from nablanet.lab.registry import activation_rules``); it is
called as ``rule(layer, x, y, cache, eps)`` with the layer's input x and output y (once per part, with
the part's, for a layer split into parts) and returns ``{quantity: value}``.

``gradient_histograms(tape)`` gives histograms of dy = ∂L/∂(output) per layer and of every
parameter gradient on a tape, for a training recorder.

Histograms count finite entries only; NaN/inf entries are counted apart in ``Histogram.n_nonfinite``.
With an int ``bins`` the bins span the finite values' range, so counts.sum() + n_nonfinite = the
number of entries; with fixed edges, values outside them are not counted (numpy's rule).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nablanet._random import RNGLike
from nablanet._validation import as_float_input, check_finite
from nablanet.lab import rules as _rules  # noqa: F401  (registers the activation rules)
from nablanet.lab._tape import forward_trace, tape_parameters
from nablanet.lab.parts import leaves
from nablanet.lab.registry import activation_rules
from nablanet.layers.base import Layer, Tape

Bins = int | Sequence[float] | np.ndarray

# -- histograms -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Histogram:
    """Counts of values in bins: ``counts`` (B,) int64, ``edges`` (B + 1,) float64 (numpy's convention:
    bin k is [edges[k], edges[k+1]), the last bin closed). ``n_nonfinite`` NaN/inf entries are not binned."""

    counts: np.ndarray
    edges: np.ndarray
    n_nonfinite: int = 0

    @property
    def total(self) -> int:
        """Number of entries histogrammed: Σ counts + n_nonfinite."""
        return int(self.counts.sum()) + self.n_nonfinite

    def to_records(self, **labels: Any) -> list[dict[str, Any]]:
        """One row per bin: ``{**labels, "bin", "left", "right", "count"}``."""
        return [
            {**labels, "bin": k, "left": float(self.edges[k]), "right": float(self.edges[k + 1]), "count": int(c)}
            for k, c in enumerate(self.counts)
        ]


def histogram(values: Any, bins: Bins = 30) -> Histogram:
    """Histogram of the finite entries of ``values`` (any shape); ``bins`` an int or increasing edges."""
    _check_bins(bins)
    v = np.asarray(values).reshape(-1)
    finite = np.isfinite(v)
    n_bad = int(v.size - np.count_nonzero(finite))
    kept = v[finite] if n_bad else v
    counts, edges = np.histogram(kept, bins=bins if isinstance(bins, int) else np.asarray(bins, dtype=np.float64))
    return Histogram(counts.astype(np.int64), edges.astype(np.float64), n_bad)


def _check_bins(bins: Any) -> None:
    if isinstance(bins, bool):
        pass
    elif isinstance(bins, int | np.integer):
        if bins >= 1:
            return
    else:
        edges = np.asarray(bins)
        if edges.ndim == 1 and edges.size >= 2 and edges.dtype.kind in "iuf" and np.all(np.diff(edges) > 0):
            return
    raise ValueError(
        f"bins={bins!r}: expected a positive int (the number of equal-width bins, e.g. 30) or a 1-D array of at "
        "least 2 increasing bin edges, e.g. np.linspace(-3, 3, 31) (fixed edges make steps comparable)."
    )


# -- activation statistics ------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerActivationStats:
    """What one layer's output looked like: generic ``mean``/``std`` (population, ddof = 0, over all
    N·units entries), its ``histogram``, and the type rule's ``quantities`` (see the module docstring)."""

    name: str
    layer_type: str
    shape: tuple[int, ...]
    mean: float
    std: float
    histogram: Histogram
    quantities: dict[str, float] = field(default_factory=dict)

    def to_records(self) -> list[dict[str, Any]]:
        """Tidy rows ``{"layer", "layer_type", "quantity", "value"}``: mean, std, then the rule's quantities."""
        scalars = {"mean": self.mean, "std": self.std, **self.quantities}
        return [
            {"layer": self.name, "layer_type": self.layer_type, "quantity": q, "value": float(v)}
            for q, v in scalars.items()
        ]


@dataclass(frozen=True)
class ActivationStats:
    """``LayerActivationStats`` per leaf layer (or part), by tape name, in forward order."""

    layers: dict[str, LayerActivationStats]

    def __getitem__(self, name: str) -> LayerActivationStats:
        if name not in self.layers:
            raise KeyError(f"no layer named {name!r}; the layers are {list(self.layers)}")
        return self.layers[name]

    def __iter__(self) -> Iterator[LayerActivationStats]:
        return iter(self.layers.values())

    def __len__(self) -> int:
        return len(self.layers)

    def to_records(self, *, histograms: bool = False) -> list[dict[str, Any]]:
        """Tidy rows ``{"layer", "layer_type", "quantity", "value"}`` for every layer (``pandas.DataFrame(rows)``).

        With ``histograms=True`` also one row per bin, ``quantity="histogram"``, with ``bin``, ``left``,
        ``right`` and the count as ``value``.
        """
        rows: list[dict[str, Any]] = []
        for s in self.layers.values():
            rows.extend(s.to_records())
            if histograms:
                for r in s.histogram.to_records(layer=s.name, layer_type=s.layer_type, quantity="histogram"):
                    r["value"] = r.pop("count")
                    rows.append(r)
        return rows


def activation_stats(
    model: Layer,
    x: Any,
    *,
    train: bool = False,
    eps: float = 1e-2,
    bins: Bins = 30,
    rng: RNGLike = None,
) -> ActivationStats:
    """Mean, std, histogram, and per-type saturation / dead-unit fractions of every leaf layer's output,
    inside containers too, and of each layer and direction of a recurrent stack.

    One forward pass (``train``/``rng`` as for ``model.forward``; in training mode batch norm
    updates its running statistics, as any training forward does). ``eps`` is the threshold on
    |f′(x)| below which an input of a saturating activation counts as saturated (σ′ ≤ 1/4, so
    eps = 1e-2 means |x| ≳ 4.6 for a sigmoid, |x| ≳ 3.0 for tanh). See the module docstring for the
    quantities and which layer types get them.
    """
    if isinstance(eps, bool) or not isinstance(eps, int | float | np.integer | np.floating) or not (
        math.isfinite(eps) and eps > 0
    ):
        raise ValueError(f"activation_stats(eps={eps!r}): expected a small positive threshold on |f′(x)|, e.g. 1e-2")
    _check_bins(bins)
    xa = as_float_input(x, "x")
    check_finite(xa, "x")
    if xa.ndim < 1 or xa.shape[0] == 0:
        raise ValueError(
            f"activation_stats needs a non-empty batch (N, ...); got x.shape={xa.shape}. Use x[None] for one sample."
        )
    out: dict[str, LayerActivationStats] = {}
    for t in leaves(forward_trace(model, xa, train=train, rng=rng)):
        rule = activation_rules.find(t.layer)
        quantities = {} if rule is None else dict(rule(t.layer, t.x, t.y, t.cache, float(eps)))
        y = np.asarray(t.y)
        out[t.name] = LayerActivationStats(
            name=t.name,
            layer_type=type(t.layer).__name__,
            shape=tuple(y.shape),
            mean=float(np.mean(y, dtype=np.float64)),
            std=float(np.std(y, dtype=np.float64)),
            histogram=histogram(y, bins),
            quantities=quantities,
        )
    return ActivationStats(out)


# -- gradient histograms --------------------------------------------------------------------------
def gradient_histograms(tape: Tape, bins: Bins = 30) -> dict[str, Histogram]:
    """Histograms of what backward computed, read off a tape (no second backward pass).

    Keys (TensorBoard-style tags):
      ``"dy/<layer>"``  ∂L/∂(output) of each layer, all N·out entries (``"dy/0"``, ``"dy/2.1"``);
      ``"grad/<param>"`` each parameter gradient ∂L/∂θ by state_dict name (``"grad/0.weight"``).
    Pass fixed edges as ``bins`` (e.g. ``np.linspace(-1e-2, 1e-2, 41)``) to compare steps; values
    outside the edges are not counted (numpy's rule), so check ``counts.sum()`` against the size.
    """
    _check_bins(bins)
    out: dict[str, Histogram] = {}
    for entry in tape:
        out[f"dy/{entry.name}"] = histogram(entry.dy, bins)
    for full, entry, local in tape_parameters(tape):
        out[f"grad/{full}"] = histogram(entry.grads[local], bins)
    return out
