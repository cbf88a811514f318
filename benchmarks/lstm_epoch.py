"""One epoch of a 1-layer LSTM classifier on 10,000 synthetic float32 sequences (length 50, 32 features),
batch 64, SGD momentum 0.9, run in one process by nablanet (``fit``) and PyTorch CPU, from the same
initial weights:

    LSTM(32, 128, batch_first=True) → last time step's output (N, 128) → Linear(128, 10) → cross-entropy

Prints medians (and min/max) of several repetitions and the ratio as JSON. The runs alternate
(nablanet, PyTorch, nablanet, …) so that a burst of load from other processes on the machine hits
both alike. ``--threads k`` limits both libraries to k threads (NumPy's BLAS through threadpoolctl),
which gives steadier numbers on a machine shared with other work. Not a test.
    python benchmarks/lstm_epoch.py [--repeats 3] [--n 10000] [--threads k]
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import numpy as np
from _common import blas_info, interleaved, paired_ratio, summary, torch_sgd_epoch

import nablanet as nn
from nablanet.layers.recurrent import LSTM, LastStep

BATCH, LR, MOMENTUM = 64, 0.01, 0.9
SEQ_LEN, FEATURES, HIDDEN, CLASSES = 50, 32, 128, 10


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, SEQ_LEN, FEATURES), dtype=np.float32)
    return x, rng.integers(0, CLASSES, n)


def build_nablanet() -> nn.Sequential:
    return nn.Sequential(LSTM(FEATURES, HIDDEN, batch_first=True, rng=0), LastStep(), nn.Linear(HIDDEN, CLASSES, rng=1))


def run_nablanet(x: np.ndarray, y: np.ndarray) -> None:
    model = build_nablanet()
    opt = nn.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=1, batch_size=BATCH, seed=0)


THREADS: int | None = None  # --threads: both libraries' thread count (None: all cores)


def run_torch(x: np.ndarray, y: np.ndarray) -> None:
    import torch

    torch.set_num_threads(THREADS or os.cpu_count() or 1)

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(FEATURES, HIDDEN, batch_first=True)
            self.linear = torch.nn.Linear(HIDDEN, CLASSES)

        def forward(self, xb: Any) -> Any:
            return self.linear(self.lstm(xb)[0][:, -1])

    model = Model()
    names = {"0.": "lstm.", "2.": "linear."}
    model.load_state_dict({names[k[:2]] + k[2:]: torch.from_numpy(v) for k, v in build_nablanet().state_dict().items()})
    torch_sgd_epoch(model, x, y, BATCH, LR, MOMENTUM)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--only", choices=["nablanet", "pytorch"], default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    global THREADS
    THREADS = args.threads
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads, user_api="blas")
    x, y = make_data(args.n)
    runners = {"nablanet": run_nablanet, "pytorch": run_torch}
    if args.only:
        runners = {args.only: runners[args.only]}
    for fn in runners.values():  # warm up imports, thread pools and allocator
        fn(x[: BATCH * 4], y[: BATCH * 4])
    times = interleaved(runners, x, y, args.repeats)
    results = {name: summary(ts) for name, ts in times.items()}
    out: dict[str, object] = {
        "work": f"1 epoch, LSTM({FEATURES}, {HIDDEN}) on n={args.n} x {SEQ_LEN} steps, last step -> "
                f"Linear({HIDDEN}, {CLASSES}), batch {BATCH}, SGD momentum {MOMENTUM}, float32",
        "cpus": os.cpu_count(), "threads": args.threads or os.cpu_count(), "numpy_blas": blas_info(),
        "times": results,
    }
    if len(results) == 2:
        out["ratios"] = {
            "nablanet/pytorch": paired_ratio(times, "nablanet", "pytorch"),  # median over rounds
            "nablanet/pytorch (minima)": results["nablanet"]["min_s"] / results["pytorch"]["min_s"],
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
