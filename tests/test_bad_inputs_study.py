"""``nablanet study``: every bad input is refused before any work, in one line, with exit status 2.

Each test is named for the input. The line names the flag and the value received, says what is
expected (type and range, with the default) and gives a value that works; no folder is created.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nablanet.cli import main

REPO = Path(__file__).resolve().parents[1]


def refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, *argv: str, study: str = "saturation") -> str:
    """Run ``nablanet study`` with ``argv``; check status 2, one line on stderr, no output folder; return the line."""
    out = tmp_path / "out"
    assert main(["study", study, "--quick", "--out", str(out), *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("nablanet study: error: ") and "Traceback" not in captured.err
    assert captured.out == "" and not out.exists()
    return lines[0]


# -- --set ------------------------------------------------------------------------------------------
def test_set_eta_abc(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--set", "eta=abc")
    assert line.endswith("--set eta=abc: expected a positive number, not a string (the quick default is 0.15), "
                         "e.g. --set eta=0.15")
    assert "SGD" not in line  # no longer reported as the optimizer's lr='abc'


def test_set_steps_1_5(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--set", "steps=1.5")
    assert line.endswith("--set steps=1.5: expected a positive int, not a float (the quick default is 300), "
                         "e.g. --set steps=300")


def test_set_steps_minus_5(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # used to crash with StopIteration after the run had started
    line = refused(capsys, tmp_path, "--set", "steps=-5")
    assert line.endswith("--set steps=-5: expected a positive int (the quick default is 300), e.g. --set steps=300")


def test_set_steps_minus_5_from_the_shell(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "nablanet", "study", "saturation", "--quick", "--set", "steps=-5",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("nablanet study: error: --set steps=-5: expected a positive int (the quick default is "
                           "300), e.g. --set steps=300\n")


def test_set_steps_0_in_the_full_configuration(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["study", "saturation", "--set", "steps=0", "--out", str(tmp_path / "out")]) == 2
    assert "--set steps=0: expected a positive int (the default is 300)" in capsys.readouterr().err


def test_set_epochs_x(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--set", "epochs=x")
    assert line.endswith("--set epochs=x: expected a positive int, not a string (the quick default is 4), "
                         "e.g. --set epochs=4")


def test_set_epochs_quoted_number(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--set", 'epochs="3"')  # a JSON string, not a number
    assert "--set epochs=3: expected a positive int, not a string" in line


def test_set_seed_list(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--set", "seed=[1,2]")
    assert line.endswith("--set seed=[1,2]: expected an int >= 0, not a list (the quick default is 0), "
                         "e.g. --set seed=0; for several seeds, use --seeds K")


def test_set_seed_minus_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "--set seed=-1: expected an int >= 0 (the quick default is 0)" in refused(capsys, tmp_path, "--set",
                                                                                      "seed=-1")


def test_set_seed_true(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # bool is not an int, although Python says isinstance(True, int)
    assert "--set seed=true: expected an int >= 0, not true/false" in refused(capsys, tmp_path, "--set", "seed=true")


def test_set_lr_int_where_a_float_is_expected_is_fine() -> None:
    from nablanet.studies import REGISTRY

    assert REGISTRY["saturation"].config(True, {"lr": 1}, flag="--set")["lr"] == 1


def test_set_eta_nan(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "--set eta=NaN: expected a positive number, not nan" in refused(capsys, tmp_path, "--set", "eta=NaN")


def test_set_eta_0(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "--set eta=0: expected a positive number (the quick default is 0.15)" in refused(capsys, tmp_path,
                                                                                           "--set", "eta=0")


def test_set_momentum_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--set", "mu=1", study="momentum")
    assert "--set mu=1: expected a number in [0, 1) (the quick default is 0.9), e.g. --set mu=0.9" in line


def test_set_depths_with_a_string_element(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--set", 'depths=[2,"x"]', study="vanishing")
    assert line.endswith("""--set depths=[2,"x"]: expected a non-empty list of positive ints ("x" is not one; the """
                         "quick default is [2, 4, 6]), e.g. --set 'depths=[2,4,6]'")


def test_set_depths_empty(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--set", "depths=[]", study="vanishing")
    assert "--set depths=[]: expected a non-empty list of positive ints, not an empty list" in line


def test_set_activations_with_an_unknown_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--set", 'activations=["sigmoid","elu"]', study="vanishing")
    assert "expected a non-empty list of names from 'sigmoid', 'tanh', 'relu' (\"elu\" is not one;" in line


def test_set_data_mnst(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--set", "data=mnst", study="vanishing")
    assert "--set data=mnst: expected 'mnist' or 'digits' (the quick default is \"mnist\"), e.g. --set data=mnist" \
        in line


def test_set_mnist_root_5(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--set", "mnist_root=5", study="vanishing")
    assert "--set mnist_root=5: expected a string or null, not an int (the quick default is null)" in line
    assert "null means <cache>/mnist" in line


def test_set_lr_object_with_an_unknown_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--set", 'lr={"sigmoidd":1}', study="vanishing")
    assert "expected an object mapping some of 'sigmoid', 'tanh', 'relu' to positive numbers ('sigmoidd' is not " \
           "one of its keys;" in line


def test_set_lr_object_without_a_trained_activation(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--set", 'lr={"sigmoid":1}', study="vanishing")
    assert "has no learning rate for ['relu']" in line and "Fix: --set 'lr=" in line


def test_set_epochs_object_with_a_zero(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--set", 'epochs={"digits":0}', study="label-smoothing")
    assert "('digits': 0 is not one; the quick default is {\"digits\": 12, \"mnist1d\": 6})" in line


def test_set_blas_threads_0(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--set", "blas_threads=0", study="batch-size")
    assert "--set blas_threads=0: expected a positive int or null (the quick default is 1)" in line


def test_set_unknown_setting(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--set", "step=40")
    assert line.endswith("--set step=40: study 'saturation' has no setting 'step'; did you mean 'steps'? its "
                         "settings are ['epochs', 'eta', 'lr', 'lr_grid', 'n_seeds', 'output_bias', 'seed', 'steps']")


def test_set_without_equals(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--set", "eta")
    assert line.endswith("--set eta: expected KEY=VALUE, a setting of saturation and its value, e.g. --set steps=300 "
                         "(the settings: ['epochs', 'eta', 'lr', 'lr_grid', 'n_seeds', 'output_bias', 'seed', "
                         "'steps'])")


def test_set_empty_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "--set =3: expected KEY=VALUE" in refused(capsys, tmp_path, "--set", "=3")


# -- --out ------------------------------------------------------------------------------------------
def test_out_is_an_existing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    assert main(["study", "saturation", "--quick", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err == (f"nablanet study: error: --out {target}: {target} is a file, not a folder; a study writes a "
                   "folder of files (records.csv, figures, result.json, index.html). Fix: choose a folder you can "
                   "write to, e.g. --out studies/saturation\n")
    assert target.read_text() == "keep me"


def test_out_under_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    target = tmp_path / "a-file" / "sub" / "out"
    assert main(["study", "saturation", "--quick", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err == (f"nablanet study: error: --out {target}: {tmp_path / 'a-file'} is a file, not a folder; a study "
                   "writes a folder of files (records.csv, figures, result.json, index.html). Fix: choose a folder "
                   "you can write to, e.g. --out studies/saturation\n")


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Path]:
    """A folder this process cannot create anything in: a read-only one, or /sys where permissions do
    not bind (root)."""
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        for candidate in (ro, Path("/sys")):
            try:
                os.rmdir(tempfile.mkdtemp(dir=candidate))
            except OSError:
                yield candidate
                return
        pytest.skip("no folder here refuses writes (root, and no read-only /sys)")
    finally:
        ro.chmod(0o700)


def test_out_in_an_unwritable_folder(capsys: pytest.CaptureFixture[str], unwritable: Path) -> None:
    target = unwritable / "nablanet-study-out"
    assert main(["study", "saturation", "--quick", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nablanet study: error: --out {target}: cannot write in {unwritable} (")
    assert err.endswith("); a study writes a folder of files (records.csv, figures, result.json, index.html). Fix: "
                        "choose a folder you can write to, e.g. --out studies/saturation\n")
    assert err.count("\n") == 1 and not target.exists()


# -- --download, --data-root --------------------------------------------------------------------------
def test_download_for_a_study_that_downloads_nothing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--download")
    assert line.endswith("--download: study 'saturation' downloads nothing (its data ship with nablanet and "
                         "scikit-learn or are generated; --download is for vanishing). Fix: leave --download out.")


def test_data_root_for_a_study_without_downloaded_data(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--data-root", str(tmp_path))
    assert line.endswith(f"--data-root {tmp_path}: study 'saturation' reads no downloaded data (--data-root is for "
                         "vanishing). Fix: leave --data-root out.")


def test_data_root_and_set_mnist_root(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, tmp_path, "--data-root", str(tmp_path), "--set", "mnist_root=/x", study="vanishing")
    assert line.endswith(f"--data-root {tmp_path} and --set mnist_root=... both name the data folder. Fix: give only "
                         "one of them.")


def test_study_flags_without_a_study_name(capsys: pytest.CaptureFixture[str]) -> None:
    from nablanet.cli import main

    assert main(["study", "--set", "steps=40", "--quick"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["nablanet study: error: --set given without a study; expected nablanet study NAME --set ... "
                     "(nablanet study --list shows the names)"]
