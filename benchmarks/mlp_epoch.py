"""One epoch of a 784-256-128-10 ReLU MLP on 60,000 x 784 float32 synthetic inputs, batch 128,
SGD momentum 0.9, run in one process by nablanet (``fit``), a minimal hand-written NumPy loop doing
the same math (the floor: what the abstraction costs), PyTorch CPU and scikit-learn's MLPClassifier.

Runs them in interleaved rounds and prints medians (and min/max) of the times and, for each ratio,
the median over rounds of the ratio within a round, as JSON. Not a test.
    python benchmarks/mlp_epoch.py [--repeats 9] [--n 60000]

The JSON names the BLAS kernels NumPy ran (``numpy_blas``); see lenet_epoch.py for timing without
the environment's OpenBLAS pin.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
import warnings
from collections.abc import Callable

import numpy as np
from _common import blas_info, interleaved, paired_ratio, summary, torch_mlp, torch_sgd_epoch

import nablanet as nn

SIZES = (784, 256, 128, 10)
BATCH, LR, MOMENTUM = 128, 0.01, 0.9


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, SIZES[0]), dtype=np.float32)
    w = rng.standard_normal((SIZES[0], SIZES[-1]), dtype=np.float32)
    return x, (x @ w).argmax(axis=1)


def init_weights(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for a, b in itertools.pairwise(SIZES):
        bound = 1 / np.sqrt(a)
        w = rng.uniform(-bound, bound, (b, a)).astype(np.float32)
        out.append((w, rng.uniform(-bound, bound, b).astype(np.float32)))
    return out


def run_nablanet(x: np.ndarray, y: np.ndarray) -> None:
    layers: list[nn.Layer] = []
    for i, (w, b) in enumerate(init_weights()):
        lin = nn.Linear(w.shape[1], w.shape[0])
        lin.weight.data[...], lin.bias.data[...] = w, b  # type: ignore[union-attr]
        layers += [lin, nn.ReLU()] if i < len(SIZES) - 2 else [lin]
    model = nn.Sequential(*layers)
    opt = nn.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=1, batch_size=BATCH, seed=0)


def run_numpy(x: np.ndarray, y: np.ndarray) -> None:
    """The same math with nothing around it: forward, softmax − onehot, VJPs, momentum SGD."""
    params = [a for wb in init_weights() for a in wb]
    bufs = [np.zeros_like(p) for p in params]
    order = np.random.default_rng(0).permutation(len(x))
    for start in range(0, len(x), BATCH):
        idx = order[start : start + BATCH]
        xb, yb = x[idx], y[idx]
        w1, b1, w2, b2, w3, b3 = params
        z1 = xb @ w1.T + b1
        h1 = np.maximum(z1, 0)
        z2 = h1 @ w2.T + b2
        h2 = np.maximum(z2, 0)
        z3 = h2 @ w3.T + b3
        p = np.exp(z3 - z3.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(yb)), yb] -= 1
        d3 = p / len(yb)
        d2 = (d3 @ w3) * (z2 >= 0)
        d1 = (d2 @ w2) * (z1 >= 0)
        grads = [d1.T @ xb, d1.sum(0), d2.T @ h1, d2.sum(0), d3.T @ h2, d3.sum(0)]
        for prm, buf, g in zip(params, bufs, grads, strict=True):
            buf *= MOMENTUM
            buf += g
            prm -= LR * buf


def run_torch(x: np.ndarray, y: np.ndarray) -> None:
    torch_sgd_epoch(torch_mlp(init_weights(), "ReLU"), x, y, BATCH, LR, MOMENTUM)


def run_sklearn(x: np.ndarray, y: np.ndarray) -> None:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(SIZES[1:-1], solver="sgd", learning_rate_init=LR, momentum=MOMENTUM, nesterovs_momentum=False,
                        batch_size=BATCH, max_iter=1, shuffle=True, random_state=0, alpha=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)


def epoch_flops(n: int) -> float:
    """FLOPs of the epoch's matrix products: forward xWᵀ, dW = dyᵀx per layer, and dx = dy W for every
    layer but the first (whose input gradient nobody needs): 2·n·i·o each."""
    pairs = list(itertools.pairwise(SIZES))
    return 2.0 * n * (2 * sum(i * o for i, o in pairs) + sum(i * o for i, o in pairs[1:]))


def gemm_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Measured float32 GEMM rate of this machine's BLAS (best of ``repeats``), in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b
    best = min(timeit_once(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def timeit_once(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--n", type=int, default=60_000)
    parser.add_argument("--skip", nargs="*", default=[], choices=["torch", "sklearn"])
    args = parser.parse_args()
    x, y = make_data(args.n)
    runners = {"nablanet": run_nablanet, "numpy_loop": run_numpy}
    if "torch" not in args.skip:
        runners["pytorch"] = run_torch
    if "sklearn" not in args.skip:
        runners["sklearn"] = run_sklearn
    for fn in runners.values():  # warm up caches and imports
        fn(x[: BATCH * 4], y[: BATCH * 4])
    times = interleaved(runners, x, y, args.repeats)
    results = {name: summary(ts) for name, ts in times.items()}
    med = {k: v["median_s"] for k, v in results.items()}
    # each ratio: the median over rounds of the two runs' ratio in the same round
    ratios = {"nablanet/numpy_loop": paired_ratio(times, "nablanet", "numpy_loop")}
    if "pytorch" in med:
        ratios.update({f"{k}/pytorch": paired_ratio(times, k, "pytorch") for k in med if k != "pytorch"})
    peak = gemm_peak_gflops()
    flops = epoch_flops(args.n)
    gemm = {"peak_gflops_float32": peak, "epoch_gflop": flops / 1e9,
            **{f"{k}_fraction_of_peak": flops / v / 1e9 / peak for k, v in med.items()}}
    print(json.dumps({"work": f"1 epoch, MLP {SIZES}, n={args.n}, batch {BATCH}, SGD momentum {MOMENTUM}, float32",
                      "cpus": os.cpu_count(), "numpy_blas": blas_info(), "times": results, "ratios": ratios,
                      "gemm": gemm}, indent=2))


if __name__ == "__main__":
    main()
