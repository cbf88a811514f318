"""Conformance: every public Layer and Loss has the rules the lab needs (or is on the explicit list of
today's gaps), and every built-in layer passes ``nn.testing.check_layer`` on a small example.

A new layer fails here until it has its rules (``nablanet/lab/rules/<its file>.py``) and an entry in
EXAMPLES; a gap that gets closed fails here until it leaves ALLOWED_GAPS.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pytest

import nablanet as nn
from nablanet import layers, losses
from nablanet.lab.rules import missing_rules
from nablanet.layers.activations import Elementwise
from nablanet.layers.base import Combinator
from nablanet.layers.recurrent import RNNBase

ABSTRACT = {nn.Layer, nn.Loss, nn.Container}
"""Public base classes that are never used as they are (their subclasses are walked)."""

UNEXPORTED_BASES = {Combinator, Elementwise, RNNBase}
"""Public-named base classes inside nablanet.layers that need not be exported."""

# Rules the lab may lack without failing here, as "LSTM.jvp". Issue 13 started this list with the
# recurrent layers, attention, embedding, bilinear and the graph containers; the curvature-on-every-
# model issue emptied it. Keep it empty: a new layer comes with its rules.
ALLOWED_GAPS: frozenset[str] = frozenset()


def _public_classes() -> list[type]:
    """Every Layer and Loss subclass exported from nablanet, nablanet.layers or nablanet.losses."""
    found: dict[str, type] = {}
    for module in (nn, layers, losses):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, nn.Layer | nn.Loss) and obj not in ABSTRACT:
                found[obj.__qualname__] = obj
    return sorted(found.values(), key=lambda c: c.__name__)


def conformance_failures(classes: Iterable[type], allowed: frozenset[str]) -> list[str]:
    """Each missing rule not in ``allowed``, and each entry of ``allowed`` that is no longer missing."""
    missing = {gap.key: gap for cls in classes for gap in missing_rules(cls)}
    failures = [f"{gap} (not among today's allowed gaps)" for key, gap in missing.items() if key not in allowed]
    failures += [f"{key} is an allowed gap but the rule exists now: remove it from ALLOWED_GAPS"
                 for key in sorted(allowed - missing.keys())]
    return failures


def test_every_public_layer_and_loss_has_the_rules_the_lab_needs() -> None:
    failures = conformance_failures(_public_classes(), ALLOWED_GAPS)
    assert not failures, "\n".join(failures)


def test_no_public_layer_or_loss_lacks_a_rule() -> None:
    """The allow-list is empty and nothing is missing: every layer, container and loss has its rules."""
    missing = sorted(gap.key for cls in _public_classes() for gap in missing_rules(cls))
    assert missing == [] and ALLOWED_GAPS == frozenset()
    assert missing_rules(nn.Sequential) == []
    assert [g.key for g in missing_rules(nn.Softmax)] == []


class NewLayer(nn.Layer):
    """y = 2x: a layer someone adds without lab rules."""

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, None]:
        return 2 * x, None

    def vjp(self, cache: None, dy: np.ndarray, *, per_sample: bool = False,
            need_dx: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return 2 * dy, {}


class NewActivation(Elementwise):
    """f(x) = x³ with f′ but no registered f″."""

    def f(self, x: np.ndarray) -> np.ndarray:
        return x**3

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 3 * x * x


class NewLoss(nn.Loss):
    def _terms(self, input: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.abs(input - target), np.sign(input - target)

    def _terms_vjp(self, aux: np.ndarray, dterms: np.ndarray) -> np.ndarray:
        return aux * dterms


def test_a_new_layer_without_rules_is_reported() -> None:
    failures = conformance_failures([*_public_classes(), NewLayer, NewActivation, NewLoss], ALLOWED_GAPS)
    assert len(failures) == 4, failures  # the activation has its JVP and R-op from Elementwise
    text = "\n".join(failures)
    for key in ("NewLayer has no jvp rule", "NewLayer has no vjp_rop rule", "NewActivation has no d2f rule",
                "NewLoss has no loss_hvp rule"):
        assert key in text
    assert "register next to NewLayer with nn.lab.rules.register(NewLayer, jvp=...)" in text
    # a built-in layer without rules is told the file they belong in: here one in a layer file that has
    # no rules file yet (a class made for the test, with a home under nablanet/layers/)
    spline = type("_Spline", (NewLayer,), {"__module__": "nablanet.layers.spline"})
    assert "nablanet/lab/rules/spline.py (a new file, mirroring nablanet/layers/spline.py)" in str(
        missing_rules(spline)[0])


def test_a_closed_gap_must_leave_the_allow_list() -> None:
    failures = conformance_failures(_public_classes(), ALLOWED_GAPS | {"Linear.jvp"})
    assert failures == ["Linear.jvp is an allowed gap but the rule exists now: remove it from ALLOWED_GAPS"]


def test_every_layer_and_loss_class_of_the_package_is_exported() -> None:
    """A class added to nablanet/layers/ or nablanet/losses/ must be exported, or the walk above misses it."""
    def subclasses(cls: type) -> set[type]:
        return {s for d in cls.__subclasses__() for s in {d, *subclasses(d)}}

    exported = set(_public_classes()) | ABSTRACT
    ours = {c for c in subclasses(nn.Layer) | subclasses(nn.Loss)
            if c.__module__.startswith(("nablanet.layers.", "nablanet.losses.")) and not c.__name__.startswith("_")}
    assert sorted(c.__name__ for c in ours - exported - UNEXPORTED_BASES) == []
    for cls in ours - UNEXPORTED_BASES:
        assert getattr(nn, cls.__name__) is cls and (getattr(layers, cls.__name__, None) is cls
                                                     or getattr(losses, cls.__name__, None) is cls)


# -- every built-in layer through nn.testing.check_layer ---------------------------------------------------
def _x(*shape: int, seed: int = 1) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.where(np.abs(x) < 1e-2, 0.5, x)  # away from the kinks (ReLU at 0, …)


def _bn(cls: type, c: int) -> nn.Layer:
    """Batch norm with generic affine parameters and running statistics (not 1 and 0)."""
    layer = cls(c)
    rng = np.random.default_rng(3)
    layer.weight.data[...] = rng.uniform(0.5, 1.5, c)
    layer.bias.data[...] = rng.standard_normal(c)
    layer.running_mean[...] = 0.2 * rng.standard_normal(c)
    layer.running_var[...] = rng.uniform(0.5, 2.0, c)
    return layer


# (id, the class it stands for, factory, example input, train)
Example = tuple[str, type, Callable[[], nn.Layer], Any, bool]
EXAMPLES: list[Example] = [
    ("Identity", nn.Identity, nn.Identity, _x(3, 4), False),
    ("ReLU", nn.ReLU, nn.ReLU, _x(3, 4), False),
    ("LeakyReLU", nn.LeakyReLU, lambda: nn.LeakyReLU(0.1), _x(3, 4), False),
    ("Sigmoid", nn.Sigmoid, nn.Sigmoid, _x(3, 4), False),
    ("Tanh", nn.Tanh, nn.Tanh, _x(3, 4), False),
    ("Softplus", nn.Softplus, lambda: nn.Softplus(beta=2.0, threshold=3.0), _x(3, 4), False),
    ("ELU", nn.ELU, lambda: nn.ELU(0.7), _x(3, 4), False),
    ("GELU", nn.GELU, nn.GELU, _x(3, 4), False),
    ("GELU-tanh", nn.GELU, lambda: nn.GELU("tanh"), _x(3, 4), False),
    ("SiLU", nn.SiLU, nn.SiLU, _x(3, 4), False),
    ("Hardtanh", nn.Hardtanh, lambda: nn.Hardtanh(-0.5, 0.5), _x(3, 4), False),
    ("Softmax", nn.Softmax, lambda: nn.Softmax(dim=1), _x(3, 5), False),
    ("LogSoftmax", nn.LogSoftmax, lambda: nn.LogSoftmax(dim=-1), _x(2, 3, 4), False),
    ("Flatten", nn.Flatten, nn.Flatten, _x(2, 3, 2, 2), False),
    ("Linear", nn.Linear, lambda: nn.Linear(4, 3), _x(3, 4), False),
    ("Linear-3d", nn.Linear, lambda: nn.Linear(4, 3, bias=False), _x(2, 3, 4), False),
    ("Conv1d", nn.Conv1d, lambda: nn.Conv1d(2, 3, 3, padding=1), _x(2, 2, 5), False),
    ("Conv2d", nn.Conv2d, lambda: nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2), _x(2, 2, 5, 4), False),
    ("MaxPool1d", nn.MaxPool1d, lambda: nn.MaxPool1d(2), _x(2, 2, 6), False),
    ("MaxPool2d", nn.MaxPool2d, lambda: nn.MaxPool2d(3, stride=1, padding=1), _x(2, 2, 4, 4), False),
    ("AvgPool1d", nn.AvgPool1d, lambda: nn.AvgPool1d(3, stride=2), _x(2, 2, 7), False),
    ("AvgPool2d", nn.AvgPool2d, lambda: nn.AvgPool2d(2), _x(2, 2, 4, 4), False),
    ("AdaptiveAvgPool1d", nn.AdaptiveAvgPool1d, lambda: nn.AdaptiveAvgPool1d(3), _x(2, 2, 7), False),
    ("AdaptiveAvgPool2d", nn.AdaptiveAvgPool2d, lambda: nn.AdaptiveAvgPool2d((2, 3)), _x(2, 2, 5, 7), False),
    ("Dropout", nn.Dropout, lambda: nn.Dropout(0.3), _x(3, 4), False),
    ("Dropout-train", nn.Dropout, lambda: nn.Dropout(0.3), _x(3, 4), True),
    ("Dropout2d-train", nn.Dropout2d, lambda: nn.Dropout2d(0.5), _x(2, 3, 2, 2), True),
    ("RReLU", nn.RReLU, nn.RReLU, _x(3, 4), False),
    ("RReLU-train", nn.RReLU, nn.RReLU, _x(3, 4), True),
    ("BatchNorm1d", nn.BatchNorm1d, lambda: _bn(nn.BatchNorm1d, 3), _x(4, 3), False),
    ("BatchNorm2d-train", nn.BatchNorm2d, lambda: _bn(nn.BatchNorm2d, 2), _x(3, 2, 2, 2), True),
    ("LayerNorm", nn.LayerNorm, lambda: nn.LayerNorm((2, 3)), _x(2, 2, 3), False),
    ("Embedding", nn.Embedding, lambda: nn.Embedding(5, 3, padding_idx=0), np.array([[1, 1, 4], [2, 2, 3]]),
     False),
    ("Bilinear", nn.Bilinear, lambda: nn.Bilinear(3, 2, 4), (_x(3, 3), _x(3, 2, seed=2)), False),
    ("RNN", nn.RNN, lambda: nn.RNN(3, 4, batch_first=True), _x(2, 3, 3), False),
    ("GRU", nn.GRU, lambda: nn.GRU(3, 3), _x(3, 2, 3), False),  # batch_first=False: samples on axis 1
    ("LSTM", nn.LSTM, lambda: nn.LSTM(2, 3, batch_first=True, bidirectional=True), _x(2, 3, 2), False),
    ("LastStep", nn.LastStep, nn.LastStep, _x(2, 3, 4), False),
    ("MultiheadAttention", nn.MultiheadAttention, lambda: nn.MultiheadAttention(4, 2, batch_first=True),
     _x(2, 3, 4), False),
    ("Sequential", nn.Sequential, lambda: nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Sequential(nn.Linear(5, 3)),
                                                        nn.LogSoftmax(dim=-1)), _x(3, 4), False),
    ("Residual", nn.Residual, lambda: nn.Residual(nn.Linear(4, 4), nn.Tanh()), _x(3, 4), False),
    ("Parallel", nn.Parallel, lambda: nn.Parallel(nn.Linear(4, 3), nn.Linear(4, 2), combine="concat"), _x(3, 4), False),
    ("Multiply", nn.Multiply, lambda: nn.Multiply(nn.Linear(4, 3), nn.Linear(4, 3)), _x(3, 4), False),
    ("Pair", nn.Pair, lambda: nn.Sequential(nn.Pair(nn.Linear(4, 3), nn.Linear(4, 2)), nn.Bilinear(3, 2, 2)),
     _x(3, 4), False),
]


def test_every_public_layer_has_an_example() -> None:
    covered = {cls for _, cls, _, _, _ in EXAMPLES}
    missing = [c.__name__ for c in _public_classes() if issubclass(c, nn.Layer) and c not in covered]
    assert missing == [], f"add an example for {missing} to EXAMPLES in tests/test_conformance.py"


@pytest.mark.parametrize("make,x,train", [e[2:] for e in EXAMPLES], ids=[e[0] for e in EXAMPLES])
def test_every_built_in_layer_passes_check_layer(make: Callable[[], nn.Layer], x: Any, train: bool) -> None:
    report = nn.testing.check_layer(make(), x, train=train, allow_missing=ALLOWED_GAPS)
    assert report.passed
    assert any(c.check == "finite differences" and c.status == "pass" for c in report.checks)
