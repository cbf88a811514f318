"""MkDocs hook: text that the code already holds, put into the pages at build time so it never goes stale.

A page asks for it with an HTML comment on a line of its own:

    <!-- nablanet: cli-help train -->      the output of ``nablanet train --help`` (any subcommand; none: the top level)
    <!-- nablanet: study-table -->         every registered study: name, question and source notes

An unknown request stops the build.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

MARKER = re.compile(r"^<!-- nablanet: ([\w-]+)((?: [\w-]+)*) -->$", re.M)


def cli_help(*command: str) -> str:
    """``nablanet [command] --help`` as printed in an 88-column terminal, the home folder written ~."""
    from nablanet.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "88"
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):  # --help exits
            build_parser().parse_args([*command, "--help"])
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    text = out.getvalue().replace(str(Path.home()), "~")
    return f"```text\n$ nablanet {' '.join([*command, '--help'])}\n{text.rstrip()}\n```"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def study_table() -> str:
    from nablanet.studies import REGISTRY

    rows = [f"| `{name}` | {_cell(study.question)} | {_cell(study.notes)} |"
            for name, study in sorted(REGISTRY.items())]
    return "\n".join(["| study | question | source |", "|---|---|---|", *rows])


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    def fill(m: re.Match[str]) -> str:
        what, args = m[1], m[2].split()
        if what == "cli-help":
            return cli_help(*args)
        if what == "study-table" and not args:
            return study_table()
        raise PluginError(f"{page.file.src_uri}: unknown request {m[0]!r} (see docs/_hooks/generated.py)")

    return MARKER.sub(fill, markdown)
