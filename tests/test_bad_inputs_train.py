"""Issue 12, section 4: bad inputs to `nablanet train`, one test per reported input.

Each asserts exit status 2, one line on stderr, and the message's key parts: the flag, what was
received, what is expected, how to fix it. Flags that another flag makes meaningless are refused,
never silently ignored.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nablanet.cli import main


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["train", *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("nablanet train: error: ")
    return lines[0]


def _argparse_refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """argparse's refusals exit through SystemExit(2) with one line."""
    with pytest.raises(SystemExit) as info:
        main(["train", *argv])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400"])
def test_lr_that_is_not_finite(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = _argparse_refusal([f"--lr={value}"], capsys)
    assert f"argument --lr: {value!r} is not a finite number; expected e.g. 0.01" in line


def test_data_root_with_digits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused(["--data-root", str(tmp_path)], capsys)
    assert line.endswith("--data-root is for --data mnist; --data digits comes with scikit-learn. Fix: leave out "
                         "--data-root, or pass --data mnist")


def test_download_with_mnist1d(capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused(["--data", "mnist1d", "--download"], capsys)
    assert "--download is for --data mnist; --data mnist1d comes from the mnist1d package, generated into the " \
           "cache folder ($NABLANET_CACHE). Fix: leave out --download" in line


def test_data_root_pointing_at_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "t10k.gz").write_bytes(b"x")
    line = _refused(["--data", "mnist", "--data-root", str(tmp_path / "t10k.gz")], capsys)
    assert line.endswith(f"--data-root {tmp_path / 't10k.gz'} is a file; expected the folder that holds (or, with "
                         "--download, will hold) the MNIST IDX files")


def test_negative_early_stopping(capsys: pytest.CaptureFixture[str]) -> None:
    line = _argparse_refusal(["--early-stopping", "-1"], capsys)
    assert "argument --early-stopping: '-1': expected a patience in epochs >= 0, e.g. 10 (0 turns it off)" in line


@pytest.mark.parametrize("flags,name", [(["--momentum", "0.5"], "--momentum"), (["--nesterov"], "--nesterov"),
                                        (["--sutskever", "0.99"], "--sutskever")])
def test_momentum_flags_with_adam(flags: list[str], name: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused(["--optimizer", "adam", *flags], capsys)
    assert f"{name} is for --optimizer sgd" in line and f"Fix: leave out {name}, or pass --optimizer sgd" in line


def test_momentum_is_accepted_by_sgd_and_rmsprop(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    for optimizer in ("sgd", "rmsprop"):
        assert main(["train", "--optimizer", optimizer, "--momentum", "0.5", "--epochs", "1", "--hidden", "8",
                     "--json"]) == 0


def test_out_at_an_existing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("x")
    line = _refused(["--out", str(tmp_path / "f")], capsys)
    assert line.endswith(f"--out {tmp_path / 'f'}: {tmp_path / 'f'} is a file, not a folder; a run writes a folder of "
                         "files (model.npz, history.csv, curves.png, checkpoint.npz). Fix: choose a folder you can "
                         "write to")


def test_out_under_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("x")
    line = _refused(["--out", str(tmp_path / "f" / "run")], capsys)
    assert line.endswith(f"--out {tmp_path / 'f' / 'run'}: {tmp_path / 'f'} is a file, not a folder; a run writes "
                         "a folder of files (model.npz, history.csv, curves.png, checkpoint.npz). Fix: choose a "
                         "folder you can write to")


def test_out_where_nothing_can_be_written(capsys: pytest.CaptureFixture[str]) -> None:
    target = Path("/sys/nablanet-run")  # refused even to root
    if not Path("/sys").is_dir() or target.exists():
        pytest.skip("needs Linux's /sys, where nothing can be created")
    line = _refused(["--out", str(target)], capsys)
    assert line.startswith("nablanet train: error: --out /sys/nablanet-run: cannot write in /sys (")
    assert line.endswith("); a run writes a folder of files (model.npz, history.csv, curves.png, checkpoint.npz). "
                         "Fix: choose a folder you can write to")
    assert not target.exists()


def test_channels_zero_names_channels(capsys: pytest.CaptureFixture[str]) -> None:
    line = _argparse_refusal(["--model", "cnn", "--channels", "0"], capsys)
    assert "argument --channels: '0': every size must be a positive int, e.g. 32,64" in line
    assert "--hidden" not in line


def test_negative_gamma_is_not_a_complex_number(capsys: pytest.CaptureFixture[str]) -> None:
    line = _argparse_refusal(["--schedule", "exponential", "--gamma", "-1"], capsys)
    assert "argument --gamma: '-1': expected a positive factor the learning rate is multiplied by, e.g. 0.1" in line
    assert "j" not in line.split("--gamma")[1]


def test_negative_seed(capsys: pytest.CaptureFixture[str]) -> None:
    line = _argparse_refusal(["--seed", "-1"], capsys)
    assert "argument --seed: '-1': expected an int >= 0, e.g. 0" in line


def test_unwritable_cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("mnist1d")
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    monkeypatch.setenv("NABLANET_CACHE", str(tmp_path / "cache"))
    line = _refused(["--data", "mnist1d", "--epochs", "1"], capsys)
    cache = tmp_path / "cache"
    assert line.endswith(f"cannot write the generated MNIST-1D arrays to {cache}: {cache} is a file, not a folder; "
                         f"that folder comes from $NABLANET_CACHE={str(cache)!r}. Fix: set NABLANET_CACHE to a folder "
                         "you can write to")


def test_help_shows_each_default_once() -> None:
    proc = subprocess.run([sys.executable, "-m", "nablanet", "train", "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "400"})
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "(default: None)" not in text and "(default: False)" not in text
    assert not re.search(r"\(default: [^)]*\) \(default:", text)
    assert "(default: 0.9)" in text and "(default: 100)" in text  # plain defaults are still shown


def test_train_description_names_both_models() -> None:
    proc = subprocess.run([sys.executable, "-m", "nablanet", "train", "--help"], capture_output=True, text=True)
    assert "Train an MLP (or, with --model cnn, a convolutional net)" in " ".join(proc.stdout.split())
