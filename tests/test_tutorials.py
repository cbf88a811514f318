"""The tutorials in docs/tutorials run as plain scripts, each within a time bound, and are jupytext notebooks.

Each tutorial is a jupytext percent-format file (``# %% [markdown]`` text cells, ``# %%`` code cells) that
the docs build executes as a notebook; here it runs as a script in a temporary folder with matplotlib's
Agg backend. Its claims are asserts in its last code cell, after the "What we saw" section, so a
tutorial whose conclusion stops being true fails here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import runpy
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TUTORIALS_DIR = Path(__file__).resolve().parents[1] / "docs" / "tutorials"
TUTORIALS = sorted(TUTORIALS_DIR.glob("[0-9][0-9]_*.py"))
BOUND_S = 120.0
"""Generous: each tutorial takes 4–9 s on the 2-core development machine with one BLAS thread (the issue
asks for under a minute on 2 cores)."""
CELL = re.compile(r"^# %%(.*)$", re.M)


def _cells(text: str) -> list[tuple[str, str]]:
    """(kind, body) per cell of a percent-format file, kind "markdown" or "code"; the header is left out."""
    marks = list(CELL.finditer(text))
    out = []
    for mark, after in zip(marks, [*marks[1:], None], strict=True):
        body = text[mark.end(): after.start() if after else len(text)].strip("\n")
        out.append(("markdown" if mark[1].strip() == "[markdown]" else "code", body))
    return out


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """The tutorials multiply small matrices, where a multi-threaded BLAS on a busy 2-core machine spends
    most of its time in thread contention (3–20× slower when measured): run them on one BLAS thread, as
    the batch-size study does, when threadpoolctl (in the test extra) is there."""
    if importlib.util.find_spec("threadpoolctl") is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def test_there_are_six_tutorials() -> None:
    assert [p.name[:3] for p in TUTORIALS][:6] == ["01_", "02_", "03_", "04_", "05_", "06_"]


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_is_a_percent_notebook(path: Path) -> None:
    """A jupytext header with a Python kernel, a title cell first, every text cell made of comment lines,
    and a last code cell of asserts right after the "What we saw" section."""
    text = path.read_text(encoding="utf-8")
    header = text.split("# %%", 1)[0]
    assert "format_name: percent" in header and "name: python3" in header, f"{path.name}: jupytext header"
    cells = _cells(text)
    assert cells[0][0] == "markdown" and cells[0][1].startswith("# # "), f"{path.name}: no title cell"
    for kind, body in cells:
        if kind == "markdown":
            bad = [line for line in body.splitlines() if line and not (line == "#" or line.startswith("# "))]
            assert not bad, f"{path.name}: text-cell lines that are not comments: {bad[:3]}"
    (kind_before, seen), (kind_last, checks) = cells[-2], cells[-1]
    assert kind_before == "markdown" and "## What we saw" in seen, f"{path.name}: no 'What we saw' before the end"
    assert kind_last == "code" and checks.count("assert ") >= 2, f"{path.name}: the last cell should check the claims"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_round_trips_through_jupytext(path: Path) -> None:
    """jupytext reads the file as the notebook we meant: writing it back gives the same text (the
    jupytext version it stamps aside). The docs extra has jupytext; the test extra does not."""
    if importlib.util.find_spec("jupytext") is None:
        pytest.skip("jupytext is in the docs extra only; the docs build parses and runs the tutorials")
    import jupytext

    text = path.read_text(encoding="utf-8")
    notebook = jupytext.reads(text, fmt="py:percent")
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert [c.cell_type for c in notebook.cells] == [kind for kind, _ in _cells(text)]

    def unstamped(s: str) -> str:
        return "".join(line for line in s.splitlines(keepends=True) if "jupytext_version:" not in line)

    assert unstamped(jupytext.writes(notebook, fmt="py:percent")) == unstamped(text)


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")  # nn.data.load_digits
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)  # whatever a tutorial writes lands here
    start = time.perf_counter()
    try:
        with matplotlib.rc_context(), _one_blas_thread():  # the tutorials set rcParams; keep them to themselves
            runpy.run_path(str(path), run_name="__main__")
    finally:
        plt.close("all")
    seconds = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n{path.name}: ran in {seconds:.1f} s (bound {BOUND_S:.0f} s)")
    assert seconds < BOUND_S, f"{path.name} took {seconds:.0f} s; tutorials must stay well under a minute"
