"""Data: ready-made data sets as train / validation / test Splits, your own arrays and files,
and mini-batches.

Every loader returns a ``Splits``; every random choice comes from its ``seed`` through a
``numpy.random.Generator``. Downloaded and generated data are cached under ``$NABLANET_CACHE``
or ``~/.cache/nablanet``.
"""

from nablanet.data._cache import CACHE_ENV, get_cache_dir
from nablanet.data.batching import batches
from nablanet.data.digits import load_digits
from nablanet.data.download import Checksum, ChecksumError, DownloadError
from nablanet.data.files import load_csv, load_npz
from nablanet.data.idx import read_idx
from nablanet.data.mnist import MNIST_MIRRORS, load_mnist, load_mnist_arrays
from nablanet.data.mnist_1d import load_mnist1d, mnist1d_arrays
from nablanet.data.splits import Splits, from_arrays

__all__ = [
    "CACHE_ENV",
    "MNIST_MIRRORS",
    "Checksum",
    "ChecksumError",
    "DownloadError",
    "Splits",
    "batches",
    "from_arrays",
    "get_cache_dir",
    "load_csv",
    "load_digits",
    "load_mnist",
    "load_mnist1d",
    "load_mnist_arrays",
    "load_npz",
    "mnist1d_arrays",
    "read_idx",
]
