"""A sweep's cells in joblib worker processes on this machine (the default backend).

Retries. A cell that raises is run again in the next round, up to ``retries`` more times; a worker
process that dies breaks its round, and every cell of that round that had not come back is run
again (each charged one attempt).

Ctrl-C. A terminal sends SIGINT to the whole foreground process group, the workers included. The
workers ignore it (otherwise each prints a traceback of its own); the ``KeyboardInterrupt`` in the
sweep's process leaves the loop here, joblib kills the workers (the cells in flight are dropped: a
worker's result never comes back after it), and the caller keeps the cells written so far.
"""

from __future__ import annotations

import os
import signal
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from nablanet.studies._sweep_cell import Cell, CellOutput, compute_cell
from nablanet.studies.base import Study

Done = Callable[[Cell, CellOutput], None]
Failed = Callable[[Cell, str, bool], None]


def check_available() -> None:
    """Raise ImportError saying what to install when joblib is missing (before anything is written)."""
    try:
        import joblib  # noqa: F401
    except ImportError as exc:
        raise ImportError("a sweep runs its cells with joblib: pip install 'nablanet[sweep]'") from exc


def _ignore_ctrl_c() -> None:
    """A worker's initializer: the sweep's own process handles Ctrl-C and stops the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _attempt(study: Study, key: str, config: dict[str, Any], figures: bool) -> tuple[str, CellOutput | None, str]:
    """``compute_cell`` for joblib: an exception comes back as text instead of ending the sweep."""
    try:
        return key, compute_cell(study, config, figures), ""
    except Exception as exc:
        return key, None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"


def run(study: Study, pending: list[Cell], *, figures: bool, retries: int, n_jobs: int | None, done: Done,
        failed: Failed) -> dict[str, str]:
    """Rounds of joblib runs over the cells still owed; returns {key: last error} of the cells that
    still fail. ``done(cell, output)`` is called for each finished cell as it comes back.

    A cell is charged an attempt when it is dispatched (at most n_jobs at a time), so when a worker
    dies only the cells in flight are charged; the rest wait for the next round uncharged."""
    from joblib import Parallel, delayed
    from joblib.parallel import LokyBackend

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
                yield delayed(_attempt)(study, c.key, c.config, figures)

        jobs = min(n_jobs or os.cpu_count() or 1, len(todo))
        parallel = Parallel(n_jobs=jobs, backend=LokyBackend(initializer=_ignore_ctrl_c),
                            return_as="generator_unordered", pre_dispatch="n_jobs", batch_size=1)
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
                    failed(left[key], error, attempts[key] <= retries)
                break
            cell = left.pop(key)
            if output is not None:
                done(cell, output)
                errors.pop(key, None)
            else:
                errors[key] = error
                failed(cell, error, attempts[key] <= retries)
        todo = [c for c in todo if c.key not in dispatched or (c.key in errors and attempts[c.key] <= retries)]
    return errors
