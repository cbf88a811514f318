"""The README's Python examples run as written."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
DOCS = sorted((README.parent / "docs").glob("*.md"))  # the documentation pages' examples run too
# (code, the output a page shows right under it in a ```text block, or None)
EXAMPLES = [(m[1], m[2]) for page in [README, *DOCS] for m in re.finditer(
    r"```python\n(.*?)```(?:[ \t]*\n(?:[ \t]*\n)*```text\n(.*?)```)?", page.read_text(encoding="utf-8"), flags=re.S)]
BLOCKS = [code for code, _ in EXAMPLES]


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, tmp_path: Path) -> None:
    code = BLOCKS[index]
    needs = {"torch": r"\bimport torch\b", "sklearn": r"load_digits"}
    for module, pattern in needs.items():
        if re.search(pattern, code) and importlib.util.find_spec(module) is None:
            pytest.skip(f"example {index} needs {module}")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    shown = EXAMPLES[index][1]
    if shown is not None:  # a page that shows the output under its example shows what it prints
        assert proc.stdout == shown, f"the page shows\n{shown}\nbut the example prints\n{proc.stdout}"


SHELL_LINES = [line.split("  #")[0].strip() for block in re.findall(r"```bash\n(.*?)```", README.read_text(
    encoding="utf-8"), flags=re.S) for line in block.splitlines() if line.startswith("nablanet ")]


@pytest.mark.parametrize("line", [line for line in SHELL_LINES if "--help" not in line])
def test_readme_command_lines_parse(line: str) -> None:
    """Every `nablanet ...` line of the README names flags and values the CLI accepts."""
    from nablanet.cli import build_parser

    build_parser().parse_args(shlex.split(line)[1:])  # argparse exits on anything it refuses
