from __future__ import annotations

import os
import re
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from mnist_mirror import mnist_dir, server, srv  # noqa: F401  (fixtures: real MNIST files and a local mirror)

import nablanet as nn

# NABLANET_REQUIRE=torch,mnist,extras (comma-separated names below; .ci/run sets it for its run with
# PyTorch and ../shared/data, and =docs for its build of the documentation site) turns a skip for that
# missing dependency into a failure, so CI cannot go green with the parity tests or the MNIST tests
# silently skipped, nor with a test that needs a package the test extra lacks. A user's plain
# `python -m pytest` still skips them.
REQUIRABLE = {
    # pytest.importorskip("torch"), and test_readme's "example 1 needs torch"
    "torch": re.compile(r"could not import 'torch'|\bneeds torch\b"),
    # the skips of tests that need shared/data/mnist say MNIST (MNIST-1D is generated, never skipped so)
    "mnist": re.compile(r"\bMNIST\b(?!-1D)"),
    # any other package: everything the tests import is in pyproject's test extra
    "extras": re.compile(r"could not import '(?!torch')|\bneeds (?!torch\b)[\w.]+$"),
    # the documentation site's build and its checks (tests/test_docs_site.py): pip install ".[docs]"
    "docs": re.compile(r"\bneeds the docs extra\b"),
}


def _required() -> dict[str, re.Pattern[str]]:
    names = [n.strip() for n in os.environ.get("NABLANET_REQUIRE", "").split(",") if n.strip()]
    unknown = sorted(set(names) - set(REQUIRABLE))
    if unknown:
        raise pytest.UsageError(f"NABLANET_REQUIRE names {', '.join(unknown)}; expected a comma-separated "
                                f"subset of {', '.join(REQUIRABLE)}. Fix: e.g. NABLANET_REQUIRE=torch,mnist.")
    return {n: REQUIRABLE[n] for n in names}


def _fail_required_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not report.skipped or getattr(report, "wasxfail", None) is not None:
        return
    longrepr: Any = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    for name, pattern in _required().items():
        if pattern.search(reason):
            report.outcome = "failed"
            report.longrepr = (f"skipped, but NABLANET_REQUIRE={os.environ['NABLANET_REQUIRE']} says {name} "
                               f"must be available here: {reason}")
            return


def pytest_configure(config: pytest.Config) -> None:
    _required()  # an unknown name stops the run at once, before any test


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    _fail_required_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield  # a module-level importorskip skips the whole module at collection
    _fail_required_skip(outcome.get_result())


@pytest.fixture(autouse=True)
def _default_dtype_and_seed():
    """Each test starts with float32 defaults and a fixed global generator."""
    nn.set_default_dtype(np.float32)
    nn.manual_seed(0)
    yield
    nn.set_default_dtype(np.float32)
