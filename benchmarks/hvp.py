"""Hessian-vector products: nablanet's forward-over-reverse against PyTorch's double backward, on the
same model, the same weights and the same directions, float64, in one process (interleaved rounds).

Models (the issue's two):
    lstm       LSTM(16, 32, batch_first=True) → last step → Linear(32, 10); N = 32 sequences of length 20
    attention  Embedding(50, 32) → 2 × [Residual(MultiheadAttention(32, 4)), Residual(Linear(32, 64), GELU,
               Linear(64, 32))] → Flatten → Linear(16·32, 10); N = 32 sequences of 16 tokens
Two kinds of work per model, each a round of ``--hvps`` products along random directions:
    call   ``nn.lab.hvp(model, loss, x, y, v)`` per direction: forward, backward and the R-passes, against
           torch's forward, grad(create_graph=True) and grad(g·v)
    point  the products at one point, as Lanczos and CG use them: nablanet's linearized point built once,
           against torch's graph of g built once (retain_graph) and grad(g·v) per direction
Prints medians and paired ratios (nablanet/pytorch, < 1: nablanet faster) as JSON. Not a test.
    python benchmarks/hvp.py [--repeats 5] [--hvps 10] [--threads k]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import blas_info, paired_ratio, summary

import nablanet as nn
from nablanet.lab._point import Point

F64 = np.float64
N, L_LSTM, L_ATT, E, HEADS, VOCAB = 32, 20, 16, 32, 4, 50


def lstm_models() -> tuple[nn.Layer, Any, np.ndarray, np.ndarray]:
    import torch

    ours = nn.Sequential(nn.LSTM(16, 32, batch_first=True, dtype=F64, rng=0), nn.LastStep(),
                         nn.Linear(32, 10, dtype=F64, rng=1))

    class T(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.add_module("0", torch.nn.LSTM(16, 32, batch_first=True))
            self.add_module("2", torch.nn.Linear(32, 10))

        def forward(self, x: Any) -> Any:
            return getattr(self, "2")(getattr(self, "0")(x)[0][:, -1])

    rng = np.random.default_rng(0)
    return ours, T(), rng.standard_normal((N, L_LSTM, 16)), rng.integers(0, 10, N)


def attention_models() -> tuple[nn.Layer, Any, np.ndarray, np.ndarray]:
    import torch

    layers: list[nn.Layer] = [nn.Embedding(VOCAB, E, dtype=F64, rng=0)]
    for b in range(2):
        layers += [nn.Residual(nn.MultiheadAttention(E, HEADS, batch_first=True, dtype=F64, rng=10 + b)),
                   nn.Residual(nn.Linear(E, 2 * E, dtype=F64, rng=20 + b), nn.GELU(),
                               nn.Linear(2 * E, E, dtype=F64, rng=30 + b))]
    ours = nn.Sequential(*layers, nn.Flatten(), nn.Linear(L_ATT * E, 10, dtype=F64, rng=1))

    class Attn(torch.nn.Module):  # x + MHA(x, x, x); need_weights=True: the fused kernel has no double backward
        def __init__(self) -> None:
            super().__init__()
            self.add_module("0", torch.nn.MultiheadAttention(E, HEADS, batch_first=True))

        def forward(self, x: Any) -> Any:
            return x + getattr(self, "0")(x, x, x, need_weights=True)[0]

    class Mlp(torch.nn.Sequential):
        def forward(self, x: Any) -> Any:
            return x + super().forward(x)

    mods: list[Any] = [torch.nn.Embedding(VOCAB, E)]
    for _ in range(2):
        mods += [Attn(), Mlp(torch.nn.Linear(E, 2 * E), torch.nn.GELU(), torch.nn.Linear(2 * E, E))]
    theirs = torch.nn.Sequential(*mods, torch.nn.Flatten(), torch.nn.Linear(L_ATT * E, 10))
    rng = np.random.default_rng(0)
    return ours, theirs, rng.integers(0, VOCAB, (N, L_ATT)), rng.integers(0, 10, N)


def _torch_setup(ours: nn.Layer, theirs: Any) -> Any:
    import torch

    theirs = theirs.double()
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    return theirs


def runners(ours: nn.Layer, theirs: Any, x: np.ndarray, y: np.ndarray, hvps: int
            ) -> tuple[dict[str, Callable[[], Any]], Callable[[], float]]:
    """The four timed functions of one model, and a check: the largest relative error over the directions."""
    import torch

    loss = nn.CrossEntropyLoss()
    rng = np.random.default_rng(1)
    vs = [{k: rng.standard_normal(p.shape) for k, p in ours.named_parameters()} for _ in range(hvps)]
    params = list(theirs.parameters())
    names = [n for n, _ in theirs.named_parameters()]
    tvs = [[torch.from_numpy(v[n]) for n in names] for v in vs]
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def torch_grad() -> Any:
        value = torch.nn.functional.cross_entropy(theirs(tx), ty)
        return torch.autograd.grad(value, params, create_graph=True)

    def torch_hvp(g: Any, tv: list[Any], retain: bool) -> Any:
        dot = sum((gi * vi).sum() for gi, vi in zip(g, tv, strict=True))
        return torch.autograd.grad(dot, params, retain_graph=retain)

    def torch_call() -> list[Any]:
        return [torch_hvp(torch_grad(), tv, False) for tv in tvs]

    def torch_point() -> list[Any]:
        g = torch_grad()
        return [torch_hvp(g, tv, True) for tv in tvs]

    def ours_call() -> list[dict[str, np.ndarray]]:
        return [nn.lab.hvp(ours, loss, x, y, v) for v in vs]

    def ours_point() -> list[dict[str, np.ndarray]]:
        point = Point("hvp", ours, loss, x, y, False, None)
        return [point.hvp(v) for v in vs]

    def error() -> float:
        got, want = ours_point(), torch_point()
        return max(float(np.max(np.abs(g[n] - w[i].numpy())) / np.max(np.abs(w[i].numpy())))
                   for g, w in zip(got, want, strict=True) for i, n in enumerate(names))

    return {"nablanet call": ours_call, "pytorch call": torch_call, "nablanet point": ours_point,
            "pytorch point": torch_point}, error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hvps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads, user_api="blas")
    out: dict[str, Any] = {"cpus": os.cpu_count(), "threads": args.threads or os.cpu_count(),
                           "numpy_blas": blas_info(), "hvps_per_round": args.hvps}
    for name, build in (("lstm", lstm_models), ("attention", attention_models)):
        ours, theirs, x, y = build()
        fns, error = runners(ours, _torch_setup(ours, theirs), x, y, args.hvps)
        for fn in fns.values():  # warm up
            fn()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.repeats):
            for k, fn in fns.items():
                time.sleep(0.2)
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        out[name] = {
            "parameters": sum(p.size for p in ours.parameters()),
            "max relative error vs pytorch": error(),
            "times": {k: summary(ts) for k, ts in times.items()},
            "ratios": {f"nablanet/pytorch ({kind})": paired_ratio(times, f"nablanet {kind}", f"pytorch {kind}")
                       for kind in ("call", "point")},
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
