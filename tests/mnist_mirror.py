"""MNIST for tests: the real t10k files from shared/data/mnist (skipping where absent) and a local mirror.

The fixtures are registered in conftest.py. No test touches the internet: downloads go to an
http.server on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

T10K_IMAGES = "t10k-images-idx3-ubyte.gz"
T10K_LABELS = "t10k-labels-idx1-ubyte.gz"


def _mnist_candidates() -> list[Path]:
    here = Path(__file__).resolve()
    # shared/ beside the checkout (parents[2] == parents[1].parent) or inside it (device copies).
    roots = [here.parents[2], here.parents[1].parent, here.parents[1]]
    return list(dict.fromkeys(r / "shared" / "data" / "mnist" for r in roots))


def find_mnist_dir() -> Path | None:
    """The folder with the real t10k files, or None (for tests that run either way and pass it explicitly)."""
    for candidate in _mnist_candidates():
        if (candidate / T10K_IMAGES).is_file() and (candidate / T10K_LABELS).is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    found = find_mnist_dir()
    if found is not None:
        return found
    pytest.skip(
        "MNIST t10k IDX files not found (looked in "
        + ", ".join(str(c) for c in _mnist_candidates())
        + "); these tests need shared/data/mnist beside the repository"
    )


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves files under ``server.root``; honours ``Range: bytes=N-`` unless ``server.use_range``
    is off (SimpleHTTPRequestHandler has no Range support, hence this handler). ``/flaky/``
    announces the whole of a ``/good/`` file but closes the connection half-way."""

    def do_GET(self) -> None:
        server: Any = self.server
        server.log.append((self.path, self.headers.get("Range")))
        flaky = self.path.startswith("/flaky/")  # the good files, cut off half-way
        path = (server.root / self.path.lstrip("/").replace("flaky/", "good/", 1)).resolve()
        if server.root not in path.parents or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        header = self.headers.get("Range")
        if header and server.use_range and header.startswith("bytes=") and header.endswith("-"):
            start = int(header[len("bytes=") : -1])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start : (start + len(data)) // 2 if flaky else len(data)])
        self.close_connection = flaky

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass


@pytest.fixture(scope="session")
def server(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """http://127.0.0.1:<free port>/good/ has the t10k files, /corrupt/ altered copies,
    /missing/ nothing (404)."""
    root = tmp_path_factory.mktemp("www").resolve()
    for folder in ("good", "corrupt"):
        (root / folder).mkdir()
    for name in (T10K_IMAGES, T10K_LABELS):
        data = (mnist_dir / name).read_bytes()
        (root / "good" / name).write_bytes(data)
        (root / "corrupt" / name).write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    httpd: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.root, httpd.log, httpd.use_range = root, [], True
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def srv(server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    server.log.clear()
    server.use_range = True
    # A proxy configured in the environment must not see requests for the local server.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return server


