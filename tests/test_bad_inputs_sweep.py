"""Issue 12: bad inputs to ``nablanet sweep`` (and ``nablanet study NAME --seeds K``).

One test per reported input. Each runs the command line and asserts one line on stderr, no
traceback, the exit status, and the message's key parts: what was received, what was expected, how
to fix it. A sweep that cannot start creates nothing, and runs no cell.
"""

from __future__ import annotations

import http.server
import os
import re
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from slow_sweep import SLOW  # tests/slow_sweep.py: a study whose runs leave a file in its log folder

from nablanet.cli import main
from nablanet.studies import _sweep_dask
from nablanet.studies.base import REGISTRY
from nablanet.studies.sweep import run_seeds, run_sweep


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """slow-sweep registered; the folder where its cells record their runs (empty: no cell ran)."""
    monkeypatch.setitem(REGISTRY, SLOW.name, SLOW)
    folder = tmp_path / "log"
    folder.mkdir()
    return folder


def _config(tmp_path: Path, log: Path, out: Path, grid: str = "a = [0, 1]") -> Path:
    config = tmp_path / "sweep.toml"
    config.write_text(f'study = "slow-sweep"\nquick = true\nout = "{out.as_posix()}"\n'
                      f'[set]\nlog = "{log.as_posix()}"\n[grid]\n{grid}\n')
    return config


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], status: int = 2) -> str:
    """Run ``nablanet ARGV``; check it exits with ``status`` and one line on stderr; return the line."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == status, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.mark.parametrize("address,problem", [
    ("tcp://127.0.0.1:abc", "the port 'abc' is not a number"),
    ("tcp://127.0.0.1:0", "the port 0 is not in 1-65535"),
    ("tcp://127.0.0.1:65536", "the port 65536 is not in 1-65535"),
    ("tcp://127.0.0.1", "it has no port"),
    ("tcp://:8786", "the host '' is not a host name or IP address"),
    ("http://127.0.0.1:8787/status", "the scheme 'http' is not one Dask connects with (a web address: the "
                                     "dashboard, not the scheduler)"),
])
def test_scheduler_address_that_dask_cannot_use(address: str, problem: str, tmp_path: Path, log: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    config = _config(tmp_path, log, out)
    line = _fails(["sweep", str(config), "--scheduler", address], capsys)
    assert line == (f"nablanet sweep: error: argument --scheduler: {address!r}: {problem}; expected a Dask scheduler "
                    "address SCHEME://HOST:PORT with SCHEME tcp, tls, ucx, ws or wss and PORT 1-65535, e.g. "
                    "--scheduler tcp://127.0.0.1:8786 (see nablanet sweep --help)")
    assert _fails(["study", "slow-sweep", "--seeds", "2", "--scheduler", address], capsys).startswith(
        f"nablanet study: error: argument --scheduler: {address!r}: {problem}; expected a Dask scheduler address")
    with pytest.raises(ValueError, match=f"^scheduler={address!r}: .*expected a Dask scheduler address"):
        run_sweep(config, scheduler=address)
    assert not out.exists() and not list(log.iterdir())


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "localhost:8786", "tls://[::1]:8786",
                                     "ws://scheduler.example.org:80", "inproc://10.0.0.2/1234/1"])
def test_scheduler_addresses_dask_accepts_pass(address: str) -> None:
    assert _sweep_dask.address_problem(address) is None


@pytest.fixture
def http_port() -> Iterator[int]:
    """A plain HTTP server, as on a scheduler's dashboard port: it answers, but not as Dask."""

    class Silent(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Silent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_scheduler_port_where_an_http_server_listens(tmp_path: Path, log: Path, http_port: int,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("distributed")
    monkeypatch.setattr(_sweep_dask, "CONNECT_TIMEOUT", 1.0)
    out = tmp_path / "out"
    address = f"tcp://127.0.0.1:{http_port}"
    argv = ["sweep", str(_config(tmp_path, log, out)), "--scheduler", address]
    status: list[int] = []
    call = threading.Thread(target=lambda: status.append(main(argv)), daemon=True)  # so a hang fails, not hangs
    call.start()
    call.join(10)
    assert not call.is_alive(), "nablanet sweep still waits for the HTTP server after 10 s (timeout: 1 s)"
    err = capsys.readouterr().err
    assert status == [2] and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.strip() == (f"nablanet sweep: error: no Dask scheduler answered at {address} within 1 s; expected the "
                           "address a running scheduler prints ('Scheduler at: tcp://HOST:PORT', port 8786 unless set; "
                           "8787 is its dashboard): start one with 'dask scheduler' or fix --scheduler")
    assert not out.exists() and not list(log.iterdir())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command", ["sweep", "study"])
def test_scheduler_that_does_not_answer_creates_nothing(command: str, tmp_path: Path, log: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("distributed")
    monkeypatch.setattr(_sweep_dask, "CONNECT_TIMEOUT", 1.0)
    out = tmp_path / "out"
    address = f"tcp://127.0.0.1:{_closed_port()}"
    argv = (["sweep", str(_config(tmp_path, log, out))] if command == "sweep" else
            ["study", "slow-sweep", "--quick", "--seeds", "2", "--set", f"log={log}", "--out", str(out)])
    line = _fails([*argv, "--scheduler", address], capsys)
    assert line.startswith(f"nablanet {command}: error: no Dask scheduler answered at {address} within 1 s; ")
    assert not out.exists() and not list(log.iterdir())


def test_grid_with_an_empty_list_of_values(tmp_path: Path, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, log, tmp_path / "out", grid="a = []")
    line = _fails(["sweep", str(config)], capsys)
    assert line == (f"nablanet sweep: error: {config}: grid a = [] lists no values, so there is nothing to sweep; give "
                    "the values to try, e.g. a = [0.05, 0.5], or remove a from [grid] (one value for every cell goes "
                    "in [set])")
    assert "[[]]" not in line and not (tmp_path / "out").exists()


@pytest.fixture(params=["a file", "under a file", "no permission"])
def unwritable_out(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """An out folder that cannot be written, and the reason the message gives."""
    blocker = tmp_path / "taken"
    if request.param != "no permission":
        blocker.write_text("not a folder")
        out = blocker if request.param == "a file" else blocker / "sub" / "out"
        yield out, f"{blocker} is a file, not a folder"
        return
    blocker.mkdir()
    blocker.chmod(0o500)
    try:
        for candidate in (blocker, Path("/sys")):  # /sys: where permissions do not bind (root), nothing is made
            try:
                os.rmdir(tempfile.mkdtemp(dir=candidate))
            except OSError as exc:
                yield candidate / "nablanet-sweep-out", f"cannot write in {candidate} ({exc.strerror})"
                return
        pytest.skip("no folder here refuses writes (root, and no read-only /sys)")
    finally:
        blocker.chmod(0o700)


def test_out_that_cannot_be_written(unwritable_out: tuple[Path, str], tmp_path: Path, log: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    out, problem = unwritable_out
    config = _config(tmp_path, log, out)
    assert _fails(["sweep", str(config)], capsys) == (
        f"nablanet sweep: error: the sweep's out folder {str(out)!r} (out in {config}) cannot be written: {problem}; "
        f"set out in {config} (or pass --out) to a folder you can write to")
    assert _fails(["sweep", str(config), "--out", str(out)], capsys) == (
        f"nablanet sweep: error: the sweep's out folder {str(out)!r} (--out) cannot be written: {problem}; pass "
        "--out a folder you can write to")
    with pytest.raises(ValueError, match=re.escape(f"the sweep's out folder {str(out)!r} (--out) cannot be written: "
                                                   f"{problem}; pass --out a folder you can write to")):
        run_seeds(SLOW.name, 2, out, quick=True, overrides={"log": str(log)})
    # the study command may check --out itself first; either way: one line naming --out and the folder
    line = _fails(["study", "slow-sweep", "--quick", "--seeds", "2", "--set", f"log={log}", "--out", str(out)], capsys)
    assert line.startswith("nablanet study: error: ") and "--out" in line and str(out) in line
    assert not list(log.iterdir())  # no cell ran
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log", "sweep.toml", "taken"]
    assert out.is_file() if out.name == "taken" else not out.exists()


def test_binary_sweep_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "plot.png"
    config.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert _fails(["sweep", str(config)], capsys) == (
        f"nablanet sweep: error: {config}: not a text file (byte 0 is not UTF-8), so not a sweep config; expected "
        'TOML text such as study = "saturation" (see nablanet sweep --help); check the path')
    assert not (tmp_path / "sweeps").exists()


def test_sweep_help_shows_each_default_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["sweep", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines where it likes
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "output folder; unset: the config's out" in text and "worker processes; unset: all CPUs" in text
