"""Sequential's container protocol, state dicts, modes, dtypes and input errors."""

from __future__ import annotations

import numpy as np
import pytest

import nablanet as nn


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))


def test_indexing_slicing_len_iteration() -> None:
    model = _mlp()
    assert len(model) == 3
    assert isinstance(model[0], nn.Linear) and isinstance(model[-1], nn.Linear)
    head = model[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2
    assert head[0] is model[0]  # slices share layers, as in PyTorch
    assert [type(m).__name__ for m in model] == ["Linear", "Tanh", "Linear"]
    with pytest.raises(IndexError, match="out of range for a Sequential of 3 layers"):
        model[3]
    model.append(nn.Softmax(dim=-1))
    assert len(model) == 4


def test_parameters_and_names_match_pytorch_layout() -> None:
    model = _mlp()
    names = [(k, p.shape) for k, p in model.named_parameters()]
    assert names == [("0.weight", (32, 64)), ("0.bias", (32,)), ("2.weight", (10, 32)), ("2.bias", (10,))]
    assert len(list(model.parameters())) == 4


def test_load_state_dict_from_torch() -> None:
    torch = pytest.importorskip("torch")
    tmodel = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
    model = _mlp()
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    np.testing.assert_allclose(model(x), tmodel(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_state_dict_is_a_copy_and_round_trips() -> None:
    model = _mlp()
    sd = model.state_dict()
    sd["0.weight"][...] = 0
    assert np.any(model[0].weight.data != 0)
    other = _mlp()
    other.load_state_dict(model.state_dict())
    for (k, a), (_, b) in zip(model.named_parameters(), other.named_parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data, err_msg=k)


def test_load_state_dict_lists_missing_and_unexpected_keys() -> None:
    model = _mlp()
    sd = model.state_dict()
    del sd["2.bias"]
    sd["3.weight"] = np.zeros((2, 2))
    with pytest.raises(KeyError, match=r"missing keys \['2.bias'\], unexpected keys \['3.weight'\]"):
        model.load_state_dict(sd)
    result = model.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["2.bias"] and result.unexpected_keys == ["3.weight"]


def test_load_state_dict_shape_mismatch_changes_nothing() -> None:
    model = _mlp()
    before = model.state_dict()
    sd = model.state_dict()
    sd["0.bias"] = np.zeros(31)
    sd["0.weight"] = np.zeros((32, 64))
    with pytest.raises(ValueError, match=r"'0.bias' has shape \(31,\) in the state dict but \(32,\) in the model"):
        model.load_state_dict(sd)
    np.testing.assert_array_equal(model[0].weight.data, before["0.weight"])


def test_train_eval_modes_propagate() -> None:
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 2)), nn.ReLU())
    assert model.training and model[0][0].training
    assert model.eval() is model
    assert not model.training and not model[0][0].training and not model[1].training
    model.train()
    assert model[0][0].training


def test_modes_dtypes_and_buffers_reach_every_depth() -> None:
    model = nn.Sequential(nn.Residual(nn.BatchNorm1d(3), nn.Linear(3, 3)), nn.ReLU())
    assert [k for k, _ in model.named_buffers()] == ["0.0.running_mean", "0.0.running_var", "0.0.num_batches_tracked"]
    assert list(model.state_dict())[:4] == ["0.0.weight", "0.0.bias", "0.0.running_mean", "0.0.running_var"]
    model.eval()
    assert not model[0][0].training and not model[0][1].training
    model.double()
    assert model[0][0].running_mean.dtype == np.float64 and model[0][1].weight.dtype == np.float64
    assert model[0][0].num_batches_tracked.dtype.kind == "i"  # integer buffers keep their dtype


def test_backward_with_the_wrong_caches_says_so() -> None:
    model = _mlp()
    _, caches = model.forward(np.zeros((2, 64), np.float32))
    with pytest.raises(ValueError, match="Sequential of 3 layers got 2 caches"):
        model.backward(caches[:2], np.zeros((2, 10), np.float32))


def test_repr_is_pytorch_like() -> None:
    assert repr(nn.Linear(3, 2)) == "Linear(in_features=3, out_features=2, bias=True)"
    assert "(1): Tanh()" in repr(_mlp())


# -- dtypes -------------------------------------------------------------------------------------------
def test_default_dtype_is_float32_and_settable() -> None:
    assert nn.Linear(2, 2).weight.dtype == np.float32
    nn.set_default_dtype(np.float64)
    assert nn.Linear(2, 2).weight.dtype == np.float64
    assert nn.Linear(2, 2, dtype=np.float32).weight.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_end_to_end_keeps_parameter_dtype(dtype: type) -> None:
    model = _mlp().to(dtype)
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(dtype)
    value, grads = nn.value_and_grad(model, nn.CrossEntropyLoss(), x, np.arange(4))
    assert np.isfinite(value)
    assert all(g.dtype == dtype for g in grads.values())
    assert model(x).dtype == dtype
    assert all(p.dtype == dtype for p in model.parameters())


def test_input_of_another_dtype_is_converted_to_the_parameters_dtype() -> None:
    # The documented rule: a layer with parameters computes in their dtype.
    model32 = _mlp()
    x64 = np.random.default_rng(0).standard_normal((4, 64))
    assert model32(x64).dtype == np.float32
    np.testing.assert_allclose(model32(x64), model32(x64.astype(np.float32)), rtol=0, atol=0)
    model64 = _mlp().double()
    assert model64(x64.astype(np.float32)).dtype == np.float64
    # ints and bools become the default dtype first, then the parameters' dtype
    assert model64(np.ones((2, 64), dtype=np.int64)).dtype == np.float64
    assert nn.Tanh()(np.ones((2, 3), dtype=np.int32)).dtype == np.float32
    assert nn.Tanh()(np.ones((2, 3), dtype=np.float64)).dtype == np.float64


# -- bad input: one test per message --------------------------------------------------------------
def test_error_wrong_feature_size() -> None:
    with pytest.raises(ValueError, match=r"Linear\(in_features=3\) got x.shape=\(8, 4\).*the last axis must be 3"):
        nn.Linear(3, 2)(np.zeros((8, 4)))


def test_error_wrong_rank() -> None:
    with pytest.raises(ValueError, match=r"got x.shape=\(3,\).*Add a batch axis with x\[None\]"):
        nn.Linear(3, 2)(np.zeros(3))


def test_error_non_numeric_input() -> None:
    with pytest.raises(TypeError, match=r"x has dtype <U1.*expected numbers"):
        _mlp()(np.array([["a"] * 64]))


def test_error_ragged_input() -> None:
    with pytest.raises(TypeError, match="could not be turned into a numeric array"):
        _mlp()([[1.0, 2.0], [3.0]])


def test_error_nan_in_input() -> None:
    x = np.zeros((2, 64))
    x[1, 5] = np.nan
    with pytest.raises(ValueError, match=r"x contains 1 NaN/inf value\(s\), the first at index \(1, 5\)"):
        _mlp()(x)


def test_error_inf_in_input_of_value_and_grad() -> None:
    x = np.zeros((2, 64))
    x[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN/inf"):
        nn.value_and_grad(_mlp(), nn.CrossEntropyLoss(), x, np.array([0, 1]))


def test_error_sequential_given_a_class() -> None:
    with pytest.raises(TypeError, match=r"Sequential argument 1 is a type.*nn.ReLU\(\), not nn.ReLU"):
        nn.Sequential(nn.Linear(2, 2), nn.ReLU)  # type: ignore[arg-type]


def test_error_bad_linear_size() -> None:
    with pytest.raises(ValueError, match=r"Linear\(out_features=0\): expected a positive int"):
        nn.Linear(3, 0)


def test_error_softmax_without_int_dim() -> None:
    with pytest.raises(TypeError, match=r"Softmax\(dim=None\): dim must be an int"):
        nn.Softmax(dim=None)  # type: ignore[arg-type]


def test_error_softmax_dim_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"Softmax\(dim=2\) got an input with 2 axes"):
        nn.Softmax(dim=2)(np.zeros((2, 3)))


def test_error_bad_dtype() -> None:
    with pytest.raises(TypeError, match="dtype must be float32 or float64; got int64"):
        nn.Linear(2, 2, dtype=np.int64)


def test_error_flatten_bad_dims() -> None:
    with pytest.raises(ValueError, match=r"Flatten\(start_dim=3, end_dim=-1\) got x.shape=\(2, 3\)"):
        nn.Flatten(3)(np.zeros((2, 3)))


def test_error_vjp_dy_with_too_few_axes() -> None:
    _y, cache = nn.Tanh().forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="dy must have the output's shape"):
        nn.Tanh().vjp(cache, np.zeros(3))
