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
import re
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


# For every <img>: is it blank? (all sampled pixels the same colour; data-URI images leave the canvas untainted)
BLANK_JS = ("return Array.from(document.images).map(i => { const c = document.createElement('canvas'); "
            "c.width = i.naturalWidth; c.height = i.naturalHeight; const g = c.getContext('2d'); g.drawImage(i, 0, 0); "
            "const d = g.getImageData(0, 0, c.width, c.height).data; const seen = new Set(); "
            "for (let k = 0; k < d.length; k += 4 * 97) seen.add(d[k] + ',' + d[k + 1] + ',' + d[k + 2]); "
            "return seen.size <= 1; });")
# The answer's top edge and the first figure's, in page coordinates
ORDER_JS = ("const a = document.querySelector('#answer'), f = document.querySelector('figure'); "
            "return [a ? a.getBoundingClientRect().top : null, f ? f.getBoundingClientRect().top : null];")


def _artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: $NABLANET_ARTIFACTS (CI keeps that folder) or the test's tmp folder."""
    folder = Path(os.environ.get("NABLANET_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _check_page(browser: WebDriver, page: Path) -> list[dict[str, Any]]:
    """Open ``page``: it loads without console errors, every image is loaded and not blank, and no raw
    $…$ math is left in its text. Returns its images."""
    browser.log()
    browser.get(page.as_uri())
    assert browser.run("return document.readyState") == "complete"
    images = browser.run(IMAGES_JS)
    assert _errors(browser.log()) == [], page
    for image, blank in zip(images, browser.run(BLANK_JS), strict=True):
        assert image["complete"] and image["width"] > 0 and image["height"] > 0 and not blank, (page, image)
    text = browser.run("return document.body.innerText")
    assert not re.search(r"\$[^$\s][^$]*\$", text), "raw TeX left in " + str(page)
    return list(images)


def test_study_reports_answer_first_in_the_browser(browser: WebDriver, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    from nablanet.studies import site

    monkeypatch.setattr(site, "study_names", lambda: ["saturation", "newton"])
    entries = site.run_all(tmp_path / "studies", quick=True)
    keep = _artifacts(tmp_path)
    assert _check_page(browser, tmp_path / "studies" / "index.html") == []
    browser.screenshot(keep / "studies-index.png")
    links = browser.run("return Array.from(document.querySelectorAll('li.study a')).map(a => a.href);")
    answers = browser.run("return Array.from(document.querySelectorAll('li.study .answer')).map(p => p.textContent);")
    assert [x["answer"] for x in entries] == answers and len(links) == 2
    for entry, link in zip(entries, links, strict=True):
        out = tmp_path / "studies" / entry["study"]
        assert link == (out / "index.html").as_uri()
        meta = json.loads((out / "result.json").read_text())
        images = _check_page(browser, out / "index.html")
        if entry["study"] == "saturation":
            browser.screenshot(keep / "saturation-report.png")
        assert len(images) == len(meta["figures"])
        first = meta["answer_figure"]  # the answer's figure comes first, then the rest in their order
        order = [first, *(s for s in meta["figures"] if s != first)]
        assert [i["alt"] for i in images] == [meta["captions"][s] for s in order]
        top_answer, top_figure = browser.run(ORDER_JS)
        assert top_answer is not None and top_answer < top_figure
        assert browser.run("return document.querySelector('#answer').textContent") == meta["answer"]
        assert browser.run("return document.querySelector('h1').textContent") == meta["question"]
        assert meta["verdict"] in browser.run("return document.querySelector('.verdict').textContent")
        assert browser.run("return document.querySelector('details#numbers').open") is False
