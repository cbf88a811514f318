"""Print the two commands of a README's Quickstart code block, one a line, for .ci/run to run.

.ci/run runs them as a new user would, so the README is the only copy: a block that does not hold
exactly two one-line commands, the second of them the test command, stops CI here, with the reason.
Usage: python3 .ci/quickstart_commands.py README.md
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def quickstart_commands(readme: str) -> list[str]:
    section = re.search(r"^## Quickstart[ \t]*\n(.*?)(?=^## |\Z)", readme, flags=re.M | re.S)
    if section is None:
        raise ValueError("no '## Quickstart' section")
    block = re.search(r"^```[\w-]*\n(.*?)^```", section.group(1), flags=re.M | re.S)
    if block is None:
        raise ValueError("the Quickstart section has no fenced code block")
    commands = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    if len(commands) != 2:
        raise ValueError(f"the Quickstart code block holds {len(commands)} lines, {commands!r}; expected exactly "
                         "two commands: install and train, then install and test")
    continued = [c for c in commands if c.endswith("\\")]
    if continued:
        raise ValueError(f"a Quickstart command continues on the next line ({continued[0]!r}); keep each on one line")
    if "pytest" not in commands[1]:
        raise ValueError(f"the second Quickstart command, {commands[1]!r}, does not run pytest; it must be the "
                         "test command (CI runs it in a fresh clone and in the unpacked sdist)")
    return commands


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 .ci/quickstart_commands.py README.md", file=sys.stderr)
        return 2
    try:
        commands = quickstart_commands(Path(argv[0]).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"{argv[0]}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(commands))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
