"""Headless Chromium for the tests, driven through the W3C WebDriver protocol with urllib.

The browser is Debian's ``chromium`` driven by Debian's ``chromedriver`` (packages chromium and
chromium-driver, which .ci/run installs): plain JSON over HTTP on 127.0.0.1, so the tests need no
Python package and download no browser. Console messages come from chromedriver's browser log
(``goog:loggingPrefs``), whose SEVERE entries are console errors, failed resource loads and uncaught
exceptions. Without Chromium a test skips, except under CI (CI set), where it fails: CI must run it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--window-size=1200,900"]
# For every <img>: did it finish loading, and with how many pixels?
IMAGES_JS = ("return Array.from(document.images).map(i => ({complete: i.complete, width: i.naturalWidth, "
             "height: i.naturalHeight, alt: i.alt}));")
# For every <img>: is it blank? (all sampled pixels the same colour; data-URI images leave the canvas untainted)
BLANK_JS = ("return Array.from(document.images).map(i => { const c = document.createElement('canvas'); "
            "c.width = i.naturalWidth; c.height = i.naturalHeight; const g = c.getContext('2d'); g.drawImage(i, 0, 0); "
            "const d = g.getImageData(0, 0, c.width, c.height).data; const seen = new Set(); "
            "for (let k = 0; k < d.length; k += 4 * 97) seen.add(d[k] + ',' + d[k + 1] + ',' + d[k + 2]); "
            "return seen.size <= 1; });")
# The answer's top edge and the first figure's, in page coordinates
ORDER_JS = ("const a = document.querySelector('#answer'), f = document.querySelector('figure'); "
            "return [a ? a.getBoundingClientRect().top : null, f ? f.getBoundingClientRect().top : null];")


def programs() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


class WebDriver:
    """Just enough of the W3C WebDriver protocol: a session, navigation, a script, the browser log."""

    def __init__(self, chromium: str, driver: str, profile: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                if self._call("GET", "/status").get("ready"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.process.kill()
                raise RuntimeError(f"chromedriver did not start on port {port}")
            time.sleep(0.05)
        caps = {"browserName": "chrome", "goog:loggingPrefs": {"browser": "ALL"},
                "goog:chromeOptions": {"binary": chromium, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]}}
        try:
            self.session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})["sessionId"]
        except BaseException:
            self.process.kill()
            raise

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as exc:  # WebDriver errors come back as JSON with a message
            raise RuntimeError(f"{method} {path}: {exc.read().decode(errors='replace')[:500]}") from None

    def get(self, url: str) -> None:
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def run(self, script: str) -> Any:
        return self._call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": []})

    def log(self) -> list[dict[str, Any]]:
        """The browser log since the last call: console messages, failed loads, uncaught exceptions."""
        return list(self._call("POST", f"/session/{self.session}/se/log", {"type": "browser"}))

    def screenshot(self, path: Path) -> None:
        import base64

        path.write_bytes(base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot")))

    def close(self) -> None:
        try:
            self._call("DELETE", f"/session/{self.session}")
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def open_browser(profile: Path, what: str) -> Iterator[WebDriver]:
    """A WebDriver for a module-scoped fixture (``yield from open_browser(...)``), closed afterwards;
    skips without Chromium, or fails under CI. ``what`` names the test in the message."""
    found = programs()
    if found is None:
        message = "headless Chromium needs Debian's chromium and chromium-driver (apt-get install chromium " \
                  "chromium-driver; .ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run {what}: " + message)
        pytest.skip(message)
    driver = WebDriver(*found, profile=profile)
    try:
        yield driver
    finally:
        driver.close()


def errors(log: list[dict[str, Any]]) -> list[str]:
    """The SEVERE entries of a browser log: console errors, failed loads, uncaught exceptions."""
    return [entry["message"] for entry in log if entry.get("level") == "SEVERE"]
