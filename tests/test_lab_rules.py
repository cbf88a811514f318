"""The rules tree and its registry: the tree mirrors layers/ and losses/, a registry miss names the type,
the rule and the file the rule belongs in, and gradcheck takes a layer of several inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nablanet as nn
from nablanet.lab import rop
from nablanet.lab.gradcheck import gradcheck, relative_error
from nablanet.lab.registry import Registry, jvp_rules, loss_hvp_rules, rules_home, rules_location

PACKAGE = Path(nn.__file__).parent


def test_every_rules_file_mirrors_a_layer_or_loss_file() -> None:
    rules = PACKAGE / "lab" / "rules"
    for path in rules.rglob("*.py"):
        rel = path.relative_to(rules)
        if rel.name == "__init__.py":
            continue
        mirror = PACKAGE / ("losses" if rel.parts[0] == "losses" else "layers") / Path(*rel.parts[-1:])
        assert mirror.exists(), f"{path} mirrors no file ({mirror} does not exist)"


_IN_A_NEW_LAYER_FILE = type("_Spline", (nn.Layer,), {"__module__": "nablanet.layers.spline"})
"""A built-in-looking layer whose file (nablanet/layers/spline.py) has no rules file yet."""


def test_rules_home_mirrors_the_module() -> None:
    assert rules_home(nn.Linear) == "nablanet.lab.rules.linear"
    assert rules_home(nn.BCELoss) == "nablanet.lab.rules.losses.binary"
    assert rules_home(Registry) is None
    assert rules_location(nn.Conv2d) == "in nablanet/lab/rules/conv.py"
    assert rules_location(nn.GRU) == "in nablanet/lab/rules/recurrent.py"
    assert rules_location(_IN_A_NEW_LAYER_FILE) == ("in nablanet/lab/rules/spline.py (a new file, mirroring "
                                                    "nablanet/layers/spline.py)")


class _Cube(nn.Layer):
    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return x**3, x


def test_a_miss_names_the_type_the_rule_and_where_it_belongs() -> None:
    assert rop.jvp(_Cube(), None, None, {}) is None  # nothing moves: ẏ = 0 without a rule
    with pytest.raises(NotImplementedError) as info:
        rop.jvp(_Cube(), None, np.ones(2), {})
    msg = str(info.value)
    assert msg.startswith("jvp: no rule for layer type _Cube (defined in test_lab_rules). Known types: ")
    assert "Register one next to _Cube: nn.lab.rules.register(_Cube, jvp=...)" in msg  # the one public call
    with pytest.raises(NotImplementedError, match=r"no rule for layer type _Spline .*nablanet/lab/rules/spline\.py"):
        jvp_rules[_IN_A_NEW_LAYER_FILE()]


def test_loss_rule_is_the_registrys_own_lookup() -> None:
    class _L1(nn.Loss):
        pass

    assert rop.loss_rule(nn.MSELoss()) is loss_hvp_rules[nn.MSELoss()]
    with pytest.raises(NotImplementedError, match=r"loss_hvp: no rule for loss type _L1 .*Known types: BCELoss"):
        rop.loss_rule(_L1())


def test_a_rule_applies_to_subclasses_and_says_whose_it_is() -> None:
    class MyTanh(nn.Tanh):
        pass

    assert jvp_rules.registered_for(MyTanh) is nn.layers.activations.Elementwise
    assert jvp_rules.rule_for(MyTanh) is jvp_rules.rule_for(nn.Tanh)
    assert jvp_rules.registered_for(_Cube) is None and _Cube() not in jvp_rules


def test_gradcheck_takes_several_inputs_and_names_each() -> None:
    layer = nn.Bilinear(3, 2, 2, dtype=np.float64, rng=0)
    x = (np.random.default_rng(1).standard_normal((4, 3)), np.random.default_rng(2).standard_normal((4, 2)))
    report = gradcheck(layer, nn.MSELoss(reduction="sum"), x, np.zeros((4, 2)))
    assert report.passed and list(report.rel_errors) == ["weight", "bias", "input.0", "input.1"]


def test_gradcheck_says_when_the_input_has_no_gradient() -> None:
    emb = nn.Embedding(5, 3, dtype=np.float64)
    idx = np.array([[0, 1], [4, 2]])
    with pytest.raises(ValueError, match="needs check_input=False"):
        gradcheck(emb, nn.MSELoss(), idx, np.zeros((2, 2, 3)))
    assert gradcheck(emb, nn.MSELoss(), idx, np.zeros((2, 2, 3)), check_input=False).passed


def test_relative_error_is_in_units_of_the_largest_entry() -> None:
    assert relative_error(np.array([2.0, 0.0]), np.array([1.0, 0.0])) == 0.5  # |2 − 1| / 2
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.zeros(3), np.zeros(2)) == float("inf")
    assert relative_error(None, np.zeros(2)) == float("inf")
