"""The IDX format of MNIST: a big-endian header, then the raw array.

Layout:  bytes 0-1  zero
         byte  2    element type (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
                    0x0E float64)
         byte  3    number of dimensions d
         then d big-endian uint32 sizes, then the elements in C order, big-endian.
Read as one big-endian int32 the first four bytes are the "magic number": 2051 (0x00000803) for
MNIST images (uint8, 3-D), 2049 (0x00000801) for labels (uint8, 1-D).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from nablanet.data._checks import PathLike

IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049

_TYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
_FIX = "Delete the file and fetch it again (e.g. load_mnist(..., download=True))."


def read_idx_bytes(path: PathLike) -> bytes:
    """The uncompressed bytes of ``path``; gzip is recognised by its content, not by the name."""
    p = Path(path)
    data = p.read_bytes()
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(
            f"{p}: the gzip stream is truncated or corrupt ({exc}); expected a complete "
            f".gz file ({len(data)} bytes read). {_FIX}"
        ) from exc


def parse_idx(data: bytes, source: str = "<bytes>", expect_magic: int | None = None) -> np.ndarray:
    """The array stored in IDX bytes, in native byte order; ``source`` names the file in errors."""
    if len(data) < 4:
        raise ValueError(
            f"{source}: {len(data)} bytes is too short for an IDX header (4 bytes at least); "
            f"the file is truncated or not an IDX file. {_FIX}"
        )
    magic = int.from_bytes(data[:4], "big")
    code, ndim = data[2], data[3]
    if data[:2] != b"\0\0" or code not in _TYPES or ndim == 0:
        raise ValueError(
            f"{source}: magic number {magic} (0x{magic:08x}) is not an IDX header; expected "
            f"{expect_magic or '2051 (images) or 2049 (labels)'}: two zero bytes, a type code, "
            f"the number of dimensions. The file is corrupt or not in IDX format. {_FIX}"
        )
    if expect_magic is not None and magic != expect_magic:
        raise ValueError(
            f"{source}: magic number {magic} (0x{magic:08x}); expected {expect_magic} "
            f"(0x{expect_magic:08x}). Images (2051) and labels (2049) may have been swapped, or "
            f"the file is corrupt. {_FIX}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{source}: {len(data)} bytes, but a {ndim}-D IDX header alone takes {header}; "
            f"the file is truncated. {_FIX}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_TYPES[code])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "followed by extra bytes"
        raise ValueError(
            f"{source}: the header gives shape {dims} of {dtype.name}, i.e. {expected} bytes, "
            f"but there are {len(data)}; the file is {what}. {_FIX}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    # A native-order copy: writable, and free of the bytes object it was read from.
    return arr.astype(dtype.newbyteorder("="))


def read_idx(path: PathLike, *, expect_magic: int | None = None) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed.

    expect_magic: 2051 for images, 2049 for labels; a different magic number is an error.
    Raises ValueError naming the file when it is truncated, corrupt or not IDX.
    """
    return parse_idx(read_idx_bytes(path), str(path), expect_magic)
