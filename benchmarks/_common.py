"""What every benchmark reports beside its times: NumPy's BLAS and the kernels it picked."""

from __future__ import annotations

import os


def blas_info() -> dict[str, object]:
    """NumPy's BLAS, its kernel family and thread count (when threadpoolctl is installed).

    OpenBLAS may pick AVX2 "Haswell" kernels on an AVX-512 CPU (or be told to, through
    ``OPENBLAS_CORETYPE``); PyTorch's oneDNN kernels are not affected, so say which ran.
    """
    info: dict[str, object] = {"OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return info
    for pool in threadpool_info():
        if pool.get("user_api") == "blas" and "numpy" in str(pool.get("filepath", "")):
            info.update({k: pool.get(k) for k in ("internal_api", "version", "architecture", "num_threads")})
    return info
