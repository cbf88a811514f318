"""The ``nablanet`` command line with a test study whose cells wait at a gate, for the tests that
stop a sweep from outside (Ctrl-C, a lost Dask scheduler).

    python tests/slow_sweep.py sweep CONFIG.toml ...         nablanet sweep, with slow-sweep registered
    python tests/slow_sweep.py study slow-sweep --seeds K ... nablanet study, likewise
    python tests/slow_sweep.py --cluster FILE                 a Dask scheduler and a worker (8 threads) in
                                                              this one process; its address goes to FILE

The study ``slow-sweep``: cell (a, seed) records its run as a file in the folder ``log``, then
finishes at once when a < open and seed < open, and otherwise waits until the file ``gate`` exists
(at most 60 s). So a test knows exactly which cells finish before it stops the sweep, and lets the
others finish by creating the gate. Run as a script, the study lives in ``__main__``, so joblib and
Dask send its code to their workers by value and the workers need no copy of this file.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Any

from nablanet.studies.base import REGISTRY, Figure, Records, Study, Verdict


def _measure(cfg: dict[str, Any]) -> Records:
    (Path(cfg["log"]) / f"a={cfg['a']},seed={cfg['seed']} {uuid.uuid4().hex}").touch()
    if not (cfg["a"] < cfg["open"] and cfg["seed"] < cfg["open"]):
        deadline = time.monotonic() + 60
        while not Path(cfg["gate"]).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    return Records([{"a": cfg["a"], "seed": cfg["seed"]}])


def _verdict(records: Records, cfg: dict[str, Any]) -> Verdict:
    (row,) = records.rows
    return Verdict("done", {"a2": row["a"] ** 2, "sum": row["a"] + row["seed"]})


def _figures(records: Records, cfg: dict[str, Any]) -> dict[str, Figure]:
    return {}


_SETTINGS = {"a": 0, "seed": 0, "open": 2, "log": "", "gate": ""}
SLOW = Study("slow-sweep", "Which cells finish before the sweep is stopped?", "a test double", _measure, _verdict,
             _figures, quick=dict(_SETTINGS), full=dict(_SETTINGS))


def _cluster(path: Path) -> None:
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=8, processes=False, protocol="tcp://", host="127.0.0.1",
                           dashboard_address=None)
    part = path.with_name(path.name + ".part")
    part.write_text(cluster.scheduler_address)
    part.rename(path)  # whole or absent: the test polls for it
    while True:  # until the test kills this process
        time.sleep(60)


if __name__ == "__main__":
    if sys.argv[1] == "--cluster":
        _cluster(Path(sys.argv[2]))
    REGISTRY[SLOW.name] = SLOW
    from nablanet.cli import main

    sys.exit(main(sys.argv[1:]))
