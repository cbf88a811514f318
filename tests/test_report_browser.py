"""A study's index.html as a person sees it: opened in headless Chromium, it loads with no console
errors and shows every figure.

The browser (Debian's chromium, driven through chromedriver with urllib) is tests/_browser.py's; a
control page with each kind of error checks that the log really reports them. Without Chromium the
tests skip, except under CI (CI set), where they fail: CI must run them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from _browser import IMAGES_JS, WebDriver, errors, open_browser

from nablanet.studies import REGISTRY, run_study


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    yield from open_browser(tmp_path_factory.mktemp("chromium-profile"), "the report browser test")


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
    logged = "\n".join(errors(browser.log()))
    assert "missing.png" in logged and "deliberate console error" in logged and "deliberate exception" in logged


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
    assert errors(browser.log()) == []
    assert len(images) == len(meta["figures"]) == 2
    for image, caption in zip(images, meta["captions"].values(), strict=True):
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
        assert image["alt"] == caption
    assert browser.run("return document.querySelector('h1').textContent") == "saturation"
    assert meta["verdict"] in browser.run("return document.querySelector('.verdict').textContent")
