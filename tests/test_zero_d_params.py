"""0-d parameters (a scalar nn.Parameter(np.array(1.0)), e.g. a learnable β): every optimizer and
option, clipping, the optimizer's state dict, the model's state dict, and nn.save / nn.load.

A VJP that sums to a scalar hands back a NumPy scalar (``g.sum()`` is ``np.float64``, not a 0-d
array), so each case runs with both kinds of gradient.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import rel_err
from test_optim import CASES, TOL, case_id

import nablanet as nn
from nablanet.optim import Optimizer, clip_grad_norm_, clip_grad_value_
from nablanet.parameter import Parameter

STEPS = 8
GRADS = [0.7, -0.2, 1.3, 0.05, -0.9, 0.4, 2.0, -0.6]  # one scalar gradient per step, both signs
KINDS = ["0-d array", "numpy scalar"]


def _grad(value: float, dtype: Any, kind: str) -> np.ndarray:
    return np.array(value, dtype=dtype) if kind == "0-d array" else dtype(value)  # type: ignore[no-any-return]


def _run(cls: type[Optimizer], kwargs: dict[str, Any], dtype: Any, kind: str) -> tuple[Parameter, np.ndarray]:
    p = Parameter(np.array(1.25, dtype=dtype))
    first = p.data
    opt = cls([p], **kwargs)
    for g in GRADS:
        p.grad = _grad(g, dtype, kind)
        opt.step()
    assert p.data is first, "the update must be in place"
    assert p.data.shape == () and p.data.dtype == dtype
    return p, first


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_every_optimizer_steps_a_0d_parameter_as_torch_does(case: Any, dtype: Any, kind: str) -> None:
    torch = pytest.importorskip("torch")
    cls, torch_name, kwargs = case
    p, _ = _run(cls, kwargs, dtype, kind)
    tp = torch.tensor(np.array(1.25, dtype=dtype), requires_grad=True)
    opt = getattr(torch.optim, torch_name)([tp], foreach=False, **kwargs)
    for g in GRADS:
        tp.grad = torch.tensor(np.array(g, dtype=dtype))
        opt.step()
    assert tp.shape == ()
    assert rel_err(p.data, tp.detach().numpy()) <= TOL[dtype]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_every_optimizer_moves_a_0d_parameter_against_its_gradient(case: Any, kind: str) -> None:
    cls, _, kwargs = case
    for sign in (1.0, -1.0):
        p = Parameter(np.array(0.5))
        opt = cls([p], **kwargs)
        p.grad = _grad(sign * 0.8, np.float64, kind)
        opt.step()
        assert p.data.shape == ()
        assert sign * (p.data - 0.5) < 0, f"{case_id(case)}: a gradient of sign {sign} must move w the other way"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_a_0d_parameters_optimizer_state_round_trips(case: Any, kind: str) -> None:
    """Two steps, state_dict, a fresh optimizer loads it, six more steps: the same as eight in a row."""
    cls, _, kwargs = case
    whole, _ = _run(cls, kwargs, np.float64, kind)
    p = Parameter(np.array(1.25))
    opt = cls([p], **kwargs)
    for g in GRADS[:2]:
        p.grad = _grad(g, np.float64, kind)
        opt.step()
    state = opt.state_dict()
    assert all(a.shape == () for s in state["state"].values() for a in s.values())
    resumed = cls([p], **kwargs)
    resumed.load_state_dict(state)
    for g in GRADS[2:]:
        p.grad = _grad(g, np.float64, kind)
        resumed.step()
    assert p.data == whole.data


@pytest.mark.parametrize("kind", KINDS)
def test_clipping_reaches_a_0d_gradient(kind: str) -> None:
    p, q = Parameter(np.array(1.0)), Parameter(np.ones(3))
    p.grad, q.grad = _grad(4.0, np.float64, kind), np.full(3, 3.0)
    total = clip_grad_norm_([p, q], max_norm=1.0)
    assert total == pytest.approx(math.sqrt(16 + 27))
    scale = 1.0 / (total + 1e-6)
    assert np.asarray(p.grad) == pytest.approx(4.0 * scale)  # clipped where the optimizer reads it
    np.testing.assert_allclose(q.grad, 3.0 * scale)
    p.grad = _grad(-4.0, np.float64, kind)
    clip_grad_value_([p, q], 0.5)
    assert np.asarray(p.grad) == -0.5 and np.asarray(p.grad).shape == ()


def test_clipping_a_0d_gradient_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    ours = [Parameter(np.array(0.0)), Parameter(np.zeros(2))]
    theirs = [torch.zeros((), dtype=torch.float64, requires_grad=True), torch.zeros(2, dtype=torch.float64)]
    for p, t, g in zip(ours, theirs, (np.float64(-3.0), np.array([2.0, 1.0])), strict=True):
        p.grad, t.grad = g, torch.tensor(np.array(g))
    assert clip_grad_norm_(ours, 1.5, 3.0) == pytest.approx(float(torch.nn.utils.clip_grad_norm_(theirs, 1.5, 3.0)))
    for p, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12)


def test_a_parameter_made_from_a_scalar_is_a_0d_array() -> None:
    """``nn.Parameter(np.float32(1.0))`` (a NumPy scalar, not an array) becomes a 0-d array, so
    optimizers update it in place and the model sees the update."""
    for value, dtype in ((np.float32(1.0), np.float32), (np.float64(1.0), np.float64), (1.0, np.float64)):
        p = Parameter(value)  # type: ignore[arg-type]
        assert isinstance(p.data, np.ndarray) and p.data.shape == () and p.data.dtype == dtype
        first = p.data
        p.grad = np.array(1.0, dtype=dtype)
        nn.optim.Adam([p], lr=0.1).step()
        assert p.data is first and p.data < 1.0


class _Gain(nn.Layer):
    """y = β x with a learnable scalar β.  Shapes: x (N, i)  β ()  y (N, i).  VJP: dx = β dy,  dβ = Σ dy ⊙ x."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = nn.Parameter(np.array(beta, dtype=np.float64))

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, Any]:
        return self.beta.data * x, x

    def vjp(self, cache: Any, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True) -> Any:
        g = dy * cache
        return self.beta.data * dy, {"beta": g.sum(axis=-1) if per_sample else g.sum(axis=(-2, -1))}

    def get_config(self) -> dict[str, Any]:
        return {"beta": float(self.beta.data)}


def test_a_0d_parameter_in_the_state_dict() -> None:
    model = nn.Sequential(nn.Linear(2, 2, dtype=np.float64), _Gain(0.5))
    sd = model.state_dict()
    assert sd["1.beta"].shape == () and sd["1.beta"] == 0.5
    sd["1.beta"] = np.array(2.0)
    model.load_state_dict(sd)
    assert model[1].beta.data == 2.0 and model[1].beta.data.shape == ()
    with pytest.raises(ValueError, match=r"'1.beta' has shape \(1,\) in the state dict but \(\) in the model"):
        model.load_state_dict({**sd, "1.beta": np.array([2.0])})


@pytest.mark.parametrize("opt", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_a_0d_parameter_saves_and_loads_with_its_optimizer_state(tmp_path: Path, opt: str, monkeypatch: Any) -> None:
    monkeypatch.setattr("nablanet.train._architecture._registered", {})
    nn.register_layer(_Gain)
    model = nn.Sequential(nn.Linear(3, 2, dtype=np.float64), _Gain(0.5))
    x, y = np.random.default_rng(0).standard_normal((16, 3)), np.arange(16) % 2
    kwargs = {"lr": 0.05, "momentum": 0.9} if opt == "SGD" else {"lr": 0.05}
    optimizer = getattr(nn.optim, opt)(model.parameters(), **kwargs)
    nn.fit(model, nn.CrossEntropyLoss(), optimizer, (x, y), epochs=2, batch_size=4)
    assert model[1].beta.data != 0.5  # β trained
    nn.save(model, tmp_path / "m.npz", optimizer=optimizer)
    ckpt = nn.load_checkpoint(tmp_path / "m.npz")
    assert ckpt.model[1].beta.data.shape == () and ckpt.model[1].beta.data == model[1].beta.data
    resumed = getattr(nn.optim, opt)(ckpt.model.parameters(), **kwargs)
    assert ckpt.optimizer_state is not None
    resumed.load_state_dict(ckpt.optimizer_state)
    nn.fit(model, nn.CrossEntropyLoss(), optimizer, (x, y), epochs=1, batch_size=4, initial_epoch=2)
    nn.fit(ckpt.model, nn.CrossEntropyLoss(), resumed, (x, y), epochs=1, batch_size=4, initial_epoch=2)
    for (k, a), b in zip(model.state_dict().items(), ckpt.model.state_dict().values(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=k)
