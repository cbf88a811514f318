"""One self-contained ``index.html`` per study, answer first.

A reader who asked the study's question reads the answer at once: the page opens with it (one to
three plain sentences) and the one figure that shows it. "How we know" follows: the method, the
source notes, the full verdict with its numbers and the other figures. The headline numbers fold
away in a ``<details>`` table (and are numbers.csv); the command, configuration and versions that
reproduce the run close the page. Figures are embedded as data URIs; no scripts, no external
resources: it opens offline and prints cleanly. A run on fallback data (``fallback`` in result.json)
says so in the report's first line, above the title. A result without an answer (a sweep's cell, a
test double) opens with its verdict instead.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from nablanet._io import atomic_write_text

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222;
       line-height: 1.45; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.study { color: #555; font-size: 0.95rem; margin-bottom: 0; }
.fallback { background: #fff4e0; border-left: 4px solid #b35c00; padding: 0.8rem 1rem; font-weight: 600; }
.answer { font-size: 1.15rem; background: #eef4fb; border-left: 4px solid #0072b2; padding: 0.8rem 1rem; }
.verdict { background: #f5f5f0; border-left: 4px solid #999; padding: 0.8rem 1rem; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
summary { cursor: pointer; font-weight: 600; margin: 1rem 0; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9rem; } pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; }
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _figure(meta: dict[str, Any], out: Path, stem: str) -> str:
    e = html.escape
    data = base64.b64encode((out / meta["figures"][stem]).read_bytes()).decode("ascii")
    caption = meta.get("captions", {}).get(stem, stem)
    return (f'<figure id="figure-{e(stem)}"><img alt="{e(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{e(caption)}</figcaption></figure>")


def _numbers(meta: dict[str, Any], csv_name: str | None) -> list[str]:
    """The headline numbers, folded away; with the CSV they are in, when there is one."""
    if not meta.get("headline"):
        return []
    e = html.escape
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(_fmt(v))}</td></tr>" for k, v in meta["headline"].items())
    link = f' (also as <a href="{csv_name}">{csv_name}</a>)' if csv_name else ""
    return [f'<details id="numbers"><summary>All {len(meta["headline"])} numbers{link}</summary>'
            f"<table>{rows}</table></details>"]


def render(meta: dict[str, Any], out: Path) -> str:
    """The report's HTML for a study's ``result.json`` contents, reading its figures from ``out``."""
    e = html.escape
    first = meta.get("answer_figure") if meta.get("answer") else None
    figures = [stem for stem in meta.get("figures", {}) if stem != first]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">',
        f"<title>nablanet study: {e(meta['study'])}</title><style>{STYLE}</style></head><body>",
        *([f'<p class="fallback">{e(meta["fallback"])}</p>'] if meta.get("fallback") else []),
        f'<p class="study">nablanet study {e(meta["study"])}</p>',
        f"<h1>{e(meta['question'])}</h1>",
    ]
    if first:
        parts += [f'<p class="answer" id="answer">{e(meta["answer"])}</p>']
        if first in meta.get("figures", {}):
            parts.append(_figure(meta, out, first))
        parts.append("<h2>How we know</h2>")
        if meta.get("method"):
            parts.append(f"<p><strong>Method.</strong> {e(meta['method'])}</p>")
    parts += [f"<p><strong>Source.</strong> {e(meta['notes'])}</p>",
              f'<h2>{"The full verdict" if first else "Verdict"}</h2><div class="verdict">{e(meta["verdict"])}</div>']
    if figures:
        parts.append("<h2>Figures</h2>" if not first else "<h2>The other figures</h2>")
        parts += [_figure(meta, out, stem) for stem in figures]
    parts += _numbers(meta, "numbers.csv" if (out / "numbers.csv").exists() else None)
    parts += [
        "<h2>Reproduce</h2>", f"<pre>{e(meta['command'])}</pre>",
        f"<p>Configuration (hash {e(meta['config_hash'])}), {e(str(meta['seconds']))} s:</p>",
        f"<pre>{e(json.dumps(meta['config'], indent=2, default=str))}</pre>",
        f"<pre>{e(json.dumps(meta['versions'], indent=2))}</pre>",
        "<p>Data: <a href=\"records.csv\">records.csv</a> (one row per measurement).</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(meta: dict[str, Any], out: Path) -> Path:
    path = out / "index.html"
    return atomic_write_text(path, render(meta, out), what="the report")
