"""Sweeps: one study run over a grid of settings × seeds, in parallel processes or on a Dask cluster.

A sweep is described by a TOML file (``nablanet sweep config.toml``):

    study = "saturation"          # a registered study (nablanet study --list)
    quick = true                  # start from its quick configuration (default: the full one)
    seeds = [0, 1, 2]             # or seeds = 3 for 0, 1, 2; absent: the study's own seed
    out = "sweeps/saturation"     # relative to the current folder (default: sweeps/<file stem>)
    retries = 2                   # extra attempts for a cell that raises or whose worker dies
    figures = false               # true: each cell also keeps its PNG figures and an index.html
    [set]                         # settings fixed for every cell
    epochs = 10
    [grid]                        # settings to vary: every combination is a cell
    eta = [0.05, 0.15, 0.5]

Cells. The sweep is the product  grid₁ × grid₂ × … × seeds  (grid keys in file order, seeds
innermost). Cell k runs the study on  cₖ = study.config(quick, set ∪ pointₖ ∪ {seed: sₖ}),  and its
results live in ``out/cells/<config_hash(cₖ)>/`` (records.csv, result.json). A study's ``run`` is a
function of its configuration alone (every random number comes from the seeds in it), so the hash
names the result: a rerun skips every cell whose result.json exists, and the same configuration
gives the same numbers locally and on a cluster.

Atomicity. A cell is written into ``out/cells/.tmp-<hash>-…`` and renamed to ``out/cells/<hash>``
only when complete (result.json last), so a killed sweep loses nothing but the cells in flight;
leftover ``.tmp-*`` folders are removed when the next run starts (do not run two sweeps into one
folder at once). The workers only compute: the process that runs the sweep writes every file, so a
Dask cluster needs no file system shared with it.

Starting. Everything is checked before anything is written: the config, every cell's settings, that
``out`` can be written, and (with ``scheduler``) that a Dask scheduler answers at that address within
``connect_timeout`` seconds. A sweep that cannot start leaves no folder behind.

Failures. With joblib (the default, ``n_jobs`` processes, all CPUs unless told), a cell that raises is
run again in the next round, up to ``retries`` more times; a worker process that dies breaks its
round, and every cell of that round that had not come back is run again (each charged one
attempt). With Dask (``scheduler="tcp://host:port"``) each cell is submitted with
``retries=retries``, and the scheduler itself reschedules the cells of a worker that dies. Cells
still failing are listed in ``out/failures.json`` and raise ``SweepError`` after the summary of the
finished cells is written. Losing the scheduler raises ``SchedulerLostError`` (a ``SweepError``),
and Ctrl-C raises ``SweepInterrupted`` (a ``KeyboardInterrupt``), both after the summary of the
finished cells is written: running the same sweep again runs only the cells still owed.

Outputs. ``out/summary.csv``: one row per cell, in sweep order: ``cell`` (the hash), the grid
settings, ``seed`` and the study's headline numbers (no timings, so equal sweeps give identical
files). With more than one seed, ``out/medians.csv``: for each grid point and each numeric headline
number q, the median, quartiles and range of q over the seeds (``spread``).

Parts: ``_sweep_config`` (the TOML file), ``_sweep_cell`` (one cell: its computation and its folder),
``_sweep_folder`` (the out folder), ``_sweep_joblib`` and ``_sweep_dask`` (the two ways to run the
cells), ``_sweep_progress`` (what is shown meanwhile); this module puts them together.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nablanet._io import atomic_write_text
from nablanet.studies import _sweep_dask, _sweep_joblib
from nablanet.studies._sweep_cell import Cell, CellOutput, compute_cell, is_finished, write_cell
from nablanet.studies._sweep_config import SweepConfig, load_config
from nablanet.studies._sweep_folder import check_claim, check_writable, prepare
from nablanet.studies._sweep_progress import Progress
from nablanet.studies.base import REGISTRY, Study, config_hash, records_to_csv
from nablanet.train.interrupts import Interrupted

__all__ = ["Cell", "CellOutput", "SchedulerLostError", "SweepConfig", "SweepError", "SweepInterrupted", "cells",
           "compute_cell", "get_study", "load_config", "run_seeds", "run_sweep", "spread", "summarize"]


class SweepError(RuntimeError):
    """Some cells still failed after their retries. ``summary`` holds the rows of the finished cells
    (also in out/summary.csv), ``failures`` maps each failed cell's hash to its last error."""

    def __init__(self, message: str, summary: list[dict[str, Any]], failures: dict[str, str]) -> None:
        super().__init__(message)
        self.summary = summary
        self.failures = failures


class SchedulerLostError(SweepError):
    """The Dask scheduler went away mid-sweep; ``summary`` holds the rows of the finished cells."""


class SweepInterrupted(Interrupted):
    """Ctrl-C stopped the sweep after the summary of the finished cells was written; ``summary``
    holds their rows, and the message says how many there are and how to go on."""

    def __init__(self, message: str, summary: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.summary = summary


def get_study(name: str) -> Study:
    """The registered study ``name``; a ``ValueError`` listing the studies otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"no study {name!r}; the studies are {sorted(REGISTRY)} (nablanet study --list)")
    return REGISTRY[name]


def cells(sweep: SweepConfig) -> list[Cell]:
    """The sweep's cells in order (grid keys in order, seeds innermost); validates every setting."""
    study = get_study(sweep.study)
    base = study.config(sweep.quick, sweep.fixed)  # unknown [set] keys raise here
    if sweep.seeds is not None and "seed" not in base:
        raise ValueError(f"study {study.name!r} has no 'seed' setting, so seeds cannot vary it; "
                         f"its settings are {sorted(base)}")
    unknown = sorted(set(sweep.grid) - set(base))
    if unknown:
        raise ValueError(f"study {study.name!r} has no setting(s) {unknown} (in [grid]); "
                         f"its settings are {sorted(base)}")
    keys = list(sweep.grid)
    out: list[Cell] = []
    seen: dict[str, Cell] = {}
    for values in itertools.product(*(sweep.grid[k] for k in keys)):
        point = dict(zip(keys, values, strict=True))
        for seed in sweep.seeds if sweep.seeds is not None else (None,):
            overrides = {**sweep.fixed, **point, **({} if seed is None else {"seed": seed})}
            cfg = study.config(sweep.quick, overrides)
            settings = {**point, **({"seed": cfg["seed"]} if "seed" in cfg else {})}
            cell = Cell(config_hash(cfg), settings, cfg)
            if cell.key in seen:
                raise ValueError(f"cells {seen[cell.key].label()} and {cell.label()} have the same configuration")
            seen[cell.key] = cell
            out.append(cell)
    return out


def summarize(out: Path, all_cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """One row per finished cell, in sweep order: cell hash, settings, headline numbers."""
    rows = []
    for cell in all_cells:
        if is_finished(out, cell):
            meta = json.loads((out / "cells" / cell.key / "result.json").read_text())
            rows.append({"cell": cell.key, **cell.settings, **meta["headline"]})
    return rows


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def spread(rows: Sequence[dict[str, Any]], by: Sequence[str]) -> list[dict[str, Any]]:
    """Median, quartiles and range of every numeric headline number over the rows that share the
    settings ``by`` (over the seeds, when ``by`` is the grid keys). One row per group and quantity:
    the ``by`` settings, ``quantity``, ``n`` (rows with a finite number), ``of`` (rows in the group),
    ``median``, ``q25``, ``q75``, ``min``, ``max``."""
    skip = {"cell", "seed", *by}
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(json.dumps([row.get(k) for k in by], default=str), []).append(row)
    out: list[dict[str, Any]] = []
    for group in groups.values():
        quantities: list[str] = []
        for row in group:
            quantities += [k for k in row if k not in skip and k not in quantities]
        for q in quantities:
            values = [v for v in (_number(row.get(q)) for row in group) if v is not None]
            if not values:
                continue
            a = np.asarray(values)
            q25, median, q75 = (float(x) for x in np.percentile(a, [25, 50, 75]))
            out.append({**{k: group[0].get(k) for k in by}, "quantity": q, "n": len(values), "of": len(group),
                        "median": median, "q25": q25, "q75": q75, "min": float(a.min()), "max": float(a.max())})
    return out


def _write_summaries(sweep: SweepConfig, all_cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """out/summary.csv (and out/medians.csv with several seeds) from the finished cells on disk."""
    rows = summarize(sweep.out, all_cells)
    if rows:
        records_to_csv(rows, sweep.out / "summary.csv")
    if sweep.seeds is not None and len(sweep.seeds) > 1 and rows:
        records_to_csv(spread(rows, list(sweep.grid)), sweep.out / "medians.csv")
    return rows


def _kept(rows: Sequence[Any], total: int, summary: Path) -> str:
    if not rows:
        return f"none of the {total} cells had finished"
    return f"{len(rows)} of {total} cells finished and are kept (listed in {summary})"


def _interrupted(finished: int, total: int, unit: str, where: str) -> str:
    """The line Ctrl-C ends a sweep with: what was kept and how to go on."""
    if not finished:
        return f"interrupted (Ctrl-C): none of the {total} {unit} had finished; run the same command again to run them"
    return (f"interrupted (Ctrl-C): {finished} of {total} {unit} finished and are kept ({where}); run the same "
            f"command again to run the other {total - finished} (finished {unit} are skipped)")


def _client(stack: contextlib.ExitStack, scheduler: Any, timeout: float, quiet: bool) -> Any:
    """The Dask client the cells run on (closed with ``stack`` when this sweep connected it), or None:
    joblib, checked to be installed."""
    if scheduler is None:
        _sweep_joblib.check_available()
        return None
    stack.enter_context(_sweep_dask.quieter(_sweep_dask.SILENT if quiet else logging.WARNING))
    if not isinstance(scheduler, str):  # a Client the caller made and closes
        return scheduler
    client = _sweep_dask.connect(scheduler, timeout)
    stack.callback(_sweep_dask.close, client)
    return client


def run_sweep(sweep: SweepConfig | str | os.PathLike[str], *, n_jobs: int | None = None, scheduler: Any = None,
              quiet: bool = False, connect_timeout: float | None = None) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``sweep`` (a ``SweepConfig`` or the path of its TOML file) and
    return the summary rows (also written to out/summary.csv; out/medians.csv with several seeds).

    ``n_jobs``: joblib worker processes (default: all CPUs). ``scheduler``: a Dask scheduler address
    such as "tcp://127.0.0.1:8786" or a ``distributed.Client``; the cells then run on that cluster.
    ``connect_timeout``: seconds for the scheduler to answer (default 20). ``quiet``: no progress
    bar or lines, and nothing from distributed's loggers (which otherwise show warnings and errors).

    Raises ``SweepError`` when cells still fail after ``sweep.retries`` retries,
    ``SchedulerLostError`` when the scheduler goes away and ``SweepInterrupted`` on Ctrl-C, each
    after writing the summary of the finished cells; nothing is written when the sweep cannot start."""
    if not isinstance(sweep, SweepConfig):
        sweep = load_config(sweep)
    timeout = _check_arguments(n_jobs, scheduler, connect_timeout)
    study = get_study(sweep.study)
    all_cells = cells(sweep)
    out = sweep.out
    fix = "set out to a folder you can write to"
    check_writable(out, "out", fix)
    check_claim(out, sweep.study)
    pending = [c for c in all_cells if not is_finished(out, c)]
    with contextlib.ExitStack() as stack:
        client = _client(stack, scheduler, timeout, quiet) if pending else None
        prepare(out, {"study": sweep.study, "quick": sweep.quick, "seeds": sweep.seeds, "set": sweep.fixed,
                      "grid": sweep.grid, "retries": sweep.retries, "figures": sweep.figures}, "out", fix)
        progress = Progress(len(all_cells), len(all_cells) - len(pending), quiet)
        stack.callback(progress.close)

        def done(cell: Cell, output: CellOutput) -> None:
            write_cell(out, study, sweep.quick, sweep.fixed, cell, output)
            progress.done(cell, output.seconds)

        try:
            if not pending:
                errors: dict[str, str] = {}
            elif client is not None:
                errors = _sweep_dask.run(client, study, pending, figures=sweep.figures, retries=sweep.retries,
                                         done=done, failed=progress.failed)
            else:
                errors = _sweep_joblib.run(study, pending, figures=sweep.figures, retries=sweep.retries,
                                           n_jobs=n_jobs, done=done, failed=progress.failed)
        except KeyboardInterrupt:
            rows = _write_summaries(sweep, all_cells)
            raise SweepInterrupted(_interrupted(len(rows), len(all_cells), "cells", f"listed in {out / 'summary.csv'}"),
                                   rows) from None
        except _sweep_dask.SchedulerGoneError as lost:
            rows = _write_summaries(sweep, all_cells)
            raise SchedulerLostError(
                f"lost the Dask scheduler at {lost.address} mid-sweep: "
                f"{_kept(rows, len(all_cells), out / 'summary.csv')}; start the scheduler again (or give "
                "--scheduler another one) and run the same command again: finished cells are skipped",
                rows, {}) from None
    rows = _write_summaries(sweep, all_cells)
    _settle_failures(sweep, all_cells, errors, rows)
    return rows


def _check_arguments(n_jobs: int | None, scheduler: Any, connect_timeout: float | None) -> float:
    """``run_sweep``'s arguments checked before anything is written; the connect timeout to use."""
    if n_jobs is not None and n_jobs < 1:
        raise ValueError(f"n_jobs={n_jobs}: expected a positive number of processes")
    timeout = _sweep_dask.CONNECT_TIMEOUT if connect_timeout is None else connect_timeout
    if not timeout > 0:
        raise ValueError(f"connect_timeout={connect_timeout}: expected a positive number of seconds, e.g. 20")
    if scheduler is not None and not hasattr(scheduler, "submit"):  # an address, not a Client
        problem = _sweep_dask.address_problem(scheduler)
        if problem is not None:
            raise ValueError(f"scheduler={scheduler!r}: {problem}; expected {_sweep_dask.EXPECTED} or a "
                             f"distributed.Client, e.g. {_sweep_dask.EXAMPLE}")
    return timeout


def _settle_failures(sweep: SweepConfig, all_cells: Sequence[Cell], errors: dict[str, str],
                     rows: list[dict[str, Any]]) -> None:
    """Cells still failing: list them in out/failures.json and raise ``SweepError``; none: remove the
    failures.json an earlier run left."""
    failures_path = sweep.out / "failures.json"
    if errors:
        failed = [c for c in all_cells if c.key in errors]
        atomic_write_text(failures_path, json.dumps(
            [{"cell": c.key, "settings": c.settings, "error": errors[c.key]} for c in failed], indent=2, default=str))
        first = failed[0]
        raise SweepError(f"{len(failed)} of {len(all_cells)} cells failed after {sweep.retries} retries "
                         f"(first: {first.label()}: {errors[first.key].splitlines()[0]}); see {failures_path}; "
                         f"the {len(rows)} finished cells are in {sweep.out / 'summary.csv'}", rows, errors)
    if failures_path.exists():
        failures_path.unlink()


def run_seeds(name: str, seeds: int, out: str | os.PathLike[str], *, quick: bool = False,
              overrides: dict[str, Any] | None = None, n_jobs: int | None = None, scheduler: Any = None,
              quiet: bool = False, connect_timeout: float | None = None) -> list[dict[str, Any]]:
    """``nablanet study NAME --seeds K``: the study's configuration for seeds 0 … K−1 as a sweep into
    ``out/seeds`` (one cell per seed), and the median, quartiles and range of each headline number
    over the seeds written to ``out/summary.csv`` and returned. On Ctrl-C, ``out/summary.csv`` holds
    those of the seeds that finished (``SweepInterrupted`` says how many)."""
    overrides = dict(overrides or {})
    if "seed" in overrides:
        raise ValueError("--set seed=… and --seeds both choose the seed; drop one")
    if seeds < 1:
        raise ValueError(f"--seeds {seeds}: expected a positive number of seeds")
    out = Path(out)
    check_writable(out, "--out", "pass --out a folder you can write to")
    sweep = SweepConfig(study=name, seeds=tuple(range(seeds)), fixed=overrides, quick=quick, out=out / "seeds")
    try:
        rows = run_sweep(sweep, n_jobs=n_jobs, scheduler=scheduler, quiet=quiet, connect_timeout=connect_timeout)
    except SweepInterrupted as stop:
        if stop.summary:
            records_to_csv(spread(stop.summary, by=[]), out / "summary.csv")
        where = f"the medians over them are in {out / 'summary.csv'}"
        raise SweepInterrupted(_interrupted(len(stop.summary), seeds, "seeds", where), stop.summary) from None
    medians = spread(rows, by=[])
    records_to_csv(medians, out / "summary.csv")
    return medians
