"""A study: a question from the source notes, answered by measurement.

Each study is four functions, so that a reader sees the experiment apart from its prose and plots:

    measure(config) -> Records                 the experiment: tidy rows, one per measurement
    verdict(records, config) -> Verdict        sentences and headline numbers computed from the rows
    figures(records, config) -> {stem: Figure} matplotlib figures drawn from the rows, with captions
    answer(records, config) -> Answer          the answer in plain words (at most three numbers) and
                                               the stem of the one figure that shows it

plus two configurations, ``quick`` (under 2 minutes on 2 cores, what the tests run) and ``full``
(what one would cite). ``Study.run`` composes them into a ``StudyResult``; ``run_study`` writes it
to a folder:

    records.csv    one row per measurement (written atomically)
    *.png          the figures
    result.json    verdict, headline numbers, configuration, versions
    numbers.csv    the headline numbers (name, value), the report's folded table
    index.html     one self-contained report (figures embedded), see ``nablanet.studies.report``

A sweep measures and judges each cell and draws figures only when asked. Every file goes through
``nablanet._io`` (atomic, the user's umask), and the folder is created only once the run has
finished: Ctrl-C during the run leaves nothing behind, and Ctrl-C while writing says which files
were written (``StudyInterrupted``).
"""
from __future__ import annotations

import contextlib
import csv
import difflib
import hashlib
import io
import json
import platform
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from nablanet._io import atomic_savefig, atomic_write_text
from nablanet.studies.settings import COMMON, Check, check_override, example
from nablanet.train.interrupts import Interrupted, propagate_interrupts


@dataclass
class StudyResult:
    """What a study measured: ``records`` (tidy rows), ``figures`` {file stem: matplotlib Figure},
    a ``verdict`` (sentences computed from the data) and ``headline`` numbers for the note.

    ``fallback``: set when the run used other data than its configuration asked for (MNIST absent,
    so the digits); one sentence that says so and how to get the data. The verdict is made to open
    with it (here, wherever the result is built), and the report's first line is it: a reader must
    not mistake the numbers for MNIST's.
    """

    records: list[dict[str, Any]]
    verdict: str
    headline: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    fallback: str | None = None
    answer: Answer | None = None

    def __post_init__(self) -> None:
        if self.fallback and not self.verdict.startswith(self.fallback):
            self.verdict = f"{self.fallback} {self.verdict}"
        if self.fallback and self.answer is not None and not self.answer.text.startswith(self.fallback):
            self.answer = self.answer._replace(text=f"{self.fallback} {self.answer.text}")


@dataclass
class Records:
    """What ``measure`` returns: the tidy ``rows`` (one dict per measurement, written to records.csv)
    and ``fallback``, one sentence when the run used other data than its configuration asked for
    (MNIST absent, so the digits), saying so and how to get the data."""

    rows: list[dict[str, Any]]
    fallback: str | None = None


class Verdict(NamedTuple):
    """What ``verdict`` returns: the ``text`` (sentences computed from the rows) and the ``headline``
    numbers it rests on (name → value, for result.json and the note)."""

    text: str
    headline: dict[str, Any]


class Answer(NamedTuple):
    """What ``answer`` returns: ``text``, one to three sentences in plain words that a student can read,
    with at most three numbers (the verdict carries the rest), and ``figure``, the stem (a key of
    ``figures``) of the one figure that shows it. The report opens with both."""

    text: str
    figure: str


class Figure(NamedTuple):
    """One figure of ``figures``: the matplotlib Figure and the caption the report prints under it."""

    figure: Any
    caption: str


Measure = Callable[[dict[str, Any]], Records]
Judge = Callable[[Records, dict[str, Any]], Verdict]
Draw = Callable[[Records, dict[str, Any]], dict[str, Figure]]
Answerer = Callable[[Records, dict[str, Any]], Answer]


@dataclass(frozen=True)
class Study:
    """A registered study: ``name`` (the CLI name), ``question`` (one line), ``notes`` (which source
    notes it comes from), its parts ``measure``, ``verdict``, ``figures`` and ``answer`` (see the module's
    docstring), its ``quick`` and ``full`` configurations, and ``method``: how it knows, in two to four
    plain sentences (the report's "How we know" opens with it).

    ``checks``: what a setting accepts beyond its default's type (see ``nablanet.studies.settings``;
    ``COMMON`` covers the names every study shares). ``validate(config)``: raises ValueError where
    settings do not fit together. ``fetch(config)``: downloads the data ``measure`` will read under
    that configuration (``nablanet study NAME --download``) and says where they are (None: nothing to
    fetch); ``data_root``: the setting that names that folder (``--data-root``).
    """

    name: str
    question: str
    notes: str
    measure: Measure
    verdict: Judge
    figures: Draw
    quick: dict[str, Any]
    full: dict[str, Any]
    checks: dict[str, Check] = field(default_factory=dict)
    validate: Callable[[dict[str, Any]], None] | None = None
    fetch: Callable[[dict[str, Any]], str | None] | None = None
    data_root: str | None = None
    answer: Answerer | None = None
    method: str = ""

    def run(self, config: dict[str, Any], *, figures: bool = True) -> StudyResult:
        """Measure, judge, answer and (when ``figures``) draw under ``config``, an already checked
        configuration."""
        records = self.measure(config)
        text, headline = self.verdict(records, config)
        answer = self.answer(records, config) if self.answer is not None else None
        drawn = {}
        if figures:
            with figure_style():
                drawn = self.figures(records, config)
        if answer is not None and len(numbers_in(answer.text)) > 3:
            raise ValueError(f"study {self.name!r}: its answer quotes {numbers_in(answer.text)}; an answer carries at "
                             "most three numbers (the verdict carries the rest)")
        if answer is not None and drawn and answer.figure not in drawn:
            raise ValueError(f"study {self.name!r}: its answer shows figure {answer.figure!r}, which it does not "
                             f"draw (its figures: {sorted(drawn)})")
        return StudyResult(records.rows, text, headline, {k: f.figure for k, f in drawn.items()},
                           {k: f.caption for k, f in drawn.items()}, fallback=records.fallback, answer=answer)

    def config(self, quick: bool = False, overrides: dict[str, Any] | None = None, *,
               flag: str = "") -> dict[str, Any]:
        """The quick or full configuration with ``overrides`` applied, each checked against its default.

        ``flag`` ("--set") is how the overrides were given, for the messages of a bad one.
        """
        defaults = self.quick if quick else self.full
        cfg = dict(defaults)
        for key, value in (overrides or {}).items():
            if key not in cfg:
                where = f"{example(key, value, flag)}: " if flag else ""
                close = difflib.get_close_matches(key, cfg, n=1)
                guess = f"did you mean {close[0]!r}? " if close else ""
                raise ValueError(f"{where}study {self.name!r} has no setting {key!r}; {guess}its settings are "
                                 f"{sorted(cfg)}")
            check = self.checks.get(key, COMMON.get(key, Check()))
            check_override(self.name, key, value, defaults[key], check, quick=quick, flag=flag)
            cfg[key] = value
        if self.validate is not None:
            self.validate(cfg)
        return cfg


_NUMBER = re.compile(r"(?<![\w.])[-+−]?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?%?(?![\w])")


def numbers_in(text: str) -> list[str]:
    """The numbers a reader meets in ``text``: 12, 0.5, 1e-3, 97%, 1,000; not the digits inside a name
    such as mnist1d or ε₁."""
    return _NUMBER.findall(text)


class StudyInterrupted(Interrupted):
    """Ctrl-C during ``run_study``; the message says what was written (``written``: those files)."""

    def __init__(self, message: str, written: list[Path]) -> None:
        super().__init__(message)
        self.written = written


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


def records_to_csv(records: list[dict[str, Any]], path: Path) -> Path:
    """Write tidy rows as CSV (the union of their keys as columns, in first-seen order), atomically."""
    columns: list[str] = []
    for r in records:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return atomic_write_text(path, buf.getvalue(), what=f"the table {path.name}")


def run_study(study: Study, out: str | Path, *, quick: bool = False,
              overrides: dict[str, Any] | None = None) -> tuple[StudyResult, Path]:
    """Run ``study`` and write records.csv, the PNG figures, result.json and index.html into ``out``.

    Ctrl-C raises ``StudyInterrupted``: during the run (a ``fit`` inside stops cleanly and ends the
    study, see ``propagate_interrupts``) nothing has been written, not even the folder; while
    writing, the message lists the files already in place.
    """
    cfg = study.config(quick, overrides)
    out = Path(out)
    t0 = time.perf_counter()
    try:
        with propagate_interrupts():
            result = study.run(cfg)
    except KeyboardInterrupt:
        raise StudyInterrupted(f"interrupted during the run, after {time.perf_counter() - t0:.0f} s; nothing was "
                               f"written to {out}", []) from None
    seconds = time.perf_counter() - t0
    written: list[Path] = []
    try:
        _write(study, result, cfg, seconds, out, quick, overrides, written)
    except KeyboardInterrupt:
        kept = ", ".join(p.name for p in written) or "nothing"
        raise StudyInterrupted(f"interrupted while writing the results: {out} holds {kept}, but not the complete "
                               "report; run the study again to write it", written) from None
    return result, out


def _write(study: Study, result: StudyResult, cfg: dict[str, Any], seconds: float, out: Path, quick: bool,
           overrides: dict[str, Any] | None, written: list[Path]) -> None:
    """Write the files in the order a reader needs them, appending each to ``written`` once in place."""
    from nablanet.studies.report import write_report

    written.append(records_to_csv(result.records, out / "records.csv"))
    written.append(records_to_csv([{"name": k, "value": v} for k, v in result.headline.items()],
                                  out / "numbers.csv"))
    figure_files: dict[str, str] = {}
    for stem, fig in result.figures.items():
        written.append(save_figure(fig, out / f"{stem}.png"))
        figure_files[stem] = f"{stem}.png"
    meta = {"study": study.name, "question": study.question, "notes": study.notes, "method": study.method,
            "answer": None if result.answer is None else result.answer.text,
            "answer_figure": None if result.answer is None else result.answer.figure, "quick": quick,
            "config": cfg, "config_hash": config_hash(cfg), "fallback": result.fallback, "verdict": result.verdict,
            "headline": result.headline, "seconds": round(seconds, 2), "versions": versions(),
            "figures": figure_files, "captions": result.captions,
            "command": f"nablanet study {study.name}" + (" --quick" if quick else "")
            + "".join(f" {example(k, v, '--set')}" for k, v in (overrides or {}).items())}
    written.append(atomic_write_text(out / "result.json", json.dumps(meta, indent=2, default=_json_default),
                                     what="the study's result.json"))
    written.append(write_report(meta, out))


def save_figure(fig: Any, path: Path) -> Path:
    """Save a matplotlib figure as PNG, atomically and with the user's umask, and close it. In the studies'
    style: matplotlib reads a colour named by its place in the cycle ("C3") when it draws, at the save."""
    import matplotlib.pyplot as plt

    try:
        with figure_style():
            return atomic_savefig(path, fig, dpi=100)
    finally:
        plt.close(fig)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
"""Okabe and Ito's eight colours, told apart with every common colour-vision deficiency: the studies'
colour cycle (C0 blue, C1 orange, C2 green, C3 vermilion, ...)."""


@contextlib.contextmanager
def blas_threads(limit: int | None, study: str, setting: str | None = "blas_threads") -> Iterator[None]:
    """Limit BLAS to ``limit`` threads inside the block (threadpoolctl); None changes nothing. ``study`` and
    ``setting`` (the study's option for the limit, None if it has none) name the asker in the error that a
    missing threadpoolctl raises."""
    if limit is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError as exc:
        asked = f"got {setting}={limit}" if setting else f"limits BLAS to {limit} thread(s)"
        fix = f", or pass --set {setting}=null." if setting else "."
        raise ImportError(f"the {study} study {asked}, which needs threadpoolctl (installed with "
                          f"scikit-learn). Fix: pip install threadpoolctl{fix}") from exc
    with threadpool_limits(limits=limit, user_api="blas"):
        yield


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """The studies' figure style for the block: the colour-blind-safe cycle and legible font sizes."""
    plt = pyplot()
    from cycler import cycler

    with plt.rc_context({"axes.prop_cycle": cycler(color=OKABE_ITO), "font.size": 10, "axes.titlesize": 10,
                         "figure.titlesize": 12, "figure.titleweight": "bold"}):
        yield


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (studies draw to files)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("nablanet studies draw figures with matplotlib: pip install matplotlib") from exc
    return plt

