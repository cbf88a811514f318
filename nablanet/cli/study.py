"""``nablanet study``: run one study (or one study over seeds) and write its report.

Everything the user gives is checked before any work: the study's name, each ``--set`` (against the
type and range of the setting it overrides), ``--data-root`` and ``--out`` (a folder the results can
go to; nothing is created when it is refused). Ctrl-C prints one line saying what was written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nablanet._io import folder_problem
from nablanet.cli._args import Interrupted, _HelpFormatter, _positive_int, _sweep_flags


def add_parser(sub: Any) -> None:
    st = sub.add_parser(
        "study",
        help="answer a question from the source notes by measurement: figures and an HTML report",
        description="Run a study (nablanet study --list shows them) and write records.csv, PNG figures, "
                    "result.json and a self-contained index.html into --out. A study whose data are missing "
                    "(MNIST for vanishing) falls back to other data and says so in the first line of its "
                    "verdict and report; --download fetches them. Ctrl-C stops the run and says what was "
                    "written.",
        formatter_class=_HelpFormatter,
    )
    st.add_argument("name", nargs="?", default=None,
                    help="the study to run, or all: every study, each into OUT/NAME, and OUT/index.html listing "
                         "each question with its answer (default OUT: studies)")
    st.add_argument("--list", action="store_true", help="list the studies, one line each")
    st.add_argument("--quick", action="store_true", help="the small configuration (under 2 minutes on 2 cores)")
    st.add_argument("--out", type=Path, default=None, help="output folder (default: studies/NAME)")
    st.add_argument("--set", action="append", default=None, metavar="KEY=VALUE", dest="overrides",
                    help="override a setting of the study's configuration (VALUE is JSON, or text for a string: "
                         "--set seed=3, --set 'depths=[2,4]'); each is checked against the setting's type and "
                         "range before the run")
    st.add_argument("--download", action="store_true",
                    help="first fetch the data the study reads (MNIST's t10k files for vanishing) into the data "
                         "folder (see --data-root), checked against their published checksums; mirrors from "
                         "$NABLANET_MNIST_MIRRORS (comma-separated URLs) when set")
    st.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                    help="the folder with the MNIST files, or where --download puts them (default: <cache>/mnist, "
                         "<cache> being $NABLANET_CACHE or ~/.cache/nablanet); the same as --set mnist_root=DIR")
    st.add_argument("--json", action="store_true", help="print the result (verdict, numbers, files) as JSON")
    st.add_argument("--seeds", type=_positive_int, default=None, metavar="K",
                    help="run the configuration for seeds 0..K-1 as a sweep (cells in OUT/seeds) and report the "
                         "median and range of each headline number over the seeds (OUT/summary.csv)")
    _sweep_flags(st, "with --seeds: ")


def _overrides(items: list[str], study: Any) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as {KEY: value}: VALUE parsed as JSON, else kept as text."""
    from nablanet.studies.settings import example

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            first = next(iter(study.quick))
            raise ValueError(f"--set {item}: expected KEY=VALUE, a setting of {study.name} and its value, e.g. "
                             f"{example(first, study.quick[first], '--set')} (the settings: {sorted(study.quick)})")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _with_data_root(study: Any, overrides: dict[str, Any], root: Path | None) -> dict[str, Any]:
    if root is None:
        return overrides
    from nablanet.studies import REGISTRY

    if study.data_root is None:
        users = sorted(n for n, s in REGISTRY.items() if s.data_root)
        raise ValueError(f"--data-root {root}: study {study.name!r} reads no downloaded data (--data-root is for "
                         f"{', '.join(users)}). Fix: leave --data-root out.")
    if study.data_root in overrides:
        raise ValueError(f"--data-root {root} and --set {study.data_root}=... both name the data folder. Fix: give "
                         "only one of them.")
    return {**overrides, study.data_root: str(root)}


def check_out_folder(out: Path, name: str) -> None:
    """Refuse an --out the results cannot be written to, before any work, creating nothing."""
    problem = folder_problem(out)
    if problem is not None:
        raise ValueError(f"--out {out}: {problem}; a study writes a folder of files (records.csv, figures, "
                         f"result.json, index.html). Fix: choose a folder you can write to, e.g. --out "
                         f"studies/{name}")


def _download(study: Any, cfg: dict[str, Any]) -> None:
    from nablanet.data.download import DownloadError
    from nablanet.studies import REGISTRY

    if study.fetch is None:
        users = sorted(n for n, s in REGISTRY.items() if s.fetch)
        raise ValueError(f"--download: study {study.name!r} downloads nothing (its data ship with nablanet and "
                         f"scikit-learn or are generated; --download is for {', '.join(users)}). Fix: leave "
                         "--download out.")
    print(f"nablanet study: --download: fetching the data {study.name} reads (if not there yet) ...", file=sys.stderr)
    try:
        where = study.fetch(cfg)
    except KeyboardInterrupt:
        raise Interrupted("interrupted during the download; the study did not run, and the next --download "
                          "resumes the unfinished file") from None
    except OSError as exc:
        text = str(exc).replace(":\n  - ", ": ").replace("\n  - ", "; ").replace("\n", " ")
        if isinstance(exc, DownloadError):
            text += " On the command line, NABLANET_MNIST_MIRRORS=URL[,URL...] chooses the mirrors."
        raise OSError(f"--download: {text}") from None
    if where:
        print(f"nablanet study: --download: {where}", file=sys.stderr)


def study_command(args: argparse.Namespace) -> dict[str, Any]:
    from nablanet import studies

    if args.name is None and not args.list:
        given = [f for f, v in (("--set", args.overrides), ("--out", args.out), ("--seeds", args.seeds),
                                ("--download", args.download), ("--data-root", args.data_root)) if v]
        if given:
            raise ValueError(f"{', '.join(given)} given without a study; expected nablanet study NAME "
                             f"{given[0]} ... (nablanet study --list shows the names)")
    if args.list or args.name is None:
        width = max(len(n) for n in studies.REGISTRY)
        for name, study in sorted(studies.REGISTRY.items()):
            print(f"{name:<{width}}  {study.question}")
        return {}
    if args.name == "all":
        return _all(args)
    if args.name not in studies.REGISTRY:
        raise ValueError(f"no study {args.name!r}; the studies are {sorted(studies.REGISTRY)} (nablanet study --list)")
    study = studies.REGISTRY[args.name]
    overrides = _with_data_root(study, _overrides(args.overrides or [], study), args.data_root)
    cfg = study.config(args.quick, overrides, flag="--set")
    out = args.out if args.out is not None else Path("studies") / args.name
    check_out_folder(out, args.name)
    if args.download:
        _download(study, cfg)
    if args.seeds is not None:
        from nablanet.studies.sweep import run_seeds

        medians = run_seeds(args.name, args.seeds, out, quick=args.quick, overrides=overrides,
                            n_jobs=args.jobs, scheduler=args.scheduler, quiet=args.quiet)
        return {"study": args.name, "seeds": args.seeds, "medians": medians, "summary": str(out / "summary.csv"),
                "per_seed": str(out / "seeds" / "summary.csv")}
    print(f"nablanet study: running {args.name}{' --quick' if args.quick else ''}; the results go to {out} when it "
          "ends (Ctrl-C stops it)", file=sys.stderr, flush=True)
    result, folder = studies.run_study(study, out, quick=args.quick, overrides=overrides)  # Ctrl-C: StudyInterrupted
    return {"study": args.name, "fallback": result.fallback, "verdict": result.verdict, "headline": result.headline,
            "answer": None if result.answer is None else result.answer.text, "out": str(folder),
            "report": str(folder / "index.html")}


def _all(args: argparse.Namespace) -> dict[str, Any]:
    """``nablanet study all``: every study into OUT/NAME, and OUT/index.html with each answer."""
    from nablanet.studies.site import run_all

    given = [f for f, v in (("--set", args.overrides), ("--seeds", args.seeds), ("--download", args.download),
                            ("--data-root", args.data_root)) if v]
    if given:
        raise ValueError(f"nablanet study all: {given[0]} sets one study's run, and all runs every study with its "
                         f"own settings. Fix: run that study alone (nablanet study NAME {given[0]} ...)")
    out = args.out if args.out is not None else Path("studies")
    check_out_folder(out, "all")

    def say(name: str) -> None:
        print(f"nablanet study all: running {name}{' --quick' if args.quick else ''} ...", file=sys.stderr, flush=True)

    entries = run_all(out, quick=args.quick, progress=say)
    return {"study": "all", "studies": entries, "out": str(out), "report": str(out / "index.html")}


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


def _said(result: dict[str, Any]) -> str:
    """What a study run prints: the answer first, then how we know (the verdict), then the report's path."""
    if result["study"] == "all":
        return "\n\n".join(f"{x['study']}: {x['answer']}" for x in result["studies"]) + f"\nindex: {result['report']}"
    if result.get("answer"):
        return f"{result['answer']}\n\nHow we know: {result['verdict']}\nreport: {result['report']}"
    return f"{result['verdict']}\nreport: {result['report']}"


def run(args: argparse.Namespace) -> int:
    result = study_command(args)
    if result and args.json:
        print(json.dumps(result, default=str))
    elif result:
        print(_medians_table(result) if "medians" in result else _said(result))
    return 0
