"""A study: a question from the source notes, answered by measurement.

Each study is a function ``run(config, out) -> StudyResult`` plus two configurations, ``quick``
(under 2 minutes on 2 cores, what the tests run) and ``full`` (what one would cite). The result
carries tidy records (one row per measurement), figures (matplotlib, drawn from the records), a
verdict computed from the data, and headline numbers. ``run_study`` writes them to a folder:

    records.csv    one row per measurement (written atomically)
    *.png          the figures
    result.json    verdict, headline numbers, configuration, versions
    index.html     one self-contained report (figures embedded), see ``nablanet.studies.report``
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nablanet.train.callbacks import atomic_write_text


@dataclass
class StudyResult:
    """What a study measured: ``records`` (tidy rows), ``figures`` {file stem: matplotlib Figure},
    a ``verdict`` (sentences computed from the data) and ``headline`` numbers for the note."""

    records: list[dict[str, Any]]
    verdict: str
    headline: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    """A registered study: ``name`` (the CLI name), ``question`` (one line), ``notes`` (which source
    notes it comes from), ``run`` and its ``quick`` and ``full`` configurations."""

    name: str
    question: str
    notes: str
    run: Callable[[dict[str, Any]], StudyResult]
    quick: dict[str, Any]
    full: dict[str, Any]

    def config(self, quick: bool = False, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg = dict(self.quick if quick else self.full)
        for key, value in (overrides or {}).items():
            if key not in cfg:
                raise ValueError(f"study {self.name!r} has no setting {key!r}; its settings are {sorted(cfg)}")
            cfg[key] = value
        return cfg


REGISTRY: dict[str, Study] = {}


def register(study: Study) -> Study:
    REGISTRY[study.name] = study
    return study


def config_hash(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able configuration (sorted keys), naming its results."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def versions() -> dict[str, str]:
    import nablanet

    out = {"python": sys.version.split()[0], "numpy": np.__version__, "nablanet": nablanet.__version__,
           "platform": platform.platform()}
    try:
        import matplotlib

        out["matplotlib"] = matplotlib.__version__
    except ImportError:
        pass
    return out


def records_to_csv(records: list[dict[str, Any]], path: Path) -> None:
    """Write tidy rows as CSV (the union of their keys as columns, in first-seen order), atomically."""
    columns: list[str] = []
    for r in records:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(path, buf.getvalue())


def run_study(study: Study, out: str | Path, *, quick: bool = False,
              overrides: dict[str, Any] | None = None) -> tuple[StudyResult, Path]:
    """Run ``study`` and write records.csv, the PNG figures, result.json and index.html into ``out``."""
    from nablanet.studies.report import write_report

    cfg = study.config(quick, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = study.run(cfg)
    seconds = time.perf_counter() - t0
    records_to_csv(result.records, out / "records.csv")
    figure_files: dict[str, str] = {}
    for stem, fig in result.figures.items():
        fig.savefig(out / f"{stem}.png", dpi=100)
        figure_files[stem] = f"{stem}.png"
        import matplotlib.pyplot as plt

        plt.close(fig)
    meta = {"study": study.name, "question": study.question, "notes": study.notes, "quick": quick,
            "config": cfg, "config_hash": config_hash(cfg), "verdict": result.verdict,
            "headline": result.headline, "seconds": round(seconds, 2), "versions": versions(),
            "figures": figure_files, "captions": result.captions,
            "command": f"nablanet study {study.name}" + (" --quick" if quick else "")
            + "".join(f" --set {k}={json.dumps(v)}" for k, v in (overrides or {}).items())}
    atomic_write_text(out / "result.json", json.dumps(meta, indent=2, default=_json_default))
    write_report(meta, out)
    return result, out


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (studies draw to files)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("nablanet studies draw figures with matplotlib: pip install matplotlib") from exc
    return plt
