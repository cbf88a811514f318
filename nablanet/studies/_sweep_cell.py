"""One cell of a sweep: its configuration, the computation a worker runs, and its folder on disk.

A cell's results live in ``out/cells/<key>`` (key = config_hash of the study's configuration). The
folder is written under a temporary name and renamed when complete (result.json last), so a folder
named by its key with a result.json in it is a finished cell, and nothing else is.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nablanet._io import current_umask
from nablanet.studies.base import Study, _json_default, figure_style, pyplot, records_to_csv, versions
from nablanet.train.interrupts import propagate_interrupts


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: ``settings`` (grid values and seed), the study's full ``config`` and its
    ``key`` = config_hash(config), the name of its results folder."""

    key: str
    settings: dict[str, Any]
    config: dict[str, Any]

    def label(self) -> str:
        return " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in self.settings.items()) or self.key


@dataclass
class CellOutput:
    """What a worker sends back for one cell: the study's result, its figures as PNG bytes (when
    asked for) and the seconds ``study.run`` took."""

    records: list[dict[str, Any]]
    verdict: str
    headline: dict[str, Any]
    captions: dict[str, str]
    figures: dict[str, bytes]
    seconds: float


def compute_cell(study: Study, config: dict[str, Any], figures: bool = False) -> CellOutput:
    """Run ``study`` on ``config`` (in a worker); with ``figures`` it draws them as PNG bytes, else it
    draws none.

    A ``fit`` stopped by Ctrl-C inside the study raises instead of returning the run so far, so an
    interrupted cell never comes back as a finished one."""
    t0 = time.perf_counter()
    with propagate_interrupts():
        result = study.run(dict(config), figures=figures)
    seconds = time.perf_counter() - t0
    pngs: dict[str, bytes] = {}
    if result.figures:
        plt = pyplot()
        for stem, fig in result.figures.items():
            buf = io.BytesIO()
            with figure_style():  # a colour named "C3" is read at the save
                fig.savefig(buf, format="png", dpi=100)
            pngs[stem] = buf.getvalue()
            plt.close(fig)
    return CellOutput(result.records, result.verdict, result.headline, result.captions, pngs, seconds)


def command(study: Study, quick: bool, fixed: dict[str, Any], cell: Cell) -> str:
    """The ``nablanet study`` command line that reruns this cell alone."""
    sets = {**fixed, **cell.settings}
    return (f"nablanet study {study.name}" + (" --quick" if quick else "")
            + "".join(f" --set {k}={json.dumps(v, default=str)}" for k, v in sets.items()))


def write_cell(out: Path, study: Study, quick: bool, fixed: dict[str, Any], cell: Cell, output: CellOutput) -> Path:
    """Write a finished cell into ``out/cells/<key>`` atomically (a temporary folder, then a rename)."""
    from nablanet.studies.report import write_report

    folder = out / "cells"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".tmp-{cell.key}-"))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp gives 0700; a cell folder is as open as mkdir makes it
        records_to_csv(output.records, tmp / "records.csv")
        for stem, png in output.figures.items():
            (tmp / f"{stem}.png").write_bytes(png)
        meta = {"study": study.name, "question": study.question, "notes": study.notes, "quick": quick,
                "settings": cell.settings, "config": cell.config, "config_hash": cell.key,
                "verdict": output.verdict, "headline": output.headline, "seconds": round(output.seconds, 2),
                "versions": versions(), "figures": {stem: f"{stem}.png" for stem in output.figures},
                "captions": output.captions, "command": command(study, quick, fixed, cell)}
        if output.figures:
            write_report(meta, tmp)
        (tmp / "result.json").write_text(json.dumps(meta, indent=2, default=_json_default))
        final = folder / cell.key
        if final.exists():  # an incomplete folder (no result.json), e.g. left by hand
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def is_finished(out: Path, cell: Cell) -> bool:
    return (out / "cells" / cell.key / "result.json").is_file()
