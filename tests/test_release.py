"""The release: one version everywhere, the CI guard that keeps required tests from skipping, and CI's
run of the README's Quickstart commands (read out of README.md, never copied).

``nablanet.__version__`` (from nablanet/_version.py) must equal the version in the installed
distribution's metadata, which pyproject.toml computed from the same file at install time: a
mismatch means a stale install or a second copy of the number.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import nablanet

ROOT = Path(__file__).resolve().parents[1]
# PEP 440 public versions in canonical form (N(.N)*[{a|b|rc}N][.postN][.devN])
PEP440 = re.compile(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?")


def _installed_version() -> str:
    try:
        return importlib.metadata.version("nablanet")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("nablanet is not installed; run `pip install -e .` (or `.[test]`) first")


def test_version_matches_the_installed_metadata() -> None:
    installed = _installed_version()
    assert nablanet.__version__ == installed, (
        f"nablanet.__version__ is {nablanet.__version__!r} but the installed distribution says {installed!r}: "
        "reinstall (`pip install -e .`) after changing nablanet/_version.py")
    assert PEP440.fullmatch(installed), installed


def test_the_version_is_written_in_one_place() -> None:
    from nablanet import _version

    assert nablanet.__version__ is _version.__version__
    pyproject = ROOT / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip(f"no pyproject.toml beside the tests ({pyproject})")
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "nablanet._version.__version__"}
    hits = [p.relative_to(ROOT) for p in (ROOT / "nablanet").rglob("*.py")
            if re.search(r"^__version__\s*=", p.read_text(encoding="utf-8"), flags=re.M)]
    assert hits == [Path("nablanet/_version.py")]


def test_the_command_line_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    from nablanet.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"nablanet {nablanet.__version__}\n"
    _installed_version()  # the `nablanet` command is the installed entry point to that same main
    scripts = importlib.metadata.entry_points(group="console_scripts", name="nablanet")
    assert [e.value for e in scripts] == ["nablanet.cli:main"]


# conftest.py and the fixture module it imports, copied beside a throwaway test file
HELPERS = {name: (Path(__file__).parent / name).read_text(encoding="utf-8")
           for name in ("conftest.py", "mnist_mirror.py")}
SKIPPING = '''
import pytest

def test_needs_torch():
    pytest.skip("could not import 'torch': No module named 'torch'")

def test_needs_mnist():
    pytest.skip("MNIST t10k IDX files not found")

def test_needs_an_extra():
    pytest.skip("could not import 'sklearn': No module named 'sklearn'")

def test_runs():
    pass
'''


def _pytest_in(folder: Path, env_value: str | None) -> subprocess.CompletedProcess[str]:
    for name, text in HELPERS.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "test_skipping.py").write_text(SKIPPING, encoding="utf-8")
    (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # its own rootdir, not ours
    env = {k: v for k, v in os.environ.items() if k != "NABLANET_REQUIRE"}
    if env_value is not None:
        env["NABLANET_REQUIRE"] = env_value
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfs", "-p", "no:cacheprovider", str(folder)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_required_dependencies_fail_instead_of_skipping(tmp_path: Path) -> None:
    plain = _pytest_in(tmp_path, None)
    assert plain.returncode == 0 and "1 passed, 3 skipped" in plain.stdout, plain.stdout + plain.stderr
    strict = _pytest_in(tmp_path, "torch,mnist")
    assert strict.returncode == 1 and "2 failed, 1 passed, 1 skipped" in strict.stdout, strict.stdout
    assert "NABLANET_REQUIRE=torch,mnist says torch must be available" in strict.stdout
    every = _pytest_in(tmp_path, "torch,mnist,extras")
    assert "3 failed, 1 passed" in every.stdout, every.stdout
    unknown = _pytest_in(tmp_path, "torhc")
    assert unknown.returncode != 0 and "NABLANET_REQUIRE names torhc" in unknown.stderr, unknown.stderr


CI_RUN = ROOT / ".ci" / "run"
QUICKSTART = ROOT / ".ci" / "quickstart_commands.py"


def _quickstart(readme: str, folder: Path) -> subprocess.CompletedProcess[str]:
    (folder / "README.md").write_text(readme, encoding="utf-8")
    return subprocess.run([sys.executable, str(QUICKSTART), str(folder / "README.md")],
                          capture_output=True, text=True, timeout=60)


def test_ci_runs_the_quickstart_commands_it_reads_out_of_the_readme(tmp_path: Path) -> None:
    """.ci/run runs README.md's two Quickstart commands as a new user would; a copy of them in the script
    would let the README drift from what CI proves, as it did when CI installed torch first."""
    if not CI_RUN.exists():
        pytest.skip(f"no .ci/run beside the tests ({CI_RUN}); the sdist ships none")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = _quickstart(readme, tmp_path)
    assert listed.returncode == 0, listed.stderr
    commands = listed.stdout.splitlines()
    assert len(commands) == 2 and "nablanet train" in commands[0] and "pytest" in commands[1], commands
    script = CI_RUN.read_text(encoding="utf-8")
    assert "quickstart_commands.py" in script
    assert not [c for c in commands if c in script], "a copy of a Quickstart command in .ci/run"
    # the reader follows an edit of the README, and refuses a block that is not the two commands
    edited = _quickstart(readme.replace(commands[0], commands[0] + " --epochs 1", 1), tmp_path)
    assert edited.stdout.splitlines() == [commands[0] + " --epochs 1", commands[1]], edited.stderr
    three = _quickstart(readme.replace(commands[1], commands[1] + "\nnablanet study saturation", 1), tmp_path)
    assert three.returncode == 1 and "holds 3 lines" in three.stderr, three.stderr
    swapped = _quickstart(readme.replace(commands[1], "TEST").replace(commands[0], commands[1])
                          .replace("TEST", commands[0]), tmp_path)
    assert swapped.returncode == 1 and "does not run pytest" in swapped.stderr, swapped.stderr
    gone = _quickstart(readme.replace("## Quickstart", "## Getting started", 1), tmp_path)
    assert gone.returncode == 1 and "no '## Quickstart' section" in gone.stderr, gone.stderr
