"""``nablanet sweep``: a study over a grid of settings x seeds, in processes or on a Dask cluster."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nablanet.cli._args import _HelpFormatter, _sweep_flags


def add_parser(sub: Any) -> None:
    sw = sub.add_parser(
        "sweep",
        help="run a study over a grid of settings x seeds, in parallel or on a Dask cluster",
        description="Run the sweep described by a TOML file (study, quick, seeds, out, retries, figures, [set], "
                    "[grid]; see nablanet.studies.sweep). Finished cells are kept under OUT/cells/<hash> and "
                    "skipped by a rerun; OUT/summary.csv has one row per cell, OUT/medians.csv the medians over "
                    "seeds. Ctrl-C, or losing the Dask scheduler, keeps the finished cells and writes the summary of "
                    "them: the same command then runs the rest.",
        formatter_class=_HelpFormatter,
    )
    sw.add_argument("config", type=Path, help="the sweep's TOML file")
    sw.add_argument("--out", type=Path, default=None, help="output folder; unset: the config's out")
    _sweep_flags(sw, "")
    sw.add_argument("--json", action="store_true", help="print the summary rows as JSON")


def sweep_command(args: argparse.Namespace) -> dict[str, Any]:
    import dataclasses

    from nablanet.studies._sweep_folder import check_writable
    from nablanet.studies.sweep import load_config, run_sweep  # importing nablanet.studies registers them

    config = load_config(args.config)
    if args.out is not None:
        config = dataclasses.replace(config, out=args.out)
        check_writable(config.out, "--out", "pass --out a folder you can write to")
    else:
        check_writable(config.out, f"out in {args.config}",
                       f"set out in {args.config} (or pass --out) to a folder you can write to")
    rows = run_sweep(config, n_jobs=args.jobs, scheduler=args.scheduler, quiet=args.quiet)
    medians = config.out / "medians.csv"
    return {"study": config.study, "cells": len(rows), "summary": str(config.out / "summary.csv"),
            "medians": str(medians) if medians.exists() else None, "rows": rows}


def run(args: argparse.Namespace) -> int:
    result = sweep_command(args)
    print(json.dumps(result["rows"], default=str) if args.json else
          f"{result['study']}: {result['cells']} cells in {result['summary']}"
          + (f", medians over seeds in {result['medians']}" if result["medians"] else ""))
    return 0
