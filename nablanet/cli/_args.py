"""Argument types shared by the subcommands: each refuses a bad value in one line that names the flag."""

from __future__ import annotations

import argparse
from typing import NoReturn


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, after the command has saved what it could; the message says what was kept and how to go on.

    ``main`` prints it on one line and exits with status 130 (128 + SIGINT), as shells expect.
    """


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _hidden(text: str) -> list[int]:
    if text.strip() in ("", "none"):
        return []
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden {text!r}: expected comma-separated ints such as 256,128") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"--hidden {text!r}: layer sizes must be positive")
    return sizes


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number")
    return v


def _batch_size(text: str) -> int | None:
    if text in ("full", "none", "None"):
        return None
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch-size {text!r}: expected a positive int or 'full'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"--batch-size {text!r}: expected a positive int or 'full'")
    return v



def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an int") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive int")
    return v


def _sweep_flags(p: argparse.ArgumentParser, prefix: str) -> None:
    p.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                   help=prefix + "worker processes; unset: all CPUs")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help=prefix + "run the cells on this Dask scheduler, e.g. tcp://127.0.0.1:8786; unset: joblib "
                        "processes on this machine")
    p.add_argument("--quiet", action="store_true", help=prefix + "no progress bar or progress lines")

