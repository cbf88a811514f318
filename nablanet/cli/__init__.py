"""The command line: ``nablanet train``, ``nablanet study`` and ``nablanet sweep``; ``nablanet --version``.

Every flag is documented in ``nablanet train --help``; a bad flag or value prints one line, not a
traceback, and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from nablanet._version import __version__
from nablanet.cli import study, sweep, train
from nablanet.cli._args import Interrupted, _OneLineParser


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="nablanet", description="Neural networks with explicit backprop, and a gradient lab.")
    parser.add_argument("--version", action="version", version=f"nablanet {__version__}")
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
    command = {"train": train.run, "study": study.run, "sweep": sweep.run}[args.command]
    try:
        return command(args)
    except Interrupted as exc:  # the command (a run, a study, a sweep) stopped cleanly and says what it kept
        print(f"nablanet {args.command}: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"nablanet {args.command}: interrupted (Ctrl-C); nothing was written by the unfinished step",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`nablanet study --list | head`): nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush stays quiet
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it
    except (ValueError, TypeError, OSError, ImportError, KeyError) as exc:
        print(f"nablanet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        from nablanet.studies.sweep import SweepError

        if not isinstance(exc, SweepError):  # cells still failing after their retries: exit status 1
            raise
        print(f"nablanet {args.command}: error: {exc}", file=sys.stderr)
        return 1
