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
