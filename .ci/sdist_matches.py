"""Check that an unpacked sdist holds the commit's files byte for byte.

    python3 .ci/sdist_matches.py CLONE UNPACKED

CLONE is a checkout of the commit, UNPACKED the sdist unpacked. Every file git tracks in CLONE must be in
UNPACKED with the same bytes, except CI's own (.ci/) and .gitignore, which MANIFEST.in leaves out; the
sdist may add only what setuptools writes (PKG-INFO, setup.cfg, *.egg-info/). So the README's test command
that CI ran on the clone (phase a2) runs the same tests on the same files in the sdist.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

NOT_SHIPPED = (".ci/", ".gitignore")
ADDED = ("PKG-INFO", "setup.cfg")


def main(clone: Path, unpacked: Path) -> int:
    tracked = subprocess.run(["git", "-C", str(clone), "ls-files", "-z"], check=True, capture_output=True,
                             text=True).stdout.split("\0")
    tracked = [p for p in tracked if p and not p.startswith(NOT_SHIPPED)]
    problems = []
    for rel in tracked:
        shipped = unpacked / rel
        if not shipped.is_file():
            problems.append(f"missing from the sdist: {rel}")
        elif shipped.read_bytes() != (clone / rel).read_bytes():
            problems.append(f"differs from the commit: {rel}")
    known = set(tracked)
    for path in sorted(p for p in unpacked.rglob("*") if p.is_file()):
        rel = path.relative_to(unpacked).as_posix()
        if rel not in known and rel not in ADDED and ".egg-info/" not in rel:
            problems.append(f"in the sdist but not in the commit: {rel}")
    for line in problems:
        print(line, file=sys.stderr)
    print(f"sdist: {len(tracked)} files of the commit, byte for byte" if not problems else
          f"sdist: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
