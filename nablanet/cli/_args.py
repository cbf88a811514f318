"""Argument types shared by the subcommands: each refuses a bad value in one line that names the flag.

argparse puts ``argument --flag:`` in front of a type's message, so the messages here say what was
received and what is expected, and leave naming the flag to argparse.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from nablanet.train.interrupts import Interrupted as Interrupted  # main prints it, exits 130

T = TypeVar("T")


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` only where the help does not give the default itself and there is one.

    A default of None or False (unset, a flag) says nothing, and a help text that explains its own
    default ("default 128 for mlp, ...") would otherwise show two.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text:
            return text
        return super()._get_help_string(action)


class _Tracked(argparse._StoreAction):
    """A store action that also records that the flag was given (``namespace.explicit``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        namespace.explicit = frozenset(getattr(namespace, "explicit", frozenset())) | {self.dest}


class _TrackedTrue(argparse._StoreTrueAction):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        namespace.explicit = frozenset(getattr(namespace, "explicit", frozenset())) | {self.dest}


def track_explicit(parser: argparse.ArgumentParser) -> None:
    """Make ``parser``'s store and store_true flags record in ``args.explicit`` which were given.

    Call before adding the arguments. Needed where a flag's meaning depends on whether the user
    typed it (``--momentum`` with Adam, flags given again with ``--resume``).
    """
    parser.register("action", None, _Tracked)
    parser.register("action", "store", _Tracked)
    parser.register("action", "store_true", _TrackedTrue)
    parser.set_defaults(explicit=frozenset())


def _number(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; expected e.g. 0.01")
    return v


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an int") from None


def _int_list(text: str) -> list[int]:
    """Comma-separated positive ints (layer sizes, channels); '' or 'none' is the empty list."""
    if text.strip() in ("", "none"):
        return []
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated ints such as 256,128") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: every size must be a positive int, e.g. 32,64")
    return sizes


def _batch_size(text: str) -> int | None:
    if text in ("full", "none", "None"):
        return None
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive int or 'full'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive int or 'full'")
    return v


def _checked(parse: Callable[[str], T], ok: Callable[[T], bool], expected: str) -> Callable[[str], T]:
    """An argparse type: ``parse`` the text, then refuse a value that ``ok`` rejects, saying what is expected."""

    def convert(text: str) -> T:
        value = parse(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}")
        return value

    return convert


_positive_float = _checked(_number, lambda v: v > 0, "a positive number")
_nonnegative_float = _checked(_number, lambda v: v >= 0, "a number >= 0 (0 turns it off)")
_momentum = _checked(_number, lambda v: 0 <= v < 1, "a momentum in [0, 1), e.g. 0.9 (0: plain SGD)")
_decay_factor = _checked(_number, lambda v: v > 0, "a positive factor the learning rate is multiplied by, e.g. 0.1 "
                                                  "(values above 1 make it grow)")
_positive_int = _checked(_int, lambda v: v >= 1, "a positive int")
_patience = _checked(_int, lambda v: v >= 0, "a patience in epochs >= 0, e.g. 10 (0 turns it off)")
_seed = _checked(_int, lambda v: v >= 0, "an int >= 0, e.g. 0")


def _scheduler_address(text: str) -> str:
    from nablanet.studies._sweep_dask import EXAMPLE, EXPECTED, address_problem

    problem = address_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: {problem}; expected {EXPECTED}, e.g. --scheduler {EXAMPLE}")
    return text


def _sweep_flags(p: argparse.ArgumentParser, prefix: str) -> None:
    p.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                   help=prefix + "worker processes; unset: all CPUs")
    p.add_argument("--scheduler", type=_scheduler_address, default=None, metavar="ADDRESS",
                   help=prefix + "run the cells on this Dask scheduler, e.g. tcp://127.0.0.1:8786; unset: joblib "
                        "processes on this machine")
    p.add_argument("--quiet", action="store_true", help=prefix + "no progress bar or progress lines")
