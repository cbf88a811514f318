"""Reference results for the convolutional layers (issue: convolutional networks), as JSON.

* ``mnist1d``: the MNIST-1D paper's CNN (Greydanus 2020) — Conv1d(1, 25, 5, stride 2, padding 1),
  ReLU, Conv1d(25, 25, 3, stride 2, padding 1), ReLU, the same again, Flatten, Linear(125, 10);
  Adam lr 1e-2, batch 100, 6000 steps on the 4,000 training signals; test on the official 1,000.
  Paper: 94%. Target here: >= 90%.
* ``lenet``: a LeNet-style CNN (conv 5x5 1->32 padding 2, ReLU, max-pool 2, conv 5x5 32->64
  padding 2, ReLU, max-pool 2, Linear 3136->10) trained on 8,000 of the real MNIST test images in
  ../shared/data/mnist/ and tested on the other 2,000. Target: >= 97%.

    python benchmarks/reference_cnn.py [mnist1d] [lenet] [--seed 0] [--mnist-root ../shared/data/mnist]

The same runs are tests marked ``slow`` (``pytest -m slow tests/test_reference_cnn.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

import nablanet as nn

DEFAULT_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def mnist1d_cnn(seed: int = 0, steps: int = 6000) -> dict[str, Any]:
    splits = nn.data.load_mnist1d(seed=seed, validation=0.0, flatten=False)
    x, y = splits.train
    xt, yt = splits.test
    rng = np.random.default_rng(seed)
    model = nn.Sequential(
        nn.Conv1d(1, 25, 5, stride=2, padding=1, rng=rng), nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1, rng=rng), nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1, rng=rng), nn.ReLU(),
        nn.Flatten(), nn.Linear(125, 10, rng=rng),
    )
    opt = nn.optim.Adam(model.parameters(), lr=1e-2)
    batch = 100
    epochs = -(-steps * batch // len(x))  # whole epochs covering at least ``steps`` steps
    t0 = time.perf_counter()
    history = nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=epochs, batch_size=batch, seed=seed,
                     verbose=False)
    seconds = time.perf_counter() - t0
    scores = nn.evaluate(model, nn.CrossEntropyLoss(), xt, yt)
    return {"run": "mnist1d_cnn", "test_accuracy": scores["accuracy"], "test_loss": scores["loss"],
            "steps": opt.step_count, "epochs": len(history), "n_train": len(x), "n_test": len(xt),
            "train_seconds": round(seconds, 2), "seed": seed}


def lenet_mnist(root: Path, seed: int = 0, epochs: int = 8) -> dict[str, Any]:
    xs, ys = nn.data.load_mnist_arrays(root, kind="t10k")
    x = (xs.astype(np.float32) / 255.0)[:, None]  # (10000, 1, 28, 28)
    x = (x - 0.1307) / 0.3081  # the usual MNIST standardization
    order = np.random.default_rng(seed).permutation(len(x))
    tr, te = order[:8000], order[8000:]
    rng = np.random.default_rng(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 10, rng=rng),
    )
    opt = nn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    t0 = time.perf_counter()
    history = nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x[tr], ys[tr]), epochs=epochs, batch_size=64,
                     seed=seed, verbose=False)
    seconds = time.perf_counter() - t0
    scores = nn.evaluate(model, nn.CrossEntropyLoss(), x[te], ys[te])
    return {"run": "lenet_mnist_t10k", "test_accuracy": scores["accuracy"], "test_loss": scores["loss"],
            "epochs": len(history), "steps": opt.step_count, "n_train": len(tr), "n_test": len(te),
            "train_seconds": round(seconds, 2), "seed": seed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", choices=["mnist1d", "lenet"], default=["mnist1d", "lenet"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mnist-root", type=Path, default=DEFAULT_MNIST)
    args = parser.parse_args()
    for run in args.runs:
        result = mnist1d_cnn(args.seed) if run == "mnist1d" else lenet_mnist(args.mnist_root, args.seed)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
