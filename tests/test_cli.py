"""`nablanet train` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nablanet.cli import main


def test_default_run_reaches_97_percent_on_digits(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    assert main(["train", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_accuracy"] >= 0.97
    assert {"test_accuracy", "test_loss", "epochs", "seconds"} <= set(result)


def test_table_and_out_dir(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("sklearn")
    out = tmp_path / "run"
    assert main(["train", "--epochs", "3", "--hidden", "16", "--loss", "quadratic", "--optimizer", "sgd",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "val_error" in text and "test accuracy" in text
    assert (out / "model.npz").exists() and (out / "history.csv").exists()
    assert len((out / "history.csv").read_text().splitlines()) == 4
    pytest.importorskip("matplotlib")
    assert (out / "curves.png").exists()


def test_help_documents_every_flag() -> None:
    proc = subprocess.run([sys.executable, "-m", "nablanet", "train", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for flag in ["--data", "--hidden", "--activation", "--loss", "--optimizer", "--lr", "--momentum", "--schedule",
                 "--batch-size", "--epochs", "--early-stopping", "--seed", "--out", "--json"]:
        assert flag in proc.stdout


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--hidden", "a,b"], "expected comma-separated ints"),
        (["train", "--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
        (["train", "--lr", "-1"], "expected a positive number"),
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags_give_one_line(argv: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "nablanet", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


def test_library_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--epochs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--epochs 0" in err[0]
