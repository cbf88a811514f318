"""params=: every lab function works on a chosen set of parameters, by name or by Parameter, and says
what is wrong with a selection it cannot use."""

from __future__ import annotations

import numpy as np
import pytest

import nablanet as nn
from nablanet import lab

F64 = np.float64


def _setup() -> tuple[nn.Sequential, nn.Loss, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(3, 4, dtype=F64, rng=rng), nn.Tanh(),
                          nn.Residual(nn.Linear(4, 4, dtype=F64, rng=rng), nn.Sigmoid()),
                          nn.Linear(4, 3, dtype=F64, rng=rng))
    return model, nn.CrossEntropyLoss(), rng.standard_normal((6, 3)), rng.integers(0, 3, 6)


def test_first_order_instruments_on_a_block_equal_the_whole_restricted() -> None:
    model, loss, x, y = _setup()
    block = ["2.0.weight", "3.bias"]
    by_object = [model[2][0].weight, model[3].bias]
    for fn in (lab.per_sample_grads, lab.per_sample_grad_norms):
        whole = fn(model, loss, x, y)
        for params in (block, by_object):
            part = fn(model, loss, x, y, params=params)
            assert list(part) == block
            for name in block:
                np.testing.assert_array_equal(part[name], whole[name])
    norms = lab.grad_norms(model, loss, x, y, params=block)
    whole = lab.grad_norms(model, loss, x, y)
    assert norms["2.0.weight"] == whole["2.0.weight"] and "0.weight" not in norms
    assert norms["total"] == pytest.approx(np.hypot(whole["2.0.weight"], whole["3.bias"]), rel=1e-12)
    stats = lab.gradient_stats(model, loss, x, y, params="3.bias")
    assert stats["3.bias"].trace_cov == pytest.approx(lab.gradient_stats(model, loss, x, y)["3.bias"].trace_cov)
    assert list(stats.params) == ["3.bias"] and stats.total.trace_cov == pytest.approx(stats["3.bias"].trace_cov)
    sweep = lab.batch_size_sweep(model, loss, x, y, [2, 3], draws=4, params=["3.bias"])
    assert sweep.trace_cov == pytest.approx(stats["3.bias"].trace_cov)
    assert sweep.rows[0]["predicted"] == pytest.approx(sweep.trace_cov / 2 * (6 - 2) / 6)


def test_the_hessian_of_a_block_is_that_block_of_the_hessian() -> None:
    model, loss, x, y = _setup()
    h = lab.hessian(model, loss, x, y)
    names = [n for n, _ in model.named_parameters()]
    sizes = dict((n, p.size) for n, p in model.named_parameters())
    start = dict(zip(names, np.cumsum([0, *sizes.values()])[:-1], strict=True))
    block = ["3.weight", "2.0.bias"]  # given out of order: the model's order is used
    idx = np.concatenate([np.arange(start[n], start[n] + sizes[n]) for n in names if n in block])
    hb = lab.hessian(model, loss, x, y, params=block)
    np.testing.assert_allclose(hb, h[np.ix_(idx, idx)], rtol=1e-12, atol=1e-14)
    v = {n: np.ones(model.state_dict()[n].shape) for n in ("2.0.bias", "3.weight")}
    hv = lab.hvp(model, loss, x, y, v, params=block)
    assert list(hv) == ["2.0.bias", "3.weight"]
    np.testing.assert_allclose(lab.flatten_params(hv, model, block=block), hb @ np.ones(idx.size), rtol=1e-12)
    top = lab.hessian_eigenvalues(model, loss, x, y, params=block)[0]
    assert top == pytest.approx(np.linalg.eigvalsh(hb)[-1], rel=1e-9)
    step = lab.newton_step(model, loss, x, y, damping=1.0, method="direct", params=block)
    assert list(step) == ["2.0.bias", "3.weight"]


def test_a_bad_selection_says_what_is_wrong() -> None:
    model, loss, x, y = _setup()
    with pytest.raises(KeyError, match=r"'3.wieght' is not a parameter of the model; expected names from \["):
        lab.hvp(model, loss, x, y, {}, params=["3.wieght"])
    with pytest.raises(KeyError, match="is not one of this model's"):
        lab.per_sample_grads(model, loss, x, y, params=[nn.Linear(2, 2).weight])
    with pytest.raises(TypeError, match="expected a parameter name"):
        lab.grad_norms(model, loss, x, y, params=[3])
    with pytest.raises(ValueError, match="no parameter selected"):
        lab.hessian(model, loss, x, y, params=[])
    with pytest.raises(KeyError, match=r"missing keys \['3.bias'\]"):
        lab.hvp(model, loss, x, y, {"3.weight": np.ones((3, 4))}, params=["3.weight", "3.bias"])
