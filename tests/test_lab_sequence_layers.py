"""The gradient lab on recurrent, attention and bilinear layers: per-sample gradients and norms
against PyTorch (each sample's own loss through autograd), and Jacobians against torch (float64).

Parameters shared across time steps: a sample's gradient is the sum over its own time steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import rel_err

import nablanet as nn

torch = pytest.importorskip("torch")

N, L = 4, 5


def _gru() -> tuple[nn.Layer, Any, tuple[int, ...]]:
    ours = nn.Sequential(nn.GRU(3, 4, bidirectional=True, batch_first=True, dtype=np.float64),
                         nn.Flatten(), nn.Linear(L * 8, 3, dtype=np.float64))

    class T(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.add_module("0", torch.nn.GRU(3, 4, bidirectional=True, batch_first=True))
            self.add_module("2", torch.nn.Linear(L * 8, 3))

        def forward(self, x: Any) -> Any:
            return getattr(self, "2")(getattr(self, "0")(x)[0].flatten(1))

    return ours, T().double(), (N, L, 3)


def _lstm() -> tuple[nn.Layer, Any, tuple[int, ...]]:
    ours = nn.Sequential(nn.LSTM(3, 4, num_layers=2, batch_first=True, dtype=np.float64), nn.LastStep(),
                         nn.Linear(4, 3, dtype=np.float64))

    class T(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.add_module("0", torch.nn.LSTM(3, 4, num_layers=2, batch_first=True))
            self.add_module("2", torch.nn.Linear(4, 3))

        def forward(self, x: Any) -> Any:
            return getattr(self, "2")(getattr(self, "0")(x)[0][:, -1])

    return ours, T().double(), (N, L, 3)


def _attention() -> tuple[nn.Layer, Any, tuple[int, ...]]:
    ours = nn.Sequential(nn.MultiheadAttention(4, 2, batch_first=True, dtype=np.float64), nn.Flatten(),
                         nn.Linear(L * 4, 3, dtype=np.float64))

    class T(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.add_module("0", torch.nn.MultiheadAttention(4, 2, batch_first=True))
            self.add_module("2", torch.nn.Linear(L * 4, 3))

        def forward(self, x: Any) -> Any:
            return getattr(self, "2")(getattr(self, "0")(x, x, x, need_weights=False)[0].flatten(1))

    return ours, T().double(), (N, L, 4)


def _bilinear() -> tuple[nn.Layer, Any, tuple[int, ...]]:
    ours = nn.Sequential(nn.Pair(nn.Linear(3, 4, dtype=np.float64), nn.Linear(3, 2, dtype=np.float64)),
                         nn.Bilinear(4, 2, 3, dtype=np.float64))

    class T(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.bil = torch.nn.Linear(3, 4), torch.nn.Linear(3, 2), torch.nn.Bilinear(4, 2, 3)

        def forward(self, x: Any) -> Any:
            return self.bil(self.a(x), self.b(x))

    t = T().double()
    return ours, t, (N, 3)


# our state_dict name -> torch's, where they differ
RENAME = {"0.0.weight": "a.weight", "0.0.bias": "a.bias", "0.1.weight": "b.weight", "0.1.bias": "b.bias",
          "1.weight": "bil.weight", "1.bias": "bil.bias"}
CASES: dict[str, Callable[[], tuple[nn.Layer, Any, tuple[int, ...]]]] = {
    "gru": _gru, "lstm": _lstm, "attention": _attention, "bilinear": _bilinear}


def _setup(case: str) -> tuple[nn.Layer, Any, np.ndarray, np.ndarray, dict[str, str]]:
    ours, tmodel, shape = CASES[case]()
    tsd = {k: v.detach().numpy() for k, v in tmodel.state_dict().items()}
    names = {k: RENAME.get(k, k) if case == "bilinear" else k for k in ours.state_dict()}
    ours.load_state_dict({k: tsd[names[k]] for k in names})
    rng = np.random.default_rng(0)
    return ours, tmodel, rng.standard_normal(shape), rng.integers(0, 3, N), names


def _torch_per_sample(tmodel: Any, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Each sample's own loss differentiated by autograd, one sample at a time (torch.func.vmap
    does not batch torch's fused RNN kernels)."""
    out: dict[str, list[np.ndarray]] = {k: [] for k, _ in tmodel.named_parameters()}
    for n in range(len(x)):
        tmodel.zero_grad()
        loss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x[n : n + 1])), torch.from_numpy(y[n : n + 1]))
        loss.backward()
        for k, p in tmodel.named_parameters():
            out[k].append(p.grad.numpy().copy())
    return {k: np.stack(v) for k, v in out.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_per_sample_grads_and_norms_match_torch(case: str) -> None:
    ours, tmodel, x, y, names = _setup(case)
    loss = nn.CrossEntropyLoss()
    ref = _torch_per_sample(tmodel, x, y)
    got = nn.lab.per_sample_grads(ours, loss, x, y)
    norms = nn.lab.per_sample_grad_norms(ours, loss, x, y)
    assert set(got) == set(names)
    for k, g in got.items():
        r = ref[names[k]]
        assert g.shape == r.shape
        assert rel_err(g, r) <= 1e-10, k
        assert rel_err(norms[k], np.linalg.norm(r.reshape(N, -1), axis=1)) <= 1e-10, k
    _, batch = nn.value_and_grad(ours, loss, x, y, train=False)
    for k, g in got.items():  # per-sample gradients of each sample's own loss average to the batch gradient
        np.testing.assert_allclose(g.mean(axis=0), batch[k], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("case", ["gru", "lstm", "attention"])
def test_model_jacobian_matches_torch(case: str) -> None:
    ours, tmodel, x, _, _ = _setup(case)
    jac = nn.lab.jacobian(ours, x)  # (N, out, in)
    tj = torch.autograd.functional.jacobian(lambda t: tmodel(t), torch.from_numpy(x)).numpy()
    # torch's is (N, out, N, *in): keep each sample's block
    blocks = np.stack([tj[n, :, n].reshape(tj.shape[1], -1) for n in range(N)])
    assert rel_err(jac, blocks) <= 1e-10
