"""The softmax simplex: where a classifier puts each sample, and on which side of its decision boundaries.

A classifier with C classes maps data space into the simplex (source notes 004, §1)

    P = {p ∈ ℝᶜ : p ≥ 0, Σ_c p_c = 1},

the convex hull of the unit vectors e₀ … e_{C−1}, and the arg max rule decides by the regions

    P_c = {p ∈ P : p_c ≥ p_j for every j}.

Each is cut out of P by linear inequalities, so it is convex (and closed); all C of them contain the
point 1/C = (1/C, …, 1/C) and no other point lies in more than C − 1 of them: the boundaries meet at
1/C. Training is learning a map that carries each class's points into its own region.

Points.  ``simplex_points(model, x)`` is p = softmax(z) of the model's outputs z (N, C) in evaluation
mode, in float64. A model with one output (a binary logit) gives p = (1 − σ(z), σ(z)); a model that
ends in Softmax gives its output as it is (not softmaxed twice), one that ends in LogSoftmax its exp,
one that ends in Sigmoid with one output (1 − s, s).

Coordinates in the plane.  ``simplex_coords(p)`` is the affine map p ↦ Σ_c p_c v_c with

    C = 3   the equilateral triangle of side √2 centred at the origin:
            v₀ = (−1/√2, −1/√6)   v₁ = (1/√2, −1/√6)   v₂ = (0, √(2/3));   1/3 ↦ (0, 0)
    C = 2   the segment (the 1-simplex)  v₀ = (−1/√2, 0)   v₁ = (1/√2, 0):
            p ↦ ((p₁ − p₀)/√2, 0);   ½ ↦ (0, 0)

Since |vᵢ − vⱼ| = √2 = |eᵢ − eⱼ| for every pair and the map is affine, it is an isometry of P onto the
triangle (segment): a distance in the picture is the distance in P. For C > 3 it is a projection:
``classes=(a, b, c)`` keeps three classes and renormalises, q = (p_a, p_b, p_c)/(p_a + p_b + p_c),
drawn as for C = 3 (NaN where the three underflow to 0); the default is the three classes with the
largest mean probability over the points, in increasing order. The regions drawn in that triangle are
those of the three classes among themselves: membership and margin below are always computed in the
full simplex, never in the projection.

Membership and margin.  Sample n with label y is ``inside`` its region when p_y ≥ p_j for every j
(a tie counts as inside: the regions are closed). The boundary between P_y and P_j lies on the
hyperplane H_yj = {p_y = p_j}. Its unit normal u = (e_y − e_j)/√2 has entries summing to 0, so it lies
in P's own plane and the distance from p to H_yj measured within that plane is |⟨p, u⟩| = |p_y − p_j|/√2.
The signed margin is

    m = (p_y − max_{j≠y} p_j)/√2,     positive inside, negative outside, 0 on a boundary.

Inside, m is the Euclidean distance from p to the nearest boundary of P_y: it is the distance to the
nearest hyperplane H_yj* (j* = arg max_{j≠y} p_j), and the foot of the perpendicular, p with p_y and
p_j* both replaced by their mean, lies in P and satisfies every other inequality p_y ≥ p_i, so it is
a boundary point of P_y. Outside, −m is the distance to the hyperplane p_y = p_ŷ between y and the
predicted class ŷ, the one the point must cross: a lower bound on its distance to P_y, equal to it
when that foot lies in P_y (always for C = 2). The largest margin, at the vertex e_y, is 1/√2; at
1/C every margin is 0.

Which class is predicted: the arg max, the lowest index on a tie, as ``numpy.argmax`` (and training
accuracy) decide; so ``inside`` equals ``predicted == label`` except on exact ties.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from nablanet._validation import as_numeric_array
from nablanet.layers.activations import Sigmoid, sigmoid
from nablanet.layers.base import Layer
from nablanet.layers.sequential import Sequential
from nablanet.layers.softmax import LogSoftmax, Softmax, softmax
from nablanet.train.loop import predict

ROOT2 = math.sqrt(2.0)
TRIANGLE = np.array([[-1 / ROOT2, -1 / math.sqrt(6.0)], [1 / ROOT2, -1 / math.sqrt(6.0)], [0.0, math.sqrt(2 / 3)]])
"""The vertices v₀, v₁, v₂ of the 2-simplex in the plane (rows): side √2, centred at the origin."""
SEGMENT = np.array([[-1 / ROOT2, 0.0], [1 / ROOT2, 0.0]])
"""The vertices v₀, v₁ of the 1-simplex in the plane (rows): length √2, centred at the origin."""
_SUM_TOL = 1e-5  # how far a row of p may sum from 1 (float32 softmax outputs are off by ~C·6e-8)


class SimplexRecords(NamedTuple):
    """One row per sample (see the module docstring for the definitions).

    p          (N, C) the points in the simplex (float64)
    label      (N,) the true class y
    predicted  (N,) arg max p (the lowest index on a tie)
    p_label    (N,) p_y, the probability of the true class
    inside     (N,) p_y ≥ p_j for every j: the point lies in its label's region P_y
    margin     (N,) (p_y − max_{j≠y} p_j)/√2, the signed distance to P_y's nearest boundary
    xy         (N, 2) the point in the plane (``simplex_coords``)
    classes    the classes at the picture's vertices, in order
    """

    p: np.ndarray
    label: np.ndarray
    predicted: np.ndarray
    p_label: np.ndarray
    inside: np.ndarray
    margin: np.ndarray
    xy: np.ndarray
    classes: tuple[int, ...]


def last_layer(model: Layer) -> Layer:
    """The layer that computes the model's output: the last leaf of nested Sequentials, else the model."""
    while isinstance(model, Sequential) and len(model._modules):
        model = model[-1]
    return model


def output_probabilities(out: Any, model: Layer | None = None, *, who: str = "simplex_points") -> np.ndarray:
    """The model's outputs ``out`` (N, C) as points of the simplex, float64 (see the module docstring):
    softmax of logits, (1 − σ, σ) of one binary logit; a ``model`` that ends in Softmax, LogSoftmax or
    Sigmoid is read as already giving probabilities (log-probabilities)."""
    z = as_numeric_array(out, "the model's output").astype(np.float64)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(
            f"{who}: the model's output has shape {z.shape}; expected class scores (N, C) with N ≥ 1, one row per "
            "sample (C logits, or one binary logit). Fix: end the model in Linear(…, C), or Flatten() what comes "
            "before it.")
    if not np.isfinite(z).all():
        raise ValueError(f"{who}: the model's output holds NaN or ±inf; a point of the simplex needs finite scores. "
                         "Fix: check the model's weights (a diverged run) and its input.")
    end = None if model is None else last_layer(model)
    if isinstance(end, Softmax | LogSoftmax) and end.dim not in (1, -1):
        raise ValueError(f"{who}: the model ends in {type(end).__name__}(dim={end.dim}), which normalizes across "
                         f"samples, not classes; expected dim=1 (or -1) for outputs (N, C). Fix: {type(end).__name__}"
                         "(dim=1).")
    if isinstance(end, Sigmoid) and z.shape[1] != 1:
        raise ValueError(f"{who}: the model ends in Sigmoid with {z.shape[1]} outputs, independent probabilities that "
                         "need not sum to 1, not a point of the simplex. Fix: end in Linear(…, C) (logits) or "
                         "Softmax(dim=1) for C classes, or one output for two classes.")
    if z.shape[1] == 1:
        if isinstance(end, Sigmoid):
            return np.stack([1.0 - z[:, 0], z[:, 0]], axis=1)
        # 1 − σ(z) as σ(−z), so that neither column loses digits to a subtraction
        return np.stack([sigmoid(-z[:, 0]), sigmoid(z[:, 0])], axis=1)
    if isinstance(end, Softmax):
        return z
    if isinstance(end, LogSoftmax):
        return np.exp(z)
    return softmax(z, axis=1)


def simplex_points(model: Layer, x: Any, *, batch_size: int = 1024) -> np.ndarray:
    """p (N, C), float64: where the model puts each sample of ``x`` in the softmax simplex, in evaluation
    mode (dropout off, batch norm on its running statistics; the model's mode is kept), in batches.

    softmax(z) of the outputs z; one output gives (1 − σ(z), σ(z)); a model ending in Softmax is not
    softmaxed twice (see the module docstring)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"simplex_points(batch_size={batch_size!r}): expected a positive int, e.g. 1024")
    return output_probabilities(predict(model, x, batch_size=int(batch_size)), model)


def check_points(p: Any, who: str) -> np.ndarray:
    """``p`` as a float64 (N, C) array of points of the simplex (C ≥ 2), or a ValueError saying what is wrong."""
    arr = as_numeric_array(p, "p").astype(np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(
            f"{who} got p of shape {arr.shape}; expected probabilities (N, C) with C ≥ 2 classes, one row per "
            "sample. Fix: pass nn.lab.simplex_points(model, x) (a binary logit gives its two columns).")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{who} got p with negative, NaN or infinite entries; expected probabilities ≥ 0. "
                         "Fix: pass softmax outputs, e.g. nn.lab.simplex_points(model, x), not logits.")
    sums = arr.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > _SUM_TOL)
    if bad.size:
        raise ValueError(f"{who} got p whose row {int(bad[0])} sums to {sums[bad[0]]:.6g} ({bad.size} rows off in "
                         f"all); expected rows summing to 1 (±{_SUM_TOL:g}). Fix: pass softmax outputs, e.g. "
                         "nn.lab.simplex_points(model, x), not logits or unnormalized scores.")
    return arr


def check_labels(labels: Any, n: int, n_classes: int, who: str) -> np.ndarray:
    """``labels`` as int64 class indices (N,) in [0, C); (N, 1) and integral floats are accepted."""
    arr = as_numeric_array(labels, "labels")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (n,):
        raise ValueError(f"{who} got labels of shape {arr.shape} for {n} points; expected class indices ({n},). "
                         "Fix: pass the integer labels y, one per row of p.")
    if arr.dtype.kind == "f" and (not np.isfinite(arr).all() or (arr != np.round(arr)).any()):
        raise ValueError(f"{who} got labels that are not whole numbers; expected integer class indices in "
                         f"[0, {n_classes}). Fix: pass y.astype(int).")
    idx = arr.astype(np.int64)
    out = np.flatnonzero((idx < 0) | (idx >= n_classes))
    if out.size:
        raise ValueError(f"{who} got label {idx[out[0]]} at index {int(out[0])} ({out.size} out of range in all); "
                         f"expected class indices in [0, {n_classes}) for p with {n_classes} columns. Fix: relabel "
                         "the classes 0 … C − 1.")
    return idx


def default_classes(p: np.ndarray) -> tuple[int, ...]:
    """The classes at the picture's vertices: all of them for C ≤ 3, else the three with the largest mean
    probability over the points (ties to the lower index), in increasing order."""
    c = p.shape[1]
    if c <= 3:
        return tuple(range(c))
    order = np.argsort(-p.mean(axis=0), kind="stable")  # stable: ties keep the lower index first
    return tuple(sorted(int(k) for k in order[:3]))


def _check_classes(classes: Any, n_classes: int, who: str) -> tuple[int, ...]:
    try:
        chosen = tuple(int(k) for k in classes)
        ok = all(float(k) == int(k) for k in classes)
    except (TypeError, ValueError):
        chosen, ok = (), False
    if n_classes <= 3:
        if ok and sorted(chosen) == list(range(n_classes)):
            return chosen
        raise ValueError(f"{who}(classes={classes!r}) with C = {n_classes}: the picture shows every class, so "
                         f"classes must list 0 … {n_classes - 1} once each. Fix: leave classes=None.")
    if not ok or len(chosen) != 3 or len(set(chosen)) != 3 or not all(0 <= k < n_classes for k in chosen):
        raise ValueError(f"{who}(classes={classes!r}): expected three different class indices in [0, {n_classes}) "
                         "to project onto, e.g. classes=(0, 1, 2); or None for the three of largest mean probability.")
    return chosen


def simplex_coords(p: Any, *, classes: Any = None) -> np.ndarray:
    """(N, 2): the points p (N, C) in the plane, p ↦ Σ_c p_c v_c (module docstring): the triangle for
    C = 3, the segment for C = 2 (second coordinate 0), and for C > 3 the triangle of ``classes`` (three
    indices; default: the three of largest mean probability) after renormalising over them."""
    arr = check_points(p, "simplex_coords")
    return _coords(arr, _chosen(arr, classes, "simplex_coords"))


def _chosen(arr: np.ndarray, classes: Any, who: str) -> tuple[int, ...]:
    return default_classes(arr) if classes is None else _check_classes(classes, arr.shape[1], who)


def _coords(arr: np.ndarray, chosen: tuple[int, ...]) -> np.ndarray:
    """``simplex_coords`` of points already checked, at the vertices ``chosen``."""
    q = arr[:, list(chosen)]
    if arr.shape[1] == 2:
        return q @ SEGMENT
    if arr.shape[1] > 3:
        total = q.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            q = np.where(total > 0, q / total, np.nan)
    return q @ TRIANGLE


def simplex_records(p: Any, labels: Any, *, classes: Any = None) -> SimplexRecords:
    """Per sample: the label, the predicted class, p of the label, whether the point lies in its label's
    region, its signed margin (p_y − max_{j≠y} p_j)/√2, and its coordinates in the plane (module docstring).

    p: (N, C) probabilities, e.g. ``simplex_points(model, x)``;  labels: (N,) class indices.
    classes: for C > 3 the three classes of the picture (``simplex_coords``); membership and margin use
    all C classes whatever the picture shows."""
    arr = check_points(p, "simplex_records")
    y = check_labels(labels, arr.shape[0], arr.shape[1], "simplex_records")
    return _records(arr, y, _chosen(arr, classes, "simplex_records"))


def _records(arr: np.ndarray, y: np.ndarray, chosen: tuple[int, ...]) -> SimplexRecords:
    """``simplex_records`` of points and labels already checked."""
    p_label, inside, margin = _membership(arr, y)
    return SimplexRecords(p=arr, label=y, predicted=arr.argmax(axis=1), p_label=p_label, inside=inside,
                          margin=margin, xy=_coords(arr, chosen), classes=chosen)


def _membership(arr: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """p_y, whether p lies in P_y (p_y ≥ max_{j≠y} p_j) and the signed margin (p_y − max_{j≠y} p_j)/√2."""
    rows = np.arange(len(arr))
    p_label = arr[rows, y]
    others = arr.copy()
    others[rows, y] = -np.inf
    rival = others.max(axis=1)
    return p_label, p_label >= rival, (p_label - rival) / ROOT2


def batch_rows(output: Any, target: Any, model: Layer | None) -> list[tuple[str, float]]:
    """The Recorder's "simplex" rows (quantity, value) for one batch: the model's ``output`` on it and its
    ``target`` class indices (rows whose target is outside [0, C), e.g. CrossEntropyLoss's ignore_index,
    are left out). Names: see ``nablanet.lab.recorder``."""
    p = output_probabilities(output, model, who="Recorder quantity 'simplex'")
    t = as_numeric_array(target, "target")
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.shape != (len(p),) or (t.dtype.kind == "f" and (t != np.round(t)).any()):
        raise ValueError(f"Recorder quantity 'simplex' got targets of shape {t.shape} for outputs {np.shape(output)}; "
                         f"it needs class indices ({len(p)},) to know each sample's region (probability or one-hot "
                         "targets name no single class). Fix: train on integer labels, or drop 'simplex'.")
    keep = (t >= 0) & (t < p.shape[1])
    if not keep.any():
        return []
    p, y = p[keep], t[keep].astype(np.int64)
    _, inside, margin = _membership(p, y)
    rows = [("simplex_inside", float(inside.mean())), ("simplex_margin_mean", float(margin.mean())),
            ("simplex_margin_min", float(margin.min()))]
    classes, which, counts = np.unique(y, return_inverse=True, return_counts=True)
    w = (which[:, None] == np.arange(len(classes))) / counts  # (N, K): each true class's mean, as one product
    means = np.column_stack([inside @ w, margin @ w])
    points = w.T @ p  # (K, C) each class's mean point
    # the map is affine: the mean point's coordinates are the mean of the coordinates
    xy = _coords(points, tuple(range(p.shape[1]))) if p.shape[1] <= 3 else None
    for k, c in enumerate(classes.tolist()):
        rows += [(f"simplex_inside_{c}", float(means[k, 0])), (f"simplex_margin_mean_{c}", float(means[k, 1]))]
        rows += [(f"simplex_p_{c}_{j}", float(v)) for j, v in enumerate(points[k].tolist())]
        if xy is not None:
            rows += [(f"simplex_x_{c}", float(xy[k, 0])), (f"simplex_y_{c}", float(xy[k, 1]))]
    return rows
