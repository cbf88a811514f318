"""What the benchmarks share: NumPy's BLAS and the kernels it picked, interleaved timing, PyTorch's epoch."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np


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


def torch_sgd_epoch(model: Any, x: np.ndarray, y: np.ndarray, batch: int, lr: float, momentum: float) -> None:
    """One epoch of PyTorch SGD with momentum and cross-entropy, in the batch order nablanet's ``fit``
    draws for seed 0 (a permutation from ``default_rng(0)``), so both libraries do the same work."""
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(x)))
    loss_fn = torch.nn.CrossEntropyLoss()
    for start in range(0, len(x), batch):
        idx = order[start : start + batch]
        opt.zero_grad()
        loss = loss_fn(model(tx[idx]), ty[idx])
        loss.backward()
        opt.step()


def torch_mlp(weights: list[tuple[np.ndarray, np.ndarray]], activation: str) -> Any:
    """torch.nn.Sequential of Linear layers with these (W, b), ``torch.nn.<activation>()`` between them."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    mods: list[torch.nn.Module] = []
    for i, (w, b) in enumerate(weights):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        mods += [lin, getattr(torch.nn, activation)()] if i < len(weights) - 1 else [lin]
    return torch.nn.Sequential(*mods)


def interleaved(
    runners: dict[str, Callable[[np.ndarray, np.ndarray], None]], x: np.ndarray, y: np.ndarray, repeats: int,
    pause: float = 0.5,
) -> dict[str, list[float]]:
    """Times of ``repeats`` rounds, each running every runner once: a slow spell of the machine then
    falls on all of them alike instead of on whichever ran during it. Each run starts after a
    ``pause``, once the previous library's worker threads (OpenBLAS, OpenMP) have stopped spinning."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, fn in runners.items():
            time.sleep(pause)
            t0 = time.perf_counter()
            fn(x, y)
            times[name].append(time.perf_counter() - t0)
    return times


def summary(ts: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts)}


def paired_ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """The median over rounds of a's time / b's time in the same round (see ``interleaved``): a
    drift in the machine's speed between rounds cancels out of each round's ratio."""
    return statistics.median(ta / tb for ta, tb in zip(times[a], times[b], strict=True))
