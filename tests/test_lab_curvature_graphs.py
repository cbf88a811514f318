"""Curvature through graph containers against PyTorch's double backward (float64): Residual, Parallel
(sum, concat, mul), Multiply and containers nested in containers. The torch twins carry the same
state_dict names, so the parameters and the directions map one to one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import rel_err

import nablanet as nn
from nablanet import lab

torch = pytest.importorskip("torch")
F64 = np.float64


class _TResidual(torch.nn.Sequential):
    def forward(self, x: Any) -> Any:
        return x + super().forward(x)


class _TParallel(torch.nn.Module):
    def __init__(self, *branches: Any, combine: str) -> None:
        super().__init__()
        for i, b in enumerate(branches):
            self.add_module(str(i), b)
        self.combine = combine

    def forward(self, x: Any) -> Any:
        outs = [b(x) for b in self.children()]
        if self.combine == "concat":
            return torch.cat(outs, dim=-1)
        total = outs[0]
        for y in outs[1:]:
            total = total + y if self.combine == "sum" else total * y
        return total


def _residual() -> tuple[nn.Layer, Any]:
    ours = nn.Sequential(nn.Linear(3, 4, dtype=F64),
                         nn.Residual(nn.Linear(4, 4, dtype=F64), nn.Tanh(), nn.Linear(4, 4, dtype=F64)),
                         nn.Linear(4, 3, dtype=F64))
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), _TResidual(torch.nn.Linear(4, 4), torch.nn.Tanh(),
                                                                   torch.nn.Linear(4, 4)), torch.nn.Linear(4, 3))
    return ours, theirs


def _parallel(combine: str) -> Callable[[], tuple[nn.Layer, Any]]:
    def build() -> tuple[nn.Layer, Any]:
        width = 6 if combine == "concat" else 3
        mine: list[nn.Layer] = [nn.Sequential(nn.Linear(3, 3, dtype=F64), nn.Sigmoid()), nn.Linear(3, 3, dtype=F64)]
        if combine != "concat":
            mine.append(nn.Sequential(nn.Linear(3, 3, dtype=F64), nn.GELU()))
        ours = nn.Sequential(nn.Parallel(*mine, combine=combine), nn.Tanh(), nn.Linear(width, 3, dtype=F64))
        branches = [torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Sigmoid()), torch.nn.Linear(3, 3)]
        if combine != "concat":
            branches.append(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.GELU()))
        theirs = torch.nn.Sequential(_TParallel(*branches, combine=combine), torch.nn.Tanh(),
                                     torch.nn.Linear(width, 3))
        return ours, theirs
    return build


def _nested() -> tuple[nn.Layer, Any]:
    ours = nn.Sequential(
        nn.Residual(nn.Multiply(nn.Sequential(nn.Linear(3, 3, dtype=F64), nn.Sigmoid()), nn.Linear(3, 3, dtype=F64)),
                    nn.Residual(nn.Linear(3, 3, dtype=F64), nn.Softplus())),
        nn.Linear(3, 3, dtype=F64))
    theirs = torch.nn.Sequential(
        _TResidual(_TParallel(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Sigmoid()), torch.nn.Linear(3, 3),
                              combine="mul"),
                   _TResidual(torch.nn.Linear(3, 3), torch.nn.Softplus())),
        torch.nn.Linear(3, 3))
    return ours, theirs


CASES = {"residual": _residual, "parallel-sum": _parallel("sum"), "parallel-concat": _parallel("concat"),
         "parallel-mul": _parallel("mul"), "nested": _nested}


def _setup(case: str) -> tuple[nn.Layer, Any, np.ndarray, np.ndarray]:
    ours, theirs = CASES[case]()
    theirs = theirs.double()
    state = {k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state)
    rng = np.random.default_rng(3)
    return ours, theirs, rng.standard_normal((4, 3)), rng.integers(0, 3, 4)


def _torch_hvp(theirs: Any, x: np.ndarray, y: np.ndarray, v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [n for n, _ in theirs.named_parameters()]
    params = [p for _, p in theirs.named_parameters()]
    value = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(y))
    grads = torch.autograd.grad(value, params, create_graph=True)
    dot = sum((g * torch.from_numpy(v[n])).sum() for n, g in zip(names, grads, strict=True))
    return {n: h.numpy() for n, h in zip(names, torch.autograd.grad(dot, params), strict=True)}


@pytest.mark.parametrize("case", list(CASES))
def test_hvp_matches_torch(case: str) -> None:
    ours, theirs, x, y = _setup(case)
    rng = np.random.default_rng(0)
    v = {k: rng.standard_normal(p.shape) for k, p in ours.named_parameters()}
    got, want = lab.hvp(ours, nn.CrossEntropyLoss(), x, y, v), _torch_hvp(theirs, x, y, v)
    assert list(got) == list(want)
    for name in want:
        assert rel_err(got[name], want[name]) <= 1e-12, name


def test_the_dense_hessian_its_top_eigenvalue_and_a_block_match_torch() -> None:
    """One graph (torch's dense Hessian costs ~10 ms per parameter; the zoo checks every model's against
    differences of gradients)."""
    ours, theirs, x, y = _setup("parallel-concat")
    loss = nn.CrossEntropyLoss()
    names = [n for n, _ in theirs.named_parameters()]
    params = tuple(theirs.parameters())

    def f(*ps: Any) -> Any:
        out = torch.func.functional_call(theirs, dict(zip(names, ps, strict=True)), (torch.from_numpy(x),))
        return torch.nn.functional.cross_entropy(out, torch.from_numpy(y))

    blocks = torch.autograd.functional.hessian(f, params)
    want = np.block([[blocks[i][j].reshape(params[i].numel(), params[j].numel()).numpy()
                      for j in range(len(params))] for i in range(len(params))])
    assert rel_err(lab.hessian(ours, loss, x, y), want) <= 1e-12
    top = lab.hessian_eigenvalues(ours, loss, x, y, k=1)[0]
    assert abs(top - np.linalg.eigvalsh(want)[-1]) <= 1e-9 * np.abs(np.linalg.eigvalsh(want)).max()
    i = names.index("0.1.weight")
    start = sum(p.numel() for p in params[:i])
    idx = np.arange(start, start + params[i].numel())
    block = lab.hessian(ours, loss, x, y, params=["0.1.weight"])
    assert rel_err(block, want[np.ix_(idx, idx)]) <= 1e-12
