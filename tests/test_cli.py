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


def test_library_errors_are_one_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert main(["train", "--data", "mnist", "--mnist-subset", "t10k", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nablanet train: error: MNIST t10k files missing in")
    assert "--download" in err[0]


def test_cnn_on_digits_learns(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    assert main(["train", "--model", "cnn", "--epochs", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "cnn"
    assert result["test_accuracy"] >= 0.85  # 5 epochs of Adam on 8x8 digits; 20 epochs reach about 98.6%


def test_cnn_on_mnist1d_runs_the_paper_architecture(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
) -> None:
    pytest.importorskip("mnist1d")
    monkeypatch.setenv("NABLANET_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["train", "--model", "cnn", "--data", "mnist1d", "--epochs", "2", "--lr", "0.01", "--json",
                 "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_accuracy"] > 0.2  # chance is 0.1; two epochs are far from the paper's 94%
    import nablanet as nn

    model = nn.load(out / "model.npz")
    assert [type(layer).__name__ for layer in model] == [
        "Conv1d", "ReLU", "Conv1d", "ReLU", "Conv1d", "ReLU", "Flatten", "Linear"]
    assert model[-1].in_features == 125  # type: ignore[attr-defined]


def test_cnn_with_too_many_blocks_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    assert main(["train", "--model", "cnn", "--channels", "4,4,4,4", "--epochs", "1"]) == 2
    assert "too many conv blocks" in capsys.readouterr().err


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """`nablanet train | head -1`: no 'Broken pipe' error, the exit status a shell gives for SIGPIPE."""
    pytest.importorskip("sklearn")
    proc = subprocess.Popen([sys.executable, "-m", "nablanet", "train", "--epochs", "200", "--hidden", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().startswith("data: ")
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err == ""
