"""A study's index.html as a person sees it: opened in headless Chromium, it loads with no console
errors and shows every figure.

The browser (Debian's chromium, driven through chromedriver with urllib) is tests/_browser.py's; a
control page with each kind of error checks that the log really reports them. Without Chromium the
tests skip, except under CI (CI set), where they fail: CI must run them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _browser import BLANK_JS, IMAGES_JS, ORDER_JS, WebDriver, errors, open_browser


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
    assert errors(browser.log()) == [], page
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

