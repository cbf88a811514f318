"""MkDocs hook: the studies' reports, answer first, as part of the site.

``nablanet study all --quick`` (``nablanet.studies.site.run_all``) writes every study's report and an
index of their answers; this hook runs it and adds the folder to the site under ``reports/``, so
``docs/studies.md`` links ``reports/index.html`` and each report. The run takes about a minute on 2
cores; it is kept in ``.cache/docs-studies/<hash of the package's source>`` so that ``mkdocs serve``
pays for it once per change of the code, and CI (a clean checkout) always runs it.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.study_reports")
ROOT = Path(importlib.import_module("nablanet").__file__ or "").resolve().parents[1]
SITE_FOLDER = "reports"  # not "studies": studies.md is the page at studies/index.html


def _source_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "nablanet").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _reports() -> Path:
    """The folder with every quick report and the index, run now unless this code's run is cached."""
    folder = ROOT / ".cache" / "docs-studies" / _source_hash()
    if not (folder / "index.html").exists():
        from nablanet.studies.site import run_all

        log.info("running every study (--quick) for the site's reports into %s", folder)
        run_all(folder, quick=True, progress=lambda name: log.info("study %s", name))
    return folder


def on_files(files: Files, config: Any) -> Files:
    folder = _reports()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        uri = f"{SITE_FOLDER}/{path.relative_to(folder).as_posix()}"
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
