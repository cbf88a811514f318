"""MkDocs hook: the LaTeX in every built page becomes MathML, so math renders with no JavaScript and no network.

Pages write ``$…$`` (inline) and ``$$…$$`` (display). In Markdown pages pymdownx.arithmatex keeps the
LaTeX away from Markdown (no emphasis, no eaten backslashes) and passes it on as ``$…$``; a tutorial's
Markdown cells reach the HTML through nbconvert with their dollars intact. Once a page is built, every
``$…$`` and ``$$…$$`` outside ``<code>``, ``<pre>``, ``<script>``, ``<style>``, ``<textarea>``, ``<head>``
and existing ``<math>`` is converted with latex2mathml; Chromium and Firefox render MathML natively.

A literal dollar sign in prose is written ``&#36;``. LaTeX that latex2mathml cannot turn into well-formed
MathML (a command it does not know, a missing argument, unbalanced braces, an environment it does not
support) and a ``$`` left unmatched are errors: ``mkdocs build --strict`` stops, naming the page and the
snippet; ``mkdocs serve`` logs a warning and leaves the text as it was.

The notebook template of mkdocs-jupyter loads MathJax (and Mermaid) from a CDN; those ``<script>``
elements are removed from a tutorial's HTML here, since the math is already MathML.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any
from xml.etree import ElementTree

from latex2mathml.converter import convert
from mkdocs.exceptions import PluginError

log = logging.getLogger("mkdocs.hooks.mathml")
_strict = False

# Skipped whole: elements whose text is not prose, comments, and every tag (attributes may hold a $).
SKIP = re.compile(r"<(pre|code|script|style|textarea|math|head|svg)\b[^>]*>.*?</\1\s*>|<!--.*?-->|<[^>]*>",
                  re.S | re.I)
MATH = re.compile(r"\$\$(?P<block>.+?)\$\$|\$(?P<inline>[^\s$](?:[^$]*?[^\s$])?)\$(?!\d)", re.S)
SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)
TEXT_MODE = re.compile(r"\\text(?:tt|rm|it|bf|sf)?\{[^{}]*\}")
# Children a MathML element must have (a missing {…} gives fewer).
ARITY = {"mfrac": 2, "msub": 2, "msup": 2, "msubsup": 3, "munder": 2, "mover": 2, "munderover": 3, "mroot": 2}


def to_mathml(latex: str, *, block: bool) -> str:
    """MathML for one formula; a ValueError says why when latex2mathml cannot convert it faithfully."""
    alt = html.escape(latex.strip(), quote=True)
    depth = 0
    for brace in re.findall(r"(?<!\\)[{}]", latex):
        depth += 1 if brace == "{" else -1
        if depth < 0:
            break
    if depth != 0:
        raise ValueError("unbalanced braces")
    # LaTeX escapes _ in text mode (\text{num\_layers}); latex2mathml would keep the backslash
    latex = TEXT_MODE.sub(lambda m: m[0].replace("\\_", "_"), latex)
    try:
        mathml = convert(latex, display="block" if block else "inline")
    except Exception as exc:  # latex2mathml's own exceptions are many and unrelated
        raise ValueError(f"{type(exc).__name__} {exc}".strip()) from None
    try:
        root = ElementTree.fromstring(mathml)
    except ElementTree.ParseError:  # e.g. a bare & outside an environment latex2mathml supports
        raise ValueError("not well-formed MathML (an unsupported environment or a stray &?)") from None
    for element in root.iter():
        tag = element.tag.rpartition("}")[2]
        if tag in ARITY and len(element) != ARITY[tag]:
            raise ValueError(f"<{tag}> got {len(element)} arguments, expected {ARITY[tag]} (a missing {{…}}?)")
        if element.text and "\\" in element.text:
            raise ValueError(f"unknown command {element.text.strip()}")
    return mathml.replace("<math ", f'<math alttext="{alt}" ', 1)


def convert_page(page_html: str) -> tuple[str, list[str]]:
    """(the page with its math converted, one problem per formula that could not be, and per stray $)."""
    problems: list[str] = []

    def text(chunk: str) -> str:
        def formula(m: re.Match[str]) -> str:
            block = m["block"] is not None
            latex = html.unescape(m["block"] if block else m["inline"])
            try:
                return to_mathml(latex, block=block)
            except ValueError as exc:
                problems.append(f"{m[0][:120]!r}: {exc}")
                return m[0]

        converted = MATH.sub(formula, chunk)
        if "$" in MATH.sub("", chunk):
            problems.append(f"an unmatched $ in {html.unescape(chunk.strip())[:120]!r} (write a literal $ as &#36;)")
        return converted

    out, pos = [], 0
    for m in SKIP.finditer(page_html):
        out += [text(page_html[pos:m.start()]), m[0]]
        pos = m.end()
    out.append(text(page_html[pos:]))
    return "".join(out), problems


def on_config(config: Any) -> None:
    global _strict
    _strict = bool(config.strict)


def _local_script(m: re.Match[str]) -> str:
    """The script, or nothing for MathJax, its configuration, Mermaid, anything loaded from the network,
    and an empty ``src=""`` (mkdocs-jupyter's MathJax tag when its URL is unset)."""
    remote = re.search(r"""\bsrc=(""|''|["']?(https?:)?//)""", m[1]) is not None
    return "" if remote or re.search(r"mathjax|mermaid", m[0], re.I) else m[0]


def on_page_content(content: str, page: Any, **kwargs: Any) -> str:
    return SCRIPT.sub(_local_script, content)


def on_post_page(output: str, page: Any, **kwargs: Any) -> str:
    converted, problems = convert_page(output)
    for problem in problems:
        message = f"math in {page.file.src_uri}: {problem}"
        if _strict:
            raise PluginError(message)
        log.warning(message)
    return converted
