"""Saving and loading layers of your own: nn.register_layer, the refusals of nn.save (a model that
nn.load could not rebuild) and of nn.load (a class that is neither nablanet's nor registered)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nablanet as nn
from nablanet.train import _architecture


class Swish(nn.Layer):
    """y = x σ(βx) with a learnable scalar β.  Shapes: x (N, i)  β ()  y (N, i).
    VJP: with s = σ(βx):  dx = dy ⊙ (s + βx s(1 − s)),   dβ = Σₙᵢ dy ⊙ x² s(1 − s)."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = nn.Parameter(np.array(beta, dtype=nn.get_default_dtype()))

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, Any]:
        s = 1 / (1 + np.exp(-self.beta.data * x))
        return x * s, (x, s)

    def vjp(self, cache: Any, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True) -> Any:
        x, s = cache
        ds = s * (1 - s)
        g = dy * x * x * ds
        return dy * (s + self.beta.data * x * ds), {"beta": g.sum(axis=-1) if per_sample else g.sum(axis=(-2, -1))}

    def get_config(self) -> dict[str, Any]:
        return {"beta": float(self.beta.data)}


class Scale(nn.Layer):
    """y = x ⊙ a (the README's layer), whose get_config the tests below break on purpose."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(np.linspace(0.5, 1.5, features).astype(nn.get_default_dtype()))

    def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, Any]:
        return x * self.weight.data, x

    def vjp(self, cache: Any, dy: np.ndarray, *, per_sample: bool = False, need_dx: bool = True) -> Any:
        g = dy * cache
        return dy * self.weight.data, {"weight": g if per_sample else g.sum(axis=-2)}

    def get_config(self) -> dict[str, Any]:
        return {"features": self.weight.shape[0]}


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, type[nn.Layer]]:
    """Each test starts with no registered layers and leaves none behind."""
    fresh: dict[str, type[nn.Layer]] = {}
    monkeypatch.setattr(_architecture, "_registered", fresh)
    return fresh


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((32, 4)).astype(np.float32), np.arange(32) % 3


MODELS = {
    "Sequential": lambda: nn.Sequential(nn.Linear(4, 6), Swish(0.5), nn.Linear(6, 3)),
    "Residual": lambda: nn.Sequential(nn.Linear(4, 6), nn.Residual(nn.Linear(6, 6), Swish(1.5)), nn.Linear(6, 3)),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_a_registered_layer_saves_and_loads_with_its_optimizer_state(tmp_path: Path, kind: str) -> None:
    nn.register_layer(Swish)
    model = MODELS[kind]()
    x, y = _data()
    opt = nn.optim.Adam(model.parameters(), lr=0.05)
    nn.fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=2, batch_size=8)
    swish = next(layer for _, layer in model._walk() if isinstance(layer, Swish))
    assert swish.beta.data not in (0.5, 1.5)  # β learned something
    nn.save(model, tmp_path / "m.npz", optimizer=opt)

    ckpt = nn.load_checkpoint(tmp_path / "m.npz")
    assert repr(ckpt.model) == repr(model)
    for (k, a), (k2, b) in zip(model.state_dict().items(), ckpt.model.state_dict().items(), strict=True):
        assert k == k2 and a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b, err_msg=k)
    np.testing.assert_array_equal(ckpt.model(x), model(x))

    resumed = nn.optim.Adam(ckpt.model.parameters(), lr=0.05)
    assert ckpt.optimizer_state is not None and ckpt.optimizer_class == "Adam"
    resumed.load_state_dict(ckpt.optimizer_state)
    saved, restored = opt.state_dict(), resumed.state_dict()
    assert restored["step_count"] == saved["step_count"] > 0
    for i, arrays in saved["state"].items():
        for name, a in arrays.items():
            np.testing.assert_array_equal(restored["state"][i][name], a, err_msg=f"{i}/{name}")
    # training on from the file is training on from memory
    nn.fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=1, batch_size=8, initial_epoch=2)
    nn.fit(ckpt.model, nn.CrossEntropyLoss(), resumed, (x, y), epochs=1, batch_size=8, initial_epoch=2)
    np.testing.assert_array_equal(ckpt.model(x), model(x))


def test_register_layer_is_a_decorator_and_a_call(registry: dict[str, type[nn.Layer]]) -> None:
    assert nn.register_layer is nn.train.register_layer and "register_layer" in nn.__all__

    @nn.register_layer
    class Doubler(nn.Layer):
        def forward(self, x: np.ndarray, *, train: bool = False, rng: Any = None) -> tuple[np.ndarray, Any]:
            return 2 * x, None

    assert isinstance(Doubler, type) and registry == {"Doubler": Doubler}
    assert nn.register_layer(Swish) is Swish and registry["Swish"] is Swish
    assert nn.register_layer(Swish) is Swish  # again: fine
    assert nn.register_layer(nn.Linear) is nn.Linear and "Linear" not in registry  # nablanet's own: nothing to do


def test_register_layer_refuses_a_name_that_is_taken() -> None:
    nn.register_layer(Swish)

    class Linear(nn.Layer):
        pass

    with pytest.raises(ValueError, match=r"Linear \(module test_register_layer\).*has the name of nablanet's layer "
                                         r"Linear \(module nablanet\.layers\.linear\).*Fix: rename your class"):
        nn.register_layer(Linear)

    class Swish2(nn.Layer):
        pass

    Swish2.__name__ = "Swish"
    with pytest.raises(ValueError, match=r"has the name of the registered layer Swish \(module test_register_layer\)"
                                         r".*Fix: rename one of the two classes"):
        nn.register_layer(Swish2)


def test_a_class_redefined_in_place_replaces_its_registration(registry: dict[str, type[nn.Layer]]) -> None:
    """A notebook cell run twice defines a new class with the same module and qualified name."""

    def define() -> type[nn.Layer]:
        class Cell(nn.Layer):
            pass

        return Cell

    first, second = define(), define()
    nn.register_layer(first)
    assert nn.register_layer(second) is second and registry["Cell"] is second


def test_register_layer_takes_layer_classes_only() -> None:
    for wrong in (Swish(), int, "Swish", None):
        with pytest.raises(TypeError, match=r"register_layer received .*; expected a subclass of nn\.Layer"):
            nn.register_layer(wrong)  # type: ignore[type-var]


def test_save_refuses_an_unregistered_layer_before_writing(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 6), Swish(), nn.Linear(6, 3))
    with pytest.raises(TypeError, match=re.escape(
        "nn.save: layer '1' is a Swish (module test_register_layer), which is not registered, so nn.load could "
        "not rebuild it. Fix: decorate the class with @nn.register_layer, or call nn.register_layer(Swish) "
        "before saving and before loading.")):
        nn.save(model, tmp_path / "m.npz")
    with pytest.raises(TypeError, match=r"layer '1\.0' is a Swish .*not registered"):
        nn.save(nn.Sequential(nn.Linear(4, 6), nn.Residual(Swish())), tmp_path / "m.npz")
    with pytest.raises(TypeError, match=r"the model is a Swish .*not registered"):
        nn.save(Swish(), tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_a_class_that_only_shares_a_nablanet_name(tmp_path: Path) -> None:
    class Tanh(nn.Layer):
        pass

    with pytest.raises(TypeError, match=r"layer '0' is a .*Tanh \(module test_register_layer\), but a file records "
                                        r"layers by class name and nn.load would build Tanh \(module "
                                        r"nablanet\.layers\.activations\) in its place\. Fix: rename your class"):
        nn.save(nn.Sequential(Tanh()), tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


CONFIGS = {  # a broken Scale.get_config, and what nn.save says of it
    "empty": (lambda self: {}, r"Scale needs \['features'\], which its config lacks \(its get_config\(\) gave \{\}\)"),
    "unknown keyword": (lambda self: {"features": 3, "size": 3},
                        r"Scale does not take the keyword\(s\) \['size'\]; it accepts \['features'\]"),
    "not JSON": (lambda self: {"features": np.arange(3)}, r"its get_config\(\) is not JSON \(ndarray"),
    "wrong shape": (lambda self: {"features": 4},
                    r"rebuilt from its config its '1\.weight' has shape \(4,\); the model's has \(3,\)"),
    "constructor fails": (lambda self: {"features": "three"}, r"Scale\(\*\*\{'features': 'three'\}\) cannot be built"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_save_refuses_a_config_that_does_not_rebuild_the_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    nn.register_layer(Scale)
    get_config, reason = CONFIGS[case]
    monkeypatch.setattr(Scale, "get_config", get_config)
    with pytest.raises(ValueError, match=r"^nn\.save: the model could not be loaded back from this file: layer '1' "
                                         rf"\(Scale\): {reason}.*\. Fix: make Scale\.get_config\(\) return the "
                                         r"constructor arguments that rebuild it .*return \{'features': "
                                         r"self\.features\}.*nn\.load calls Scale\(\*\*config\)"):
        nn.save(nn.Sequential(nn.Linear(2, 3), Scale(3)), tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_a_layer_whose_config_loses_its_dtype(tmp_path: Path) -> None:
    nn.register_layer(Scale)
    model = nn.Sequential(nn.Linear(2, 3), Scale(3)).double()
    with pytest.raises(ValueError, match=r"layer '1' \(Scale\): rebuilt from its config its '1\.weight' is float32; "
                                         r"the model's is float64, which loading would convert"):
        nn.save(model, tmp_path / "m.npz")


def test_save_refuses_inside_a_residual_naming_the_position(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nn.register_layer(Scale)
    monkeypatch.setattr(Scale, "get_config", lambda self: {})
    model = nn.Sequential(nn.Linear(2, 3), nn.Residual(nn.Linear(3, 3), Scale(3)))
    with pytest.raises(ValueError, match=r"could not be loaded back from this file: layer '1\.1' \(Scale\): Scale "
                                         r"needs \['features'\]"):
        nn.save(model, tmp_path / "m.npz")


def test_load_refuses_a_class_that_is_not_registered(tmp_path: Path, registry: dict[str, type[nn.Layer]]) -> None:
    nn.register_layer(Swish)
    nn.save(nn.Sequential(nn.Linear(4, 6), Swish()), tmp_path / "m.npz")
    registry.clear()  # another program, which did not register Swish
    with pytest.raises(ValueError, match=r"m\.npz: the architecture's model\.layers\[1\]: names a layer class 'Swish' "
                                         r"that nablanet does not have \(neither one of nablanet's layers nor "
                                         r"registered\)\. Fix: import the module that defines it and call "
                                         r"nn\.register_layer\(Swish\) before nn\.load\."):
        nn.load(tmp_path / "m.npz")
    nn.register_layer(Swish)
    assert isinstance(nn.load(tmp_path / "m.npz")[1], Swish)


def test_load_never_imports_a_name_from_the_file(tmp_path: Path) -> None:
    """A registered class is found by its name in the registry, never by importing what the file says."""
    meta = {"format": "nablanet-model", "version": 1,
            "model": {"class": "Sequential", "layers": [{"class": "test_register_layer.Swish", "config": {}}]}}
    np.savez(tmp_path / "m.npz", __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    nn.register_layer(Swish)
    with pytest.raises(ValueError, match=r"names a layer class 'test_register_layer\.Swish' that nablanet does not "
                                         "have"):
        nn.load(tmp_path / "m.npz")


class Noisy(nn.Layer):
    """A layer that draws its initial weights from nablanet's global generator and NumPy's legacy one."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(nn.init.normal_(np.empty(features), rng=None) + np.random.randn(features))

    def get_config(self) -> dict[str, Any]:
        return {"features": self.weight.shape[0]}


def test_save_leaves_the_global_generators_where_they_were(tmp_path: Path) -> None:
    """nn.save rebuilds the model (hollow) to check it; that must not shift a script's random draws."""
    nn.register_layer(Noisy)
    nn.manual_seed(3)
    np.random.seed(3)
    model = nn.Sequential(Noisy(4))
    expected = (Noisy(4).weight.data, np.random.randn(2))
    nn.manual_seed(3)
    np.random.seed(3)
    model = nn.Sequential(Noisy(4))
    nn.save(model, tmp_path / "m.npz")
    np.testing.assert_array_equal(Noisy(4).weight.data, expected[0])
    np.testing.assert_array_equal(np.random.randn(2), expected[1])


def test_save_refuses_a_model_built_from_an_earlier_definition(tmp_path: Path) -> None:
    def define() -> type[nn.Layer]:
        class Cell(nn.Layer):
            pass

        return nn.register_layer(Cell)

    old = define()
    model = nn.Sequential(old())
    define()  # the cell run again
    with pytest.raises(TypeError, match=r"layer '0' is a .*Cell \(module test_register_layer\) of an earlier "
                                        r"definition than the one registered.*Fix: build the model again"):
        nn.save(model, tmp_path / "m.npz")
