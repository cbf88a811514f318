"""The cost of watching training: one epoch of the training benchmark's MLP (784-256-128-10 ReLU,
60,000 x 784 float32 synthetic inputs, batch 128, SGD momentum 0.9) with and without a
``nablanet.lab.Recorder`` computing per-layer gradient norms and per-sample gradient norms at
every step. Target: at most 25% over the plain step.

Prints medians (and min/max) of several repetitions and the overhead as JSON. Not a test.
    python benchmarks/recorder_overhead.py [--repeats 3] [--n 60000] [--every 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import nablanet as nn
from nablanet.lab.recorder import Recorder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import blas_info
from mlp_epoch import BATCH, LR, MOMENTUM, SIZES, init_weights, make_data

QUANTITIES = ("grad_norm", "per_sample_grad_norm")


def run(x: np.ndarray, y: np.ndarray, every: int | None) -> Recorder | None:
    layers: list[nn.Layer] = []
    for i, (w, b) in enumerate(init_weights()):
        lin = nn.Linear(w.shape[1], w.shape[0])
        lin.weight.data[...], lin.bias.data[...] = w, b  # type: ignore[union-attr]
        layers += [lin, nn.ReLU()] if i < len(SIZES) - 2 else [lin]
    model = nn.Sequential(*layers)
    opt = nn.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    rec = Recorder(every=every, quantities=QUANTITIES) if every else None
    nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=1, batch_size=BATCH, seed=0,
           callbacks=[rec] if rec else [])
    return rec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=60_000)
    parser.add_argument("--every", type=int, default=1)
    args = parser.parse_args()
    x, y = make_data(args.n)
    run(x[: BATCH * 4], y[: BATCH * 4], None)
    run(x[: BATCH * 4], y[: BATCH * 4], args.every)
    times: dict[str, list[float]] = {"plain": [], "recorder": []}
    rows = 0
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
        for name, every in (("plain", None), ("recorder", args.every)):
            t0 = time.perf_counter()
            rec = run(x, y, every)
            times[name].append(time.perf_counter() - t0)
            rows = len(rec.records) if rec else rows
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({
        "work": f"1 epoch, MLP {SIZES}, n={args.n}, batch {BATCH}; Recorder(every={args.every}, "
                f"quantities={list(QUANTITIES)})",
        "cpus": os.cpu_count(), "numpy_blas": blas_info(),
        "times": {k: {"median_s": med[k], "min_s": min(v), "max_s": max(v)} for k, v in times.items()},
        "records_per_epoch": rows,
        "overhead": med["recorder"] / med["plain"] - 1,
    }, indent=2))


if __name__ == "__main__":
    main()
