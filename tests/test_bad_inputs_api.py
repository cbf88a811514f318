"""Issue 12, section 4: bad inputs to model files, state dicts, seeds and optimizers.

One test per reported input. Each asserts the message's key words: what was received, what was
expected, and how to fix it — and, for model files, that nothing advises pickle.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import nablanet as nn
from nablanet._random import check_seed

META = {"format": "nablanet-model", "version": 1}


def _model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 2, rng=0))


def _file(path: Path, meta: object, **arrays: np.ndarray) -> Path:
    """A model file whose JSON entry is ``meta`` (a str is written as it is)."""
    raw = meta if isinstance(meta, str) else json.dumps(meta)
    np.savez(path, __meta__=np.frombuffer(raw.encode(), dtype=np.uint8), **arrays)  # type: ignore[arg-type]
    return path


def _load_error(path: Path) -> str:
    with pytest.raises(ValueError) as info:
        nn.load(path)
    message = str(info.value)
    assert str(path) in message and "pickle" not in message.replace("pickled objects, which are refused", "")
    return message


def _linear_file(path: Path, model: dict[str, object]) -> Path:
    arrays = {f"model/{k}": v for k, v in _model().state_dict().items()}
    return _file(path, {**META, "model": model}, **arrays)


# -- nn.load on things that are not model files ------------------------------------------------
def test_load_npy_file(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros(3))
    message = _load_error(tmp_path / "a.npy")
    assert "single NumPy array (.npy)" in message and "not a nablanet model file" in message
    assert "nn.save writes" in message and "np.load(" in message


def test_load_random_bytes_never_advises_pickle(tmp_path: Path) -> None:
    (tmp_path / "r.npz").write_bytes(np.random.default_rng(0).bytes(300))
    message = _load_error(tmp_path / "r.npz")
    assert "not an .npz (zip) archive" in message and "nn.save writes" in message and "pickle" not in message


def test_load_bytes_that_look_like_a_pickle(tmp_path: Path) -> None:
    import pickle

    (tmp_path / "p.npz").write_bytes(pickle.dumps({"a": 1}))  # NumPy would suggest allow_pickle=True here
    assert "pickle" not in _load_error(tmp_path / "p.npz")


def test_load_a_folder(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="is a folder, not a model file; pass the model file inside it"):
        nn.load(tmp_path)


# -- tampered architecture JSON ------------------------------------------------------------------
def test_config_given_as_a_list(tmp_path: Path) -> None:
    path = _linear_file(tmp_path / "m.npz", {"class": "Sequential", "layers": [{"class": "Linear", "config": [4, 2]}]})
    message = _load_error(path)
    assert "model.layers[0]" in message and "'config' is a JSON list" in message
    assert "expected an object" in message and "save the model again" in message


def test_model_key_missing(tmp_path: Path) -> None:
    message = _load_error(_file(tmp_path / "m.npz", META))
    assert "no 'model' (the architecture)" in message and "['format', 'version']" in message
    assert "save the model again" in message


def test_meta_as_a_list(tmp_path: Path) -> None:
    message = _load_error(_file(tmp_path / "m.npz", [1, 2]))
    assert "holds a JSON list; expected an object with 'format', 'version' and 'model'" in message


def test_layers_as_a_string(tmp_path: Path) -> None:
    message = _load_error(_linear_file(tmp_path / "m.npz", {"class": "Sequential", "layers": "Linear"}))
    assert "Sequential 'layers' is a JSON str; expected a list of layers" in message


def test_architecture_nested_thousands_deep(tmp_path: Path) -> None:
    for depth in (300, 5000):  # deeper than nablanet reads; deeper than Python's JSON reader recurses
        arch = '{"class": "Sequential", "layers": [' * depth + "]}" * depth
        path = _file(tmp_path / f"deep{depth}.npz", '{"format": "nablanet-model", "version": 1, "model": ' + arch + "}")
        message = _load_error(path)
        assert "at most 200" in message and "damaged or was edited" in message


def test_huge_architecture_is_refused_before_anything_is_allocated(tmp_path: Path) -> None:
    import tracemalloc

    big = {"class": "Linear", "config": {"in_features": 10**6, "out_features": 10**6}}
    path = _linear_file(tmp_path / "m.npz", {"class": "Sequential", "layers": [big]})
    tracemalloc.start()
    start = time.perf_counter()
    message = _load_error(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - start < 1.0 and peak < 50 * 2**20  # not 7 TiB, not even 50 MiB
    assert "does not match the stored weights" in message
    assert "'0.weight' is (1000000, 1000000) by the architecture but (2, 4) in the file" in message


def test_stored_array_larger_than_its_entry(tmp_path: Path) -> None:
    import io
    import zipfile

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as z:  # a header that claims 4 TB over 32 bytes of data
        z.writestr("model/0.weight.npy", buf.getvalue() + bytes(32))
    message = _load_error(path)
    assert "entry 'model/0.weight' claims shape (1000000, 1000000)" in message and "holds only" in message


def test_unknown_config_keyword(tmp_path: Path) -> None:
    layer = {"class": "Linear", "config": {"in_features": 4, "out_features": 2, "bais": True}}
    message = _load_error(_linear_file(tmp_path / "m.npz", {"class": "Sequential", "layers": [layer]}))
    assert "model.layers[0]: Linear does not take the keyword(s) ['bais']" in message
    assert "it accepts ['in_features', 'out_features', 'bias', 'dtype']" in message
    assert "another version of nablanet" in message


def test_bad_config_value_names_the_layer(tmp_path: Path) -> None:
    layer = {"class": "Linear", "config": {"in_features": "four", "out_features": 2}}
    message = _load_error(_linear_file(tmp_path / "m.npz", {"class": "Sequential", "layers": [layer]}))
    assert "model.layers[0]" in message and "cannot be built" in message and "expected a positive int" in message


# -- nn.save ---------------------------------------------------------------------------------------
def test_save_none(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"received model=None \(NoneType\); expected a nablanet Layer.*Fix: pass"):
        nn.save(None, tmp_path / "m.npz")  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def test_save_with_something_that_is_not_an_optimizer(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"optimizer=\.\.\.\) received a str; expected a nablanet optimizer.*Fix"):
        nn.save(_model(), tmp_path / "m.npz", optimizer="adam")  # type: ignore[arg-type]


def test_save_to_an_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError) as info:
        nn.save(_model(), tmp_path)
    assert f"cannot write the model to {str(tmp_path)!r}: it is a folder" in str(info.value)
    assert "model.npz" in str(info.value) and ".part" not in str(info.value)


def test_save_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError) as info:
        nn.save(_model(), tmp_path / "f" / "m.npz")
    assert f"{str(tmp_path / 'f')!r} is a file, not a folder; choose another path" in str(info.value)


def test_save_to_an_unwritable_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def refuse(path: str | os.PathLike[str], *args: object) -> int:
        if str(path).endswith(".part"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refuse)  # as root, chmod cannot make a folder unwritable
    with pytest.raises(PermissionError) as info:
        nn.save(_model(), tmp_path / "m.npz")
    message = str(info.value)
    assert f"cannot write the model to {str(tmp_path / 'm.npz')!r} (Permission denied)" in message
    assert "choose a folder you can write to" in message and ".part" not in message


def test_save_to_a_folder_that_cannot_be_created() -> None:
    with pytest.raises(OSError) as info:
        nn.save(_model(), "/proc/nablanet/m.npz")
    assert "cannot create the folder '/proc/nablanet' for the model '/proc/nablanet/m.npz'" in str(info.value)


# -- load_state_dict -------------------------------------------------------------------------------
def test_load_state_dict_of_a_list() -> None:
    with pytest.raises(TypeError) as info:
        _model().load_state_dict([1, 2])  # type: ignore[arg-type]
    message = str(info.value)
    assert "received a list ([1, 2]); expected a mapping name -> array such as model.state_dict() gives" in message
    assert "'0.weight', '0.bias'" in message and "Fix: pass a dict" in message


def test_load_state_dict_with_non_finite_weights_warns_and_loads(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 3, rng=0), nn.Linear(3, 2, rng=1))
    sd = model.state_dict()
    sd["0.weight"][0, :2] = np.nan
    sd["1.bias"][0] = np.inf
    with pytest.warns(RuntimeWarning) as record:
        model.load_state_dict(sd)
    message = str(record[0].message)
    assert "2 tensor(s) hold non-finite values: '0.weight' (2 NaN, 0 inf), '1.bias' (0 NaN, 1 inf)" in message
    assert "loaded as they are (for inspection)" in message and "earlier checkpoint" in message
    assert record[0].filename == __file__  # points at the caller
    assert np.isnan(model[0].weight.data[0, 0])
    nn.save(model, tmp_path / "diverged.npz")  # a diverged checkpoint stays loadable
    with pytest.warns(RuntimeWarning, match="non-finite"):
        assert np.isinf(nn.load(tmp_path / "diverged.npz")[1].bias.data[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _model().load_state_dict(_model().state_dict())  # finite weights: silent


# -- seeds -----------------------------------------------------------------------------------------
def test_manual_seed_negative_as_pytorch() -> None:
    # torch.manual_seed(-1).initial_seed() == 2**64 - 1: negative seeds count modulo 2**64
    a = nn.manual_seed(-1).random(3)
    b = nn.manual_seed(2**64 - 1).random(3)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError) as info:
        nn.manual_seed(-(2**63) - 1)
    message = str(info.value)
    assert "manual_seed(seed) received" in message and "expected an int >= -2**63" in message
    assert "Fix: pass a seed" in message and "non-negative integer" not in message  # not NumPy's text
    nn.manual_seed(0)


def test_every_seed_entry_point_takes_negative_seeds() -> None:
    np.testing.assert_array_equal(nn.Linear(3, 2, rng=-1).weight.data, nn.Linear(3, 2, rng=2**64 - 1).weight.data)
    split = nn.data.load_digits(seed=-1)
    assert len(split.train[0]) > 0
    with pytest.raises(ValueError, match=r"rng \(an int seed\) received -\d+; expected an int >= -2\*\*63"):
        nn.Linear(3, 2, rng=-(2**70))
    with pytest.raises(TypeError, match=r"fit\(seed=\.\.\.\) received 1.5 \(float\); expected an int"):
        check_seed(1.5, "fit(seed=...)")


# -- optimizers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_non_finite_lr_is_refused(name: str, value: float) -> None:
    p = nn.Parameter(np.ones(2))
    with pytest.raises(ValueError) as info:
        getattr(nn.optim, name)([p], lr=value)
    message = str(info.value)
    assert f"received lr={value!r}; expected lr finite and >= 0" in message
    assert "Fix: pass a finite, non-negative learning rate" in message


@pytest.mark.parametrize(("name", "kwargs"), [
    ("SGD", {"momentum": math.inf}), ("SGD", {"weight_decay": math.inf}), ("Adam", {"eps": math.inf}),
    ("Adam", {"betas": (0.9, math.inf)}), ("RMSprop", {"alpha": math.inf}), ("AdamW", {"weight_decay": math.inf}),
])
def test_non_finite_hyperparameter_is_refused(name: str, kwargs: dict[str, object]) -> None:
    p = nn.Parameter(np.ones(2))
    with pytest.raises(ValueError, match=r"received \w+(\[\d\])?=inf; expected .*Fix"):
        getattr(nn.optim, name)([p], lr=0.1, **kwargs)


def test_non_finite_lr_scale_and_schedule_are_refused() -> None:
    p = nn.Parameter(np.ones(2))
    opt = nn.optim.SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="lr_scale received inf; expected a finite number >= 0"):
        opt.lr_scale = math.inf
    with pytest.raises(ValueError, match=r"the lr schedule .* gave inf at step t=0; expected lr finite"):
        nn.optim.SGD([p], lr=lambda t: math.inf)


def test_optimizer_load_state_dict_of_the_wrong_thing() -> None:
    opt = nn.optim.SGD(_model().parameters(), lr=0.1)
    with pytest.raises(TypeError, match=r"SGD.load_state_dict received list; expected the dict that "
                       r"optimizer.state_dict\(\) gives.*Fix"):
        opt.load_state_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"received \['0.bias', '0.weight'\]; expected the dict"):
        opt.load_state_dict(_model().state_dict())  # the model's state dict, not the optimizer's


# -- fit and evaluate ----------------------------------------------------------------------------
def test_fit_refuses_an_optimizer_built_on_another_models_parameters() -> None:
    x, y = np.ones((8, 4)), np.zeros(8, dtype=np.int64)
    model, other = _model(), _model()
    with pytest.raises(ValueError, match=r"fit: the optimizer \(SGD\) holds 2 parameter\(s\), none of them the "
                                         r"model's \(2 parameters\).*Fix: build the optimizer on this model"):
        nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(other.parameters(), lr=0.1), train=(x, y))


def test_fit_takes_an_optimizer_on_a_subset_of_the_parameters() -> None:
    x, y = np.ones((8, 4)), np.zeros(8, dtype=np.int64)
    model = nn.Sequential(nn.Linear(4, 3, rng=0), nn.Tanh(), nn.Linear(3, 2, rng=1))
    frozen = model[0].weight.data.copy()
    nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model[2].parameters(), lr=0.1), train=(x, y), epochs=2)
    assert np.array_equal(model[0].weight.data, frozen)  # fine-tuning the last layer only


def test_fit_where_every_label_is_ignore_index() -> None:
    x, y = np.ones((8, 4)), np.full(8, -100)
    model = _model()
    with pytest.raises(ValueError, match=r"fit: every label of train y \(8 of them\) equals the loss's "
                                         r"ignore_index=-100, so no sample counts and the loss is 0/0.*Fix: check the "
                                         r"labels") as info:
        nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), train=(x, y))
    assert "learning rate" not in str(info.value)


def test_evaluate_returns_plain_floats() -> None:
    x, y = np.ones((6, 4)), np.array([0, 1, 0, 1, 0, 1])
    scores = nn.evaluate(_model(), nn.CrossEntropyLoss(), x, y)
    assert {k: type(v) for k, v in scores.items()} == {"loss": float, "accuracy": float, "error": float}


def test_messages_name_a_type_with_its_article(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"save\(optimizer=\.\.\.\) received an object; expected a nablanet optimizer"):
        nn.save(_model(), tmp_path / "m.npz", optimizer=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"load_state_dict for Sequential received an int \(3\)"):
        _model().load_state_dict(3)  # type: ignore[arg-type]
