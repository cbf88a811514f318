"""Loss landscapes: the loss along a line between two weight vectors, and over a 2-D slice through
the weights along random filter-normalized directions (Li, Xu, Taylor, Studer & Goldstein, 2018,
"Visualizing the Loss Landscape of Neural Nets").

Notation: θ the parameters (a ``{state_dict name: array}`` dict), L(θ) the loss of the model with
parameters θ on a fixed batch (x, target), evaluated in eval mode (``forward(train=False)``: no
dropout, batch norm on its running statistics), so every point is deterministic.

* ``interpolate``: L((1 − α) θ_a + α θ_b) on a grid of α (Goodfellow, Vinyals & Saxe, 2015, use
  such lines between the initial and the final weights).
* ``random_directions``: a Gaussian direction d, rescaled filter by filter so that ‖d_f‖ = ‖θ_f‖
  (Li et al.'s filter normalization). Without it, the scale invariance of ReLU networks (and batch
  norm) makes plots of different networks incomparable: multiplying a filter's weights by c and
  dividing the next layer's by c changes neither the function nor the loss, yet a fixed step d
  then means a c-times different relative change.
* ``loss_surface_2d``: L(θ + α d₁ + β d₂) on an (α, β) grid; ``plot_surface`` draws its contours.

Every function leaves the model as it found it: the parameters and buffers are saved first and
loaded back in a ``finally`` clause, also when the loss raises part way.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nablanet._io import atomic_savefig
from nablanet._random import get_rng
from nablanet._validation import as_float_input, as_numeric_array, check_finite
from nablanet.layers.base import Layer
from nablanet.layers.normalization import LayerNorm, _BatchNorm
from nablanet.losses.base import Loss
from nablanet.losses.binary import BCELoss, BCEWithLogitsLoss
from nablanet.losses.cross_entropy import CrossEntropyLoss, NLLLoss
from nablanet.parameter import Parameter

StateDict = Mapping[str, Any]
_NORMALIZATIONS = ("filter", "layer", "none")


# -- 1-D: a line between two weight vectors -------------------------------------------------------
def interpolate(
    model: Layer,
    loss: Loss,
    x: Any,
    target: Any,
    theta_a: StateDict,
    theta_b: StateDict,
    *,
    steps: int = 25,
    alphas: Sequence[float] | np.ndarray | None = None,
) -> list[dict[str, float]]:
    """L(θ(α)) with θ(α) = (1 − α) θ_a + α θ_b, one record per α: ``{"alpha", "loss"[, "accuracy"]}``.

    Grid: ``alphas`` if given, else ``steps`` points from −0.5 to 1.5 (the line extended by half its
    length beyond both ends, to show whether θ_a and θ_b sit in basins; the default 25 steps put
    points exactly on α = 0 and α = 1, spacing 1/12). ``theta_a``/``theta_b`` are state dicts
    (``model.state_dict()``, or arrays from PyTorch's) with the same keys, each a key of the model's
    state dict; keys left out keep the model's current value. Floating arrays are interpolated;
    integer buffers (``num_batches_tracked``) take θ_a's value.
    ``"accuracy"`` is added for classification losses: CrossEntropyLoss/NLLLoss (argmax over axis 1;
    ignore_index skipped; probability targets compared by their argmax), BCEWithLogitsLoss
    (logit > 0) and BCELoss (p > 0.5), targets read as target > 0.5. A point whose output is not
    finite gets loss = accuracy = NaN. The model's parameters and buffers are restored afterwards.
    """
    _check_scalar_loss(loss, "interpolate")
    grid = _alpha_grid(steps, alphas)
    xa = _checked_input(x)
    a = _check_state(model, theta_a, "theta_a")
    b = _check_state(model, theta_b, "theta_b")
    if set(a) != set(b):
        raise KeyError(
            f"interpolate: theta_a and theta_b must hold the same keys; only in theta_a: {sorted(set(a) - set(b))}, "
            f"only in theta_b: {sorted(set(b) - set(a))}. Pass two full model.state_dict() copies."
        )
    floating = {k for k, v in model.state_dict().items() if k in a and v.dtype.kind == "f"}
    rows: list[dict[str, float]] = []
    saved = model.state_dict()
    try:
        for alpha in grid:
            point = {k: ((1.0 - alpha) * a[k] + alpha * b[k]) if k in floating else a[k] for k in a}
            model.load_state_dict(point, strict=False)
            value, acc = _evaluate(model, loss, xa, target)
            row = {"alpha": float(alpha), "loss": value}
            if acc is not None:
                row["accuracy"] = acc
            rows.append(row)
    finally:
        model.load_state_dict(saved)
    return rows


# -- directions -----------------------------------------------------------------------------------
def random_directions(
    model: Layer,
    *,
    seed: int | np.random.Generator = 0,
    normalization: str = "filter",
    ignore_biases_and_norm: bool = True,
) -> dict[str, np.ndarray]:
    """A random direction d in weight space, ``{parameter name: array}`` (float64, the parameters' shapes).

    Every entry is drawn d ~ N(0, 1) from ``numpy.random.default_rng(seed)`` (or the Generator
    passed as ``seed``), one array per parameter in ``named_parameters`` order, whether or not it is
    then zeroed, so the same seed gives the same direction on the weights whatever the options.
    Then, for a parameter θ of two or more axes (a Linear weight (o, i), a Conv weight (O, C/G, *k)):

      "filter":  d_f ← d_f · ‖θ_f‖ / ‖d_f‖ for every filter f, the slice along axis 0 (row o of a
                 Linear weight; output channel O, all of (C/G, *k), of a Conv weight), Frobenius
                 norms (Li et al., 2018, eq. for filter-wise normalization); a filter with ‖θ_f‖ = 0
                 gets d_f = 0;
      "layer":   d ← d · ‖θ‖ / ‖d‖ over the whole array;
      "none":    d as drawn.

    Biases and normalization parameters (1-D arrays, and every parameter of BatchNorm/LayerNorm)
    get d = 0 when ``ignore_biases_and_norm`` (the paper's choice). Otherwise they follow
    ``normalization``, except that in "filter" mode d = θ (Li et al.'s reference code: each entry
    a filter of one element, its direction the weight itself).
    """
    if normalization not in _NORMALIZATIONS:
        raise ValueError(
            f"random_directions(normalization={normalization!r}): expected one of {list(_NORMALIZATIONS)}: "
            "'filter' (Li et al.'s filter-wise rescaling, the default), 'layer' (one rescaling per array), "
            "'none' (raw Gaussian)."
        )
    if not isinstance(ignore_biases_and_norm, bool | np.bool_):
        raise TypeError(f"random_directions(ignore_biases_and_norm={ignore_biases_and_norm!r}): expected True or False")
    rng = _generator(seed, "random_directions")
    out: dict[str, np.ndarray] = {}
    for name, owner, p in _owned_parameters(model, ""):
        w = np.asarray(p.data, dtype=np.float64)
        d = rng.standard_normal(w.shape)
        if w.ndim <= 1 or isinstance(owner, _BatchNorm | LayerNorm):
            if ignore_biases_and_norm:
                d = np.zeros_like(w)
            elif normalization == "filter":
                d = w.copy()
            elif normalization == "layer":
                d = _rescale(d.reshape(1, -1), w.reshape(1, -1)).reshape(w.shape)
        elif normalization == "filter":
            d = _rescale(d.reshape(w.shape[0], -1), w.reshape(w.shape[0], -1)).reshape(w.shape)
        elif normalization == "layer":
            d = _rescale(d.reshape(1, -1), w.reshape(1, -1)).reshape(w.shape)
        out[name] = d
    return out


def _rescale(d: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Row r of d scaled to the norm of row r of w (0 where ‖d_r‖ = 0)."""
    wn = np.linalg.norm(w, axis=1)
    dn = np.linalg.norm(d, axis=1)
    scale = np.divide(wn, dn, out=np.zeros_like(wn), where=dn > 0)
    return d * scale[:, None]


# -- 2-D: a plane through θ -----------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LossSurface:
    """L(θ + αᵢ d₁ + βⱼ d₂) on a grid: ``loss[i, j]`` (len(alphas), len(betas)); ``accuracy`` alike, or
    None for a loss that is not a classification loss; the two directions used."""

    alphas: np.ndarray
    betas: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray | None
    directions: tuple[dict[str, np.ndarray], dict[str, np.ndarray]]

    def to_records(self) -> list[dict[str, float]]:
        """One row per grid point: ``{"alpha", "beta", "loss"[, "accuracy"]}``."""
        rows: list[dict[str, float]] = []
        for i, a in enumerate(self.alphas):
            for j, b in enumerate(self.betas):
                row = {"alpha": float(a), "beta": float(b), "loss": float(self.loss[i, j])}
                if self.accuracy is not None:
                    row["accuracy"] = float(self.accuracy[i, j])
                rows.append(row)
        return rows


def loss_surface_2d(
    model: Layer,
    loss: Loss,
    x: Any,
    target: Any,
    *,
    directions: tuple[StateDict, StateDict] | None = None,
    span: float = 1.0,
    steps: int = 21,
    seed: int | np.random.Generator = 0,
) -> LossSurface:
    """L(θ + α d₁ + β d₂) for α, β on ``steps`` points of [−span, span], θ the model's parameters now.

    ``directions``: two ``{parameter name: array}`` dicts (parameters left out do not move), or
    None for two ``random_directions(model, seed=rng)`` drawn one after the other from
    ``numpy.random.default_rng(seed)`` (filter-normalized, biases and norm parameters fixed). With
    filter normalization, span = 1 reaches as far as a step the size of every filter itself.
    One eval-mode forward per grid point (steps² in all). A point whose output is not finite gets
    NaN. The model's parameters and buffers are restored afterwards (also on an exception).
    """
    _check_scalar_loss(loss, "loss_surface_2d")
    if isinstance(span, bool) or not isinstance(span, int | float | np.integer | np.floating) or not (
        math.isfinite(span) and span > 0
    ):
        raise ValueError(f"loss_surface_2d(span={span!r}): expected a positive finite number such as 1.0")
    _check_steps(steps, "loss_surface_2d")
    xa = _checked_input(x)
    params = dict(model.named_parameters())
    if directions is None:
        rng = _generator(seed, "loss_surface_2d")
        d1 = random_directions(model, seed=rng)
        d2 = random_directions(model, seed=rng)
    else:
        if not (isinstance(directions, tuple | list) and len(directions) == 2):
            raise TypeError(
                f"loss_surface_2d(directions=...): expected a pair (d1, d2) of {{parameter name: array}} dicts, "
                f"got {type(directions).__name__}. Make them with random_directions(model, seed=0)."
            )
        d1 = _check_direction(params, directions[0], "directions[0]")
        d2 = _check_direction(params, directions[1], "directions[1]")
    coords = np.linspace(-float(span), float(span), steps)
    names = sorted(set(d1) | set(d2), key=list(params).index)
    zero = {k: np.zeros(params[k].shape) for k in names}
    v1 = {k: d1.get(k, zero[k]) for k in names}
    v2 = {k: d2.get(k, zero[k]) for k in names}
    values = np.empty((steps, steps))
    accs = np.empty((steps, steps))
    classify = False
    saved = model.state_dict()
    centre = {k: np.asarray(params[k].data, dtype=np.float64).copy() for k in names}
    try:
        for i, a in enumerate(coords):
            row = {k: centre[k] + a * v1[k] for k in names}  # θ + α d₁, shared by the row
            for j, b in enumerate(coords):
                for k in names:
                    params[k].data[...] = row[k] + b * v2[k]
                value, acc = _evaluate(model, loss, xa, target)
                values[i, j] = value
                classify = acc is not None
                accs[i, j] = np.nan if acc is None else acc
    finally:
        model.load_state_dict(saved)
    return LossSurface(coords, coords.copy(), values, accs if classify else None, (d1, d2))


def plot_surface(
    result: LossSurface, path: str | Path, *, levels: int | Sequence[float] = 30, title: str | None = None
) -> Path:
    """Contour plot of ``result.loss`` over (α, β), the centre θ marked with +; saved to ``path``.

    matplotlib is imported here, not with nablanet (no pyplot and no display needed); the figure's
    format follows the file suffix. Returns ``Path(path)``.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plot_surface needs matplotlib, which is not installed: pip install matplotlib. "
            "The numbers themselves are in result.to_records() (e.g. for pandas)."
        ) from exc
    if not isinstance(result, LossSurface):
        raise TypeError(
            f"plot_surface expects the LossSurface that loss_surface_2d returns; got {type(result).__name__}"
        )
    fig = Figure(figsize=(5.0, 4.2), layout="constrained")
    ax = fig.subplots()
    a, b = np.meshgrid(result.alphas, result.betas, indexing="ij")
    cs = ax.contour(a, b, np.ma.masked_invalid(result.loss), levels=levels)
    ax.clabel(cs, fontsize=7)
    ax.plot([0.0], [0.0], "k+", markersize=10)
    ax.set_xlabel("α (direction d₁)")
    ax.set_ylabel("β (direction d₂)")
    ax.set_title(title if title is not None else "L(θ + α d₁ + β d₂)")
    return atomic_savefig(path, fig)


# -- helpers --------------------------------------------------------------------------------------
def _check_scalar_loss(loss: Any, who: str) -> None:
    if not isinstance(loss, Loss):
        raise TypeError(f"{who} expects a nablanet loss such as nn.CrossEntropyLoss(); got {type(loss).__name__}")
    if loss.reduction == "none":
        raise ValueError(f"{who} needs a scalar loss; {loss!r} has reduction='none'. Use 'mean' or 'sum'.")


def _check_steps(steps: Any, who: str) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 2:
        raise ValueError(f"{who}(steps={steps!r}): expected an int ≥ 2, the number of grid points, e.g. 25")


def _alpha_grid(steps: int, alphas: Any) -> np.ndarray:
    if alphas is not None:
        grid = np.asarray(as_numeric_array(alphas, "alphas"), dtype=np.float64)
        if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
            raise ValueError(
                f"interpolate(alphas=...): expected a non-empty 1-D array of finite numbers, got shape {grid.shape}; "
                "e.g. alphas=np.linspace(0, 1, 11)."
            )
        return grid
    _check_steps(steps, "interpolate")
    grid = np.linspace(-0.5, 1.5, steps)
    for end in (0.0, 1.0):  # snap rounding (6·(2/24) = 0.49999…) so the ends are hit exactly
        grid[np.abs(grid - end) < 1e-12] = end
    return grid


def _checked_input(x: Any) -> np.ndarray:
    xa = as_float_input(x, "x")
    check_finite(xa, "x")
    return xa


def _generator(seed: Any, who: str) -> np.random.Generator:
    if seed is None:
        raise TypeError(f"{who}(seed=None): pass an int seed such as 0 (or a numpy.random.Generator)")
    return get_rng(seed)


def _owned_parameters(layer: Layer, prefix: str) -> Iterator[tuple[str, Layer, Parameter]]:
    """(full name, owning layer, parameter) in ``named_parameters`` order."""
    for name, p in layer._parameters.items():
        yield prefix + name, layer, p
    for child_name, child in layer.named_children():
        yield from _owned_parameters(child, f"{prefix}{child_name}.")


def _check_state(model: Layer, theta: Any, who: str) -> dict[str, np.ndarray]:
    """``theta`` as float64/int arrays keyed by state_dict names, shapes checked against the model."""
    if not isinstance(theta, Mapping):
        raise TypeError(
            f"interpolate: {who} is a {type(theta).__name__}; expected a state dict {{name: array}} such as "
            "model.state_dict()."
        )
    current = model.state_dict()
    unknown = [k for k in theta if k not in current]
    if unknown:
        raise KeyError(f"interpolate: {who} has keys {unknown} that the model lacks; the model's are {list(current)}")
    out: dict[str, np.ndarray] = {}
    for k, v in theta.items():
        arr = as_numeric_array(v, f"{who}[{k!r}]")
        if arr.shape != current[k].shape:
            raise ValueError(
                f"interpolate: {who}[{k!r}] has shape {arr.shape} but the model's {k!r} has shape {current[k].shape}; "
                "both state dicts must come from the same architecture."
            )
        check_finite(arr, f"{who}[{k!r}]")
        out[k] = arr.astype(np.float64) if current[k].dtype.kind == "f" else arr
    return out


def _check_direction(params: dict[str, Parameter], d: Any, who: str) -> dict[str, np.ndarray]:
    if not isinstance(d, Mapping):
        raise TypeError(f"loss_surface_2d: {who} is a {type(d).__name__}; expected {{parameter name: array}}")
    out: dict[str, np.ndarray] = {}
    for k, v in d.items():
        if k not in params:
            raise KeyError(
                f"loss_surface_2d: {who} has key {k!r}, not a parameter of the model; expected names among "
                f"{list(params)} (buffers such as running statistics do not move)."
            )
        arr = np.asarray(as_numeric_array(v, f"{who}[{k!r}]"), dtype=np.float64)
        if arr.shape != params[k].shape:
            raise ValueError(
                f"loss_surface_2d: {who}[{k!r}] has shape {arr.shape}; the parameter has {params[k].shape}. "
                "Build directions for this model, e.g. random_directions(model, seed=0)."
            )
        check_finite(arr, f"{who}[{k!r}]")
        out[k] = arr
    return out


def _evaluate(model: Layer, loss: Loss, x: np.ndarray, target: Any) -> tuple[float, float | None]:
    """L and (for classification losses) accuracy of the model's eval-mode output; NaN if it is not finite."""
    y, _ = model.forward(x, train=False)
    classify = isinstance(loss, CrossEntropyLoss | NLLLoss | BCELoss | BCEWithLogitsLoss)
    if not np.all(np.isfinite(y)):
        return float("nan"), (float("nan") if classify else None)
    value, _ = loss.forward(y, target)
    return float(value), _accuracy(loss, y, target)


def _accuracy(loss: Loss, output: np.ndarray, target: Any) -> float | None:
    t = np.asarray(target)
    if isinstance(loss, CrossEntropyLoss | NLLLoss):
        pred = np.argmax(output, axis=1)
        if t.shape == output.shape and t.dtype.kind == "f":  # class probabilities
            labels = np.argmax(t, axis=1)
            keep = np.ones(labels.shape, dtype=bool)
        else:
            labels = t.astype(np.int64)
            keep = labels != loss.ignore_index
        return float(np.mean(pred[keep] == labels[keep])) if np.any(keep) else float("nan")
    if isinstance(loss, BCEWithLogitsLoss):
        return float(np.mean((output > 0) == (t > 0.5)))
    if isinstance(loss, BCELoss):
        return float(np.mean((output > 0.5) == (t > 0.5)))
    return None
