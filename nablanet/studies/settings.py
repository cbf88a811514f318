"""Checking a study's settings: an override must have its default's type and lie in the setting's range.

``Study.config`` calls ``check_override`` for every ``--set`` (or sweep) value, so a bad value is
refused before any work, in one line that names the setting, the value received, what is expected,
the default and a value that works. The type comes from the default: an int where a float is
expected is fine, a bool is never a number, a list's elements and a dict's values are checked like
the default's (an empty list's like its ``Check.example``'s), and a dict takes only the default's keys.
A ``Check`` adds what the type cannot say (a range, a set of names, the type of a setting whose default
is None); ``COMMON`` holds the checks of names that mean the same in every study (``seed``, ``epochs``,
``lr``, ...).
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    """What a setting accepts beyond "a value of its default's type".

    ``low``/``high`` bound a number, each number of a list and each value of a dict (``low_open``,
    ``high_open``: the bound itself is excluded); ``choices`` limits a string or each string of a
    list; ``nullable`` also allows null (None); ``kind`` is the type where the default is None
    (null stays allowed then); ``empty`` allows an empty list; ``example`` replaces the default in
    the message's "e.g."; ``hint`` ends the message.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False
    kind: type | None = None
    empty: bool = False
    example: Any = None
    hint: str = ""

    def holds(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def bounds(self) -> tuple[str, str]:
        """(adjective, suffix) for a number: ("positive", "") or ("", ">= 1") or ("", "in [0, 1)")."""
        if self.low == 0 and self.low_open and self.high is None:
            return "positive", ""
        if self.high is None:
            return ("", "") if self.low is None else ("", f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.low is None:
            return "", f"{'<' if self.high_open else '<='} {self.high:g}"
        return "", (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.high_open else ']'}")


POSITIVE = Check(low=0, low_open=True)
NONNEGATIVE = Check(low=0)
AT_LEAST_ONE = Check(low=1)
FRACTION = Check(low=0, high=1, high_open=True)
"""A number in [0, 1): momentum coefficients, smoothing."""

COMMON: dict[str, Check] = {
    "seed": Check(low=0, hint="for several seeds, use --seeds K"),
    **dict.fromkeys(("seeds", "n_seeds", "train_seeds", "quad_seeds", "net_seeds"), POSITIVE),
    **dict.fromkeys(("epochs", "steps", "quad_steps", "pretrain_epochs", "sweep_epochs"), POSITIVE),
    **dict.fromkeys(("batch_size", "minibatch", "width", "hidden", "depth", "depths", "dim"), POSITIVE),
    **dict.fromkeys(("lr", "eta", "pretrain_lr"), POSITIVE),
    **dict.fromkeys(("momentum", "mu", "mu_max"), FRACTION),
}
"""Checks by setting name, for every study that has the name (a study's own ``checks`` come first)."""


def _kind(value: Any) -> str:
    """The JSON-ish word for a value's type, as the message says it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "an int"
    if isinstance(value, float):
        return "a float" if math.isfinite(value) else f"{value}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _fits(value: Any, like: Any) -> bool:
    """Whether ``value`` has the type of ``like`` (a default value): int for float is fine, bool is no number."""
    if isinstance(like, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(like, bool)
    if isinstance(like, float):
        return isinstance(value, int | float) and math.isfinite(value)
    if isinstance(like, int):
        return isinstance(value, int)
    return isinstance(value, type(like))


def _noun(like: Any, check: Check, plural: bool = False) -> str:
    """"a positive int", "numbers in [0, 1)", "'mnist' or 'digits'" for values like ``like``."""
    if check.choices:
        names = [repr(c) for c in check.choices]
        if plural:
            return "names from " + ", ".join(names)
        return "one of " + ", ".join(names) if len(names) > 2 else " or ".join(names)
    if isinstance(like, bool):
        return "true or false"
    if isinstance(like, int | float):
        base = ("int" if isinstance(like, int) else "number") + ("s" if plural else "")
        adjective, suffix = check.bounds()
        words = " ".join(w for w in (adjective, base, suffix) if w)
        return words if plural else f"{'an' if words[0] in 'aeiou' else 'a'} {words}"
    if isinstance(like, str):
        return "strings" if plural else "a string"
    return "values" if plural else "a value"


def expected(default: Any, check: Check) -> str:
    """What the setting accepts, in words: "a positive int", "a non-empty list of ints >= 1", ..."""
    if default is None and check.kind is not None:
        return f"{_noun(check.kind(), check)} or null"
    if check.nullable:
        return f"{expected(default, Check(**{**check.__dict__, 'nullable': False}))} or null"
    if isinstance(default, list):
        like = _element(default, check)
        items = "" if like is None else f" of {_noun(like, check, plural=True)}"
        return f"{'a' if check.empty else 'a non-empty'} list{items}"
    if isinstance(default, dict):
        inner = next(iter(default.values()), None)
        keys = ", ".join(repr(k) for k in default)
        values = f" to {_noun(inner, check, plural=True)}" if _uniform(list(default.values())) else ""
        return f"an object mapping some of {keys}{values}"
    return _noun(default, check)


def _element(default: list[Any], check: Check) -> Any:
    """What each element of a list setting is like: the default's first element, or, where the default is
    empty (a grid chosen by the study unless given), the example's; None where the elements are mixed."""
    for values in (default, check.example if isinstance(check.example, list) else []):
        if values:
            return values[0] if _uniform(values) else None
    return None


def _uniform(values: list[Any]) -> bool:
    return bool(values) and all(_fits(v, values[0]) and _fits(values[0], v) for v in values)


def _scalar_ok(value: Any, like: Any, check: Check) -> bool:
    if not _fits(value, like):
        return False
    if check.choices and isinstance(value, str):
        return value in check.choices
    if isinstance(value, int | float) and not isinstance(value, bool):
        return check.holds(value)
    return True


def _problem(value: Any, default: Any, check: Check) -> tuple[str, str] | None:
    """Why ``value`` does not fit: (", not a string" or "", a note on the culprit or ""); None when it fits."""
    if value is None and (default is None or check.nullable):
        return None
    if default is None:
        if check.kind is None:
            return None
        return None if _scalar_ok(value, check.kind(), check) else (_not(value, check.kind()), "")
    if isinstance(default, list):
        if not isinstance(value, list):
            return f", not {_kind(value)}", ""
        if not value and not check.empty:
            return ", not an empty list", ""
        like = _element(default, check)
        if like is not None:
            bad = [v for v in value if not _scalar_ok(v, like, check)]
            return ("", f"{json.dumps(bad[0])} is not one") if bad else None
        return None
    if isinstance(default, dict):
        if not isinstance(value, dict):
            return f", not {_kind(value)}", ""
        unknown = [k for k in value if k not in default]
        if unknown:
            return "", f"{unknown[0]!r} is not one of its keys"
        if _uniform(list(default.values())):
            like = next(iter(default.values()))
            bad = [k for k, v in value.items() if not _scalar_ok(v, like, check)]
            return ("", f"{bad[0]!r}: {json.dumps(value[bad[0]])} is not one") if bad else None
        return None
    return None if _scalar_ok(value, default, check) else (_not(value, default), "")


def _not(value: Any, like: Any) -> str:
    """", not a string" when the type is wrong; "" when only the range or the name is."""
    return "" if _fits(value, like) else f", not {_kind(value)}"


def _show(value: Any) -> str:
    """A value as one types it after ``--set KEY=``: strings bare, the rest compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def example(key: str, value: Any, flag: str) -> str:
    """``--set key=value`` quoted for a shell where it needs quotes."""
    item = shlex.quote(f"{key}={_show(value)}")
    return f"{flag} {item}" if flag else item


def check_override(study: str, key: str, value: Any, default: Any, check: Check, *, quick: bool,
                   flag: str = "") -> None:
    """Raise ValueError unless ``value`` suits the setting ``key`` whose default is ``default``.

    ``flag`` ("--set") names where the value came from, for the message and its example; without
    it the message names the study.
    """
    problem = _problem(value, default, check)
    if problem is None:
        return
    why, culprit = problem
    which = "the quick default" if quick else "the default"
    notes = "; ".join(n for n in (culprit, f"{which} is {json.dumps(default, separators=(', ', ': '))}") if n)
    sample = default if check.example is None else check.example
    where = f"{flag} " if flag else f"study {study!r}: "
    hint = f"; {check.hint}" if check.hint else ""
    raise ValueError(f"{where}{key}={_show(value)}: expected {expected(default, check)}{why} ({notes}), "
                     f"e.g. {example(key, sample, flag)}{hint}")
