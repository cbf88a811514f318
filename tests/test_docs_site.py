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

import importlib
import importlib.util
import inspect
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

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
                if not inspect.ismodule(value):
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
    """The control: a new public name with no directive is reported."""
    def brand_new_instrument() -> None:
        """Not documented anywhere."""

    brand_new_instrument.__module__ = "nablanet.testing"
    monkeypatch.setattr(nn.testing, "brand_new_instrument", brand_new_instrument, raising=False)
    monkeypatch.setattr(nn.testing, "__all__", [*nn.testing.__all__, "brand_new_instrument"])
    assert "nablanet.testing.brand_new_instrument" in undocumented()
    assert not [n for n in undocumented() if n != "nablanet.testing.brand_new_instrument"]


def test_every_directive_names_an_object() -> None:
    for page, dotted, _ in directives():
        try:
            resolve(dotted)
        except (ImportError, AttributeError) as exc:
            pytest.fail(f"{page.relative_to(ROOT)}: `::: {dotted}` names nothing importable: {exc}")


def test_each_layer_family_page_documents_layers_and_links_their_vjp() -> None:
    assert len(LAYER_PAGES) >= 6
    documented_layers = set()
    for page in LAYER_PAGES:
        text = page.read_text(encoding="utf-8")
        for dotted in re.findall(r"^::: ([\w.]+)", text, flags=re.M):
            obj = resolve(dotted)
            if inspect.isclass(obj) and issubclass(obj, nn.Layer):
                documented_layers.add(obj)
                assert f"(source:{dotted}.vjp)" in text or f"(source:{dotted}.df)" in text, (
                    f"{page.name}: {dotted} has no link to its VJP source, e.g. [VJP](source:{dotted}.vjp)")
    layers = {getattr(nn.layers, n) for n in nn.layers.__all__ if inspect.isclass(getattr(nn.layers, n))}
    exported = {c for c in layers if issubclass(c, nn.Layer) and c is not nn.Layer}
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


def _mkdocs_or_skip() -> None:
    missing = [m for m in ("mkdocs", "material", "mkdocstrings_handlers.python", "mkdocs_jupyter", "latex2mathml")
               if importlib.util.find_spec(m.split(".")[0]) is None]
    if missing:
        pytest.skip(f"the docs build needs docs: {', '.join(missing)} missing (pip install '.[docs]')")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _mkdocs_or_skip()
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, env=_env())
    assert proc.returncode == 0, proc.stderr[-6000:]
    return out


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
