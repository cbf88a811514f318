"""Figures for the lab's records (matplotlib, an optional dependency imported only here, lazily).

Each function draws into a new figure, saves it to ``path`` when one is given (PNG by extension),
and returns the matplotlib Figure so a notebook can show or adjust it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nablanet._io import atomic_savefig


def _pyplot() -> Any:
    try:
        import matplotlib

        if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("nablanet.lab.plots needs matplotlib: pip install matplotlib") from exc
    return plt


def _records(source: Any) -> list[dict[str, Any]]:
    if hasattr(source, "to_records"):
        return list(source.to_records())
    return [dict(r) for r in source]


def _save(fig: Any, path: str | Path | None) -> Any:
    if path is not None:
        atomic_savefig(path, fig, dpi=100)
    return fig


def plot_quantity(
    source: Any, quantity: str, *, by: str = "parameter", path: str | Path | None = None, logy: bool = True,
    title: str | None = None,
) -> Any:
    """One line per parameter (``by="parameter"``) or per layer (``by="layer"``, layer-level rows)
    of ``quantity`` against the step, from a Recorder or its records."""
    if by not in ("parameter", "layer"):
        raise ValueError(f"plot_quantity(by={by!r}): expected 'parameter' or 'layer'")
    rows = [r for r in _records(source) if r["quantity"] == quantity]
    if by == "layer":
        rows = [r for r in rows if r["parameter"] == "" and r["layer"] != ""]
    else:
        rows = [r for r in rows if r["parameter"] != "" or r["layer"] == ""]
    if not rows:
        raise ValueError(f"no records of quantity {quantity!r} (by={by!r}); record it with Recorder(quantities=[...])")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    series: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        key = (r["parameter"] if by == "parameter" else r["layer"]) or "model"
        series.setdefault(key, []).append((r["step"], r["value"]))
    for key, pts in series.items():
        steps, values = zip(*sorted(pts), strict=True)
        ax.plot(steps, values, label=key)
    if logy and all(r["value"] > 0 for r in rows):
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel=quantity, title=title or f"{quantity} by {by}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_histograms(
    histograms: Mapping[str, tuple[np.ndarray, np.ndarray]], *, path: str | Path | None = None, title: str = ""
) -> Any:
    """One panel per entry of ``{name: (counts, bin_edges)}`` (e.g. activations per layer)."""
    if not histograms:
        raise ValueError("plot_histograms got no histograms")
    plt = _pyplot()
    n = len(histograms)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, (name, (counts, edges)) in zip(axes.ravel(), histograms.items(), strict=False):
        ax.stairs(counts, edges, fill=True)
        ax.set_title(name, fontsize=9)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_spectrum(
    values: Sequence[float] | np.ndarray | Mapping[str, Iterable[float]], *, path: str | Path | None = None,
    ylabel: str = "value", title: str = "spectrum",
) -> Any:
    """Sorted values (Hessian eigenvalues, Jacobian singular values) by rank; a mapping gives one
    line per key (e.g. per layer)."""
    groups = dict(values) if isinstance(values, Mapping) else {"": values}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, vals in groups.items():
        v = np.sort(np.asarray(list(vals), dtype=float).ravel())[::-1]
        ax.plot(np.arange(1, v.size + 1), v, marker=".", label=key or None)
    ax.set(xlabel="rank", ylabel=ylabel, title=title)
    if len(groups) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_simplex(
    p: Any, labels: Any, *, ax: Any = None, classes: Sequence[int] | None = None,
    names: Sequence[str] | None = None, path: str | Path | None = None, title: str | None = None,
    size: float = 10.0,
) -> Any:
    """The points p (N, C) in the softmax simplex, coloured by their true class ``labels`` (N,), over the
    decision regions P_c = {p_c ≥ p_j} shaded in the class colours and their boundaries, which meet at 1/C
    (``nablanet.lab.simplex``). C = 3: the triangle, each region the kite from its vertex e_c to the
    midpoints of its two edges and 1/3, each boundary the segment from 1/3 to an edge's midpoint. C = 2:
    the segment, the boundary the point ½; the points are spread across it by a fixed jitter (the
    height means nothing). C > 3: the triangle of ``classes`` (``simplex_coords``), the points of the
    other classes in grey. ``names``: a name per class (default "class c"). Draws into ``ax`` when
    given, else into a new figure; returns the Figure."""
    from nablanet.lab.simplex import _chosen, _coords, check_labels, check_points

    arr = check_points(p, "plot_simplex")
    n_classes = arr.shape[1]
    y = check_labels(labels, len(arr), n_classes, "plot_simplex")
    if names is not None and len(names) != n_classes:
        raise ValueError(f"plot_simplex got {len(names)} names for {n_classes} classes; expected one per class")
    chosen = _chosen(arr, classes, "plot_simplex")
    plt = _pyplot()
    fig = ax.figure if ax is not None else plt.subplots(figsize=(5, 4.6) if n_classes > 2 else (6, 2.2))[0]
    ax = ax if ax is not None else fig.axes[0]
    label = (lambda c: names[c]) if names is not None else (lambda c: f"class {c}")
    xy = _coords(arr, chosen)
    if n_classes == 2:
        xy = np.column_stack([xy[:, 0], _jitter(len(xy))])
        _draw_segment(ax, chosen, label)
    else:
        _draw_triangle(ax, chosen, label, f"1/{n_classes}")
    present = np.unique(y).tolist()
    for c in present:
        mine = y == c
        drawn = c in chosen
        ax.scatter(xy[mine, 0], xy[mine, 1], s=size, color=f"C{c % 10}" if drawn else "0.6", alpha=0.7, lw=0,
                   label=label(c) if drawn else "_other", zorder=3)
    if any(c not in chosen for c in present):
        ax.scatter([], [], s=size, color="0.6", label="other classes")
    ax.set_aspect("equal")
    ax.set(xticks=[], yticks=[])  # the plane's coordinates mean nothing to a reader: no ticks, no frame
    ax.set_axis_off()
    ax.legend(fontsize=8, loc="upper left" if n_classes > 2 else "upper center", ncol=1 if n_classes > 2 else 3,
              markerscale=1.5, frameon=False)
    if title is not None:
        ax.set_title(title)
    return _save(fig, path)


def simplex(model: Any, x: Any, y: Any, *, ax: Any = None, classes: Sequence[int] | None = None,
            names: Sequence[str] | None = None, path: str | Path | None = None, title: str | None = None,
            batch_size: int = 1024) -> Any:
    """``plot_simplex`` of the model's points ``nn.lab.simplex_points(model, x)`` (evaluation mode),
    coloured by the true labels ``y``: where the classifier puts each sample, over its decision regions."""
    from nablanet.lab.simplex import simplex_points

    return plot_simplex(simplex_points(model, x, batch_size=batch_size), y, ax=ax, classes=classes, names=names,
                        path=path, title=title)


def _jitter(n: int) -> np.ndarray:
    """A fixed spread of n points across the 1-simplex's segment (the same picture on every call)."""
    return np.random.default_rng(0).uniform(-0.12, 0.12, n)


def _draw_segment(ax: Any, classes: tuple[int, ...], label: Any) -> None:
    from nablanet.lab.simplex import SEGMENT

    (left, _), (right, _) = SEGMENT
    for c, (lo, hi) in zip(classes, ((left, 0.0), (0.0, right)), strict=True):
        ax.fill_between([lo, hi], -0.16, 0.16, color=f"C{c % 10}", alpha=0.12, lw=0)
    ax.plot([left, right], [0, 0], color="0.3", lw=1, zorder=1)
    ax.plot([0.0, 0.0], [-0.2, 0.2], color="k", lw=1.5, zorder=2, label="_boundary")
    ax.plot([0.0], [0.0], "ko", ms=5, zorder=4, label="_centre")
    for x, text in ((left, f"p = e{_sub(classes[0])}\n{label(classes[0])}"), (0.0, "½ (boundary)"),
                    (right, f"p = e{_sub(classes[1])}\n{label(classes[1])}")):
        ax.text(x, -0.24, text, ha="center", va="top", fontsize=8)
    ax.set(xlim=(left - 0.1, right + 0.1), ylim=(-0.5, 0.42))


def _draw_triangle(ax: Any, classes: tuple[int, ...], label: Any, centre: str) -> None:
    from matplotlib.patches import Polygon

    from nablanet.lab.simplex import TRIANGLE

    v = TRIANGLE
    for k, c in enumerate(classes):
        a, b = (k + 1) % 3, (k + 2) % 3
        kite = [v[k], (v[k] + v[a]) / 2, np.zeros(2), (v[k] + v[b]) / 2]
        ax.add_patch(Polygon(kite, closed=True, facecolor=f"C{c % 10}", alpha=0.12, lw=0, label="_region"))
    ax.plot(*np.vstack([v, v[:1]]).T, color="0.3", lw=1, zorder=1, label="_edges")
    for i, j in ((0, 1), (1, 2), (2, 0)):
        mid = (v[i] + v[j]) / 2
        ax.plot([0.0, mid[0]], [0.0, mid[1]], color="k", lw=1.2, zorder=2, label="_boundary")
    ax.plot([0.0], [0.0], "ko", ms=5, zorder=4, label="_centre")
    # beside the triangle, off the points: for C > 3, 1/C renormalised over the three is the centre too
    ax.annotate(f"{centre}: the\nboundaries meet", xy=(0.0, 0.0), xytext=(-0.82, 0.4), fontsize=8, ha="left",
                arrowprops={"arrowstyle": "-", "color": "0.4", "lw": 0.6})
    for k, c in enumerate(classes):
        below = v[k, 1] < 0
        ax.text(v[k, 0], v[k, 1] + (-0.05 if below else 0.05), f"e{_sub(c)} ({label(c)})", ha="center",
                va="top" if below else "bottom", fontsize=8)
    ax.set(xlim=(-0.85, 0.85), ylim=(-0.55, 0.95))


def _sub(k: int) -> str:
    """k as subscript digits: e₁₂."""
    return str(k).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))
