"""MkDocs hook: a page of highlighted source per module, and ``source:`` links that point into it.

Every module of ``nablanet/layers``, ``nablanet/losses`` and ``nablanet/lab/rules`` gets a generated page,
``source/nablanet/layers/linear.md`` for ``nablanet/layers/linear.py``, with numbered lines (``#L-57``) and an
anchor on each class, method and function named by its qualified name (``#Linear.vjp``).

A page links to the code that implements something with a ``source:`` link and a dotted name:
``[Linear.vjp](source:nablanet.Linear.vjp)``. The name is imported and followed to where it is defined,
so ``source:nablanet.Conv2d.vjp`` lands on ``_ConvNd.vjp`` in ``conv.py`` and ``source:nablanet.ReLU.vjp``
on ``Elementwise.vjp``: the link goes where the code is, wherever the class inherits it from. A name
that does not import, or whose module has no page, stops a strict build.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files, InclusionLevel
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

log = logging.getLogger("mkdocs.hooks.source_pages")
ROOT = Path(importlib.import_module("nablanet").__file__ or "").resolve().parents[1]  # the nablanet that is built
PACKAGES = ("nablanet/layers", "nablanet/losses", "nablanet/lab/rules")
LINK = re.compile(r"\]\(source:([\w.]+)\)")
_strict = False


def page_uri(path: Path) -> str:
    """The generated page of a source file: nablanet/layers/linear.py → source/nablanet/layers/linear.md."""
    return "source/" + path.relative_to(ROOT).with_suffix(".md").as_posix()


def anchors(source: str) -> dict[int, list[str]]:
    """Line number → qualified names defined there: top-level classes, their methods, top-level functions."""
    found: dict[int, list[str]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            found.setdefault(node.lineno, []).append(node.name)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    found.setdefault(item.lineno, []).append(f"{node.name}.{item.name}")
    return found


def source_page(path: Path) -> str:
    """The Markdown of one source page: a title and the highlighted file, every definition anchored."""
    source = path.read_text(encoding="utf-8")
    # one span per line (id L-57): Material lays a code block out as a grid of line spans
    formatter = HtmlFormatter(linenos="inline", linespans="L", cssclass="highlight", wrapcode=True)
    body = highlight(source, PythonLexer(), formatter)
    for line, names in anchors(source).items():
        marks = "".join(f'<span class="source-anchor" id="{name}"></span>' for name in names)
        body = body.replace(f'<span id="L-{line}">', f'<span id="L-{line}">{marks}', 1)
    rel = path.relative_to(ROOT).as_posix()
    return f"# `{rel}`\n\n<div class=\"source-page\" markdown=\"0\">\n{body}\n</div>\n"


def target(dotted: str) -> tuple[str, str]:
    """(generated page, anchor) of the code that defines ``dotted`` (e.g. nablanet.Conv2d.vjp)."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        break
    else:
        raise ValueError(f"{dotted}: no such module")
    try:
        for attr in parts[k:]:
            obj = getattr(obj, attr)
    except AttributeError as exc:
        raise ValueError(f"{dotted}: {exc}") from None
    code: Any = obj.fget if isinstance(obj, property) else obj
    obj = inspect.unwrap(code)
    path = Path(inspect.getsourcefile(obj) or "").resolve()
    if not any(path.is_relative_to(ROOT / package) for package in PACKAGES):
        raise ValueError(f"{dotted} is defined in {path}, which has no source page (pages: {', '.join(PACKAGES)})")
    return page_uri(path), obj.__qualname__


def on_config(config: Any) -> None:
    global _strict
    _strict = bool(config.strict)


def on_files(files: Files, config: Any) -> Files:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            files.append(File.generated(config, page_uri(path), content=source_page(path),
                                        inclusion=InclusionLevel.NOT_IN_NAV))
    return files


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    def link(m: re.Match[str]) -> str:
        try:
            uri, anchor = target(m[1])
        except ValueError as exc:
            message = f"{page.file.src_uri}: source link {m[1]!r}: {exc}"
            if _strict:
                raise PluginError(message) from None
            log.warning(message)
            return m[0]
        return f"]({posixpath.relpath(uri, posixpath.dirname(page.file.src_uri) or '.')}#{anchor})"

    return LINK.sub(link, markdown)
