"""The package's size: lines per package (the line budget) and functions over the length limit.

    python .ci/size.py            print the budget, compared with .ci/lines.json; exit 1 on a long function
    python .ci/size.py --update   record today's counts in .ci/lines.json (commit it with the change)

Growth is a decision: the table shows each package's change since the recorded counts, and a
function longer than MAX_LINES (from ``def`` to its last line, decorators excluded, docstring
included) fails CI, naming it.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

MAX_LINES = 80
ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nablanet"
RECORD = Path(__file__).resolve().parent / "lines.json"


def package_of(path: Path) -> str:
    """``nablanet/layers`` for nablanet/layers/kernels/linear.py; ``nablanet`` for a top-level module."""
    parts = path.relative_to(ROOT).parts
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]


def line_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        key = package_of(path)
        counts[key] = counts.get(key, 0) + len(path.read_text(encoding="utf-8").splitlines())
    return counts


def long_functions() -> list[tuple[int, str]]:
    """(length, "path:line name") of every function over MAX_LINES lines, longest first."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_LINES:
                    found.append((length, f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"))
    return sorted(found, reverse=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help="record today's counts in .ci/lines.json")
    args = parser.parse_args()
    counts = line_counts()
    recorded: dict[str, int] = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    print(f"{'package':<22} {'lines':>7} {'change':>8}")
    for key in sorted(set(counts) | set(recorded)):
        now, before = counts.get(key, 0), recorded.get(key)
        change = "new" if before is None else f"{now - before:+d}"
        print(f"{key:<22} {now:>7} {change:>8}")
    total, before_total = sum(counts.values()), sum(recorded.values())
    print(f"{'total':<22} {total:>7} {total - before_total if recorded else 0:>+8d}")
    if args.update:
        RECORD.write_text(json.dumps(counts, indent=2, sort_keys=True) + "\n")
        print(f"recorded in {RECORD.relative_to(ROOT)}")
    long = long_functions()
    for length, where in long:
        print(f"{where}: {length} lines, over the limit of {MAX_LINES}; split it", file=sys.stderr)
    return 1 if long else 0


if __name__ == "__main__":
    sys.exit(main())
