"""The command line: ``nablanet train``, ``nablanet study`` and ``nablanet sweep``.

Every flag is documented in ``nablanet train --help``; a bad flag or value prints one line, not a
traceback, and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from nablanet.cli import study, sweep, train
from nablanet.cli._args import _OneLineParser
from nablanet.cli.study import _medians_table, study_command
from nablanet.cli.sweep import sweep_command
from nablanet.cli.train import train_command


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="nablanet", description="Neural networks with explicit backprop, and a gradient lab.")
    sub = parser.add_subparsers(dest="command", parser_class=_OneLineParser)
    train.add_parser(sub)
    study.add_parser(sub)
    sweep.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "study":
            result = study_command(args)
            if result and args.json:
                print(json.dumps(result, default=str))
            elif result:
                print(_medians_table(result) if "medians" in result else
                      f"{result['verdict']}\nreport: {result['report']}")
            return 0
        if args.command == "sweep":
            result = sweep_command(args)
            print(json.dumps(result["rows"], default=str) if args.json else
                  f"{result['study']}: {result['cells']} cells in {result['summary']}"
                  + (f", medians over seeds in {result['medians']}" if result["medians"] else ""))
            return 0
        result = train_command(args)
    except (ValueError, TypeError, OSError, ImportError, KeyError) as exc:
        print(f"nablanet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        from nablanet.studies.sweep import SweepError

        if not isinstance(exc, SweepError):  # cells still failing after their retries: exit status 1
            raise
        print(f"nablanet {args.command}: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        print(f"test accuracy {result['test_accuracy']:.4f}  test loss {result['test_loss']:.4f}  "
              f"({result['epochs']} epochs, {result['seconds']:.1f} s)")
        if args.out is not None:
            print(f"wrote {args.out}/model.npz, history.csv" + (", curves.png" if result.get("plot") else ""))
    return 0
