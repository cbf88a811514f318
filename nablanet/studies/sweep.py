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

Failures. With joblib (the default, ``n_jobs`` processes, all CPUs unless told), a cell that raises is
run again in the next round, up to ``retries`` more times; a worker process that dies breaks its
round, and every cell of that round that had not come back is run again (each charged one
attempt). With Dask (``scheduler="tcp://host:port"``) each cell is submitted with
``retries=retries``, and the scheduler itself reschedules the cells of a worker that dies. Cells
still failing are listed in ``out/failures.json`` and raise ``SweepError`` after the summary of the
finished cells is written.

Outputs. ``out/summary.csv``: one row per cell, in sweep order: ``cell`` (the hash), the grid
settings, ``seed`` and the study's headline numbers (no timings, so equal sweeps give identical
files). With more than one seed, ``out/medians.csv``: for each grid point and each numeric headline
number q, the median, quartiles and range of q over the seeds (``spread``).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import time
import tomllib
import traceback
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from nablanet.studies.base import (
    REGISTRY,
    Study,
    _json_default,
    config_hash,
    pyplot,
    records_to_csv,
    versions,
)
from nablanet.train.callbacks import atomic_write_text

_KEYS = ("study", "quick", "seeds", "out", "retries", "figures", "set", "grid")


class SweepError(RuntimeError):
    """Some cells still failed after their retries. ``summary`` holds the rows of the finished cells
    (also in out/summary.csv), ``failures`` maps each failed cell's hash to its last error."""

    def __init__(self, message: str, summary: list[dict[str, Any]], failures: dict[str, str]) -> None:
        super().__init__(message)
        self.summary = summary
        self.failures = failures


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep: ``study`` over the product of ``grid`` values and ``seeds`` (None: the study's
    own seed), with ``fixed`` settings for every cell, from its ``quick`` or full configuration,
    into the folder ``out``."""

    study: str
    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    quick: bool = False
    out: Path = Path("sweeps")
    retries: int = 2
    figures: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "sweep config",
                  default_out: str | Path = "sweeps/sweep") -> SweepConfig:
        """Validate a parsed TOML table; errors are ``ValueError`` naming ``source`` and the key."""
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; a sweep config has {list(_KEYS)}")
        study = data.get("study")
        if not isinstance(study, str):
            raise ValueError(f'{source}: expected study = "NAME" (nablanet study --list shows the names)')
        grid = data.get("grid", {})
        if not isinstance(grid, Mapping):
            raise ValueError(f"{source}: [grid] must be a table of setting = [values]")
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{source}: grid {key} = {values!r}: expected a non-empty list of values, "
                                 f"e.g. {key} = [{values!r}]")
            texts = [json.dumps(v, sort_keys=True, default=str) for v in values]
            if len(set(texts)) < len(texts):
                raise ValueError(f"{source}: grid {key} = {values!r} lists a value twice")
        fixed = data.get("set", {})
        if not isinstance(fixed, Mapping):
            raise ValueError(f"{source}: [set] must be a table of setting = value")
        both = sorted(set(grid) & set(fixed))
        if both:
            raise ValueError(f"{source}: {both} both in [grid] and [set]; keep each setting in one")
        if "seed" in grid or "seed" in fixed:
            raise ValueError(f"{source}: choose seeds with the top-level key seeds = [0, 1, 2] (or seeds = 3), "
                             "not in [grid] or [set]")
        for key, kind in (("quick", bool), ("figures", bool), ("retries", int), ("out", str)):
            if key in data and not isinstance(data[key], kind):
                raise ValueError(f"{source}: {key} = {data[key]!r}: expected a {kind.__name__}")
        retries = data.get("retries", 2)
        if retries < 0:
            raise ValueError(f"{source}: retries = {retries}: expected 0 or more")
        return cls(study=study, grid={k: list(v) for k, v in grid.items()}, seeds=_seeds(data.get("seeds"), source),
                   fixed=dict(fixed), quick=data.get("quick", False), out=Path(data.get("out", default_out)),
                   retries=retries, figures=data.get("figures", False))


def _seeds(value: Any, source: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"{source}: seeds = {value}: expected a positive count or a list of ints")
        return tuple(range(value))
    if (isinstance(value, list) and value
            and all(isinstance(s, int) and not isinstance(s, bool) for s in value)):
        if len(set(value)) < len(value):
            raise ValueError(f"{source}: seeds = {value} lists a seed twice")
        return tuple(value)
    raise ValueError(f"{source}: seeds = {value!r}: expected a positive count (seeds = 3) or a list of ints")


def load_config(path: str | os.PathLike[str]) -> SweepConfig:
    """Read a sweep config TOML file (see the module docstring); ``out`` defaults to sweeps/<stem>."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    return SweepConfig.from_dict(data, source=str(path), default_out=Path("sweeps") / path.stem)


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: ``settings`` (grid values and seed), the study's full ``config`` and its
    ``key`` = config_hash(config), the name of its results folder."""

    key: str
    settings: dict[str, Any]
    config: dict[str, Any]

    def label(self) -> str:
        return " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in self.settings.items()) or self.key


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
    """Run ``study`` on ``config`` (in a worker); figures become PNG bytes or are dropped."""
    t0 = time.perf_counter()
    result = study.run(dict(config))
    seconds = time.perf_counter() - t0
    pngs: dict[str, bytes] = {}
    if result.figures:
        plt = pyplot()
        for stem, fig in result.figures.items():
            if figures:
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=100)
                pngs[stem] = buf.getvalue()
            plt.close(fig)
    return CellOutput(result.records, result.verdict, result.headline, result.captions, pngs, seconds)


def _attempt(study: Study, key: str, config: dict[str, Any], figures: bool) -> tuple[str, CellOutput | None, str]:
    """``compute_cell`` for joblib: an exception comes back as text instead of ending the sweep."""
    try:
        return key, compute_cell(study, config, figures), ""
    except Exception as exc:
        return key, None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"


def _command(study: Study, sweep: SweepConfig, cell: Cell) -> str:
    sets = {**sweep.fixed, **cell.settings}
    return (f"nablanet study {study.name}" + (" --quick" if sweep.quick else "")
            + "".join(f" --set {k}={json.dumps(v, default=str)}" for k, v in sets.items()))


def write_cell(out: Path, study: Study, sweep: SweepConfig, cell: Cell, output: CellOutput) -> Path:
    """Write a finished cell into ``out/cells/<key>`` atomically (a temporary folder, then a rename)."""
    from nablanet.studies.report import write_report

    folder = out / "cells"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".tmp-{cell.key}-"))
    try:
        records_to_csv(output.records, tmp / "records.csv")
        for stem, png in output.figures.items():
            (tmp / f"{stem}.png").write_bytes(png)
        meta = {"study": study.name, "question": study.question, "notes": study.notes, "quick": sweep.quick,
                "settings": cell.settings, "config": cell.config, "config_hash": cell.key,
                "verdict": output.verdict, "headline": output.headline, "seconds": round(output.seconds, 2),
                "versions": versions(), "figures": {stem: f"{stem}.png" for stem in output.figures},
                "captions": output.captions, "command": _command(study, sweep, cell)}
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


def _finished(out: Path, cell: Cell) -> bool:
    return (out / "cells" / cell.key / "result.json").is_file()


class _Progress:
    """A tqdm bar over cells when tqdm is installed and stderr is a terminal, else one line per
    finished or failed cell on stderr; nothing when quiet."""

    def __init__(self, total: int, finished: int, quiet: bool) -> None:
        self.total, self.count, self.quiet = total, finished, quiet
        self.stream: TextIO = sys.stderr
        self.bar: Any = None
        if quiet:
            return
        if self.stream.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=finished, unit="cell", desc="sweep", file=self.stream)
            except ImportError:
                pass
        if finished and self.bar is None:
            self._line(f"{finished} of {total} cells already finished")

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def done(self, cell: Cell, seconds: float) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(cell.label(), refresh=True)
        else:
            self._line(f"[{self.count}/{self.total}] {cell.label()}  ({seconds:.1f} s)")

    def failed(self, cell: Cell, error: str, retry: bool) -> None:
        what = "failed, retrying" if retry else "failed"
        self._line(f"[{self.count}/{self.total}] {cell.label()} {what}: {error.splitlines()[0]}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run_local(study: Study, sweep: SweepConfig, pending: list[Cell], out: Path, progress: _Progress,
               n_jobs: int | None) -> dict[str, str]:
    """Rounds of joblib runs over the cells still owed. A cell is charged an attempt when it is
    dispatched (at most n_jobs at a time), so when a worker dies only the cells in flight are charged;
    the rest wait for the next round uncharged."""
    try:
        from joblib import Parallel, delayed
    except ImportError as exc:
        raise ImportError("a sweep runs its cells with joblib: pip install 'nablanet[sweep]'") from exc

    attempts = dict.fromkeys((c.key for c in pending), 0)
    errors: dict[str, str] = {}
    todo = list(pending)
    while todo:
        left = {c.key: c for c in todo}
        dispatched: set[str] = set()

        def tasks(round_cells: list[Cell] = todo, dispatched: set[str] = dispatched) -> Iterator[Any]:
            for c in round_cells:
                dispatched.add(c.key)
                attempts[c.key] += 1
                yield delayed(_attempt)(study, c.key, c.config, sweep.figures)

        jobs = min(n_jobs or os.cpu_count() or 1, len(todo))
        parallel = Parallel(n_jobs=jobs, return_as="generator_unordered", pre_dispatch="n_jobs", batch_size=1)
        results = iter(parallel(tasks()))
        while True:
            try:
                key, output, error = next(results)
            except StopIteration:
                break
            except Exception as exc:  # a worker died (loky's TerminatedWorkerError) or the pool broke
                error = f"its worker process died: {type(exc).__name__}: {str(exc).split('. ')[0]}"
                for key in sorted(dispatched & set(left), key=list(left).index):
                    errors[key] = error
                    progress.failed(left[key], error, retry=attempts[key] <= sweep.retries)
                break
            cell = left.pop(key)
            if output is not None:
                write_cell(out, study, sweep, cell, output)
                errors.pop(key, None)
                progress.done(cell, output.seconds)
            else:
                errors[key] = error
                progress.failed(cell, error, retry=attempts[key] <= sweep.retries)
        todo = [c for c in todo if c.key not in dispatched or (c.key in errors and attempts[c.key] <= sweep.retries)]
    return errors


def _run_dask(study: Study, sweep: SweepConfig, pending: list[Cell], out: Path, progress: _Progress,
              scheduler: Any) -> dict[str, str]:
    """Submit every cell to a Dask cluster with ``retries``; write each as it comes back."""
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise ImportError("a sweep on a Dask scheduler needs dask.distributed: pip install 'nablanet[sweep]'") from exc
    own = not isinstance(scheduler, Client)
    client = Client(scheduler, timeout="20s") if own else scheduler
    errors: dict[str, str] = {}
    try:
        futures = {client.submit(compute_cell, study, c.config, sweep.figures, retries=sweep.retries, pure=False,
                                 key=f"nablanet-cell-{c.key}-{uuid.uuid4().hex[:8]}"): c for c in pending}
        for future in as_completed(futures):
            cell = futures[future]
            if future.status == "finished":
                output = future.result()
                write_cell(out, study, sweep, cell, output)
                progress.done(cell, output.seconds)
            else:
                failure = future.exception()
                errors[cell.key] = f"{type(failure).__name__}: {failure}"
                progress.failed(cell, errors[cell.key], retry=False)
            future.release()
    finally:
        if own:
            client.close()
    return errors


def _claim(out: Path, sweep: SweepConfig) -> None:
    """Record what the folder holds (sweep.json); refuse a folder that holds another study's sweep."""
    path = out / "sweep.json"
    if path.is_file():
        held = json.loads(path.read_text()).get("study")
        if held != sweep.study:
            raise ValueError(f"{out} holds a sweep of study {held!r}, not {sweep.study!r}; choose another out folder")
    meta = {"study": sweep.study, "quick": sweep.quick, "seeds": sweep.seeds, "set": sweep.fixed,
            "grid": sweep.grid, "retries": sweep.retries, "figures": sweep.figures}
    atomic_write_text(path, json.dumps(meta, indent=2, default=str))
    for tmp in (out / "cells").glob(".tmp-*"):  # cells that were in flight when a run was killed
        shutil.rmtree(tmp, ignore_errors=True)


def summarize(out: Path, all_cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """One row per finished cell, in sweep order: cell hash, settings, headline numbers."""
    rows = []
    for cell in all_cells:
        if _finished(out, cell):
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


def run_sweep(sweep: SweepConfig | str | os.PathLike[str], *, n_jobs: int | None = None, scheduler: Any = None,
              quiet: bool = False) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``sweep`` (a ``SweepConfig`` or the path of its TOML file) and
    return the summary rows (also written to out/summary.csv; out/medians.csv with several seeds).

    ``n_jobs``: joblib worker processes (default: all CPUs). ``scheduler``: a Dask scheduler address
    such as "tcp://127.0.0.1:8786" or a ``distributed.Client``; the cells then run on that cluster.
    Raises ``SweepError`` when cells still fail after ``sweep.retries`` retries."""
    if not isinstance(sweep, SweepConfig):
        sweep = load_config(sweep)
    if n_jobs is not None and n_jobs < 1:
        raise ValueError(f"n_jobs={n_jobs}: expected a positive number of processes")
    study = get_study(sweep.study)
    all_cells = cells(sweep)
    out = sweep.out
    (out / "cells").mkdir(parents=True, exist_ok=True)
    _claim(out, sweep)
    pending = [c for c in all_cells if not _finished(out, c)]
    progress = _Progress(len(all_cells), len(all_cells) - len(pending), quiet)
    try:
        if not pending:
            errors: dict[str, str] = {}
        elif scheduler is not None:
            errors = _run_dask(study, sweep, pending, out, progress, scheduler)
        else:
            errors = _run_local(study, sweep, pending, out, progress, n_jobs)
    finally:
        progress.close()
    rows = summarize(out, all_cells)
    if rows:
        records_to_csv(rows, out / "summary.csv")
    if sweep.seeds is not None and len(sweep.seeds) > 1 and rows:
        records_to_csv(spread(rows, list(sweep.grid)), out / "medians.csv")
    failures_path = out / "failures.json"
    if errors:
        failed = [c for c in all_cells if c.key in errors]
        atomic_write_text(failures_path, json.dumps(
            [{"cell": c.key, "settings": c.settings, "error": errors[c.key]} for c in failed], indent=2, default=str))
        first = failed[0]
        raise SweepError(f"{len(failed)} of {len(all_cells)} cells failed after {sweep.retries} retries "
                         f"(first: {first.label()}: {errors[first.key].splitlines()[0]}); see {failures_path}; "
                         f"the {len(rows)} finished cells are in {out / 'summary.csv'}", rows, errors)
    if failures_path.exists():
        failures_path.unlink()
    return rows


def run_seeds(name: str, seeds: int, out: str | os.PathLike[str], *, quick: bool = False,
              overrides: dict[str, Any] | None = None, n_jobs: int | None = None, scheduler: Any = None,
              quiet: bool = False) -> list[dict[str, Any]]:
    """``nablanet study NAME --seeds K``: the study's configuration for seeds 0 … K−1 as a sweep into
    ``out/seeds`` (one cell per seed), and the median, quartiles and range of each headline number
    over the seeds written to ``out/summary.csv`` and returned."""
    overrides = dict(overrides or {})
    if "seed" in overrides:
        raise ValueError("--set seed=… and --seeds both choose the seed; drop one")
    if seeds < 1:
        raise ValueError(f"--seeds {seeds}: expected a positive number of seeds")
    out = Path(out)
    sweep = SweepConfig(study=name, seeds=tuple(range(seeds)), fixed=overrides, quick=quick, out=out / "seeds")
    rows = run_sweep(sweep, n_jobs=n_jobs, scheduler=scheduler, quiet=quiet)
    medians = spread(rows, by=[])
    records_to_csv(medians, out / "summary.csv")
    return medians
