"""Every study at once: ``nablanet study all`` runs each registered study into ``OUT/NAME`` and writes
``OUT/index.html``, one page that lists each study's question with its answer and links its report.
The docs site includes that folder as its studies section.

The studies run one after another in the order of ``ORDER`` (the order the source notes ask their
questions); a study that fails stops the run (the progress callback has named it), leaving the
reports written before it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nablanet._io import atomic_write_text
from nablanet.studies.base import REGISTRY, run_study
from nablanet.studies.report import STYLE

ORDER = ("saturation", "loss-gradients", "vanishing", "momentum", "batch-size", "newton", "label-smoothing",
         "simplex", "convexity", "coding")
"""The studies in reading order; a study registered later and missing here comes after them."""


def study_names() -> list[str]:
    return [n for n in ORDER if n in REGISTRY] + sorted(n for n in REGISTRY if n not in ORDER)


def run_all(out: str | Path, *, quick: bool = False,
            progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run every study into ``out/NAME`` and write ``out/index.html``; returns one entry per study
    (name, question, answer, report path, seconds). ``progress(name)`` is called before each study."""
    out = Path(out)
    entries: list[dict[str, Any]] = []
    for name in study_names():
        if progress is not None:
            progress(name)
        result, folder = run_study(REGISTRY[name], out / name, quick=quick)
        meta = json.loads((folder / "result.json").read_text())
        answer = result.answer.text if result.answer is not None else result.verdict
        entries.append({"study": name, "question": REGISTRY[name].question, "answer": answer,
                        "report": f"{name}/index.html", "seconds": meta["seconds"], "fallback": result.fallback})
    write_index(entries, out, quick=quick)
    return entries


def write_index(entries: list[dict[str, Any]], out: Path, *, quick: bool) -> Path:
    """``out/index.html``: each study's question as a link to its report, and its answer under it."""
    e = html.escape
    items = "".join(
        f'<li class="study"><h2><a href="{e(x["report"])}">{e(x["question"])}</a></h2>'
        f'<p class="answer">{e(x["answer"])}</p><p class="study">nablanet study {e(x["study"])}'
        f"{' --quick' if quick else ''} · {x['seconds']:.0f} s</p></li>"
        for x in entries)
    size = ("the quick configurations (small, for a first look; each report says what a full run would use)"
            if quick else "the full configurations")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f"<title>nablanet studies</title><style>{STYLE} ul {{ list-style: none; padding: 0; }}</style></head>"
            f"<body><h1>What training does: {len(entries)} questions, answered by measurement</h1>"
            f"<p>Each study below ran with {size}. Follow a question to its report: the answer, the figure "
            f"that shows it, and how we know.</p><ul>{items}</ul></body></html>\n")
    return atomic_write_text(out / "index.html", page, what="the studies' index")
