"""A sweep's configuration: what to run, read from a TOML file (see ``nablanet.studies.sweep``)."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_KEYS = ("study", "quick", "seeds", "out", "retries", "figures", "set", "grid")


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep: ``study`` over the product of ``grid`` values and ``seeds`` (None: the study's
    own seed), with ``fixed`` settings for every cell, from its ``quick`` or full configuration,
    into the folder ``out``."""

    study: str
    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    quick: bool = False
    out: Path = Path("sweeps")
    retries: int = 2
    figures: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "sweep config",
                  default_out: str | Path = "sweeps/sweep") -> SweepConfig:
        """Validate a parsed TOML table; errors are ``ValueError`` naming ``source`` and the key."""
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; a sweep config has {list(_KEYS)}")
        study = data.get("study")
        if not isinstance(study, str):
            raise ValueError(f'{source}: expected study = "NAME" (nablanet study --list shows the names)')
        grid = data.get("grid", {})
        if not isinstance(grid, Mapping):
            raise ValueError(f"{source}: [grid] must be a table of setting = [values]")
        for key, values in grid.items():
            if values == []:
                raise ValueError(f"{source}: grid {key} = [] lists no values, so there is nothing to sweep; give "
                                 f"the values to try, e.g. {key} = [0.05, 0.5], or remove {key} from [grid] "
                                 "(one value for every cell goes in [set])")
            if not isinstance(values, list):
                raise ValueError(f"{source}: grid {key} = {values!r}: expected a list of values, "
                                 f"e.g. {key} = [{values!r}]")
            texts = [json.dumps(v, sort_keys=True, default=str) for v in values]
            if len(set(texts)) < len(texts):
                raise ValueError(f"{source}: grid {key} = {values!r} lists a value twice")
        fixed = data.get("set", {})
        if not isinstance(fixed, Mapping):
            raise ValueError(f"{source}: [set] must be a table of setting = value")
        both = sorted(set(grid) & set(fixed))
        if both:
            raise ValueError(f"{source}: {both} both in [grid] and [set]; keep each setting in one")
        if "seed" in grid or "seed" in fixed:
            raise ValueError(f"{source}: choose seeds with the top-level key seeds = [0, 1, 2] (or seeds = 3), "
                             "not in [grid] or [set]")
        for key, kind in (("quick", bool), ("figures", bool), ("retries", int), ("out", str)):
            if key in data and not isinstance(data[key], kind):
                raise ValueError(f"{source}: {key} = {data[key]!r}: expected a {kind.__name__}")
        retries = data.get("retries", 2)
        if retries < 0:
            raise ValueError(f"{source}: retries = {retries}: expected 0 or more")
        return cls(study=study, grid={k: list(v) for k, v in grid.items()}, seeds=_seeds(data.get("seeds"), source),
                   fixed=dict(fixed), quick=data.get("quick", False), out=Path(data.get("out", default_out)),
                   retries=retries, figures=data.get("figures", False))


def _seeds(value: Any, source: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"{source}: seeds = {value}: expected a positive count or a list of ints")
        return tuple(range(value))
    if (isinstance(value, list) and value
            and all(isinstance(s, int) and not isinstance(s, bool) for s in value)):
        if len(set(value)) < len(value):
            raise ValueError(f"{source}: seeds = {value} lists a seed twice")
        return tuple(value)
    raise ValueError(f"{source}: seeds = {value!r}: expected a positive count (seeds = 3) or a list of ints")


def load_config(path: str | os.PathLike[str]) -> SweepConfig:
    """Read a sweep config TOML file (see ``nablanet.studies.sweep``); ``out`` defaults to sweeps/<stem>."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text file (byte {exc.start} is not UTF-8), so not a sweep config; expected "
                         'TOML text such as study = "saturation" (see nablanet sweep --help); check the path') from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    return SweepConfig.from_dict(data, source=str(path), default_out=Path("sweeps") / path.stem)
