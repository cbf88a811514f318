"""Train / validation / test splits: the result every loader returns, and the split itself.

Split sizes are round(N·fraction) for validation and test; train takes the rest. Stratified
splitting (the default) keeps each class's share in every split, train included: with N samples of
which N_c are class c, a split of size S holds ⌊N_c·S/N⌋ or ⌈N_c·S/N⌉ of class c. Which samples go
where, and in what order, is drawn from one ``numpy.random.Generator`` built from ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nablanet._random import RNGLike, get_rng
from nablanet.data._checks import (
    as_features,
    as_labels,
    check_fractions,
    check_n_classes,
    check_same_length,
    feature_dtype,
)

XY = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True, eq=False, repr=False)
class Splits:
    """A data set cut into ``train``, ``validation`` and ``test``, each an ``(x, y)`` pair.

    Shapes:  x (N, *input_shape) float (float32 unless a loader was given ``dtype``)
             y (N,) int64, class indices in [0, n_classes)
    A split is empty (N = 0, same trailing shape) when its fraction was 0.
    The arrays belong to the Splits; loaders never return views of a caller's array.
    """

    train: XY
    validation: XY
    test: XY
    n_classes: int
    input_shape: tuple[int, ...]
    name: str

    def __post_init__(self) -> None:
        for split in ("train", "validation", "test"):
            x, y = getattr(self, split)
            if x.shape[1:] != self.input_shape or y.shape != (len(x),):
                raise ValueError(
                    f"Splits {split}: x.shape={x.shape}, y.shape={y.shape}; expected x "
                    f"(N, *{self.input_shape}) and y (N,). Build Splits with from_arrays()."
                )

    @property
    def sizes(self) -> dict[str, int]:
        """Number of samples per split."""
        return {s: len(getattr(self, s)[0]) for s in ("train", "validation", "test")}

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        return (
            f"Splits(name={self.name!r}, {sizes}, input_shape={self.input_shape}, "
            f"n_classes={self.n_classes}, dtype={self.train[0].dtype})"
        )


def split_sizes(n: int, validation: float, test: float) -> tuple[int, int]:
    """round(n·validation), round(n·test); a nonzero fraction that rounds to 0 samples is an error."""
    sizes = []
    for name, frac in (("validation", validation), ("test", test)):
        size = math.floor(n * frac + 0.5)
        if frac > 0 and size == 0:
            raise ValueError(
                f"{name}={frac} of {n} samples rounds to 0 samples; expected at least 1. "
                f"Use a larger fraction, or {name}=0 to have no {name} split."
            )
        sizes.append(size)
    if n - sum(sizes) < 1:
        raise ValueError(
            f"validation={validation}, test={test} of {n} samples leaves no training samples; "
            "expected at least one. Use smaller fractions or more data."
        )
    return sizes[0], sizes[1]


def _augment(c0: int, up: np.ndarray, frac: np.ndarray, room: np.ndarray, rng: np.random.Generator) -> bool:
    """Round one more cell of row ``c0`` up, shifting other rows' round-ups between columns as needed.

    Breadth-first search for an augmenting path c0 → k₁ ⇝ c₁ → k₂ ⇝ … → k with room left, where
    "c → k" rounds cell (c, k) up and "k ⇝ c" takes back row c's round-up in column k.
    """
    parent: dict[int, tuple[int, int | None]] = {}  # column -> (row entering it, column it leaves)
    queue: list[int] = []
    for k in rng.permutation(up.shape[1]):
        if frac[c0, k] and not up[c0, k]:
            parent[int(k)] = (c0, None)
            queue.append(int(k))
    while queue:
        k = queue.pop(0)
        if room[k] > 0:
            room[k] -= 1
            step: int | None = k
            while step is not None:
                row, prev = parent[step]
                up[row, step] = True
                if prev is not None:
                    up[row, prev] = False
                step = prev
            return True
        for c in np.flatnonzero(up[:, k]):
            for k2 in range(up.shape[1]):
                if k2 not in parent and frac[c, k2] and not up[c, k2]:
                    parent[k2] = (int(c), k)
                    queue.append(k2)
    return False


def stratified_counts(counts: np.ndarray, sizes: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Samples per (class, split): entry (c, k) is ⌊N_c·S_k/N⌋ or ⌈N_c·S_k/N⌉, rows sum to N_c,
    columns to S_k.

    Such a rounding always exists (the ideal fractional matrix is a feasible flow, and flows with
    integer capacities have integer solutions); it is found as a small bipartite matching of the
    cells that must round up. Exact integer arithmetic, so no float ties.
    """
    n = int(counts.sum())
    product = np.outer(counts, np.asarray(sizes, dtype=np.int64))
    base, frac = product // n, product % n > 0
    up = np.zeros_like(frac)
    row_need = counts - base.sum(axis=1)
    room = np.asarray(sizes) - base.sum(axis=0)
    for c in rng.permutation(len(counts)):  # random order: no class favoured by its index
        for _ in range(int(row_need[c])):
            if not _augment(int(c), up, frac, room, rng):  # pragma: no cover - impossible
                raise RuntimeError("stratified rounding failed; please report this as a bug")
    return base + up


def split_indices(
    y: np.ndarray, n_validation: int, n_test: int, rng: np.random.Generator, stratify: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays (train, validation, test) partitioning ``range(len(y))``, each in random order."""
    n = len(y)
    if not stratify:
        perm = rng.permutation(n)
        return perm[n_validation + n_test :], perm[:n_validation], perm[n_validation : n_validation + n_test]
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    take = stratified_counts(counts, (n - n_validation - n_test, n_validation, n_test), rng)
    # Group by class with a random order inside each class, then deal each class out.
    order = rng.permutation(n)
    order = order[np.argsort(inverse[order], kind="stable")]
    parts: list[list[np.ndarray]] = [[], [], []]
    start = 0
    for c in range(len(counts)):
        for k in range(3):
            parts[k].append(order[start : start + take[c, k]])
            start += take[c, k]
    # Shuffle across classes so that an unshuffled pass over a split does not see one class at a time.
    train, val, test = (rng.permutation(np.concatenate(p)) for p in parts)
    return train, val, test


def make_splits(
    x: Any,
    y: Any,
    *,
    validation: float,
    test: float,
    seed: RNGLike,
    stratify: bool,
    name: str,
    dtype: Any = np.float32,
    n_classes: int | None = None,
    x_test: Any = None,
    y_test: Any = None,
    x_validation: Any = None,
    y_validation: Any = None,
) -> Splits:
    """Splits from a pool (x, y) plus optional fixed test / validation sets.

    A fixed set replaces the fraction for that split (pass 0 for it); the rest is cut from the pool.
    """
    dt = feature_dtype(dtype)
    n_classes = check_n_classes(n_classes)
    validation, test = check_fractions(validation, test)
    if not isinstance(stratify, bool):
        raise TypeError(f"stratify={stratify!r}; expected True or False")
    xs = as_features(x, dt, "x")
    ys = as_labels(y, "y", n_classes)
    check_same_length(xs, ys)
    fixed: dict[str, XY] = {}
    for split, fx, fy in (("test", x_test, y_test), ("validation", x_validation, y_validation)):
        if (fx is None) != (fy is None):
            raise ValueError(f"got only one of x_{split}, y_{split}; expected both or neither")
        if fx is not None:
            fxs, fys = as_features(fx, dt, f"x_{split}"), as_labels(fy, f"y_{split}", n_classes)
            check_same_length(fxs, fys, f"x_{split}", f"y_{split}")
            if fxs.shape[1:] != xs.shape[1:]:
                raise ValueError(
                    f"x_{split} has sample shape {fxs.shape[1:]} but x has {xs.shape[1:]}; "
                    "expected the same features in every split"
                )
            # The pool is copied by indexing below; a fixed set is copied here, so that no Splits
            # ever shares memory with an array the caller still holds.
            fixed[split] = (fxs.copy() if fxs is fx else fxs, fys)
    for split, frac in (("validation", validation), ("test", test)):
        if split in fixed and frac > 0:
            raise ValueError(
                f"got both a fixed {split} set (x_{split}, y_{split}) and {split}={frac}; expected "
                f"one of them. Pass {split}=0 to keep the fixed set."
            )
    if n_classes is None:
        n_classes = 1 + max(int(labels.max(initial=0)) for labels in (ys, *(f[1] for f in fixed.values())))
    n_val, n_test = split_sizes(len(xs), validation, test)
    tr, va, te = split_indices(ys, n_val, n_test, get_rng(seed), stratify)
    return Splits(
        train=(xs[tr], ys[tr]),
        validation=fixed.get("validation", (xs[va], ys[va])),
        test=fixed.get("test", (xs[te], ys[te])),
        n_classes=n_classes,
        input_shape=tuple(xs.shape[1:]),
        name=name,
    )


def from_arrays(
    x: Any,
    y: Any,
    *,
    validation: float = 0.1,
    test: float = 0.0,
    seed: RNGLike = 0,
    stratify: bool = True,
    n_classes: int | None = None,
    dtype: Any = np.float32,
    name: str = "arrays",
) -> Splits:
    """Split your own arrays into train / validation / test.

    x: (N, *features), any numeric dtype, finite; converted to ``dtype`` (float32 or float64).
    y: (N,) integer class indices ≥ 0 (integer-valued floats are accepted).
    validation, test: fractions of N in [0, 1) with a sum below 1; sizes are round(N·fraction).
    seed: an int or a ``numpy.random.Generator``; the same seed gives the same split.
    stratify: keep every class's share in each split (within one sample).
    n_classes: the number of classes; ``None`` infers max(y) + 1.
    """
    return make_splits(
        x,
        y,
        validation=validation,
        test=test,
        seed=seed,
        stratify=stratify,
        name=name,
        dtype=dtype,
        n_classes=n_classes,
    )
