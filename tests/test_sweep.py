"""Sweeps: cells keyed by their configuration's hash, written atomically, skipped when finished,
retried when they fail or their worker dies, the same on a Dask cluster as locally; the CLI's
``nablanet sweep`` and ``nablanet study NAME --seeds K``.

Most tests sweep ``fake-sweep``, a study registered here for the test: a cell costs microseconds and
appends a line to a log file per run, so the tests can count the runs (each run appends from its
own process, in its own file, so parallel runs do not interleave).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import sigint_as_in_a_terminal

from nablanet._io import current_umask
from nablanet.cli import main
from nablanet.studies.base import REGISTRY, Figure, Records, Study, Verdict, config_hash
from nablanet.studies.sweep import SweepConfig, SweepError, cells, load_config, run_seeds, run_sweep, spread

pytest.importorskip("joblib")


def _fake_measure(cfg: dict[str, Any]) -> Records:
    """x ~ a·N(0, 1) (1000 draws from the cell's seed, one row each) + b; fails ``fail_times`` times for
    a = fail_a, by raising (mode "raise") or by killing its worker process (mode "die")."""
    log = Path(cfg["log"])
    tag = f"a={cfg['a']:g},b={cfg['b']},seed={cfg['seed']}"
    earlier = len(list(log.glob(f"{tag} *")))
    (log / f"{tag} {uuid.uuid4().hex}").touch()
    if cfg["a"] == cfg["fail_a"] and earlier < cfg["fail_times"]:
        if cfg["mode"] == "die":
            os._exit(3)
        raise RuntimeError(f"flaky cell {tag}, run {earlier + 1}")
    x = np.random.default_rng(cfg["seed"]).standard_normal(1000) * cfg["a"] + cfg["b"]
    return Records([{"i": i, "x": float(v)} for i, v in enumerate(x)])


def _fake_verdict(records: Records, cfg: dict[str, Any]) -> Verdict:
    x = np.array([r["x"] for r in records.rows])
    return Verdict(f"mean {x.mean():.3f}", {"mean": float(x.mean()), "std": float(x.std()), "never": None})


def _no_figures(records: Records, cfg: dict[str, Any]) -> dict[str, Figure]:
    return {}


_SETTINGS = {"a": 1.0, "b": 0, "seed": 0, "log": "", "fail_a": -1.0, "fail_times": 0, "mode": "raise"}
FAKE = Study("fake-sweep", "What are the mean and spread of a·z + b?", "a test double", _fake_measure, _fake_verdict,
             _no_figures, quick=dict(_SETTINGS), full=dict(_SETTINGS))
NO_SEED = Study("fake-noseed", "?", "a test double", _fake_measure, _fake_verdict, _no_figures, quick={"a": 1.0},
                full={"a": 1.0})


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SweepConfig:
    """A 2×2 grid × 2 seeds sweep of the fake study, logging its runs into tmp_path/log."""
    monkeypatch.setitem(REGISTRY, FAKE.name, FAKE)
    monkeypatch.setitem(REGISTRY, NO_SEED.name, NO_SEED)
    (tmp_path / "log").mkdir()
    return SweepConfig(study=FAKE.name, grid={"a": [1.0, 2.0], "b": [0, 1]}, seeds=(0, 1), quick=True,
                       fixed={"log": str(tmp_path / "log")}, out=tmp_path / "sweep")


def runs(cfg: SweepConfig, a: float | None = None) -> int:
    """How many times the fake study has run (for a = ``a``)."""
    return sum(1 for p in Path(cfg.fixed["log"]).iterdir() if a is None or p.name.startswith(f"a={a:g},"))


def test_local_sweep_writes_one_cell_per_setting_and_seed(fake: SweepConfig,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_sweep(fake, n_jobs=2)
    assert runs(fake) == 8 and len(rows) == 8
    # sweep order: grid keys in order, seeds innermost
    assert [(r["a"], r["b"], r["seed"]) for r in rows] == [
        (a, b, s) for a in (1.0, 2.0) for b in (0, 1) for s in (0, 1)]
    for row, cell in zip(rows, cells(fake), strict=True):
        assert row["cell"] == cell.key == config_hash(cell.config)
        x = np.random.default_rng(row["seed"]).standard_normal(1000) * row["a"] + row["b"]
        assert row["mean"] == float(x.mean()) and row["std"] == float(x.std())
        folder = fake.out / "cells" / cell.key
        meta = json.loads((folder / "result.json").read_text())
        assert meta["config"] == cell.config and meta["settings"] == {"a": row["a"], "b": row["b"],
                                                                     "seed": row["seed"]}
        assert (folder / "records.csv").read_text().startswith("i,x\n")
    assert not list((fake.out / "cells").glob(".tmp-*"))
    # cell folders are as open as mkdir makes them (mkdtemp alone gives 0700)
    assert {p.stat().st_mode & 0o777 for p in (fake.out / "cells").iterdir()} == {0o777 & ~current_umask()}
    with open(fake.out / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert [float(r["mean"]) for r in table] == [r["mean"] for r in rows]
    assert list(table[0]) == ["cell", "a", "b", "seed", "mean", "std", "never"]
    # medians over the two seeds, per grid point; "never" (None) is not a number and is left out
    with open(fake.out / "medians.csv") as f:
        medians = list(csv.DictReader(f))
    assert len(medians) == 4 * 2 and {m["quantity"] for m in medians} == {"mean", "std"}
    first = next(m for m in medians if m["a"] == "1.0" and m["b"] == "0" and m["quantity"] == "mean")
    assert float(first["median"]) == pytest.approx((rows[0]["mean"] + rows[1]["mean"]) / 2)
    assert first["n"] == first["of"] == "2"
    err = capsys.readouterr().err  # stderr is no terminal here: one line per finished cell
    assert err.count("\n") == 8 and "[8/8]" in err and "a=2.0 b=1 seed=1" in err


def test_rerun_skips_finished_cells_and_redoes_cells_killed_in_flight(fake: SweepConfig,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    first = run_sweep(fake, n_jobs=2, quiet=True)
    summary = (fake.out / "summary.csv").read_bytes()
    assert run_sweep(fake, n_jobs=2) == first
    assert runs(fake) == 8  # nothing ran again
    assert "8 of 8 cells already finished" in capsys.readouterr().err
    # a kill mid-run leaves at most a temporary folder (and never a cell folder with result.json)
    killed, emptied = cells(fake)[3], cells(fake)[5]
    os.rename(fake.out / "cells" / killed.key, fake.out / "cells" / f".tmp-{killed.key}-x")
    (fake.out / "cells" / f".tmp-{killed.key}-x" / "result.json").unlink()
    (fake.out / "cells" / emptied.key / "result.json").unlink()  # e.g. removed by hand
    assert run_sweep(fake, n_jobs=2, quiet=True) == first
    assert runs(fake) == 10
    assert not list((fake.out / "cells").glob(".tmp-*"))
    assert (fake.out / "summary.csv").read_bytes() == summary
    # a bigger grid reuses the cells it shares with the smaller one
    bigger = dataclasses.replace(fake, grid={"a": [1.0, 2.0, 3.0], "b": [0, 1]})
    assert run_sweep(bigger, n_jobs=2, quiet=True)[:8] == first
    assert runs(fake) == 14


def test_a_failing_cell_is_retried(fake: SweepConfig, capsys: pytest.CaptureFixture[str]) -> None:
    flaky = dataclasses.replace(fake, fixed={**fake.fixed, "fail_a": 2.0, "fail_times": 1})
    rows = run_sweep(flaky, n_jobs=2)
    assert len(rows) == 8 and runs(flaky, 2.0) == 8 and runs(flaky, 1.0) == 4
    err = capsys.readouterr().err
    assert err.count("failed, retrying: RuntimeError: flaky cell a=2") == 4
    assert not (flaky.out / "failures.json").exists()


def test_a_cell_that_keeps_failing_is_reported(fake: SweepConfig) -> None:
    broken = dataclasses.replace(fake, fixed={**fake.fixed, "fail_a": 2.0, "fail_times": 99}, retries=1)
    with pytest.raises(SweepError, match=r"4 of 8 cells failed after 1 retries .*RuntimeError: flaky cell") as info:
        run_sweep(broken, n_jobs=2, quiet=True)
    assert runs(broken, 2.0) == 4 * 2  # one run and one retry each
    assert len(info.value.summary) == 4 and len(info.value.failures) == 4
    failures = json.loads((broken.out / "failures.json").read_text())
    assert sorted((f["settings"]["b"], f["settings"]["seed"]) for f in failures) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert "Traceback" in failures[0]["error"]
    assert len((broken.out / "summary.csv").read_text().splitlines()) == 1 + 4


def test_a_cell_whose_worker_dies_is_retried(fake: SweepConfig) -> None:
    dying = dataclasses.replace(fake, grid={"a": [1.0, 2.0]}, seeds=(0,),
                                fixed={**fake.fixed, "fail_a": 2.0, "fail_times": 1, "mode": "die"})
    rows = run_sweep(dying, n_jobs=2, quiet=True)
    assert [r["a"] for r in rows] == [1.0, 2.0]
    assert runs(dying, 2.0) == 2


def test_config_errors_are_clear(fake: SweepConfig) -> None:
    def check(data: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            cells(SweepConfig.from_dict(data, source="s.toml"))

    check({"grid": {"a": [1]}}, 'expected study = "NAME"')
    check({"study": "nope"}, r"no study 'nope'; the studies are \[.*'saturation'")
    check({"study": FAKE.name, "grid": {"eta": [1]}}, r"has no setting\(s\) \['eta'\] \(in \[grid\]\)")
    check({"study": FAKE.name, "set": {"eta": 1}}, "has no setting 'eta'")
    check({"study": FAKE.name, "grid": {"a": 1.0}}, r"grid a = 1.0: expected a list of values, e.g. a = \[1.0\]")
    check({"study": FAKE.name, "grid": {"a": [1.0, 1.0]}}, "lists a value twice")
    check({"study": FAKE.name, "grid": {"seed": [1, 2]}}, "choose seeds with the top-level key seeds")
    check({"study": FAKE.name, "seeds": 0}, "expected a positive count")
    check({"study": FAKE.name, "seeds": "3"}, "expected a positive count")
    check({"study": FAKE.name, "jobs": 3}, r"unknown key\(s\) \['jobs'\]")
    check({"study": NO_SEED.name, "seeds": 2}, "has no 'seed' setting, so seeds cannot vary it")
    check({"study": FAKE.name, "grid": {"a": [1.0]}, "set": {"a": 2.0}}, "both in")
    assert [c.settings for c in cells(SweepConfig.from_dict({"study": NO_SEED.name, "grid": {"a": [1.0, 2.0]}}))] \
        == [{"a": 1.0}, {"a": 2.0}]


def test_a_folder_holds_one_study(fake: SweepConfig) -> None:
    run_sweep(dataclasses.replace(fake, seeds=(0,), grid={}), quiet=True, n_jobs=1)
    with pytest.raises(ValueError, match="holds a sweep of study 'fake-sweep'"):
        run_sweep(dataclasses.replace(fake, study=NO_SEED.name, seeds=None, fixed={}, grid={}), quiet=True)


def test_progress_bar_on_a_terminal(fake: SweepConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tqdm")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    monkeypatch.setattr("sys.stderr", term)
    run_sweep(dataclasses.replace(fake, seeds=(0,)), n_jobs=1)
    assert "4/4" in term.getvalue() and "cell" in term.getvalue()


def test_spread_gives_median_quartiles_and_range() -> None:
    rows = [{"cell": "x", "k": 1, "seed": s, "v": v, "t": "text"} for s, v in enumerate([3.0, 1.0, 2.0, None, 10.0])]
    [row] = spread(rows, by=["k"])
    assert row == {"k": 1, "quantity": "v", "n": 4, "of": 5, "median": 2.5, "q25": 1.75, "q75": 4.75,
                   "min": 1.0, "max": 10.0}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as local:
        yield local


def _saturation(out: Path) -> SweepConfig:
    """Two cells of the real saturation study, shortened to one epoch of its network part."""
    return SweepConfig(study="saturation", quick=True, grid={"eta": [0.15, 0.5]}, seeds=(0,), fixed={"epochs": 1},
                       out=out)


def test_dask_sweep_equals_the_local_sweep(cluster: Any, tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    local = run_sweep(_saturation(tmp_path / "local"), n_jobs=1, quiet=True)  # in this process
    remote = run_sweep(_saturation(tmp_path / "dask"), scheduler=cluster.scheduler_address, quiet=True)
    assert remote == local and len(local) == 2
    assert (tmp_path / "dask" / "summary.csv").read_bytes() == (tmp_path / "local" / "summary.csv").read_bytes()
    assert local[0]["quadratic (0.6, 0.9): a at step 300"] == pytest.approx(0.09, abs=0.01)


def test_dask_retries_a_failing_cell_and_reports_one_that_keeps_failing(cluster: Any, fake: SweepConfig) -> None:
    flaky = dataclasses.replace(fake, seeds=(0,), fixed={**fake.fixed, "fail_a": 2.0, "fail_times": 1})
    rows = run_sweep(flaky, scheduler=cluster.scheduler_address, quiet=True)
    assert len(rows) == 4 and runs(flaky, 2.0) == 4
    broken = dataclasses.replace(flaky, seeds=(1,), fixed={**flaky.fixed, "fail_times": 99}, retries=1)
    with pytest.raises(SweepError, match="2 of 4 cells failed"):
        run_sweep(broken, scheduler=cluster.scheduler_address, quiet=True)
    assert runs(broken, 2.0) == 4 + 2 * 2


def test_cli_sweep_runs_a_toml_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    config = tmp_path / "eta.toml"
    config.write_text('study = "saturation"\nquick = true\nseeds = [0]\n'
                      f'out = "{(tmp_path / "sweep").as_posix()}"\n[set]\nepochs = 1\n[grid]\neta = [0.15, 0.5]\n')
    assert load_config(config).out == tmp_path / "sweep"
    assert main(["sweep", str(config), "--jobs", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"saturation: 2 cells in {tmp_path / 'sweep' / 'summary.csv'}" in out
    assert main(["sweep", str(config), "--json"]) == 0  # finished: nothing runs, the same rows come back
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [r["eta"] for r in rows] == [0.15, 0.5] and "2 of 2 cells already finished" in captured.err
    with open(tmp_path / "sweep" / "summary.csv") as f:
        assert [float(r["eta"]) for r in csv.DictReader(f)] == [0.15, 0.5]


@pytest.mark.parametrize("text,message", [
    ('study = "saturation"\n[grid\neta = [1]\n', "not valid TOML"),
    ('study = "nope"\n', "no study 'nope'"),
    ('study = "saturation"\n[grid]\nlr_typo = [0.1]\n', r"has no setting\(s\) \['lr_typo'\]"),
])
def test_cli_sweep_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                       message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert main(["sweep", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nablanet sweep: error: ") and re.search(message, err[0])
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err


def test_cli_study_seeds_reports_medians_over_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out = tmp_path / "sat"
    assert main(["study", "saturation", "--quick", "--seeds", "2", "--set", "epochs=1", "--out", str(out),
                 "--jobs", "2", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "saturation, seeds 0..1: median [min, max]" in text
    # the neuron does not depend on the seed: median = min = max
    line = re.search(r"quadratic \(0\.6, 0\.9\): a at step 300 +(\S+) +\[(\S+), (\S+)\]", text)
    assert line is not None and line[1] == line[2] == line[3] and float(line[1]) == pytest.approx(0.094, abs=0.001)
    with open(out / "summary.csv") as f:
        medians = {r["quantity"]: r for r in csv.DictReader(f)}
    assert medians["bce saturated: escape step"]["of"] == "2"
    with open(out / "seeds" / "summary.csv") as f:
        assert [r["seed"] for r in csv.DictReader(f)] == ["0", "1"]
    assert main(["study", "saturation", "--seeds", "2", "--set", "seed=3", "--out", str(out)]) == 2
    assert "--seeds both choose the seed" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):
        main(["study", "saturation", "--seeds", "0"])
    assert "--seeds: '0': expected a positive int" in capsys.readouterr().err


def test_run_seeds_needs_a_seed_setting(fake: SweepConfig, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no 'seed' setting"):
        run_seeds(NO_SEED.name, 2, tmp_path / "x")


def test_a_cell_whose_fit_is_interrupted_does_not_come_back_finished() -> None:
    import nablanet as nn
    from nablanet.studies.sweep import compute_cell
    from nablanet.train import TrainingInterrupted
    from nablanet.train.callbacks import LambdaCallback

    def measure(cfg: dict[str, Any]) -> Records:
        x, y = np.ones((8, 2)), np.zeros(8, dtype=int)

        def stop(step: int, logs: dict[str, Any], tape: Any) -> None:
            raise KeyboardInterrupt  # as Ctrl-C between two steps

        model = nn.Sequential(nn.Linear(2, 2, rng=0))
        history = nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), train=(x, y),
                         epochs=3, callbacks=[LambdaCallback(on_batch_end=stop)])
        return Records([{"epochs": len(history)}])

    def verdict(records: Records, cfg: dict[str, Any]) -> Verdict:
        return Verdict("half a run", records.rows[0])

    with pytest.raises(TrainingInterrupted):
        compute_cell(Study("fit-once", "?", "", measure, verdict, _no_figures, quick={}, full={}), {})


def test_a_cell_draws_its_figures_only_when_asked(tmp_path: Path) -> None:
    from nablanet.studies.base import pyplot
    from nablanet.studies.sweep import compute_cell

    pytest.importorskip("matplotlib")
    drawn: list[int] = []

    def figures(records: Records, cfg: dict[str, Any]) -> dict[str, Figure]:
        drawn.append(1)
        fig, ax = pyplot().subplots()
        ax.plot([r["x"] for r in records.rows])
        return {"draws": Figure(fig, "the first draws")}

    study = Study("fake-figures", "?", "", _fake_measure, _fake_verdict, figures, quick={}, full={})
    cfg = {**_SETTINGS, "log": str(tmp_path)}
    plain = compute_cell(study, cfg)
    assert drawn == [] and plain.figures == {} and plain.captions == {}
    with_figures = compute_cell(study, cfg, figures=True)
    assert drawn == [1] and with_figures.captions == {"draws": "the first draws"}
    assert with_figures.figures["draws"].startswith(b"\x89PNG")
    assert with_figures.headline == plain.headline


def test_a_worker_address_is_not_the_scheduler(cluster: Any, fake: SweepConfig) -> None:
    worker = next(iter(cluster.scheduler_info["workers"]))
    with pytest.raises(ConnectionError, match=f"^{re.escape(worker)} is a Dask worker, not the scheduler; give "
                                              "--scheduler the scheduler's address"):
        run_sweep(fake, scheduler=worker, quiet=True, connect_timeout=5)
    assert not fake.out.exists() and runs(fake) == 0
    with pytest.raises(ValueError, match=r"^connect_timeout=0: expected a positive number of seconds, e\.g\. 20$"):
        run_sweep(fake, scheduler=cluster.scheduler_address, connect_timeout=0)


def test_ctrl_c_on_a_users_client_cancels_the_cells_it_did_not_write(cluster: Any, fake: SweepConfig,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import Client

    from nablanet.studies import sweep as sweep_module
    from nablanet.studies.sweep import SweepInterrupted

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt  # Ctrl-C as the first cell is written

    monkeypatch.setattr(sweep_module, "write_cell", interrupted)

    def cells_on_the_scheduler(dask_scheduler: Any) -> int:
        return sum(str(key).startswith("nablanet-cell-") for key in dask_scheduler.tasks)

    with Client(cluster.scheduler_address, set_as_default=False) as client:
        with pytest.raises(SweepInterrupted, match="none of the 8 cells had finished") as info:
            run_sweep(fake, scheduler=client, quiet=True)
        deadline = time.monotonic() + 10
        while client.run_on_scheduler(cells_on_the_scheduler):  # the exception, kept, still holds the futures
            assert time.monotonic() < deadline, "the sweep left its cells on the user's cluster"
            time.sleep(0.05)
        assert client.status == "running" and info.value.summary == []  # the user's client stays open


# Stopping a sweep from outside: Ctrl-C and a lost scheduler, on `nablanet` run as a process
# (tests/slow_sweep.py), whose cells a=0,1 × seeds 0,1 finish at once and the others wait at a gate.

SLOW_CLI = Path(__file__).with_name("slow_sweep.py")


def _env() -> dict[str, str]:
    import nablanet

    root = str(Path(nablanet.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}


def _slow(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    """``nablanet ARGS`` with slow-sweep registered, in a process group of its own (for Ctrl-C)."""
    return subprocess.Popen([sys.executable, str(SLOW_CLI), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(), start_new_session=True, preexec_fn=sigint_as_in_a_terminal,
                            **kwargs)


def _end(proc: subprocess.Popen[str]) -> None:
    """Kill what is left of the process's group (its joblib workers included)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _rerun_with_the_gate_open(command: list[str], tmp_path: Path) -> None:
    """Let the slow cells finish this time and run ``command`` again; it must succeed."""
    (tmp_path / "gate").touch()
    rerun = _slow(command)
    try:
        _, err = rerun.communicate(timeout=120)
    finally:
        _end(rerun)
    assert rerun.returncode == 0, err


def _wait(condition: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert proc.poll() is None, f"it ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"not {what} within 60 s"
        time.sleep(0.02)


def _finished(cells_dir: Path) -> set[str]:
    return {p.parent.name for p in cells_dir.glob("*/result.json")}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _slow_sweep(tmp_path: Path) -> tuple[Path, Path]:
    """A sweep config of slow-sweep (a = 0..3 × seeds 0, 1: 8 cells, 4 finish before the gate) and its out."""
    (tmp_path / "log").mkdir()
    out = tmp_path / "out"
    config = tmp_path / "slow.toml"
    config.write_text(f'study = "slow-sweep"\nquick = true\nseeds = [0, 1]\nout = "{out.as_posix()}"\n'
                      f'[set]\nlog = "{(tmp_path / "log").as_posix()}"\ngate = "{(tmp_path / "gate").as_posix()}"\n'
                      "[grid]\na = [0, 1, 2, 3]\n")
    return config, out


@pytest.fixture
def slow_cluster(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A Dask scheduler and worker in one process of its own, which a test may kill: (address, process)."""
    pytest.importorskip("distributed")
    path = tmp_path / "scheduler-address"
    proc = subprocess.Popen([sys.executable, str(SLOW_CLI), "--cluster", str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True)
    try:
        _wait(path.exists, proc, "the cluster started")
        yield path.read_text(), proc
    finally:
        _end(proc)


@pytest.mark.parametrize("backend", ["joblib", "dask"])
def test_ctrl_c_keeps_the_finished_cells_and_the_same_command_runs_the_rest(backend: str, tmp_path: Path,
                                                                          request: pytest.FixtureRequest) -> None:
    config, out = _slow_sweep(tmp_path)
    where = ["--jobs", "2"] if backend == "joblib" else ["--scheduler", request.getfixturevalue("slow_cluster")[0]]
    command = ["sweep", str(config), "--quiet", *where]
    proc = _slow(command)
    try:
        _wait(lambda: len(_finished(out / "cells")) == 4, proc, "4 cells finished")
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C does: to the whole group, joblib's workers included
        _, err = proc.communicate(timeout=60)
    finally:
        _end(proc)
    assert proc.returncode == 130, err
    assert err.splitlines() == [
        f"nablanet sweep: interrupted (Ctrl-C): 4 of 8 cells finished and are kept (listed in {out / 'summary.csv'}); "
        "run the same command again to run the other 4 (finished cells are skipped)"]
    kept = _finished(out / "cells")
    settings = [json.loads((out / "cells" / key / "result.json").read_text())["settings"] for key in kept]
    assert sorted((s["a"], s["seed"]) for s in settings) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {r["cell"] for r in _rows(out / "summary.csv")} == kept
    assert {(r["a"], r["quantity"], r["of"]) for r in _rows(out / "medians.csv")} == {
        (a, q, "2") for a in ("0", "1") for q in ("a2", "sum")}
    assert not list((out / "cells").glob(".tmp-*"))

    _rerun_with_the_gate_open(command, tmp_path)
    assert [(r["a"], r["seed"]) for r in _rows(out / "summary.csv")] == [
        (str(a), str(s)) for a in range(4) for s in range(2)]
    logged = [p.name.split()[0] for p in (tmp_path / "log").iterdir()]
    assert all(logged.count(f"a={a},seed={s}") == 1 for a in (0, 1) for s in (0, 1))  # the kept cells did not rerun


def test_ctrl_c_keeps_the_finished_seeds_of_study_seeds(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    out = tmp_path / "out"
    command = ["study", "slow-sweep", "--quick", "--seeds", "4", "--set", f"log={tmp_path / 'log'}", "--set",
               f"gate={tmp_path / 'gate'}", "--out", str(out), "--jobs", "2", "--quiet"]
    proc = _slow(command)
    try:
        _wait(lambda: len(_finished(out / "seeds" / "cells")) == 2, proc, "2 seeds finished")
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        _end(proc)
    assert proc.returncode == 130, err
    assert err.splitlines() == [
        f"nablanet study: interrupted (Ctrl-C): 2 of 4 seeds finished and are kept (the medians over them are in "
        f"{out / 'summary.csv'}); run the same command again to run the other 2 (finished seeds are skipped)"]
    assert [r["seed"] for r in _rows(out / "seeds" / "summary.csv")] == ["0", "1"]
    assert {(r["quantity"], r["of"], r["max"]) for r in _rows(out / "summary.csv")} == {("a2", "2", "0.0"),
                                                                                        ("sum", "2", "1.0")}
    _rerun_with_the_gate_open(command, tmp_path)
    assert {(r["quantity"], r["of"], r["max"]) for r in _rows(out / "summary.csv")} == {("a2", "4", "0.0"),
                                                                                        ("sum", "4", "3.0")}


@pytest.mark.parametrize("command", ["sweep", "study"])
def test_losing_the_scheduler_keeps_the_finished_cells_and_says_how_to_go_on(
        command: str, slow_cluster: tuple[str, subprocess.Popen[str]], tmp_path: Path) -> None:
    address, cluster = slow_cluster
    config, out = _slow_sweep(tmp_path)
    if command == "sweep":  # quiet: the message alone
        argv, folder, total = ["sweep", str(config), "--quiet"], out, 8
    else:  # with progress lines
        argv = ["study", "slow-sweep", "--quick", "--seeds", "4", "--set", f"log={tmp_path / 'log'}",
                "--set", f"gate={tmp_path / 'gate'}", "--out", str(out)]
        folder, total = out / "seeds", 4
    proc = _slow([*argv, "--scheduler", address])
    try:
        _wait(lambda: len(_finished(folder / "cells")) == total // 2, proc, "half the cells finished")
        cluster.kill()  # SIGKILL: the scheduler and its worker vanish mid-sweep
        _, err = proc.communicate(timeout=60)
    finally:
        _end(proc)
    assert proc.returncode == 1, err
    message = (f"nablanet {command}: error: lost the Dask scheduler at {address} mid-sweep: {total // 2} of {total} "
               f"cells finished and are kept (listed in {folder / 'summary.csv'}); start the scheduler again (or give "
               "--scheduler another one) and run the same command again: finished cells are skipped")
    lines = err.splitlines()
    if command == "sweep":
        assert lines == [message]
    else:  # distributed's INFO lines (a closed connection, with its traceback) stay hidden
        assert lines[-1] == message and all(line.startswith("[") for line in lines[:-1]), err
    assert {r["cell"] for r in _rows(folder / "summary.csv")} == _finished(folder / "cells")
    assert not (folder / "failures.json").exists()
