"""Studies: each --quick run checks the numbers it claims; the CLI lists and runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nablanet.cli import main
from nablanet.studies import REGISTRY, run_study

pytest.importorskip("matplotlib")


def test_saturation_reproduces_the_single_neuron_numbers(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    result, out = run_study(REGISTRY["saturation"], tmp_path, quick=True)
    h = result.headline
    assert h["quadratic (0.6, 0.9): a at step 0"] == pytest.approx(0.82, abs=0.005)
    assert h["quadratic (0.6, 0.9): a at step 300"] == pytest.approx(0.09, abs=0.01)
    # from w = b = 2 the quadratic cost barely moves the output for ~150 steps; cross-entropy does not stall
    assert h["quadratic (2, 2): a at step 0"] - h["quadratic (2, 2): a at step 150"] < 0.06
    assert h["cross-entropy (2, 2): a at step 150"] < 0.05
    assert h["network bce: mean output after epoch 1"] < 0.5 < h["network mse: mean output after epoch 1"]
    meta = json.loads((out / "result.json").read_text())
    assert meta["verdict"] == result.verdict and meta["config"]["eta"] == 0.15
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64,") == len(result.figures) == 2
    assert "records.csv" in html and (out / "records.csv").stat().st_size > 0


def test_cli_lists_and_runs_studies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "--list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in REGISTRY)
    assert main(["study", "nope"]) == 2
    assert "nablanet study --list" in capsys.readouterr().err
    assert main(["study", "saturation", "--quick", "--set", "bogus=1", "--out", str(tmp_path)]) == 2
    assert "has no setting 'bogus'" in capsys.readouterr().err
