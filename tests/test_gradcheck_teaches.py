"""gradcheck that teaches: each user's mistake in a small custom layer, inside
Sequential(Linear, Custom, Linear), is blamed on the custom layer with the mistake's factor or shape;
correct models (built-in ones, a Residual, a recurrent one) still pass with each layer checked alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import nablanet as nn
from nablanet.lab.registry import d2f_rules, jvp_rules, vjp_rop_rules
from nablanet.layers.activations import Elementwise
from nablanet.layers.base import Container, Tape


def _x(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape)


def _check(custom: nn.Layer, width: int = 4) -> nn.GradcheckReport:
    model = nn.Sequential(nn.Linear(3, width), custom, nn.Linear(width, 2)).double()
    return nn.gradcheck(model, nn.MSELoss(), _x(5, 3), _x(5, 2))


# -- layers a user writes, each with one mistake -------------------------------------------------------------
class Square(nn.Layer):
    """y = x²  (elementwise).  VJP: dx = 2 x ⊙ dy."""

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return x * x, x

    def vjp(self, cache: np.ndarray, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return 2 * cache * dy, {}


class SquareNoTwo(Square):
    def vjp(self, cache: np.ndarray, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return cache * dy, {}  # the 2 of d(x²)/dx is missing


class SquareNoDy(Square):
    def vjp(self, cache: np.ndarray, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return 2 * cache, {}  # f′(x), not f′(x) ⊙ dy


class Scale(nn.Layer):
    """y = x ⊙ a.  Shapes: x (N, i)  a (i,)  y (N, i).  VJP: dx = dy ⊙ a,  da = Σₙ dyₙ ⊙ xₙ."""

    def __init__(self, features: int = 4) -> None:
        super().__init__()
        self.weight = nn.Parameter(np.linspace(0.5, 1.5, features))

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return x * self.weight.data, x

    def vjp(self, cache: np.ndarray, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        g = dy * cache
        return dy * self.weight.data, {"weight": g if per_sample else g.sum(axis=-2)}


class ScaleWrongSign(Scale):
    def vjp(self, cache: np.ndarray, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return dy * self.weight.data, {"weight": -(dy * cache).sum(axis=-2)}


class ScaleNoBatchSum(Scale):
    def vjp(self, cache: np.ndarray, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return dy * self.weight.data, {"weight": dy * cache}  # (N, i): the sum over n is forgotten


class MyLinear(nn.Layer):
    """y = x Wᵀ with a square W.  Shapes: x (N, i)  W (i, i).  VJP: dx = dy W,  dW = Σₙ dyₙᵀ xₙ."""

    def __init__(self, features: int = 4) -> None:
        super().__init__()
        self.weight = nn.Parameter(_x(features, features))

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return x @ self.weight.data.T, x

    def vjp(self, cache: np.ndarray, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return dy @ self.weight.data, {"weight": cache.T @ dy}  # transposed: dyᵀ x is right


# -- the messages ----------------------------------------------------------------------------------------------
def test_a_correct_custom_layer_passes_and_the_table_lists_each_layer() -> None:
    report = _check(Square())
    assert report.passed, str(report)
    vjp_rows = [(r.layer, r.kind, r.tensor) for r in report.layers if r.check == "vjp"]
    assert vjp_rows == [("0", "Linear", "dx"), ("0", "Linear", "dweight"), ("0", "Linear", "dbias"),
                        ("1", "Square", "dx"), ("2", "Linear", "dx"), ("2", "Linear", "dweight"),
                        ("2", "Linear", "dbias")]
    assert all(r.status == "pass" and r.error is not None and r.error <= 1e-6
               for r in report.layers if r.check == "vjp")
    assert "each layer alone:" in str(report)
    assert report.diagnosis == ""


def test_a_missing_factor_2_in_dx_is_blamed_on_the_custom_layer() -> None:
    report = _check(SquareNoTwo())
    assert not report.passed
    assert "0.weight" in report.failed  # the model-level check sees it below the bug ...
    failing = {(r.layer, r.tensor) for r in report.layer_failures}
    assert failing == {("1", "dx")}  # ... each layer alone puts it where it is
    assert report.diagnosis.startswith("gradcheck failed for layer '1' (SquareNoTwo): its VJP's dx disagrees")
    assert "It is about 0.5× the right value: a missing factor of 2?" in report.diagnosis
    with pytest.raises(nn.GradcheckError) as info:
        nn.gradcheck(nn.Sequential(nn.Linear(3, 4), SquareNoTwo(), nn.Linear(4, 2)), nn.MSELoss(), _x(5, 3),
                     _x(5, 2), raise_exception=True)
    assert str(info.value).splitlines()[0] == report.diagnosis
    assert str(report).splitlines()[0] == report.diagnosis


def test_a_wrong_sign_parameter_gradient_is_named() -> None:
    report = _check(ScaleWrongSign())
    assert [(r.layer, r.tensor) for r in report.layer_failures] == [("1", "dweight")]
    assert report.failed == ["1.weight"]
    assert "layer '1' (ScaleWrongSign): its VJP's dweight" in report.diagnosis
    assert "wrong sign" in report.diagnosis


def test_a_transposed_weight_gradient_is_named() -> None:
    report = _check(MyLinear())
    assert [(r.layer, r.tensor) for r in report.layer_failures] == [("1", "dweight")]
    assert "layer '1' (MyLinear)" in report.diagnosis and "transposed" in report.diagnosis


def test_a_forgotten_batch_sum_is_named_with_both_shapes() -> None:
    report = _check(ScaleNoBatchSum())  # no raw NumPy error: the shape is the message
    r = report.layer_failures[0]
    assert (r.layer, r.kind, r.check, r.tensor) == ("1", "ScaleNoBatchSum", "vjp shape", "dweight")
    assert "vjp returned dweight of shape (5, 4), expected the parameter's (4,)" in r.detail
    assert "The extra leading axis has the batch size N = 5: sum over the samples" in r.detail
    assert report.diagnosis.startswith("gradcheck failed for layer '1' (ScaleNoBatchSum): vjp returned dweight")
    # the model's own backward stops at the producer (the dispatch checks every gradient's shape there)
    assert report.failed == ["backward"]


def test_a_dx_of_the_wrong_shape_that_breaks_the_layer_below_is_named() -> None:
    class Transposed(Square):
        def vjp(self, cache: np.ndarray, dy: np.ndarray, *, per_sample: bool = False,
                need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            return (2 * cache * dy).T, {}

    report = _check(Transposed())
    assert report.failed == ["backward"]  # the dispatch stopped the model's backward at layer '1', not below it
    assert report.diagnosis.startswith("gradcheck failed for layer '1' (Transposed)")
    assert "vjp returned dx of shape (4, 5), expected the input's (5, 4)" in report.diagnosis
    assert "the right shape transposed" in report.diagnosis


def test_a_forgotten_dy_is_named() -> None:
    report = _check(SquareNoDy())
    assert [(r.layer, r.tensor) for r in report.layer_failures] == [("1", "dx")]
    assert "layer '1' (SquareNoDy)" in report.diagnosis
    assert "It does not change when dy doubles: dy is forgotten" in report.diagnosis


# -- curvature rules ---------------------------------------------------------------------------------------------
class Cube(Elementwise):
    """y = x³, f′ = 3x², f″ = 6x (its d2f rule below)."""

    def f(self, x: np.ndarray) -> np.ndarray:
        return x**3

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 3 * x * x


class CubeWrongD2f(Cube):
    pass


d2f_rules.register(Cube)(lambda layer, x, y: 6 * x)
d2f_rules.register(CubeWrongD2f)(lambda layer, x, y: 3 * x)  # half of f″


class ScaleRules(Scale):
    pass


class ScaleWrongJvp(Scale):
    pass


class ScaleWrongVjpRop(Scale):
    pass


@jvp_rules.register(ScaleRules, ScaleWrongVjpRop)
def _scale_jvp(layer: Scale, x: np.ndarray, xdot: np.ndarray | None, thetadot: Any) -> np.ndarray:
    ydot = np.zeros_like(x) if xdot is None else xdot * layer.weight.data
    return ydot + x * thetadot["weight"]


@jvp_rules.register(ScaleWrongJvp)
def _scale_jvp_doubled(layer: Scale, x: np.ndarray, xdot: np.ndarray | None, thetadot: Any) -> np.ndarray:
    return 2 * _scale_jvp(layer, x, xdot, thetadot)


@vjp_rop_rules.register(ScaleRules, ScaleWrongJvp)
def _scale_vjp_rop(layer: Scale, x: np.ndarray, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None,
                   thetadot: Any, need_dx: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    dadot = (dydot * x if xdot is None else dydot * x + dy * xdot).sum(axis=0)
    return dydot * layer.weight.data + dy * thetadot["weight"], {"weight": dadot}


@vjp_rop_rules.register(ScaleWrongVjpRop)
def _scale_vjp_rop_wrong_sign(layer: Scale, x: np.ndarray, dy: np.ndarray, dydot: np.ndarray,
                              xdot: np.ndarray | None, thetadot: Any, need_dx: bool) -> tuple[np.ndarray, dict]:
    dxdot, g = _scale_vjp_rop(layer, x, dy, dydot, xdot, thetadot, need_dx)
    return dxdot, {"weight": -g["weight"]}


def test_correct_curvature_rules_pass_and_the_hvp_is_checked() -> None:
    report = _check(ScaleRules())
    assert report.passed, str(report)
    checks = {(r.layer, r.check) for r in report.layers if r.status == "pass"}
    assert {("1", "jvp rule"), ("1", "vjp_rop rule"), ("0", "jvp rule"), ("", "hvp")} <= checks


def test_a_layer_without_rules_is_noted_not_failed() -> None:
    report = _check(Scale())
    assert report.passed
    skipped = [r for r in report.layers if r.status == "skip"]
    assert [(r.layer, r.check) for r in skipped] == [("1", "curvature rules"), ("", "hvp")]
    assert "no jvp, vjp_rop rule" in skipped[0].detail and "not checked" in str(report)


def test_a_wrong_jvp_rule_is_named_with_its_factor() -> None:
    report = _check(ScaleWrongJvp())
    assert not report.failed  # first-order gradients are right
    first = report.layer_failures[0]
    assert (first.layer, first.check, first.tensor) == ("1", "jvp rule", "ẏ")
    lead = report.diagnosis
    assert lead.startswith("gradcheck failed for layer '1' (ScaleWrongJvp): its jvp rule is wrong")
    assert "It is about 2× the right value: an extra factor of 2?" in lead
    assert "Fix test_gradcheck_teaches._scale_jvp_doubled, the jvp rule of ScaleWrongJvp" in lead
    assert ("", "hvp", "H v") in [(r.layer, r.check, r.tensor) for r in report.layer_failures]


def test_a_wrong_vjp_rop_rule_is_named_with_its_factor() -> None:
    report = _check(ScaleWrongVjpRop())
    assert [(r.layer, r.check, r.tensor) for r in report.layer_failures] == [
        ("1", "vjp_rop rule", "(dweight)˙"), ("", "hvp", "H v")]
    lead = report.diagnosis
    assert "layer '1' (ScaleWrongVjpRop): its vjp_rop rule is wrong: (dweight)˙ disagrees" in lead
    assert "check the sign" in lead and "test_gradcheck_teaches._scale_vjp_rop_wrong_sign" in lead


def test_a_wrong_second_derivative_is_caught_by_the_vjp_rop_rule_and_the_hvp() -> None:
    assert _check(Cube()).passed
    report = _check(CubeWrongD2f())
    assert [(r.layer, r.check, r.tensor) for r in report.layer_failures] == [
        ("1", "vjp_rop rule", "(dx)˙"), ("", "hvp", "H v")]
    assert "layer '1' (CubeWrongD2f): its vjp_rop rule is wrong" in report.diagnosis
    assert "nablanet.lab.rules.activations" in report.diagnosis  # the elementwise rule that reads f″


# -- a custom container --------------------------------------------------------------------------------------------
class SkipForgotten(Container):
    """y = x + f(x) whose backward forgets the identity path: dx = J_fᵀ dy instead of dy + J_fᵀ dy."""

    def __init__(self, *layers: nn.Layer) -> None:
        super().__init__()
        self.f = nn.Sequential(*layers)

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, Any]:
        h, cache = self.f.forward(x, train=train, rng=rng)
        return x + h, cache

    def _backward(self, cache: Any, dy: np.ndarray, per_sample: bool, prefix: str, tape: Tape,
                  need_dx: bool = True) -> np.ndarray:
        return self.f._backward(cache, dy, per_sample, prefix + "f.", tape, need_dx)


def test_a_composition_error_in_a_custom_container_names_the_container() -> None:
    report = _check(SkipForgotten(nn.Linear(4, 4), nn.Tanh()))
    inner = [r for r in report.layers if r.check == "vjp" and r.layer.startswith("1.f.")]
    assert {r.layer for r in inner} == {"1.f.0", "1.f.1"} and all(r.status == "pass" for r in inner)
    assert [(r.layer, r.tensor) for r in report.layer_failures] == [("1", "dx")]
    lead = report.diagnosis
    assert lead.startswith("gradcheck failed for layer '1' (SkipForgotten): the composition is at fault")
    assert "every layer inside it passes alone" in lead


# -- correct models still pass ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, x, target", [
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.ReLU(), nn.Linear(4, 2)), _x(5, 3), _x(5, 2)),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.Residual(nn.Linear(4, 4), nn.Tanh()), nn.Linear(4, 2)),
     _x(5, 3), _x(5, 2)),
    (lambda: nn.Sequential(nn.LSTM(3, 4, batch_first=True), nn.LastStep(), nn.Linear(4, 2)), _x(2, 5, 3), _x(2, 2)),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 2)),
     _x(2, 1, 6, 6), _x(2, 2)),
])
def test_correct_models_pass_with_each_layer_checked_alone(make: Any, x: np.ndarray, target: np.ndarray) -> None:
    report = nn.gradcheck(make().double(), nn.MSELoss(), x, target)
    assert report.passed, str(report)
    assert any(r.check == "vjp" and r.status == "pass" for r in report.layers)


def test_per_layer_false_keeps_the_model_level_check_only() -> None:
    model = nn.Sequential(nn.Linear(3, 4), SquareNoTwo(), nn.Linear(4, 2))
    report = nn.gradcheck(model, nn.MSELoss(), _x(5, 3), _x(5, 2), per_layer=False, curvature=False)
    assert report.layers == () and not report.passed
    assert report.diagnosis.startswith("gradcheck failed for ['0.weight'")
