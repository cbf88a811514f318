"""MNIST from its IDX files: find or download, verify, parse, split.

Two entry points:
  load_mnist_arrays(root, kind="train" | "t10k") -> (images uint8 (N, 28, 28), labels int64 (N,))
      the raw arrays of one official file pair, nothing rescaled.
  load_mnist(root, subset="standard" | "t10k", ...) -> Splits
      pixels scaled to [0, 1]. "standard": the official 60,000 training images (validation carved
      from them by seed, stratified) and the official 10,000 test images as test. "t10k": only the
      10,000 official test images, cut by seed into train / validation / test. This is the
      choice for a machine that holds just the t10k files; its numbers are not comparable with
      published MNIST test accuracies, which is why it must be asked for by name.

Files are looked up in ``root`` (default ``<cache>/mnist``) as ``<kind>-images-idx3-ubyte[.gz]``
and ``<kind>-labels-idx1-ubyte[.gz]``; the .gz is preferred when both exist. With ``verify=True``
(the default) every file is checked against the published size and sha256 (.gz files, all four;
the md5 too) before it is parsed; of the uncompressed files only the t10k pair has a known
sha256, the training pair is checked by size (and always by the IDX header). The train-set
sha256 values are the ones many independent public loaders list next to the t10k values, which
we checked against the real t10k bytes; the train md5 values are the officially published ones.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nablanet._random import RNGLike
from nablanet.data._cache import cache_origin, get_cache_dir, writable_folder
from nablanet.data._checks import PathLike, feature_dtype
from nablanet.data.download import Checksum, check_mirrors, fetch, verify_file
from nablanet.data.idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx
from nablanet.data.splits import Splits, make_splits

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
"""Base URLs tried in order by ``download=True`` (torchvision's, TensorFlow's, the original)."""

MIRRORS_ENV = "NABLANET_MNIST_MIRRORS"
"""Comma-separated base URLs that replace ``MNIST_MIRRORS`` (a local mirror, a proxy, a test server)."""


def default_mirrors() -> tuple[str, ...]:
    """``$NABLANET_MNIST_MIRRORS`` split at commas when set and non-empty, else ``MNIST_MIRRORS``."""
    urls = [u.strip() for u in os.environ.get(MIRRORS_ENV, "").split(",") if u.strip()]
    return tuple(urls) if urls else MNIST_MIRRORS

MNIST_CHECKSUMS: dict[str, Checksum] = {
    "train-images-idx3-ubyte.gz": Checksum(
        9912422,
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ),
    "train-labels-idx1-ubyte.gz": Checksum(
        28881,
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "d53e105ee54ea40749a09fcbcd1e9432",
    ),
    "t10k-images-idx3-ubyte.gz": Checksum(
        1648877,
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "9fb629c4189551a2d022fa330f9573f3",
    ),
    "t10k-labels-idx1-ubyte.gz": Checksum(
        4542,
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
    "train-images-idx3-ubyte": Checksum(47040016),
    "train-labels-idx1-ubyte": Checksum(60008),
    "t10k-images-idx3-ubyte": Checksum(
        7840016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
    ),
    "t10k-labels-idx1-ubyte": Checksum(
        10008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
    ),
}

Kind = Literal["train", "t10k"]
_SUBSETS = ("standard", "t10k")


def _file_names(kind: str) -> tuple[str, str]:
    return f"{kind}-images-idx3-ubyte", f"{kind}-labels-idx1-ubyte"


def _mnist_root(root: PathLike | None, cache_dir: PathLike | None) -> Path:
    return Path(root).expanduser() if root is not None else get_cache_dir(cache_dir) / "mnist"


def _find(root: Path, stem: str) -> Path | None:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    return None


def load_mnist_arrays(
    root: PathLike | None = None,
    *,
    kind: Kind,
    download: bool = False,
    mirrors: Sequence[str] | None = None,
    cache_dir: PathLike | None = None,
    verify: bool = True,
    timeout: float = 30.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The raw images (N, 28, 28) uint8 and labels (N,) int64 of one official MNIST file pair.

    kind: "train" (60,000) or "t10k" (the 10,000 test images).
    root: the folder holding the files; default ``<cache>/mnist`` with the cache folder from
        ``cache_dir``, ``$NABLANET_CACHE`` or ``~/.cache/nablanet``.
    download: fetch missing .gz files from ``mirrors`` (default ``$NABLANET_MNIST_MIRRORS`` split at
        commas, else ``MNIST_MIRRORS``) into root.
    verify: check size and checksum before parsing (see the module docstring).
    """
    if kind not in ("train", "t10k"):
        raise ValueError(f"kind={kind!r}; expected 'train' (60,000 images) or 't10k' (10,000)")
    folder = _mnist_root(root, cache_dir)
    mirror_list = default_mirrors() if mirrors is None else check_mirrors(mirrors)
    paths: list[Path] = []
    missing: list[str] = []
    for stem in _file_names(kind):
        path = _find(folder, stem)
        if path is None and download:
            writable_folder(folder, "the downloaded MNIST files",
                            f"root={str(root)!r}" if root is not None else cache_origin(cache_dir))
            gz = f"{stem}.gz"
            path = fetch(gz, folder, mirrors=mirror_list, expected=MNIST_CHECKSUMS[gz], timeout=timeout)
        if path is None:
            missing.append(f"{stem}.gz")
        else:
            paths.append(path)
    if missing:
        hint = (
            "; or, to work with the test images alone, load_mnist(root, subset='t10k') (on the command "
            "line: --mnist-subset t10k) splits the 10,000 t10k images into train/validation/test"
            if kind == "train"
            else ""
        )
        raise FileNotFoundError(
            f"MNIST {kind} files missing in {folder}: {', '.join(missing)} (looked for the .gz "
            f"and the uncompressed name). Fix: pass download=True (on the command line: --download) to fetch them from "
            f"{mirror_list[0]} and other mirrors, or copy them into {folder}{hint}."
        )
    if verify:
        for path in paths:
            verify_file(path, MNIST_CHECKSUMS[path.name])
    images = read_idx(paths[0], expect_magic=IDX_IMAGES_MAGIC)
    labels = read_idx(paths[1], expect_magic=IDX_LABELS_MAGIC)
    if images.shape[1:] != (28, 28) or len(images) != len(labels) or labels.max(initial=0) > 9:
        raise ValueError(
            f"{paths[0]} / {paths[1]}: images {images.shape}, labels {labels.shape} with maximum "
            f"{labels.max(initial=0)}; expected (N, 28, 28) images and N labels in 0..9. "
            "The files do not belong together or are not MNIST."
        )
    return images, labels.astype(np.int64)


def load_mnist(
    root: PathLike | None = None,
    *,
    subset: Literal["standard", "t10k"] = "standard",
    download: bool = False,
    mirrors: Sequence[str] | None = None,
    cache_dir: PathLike | None = None,
    seed: RNGLike = 0,
    validation: float = 0.1,
    test: float | None = None,
    stratify: bool = True,
    flatten: bool = True,
    dtype: Any = np.float32,
    verify: bool = True,
    timeout: float = 30.0,
) -> Splits:
    """MNIST as Splits with pixels in [0, 1]; x is (N, 784), or (N, 1, 28, 28) if not ``flatten``.

    subset="standard": train and validation from the 60,000 training images (``validation`` of
        them, stratified, by ``seed``); test is the official 10,000. ``test`` must stay None.
        Missing training files raise FileNotFoundError saying which, and how to get them.
    subset="t10k": only the 10,000 t10k images, split by ``seed`` into train / validation / test
        (``test`` defaults to 0.2). Needs only the two t10k files.
    Other arguments as for ``load_mnist_arrays`` and ``from_arrays``.
    """
    if subset not in _SUBSETS:
        raise ValueError(
            f"subset={subset!r}; expected 'standard' (official 60,000/10,000 split) or 't10k' "
            "(split the 10,000 test images)"
        )
    if subset == "standard" and test is not None:
        raise ValueError(
            f"test={test} with subset='standard', whose test set is the official 10,000 images; "
            "expected test=None. To cut a test set by fraction, use subset='t10k'."
        )
    dt = feature_dtype(dtype)
    common: dict[str, Any] = dict(
        root=root, download=download, mirrors=mirrors, cache_dir=cache_dir, verify=verify,
        timeout=timeout,
    )

    def scaled(images: np.ndarray) -> np.ndarray:
        x = images.astype(dt) / dt.type(255)
        return x.reshape(len(x), -1) if flatten else x[:, None]

    if subset == "t10k":
        t_images, t_labels = load_mnist_arrays(kind="t10k", **common)
        return make_splits(
            scaled(t_images),
            t_labels,
            validation=validation,
            test=0.2 if test is None else test,
            seed=seed,
            stratify=stratify,
            name="mnist-t10k",
            dtype=dt,
            n_classes=10,
        )
    # Training files first: they are the ones most often missing, so fail before any parsing.
    images, labels = load_mnist_arrays(kind="train", **common)
    t_images, t_labels = load_mnist_arrays(kind="t10k", **common)
    return make_splits(
        scaled(images),
        labels,
        validation=validation,
        test=0.0,
        seed=seed,
        stratify=stratify,
        name="mnist",
        dtype=dt,
        n_classes=10,
        x_test=scaled(t_images),
        y_test=t_labels,
    )
