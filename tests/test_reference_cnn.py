"""Reference CNN results (minutes each): ``python -m pytest -m slow tests/test_reference_cnn.py``.

The runs live in benchmarks/reference_cnn.py so the same code prints the figures for the notes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def _reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reference_cnn", ROOT / "benchmarks" / "reference_cnn.py")
    if spec is None or spec.loader is None:
        raise ImportError("benchmarks/reference_cnn.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_mnist1d_paper_cnn_reaches_90_percent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mnist1d")
    monkeypatch.setenv("NABLANET_CACHE", str(tmp_path))
    result = _reference().mnist1d_cnn(seed=0)
    assert result["steps"] >= 6000
    assert result["test_accuracy"] >= 0.90  # the paper: 94%


@pytest.mark.slow
def test_lenet_on_mnist_t10k_reaches_97_percent() -> None:
    if not (MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"the MNIST test files are not in {MNIST}")
    result = _reference().lenet_mnist(MNIST, seed=0)
    assert result["n_train"] == 8000 and result["n_test"] == 2000
    assert result["test_accuracy"] >= 0.97
