"""Griffe extension: nablanet's plain-text docstrings become Markdown that renders as they read in help().

The docstrings write their math as aligned Unicode lines ("Shapes:  x (N, i)   W (o, i)", "VJP:     dx = dy W",
indented equation blocks). Read as Markdown those lines collapse into one paragraph, and their ``*`` and ``_``
turn into emphasis. This extension rewrites each docstring, for the API pages only (the source, and so
help(), is untouched):

* a line with aligned columns (two or more spaces inside it, not after a full stop), an indented line, and
  the line that introduces an indented block become a preformatted block (``<pre class="docstring-math">``),
  kept exactly as written;
* every other line is prose: Markdown's special characters are escaped outside code spans (````x````
  stays code), so the text reads as written, and ``* item`` / ``- item`` lines stay bullet lists;
* the first line, the summary, is always prose; an RST ``::`` at the end of a line becomes ``:``;
* a class whose body computes its ``__doc__`` (BatchNorm1d's shares its text with BatchNorm2d's) gets
  it from the imported class, which a static reading of the source cannot see.

mkdocs.yml loads it with mkdocstrings' ``extensions:`` option (docstring_style null: no section parsing).
"""

from __future__ import annotations

import html
import importlib
import inspect
import re
from typing import Any

try:
    from griffe import Extension
except ImportError:  # the rewriting alone is tested without the docs extra installed
    Extension = object  # type: ignore[assignment,misc]

ALIGNED = re.compile(r"\S(?<![.?!]) {2,}\S")  # two spaces between words; two after a full stop are prose
BULLET = re.compile(r"^(?:[*-]|\d+\.) ")  # a list item: "* ", "- " or "1. "
CODE_SPAN = re.compile(r"(``.+?``|`[^`\n]+`|\*\*[^\s*](?:[^*]*[^\s*])?\*\*)", re.S)  # code, and **bold** as RST has it
ESCAPE = re.compile(r"([\\*_\[\]])")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _kinds(lines: list[str]) -> list[str]:
    """'blank', 'pre', 'bullet' (a list item or its two-space continuation) or 'prose' per line."""
    kinds: list[str] = []
    width = 0  # the indent of a list item's continuation lines: "* " 2, "1. " 3
    for k, line in enumerate(lines):
        if not line.strip():
            kinds.append("blank")
        elif k == 0:
            kinds.append("prose")
        elif item := BULLET.match(line):
            kinds.append("bullet")
            width = len(item[0])
        elif _indent(line) == width and kinds[-1] == "bullet" and not ALIGNED.search(line.strip()):
            kinds.append("bullet")
        elif _indent(line) > 0 or ALIGNED.search(line):
            kinds.append("pre")
        else:
            kinds.append("prose")
    for k in range(1, len(lines) - 1):  # the head of an indented block goes with it
        if kinds[k] == "prose" and kinds[k + 1] == "pre" and _indent(lines[k + 1]) > 0:
            kinds[k] = "pre"
    return kinds


def _escape_prose(text: str) -> str:
    """Markdown that shows ``text`` as written: specials escaped, code spans kept as code."""
    parts = CODE_SPAN.split(text)
    for k in range(0, len(parts), 2):
        plain = ESCAPE.sub(r"\\\1", parts[k]).replace("<", "&lt;").replace("$", "&#36;")
        plain = re.sub(r"(?m)^(\s*)([#>+])", r"\1\\\2", plain)  # a heading, a quote, a list
        parts[k] = re.sub(r"(?m)^(\s*\d+)\.", r"\1\\.", plain)  # not an ordered list
    return "".join(parts)


def markdown_from_docstring(text: str) -> str:
    """The Markdown for one docstring (see the module docstring)."""
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    lines = [line[:-1] if line.endswith("::") else line for line in lines]
    kinds = _kinds(lines)
    blocks: list[str] = []
    k = 0
    while k < len(lines):
        kind, start = kinds[k], k
        while k < len(lines) and kinds[k] == kind:
            k += 1
        chunk = lines[start:k]
        if kind == "pre":
            margin = min(_indent(line) for line in chunk)
            body = "\n".join(line[margin:] for line in chunk)
            blocks.append(f'<pre class="docstring-math">{html.escape(body, quote=False)}</pre>')
        elif kind == "bullet":  # each item with its continuation lines, escaped as one text
            items: list[list[str]] = []
            for line in chunk:
                if item := BULLET.match(line):
                    items.append([item[0], line[len(item[0]):]])
                else:
                    items[-1].append(line.strip())
            blocks.append("\n".join(marker + _escape_prose("\n".join(text)).replace("\n", "\n" + " " * len(marker))
                                    for marker, *text in items))
        elif kind == "prose":
            blocks.append(_escape_prose("\n".join(chunk)))
    return "\n\n".join(blocks)


def runtime_docstring(path: str) -> str | None:
    """The class's own ``__doc__`` when its body computes it (``__doc__ = "…" + SHARED``), which a static
    reading of the source cannot see; None otherwise."""
    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    doc = vars(cls).get("__doc__") if isinstance(cls, type) else None
    return inspect.cleandoc(doc) if isinstance(doc, str) else None


class PlainTextDocstrings(Extension):
    """Rewrite every docstring griffe reads with ``markdown_from_docstring``."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is None and obj.is_class and (doc := runtime_docstring(obj.path)):
            from griffe import Docstring

            obj.docstring = Docstring(doc, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = markdown_from_docstring(obj.docstring.value)
