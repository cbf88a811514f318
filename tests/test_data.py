"""nablanet.data: splits, loaders, IDX parsing, mirror downloads (against a local server), batches.

No test touches the internet: downloads go to an http.server on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mnist_mirror import T10K_IMAGES, T10K_LABELS

from nablanet.data import (
    ChecksumError,
    DownloadError,
    Splits,
    batches,
    from_arrays,
    load_csv,
    load_digits,
    load_mnist,
    load_mnist1d,
    load_mnist_arrays,
    load_npz,
    mnist1d_arrays,
    read_idx,
)

T10K_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
SPLITS = ("train", "validation", "test")


def _stratified_within_one(splits: Splits, y_all: np.ndarray) -> None:
    """Each split holds ⌊N_c·S/N⌋ or ⌈N_c·S/N⌉ of class c: within one sample of the ideal."""
    counts, n = np.bincount(y_all), len(y_all)
    for split in SPLITS:
        y = getattr(splits, split)[1]
        got = np.bincount(y, minlength=len(counts))
        ideal = counts * len(y) / n
        assert np.all(np.abs(got - ideal) < 1.0 + 1e-9), (split, got, ideal)


# ------------------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits() -> Splits:
    return load_digits()


def test_digits_shapes_dtypes_and_scaling(digits: Splits) -> None:
    assert digits.sizes == {"train": 1258, "validation": 180, "test": 359}  # 1797·0.1, 1797·0.2
    assert (digits.n_classes, digits.input_shape, digits.name) == (10, (64,), "digits")
    for split in SPLITS:
        x, y = getattr(digits, split)
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.shape == (len(y), 64)
        assert x.min() >= 0.0 and x.max() <= 1.0
    # Raw pixels are counts 0..16, so after /16 the maximum is exactly 1 and steps are 1/16.
    x = digits.train[0]
    assert x.max() == 1.0
    np.testing.assert_array_equal(x * 16, np.round(x * 16))


def test_digits_unflattened_and_float64(digits: Splits) -> None:
    image = load_digits(flatten=False, dtype=np.float64)
    assert image.input_shape == (1, 8, 8) and image.train[0].shape == (1258, 1, 8, 8)
    assert image.train[0].dtype == np.float64
    np.testing.assert_allclose(image.train[0].reshape(1258, 64), digits.train[0], rtol=1e-7)


def test_digits_stratified(digits: Splits) -> None:
    y_all = np.concatenate([getattr(digits, s)[1] for s in SPLITS])
    _stratified_within_one(digits, y_all)


def test_digits_seed_determinism_and_variation(digits: Splits) -> None:
    again, other = load_digits(seed=0), load_digits(seed=1)
    for split in SPLITS:
        np.testing.assert_array_equal(getattr(again, split)[0], getattr(digits, split)[0])
        np.testing.assert_array_equal(getattr(again, split)[1], getattr(digits, split)[1])
    assert not np.array_equal(other.test[0], digits.test[0])


def test_digits_without_sklearn_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        load_digits()


# -------------------------------------------------------------------------- from_arrays, splits


def _ids_and_labels(n: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x holds each sample's index, so a split can be traced back to the rows it took."""
    rng = np.random.default_rng(seed)
    # Imbalanced classes, so that stratification has real rounding to do.
    y = rng.choice(n_classes, size=n, p=np.linspace(1, 3, n_classes) / np.linspace(1, 3, n_classes).sum())
    return np.arange(n, dtype=np.float64)[:, None], y


@pytest.mark.parametrize("stratify", [True, False])
def test_from_arrays_partitions_every_sample_once(stratify: bool) -> None:
    x, y = _ids_and_labels(1003, 7)
    s = from_arrays(x, y, validation=0.15, test=0.25, seed=3, stratify=stratify, dtype=np.float64)
    assert s.sizes == {"train": 602, "validation": 150, "test": 251}  # round(1003·f)
    ids = [getattr(s, split)[0][:, 0].astype(int) for split in SPLITS]
    np.testing.assert_array_equal(np.sort(np.concatenate(ids)), np.arange(1003))
    for split, idx in zip(SPLITS, ids, strict=True):
        np.testing.assert_array_equal(getattr(s, split)[1], y[idx])  # labels travel with rows


@pytest.mark.parametrize("seed", range(8))
def test_from_arrays_stratified_within_one_sample(seed: int) -> None:
    x, y = _ids_and_labels(517, 5, seed)
    _stratified_within_one(from_arrays(x, y, validation=0.2, test=0.3, seed=seed), y)


def test_from_arrays_accepts_integer_valued_float_labels_and_infers_n_classes() -> None:
    s = from_arrays(np.ones((20, 3)), np.arange(20.0) % 4, validation=0.0)
    assert s.n_classes == 4 and s.train[1].dtype == np.int64 and s.sizes["validation"] == 0
    assert s.validation[0].shape == (0, 3)


# ----------------------------------------------------------------------- one test per message


def _raises(fn: Callable[[], Any], exc: type[Exception], pattern: str) -> None:
    with pytest.raises(exc, match=pattern):
        fn()


X10, Y10 = np.ones((10, 2)), np.arange(10) % 2
NAN_FIRST = np.where(np.eye(10, 2) > 0, np.nan, 1.0)
Case = tuple[Callable[[], Any], type[Exception], str]
ERROR_CASES: dict[str, Case] = {
    "nan_in_x": (lambda: from_arrays(NAN_FIRST, Y10), ValueError, r"NaN/inf value\(s\), the first at index \(0, 0\)"),
    "inf_in_x": (lambda: from_arrays(np.full((10, 2), np.inf), Y10), ValueError, "NaN/inf"),
    "overflow_to_float32": (lambda: from_arrays(np.full((10, 2), 1e300), Y10), ValueError, "NaN/inf"),
    "non_numeric_x": (lambda: from_arrays(np.array([["a", "b"]] * 10), Y10), TypeError, "expected numbers"),
    "x_1d": (lambda: from_arrays(np.ones(10), Y10), ValueError, r"reshape\(-1, 1\)"),
    "negative_label": (lambda: from_arrays(X10, Y10 - 1), ValueError, "negative label -1 at index 0"),
    "label_out_of_range": (lambda: from_arrays(X10, Y10 * 5, n_classes=3), ValueError, "out of range for n_classes=3"),
    "non_integer_label": (lambda: from_arrays(X10, Y10 + 0.5), ValueError, "non-integer label"),
    "nan_label": (lambda: from_arrays(X10, np.full(10, np.nan)), ValueError, "non-integer label"),
    "one_hot_labels": (lambda: from_arrays(X10, np.eye(10)), ValueError, r"argmax\(axis=1\)"),
    "length_mismatch": (lambda: from_arrays(X10, Y10[:9]), ValueError, "10 samples but y has 9 labels"),
    "fraction_above_one": (lambda: from_arrays(X10, Y10, validation=1.2), ValueError, r"not a fraction in \[0, 1\)"),
    "negative_fraction": (lambda: from_arrays(X10, Y10, test=-0.1), ValueError, r"not a fraction in \[0, 1\)"),
    "fraction_not_a_number": (lambda: from_arrays(X10, Y10, validation="0.1"), TypeError, "expected a fraction"),  # type: ignore[arg-type]
    "fractions_sum_to_one": (lambda: from_arrays(X10, Y10, validation=0.5, test=0.5), ValueError, "no training data"),
    "fraction_rounds_to_zero": (lambda: from_arrays(X10, Y10, validation=0.01), ValueError, "rounds to 0 samples"),
    "bad_n_classes": (lambda: from_arrays(X10, Y10, n_classes=0), ValueError, "positive int"),
    "bad_dtype": (lambda: from_arrays(X10, Y10, dtype=np.int32), TypeError, "float32 or float64"),
    "batch_size_zero": (lambda: batches(X10, Y10, 0), ValueError, "expected a positive int"),
    "batch_size_float": (lambda: batches(X10, Y10, 2.5), TypeError, "expected a positive int"),  # type: ignore[arg-type]
    "batch_size_bool": (lambda: batches(X10, Y10, True), TypeError, "expected a positive int"),
    "drop_last_no_batch": (lambda: batches(X10, Y10, 11, drop_last=True), ValueError, "yields no batch at all"),
    "batches_length_mismatch": (lambda: batches(X10, Y10[:3], 2), ValueError, "one label per sample"),
    "batches_bad_rng": (lambda: batches(X10, Y10, 2, rng="seed"), TypeError, "numpy.random.Generator"),  # type: ignore[arg-type]
    "mnist_bad_subset": (lambda: load_mnist(subset="train"), ValueError, "expected 'standard'"),  # type: ignore[arg-type]
    "mnist_standard_with_test": (lambda: load_mnist(test=0.2), ValueError, "use subset='t10k'"),
    "mnist_bad_kind": (lambda: load_mnist_arrays(kind="test"), ValueError, "expected 'train'"),  # type: ignore[arg-type]
    "mirrors_a_string": (
        lambda: load_mnist_arrays(kind="t10k", mirrors="http://127.0.0.1/"), TypeError, "a list, even for one mirror"
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", ERROR_CASES, ids=list(ERROR_CASES))
def test_error_message(case: str) -> None:
    _raises(*ERROR_CASES[case])


# ------------------------------------------------------------------------------------ batches


@pytest.mark.parametrize(("n", "size", "drop_last"), [(10, 3, False), (10, 3, True), (12, 4, False), (7, 10, False)])
def test_batches_cover_every_sample_once(n: int, size: int, drop_last: bool) -> None:
    x, y = np.arange(n)[:, None] * 1.0, np.arange(n)
    got = list(batches(x, y, size, rng=0, drop_last=drop_last))
    expected_sizes = [min(size, n - s) for s in range(0, n, size)]
    if drop_last:
        expected_sizes = [s for s in expected_sizes if s == size]
    assert [len(yb) for _, yb in got] == expected_sizes
    seen = np.concatenate([yb for _, yb in got])
    assert len(np.unique(seen)) == len(seen)  # nothing twice
    if not drop_last:
        np.testing.assert_array_equal(np.sort(seen), y)  # nothing missed
    for xb, yb in got:
        np.testing.assert_array_equal(xb[:, 0], yb)  # pairs stay together


def test_batches_seed_determinism() -> None:
    x, y = np.arange(50.0)[:, None], np.arange(50)
    first = [yb for _, yb in batches(x, y, 8, rng=5)]
    second = [yb for _, yb in batches(x, y, 8, rng=5)]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    gen = np.random.default_rng(5)
    epoch1 = np.concatenate([yb for _, yb in batches(x, y, 8, rng=gen)])
    epoch2 = np.concatenate([yb for _, yb in batches(x, y, 8, rng=gen)])
    assert not np.array_equal(epoch1, epoch2)  # an advancing Generator reshuffles each epoch


def test_batches_full_batch_online_and_in_order() -> None:
    x, y = np.arange(6.0)[:, None], np.arange(6)
    (full,) = list(batches(x, y, None, rng=0))
    np.testing.assert_array_equal(np.sort(full[1]), y)
    online = list(batches(x, y, 1, rng=0))
    assert len(online) == 6 and all(len(yb) == 1 for _, yb in online)
    ordered = list(batches(x, y, 4, shuffle=False))
    np.testing.assert_array_equal(ordered[0][1], [0, 1, 2, 3])
    np.testing.assert_array_equal(ordered[1][1], [4, 5])


# ------------------------------------------------------------------------------------ mnist1d


@pytest.fixture(scope="module")
def mnist1d_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder already holding the generated data (generating takes about a second)."""
    cache = tmp_path_factory.mktemp("mnist1d_cache")
    mnist1d_arrays(cache)
    return cache


def test_mnist1d_generates_into_env_cache_and_keeps_global_rng(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NABLANET_CACHE", str(tmp_path))
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    s = load_mnist1d()
    # mnist1d's make_dataset reseeds np.random; the loader must hand it back untouched.
    assert np.random.random() == expected
    assert s.sizes == {"train": 3600, "validation": 400, "test": 1000}
    files = [p.name for p in tmp_path.iterdir()]
    assert len(files) == 1 and files[0].startswith("mnist1d-") and files[0].endswith(".npz")
    with np.load(tmp_path / files[0], allow_pickle=False) as f:
        assert f["x"].shape == (4000, 40) and f["x_test"].shape == (1000, 40)


def test_mnist1d_without_the_package_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install mnist1d"):
        load_mnist1d(cache_dir=tmp_path)


def test_mnist1d_shapes(mnist1d_cache: Path) -> None:
    s = load_mnist1d(cache_dir=mnist1d_cache)
    assert (s.n_classes, s.input_shape, s.name) == (10, (40,), "mnist1d")
    assert len(s.train[0]) + len(s.validation[0]) == 4000 and len(s.test[0]) == 1000
    assert s.train[0].dtype == np.float32 and s.train[1].dtype == np.int64
    assert set(np.unique(s.test[1])) == set(range(10))
    conv = load_mnist1d(cache_dir=mnist1d_cache, flatten=False)
    assert conv.input_shape == (1, 40) and conv.test[0].shape == (1000, 1, 40)


def test_mnist1d_keeps_the_official_test_set_and_splits_by_seed(mnist1d_cache: Path) -> None:
    raw = mnist1d_arrays(mnist1d_cache)
    a, b, c = (load_mnist1d(cache_dir=mnist1d_cache, seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.test[0], raw["x_test"].astype(np.float32))  # order kept
    np.testing.assert_array_equal(a.validation[0], b.validation[0])
    assert not np.array_equal(a.validation[0], c.validation[0])
    y_pool = np.concatenate([a.train[1], a.validation[1]])
    counts = np.bincount(a.validation[1], minlength=10)
    assert np.all(np.abs(counts - np.bincount(y_pool) * 0.1) < 1)


def test_mnist1d_reads_cache_without_regenerating(
    mnist1d_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mnist1d.data

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("make_dataset called although the cache holds the data")

    monkeypatch.setattr(mnist1d.data, "make_dataset", fail)
    assert load_mnist1d(cache_dir=mnist1d_cache).sizes["test"] == 1000
    assert not [p for p in mnist1d_cache.iterdir() if p.suffix != ".npz"]  # no temp files left


def test_mnist1d_regenerates_a_corrupt_cache(mnist1d_cache: Path, tmp_path: Path) -> None:
    (cache_file,) = mnist1d_cache.glob("mnist1d-*.npz")
    shutil.copy(cache_file, tmp_path / cache_file.name)
    (tmp_path / cache_file.name).write_bytes(b"not a zip file")
    s = load_mnist1d(cache_dir=tmp_path)
    assert s.sizes["test"] == 1000
    with np.load(tmp_path / cache_file.name, allow_pickle=False) as f:
        np.testing.assert_array_equal(f["x"], mnist1d_arrays(mnist1d_cache)["x"])


# ------------------------------------------------------------------------------ MNIST and IDX


def test_t10k_arrays(mnist_dir: Path) -> None:
    images, labels = load_mnist_arrays(mnist_dir, kind="t10k")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == T10K_COUNTS
    assert images.min() == 0 and images.max() == 255


def test_gz_and_raw_read_the_same(mnist_dir: Path, tmp_path: Path) -> None:
    for name in (T10K_IMAGES, T10K_LABELS):
        (tmp_path / name.removesuffix(".gz")).write_bytes(gzip.decompress((mnist_dir / name).read_bytes()))
    np.testing.assert_array_equal(
        read_idx(tmp_path / "t10k-labels-idx1-ubyte"), read_idx(mnist_dir / T10K_LABELS)
    )
    raw = load_mnist_arrays(tmp_path, kind="t10k")  # verified by the decompressed sha256
    gz = load_mnist_arrays(mnist_dir, kind="t10k")
    np.testing.assert_array_equal(raw[0], gz[0])
    np.testing.assert_array_equal(raw[1], gz[1])


def test_load_mnist_t10k_subset(mnist_dir: Path) -> None:
    s = load_mnist(mnist_dir, subset="t10k", seed=0)
    assert s.sizes == {"train": 7000, "validation": 1000, "test": 2000}
    assert (s.input_shape, s.n_classes, s.name) == ((784,), 10, "mnist-t10k")
    x = s.train[0]
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    _stratified_within_one(s, np.repeat(np.arange(10), T10K_COUNTS))
    image = load_mnist(mnist_dir, subset="t10k", flatten=False, validation=0.0, test=0.5)
    assert image.test[0].shape == (5000, 1, 28, 28)


def test_load_mnist_standard_keeps_the_official_test_set(mnist_dir: Path, tmp_path: Path) -> None:
    # Stand-in training files (the t10k data under train names); verify=False because their
    # checksums are not the training set's. What is tested is the standard split's plumbing.
    for name in (T10K_IMAGES, T10K_LABELS):
        shutil.copy(mnist_dir / name, tmp_path / name)
        shutil.copy(mnist_dir / name, tmp_path / name.replace("t10k", "train"))
    s = load_mnist(tmp_path, verify=False, dtype=np.float64)
    assert s.sizes == {"train": 9000, "validation": 1000, "test": 10000} and s.name == "mnist"
    images, _ = load_mnist_arrays(mnist_dir, kind="t10k")
    np.testing.assert_array_equal(s.test[0], images.reshape(10000, 784) / 255.0)
    with pytest.raises(ChecksumError, match="1648877 bytes; expected 9912422"):
        load_mnist(tmp_path)


def test_load_mnist_without_train_files_says_what_is_missing(mnist_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\.gz") as info:
        load_mnist(mnist_dir)
    assert "download=True" in str(info.value) and "subset='t10k'" in str(info.value)


def test_truncated_gz_names_the_file(mnist_dir: Path, tmp_path: Path) -> None:
    shutil.copy(mnist_dir / T10K_IMAGES, tmp_path / T10K_IMAGES)
    bad = tmp_path / T10K_LABELS
    bad.write_bytes((mnist_dir / T10K_LABELS).read_bytes()[:3000])
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz: the gzip stream is truncated"):
        read_idx(bad)
    with pytest.raises(ChecksumError, match="3000 bytes; expected 4542"):
        load_mnist_arrays(tmp_path, kind="t10k", verify=True)


def test_truncated_raw_file_names_the_file(mnist_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    bad.write_bytes(gzip.decompress((mnist_dir / T10K_LABELS).read_bytes())[:5000])
    expected = r"t10k-labels-idx1-ubyte: .* 10008 bytes, but there are 5000; the file is truncated"
    with pytest.raises(ValueError, match=expected):
        read_idx(bad)


def test_bad_magic_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "garbage-idx3-ubyte"
    bad.write_bytes(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(ValueError, match=r"garbage-idx3-ubyte: magic number 305419896 .* not an IDX header"):
        read_idx(bad)


def test_swapped_files_give_a_magic_error(mnist_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"magic number 2049 .*expected 2051"):
        read_idx(mnist_dir / T10K_LABELS, expect_magic=2051)


def test_local_checksum_mismatch(mnist_dir: Path, tmp_path: Path) -> None:
    shutil.copy(mnist_dir / T10K_IMAGES, tmp_path / T10K_IMAGES)
    data = bytearray((mnist_dir / T10K_LABELS).read_bytes())
    data[100] ^= 0xFF  # same size, different content
    (tmp_path / T10K_LABELS).write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"checksum mismatch, sha256 is [0-9a-f]{64}; expected f7ae60"):
        load_mnist_arrays(tmp_path, kind="t10k")


# ----------------------------------------------------------------- downloads from a local server


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_falls_back_to_the_next_mirror(srv: Any, mnist_dir: Path, tmp_path: Path) -> None:
    mirrors = [f"{srv.url}/missing/", f"{srv.url}/good"]
    images, labels = load_mnist_arrays(tmp_path, kind="t10k", download=True, mirrors=mirrors)
    assert np.bincount(labels).tolist() == T10K_COUNTS and images.shape == (10000, 28, 28)
    assert sorted(p.name for p in tmp_path.iterdir()) == [T10K_IMAGES, T10K_LABELS]  # no .part
    assert _sha256(tmp_path / T10K_IMAGES) == _sha256(mnist_dir / T10K_IMAGES)
    assert (f"/missing/{T10K_IMAGES}", None) in srv.log and (f"/good/{T10K_IMAGES}", None) in srv.log


def test_download_resumes_a_part_file(srv: Any, mnist_dir: Path, tmp_path: Path) -> None:
    shutil.copy(mnist_dir / T10K_LABELS, tmp_path / T10K_LABELS)
    full = (mnist_dir / T10K_IMAGES).read_bytes()
    (tmp_path / f"{T10K_IMAGES}.part").write_bytes(full[:100_000])
    load_mnist_arrays(tmp_path, kind="t10k", download=True, mirrors=[f"{srv.url}/good/"])
    assert srv.log == [(f"/good/{T10K_IMAGES}", "bytes=100000-")]
    assert (tmp_path / T10K_IMAGES).read_bytes() == full


def test_download_resumes_after_a_dropped_connection_from_the_next_mirror(
    srv: Any, mnist_dir: Path, tmp_path: Path
) -> None:
    shutil.copy(mnist_dir / T10K_LABELS, tmp_path / T10K_LABELS)
    size = (mnist_dir / T10K_IMAGES).stat().st_size
    load_mnist_arrays(tmp_path, kind="t10k", download=True, mirrors=[f"{srv.url}/flaky/", f"{srv.url}/good/"])
    assert srv.log == [(f"/flaky/{T10K_IMAGES}", None), (f"/good/{T10K_IMAGES}", f"bytes={size // 2}-")]
    assert _sha256(tmp_path / T10K_IMAGES) == _sha256(mnist_dir / T10K_IMAGES)


def test_download_of_a_complete_part_needs_no_request(srv: Any, mnist_dir: Path, tmp_path: Path) -> None:
    shutil.copy(mnist_dir / T10K_LABELS, tmp_path / T10K_LABELS)
    shutil.copy(mnist_dir / T10K_IMAGES, tmp_path / f"{T10K_IMAGES}.part")
    load_mnist_arrays(tmp_path, kind="t10k", download=True, mirrors=[f"{srv.url}/good/"])
    assert srv.log == [] and sorted(p.name for p in tmp_path.iterdir()) == [T10K_IMAGES, T10K_LABELS]


def test_download_restarts_when_the_server_ignores_range(
    srv: Any, mnist_dir: Path, tmp_path: Path
) -> None:
    srv.use_range = False
    shutil.copy(mnist_dir / T10K_LABELS, tmp_path / T10K_LABELS)
    (tmp_path / f"{T10K_IMAGES}.part").write_bytes(b"\0" * 5000)  # would corrupt if appended to
    load_mnist_arrays(tmp_path, kind="t10k", download=True, mirrors=[f"{srv.url}/good/"])
    assert (tmp_path / T10K_IMAGES).read_bytes() == (mnist_dir / T10K_IMAGES).read_bytes()


def test_download_retries_from_zero_when_a_resumed_part_fails_its_checksum(
    srv: Any, mnist_dir: Path, tmp_path: Path
) -> None:
    shutil.copy(mnist_dir / T10K_IMAGES, tmp_path / T10K_IMAGES)
    (tmp_path / f"{T10K_LABELS}.part").write_bytes(b"stale bytes from another file")
    load_mnist_arrays(tmp_path, kind="t10k", download=True, mirrors=[f"{srv.url}/good/"])
    assert [r for _, r in srv.log] == ["bytes=29-", None]
    assert _sha256(tmp_path / T10K_LABELS) == _sha256(mnist_dir / T10K_LABELS)


def test_download_checksum_mismatch_deletes_the_part_and_tries_the_next_mirror(
    srv: Any, mnist_dir: Path, tmp_path: Path
) -> None:
    shutil.copy(mnist_dir / T10K_IMAGES, tmp_path / T10K_IMAGES)
    only_corrupt = [f"{srv.url}/corrupt/"]
    with pytest.raises(DownloadError, match=r"checksum mismatch, sha256 .* \(deleted\)"):
        load_mnist_arrays(tmp_path, kind="t10k", download=True, mirrors=only_corrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == [T10K_IMAGES]  # no part, no bad file
    load_mnist_arrays(tmp_path, kind="t10k", download=True, mirrors=[*only_corrupt, f"{srv.url}/good/"])
    assert _sha256(tmp_path / T10K_LABELS) == _sha256(mnist_dir / T10K_LABELS)


def test_download_error_lists_every_mirror(srv: Any, tmp_path: Path) -> None:
    mirrors = [f"{srv.url}/missing/", f"{srv.url}/also-missing/"]
    with pytest.raises(DownloadError, match="tried 2 mirror") as info:
        load_mnist_arrays(tmp_path, kind="t10k", download=True, mirrors=mirrors)
    assert str(info.value).count("HTTP Error 404") == 2 and "mirrors=[...]" in str(info.value)


def test_mirror_list_from_the_environment(srv: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NABLANET_MNIST_MIRRORS", f" {srv.url}/missing/ ,{srv.url}/good/,")
    images, _ = load_mnist_arrays(tmp_path, kind="t10k", download=True)
    assert images.shape == (10000, 28, 28)
    assert [p for p, _ in srv.log if p.endswith(T10K_IMAGES)] == [f"/missing/{T10K_IMAGES}", f"/good/{T10K_IMAGES}"]


def test_empty_mirror_variable_means_the_default_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from nablanet.data.mnist import MNIST_MIRRORS, default_mirrors

    monkeypatch.setenv("NABLANET_MNIST_MIRRORS", " , ")
    assert default_mirrors() == MNIST_MIRRORS


# ----------------------------------------------------------------------------- npz and csv files


def test_load_npz_pool_and_fixed_splits(tmp_path: Path) -> None:
    x, y = _ids_and_labels(200, 4)
    np.savez(tmp_path / "pool.npz", x=x, y=y, note=np.arange(3))
    assert load_npz(tmp_path / "pool.npz", test=0.25).sizes == {"train": 130, "validation": 20, "test": 50}
    np.savez(tmp_path / "fixed.npz", x_train=x[:150], y_train=y[:150], x_test=x[150:], y_test=y[150:])
    s = load_npz(tmp_path / "fixed.npz", validation=0.2)
    assert s.sizes == {"train": 120, "validation": 30, "test": 50} and s.name == "fixed"
    np.testing.assert_array_equal(s.test[0], x[150:].astype(np.float32))


def test_load_npz_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "keys.npz", features=np.ones((4, 2)), labels=np.zeros(4))
    _raises(lambda: load_npz(tmp_path / "keys.npz"), ValueError, r"holds the keys \['features', 'labels'\]")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    _raises(lambda: load_npz(tmp_path / "broken.npz"), ValueError, "not a readable .npz archive")
    np.savez(tmp_path / "obj.npz", x=np.array([{}, 1], dtype=object), y=np.zeros(2))
    _raises(lambda: load_npz(tmp_path / "obj.npz"), ValueError, "never does")
    x, y = _ids_and_labels(40, 2)
    np.savez(tmp_path / "val.npz", x=x, y=y, x_val=x[:5], y_val=y[:5])
    _raises(lambda: load_npz(tmp_path / "val.npz", validation=0.2), ValueError, "already holds a validation split")
    assert load_npz(tmp_path / "val.npz").sizes == {"train": 40, "validation": 5, "test": 0}


def test_load_csv_with_and_without_header(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{i * 0.5},{i % 3}" for i in range(30))
    (tmp_path / "plain.csv").write_text(rows + "\n")
    (tmp_path / "named.csv").write_text("a,b,label\n" + rows + "\n")
    plain = load_csv(tmp_path / "plain.csv", validation=0.2)
    named = load_csv(tmp_path / "named.csv", target_column="label", validation=0.2)
    assert plain.input_shape == (2,) and plain.n_classes == 3 and plain.name == "plain"
    for split in SPLITS:
        np.testing.assert_array_equal(getattr(plain, split)[0], getattr(named, split)[0])
    first = load_csv(tmp_path / "plain.csv", target_column=0, validation=0.0, stratify=False)
    assert first.n_classes == 30


def test_load_csv_errors(tmp_path: Path) -> None:
    (tmp_path / "text.csv").write_text("1,2,0\n3,abc,1\n")
    _raises(lambda: load_csv(tmp_path / "text.csv"), ValueError, "could not read the values as numbers")
    (tmp_path / "ok.csv").write_text("1,2,0\n3,4,1\n")
    _raises(lambda: load_csv(tmp_path / "ok.csv", target_column=5), ValueError, "has 3 column")
    _raises(lambda: load_csv(tmp_path / "ok.csv", target_column="label"), ValueError, "not a column name")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_cache_files_get_the_users_umask(tmp_path: Path, umask: int) -> None:
    pytest.importorskip("mnist1d")
    old = os.umask(umask)
    try:
        mnist1d_arrays(cache_dir=tmp_path)
    finally:
        os.umask(old)
    (cached,) = tmp_path.iterdir()
    assert cached.name.startswith("mnist1d-") and stat.S_IMODE(cached.stat().st_mode) == 0o666 & ~umask
