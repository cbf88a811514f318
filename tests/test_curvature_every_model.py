"""Every curvature function on every kind of model the library builds (tests/model_zoo.py): the Hessian-
vector product against differences of gradients, the dense Hessian symmetric, the GGN positive semi-
definite, Lanczos against the dense spectrum, Hutchinson, the step-size report, the Newton step, and
params= blocks equal to the blocks of the full Hessian. Together the zoo's models hold every public layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from model_zoo import MODELS, Zoo
from test_conformance import _public_classes

import nablanet as nn
from nablanet.lab import curvature as cv

EPS = 1e-5


def _point(z: Zoo) -> tuple[nn.Layer, nn.Loss, Any, Any, dict[str, Any]]:
    rng = np.random.default_rng(0)
    model, loss, x, target = z.build(rng)
    kw: dict[str, Any] = {"train": True, "rng": 7} if z.train else {}
    return model, loss, x, target, kw


def _grad(model: nn.Layer, loss: nn.Loss, x: Any, target: Any, kw: dict[str, Any]) -> np.ndarray:
    _, g = nn.value_and_grad(model, loss, x, target, train=bool(kw.get("train")), rng=kw.get("rng"))
    return cv.flatten_params(g, model)


def _hvp_by_differences(model: nn.Layer, loss: nn.Loss, x: Any, target: Any, kw: dict[str, Any],
                        v: np.ndarray) -> np.ndarray:
    """(∇L(θ + εv) − ∇L(θ − εv)) / 2ε."""
    params = list(model.parameters())
    theta = cv.flatten_params(dict(model.named_parameters()), model).copy()
    sides = []
    for s in (1.0, -1.0):
        for p, part in zip(params, cv.unflatten_params(theta + s * EPS * v, model).values(), strict=True):
            p.data[...] = part
        sides.append(_grad(model, loss, x, target, kw))
    for p, part in zip(params, cv.unflatten_params(theta, model).values(), strict=True):
        p.data[...] = part
    return (sides[0] - sides[1]) / (2 * EPS)


@pytest.mark.parametrize("z", MODELS, ids=[z.id for z in MODELS])
def test_every_curvature_function_on_every_model(z: Zoo) -> None:
    model, loss, x, target, kw = _point(z)
    n = sum(p.size for p in model.parameters())
    rng = np.random.default_rng(1)
    v = rng.standard_normal(n)
    hv = cv.flatten_params(cv.hvp(model, loss, x, target, cv.unflatten_params(v, model), **kw), model)
    fd = _hvp_by_differences(model, loss, x, target, kw, v)
    assert np.max(np.abs(hv - fd)) <= 1e-6 * max(1.0, np.max(np.abs(fd))), z.id
    h = cv.hessian(model, loss, x, target, **kw)
    assert np.allclose(h @ v, hv, rtol=1e-10, atol=1e-12)
    assert np.max(np.abs(h - h.T)) <= 1e-10 * max(1.0, np.max(np.abs(h)))
    g = cv.ggn(model, loss, x, target, **kw)
    eig_h, eig_g = np.linalg.eigvalsh((h + h.T) / 2), np.linalg.eigvalsh((g + g.T) / 2)
    assert eig_g[0] >= -1e-10 * max(1.0, eig_g[-1])  # G = Jᵀ H_L J is PSD for a convex loss
    top = cv.hessian_eigenvalues(model, loss, x, target, k=1, **kw)[0]
    assert abs(top - eig_h[-1]) <= 1e-8 * max(1.0, abs(eig_h[-1]))
    trace, stderr = cv.hutchinson_trace(model, loss, x, target, n_samples=4, **kw)
    assert np.isfinite(trace) and stderr >= 0
    report = cv.step_size_report(model, loss, x, target, **kw)
    assert abs(report["lambda_max"] - eig_h[-1]) <= 1e-8 * max(1.0, abs(eig_h[-1]))
    assert abs(report["lambda_min"] - eig_h[0]) <= 1e-8 * max(1.0, abs(eig_h[-1]))
    step = cv.flatten_params(cv.newton_step(model, loss, x, target, damping=1.0, method="direct", **kw), model)
    grad = _grad(model, loss, x, target, kw)
    assert np.allclose((h + np.eye(n)) @ step, -grad, rtol=1e-8, atol=1e-10)
    # the block of the first parameter and the last one, by name and by Parameter
    named = list(model.named_parameters())
    block = [named[0][0], named[-1][0]]
    sizes = np.cumsum([0, *[p.size for _, p in named]])
    idx = np.r_[sizes[0]:sizes[1], sizes[-2]:sizes[-1]]
    for params in (block, [named[0][1], named[-1][1]]):
        hb = cv.hessian(model, loss, x, target, params=params, **kw)
        assert np.allclose(hb, h[np.ix_(idx, idx)], rtol=1e-10, atol=1e-12)


# public layers the zoo may leave out (none: every one is in a model above)
PENDING: set[str] = set()


def test_the_zoo_holds_every_public_layer() -> None:
    seen: set[type] = set()
    for z in MODELS:
        model, *_ = z.build(np.random.default_rng(0))
        seen |= {type(layer) for _, layer in model._walk()}
    layers = {cls for cls in _public_classes() if issubclass(cls, nn.Layer)}
    missing = sorted(cls.__name__ for cls in layers - seen if cls.__name__ not in PENDING)
    assert not missing, f"no model in tests/model_zoo.py uses {missing}"
