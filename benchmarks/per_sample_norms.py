"""Per-sample gradient norms ‖∂ℓₙ/∂θ‖ of every parameter, nablanet against PyTorch, in one process.

    mlp  784-256-128-10 ReLU (the MLP of mlp_epoch.py), batch 128, float32, cross-entropy
    cnn  LeNet-style on 28x28 (the CNN of lenet_epoch.py): conv 5x5 1->32 padding 2, ReLU, max-pool 2,
         conv 5x5 32->64 padding 2, ReLU, max-pool 2, Flatten, Linear 3136->10; batch 64, float32

Timed, each from the inputs to the norms (forward and backward included):
    nablanet               nablanet.lab.per_sample.per_sample_grad_norms (closed forms, nothing materialized
                           for Linear; Gram or per-block products for the convolutions)
    nablanet_materialized  norms of nablanet.lab.per_sample.per_sample_grads (every gₙ built)
    pytorch                torch.func.vmap(torch.func.grad(loss of one sample)) + a norm per parameter
    *_backward             one ordinary forward + backward of the batch, for scale

Prints medians (and min/max) of several repetitions, the ratios to PyTorch, and the largest relative
difference between the two libraries' norms, as JSON. Not a test.
    python benchmarks/per_sample_norms.py [--repeats 7] [--mlp-batch 128] [--cnn-batch 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import nablanet as nn
from nablanet.lab._tape import run_tape
from nablanet.lab.per_sample import per_sample_grad_norms, per_sample_grads


def build_mlp() -> nn.Sequential:
    f32 = np.float32
    return nn.Sequential(nn.Linear(784, 256, dtype=f32, rng=0), nn.ReLU(), nn.Linear(256, 128, dtype=f32, rng=1),
                         nn.ReLU(), nn.Linear(128, 10, dtype=f32, rng=2))


def build_cnn() -> nn.Sequential:
    f32 = np.float32
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2, dtype=f32, rng=0), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2, dtype=f32, rng=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 10, dtype=f32, rng=2),
    )


def torch_model(model: nn.Sequential) -> Any:
    """The same architecture in PyTorch, loaded with ``model``'s weights."""
    import torch

    t = torch.nn
    mods: list[Any] = []
    for layer in model:
        cfg = layer.get_config()
        cfg.pop("dtype", None)
        mods.append(getattr(t, type(layer).__name__)(**cfg))
    tm = t.Sequential(*mods)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return tm.eval()


def make_data(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape, dtype=np.float32), rng.integers(0, 10, shape[0])


def torch_norms_fn(tm: Any, x: np.ndarray, y: np.ndarray) -> Callable[[], dict[str, Any]]:
    import torch
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in tm.named_parameters()}
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = torch.nn.functional.cross_entropy

    def loss_one(p: dict[str, Any], xn: Any, yn: Any) -> Any:
        return loss_fn(functional_call(tm, p, (xn.unsqueeze(0),)), yn.unsqueeze(0))

    per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0))

    def run() -> dict[str, Any]:
        g = per_sample(params, tx, ty)
        return {k: v.flatten(1).norm(dim=1) for k, v in g.items()}

    return run


def torch_backward_fn(tm: Any, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    import torch

    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def run() -> None:
        tm.zero_grad()
        torch.nn.functional.cross_entropy(tm(tx), ty).backward()

    return run


def timed(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def bench(model: nn.Sequential, x: np.ndarray, y: np.ndarray, repeats: int, with_torch: bool) -> dict[str, Any]:
    loss = nn.CrossEntropyLoss()

    def materialized() -> dict[str, np.ndarray]:
        grads = per_sample_grads(model, loss, x, y)
        return {k: np.linalg.norm(g.reshape(len(g), -1), axis=1) for k, g in grads.items()}

    runners: dict[str, Callable[[], object]] = {
        "nablanet": lambda: per_sample_grad_norms(model, loss, x, y),
        "nablanet_materialized": materialized,
        "nablanet_backward": lambda: run_tape(model, loss, x, y),
    }
    out: dict[str, Any] = {}
    if with_torch:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        tm = torch_model(model)
        torch_norms = torch_norms_fn(tm, x, y)
        runners["pytorch"] = torch_norms
        runners["pytorch_backward"] = torch_backward_fn(tm, x, y)
        ours = per_sample_grad_norms(model, loss, x, y)
        theirs = torch_norms()
        out["max_rel_diff_vs_pytorch"] = max(
            float(np.max(np.abs(ours[k] - v.numpy())) / np.max(np.abs(v.numpy()))) for k, v in theirs.items()
        )
    times = {name: timed(fn, repeats) for name, fn in runners.items()}
    out["times"] = times
    if with_torch:
        med = {k: v["median_s"] for k, v in times.items()}
        out["ratios"] = {
            "nablanet/pytorch": med["nablanet"] / med["pytorch"],
            "nablanet_materialized/pytorch": med["nablanet_materialized"] / med["pytorch"],
            "nablanet_backward/pytorch_backward": med["nablanet_backward"] / med["pytorch_backward"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--mlp-batch", type=int, default=128)
    parser.add_argument("--cnn-batch", type=int, default=64)
    parser.add_argument("--skip", nargs="*", default=[], choices=["torch", "mlp", "cnn"])
    args = parser.parse_args()
    with_torch = "torch" not in args.skip
    results: dict[str, Any] = {}
    if "mlp" not in args.skip:
        x, y = make_data((args.mlp_batch, 784))
        results["mlp"] = {"work": f"per-sample grad norms, MLP 784-256-128-10 ReLU, batch {args.mlp_batch}, float32",
                          **bench(build_mlp(), x, y, args.repeats, with_torch)}
    if "cnn" not in args.skip:
        x, y = make_data((args.cnn_batch, 1, 28, 28), seed=1)
        results["cnn"] = {"work": f"per-sample grad norms, LeNet-style CNN 28x28, batch {args.cnn_batch}, float32",
                          **bench(build_cnn(), x, y, args.repeats, with_torch)}
    print(json.dumps({"cpus": os.cpu_count(), "repeats": args.repeats, **results}, indent=2))


if __name__ == "__main__":
    main()
