"""A study's index.html as a person sees it: opened in headless Chromium, it loads with no console
errors and shows every figure.

The browser is Debian's ``chromium`` driven by Debian's ``chromedriver`` (packages chromium and
chromium-driver, which .ci/run installs) through the W3C WebDriver protocol: plain JSON over HTTP on
127.0.0.1, spoken here with urllib, so the test needs no Python package and downloads no browser.
Console messages come from chromedriver's browser log (``goog:loggingPrefs``), whose SEVERE entries
are console errors, failed resource loads and uncaught exceptions; a control page with each of those
checks that the log really reports them. Without Chromium the test skips, except under CI (CI set),
where it fails: CI must run it.
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

from nablanet.studies import REGISTRY, run_study

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--window-size=1200,900"]
# For every <img>: did it finish loading, and with how many pixels?
IMAGES_JS = ("return Array.from(document.images).map(i => ({complete: i.complete, width: i.naturalWidth, "
             "height: i.naturalHeight, alt: i.alt}));")


def _programs() -> tuple[str, str] | None:
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


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    programs = _programs()
    if programs is None:
        message = "headless Chromium needs Debian's chromium and chromium-driver (apt-get install chromium " \
                  "chromium-driver; .ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail("CI must run the report browser test: " + message)
        pytest.skip(message)
    driver = WebDriver(*programs, profile=tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.close()


def _errors(log: list[dict[str, Any]]) -> list[str]:
    return [entry["message"] for entry in log if entry.get("level") == "SEVERE"]


def test_the_log_reports_console_errors_broken_images_and_exceptions(browser: WebDriver, tmp_path: Path) -> None:
    """The control: a page with each kind of error, so a silent log cannot pass the real test."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"><title>t</title></head><body>'
                    '<img alt="missing" src="missing.png">'
                    "<script>console.error('deliberate console error')</script>"
                    "<script>throw new Error('deliberate exception')</script></body></html>")
    browser.log()  # drop anything older
    browser.get(page.as_uri())
    images = browser.run(IMAGES_JS)
    assert images == [{"complete": True, "width": 0, "height": 0, "alt": "missing"}]
    errors = "\n".join(_errors(browser.log()))
    assert "missing.png" in errors and "deliberate console error" in errors and "deliberate exception" in errors


def test_saturation_report_loads_without_errors_and_shows_every_figure(browser: WebDriver, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    _, out = run_study(REGISTRY["saturation"], tmp_path / "saturation", quick=True)
    meta = json.loads((out / "result.json").read_text())
    browser.log()
    browser.get((out / "index.html").as_uri())
    assert browser.run("return document.readyState") == "complete"
    images = browser.run(IMAGES_JS)
    browser.screenshot(tmp_path / "report.png")  # kept in pytest's tmp folder for a person to look at
    assert _errors(browser.log()) == []
    assert len(images) == len(meta["figures"]) == 2
    for image, caption in zip(images, meta["captions"].values(), strict=True):
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
        assert image["alt"] == caption
    assert browser.run("return document.querySelector('h1').textContent") == "saturation"
    assert meta["verdict"] in browser.run("return document.querySelector('.verdict').textContent")
