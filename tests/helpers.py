"""Shared test tools: central differences for a layer's VJP, relative errors."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

import nablanet as nn


def sigint_as_in_a_terminal() -> None:
    """``preexec_fn`` for a child process that a test sends SIGINT: the signal's default action there.

    A test run started with ``&`` from a script inherits SIGINT ignored, and so would the child; its
    Python would then never raise KeyboardInterrupt, and the test would see no Ctrl-C at all.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ctrl_c_when(proc: subprocess.Popen[str], ready: Callable[[], bool], timeout: float = 60) -> tuple[str, str]:
    """Send ``proc`` a SIGINT once ``ready()`` holds (polled); return its (stdout, stderr) once it ends.

    Fails if the process ends first or ``ready`` does not hold within ``timeout`` seconds; the
    process is killed if anything goes wrong, so no test leaves one behind.
    """
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"not ready to be interrupted within {timeout} s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max |a − b| / max(max |a|, max |b|): the error in units of the largest entry."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0))
    err = float(np.max(np.abs(a - b), initial=0.0))
    return err / scale if scale > 0 else err


def numeric_grad(f: Callable[[], float], arr: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() with respect to every entry of ``arr`` (in place)."""
    g = np.zeros(arr.shape)
    flat = arr.reshape(-1)
    gflat = g.reshape(-1)
    for k in range(flat.size):
        orig = flat[k]
        flat[k] = orig + eps
        up = f()
        flat[k] = orig - eps
        down = f()
        flat[k] = orig
        gflat[k] = (up - down) / (2 * eps)
    return g


def check_layer_fd(layer: nn.Layer, x: np.ndarray, seed: int = 0, train: bool = False) -> float:
    """Worst relative error of the VJP against central differences of L = ⟨dy, layer(x)⟩.

    Checks the input and every parameter. float64 throughout.
    """
    rng = np.random.default_rng(seed)
    y, cache = layer.forward(x, train=train, rng=np.random.default_rng(seed))
    dy = rng.standard_normal(y.shape)
    dx, grads = layer.vjp(cache, dy)

    def f() -> float:
        out, _ = layer.forward(x, train=train, rng=np.random.default_rng(seed))
        return float(np.sum(out * dy))

    worst = rel_err(dx, numeric_grad(f, x))
    for name, p in layer.named_parameters():
        worst = max(worst, rel_err(grads[name], numeric_grad(f, p.data)))
    return worst


def load_benchmark(name: str) -> ModuleType:
    """A script of benchmarks/ as a module (the reference runs live there so they print their figures)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_answers_first(result: Any, out: Path) -> None:
    """A study's result and report open with the answer: one to three sentences with at most three
    numbers, then the figure that shows it, above the full verdict; the numbers fold away and are
    numbers.csv too (issue 16's report form, which every study follows)."""
    import csv
    import json
    import re

    from nablanet.studies.base import numbers_in

    answer = result.answer
    assert answer is not None and answer.figure in result.figures, (answer, sorted(result.figures))
    text = answer.text[len(result.fallback) + 1:] if result.fallback else answer.text
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z])", text.strip())
    assert 1 <= len(sentences) <= 3 and len(numbers_in(text)) <= 3, (sentences, numbers_in(text))
    meta = json.loads((out / "result.json").read_text())
    assert meta["answer"] == answer.text and meta["answer_figure"] == answer.figure and meta["method"]
    page = (out / "index.html").read_text()
    first = page.index("<figure")
    assert page.index('id="answer"') < first == page.index(f'<figure id="figure-{answer.figure}"')
    assert first < page.index("How we know") < page.index('class="verdict"') < page.index('<details id="numbers"')
    with open(out / "numbers.csv", newline="") as f:
        assert [r["name"] for r in csv.DictReader(f)] == list(result.headline)
    for stem, fig in result.figures.items():  # each titled with the question it answers, and legible
        assert fig._suptitle is not None and fig._suptitle.get_text().endswith("?"), stem
        assert figure_problems(fig) == [], stem


def _texts(fig: Any) -> list[Any]:
    """Every piece of text a reader sees on ``fig``: titles, axis labels, tick labels in view, legends."""
    texts = [*fig.texts, fig._suptitle, *(t for legend in fig.legends for t in legend.get_texts())]
    for ax in fig.axes:
        if ax.get_visible():
            texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
            texts += list(ax.get_legend().get_texts()) if ax.get_legend() is not None else []
            texts += [label for axis in (ax.xaxis, ax.yaxis) for tick in axis._update_ticks()
                      for label in (tick.label1, tick.label2)]
    unique = {id(t): t for t in texts if t is not None}  # the suptitle is among fig.texts too
    return [t for t in unique.values() if t.get_visible() and t.get_text().strip()]


def figure_problems(fig: Any) -> list[str]:
    """What makes ``fig`` hard to read at a glance: no title, an axis without a label (a shared axis
    labelled once counts), several labelled curves and no legend, text overlapping text."""
    import itertools

    problems = [] if fig._suptitle is not None or any(ax.get_title() for ax in fig.axes) else ["no title"]
    has_legend = bool(fig.legends) or any(ax.get_legend() is not None for ax in fig.axes)
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>" or not (ax.get_visible() and ax.axison and (
                ax.lines or ax.collections or ax.images or ax.patches)):
            continue  # a colourbar is labelled as a whole (fig.colorbar(label=...)), not per axis
        for which, shared, label in (("x", ax.get_shared_x_axes(), "get_xlabel"),
                                     ("y", ax.get_shared_y_axes(), "get_ylabel")):
            categories = which == "y" and all(t.get_text() and not t.get_text().lstrip("−-").replace(".", "").isdigit()
                                              for t in ax.get_yticklabels())  # a bar chart's named rows
            if not categories and not any(getattr(a, label)() for a in shared.get_siblings(ax)):
                problems.append(f"axes {ax.get_title()!r}: no {which} label")
        curves = [a for a in [*ax.get_lines(), *ax.collections] if not str(a.get_label()).startswith("_")]
        if len(curves) > 1 and not has_legend:
            problems.append(f"axes {ax.get_title()!r}: {len(curves)} labelled curves and no legend")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # a saved figure is closed: draw it again, as the PNG was
    canvas.draw()
    boxes = [(t.get_text(), t.get_window_extent(canvas.get_renderer())) for t in _texts(fig)]
    for (ta, a), (tb, b) in itertools.combinations([(t, b) for t, b in boxes if b.width > 0 < b.height], 2):
        overlap = max(0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0, min(a.y1, b.y1) - max(a.y0, b.y0))
        if overlap > 0.1 * min(a.width * a.height, b.width * b.height):
            problems.append(f"text {ta[:40]!r} overlaps {tb[:40]!r}")
    return problems
