"""The documentation site (mkdocs.yml, docs/): every public name has an API entry, and the site builds.

Public names: nablanet's own ``__all__`` and, recursively, that of every module it exports, starting
from ``nablanet``, ``nablanet.layers``, ``nablanet.losses``, ``nablanet.train``, ``nablanet.studies`` and
``nablanet.studies.sweep``; a module without ``__all__`` (``nablanet.init``, a study's module) exports
the functions and classes it defines whose names do not start with an underscore. A name is
documented when some ``::: dotted.path`` directive of mkdocstrings in docs/ renders the same object:
the directive names it, or renders a module that exports it (all the module's public names, or those
its ``members:`` option lists; ``show_submodules: true`` adds the public submodules'). These checks
need neither mkdocs nor its plugins.

``mkdocs build --strict`` itself (which executes the tutorials) runs when mkdocs is importable; it
is skipped otherwise, except where NABLANET_REQUIRE names ``docs`` (CI's docs phase), where it fails.
The built HTML is then checked: no ``$`` of LaTeX left outside code, MathML on the pages that have
math, an anchor for every public name on the page that documents it, and on each layer family
page a link from each layer to the source of its VJP (a generated page per module,
docs/_hooks/source_pages.py, whose anchor is the qualified name of the method).
"""

from __future__ import annotations

import functools
import http.server
import importlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _browser import BLANK_JS, IMAGES_JS, ORDER_JS, WebDriver, errors, open_browser

import nablanet as nn

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ROOTS = ("nablanet", "nablanet.layers", "nablanet.losses", "nablanet.train", "nablanet.studies",
         "nablanet.studies.sweep")
DIRECTIVE = re.compile(r"^::: ([\w.]+)[ \t]*\n((?:[ \t]+\S.*\n|[ \t]*\n(?=[ \t]+\S))*)", re.M)
LAYER_PAGES = sorted(DOCS.glob("layers-*.md"))

sys.path.insert(0, str(DOCS / "_hooks"))
from docstrings import markdown_from_docstring  # noqa: E402  (docs/_hooks is not a package)

sys.path.pop(0)


def public_names(module: ModuleType) -> list[str]:
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, value in vars(module).items() if not name.startswith("_")
            and (inspect.isfunction(value) or inspect.isclass(value)) and value.__module__ == module.__name__]


def public_modules() -> dict[str, ModuleType]:
    """Every public module, by name: the roots and the modules their public names export."""
    found: dict[str, ModuleType] = {}
    todo = [importlib.import_module(name) for name in ROOTS]
    while todo:
        module = todo.pop(0)
        if module.__name__ in found:
            continue
        found[module.__name__] = module
        todo += [value for name in public_names(module) if inspect.ismodule(value := getattr(module, name))]
    return found


def resolve(dotted: str) -> Any:
    """The object a directive names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for attr in parts[k:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def directives() -> Iterator[tuple[Path, str, str]]:
    """(page, dotted path, options text) of every ``:::`` directive under docs/."""
    for page in sorted(DOCS.rglob("*.md")):
        for m in DIRECTIVE.finditer(page.read_text(encoding="utf-8")):
            yield page, m[1], m[2]


def _members(options: str) -> list[str] | None:
    block = re.search(r"^\s*members:\s*\n((?:\s*- .*\n?)+)", options, flags=re.M)
    return None if block is None else re.findall(r"-\s*(\w+)", block[1])


def documented() -> dict[tuple[int, str], tuple[Path, str]]:
    """(id of the object, its name) → (page, anchor id) for everything a directive renders."""
    found: dict[tuple[int, str], tuple[Path, str]] = {}
    for page, dotted, options in directives():
        obj = resolve(dotted)
        found.setdefault((id(obj), dotted.rpartition(".")[2]), (page, dotted))
        if not inspect.ismodule(obj):
            continue
        modules = [obj]
        if re.search(r"show_submodules:\s*true", options):
            modules += [v for n in public_names(obj) if inspect.ismodule(v := getattr(obj, n))]
        for module in modules:
            names = _members(options) if module is obj else None
            for name in names if names is not None else public_names(module):
                value = getattr(module, name)
                shadowed = hasattr(module, "__path__") and importlib.util.find_spec(f"{module.__name__}.{name}")
                if not inspect.ismodule(value) and not shadowed:  # griffe renders a submodule of that name
                    found.setdefault((id(value), name), (page, f"{module.__name__}.{name}"))
    return found


def undocumented() -> list[str]:
    found = documented()
    missing = []
    for module_name, module in public_modules().items():
        for name in public_names(module):
            value = getattr(module, name)
            if not inspect.ismodule(value) and (id(value), name) not in found:
                missing.append(f"{module_name}.{name}")
    return missing


def test_every_public_name_has_an_api_entry() -> None:
    missing = undocumented()
    assert not missing, (f"{len(missing)} public names have no API entry in docs/ (add a `::: name` directive to "
                         f"the page of their module, see docs/api/): {', '.join(missing)}")


def test_the_coverage_check_sees_a_missing_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: a new top-level name with no directive is reported; a new name of a module whose
    page renders the whole module (``::: nablanet.testing``) is documented by that directive."""
    before = set(undocumented())
    for module in (nn, nn.testing):
        def brand_new_instrument() -> None:
            """A new public function (one object per module)."""

        monkeypatch.setattr(module, "brand_new_instrument", brand_new_instrument, raising=False)
        monkeypatch.setattr(module, "__all__", [*module.__all__, "brand_new_instrument"])
    assert set(undocumented()) - before == {"nablanet.brand_new_instrument"}


SHELL_LINES = [(page.name, line.split("  #")[0].strip()) for page in sorted(DOCS.glob("*.md"))
               for block in re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
               for line in block.splitlines() if line.startswith("nablanet ")]


@pytest.mark.parametrize(("page", "line"), SHELL_LINES)
def test_command_lines_on_the_pages_parse(page: str, line: str) -> None:
    """Every `nablanet ...` line of a page names flags and values the CLI accepts."""
    import shlex

    from nablanet.cli import build_parser

    build_parser().parse_args(shlex.split(line)[1:])  # argparse exits on anything it refuses


def test_every_directive_names_an_object() -> None:
    for page, dotted, _ in directives():
        try:
            resolve(dotted)
        except (ImportError, AttributeError) as exc:
            pytest.fail(f"{page.relative_to(ROOT)}: `::: {dotted}` names nothing importable: {exc}")


def vjp_code(cls: type) -> list[Any]:
    """What implements a layer's backward: its VJP, its f′ (elementwise), a container's _backward; a
    loss's VJP of its terms."""
    names = ("vjp", "df", "_backward", "_terms_vjp")
    return [inspect.unwrap(getattr(cls, n)) for n in names if callable(getattr(cls, n, None))]


def test_each_layer_family_page_documents_layers_and_links_their_vjp() -> None:
    """Every exported layer has an entry on a family page, which links the code of its backward pass."""
    assert len(LAYER_PAGES) >= 6
    documented_layers = set()
    for page in [*LAYER_PAGES, DOCS / "losses.md"]:
        text = page.read_text(encoding="utf-8")
        linked = [inspect.unwrap(resolve(d)) for d in re.findall(r"\]\(source:([\w.]+)\)", text)]
        for dotted in re.findall(r"^::: ([\w.]+)", text, flags=re.M):
            obj = resolve(dotted)
            if inspect.isclass(obj) and issubclass(obj, nn.Layer | nn.Loss):
                documented_layers.add(obj)
                assert any(f in linked for f in vjp_code(obj)), (
                    f"{page.name}: {dotted} has no link to the code of its VJP, e.g. [VJP](source:{dotted}.vjp)")
    exported = {v for n in nn.__all__ if inspect.isclass(v := getattr(nn, n))
                and issubclass(v, nn.Layer | nn.Loss) and v is not nn.Layer}
    assert not exported - documented_layers, sorted(c.__name__ for c in exported - documented_layers)


def test_docstring_equations_stay_preformatted() -> None:
    """The Linear docstring's aligned lines keep their spacing; its prose is escaped Markdown."""
    md = markdown_from_docstring(inspect.getdoc(nn.Linear) or "")
    pre = re.search(r'<pre class="docstring-math">(.*?)</pre>', md, flags=re.S)
    assert pre is not None
    assert "VJP:     dx = dy W      dW = Σₙᵣ dyₙᵣᵀ xₙᵣ" in pre[1]
    assert "Shapes:  x (N, *, i)   W (o, i)" in pre[1]
    assert "need\\_dx=False" in md.split("</pre>")[-1]  # prose: no emphasis from the underscore
    assert md.splitlines()[0] == (inspect.getdoc(nn.Linear) or "").splitlines()[0]


def test_docstring_prose_bullets_and_code_survive() -> None:
    md = markdown_from_docstring("Summary.\n\nText with ``a_b*c`` and a_b*c.\n\n* one ``x_y``\n  more\n* two\n"
                                 "Head::\n\n    code  here\n")
    assert "``a_b*c`` and a\\_b\\*c." in md
    assert "* one ``x_y``\n  more\n* two" in md
    assert "Head:" in md and "::" not in md
    assert '<pre class="docstring-math">code  here</pre>' in md


# -- the build ---------------------------------------------------------------------------------------------

BUILD_NEEDS = ("mkdocs", "material", "mkdocstrings_handlers", "mkdocs_jupyter", "latex2mathml", "jupytext")


def _mkdocs_or_skip() -> None:
    missing = [m for m in BUILD_NEEDS if importlib.util.find_spec(m) is None]
    if missing:  # NABLANET_REQUIRE=docs (tests/conftest.py) turns this skip into a failure
        pytest.skip(f"the site's build needs the docs extra: {', '.join(missing)} missing (pip install '.[docs]')")


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built strictly from mkdocs.yml (tutorials executed), or the one NABLANET_DOCS_SITE names
    (CI builds it first with the user's command, `mkdocs build --strict`, and points the tests at it)."""
    _mkdocs_or_skip()
    if os.environ.get("NABLANET_DOCS_SITE"):
        return Path(os.environ["NABLANET_DOCS_SITE"])
    out = tmp_path_factory.mktemp("site")
    proc = _build(ROOT / "mkdocs.yml", out)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return out


def built_page(site: Path, page: Path) -> Path:
    """The HTML file of a docs/ page (use_directory_urls: docs/a/b.md → a/b/index.html)."""
    rel = page.relative_to(DOCS).with_suffix("")
    return site / (rel.parent if rel.name == "index" else rel) / "index.html"


def prose(html: str) -> str:
    """The page's text outside code, scripts, styles, the head and MathML, tags removed."""
    html = re.sub(r"<(pre|code|script|style|head|math|textarea|svg)\b.*?</\1\s*>", " ", html, flags=re.S | re.I)
    return re.sub(r"<[^>]*>", " ", html)


def test_no_raw_math_and_no_remote_resources(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 30
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert "$" not in prose(html), f"{page.relative_to(site)}: LaTeX left unconverted near " + \
            prose(html)[max(0, prose(html).index("$") - 60):][:120]
        remote = re.findall(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=\"(?:https?:)?//[^\"]*\"", html)
        assert not remote, f"{page.relative_to(site)} loads from the network: {remote}"


def test_pages_with_math_have_mathml(site: Path) -> None:
    with_math = [p for p in sorted(DOCS.glob("*.md")) if re.search(r"\$[^$\s]", p.read_text(encoding="utf-8"))]
    assert len(with_math) >= 8
    for page in with_math:
        html = built_page(site, page).read_text(encoding="utf-8")
        assert re.search(r'<math [^>]*xmlns="http://www.w3.org/1998/Math/MathML"', html), page.name
    linear = built_page(site, DOCS / "layers-linear.md").read_text(encoding="utf-8")
    assert 'display="block"' in linear and "<msubsup>" in linear


def test_every_public_name_has_an_anchor_in_the_built_reference(site: Path) -> None:
    missing = []
    for page, anchor in set(documented().values()):
        if f'id="{anchor}"' not in built_page(site, page).read_text(encoding="utf-8"):
            missing.append(f"{page.name}#{anchor}")
    assert not missing, missing


def test_each_layer_links_to_the_source_of_its_vjp(site: Path) -> None:
    for page in [*LAYER_PAGES, DOCS / "losses.md"]:
        html = built_page(site, page).read_text(encoding="utf-8")
        links = re.findall(r'href="([^"#]*source/nablanet/[^"#]*)#([\w.]+)"', html)
        assert links, page.name
        for href, anchor in links:  # every link lands on an anchor of a generated source page
            target = (built_page(site, page).parent / href / "index.html").resolve()
            assert f'id="{anchor}"' in target.read_text(encoding="utf-8"), (page.name, href, anchor)
        for dotted in re.findall(r"^::: ([\w.]+)", page.read_text(encoding="utf-8"), flags=re.M):
            obj = resolve(dotted)
            if inspect.isclass(obj) and issubclass(obj, nn.Layer | nn.Loss):
                code = [f.__qualname__ for f in vjp_code(obj)]
                assert any(anchor in code for _, anchor in links), f"{page.name}: {dotted} links none of {code}"


TUTORIAL = """# %% [markdown]
# # Probe
# A markdown cell with math: $\\frac{a}{b}$ and
# $$\\sum_n dy_n^\\top x_n$$

# %%
import nablanet as nn
print("six times seven is", 6 * 7, nn.Linear(2, 3).weight.shape)
"""


def _tutorial_project(tmp: Path, body: str) -> Path:
    """A copy of the site's configuration whose only page is one tutorial: mkdocs.yml, the hooks, the CSS."""
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    (tmp / "mkdocs.yml").write_text(config[:config.index("\nnav:")] + "\nnav:\n  - tutorials/probe.py\n")
    shutil.copytree(DOCS / "_hooks", tmp / "docs" / "_hooks")
    shutil.copytree(DOCS / "assets", tmp / "docs" / "assets")
    (tmp / "docs" / "tutorials").mkdir()
    (tmp / "docs" / "tutorials" / "probe.py").write_text(body)
    return tmp / "mkdocs.yml"


def test_tutorials_are_executed_with_their_math_converted(tmp_path: Path) -> None:
    _mkdocs_or_skip()
    proc = _build(_tutorial_project(tmp_path, TUTORIAL), tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-4000:]
    html = (tmp_path / "site" / "tutorials" / "probe" / "index.html").read_text(encoding="utf-8")
    assert "six times seven is 42 (3, 2)" in html  # executed: the output is on the page
    assert (tmp_path / "site" / "tutorials" / "probe" / "probe.py").read_text() == TUTORIAL  # to download
    assert html.count("<math ") == 2 and "$" not in prose(html)
    scripts = re.findall(r"<script\b[^>]*>.*?</script>", html, flags=re.S)
    assert not [s for s in scripts if re.search(r"mathjax|mermaid|src=\"(https?:|\")", s, flags=re.I)]


def test_an_exception_in_a_tutorial_fails_the_build(tmp_path: Path) -> None:
    _mkdocs_or_skip()
    broken = TUTORIAL + '\n# %%\nraise RuntimeError("this tutorial is broken on purpose")\n'
    proc = _build(_tutorial_project(tmp_path, broken), tmp_path / "site")
    assert proc.returncode != 0
    assert "this tutorial is broken on purpose" in proc.stdout + proc.stderr


def test_bad_latex_fails_the_strict_build(tmp_path: Path) -> None:
    _mkdocs_or_skip()
    config = _tutorial_project(tmp_path, TUTORIAL)
    (tmp_path / "docs" / "tutorials" / "probe.py").unlink()
    (tmp_path / "docs" / "index.md").write_text("# Bad\n\nA fraction missing its denominator: $\\frac{a}$.\n")
    config.write_text(config.read_text().replace("tutorials/probe.py", "index.md"))
    proc = _build(config, tmp_path / "site")
    assert proc.returncode != 0
    assert "math in index.md" in proc.stderr and "\\frac{a}" in proc.stderr and "missing" in proc.stderr


# -- the built site in a browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    yield from open_browser(tmp_path_factory.mktemp("chromium-profile"), "the docs site's browser test")


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    """The built site over HTTP on 127.0.0.1, as `mkdocs serve` shows it."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None  # type: ignore[method-assign,assignment]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


MATH_JS = ("return Array.from(document.querySelectorAll('article math')).map(m => "
           "{const r = m.getBoundingClientRect(); return [m.getAttribute('display'), r.width, r.height];});")


@pytest.mark.parametrize("path", ["", "layers-linear/"])
def test_pages_load_without_errors_and_show_math(browser: WebDriver, served: str, path: str, tmp_path: Path) -> None:
    browser.log()
    browser.get(f"{served}/{path}")
    assert browser.run("return document.readyState") == "complete"
    formulas = browser.run(MATH_JS)
    browser.screenshot(tmp_path / "page.png")  # kept in pytest's tmp folder for a person to look at
    assert errors(browser.log()) == []
    assert formulas and any(display == "block" for display, _, _ in formulas)
    assert all(width > 0 and height > 0 for _, width, height in formulas), formulas  # MathML laid out
    assert not browser.run(NO_CODE_TEXT).count("$"), "LaTeX left as text"


NO_CODE_TEXT = ("const a = document.querySelector('article').cloneNode(true); "
                "a.querySelectorAll('pre, code, math, script, style').forEach(e => e.remove()); return a.textContent;")


def test_the_site_includes_every_studys_report_answer_first(browser: WebDriver, served: str, site: Path) -> None:
    """docs/_hooks/study_reports.py puts `nablanet study all --quick`'s folder at reports/: the index
    lists every study with its answer, each report opens with its answer, and the studies page links them."""
    from nablanet.studies import REGISTRY

    browser.log()
    browser.get(f"{served}/reports/index.html")
    links = browser.run("return Array.from(document.querySelectorAll('li.study a')).map(a => a.getAttribute('href'));")
    assert sorted(links) == sorted(f"{name}/index.html" for name in REGISTRY)
    for name in REGISTRY:  # every report: its answer above its first figure, every image loaded and not blank
        meta = json.loads((site / "reports" / name / "result.json").read_text())
        browser.get(f"{served}/reports/{name}/index.html")
        assert browser.run("return document.querySelector('#answer').textContent") == meta["answer"]
        top_answer, top_figure = browser.run(ORDER_JS)
        assert top_figure is not None and top_answer < top_figure, name
        images = browser.run(IMAGES_JS)
        assert len(images) == len(meta["figures"]), name
        assert all(i["complete"] and i["width"] > 0 for i in images) and not any(browser.run(BLANK_JS)), name
    assert errors(browser.log()) == []
    page = (site / "studies" / "index.html").read_text()
    assert all(f'href="../reports/{name}/"' in page for name in REGISTRY)
