"""One epoch of a deep narrow sigmoid net, 784-30×10-10 (ten hidden layers of 30 units), on 10,000
synthetic float32 inputs, batch 10, plain SGD, run in one process by nablanet (``fit``) and PyTorch
CPU from the same initial weights, with cross-entropy.

The matrices are tiny (30 × 30), so the time is almost all per-layer overhead: the forward and VJP
calls, the tape, the optimizer's per-parameter loop. This is the benchmark that shows what the
library's structure costs per layer (the vanishing-gradient study's network, Nielsen ch. 5).

Runs them in interleaved rounds and prints medians (and min/max) and the paired ratio as JSON.
Not a test.
    python benchmarks/deep_sigmoid_epoch.py [--repeats 7] [--n 10000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os

import numpy as np
from _common import blas_info, interleaved, paired_ratio, summary, torch_mlp, torch_sgd_epoch

import nablanet as nn

SIZES = (784, *([30] * 10), 10)
BATCH, LR = 10, 0.1


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, SIZES[0]), dtype=np.float32)
    w = rng.standard_normal((SIZES[0], SIZES[-1]), dtype=np.float32)
    return x, (x @ w).argmax(axis=1)


def init_weights(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((b, a)).astype(np.float32) / np.float32(np.sqrt(a)),
             rng.standard_normal(b).astype(np.float32)) for a, b in itertools.pairwise(SIZES)]


def run_nablanet(x: np.ndarray, y: np.ndarray) -> None:
    layers: list[nn.Layer] = []
    for i, (w, b) in enumerate(init_weights()):
        lin = nn.Linear(w.shape[1], w.shape[0])
        lin.weight.data[...], lin.bias.data[...] = w, b  # type: ignore[union-attr]
        layers += [lin, nn.Sigmoid()] if i < len(SIZES) - 2 else [lin]
    model = nn.Sequential(*layers)
    opt = nn.optim.SGD(model.parameters(), lr=LR)
    nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=1, batch_size=BATCH, seed=0)


def run_torch(x: np.ndarray, y: np.ndarray) -> None:
    torch_sgd_epoch(torch_mlp(init_weights(), "Sigmoid"), x, y, BATCH, LR, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    x, y = make_data(args.n)
    runners = {"nablanet": run_nablanet, "pytorch": run_torch}
    for fn in runners.values():  # warm up caches and imports
        fn(x[: BATCH * 20], y[: BATCH * 20])
    times = interleaved(runners, x, y, args.repeats)
    print(json.dumps({"work": f"1 epoch, sigmoid MLP {SIZES}, n={args.n}, batch {BATCH}, SGD lr {LR}, float32",
                      "cpus": os.cpu_count(), "numpy_blas": blas_info(),
                      "times": {k: summary(v) for k, v in times.items()},
                      "ratios": {"nablanet/pytorch": paired_ratio(times, "nablanet", "pytorch")}}, indent=2))


if __name__ == "__main__":
    main()
