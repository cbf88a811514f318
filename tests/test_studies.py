"""Studies: each --quick run checks the numbers it claims; the CLI lists and runs them."""

from __future__ import annotations

import html
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import sigint_as_in_a_terminal

import nablanet as nn
from nablanet.cli import main
from nablanet.studies import REGISTRY, Study, run_study
from nablanet.studies.base import Figure, Records, StudyInterrupted, Verdict, pyplot
from nablanet.train.callbacks import Callback

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("matplotlib")


def test_cli_lists_and_runs_studies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "--list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in REGISTRY)
    assert main(["study", "nope"]) == 2
    assert "nablanet study --list" in capsys.readouterr().err
    assert main(["study", "saturation", "--quick", "--set", "bogus=1", "--out", str(tmp_path)]) == 2
    assert "has no setting 'bogus'" in capsys.readouterr().err


# -- data: --download, --data-root and the fallback ---------------------------------------------------
SMALL_VANISHING = ["--set", "seeds=1", "--set", "depths=[2]", "--set", "figure_depth=2", "--set", "train_depth=2",
                   "--set", 'activations=["sigmoid"]', "--set", 'inits=["scaled_normal"]',
                   "--set", 'train_activations=["sigmoid"]', "--set", 'train_inits=["scaled_normal"]',
                   "--set", "n_train=200", "--set", "n_probe=100", "--set", "probe_every=10"]
"""vanishing shrunk to seconds: one seed, one depth, one activation and init, 200 training images."""

T10K = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_study_download_fetches_mnist_into_the_cache_past_a_failing_mirror(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, srv: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out"
    monkeypatch.setenv("NABLANET_CACHE", str(cache))
    monkeypatch.setenv("NABLANET_MNIST_MIRRORS", f"{srv.url}/missing/,{srv.url}/good/")
    assert main(["study", "vanishing", "--quick", "--download", "--out", str(out), *SMALL_VANISHING]) == 0
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == T10K
    asked = [path for path, _ in srv.log]
    for name in T10K:  # the 404 mirror first, then the good one
        assert asked.index(f"/missing/{name}") < asked.index(f"/good/{name}")
    captured = capsys.readouterr()
    assert f"--download: the MNIST t10k files are in {cache / 'mnist'}" in captured.err
    # the answer leads; the verdict, which names the data first, follows under "How we know"
    assert "\n\nHow we know: Data: the MNIST test images (t10k) from " in captured.out
    meta = json.loads((out / "result.json").read_text())
    assert meta["fallback"] is None and meta["headline"]["data"] == f"the MNIST test images (t10k) from {cache}/mnist"
    # a second --download finds the files and fetches nothing
    srv.log.clear()
    assert main(["study", "vanishing", "--quick", "--download", "--out", str(out), *SMALL_VANISHING]) == 0
    assert srv.log == []


def test_study_download_into_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, srv: Any,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NABLANET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NABLANET_MNIST_MIRRORS", f"{srv.url}/good/")
    root = tmp_path / "my-mnist"
    assert main(["study", "vanishing", "--quick", "--download", "--data-root", str(root),
                 "--out", str(tmp_path / "out"), *SMALL_VANISHING]) == 0
    assert sorted(p.name for p in root.iterdir()) == T10K and not (tmp_path / "cache").exists()
    meta = json.loads((tmp_path / "out" / "result.json").read_text())
    assert meta["config"]["mnist_root"] == str(root) and f"--set mnist_root={root}" in meta["command"]


def test_study_download_from_mirrors_that_all_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, srv: Any,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NABLANET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NABLANET_MNIST_MIRRORS", f"{srv.url}/missing/,{srv.url}/corrupt/")
    out = tmp_path / "out"
    assert main(["study", "vanishing", "--quick", "--download", "--out", str(out), *SMALL_VANISHING]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("nablanet study: --download: fetching")  # a progress line, then:
    assert err[1].startswith("nablanet study: error: --download: could not download t10k-images-idx3-ubyte.gz")
    assert f"{srv.url}/missing/t10k-images-idx3-ubyte.gz: HTTP Error 404" in err[1] and "/corrupt/" in err[1]
    assert err[1].endswith("NABLANET_MNIST_MIRRORS=URL[,URL...] chooses the mirrors.")
    assert not out.exists()  # no fallback after a failed --download: the study did not run


def test_a_study_without_its_data_falls_back_and_says_so_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    monkeypatch.setenv("NABLANET_CACHE", str(tmp_path / "empty-cache"))  # whatever ../shared holds
    out = tmp_path / "out"
    assert main(["study", "vanishing", "--quick", "--out", str(out), *SMALL_VANISHING]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    fallback = (f"This run used scikit-learn's 8×8 digits, not MNIST: the MNIST t10k files are not in "
                f"{tmp_path / 'empty-cache' / 'mnist'}, so its numbers are not comparable with Nielsen's. To use "
                "MNIST: nablanet study vanishing --download (or --data-root DIR, a folder that holds them).")
    assert first.startswith(fallback)  # the printed verdict opens with it, naming --download
    meta = json.loads((out / "result.json").read_text())
    assert meta["fallback"] == fallback and meta["verdict"].startswith(fallback) and meta["answer"].startswith(fallback)
    body = (out / "index.html").read_text().split("<body>", 1)[1]
    assert body.startswith(f'\n<p class="fallback">{html.escape(fallback)}</p>\n<p class="study">nablanet study '
                           'vanishing</p>')
    assert main(["study", "vanishing", "--quick", "--json", "--out", str(out), *SMALL_VANISHING]) == 0
    assert json.loads(capsys.readouterr().out)["fallback"] == fallback


# The test doubles' parts: one row, the verdict "done", no figures.
def _one_row(cfg: dict[str, Any]) -> Records:
    return Records([{"a": 1}])


def _no_figures(records: Records, cfg: dict[str, Any]) -> dict[str, Figure]:
    return {}


def _done(records: Records, cfg: dict[str, Any]) -> Verdict:
    return Verdict("done", {})


def test_run_study_puts_the_fallback_first_in_the_verdict(tmp_path: Path) -> None:
    def measure(cfg: dict[str, Any]) -> Records:
        return Records([{"a": 1}], fallback="Ran on B, not A.")

    def verdict(records: Records, cfg: dict[str, Any]) -> Verdict:
        return Verdict("The numbers say so.", {})

    study = Study("fake-fallback", "?", "-", measure, verdict, _no_figures, quick={"a": 1}, full={"a": 1})
    result, out = run_study(study, tmp_path)
    assert result.verdict == "Ran on B, not A. The numbers say so."
    assert json.loads((out / "result.json").read_text())["verdict"] == result.verdict


# -- Ctrl-C -------------------------------------------------------------------------------------------
def _fitting_study(calls: list[int]) -> Study:
    """A study that calls fit in a loop, as saturation does; the first fit is interrupted by Ctrl-C."""

    class CtrlC(Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
            raise KeyboardInterrupt

    def measure(cfg: dict[str, Any]) -> Records:
        x = np.random.default_rng(0).standard_normal((8, 2))
        for _ in range(cfg["runs"]):
            model = nn.Sequential(nn.Linear(2, 1))
            nn.fit(model, nn.MSELoss(), nn.optim.SGD(model.parameters(), lr=0.1), train=(x, x[:, :1]), epochs=3,
                   callbacks=[CtrlC()])
            calls.append(1)
        return Records([{"runs": len(calls)}])

    return Study("fake-fit", "?", "-", measure, _done, _no_figures, quick={"runs": 3}, full={"runs": 3})


def test_ctrl_c_inside_fit_ends_the_whole_study_and_writes_nothing(tmp_path: Path) -> None:
    calls: list[int] = []
    out = tmp_path / "out"
    with pytest.raises(StudyInterrupted) as info:
        run_study(_fitting_study(calls), out)
    # the run is short, but a loaded machine may take a second or two over it
    assert re.fullmatch(rf"interrupted during the run, after \d s; nothing was written to {re.escape(str(out))}",
                        str(info.value)), info.value
    assert calls == [] and not out.exists()  # the first fit raised: no second run, no folder


def test_ctrl_c_while_writing_says_which_files_are_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plt = pyplot()

    def figures(records: Records, cfg: dict[str, Any]) -> dict[str, Figure]:
        fig = plt.figure()

        def ctrl_c(*args: Any, **kwargs: Any) -> None:
            raise KeyboardInterrupt

        fig.savefig = ctrl_c  # type: ignore[method-assign]
        return {"curve": Figure(fig, "")}

    with pytest.raises(StudyInterrupted) as info:
        run_study(Study("fake-write", "?", "-", _one_row, _done, figures, quick={"a": 1}, full={"a": 1}), tmp_path)
    assert str(info.value) == (f"interrupted while writing the results: {tmp_path} holds records.csv, numbers.csv, but "
                               "not the complete report; run the study again to write it")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["numbers.csv", "records.csv"]  # no .part file left


_CLI_TELLING_FIT = """
import sys
import nablanet as nn
from nablanet.cli import main

real_fit = nn.fit

def fit(*args, **kwargs):  # the real fit, announced once: the test's cue to press Ctrl-C
    if not getattr(fit, "told", False):
        fit.told = True
        print("fit started", file=sys.stderr, flush=True)
    return real_fit(*args, **kwargs)

nn.fit = fit
sys.exit(main(sys.argv[1:]))
"""


def test_a_real_sigint_stops_nablanet_study_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    # label-smoothing calls fit once per ε; each fit of 100,000 epochs is stopped by Ctrl-C, and the study ends
    # only if that first Ctrl-C ends the loop too (else the fit for ε = 0.1 starts and the test times out)
    proc = subprocess.Popen([sys.executable, "-c", _CLI_TELLING_FIT, "study", "label-smoothing", "--quick",
                             "--set", 'datasets=["digits"]', "--set", "epsilons=[0, 0.1]",
                             "--set", 'epochs={"digits": 100000}', "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=sigint_as_in_a_terminal)
    try:
        assert proc.stderr is not None
        started = proc.stderr.readline()
        assert started.startswith("nablanet study: running label-smoothing --quick;"), started + proc.communicate()[1]
        assert proc.stderr.readline() == "fit started\n", proc.communicate()[1]
        time.sleep(0.3)  # into the epochs
        proc.send_signal(signal.SIGINT)
        stdout, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and stdout == ""
    assert re.fullmatch(rf"nablanet study: interrupted during the run, after \d+ s; nothing was written to "
                        rf"{re.escape(str(out))}\n", err), err
    assert not out.exists()


# -- permissions --------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_study_files_get_the_users_umask(tmp_path: Path, umask: int) -> None:
    plt = pyplot()

    def figures(records: Records, cfg: dict[str, Any]) -> dict[str, Figure]:
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        return {"line": Figure(fig, "")}

    old = os.umask(umask)
    try:
        study = Study("fake-umask", "?", "-", _one_row, _done, figures, quick={"a": 1}, full={"a": 1})
        _, out = run_study(study, tmp_path / "out")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes == dict.fromkeys(["records.csv", "numbers.csv", "line.png", "result.json",
                                           "index.html"], 0o666 & ~umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask


def test_study_help_shows_each_default_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["study", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: studies/NAME) (default" not in text and "(default: None)" not in text
    assert "(default: [])" not in text and "(default: False)" not in text
    assert "output folder (default: studies/NAME)" in text
    assert "(default: <cache>/mnist, <cache> being $NABLANET_CACHE or ~/.cache/nablanet)" in text
    assert "--download" in text and "Ctrl-C" in text


def test_study_all_runs_every_study_and_writes_an_index_of_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    from nablanet.studies import site

    assert site.study_names() == list(site.ORDER) and sorted(site.ORDER) == sorted(REGISTRY)
    monkeypatch.setattr(site, "study_names", lambda: ["saturation"])  # one study stands for all ten
    out = tmp_path / "site"
    assert main(["study", "all", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    meta = json.loads((out / "saturation" / "result.json").read_text())
    assert printed.out == f"saturation: {meta['answer']}\nindex: {out / 'index.html'}\n"
    assert "nablanet study all: running saturation --quick ..." in printed.err
    page = (out / "index.html").read_text()
    assert f'<a href="saturation/index.html">{html.escape(meta["question"])}</a>' in page
    assert html.escape(meta["answer"]) in page and "the quick configurations" in page

    for flag in (["--set", "seed=1"], ["--seeds", "2"]):
        assert main(["study", "all", "--quick", "--out", str(tmp_path / "no"), *flag]) == 2
        assert f"nablanet study all: {flag[0]} sets one study's run" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_a_colour_named_by_its_place_in_the_cycle_is_saved_in_the_studies_palette(tmp_path: Path) -> None:
    """matplotlib reads "C3" when it draws, at the save: the saved pixels are Okabe-Ito's vermilion, in a
    report's PNG and in a sweep cell's."""
    from nablanet.studies._sweep_cell import compute_cell
    from nablanet.studies.base import OKABE_ITO, figure_style, save_figure

    def draw(records: Records, config: dict[str, Any]) -> dict[str, Figure]:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.axis("off")
        ax.plot([0, 1], [0.5, 0.5], color="C3", linewidth=40)  # a line keeps its colour's name until drawn
        ax.set_xlim(0, 1)
        return {"square": Figure(fig, "a square")}

    vermilion = tuple(int(OKABE_ITO[3][i:i + 2], 16) for i in (1, 3, 5))
    with figure_style():
        figure = draw(Records([]), {})["square"].figure
    path = save_figure(figure, tmp_path / "square.png")
    study = Study("square", "?", "", lambda c: Records([{"x": 1}]), lambda r, c: Verdict("", {}), draw, {}, {})
    cell = compute_cell(study, {}, figures=True)
    import matplotlib.image as mpimg

    for png in (mpimg.imread(path), mpimg.imread(io.BytesIO(cell.figures["square"]))):
        assert tuple(round(255 * v) for v in png[png.shape[0] // 2, png.shape[1] // 2, :3]) == vermilion


def test_the_figure_check_finds_what_makes_a_figure_hard_to_read() -> None:
    pytest.importorskip("matplotlib")
    from helpers import figure_problems

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="a")
    ax.plot([0, 1], [1, 0], label="b")
    ax.text(0.5, 0.5, "one label")
    ax.text(0.5, 0.5, "another one")
    found = figure_problems(fig)
    assert found[:4] == ["no title", "axes '': no x label", "axes '': no y label",
                         "axes '': 2 labelled curves and no legend"]
    assert "text 'one label' overlaps 'another one'" in found
    ax.set(title="Which line rises?", xlabel="x (units)", ylabel="y (units)")
    ax.texts[1].set_position((0.1, 0.9))
    ax.legend(loc="lower left")
    assert figure_problems(fig) == []
    plt.close(fig)


def test_every_study_answers_and_says_how_it_knows() -> None:
    # the report form every study follows (and a new one must): an answer with its figure, a method
    missing = {name: [part for part in ("answer", "method") if not getattr(study, part)]
               for name, study in REGISTRY.items()}
    assert {name: parts for name, parts in missing.items() if parts} == {}
