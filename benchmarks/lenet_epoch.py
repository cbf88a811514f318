"""One epoch of a LeNet-style CNN on 10,000 synthetic 28x28 float32 inputs, batch 64, SGD momentum 0.9,
run in one process by nablanet (``fit``) and PyTorch CPU, from the same initial weights.

    conv 5x5 1->32 padding 2, ReLU, max-pool 2, conv 5x5 32->64 padding 2, ReLU, max-pool 2,
    Flatten, Linear 3136->10

Runs the two in interleaved rounds and prints medians (and min/max) of the times, the median over
rounds of the ratio, and each run's peak extra resident memory (the rise of the process'
high-water mark, which is reset before each run via /proc/self/clear_refs where Linux allows it)
as JSON. Not a test.
    python benchmarks/lenet_epoch.py [--repeats 5] [--n 10000]

The JSON names the BLAS kernels NumPy ran (``numpy_blas``). Where the environment pins OpenBLAS to
older kernels (OPENBLAS_CORETYPE, with OPENBLAS_L2_SIZE), unset both for this command alone to
time the kernels a current NumPy picks on the CPU:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/lenet_epoch.py
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

import numpy as np
from _common import blas_info, paired_ratio, summary, torch_sgd_epoch

import nablanet as nn

BATCH, LR, MOMENTUM = 64, 0.01, 0.9


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 28, 28), dtype=np.float32)
    return x, rng.integers(0, 10, n)


def build_nablanet() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2, rng=0), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2, rng=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 10, rng=2),
    )


def run_nablanet(x: np.ndarray, y: np.ndarray) -> None:
    model = build_nablanet()
    opt = nn.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=1, batch_size=BATCH, seed=0)


def run_torch(x: np.ndarray, y: np.ndarray) -> None:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    t = torch.nn
    model = t.Sequential(
        t.Conv2d(1, 32, 5, padding=2), t.ReLU(), t.MaxPool2d(2),
        t.Conv2d(32, 64, 5, padding=2), t.ReLU(), t.MaxPool2d(2),
        t.Flatten(), t.Linear(3136, 10),
    )
    model.load_state_dict({k: torch.from_numpy(v) for k, v in build_nablanet().state_dict().items()})
    torch_sgd_epoch(model, x, y, BATCH, LR, MOMENTUM)


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def measured(fn: Callable[[np.ndarray, np.ndarray], None], x: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
    """Seconds and peak extra resident MiB of one run."""
    reset = _reset_peak()
    before = _status_kib("VmRSS")
    t0 = time.perf_counter()
    fn(x, y)
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM")
    extra = (peak - before) / 1024 if reset and peak is not None and before is not None else None
    return seconds, extra



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--only", choices=["nablanet", "pytorch"], default=None)
    args = parser.parse_args()
    x, y = make_data(args.n)
    runners = {"nablanet": run_nablanet, "pytorch": run_torch}
    if args.only:
        runners = {args.only: runners[args.only]}
    for fn in runners.values():  # warm up imports, thread pools and allocator
        fn(x[: BATCH * 4], y[: BATCH * 4])
    runs: dict[str, list[tuple[float, float | None]]] = {name: [] for name in runners}
    for _ in range(args.repeats):  # interleaved rounds, as in _common.interleaved
        for name, fn in runners.items():
            time.sleep(0.5)
            runs[name].append(measured(fn, x, y))
    results = {}
    for name, rs in runs.items():
        mems = [m for _, m in rs if m is not None]
        results[name] = {**summary([t for t, _ in rs]), "peak_extra_mib": max(mems) if mems else None}
    out: dict[str, object] = {
        "work": f"1 epoch, LeNet-style CNN, n={args.n} x 1x28x28, batch {BATCH}, SGD momentum {MOMENTUM}, float32",
        "cpus": os.cpu_count(), "numpy_blas": blas_info(), "times": results,
    }
    if len(results) == 2:  # the median over rounds of the ratio within a round
        out["ratios"] = {"nablanet/pytorch": paired_ratio({k: [t for t, _ in rs] for k, rs in runs.items()},
                                                          "nablanet", "pytorch")}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
