"""Reference result for the recurrent layers (issue 7): the MNIST-1D paper's GRU, as JSON.

The model of Greydanus (2020), ``mnist1d/models.py``: each signal (40 samples) is read as a
sequence of 40 time steps with 1 feature; GRU(1, 6, bidirectional=True, batch_first=True); all
time steps' outputs, (N, 40, 12), are flattened to 480 features for Linear(480, 10). Adam lr 1e-2,
batch 100, 6000 steps on the 4,000 training signals; test on the official 1,000.
Paper: 91% (its notebook: 89.1%). Target here: >= 85%.

    python benchmarks/reference_gru.py [--seed 0] [--steps 6000]

The same run is a test marked ``slow`` (``pytest -m slow tests/test_reference_gru.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

import nablanet as nn
from nablanet.layers.recurrent import GRU

SEQ_LEN, HIDDEN = 40, 6


def build(seed: int = 0) -> nn.Sequential:
    """GRU(1, 6, bidirectional, batch_first) → Flatten → Linear(40·12 = 480, 10)."""
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        GRU(1, HIDDEN, batch_first=True, bidirectional=True, rng=rng),
        nn.Flatten(),
        nn.Linear(SEQ_LEN * 2 * HIDDEN, 10, rng=rng),
    )


def mnist1d_gru(seed: int = 0, steps: int = 6000) -> dict[str, Any]:
    splits = nn.data.load_mnist1d(seed=seed, validation=0.0, flatten=False)
    x, y = splits.train
    xt, yt = splits.test
    x, xt = x.transpose(0, 2, 1), xt.transpose(0, 2, 1)  # (N, 1, 40) → (N, 40, 1): 40 steps of 1 feature
    model = build(seed)
    opt = nn.optim.Adam(model.parameters(), lr=1e-2)
    batch = 100
    epochs = -(-steps * batch // len(x))  # whole epochs covering at least ``steps`` steps
    t0 = time.perf_counter()
    history = nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=epochs, batch_size=batch, seed=seed,
                     verbose=False)
    seconds = time.perf_counter() - t0
    scores = nn.evaluate(model, nn.CrossEntropyLoss(), xt, yt)
    return {"run": "mnist1d_gru", "test_accuracy": scores["accuracy"], "test_loss": scores["loss"],
            "train_accuracy": history["accuracy"][-1], "steps": opt.step_count, "epochs": len(history),
            "n_train": len(x), "n_test": len(xt), "train_seconds": round(seconds, 2), "seed": seed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=6000)
    args = parser.parse_args()
    print(json.dumps(mnist1d_gru(args.seed, args.steps)), flush=True)


if __name__ == "__main__":
    main()
