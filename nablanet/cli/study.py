"""``nablanet study``: run one study (or one study over seeds) and write its report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nablanet.cli._args import _positive_int, _sweep_flags


def add_parser(sub: Any) -> None:
    st = sub.add_parser(
        "study",
        help="answer a question from the source notes by measurement: figures and an HTML report",
        description="Run a study (nablanet study --list shows them) and write records.csv, PNG figures, "
                    "result.json and a self-contained index.html into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    st.add_argument("name", nargs="?", default=None, help="the study to run")
    st.add_argument("--list", action="store_true", help="list the studies, one line each")
    st.add_argument("--quick", action="store_true", help="the small configuration (under 2 minutes on 2 cores)")
    st.add_argument("--out", type=Path, default=None, help="output folder (default: studies/NAME)")
    st.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                    help="override a setting of the study's configuration (VALUE is JSON, e.g. --set seed=3)")
    st.add_argument("--json", action="store_true", help="print the result (verdict, numbers, files) as JSON")
    st.add_argument("--seeds", type=_positive_int, default=None, metavar="K",
                    help="run the configuration for seeds 0..K-1 as a sweep (cells in OUT/seeds) and report the "
                         "median and range of each headline number over the seeds (OUT/summary.csv)")
    _sweep_flags(st, "with --seeds: ")


def _overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set seed=3")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def study_command(args: argparse.Namespace) -> dict[str, Any]:
    from nablanet import studies

    if args.list or args.name is None:
        width = max(len(n) for n in studies.REGISTRY)
        for name, study in sorted(studies.REGISTRY.items()):
            print(f"{name:<{width}}  {study.question}")
        return {}
    if args.name not in studies.REGISTRY:
        raise ValueError(f"no study {args.name!r}; the studies are {sorted(studies.REGISTRY)} (nablanet study --list)")
    out = args.out if args.out is not None else Path("studies") / args.name
    if args.seeds is not None:
        from nablanet.studies.sweep import run_seeds

        medians = run_seeds(args.name, args.seeds, out, quick=args.quick, overrides=_overrides(args.overrides),
                            n_jobs=args.jobs, scheduler=args.scheduler, quiet=args.quiet)
        return {"study": args.name, "seeds": args.seeds, "medians": medians, "summary": str(out / "summary.csv"),
                "per_seed": str(out / "seeds" / "summary.csv")}
    result, folder = studies.run_study(studies.REGISTRY[args.name], out, quick=args.quick,
                                       overrides=_overrides(args.overrides))
    return {"study": args.name, "verdict": result.verdict, "headline": result.headline, "out": str(folder),
            "report": str(folder / "index.html")}


def _medians_table(result: dict[str, Any]) -> str:
    """The text ``nablanet study NAME --seeds K`` prints: median [min, max] of each headline number."""
    rows = result["medians"]
    width = max((len(r["quantity"]) for r in rows), default=0)
    lines = [f"{result['study']}, seeds 0..{result['seeds'] - 1}: median [min, max] of each headline number"]
    for r in rows:
        missing = f"  ({r['n']} of {r['of']} seeds gave a number)" if r["n"] < r["of"] else ""
        lines.append(f"  {r['quantity']:<{width}}  {r['median']:>9.4g}  [{r['min']:.4g}, {r['max']:.4g}]{missing}")
    lines.append(f"summary: {result['summary']}  (per seed: {result['per_seed']})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    result = study_command(args)
    if result and args.json:
        print(json.dumps(result, default=str))
    elif result:
        print(_medians_table(result) if "medians" in result else f"{result['verdict']}\nreport: {result['report']}")
    return 0
