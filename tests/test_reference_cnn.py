"""Reference CNN results (minutes each): ``python -m pytest -m slow tests/test_reference_cnn.py``.

The runs live in benchmarks/reference_cnn.py so the same code prints the figures for the notes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"


@pytest.mark.slow
def test_mnist1d_paper_cnn_reaches_90_percent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mnist1d")
    monkeypatch.setenv("NABLANET_CACHE", str(tmp_path))
    result = load_benchmark("reference_cnn").mnist1d_cnn(seed=0)
    assert result["steps"] >= 6000
    assert result["test_accuracy"] >= 0.90  # the paper: 94%


@pytest.mark.slow
def test_lenet_on_mnist_t10k_reaches_97_percent() -> None:
    if not (MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"the MNIST test files are not in {MNIST}")
    result = load_benchmark("reference_cnn").lenet_mnist(MNIST, seed=0)
    assert result["n_train"] == 8000 and result["n_test"] == 2000
    assert result["test_accuracy"] >= 0.97
