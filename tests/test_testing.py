"""nn.testing.check_layer: the documented custom layer passes; each kind of mistake a user or a student
makes is caught by the right check, with a message that names the check, the tensor, the error and the fix."""

from __future__ import annotations

import importlib.util
import re
import sys
import textwrap
from typing import Any

import numpy as np
import pytest

import nablanet as nn
import nablanet.testing
from nablanet.lab.registry import jvp_rules, per_sample_grad_norms_rules, vjp_rop_rules
from nablanet.layers.activations import Elementwise
from nablanet.testing import LayerCheckError, LayerCheckReport, check_layer


def _documented_example() -> dict[str, Any]:
    """Run the "write your own layer" example of nablanet.testing's docstring; return its namespace."""
    doc = nablanet.testing.__doc__ or ""
    block = doc.split("its two R-op rules::\n", 1)[1].split("\nIt raises", 1)[0]
    namespace: dict[str, Any] = {"__name__": "example"}
    exec(compile(textwrap.dedent(block), "testing-docstring", "exec"), namespace)
    return namespace


EXAMPLE = _documented_example()
Scale = EXAMPLE["Scale"]


def _x(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape)


def _failed(report: LayerCheckReport) -> list[str]:
    return [f"{c.check} · {c.tensor}" for c in report.failures]


def test_the_documented_custom_layer_passes_every_check() -> None:
    report = check_layer(Scale(3), _x(4, 3))
    assert report.passed
    checks = {c.check for c in report.checks if c.status == "pass"}
    assert checks >= {"forward", "VJP shapes", "finite differences", "vector axes", "per-sample gradients",
                      "batch = stacked singletons", "per-sample norm rule", "lab rules", "jvp rule", "vjp_rop rule"}
    no_parity = "PyTorch has no torch.nn.Scale" if importlib.util.find_spec("torch") else "torch is not installed"
    assert [c.detail for c in report.checks if c.check == "PyTorch parity"] == [no_parity]
    assert "check_layer(Scale()): 15 passed, 0 failed, 2 skipped" in str(report)  # PyTorch; saving (unregistered)
    assert [c.status for c in report.checks if c.check == "save and load"] == ["skip"]


class WrongSign(Scale):  # type: ignore[misc, valid-type]
    def vjp(self, cache: Any, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        g = dy * cache
        return -dy * self.weight.data, {"weight": g if per_sample else g.sum(axis=-2)}


def test_a_wrong_sign_in_the_vjp_fails_with_a_clear_message() -> None:
    with pytest.raises(LayerCheckError) as info:
        check_layer(WrongSign(3), _x(4, 3))
    msg = str(info.value)
    assert isinstance(info.value, AssertionError)
    first = msg.splitlines()[1]
    assert first.startswith("  FAIL  finite differences · dx  error 2.0e+00 (allowed 1e-06): backprop's dx")
    assert "about −1 times the right one: check the sign" in first and "Fix its formula in vjp" in first
    assert _failed(info.value.report)[0] == "finite differences · dx"
    assert "finite differences · dweight" not in _failed(info.value.report)  # the weight gradient is right


class NoBatchSum(Scale):  # type: ignore[misc, valid-type]
    """Forgets to sum the weight gradient over the batch."""

    def vjp(self, cache: Any, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return dy * self.weight.data, {"weight": dy * cache}


def test_a_gradient_of_the_wrong_shape_is_named() -> None:
    report = check_layer(NoBatchSum(3), _x(4, 3), raise_exception=False)
    assert _failed(report) == ["VJP shapes · dx, grads"]
    assert "dweight has shape (4, 3), the parameter (3,)" in report.failures[0].detail


class BatchAxisFirst(Scale):  # type: ignore[misc, valid-type]
    """Sums over axis 0, which is the batch only without vector axes."""

    def vjp(self, cache: Any, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        g = dy * cache
        return dy * self.weight.data, {"weight": g if per_sample else g.sum(axis=0)}


def test_ignoring_vector_axes_is_caught() -> None:
    report = check_layer(BatchAxisFirst(3), _x(4, 3), raise_exception=False)
    assert _failed(report) == ["vector axes · dweight"]
    assert "leading axes of dy are independent" in report.failures[0].detail


class MeanPerSample(Scale):  # type: ignore[misc, valid-type]
    """Per-sample gradients scaled by 1/N: they no longer sum to the batch gradient."""

    def vjp(self, cache: Any, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        g = dy * cache
        return dy * self.weight.data, {"weight": g / len(cache) if per_sample else g.sum(axis=-2)}


def test_per_sample_gradients_must_sum_to_the_batch_gradient() -> None:
    report = check_layer(MeanPerSample(3), _x(4, 3), raise_exception=False)
    assert _failed(report) == ["per-sample gradients · dweight", "batch = stacked singletons · dweight"]
    assert "do not sum to the batch gradient" in report.failures[0].detail


class Centered(Scale):  # type: ignore[misc, valid-type]
    """y = a ⊙ (x − mean over the batch): mixes the samples (its VJP is right for the batch)."""

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
        c = x - x.mean(axis=0)
        return c * self.weight.data, c

    def vjp(self, cache: np.ndarray, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        g = dy * cache
        da = dy * self.weight.data
        return da - da.mean(axis=-2, keepdims=True), {"weight": g if per_sample else g.sum(axis=-2)}


def test_a_layer_that_mixes_samples_fails_the_singletons_check() -> None:
    report = check_layer(Centered(3), _x(4, 3), raise_exception=False)
    assert _failed(report) == ["batch = stacked singletons · y", "batch = stacked singletons · dweight",
                               "jvp rule · Centered", "vjp_rop rule · Centered (dx)˙",
                               "vjp_rop rule · Centered (dweight)˙"]
    assert "the layer mixes samples" in report.failures[0].detail
    # the R-op rules it inherits from Scale do not fit it; the message says whose rule runs
    assert "Fix example._scale_jvp, the jvp rule of Scale, which Centered inherits" in report.failures[2].detail


class Plain(nn.Layer):
    """y = x ⊙ a with everything right but no lab rules."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(np.array([0.5, -1.0, 2.0]))

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return x * self.weight.data, x

    def vjp(self, cache: np.ndarray, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        g = dy * cache
        return dy * self.weight.data, {"weight": g if per_sample else g.sum(axis=-2)}


def test_missing_curvature_rules_of_your_own_layer_are_optional_unless_required() -> None:
    optional = check_layer(Plain(), _x(4, 3))  # a layer of the user's trains and measures without them
    notes = [c for c in optional.checks if c.check == "lab rules"]
    assert [c.status for c in notes] == ["skip", "skip"] and "optional" in notes[0].detail
    report = check_layer(Plain(), _x(4, 3), curvature=True, raise_exception=False)
    assert _failed(report) == ["lab rules · Plain.jvp", "lab rules · Plain.vjp_rop"]
    detail = report.failures[0].detail
    assert "Plain has no jvp rule; register next to Plain with nn.lab.rules.register(Plain, jvp=...)" in detail
    assert "nn.lab.hvp" in detail
    allowed = check_layer(Plain(), _x(4, 3), curvature=True, allow_missing={"Plain.jvp", "Plain.vjp_rop"})
    assert [c.status for c in allowed.checks if c.check == "lab rules"] == ["skip", "skip"]


class WrongRules(Plain):
    pass


@jvp_rules.register(WrongRules)
def _wrong_jvp(layer: WrongRules, x: np.ndarray, xdot: np.ndarray | None, thetadot: Any) -> np.ndarray:
    return -(xdot * layer.weight.data + x * thetadot["weight"])  # the sign is flipped


@vjp_rop_rules.register(WrongRules)
def _wrong_vjp_rop(layer: WrongRules, x: np.ndarray, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None,
                   thetadot: Any, need_dx: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    # forgets the dy ⊙ ȧ term of (dx)˙, and (da)˙'s dy ⊙ ẋ term
    return dydot * layer.weight.data, {"weight": (dydot * x).sum(axis=0)}


@per_sample_grad_norms_rules.register(WrongRules)
def _wrong_norms(entry: Any, factor: float) -> dict[str, np.ndarray]:
    return {"weight": np.abs(entry.dy * entry.cache).sum(axis=1) * factor}  # an L1 norm, not ‖gₙ‖


def test_wrong_rules_fail_against_finite_differences() -> None:
    report = check_layer(WrongRules(), _x(4, 3), raise_exception=False)
    assert _failed(report) == ["per-sample norm rule · weight", "jvp rule · WrongRules",
                               "vjp_rop rule · WrongRules (dx)˙", "vjp_rop rule · WrongRules (dweight)˙"]
    jvp = next(c for c in report.failures if c.check == "jvp rule")
    assert jvp.error is not None and 1.9 <= jvp.error <= 2.1 and "check the sign" in jvp.detail
    assert "Fix test_testing._wrong_jvp, the jvp rule of WrongRules (nablanet.lab.rop has the equations)" in jvp.detail
    assert "test_testing._wrong_norms gives other norms than ‖gₙ‖" in report.failures[0].detail


class Tanh(Elementwise):
    """Shares torch.nn.Tanh's name but computes tanh(1.01 x): consistent, yet not PyTorch's."""

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(1.01 * x)

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 1.01 * (1 - y * y)


@pytest.mark.usefixtures("torch_or_skip")
def test_pytorch_parity_catches_a_different_formula() -> None:
    from nablanet.lab.registry import d2f_rules

    d2f_rules.register(Tanh)(lambda layer, x, y: -2 * 1.01**2 * y * (1 - y * y))
    report = check_layer(Tanh(), _x(4, 3), raise_exception=False)
    assert _failed(report) == ["PyTorch parity · y", "PyTorch parity · dx"]
    assert "the output differs from torch.nn.Tanh's on the same weights" in report.failures[0].detail


class Linear(nn.Layer):
    """Named like torch.nn.Linear, with its own parameter name W."""

    def __init__(self) -> None:
        super().__init__()
        self.W = nn.Parameter(np.array([[1.0, 2.0], [0.5, -1.0]]))

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return x @ self.W.data.T, x

    def vjp(self, cache: np.ndarray, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        g = dy[..., :, None] * cache[:, None, :]
        return dy @ self.W.data, {"W": g if per_sample else g.sum(axis=-3)}

    def get_config(self) -> dict[str, Any]:
        return {"in_features": 2, "out_features": 2, "bias": False}


@pytest.mark.usefixtures("torch_or_skip")
def test_pytorch_parity_names_a_state_dict_that_does_not_fit() -> None:
    report = check_layer(Linear(), _x(3, 2), raise_exception=False, allow_missing={"Linear.jvp", "Linear.vjp_rop"})
    assert _failed(report) == ["PyTorch parity · state_dict"]
    assert "theirs lacks ['W'], ours lacks ['weight']" in report.failures[0].detail


@pytest.fixture
def torch_or_skip() -> None:
    pytest.importorskip("torch")


def test_without_torch_parity_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    report = check_layer(nn.Linear(3, 2), _x(4, 3))
    assert [c.detail for c in report.checks if c.check == "PyTorch parity"] == ["torch is not installed"]
    report = check_layer(nn.Linear(3, 2), _x(4, 3), pytorch=False)
    assert not [c for c in report.checks if c.check == "PyTorch parity"]


class Float32Out(Plain):
    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return (x * self.weight.data).astype(np.float32), x


def test_precision_lost_in_the_forward_is_named() -> None:
    report = check_layer(Float32Out(), _x(4, 3), raise_exception=False)
    assert _failed(report) == ["forward · y"]
    assert "forward returned float32 for a finite float64 input" in report.failures[0].detail


def test_usage_errors() -> None:
    with pytest.raises(TypeError, match="expects a nablanet Layer"):
        check_layer(nn.Linear, _x(2, 3))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="output is one array; Pair returns a tuple"):
        check_layer(nn.Pair(nn.Linear(3, 2), nn.Linear(3, 2)), _x(2, 3))


def test_the_layer_itself_is_not_changed() -> None:
    layer = nn.Linear(3, 2)
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    check_layer(layer, _x(4, 3))
    assert layer.weight.dtype == np.float32
    assert all(np.array_equal(before[k], v) for k, v in layer.state_dict().items())


def test_report_table_lists_every_check() -> None:
    report = check_layer(nn.Sequential(nn.Linear(3, 4), nn.Tanh()), _x(4, 3), pytorch=False)
    lines = str(report).splitlines()
    assert re.match(r"check_layer\(Sequential\): \d+ passed, 0 failed, 0 skipped", lines[0])
    assert "  pass  jvp rule · 1  error" in "\n".join(lines)  # the Tanh at tape name "1"
