"""Your own data from .npz and .csv files (NumPy only, never unpickling)."""

from __future__ import annotations

import gzip
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from nablanet._random import RNGLike
from nablanet.data._checks import PathLike, check_fraction
from nablanet.data.splits import Splits, make_splits

_VALIDATION_KEYS = (("x_val", "y_val"), ("x_validation", "y_validation"))


def _pick(found: dict[str, np.ndarray], pairs: tuple[tuple[str, str], ...]) -> tuple[Any, Any]:
    for kx, ky in pairs:
        if kx in found or ky in found:
            if kx not in found or ky not in found:
                raise ValueError(f"the file holds only one of {kx!r}, {ky!r}; expected both or neither")
            return found[kx], found[ky]
    return None, None


def _fraction_or_file(value: float | None, has_fixed: bool, name: str, default: float) -> float:
    if value is None:
        return 0.0 if has_fixed else default
    if has_fixed and check_fraction(value, name) > 0:
        raise ValueError(
            f"{name}={value} but the file already holds a {name} split; expected {name}=None to "
            f"use the file's split (or {name}=0)"
        )
    return value


def load_npz(
    path: PathLike,
    *,
    validation: float | None = None,
    test: float | None = None,
    seed: RNGLike = 0,
    stratify: bool = True,
    n_classes: int | None = None,
    dtype: Any = np.float32,
    name: str | None = None,
) -> Splits:
    """Splits from a .npz file, read with ``allow_pickle=False``.

    Keys: ``x``, ``y`` (or ``x_train``, ``y_train``), optionally ``x_test``, ``y_test`` and
    ``x_val``, ``y_val`` (or ``x_validation``, ``y_validation``); other keys are ignored.
    A split the file holds is used as is; one it lacks is cut from x, y by its fraction:
    ``validation`` defaults to 0.1 and ``test`` to 0 (None means "the file's, else the default";
    a fraction for a split the file already holds is an error).
    """
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as f:
            found = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{p}: not a readable .npz archive ({exc}); expected a file from np.savez") from exc
    except ValueError as exc:
        raise ValueError(
            f"{p}: {exc}; expected plain numeric arrays. Object arrays need unpickling, which "
            "load_npz never does; save numeric arrays instead, e.g. np.savez(path, x=x, y=y)."
        ) from exc
    x, y = _pick(found, (("x", "y"), ("x_train", "y_train")))
    if x is None:
        raise ValueError(
            f"{p} holds the keys {sorted(found)}; expected 'x' and 'y' (or 'x_train' and "
            "'y_train'), optionally 'x_test', 'y_test', 'x_val', 'y_val'. Rename the arrays, "
            "or load them yourself and call from_arrays(x, y)."
        )
    x_test, y_test = _pick(found, (("x_test", "y_test"),))
    x_val, y_val = _pick(found, _VALIDATION_KEYS)
    return make_splits(
        x,
        y,
        validation=_fraction_or_file(validation, x_val is not None, "validation", 0.1),
        test=_fraction_or_file(test, x_test is not None, "test", 0.0),
        seed=seed,
        stratify=stratify,
        name=name or p.stem,
        dtype=dtype,
        n_classes=n_classes,
        x_test=x_test,
        y_test=y_test,
        x_validation=x_val,
        y_validation=y_val,
    )


def _first_line(path: Path) -> str:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return str(f.readline())


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_csv(
    path: PathLike,
    *,
    target_column: int | str = -1,
    header: bool | None = None,
    delimiter: str = ",",
    validation: float = 0.1,
    test: float = 0.0,
    seed: RNGLike = 0,
    stratify: bool = True,
    n_classes: int | None = None,
    dtype: Any = np.float32,
    name: str | None = None,
) -> Splits:
    """Splits from a numeric CSV file (``.csv`` or ``.csv.gz``), one sample per row.

    target_column: the column of integer class labels, by index (negative counts from the end)
        or, with a header, by name; every other column is a feature.
    header: whether the first line holds column names; ``None`` guesses it (a header is a first
        line with a field that is not a number).
    Lines starting with ``#`` are comments. Splitting as in ``from_arrays``.
    """
    p = Path(path)
    first = _first_line(p)
    names = [field.strip() for field in first.split(delimiter)]
    if header is None:
        header = not all(_is_number(field) for field in names)
    try:
        with warnings.catch_warnings():
            # An empty table is reported below as an error, not as numpy's warning.
            warnings.filterwarnings("ignore", "loadtxt: input contained no data", UserWarning)
            table = np.loadtxt(p, delimiter=delimiter, skiprows=int(header), dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(
            f"{p}: could not read the values as numbers ({exc}); expected a numeric table with one "
            "sample per row. Encode text columns as numbers first; if the first line holds column "
            "names, pass header=True."
        ) from exc
    if table.size == 0:
        raise ValueError(f"{p} holds no data rows; expected at least one sample per row")
    n_cols = table.shape[1]
    if isinstance(target_column, str):
        if not header or target_column not in names:
            raise ValueError(
                f"target_column={target_column!r} is not a column name of {p} (names: "
                f"{names if header else 'none, the file has no header'}); expected one of the "
                "names, or a column index such as -1"
            )
        column = names.index(target_column)
    elif -n_cols <= target_column < n_cols and n_cols >= 2:
        column = target_column % n_cols
    else:
        raise ValueError(
            f"target_column={target_column} but {p} has {n_cols} column(s); expected an index in "
            f"[{-n_cols}, {n_cols - 1}] and at least one feature column besides it"
        )
    x = np.delete(table, column, axis=1)
    return make_splits(
        x,
        table[:, column],
        validation=validation,
        test=test,
        seed=seed,
        stratify=stratify,
        name=name or p.name.split(".")[0],
        dtype=dtype,
        n_classes=n_classes,
    )
