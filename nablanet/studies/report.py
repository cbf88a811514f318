"""One self-contained ``index.html`` per study: figures embedded as data URIs, the verdict, the
headline numbers, the exact configuration and versions, and the command that reproduces it.
No scripts, no external resources: it opens offline and prints cleanly. A run on fallback data
(``fallback`` in result.json) says so in the report's first line, above the title."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from nablanet._io import atomic_write_text

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.fallback { background: #fff4e0; border-left: 4px solid #d98b00; padding: 0.8rem 1rem; font-weight: 600; }
.verdict { background: #f3f7ee; border-left: 4px solid #6a9f3a; padding: 0.8rem 1rem; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; } pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; }
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render(meta: dict[str, Any], out: Path) -> str:
    """The report's HTML for a study's ``result.json`` contents, reading its figures from ``out``."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>nablanet study: {e(meta['study'])}</title><style>{_STYLE}</style></head><body>",
        *([f'<p class="fallback">{e(meta["fallback"])}</p>'] if meta.get("fallback") else []),
        f"<h1>{e(meta['study'])}</h1>",
        f"<p><strong>Question.</strong> {e(meta['question'])}</p>",
        f"<p><strong>Source.</strong> {e(meta['notes'])}</p>",
        f'<h2>Verdict</h2><div class="verdict">{e(meta["verdict"])}</div>',
    ]
    if meta.get("headline"):
        rows = "".join(f"<tr><th>{e(k)}</th><td>{e(_fmt(v))}</td></tr>" for k, v in meta["headline"].items())
        parts.append(f"<h2>Numbers</h2><table>{rows}</table>")
    if meta.get("figures"):
        parts.append("<h2>Figures</h2>")
    for stem, name in meta.get("figures", {}).items():
        data = base64.b64encode((out / name).read_bytes()).decode("ascii")
        caption = meta.get("captions", {}).get(stem, stem)
        parts.append(f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{e(caption)}</figcaption></figure>")
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
