"""`nablanet train --out DIR`: the run folder, --resume bit for bit, --overwrite, a real Ctrl-C, --download."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import ctrl_c_when, sigint_as_in_a_terminal
from mnist_mirror import T10K_IMAGES, T10K_LABELS

import nablanet as nn
from nablanet.cli import main

pytest.importorskip("sklearn")  # every run here trains on the digits

FAST = ["--hidden", "16", "--batch-size", "64"]


def _weights(path: Path) -> dict[str, np.ndarray]:
    return nn.load(path).state_dict()


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


def _history(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_folder_that_holds_a_run_is_refused_and_left_alone(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", *FAST, "--out", str(out), "--json"]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert main(["train", "--epochs", "2", *FAST, "--out", str(out)]) == 2
    assert _error(capsys) == (f"nablanet train: error: --out {out} already holds a run (model.npz, history.csv, "
                              "curves.png, checkpoint.npz); pass --resume to continue it, --overwrite to replace it, "
                              "or choose another folder")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_overwrite_replaces_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--epochs", "3", *FAST, "--out", str(out), "--json"]) == 0
    assert main(["train", "--epochs", "2", *FAST, "--out", str(out), "--overwrite", "--json"]) == 0
    assert len(_history(out / "history.csv")) == 2
    info = nn.load_checkpoint(out / "checkpoint.npz").extra["nablanet_train"]
    assert info["epochs_done"] == 2 and info["epochs"] == 2


def test_resume_continues_bit_for_bit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--optimizer", "sgd", "--reduce-lr", "1", "--early-stopping", "50", *FAST]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert main(["train", "--epochs", "6", *flags, "--out", str(whole), "--json"]) == 0
    assert main(["train", "--epochs", "3", *flags, "--out", str(part), "--json"]) == 0
    capsys.readouterr()
    # the flags that define the run come from the folder; --epochs may be raised
    assert main(["train", "--out", str(part), "--resume", "--epochs", "6"]) == 0
    assert f"resuming {part} after epoch 2 of 6" in capsys.readouterr().out
    assert _same_weights(whole / "model.npz", part / "model.npz")
    assert _same_weights(whole / "checkpoint.npz", part / "checkpoint.npz")
    assert _history(whole / "history.csv") == _history(part / "history.csv")  # every epoch once


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--epochs", "3"], "--resume: the run in {out} has finished 3 epochs (of the 3 it was started with) and "
                            "--epochs 3 asks for no more. Fix: pass --epochs N with N > 3 to train on"),
        ([], "--resume: the run in {out} has finished 3 epochs (of the 3 it was started with). Fix: pass --epochs N "
             "with N > 3 to train on"),
        (["--epochs", "5", "--lr", "0.5"], "--resume: --lr 0.5 (the run has the default); a resumed run keeps the "
                                           "flags it was started with"),
        (["--epochs", "5", "--hidden", "8,8"], "--resume: --hidden 8,8 (the run has 16)"),
        (["--epochs", "5", "--overwrite"], "--resume continues the run in --out and --overwrite replaces it; pass "
                                           "one of them"),
    ],
)
def test_resume_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    out = tmp_path / "run"
    assert main(["train", "--epochs", "3", *FAST, "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", *argv]) == 2
    assert message.format(out=out) in _error(capsys)


def test_a_run_that_stopped_early_is_not_resumed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    # lr 5 makes the validation error jump, so a patience of 1 stops the run long before epoch 40
    assert main(["train", "--epochs", "40", *FAST, "--optimizer", "sgd", "--lr", "5", "--early-stopping", "1",
                 "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["epochs"] < 40 and "early stopping" in result["stop_reason"]
    assert main(["train", "--out", str(out), "--resume", "--epochs", "50"]) == 2
    assert (f"--resume: the run in {out} ended after epoch {result['epochs'] - 1}: early stopping"
            in _error(capsys))


def test_resume_needs_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--resume"]) == 2
    assert _error(capsys) == "nablanet train: error: --resume needs --out DIR, the folder of the run"
    assert main(["train", "--out", str(tmp_path), "--resume"]) == 2
    assert "holds no run (checkpoint.npz is missing); leave out --resume to start one" in _error(capsys)


def _start(argv: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "nablanet", *argv], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=sigint_as_in_a_terminal)


def test_ctrl_c_saves_the_run_says_so_in_one_line_and_resumes_bit_for_bit(tmp_path: Path) -> None:
    out = tmp_path / "run"
    flags = ["--hidden", "16", "--batch-size", "2", "--optimizer", "sgd", "--lr", "0.05"]  # many short steps
    proc = _start(["train", "--epochs", "100", *flags, "--out", str(out)], tmp_path)
    _, err = ctrl_c_when(proc, lambda: (out / "checkpoint.npz").exists())
    assert proc.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    info = nn.load_checkpoint(out / "checkpoint.npz").extra["nablanet_train"]
    done = info["epochs_done"]
    assert lines[0].startswith(f"nablanet train: interrupted (Ctrl-C) in epoch {done} after ")
    assert lines[0].endswith(f"saved model.npz (the weights after the last completed step), history.csv, "
                             f"curves.png in {out}. To continue from the end of epoch {done - 1}: nablanet train "
                             f"--out {out} --resume")
    stopped = nn.load_checkpoint(out / "model.npz")
    assert stopped.extra["interrupted"]["epoch"] == done and stopped.optimizer_state is not None
    assert len(_history(out / "history.csv")) == done
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]

    # --resume goes on from the end of the last finished epoch and equals an uninterrupted run
    resumed = subprocess.run([sys.executable, "-m", "nablanet", "train", "--out", str(out), "--resume", "--epochs",
                              str(done + 1), "--json"], cwd=tmp_path, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    whole = tmp_path / "whole"
    assert main(["train", "--epochs", str(done + 1), *flags, "--out", str(whole), "--json"]) == 0
    assert _same_weights(whole / "model.npz", out / "model.npz")
    assert _history(whole / "history.csv") == _history(out / "history.csv")


def test_ctrl_c_just_after_an_epochs_checkpoint_reports_the_next_epoch(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint's save defers a Ctrl-C to its end, inside the epoch's last callback: the epoch is
    finished then, and the line, model.npz and --resume all say so (the race the test above can hit)."""
    from nablanet.cli import _run_folder as folder

    written = folder.EpochCheckpoint.on_epoch_complete

    def then_ctrl_c(self: Any, epoch: int, logs: dict[str, Any]) -> None:
        written(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(folder.EpochCheckpoint, "on_epoch_complete", then_ctrl_c)
    out = tmp_path / "run"
    assert main(["train", "--epochs", "3", "--hidden", "8", "--out", str(out), "--json"]) == 130
    line = _error(capsys)
    assert nn.load_checkpoint(out / "checkpoint.npz").extra["nablanet_train"]["epochs_done"] == 1
    assert line.startswith("nablanet train: interrupted (Ctrl-C) in epoch 1 after 0 of "), line
    assert line.endswith(f"To continue from the end of epoch 0: nablanet train --out {out} --resume"), line
    stopped = nn.load_checkpoint(out / "model.npz").extra["interrupted"]
    assert stopped["epoch"] == 1 and stopped["batch"] == 0
    assert stopped["stop_reason"].startswith("interrupted (KeyboardInterrupt) after epoch 0 was complete")
    assert len(_history(out / "history.csv")) == 1


def test_ctrl_c_without_out_says_nothing_was_saved(tmp_path: Path) -> None:
    proc = _start(["train", "--epochs", "100", "--hidden", "16", "--batch-size", "2"], tmp_path)
    seen: list[str] = []

    def started() -> bool:  # the first row of the epoch table
        assert proc.stdout is not None
        seen.append(proc.stdout.readline())
        return seen[-1].lstrip().startswith("0 ")

    _, err = ctrl_c_when(proc, started)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [err.strip()] and err.strip().endswith(
        "nothing was saved (pass --out DIR to keep a run)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_run_files_get_the_users_umask(tmp_path: Path, umask: int) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", f"import os, sys; os.umask({umask}); from nablanet.cli import main; "
                           f"sys.exit(main(['train', '--epochs', '1', '--hidden', '8', '--out', {str(out)!r}, "
                           "'--json']))"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes == dict.fromkeys(["model.npz", "history.csv", "curves.png", "checkpoint.npz"], 0o666 & ~umask)


# -- MNIST from the shell: --download against a local mirror ----------------------------------------------


def test_download_fetches_mnist_into_the_cache(srv: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("NABLANET_CACHE", str(cache))
    monkeypatch.setenv("NABLANET_MNIST_MIRRORS", f"{srv.url}/missing/,{srv.url}/good/")  # the first one fails
    argv = ["train", "--data", "mnist", "--mnist-subset", "t10k", "--epochs", "1", "--hidden", "32", "--json"]
    assert main(argv) == 2
    assert "pass download=True (on the command line: --download)" in _error(capsys)
    assert main([*argv, "--download"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_train"] + result["n_test"] < 10000 and result["test_accuracy"] > 0.8
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == [T10K_IMAGES, T10K_LABELS]
    requested = [path for path, _ in srv.log]
    assert requested == [f"/missing/{T10K_IMAGES}", f"/good/{T10K_IMAGES}", f"/missing/{T10K_LABELS}",
                         f"/good/{T10K_LABELS}"]
    srv.log.clear()
    assert main(argv) == 0  # the cache is used from now on, without --download
    assert srv.log == []


def test_download_into_data_root(srv: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NABLANET_MNIST_MIRRORS", f"{srv.url}/good/")
    root = tmp_path / "mnist here"
    assert main(["train", "--data", "mnist", "--mnist-subset", "t10k", "--data-root", str(root), "--download",
                 "--epochs", "1", "--hidden", "8", "--json"]) == 0
    assert sorted(p.name for p in root.iterdir()) == [T10K_IMAGES, T10K_LABELS]


def test_standard_mnist_without_the_training_files_names_both_ways_out(mnist_dir: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    if (mnist_dir / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"{mnist_dir} holds the training files too")
    assert main(["train", "--data", "mnist", "--data-root", str(mnist_dir), "--epochs", "1"]) == 2
    err = _error(capsys)
    assert "MNIST train files missing in" in err and "--download" in err and "--mnist-subset t10k" in err


def test_mnist_cli_on_the_t10k_files(mnist_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", "mnist", "--mnist-subset", "t10k", "--data-root", str(mnist_dir), "--epochs", "1",
                 "--hidden", "32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_accuracy"] > 0.85 and result["n_test"] == 2000

