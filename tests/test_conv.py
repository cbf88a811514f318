"""Conv1d/Conv2d: finite differences, PyTorch parity over a table of geometries, per-sample and
vector-axis gradients, errors, and a hand-worked example."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import check_layer_fd, rel_err

import nablanet as nn

# (class name, constructor arguments, input shape)
CONV_CASES: list[tuple[str, dict[str, Any], tuple[int, ...]]] = [
    ("Conv2d", {"in_channels": 3, "out_channels": 4, "kernel_size": 3}, (2, 3, 7, 6)),
    ("Conv2d", {"in_channels": 1, "out_channels": 3, "kernel_size": 5, "padding": 2}, (2, 1, 8, 8)),
    ("Conv2d", {"in_channels": 2, "out_channels": 3, "kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 0)},
     (2, 2, 7, 5)),
    ("Conv2d", {"in_channels": 4, "out_channels": 6, "kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 2),
                "dilation": (1, 2), "groups": 2}, (2, 4, 8, 7)),
    ("Conv2d", {"in_channels": 2, "out_channels": 4, "kernel_size": 4, "padding": "same", "dilation": 2},
     (2, 2, 9, 9)),
    ("Conv2d", {"in_channels": 3, "out_channels": 2, "kernel_size": 3, "padding": "valid", "bias": False},
     (3, 3, 5, 6)),
    ("Conv2d", {"in_channels": 4, "out_channels": 4, "kernel_size": 3, "groups": 4, "padding": 1, "stride": 3},
     (2, 4, 7, 8)),
    ("Conv2d", {"in_channels": 16, "out_channels": 4, "kernel_size": 2, "stride": 2}, (2, 16, 4, 5)),
    ("Conv2d", {"in_channels": 24, "out_channels": 6, "kernel_size": 3, "groups": 2, "padding": "same"},
     (1, 24, 4, 4)),
    ("Conv1d", {"in_channels": 1, "out_channels": 5, "kernel_size": 5, "stride": 2, "padding": 1}, (3, 1, 40)),
    ("Conv1d", {"in_channels": 6, "out_channels": 6, "kernel_size": 3, "groups": 3, "bias": False, "padding": "same"},
     (2, 6, 11)),
    ("Conv1d", {"in_channels": 3, "out_channels": 2, "kernel_size": 4, "padding": "same"}, (2, 3, 9)),
    ("Conv1d", {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "dilation": 3, "stride": 2, "padding": 2},
     (2, 2, 17)),
    ("Conv1d", {"in_channels": 25, "out_channels": 5, "kernel_size": 3, "stride": 2, "padding": 1}, (2, 25, 10)),
    # padding wider than the kernel's reach, and an even kernel's uneven "same" padding
    ("Conv2d", {"in_channels": 3, "out_channels": 2, "kernel_size": (1, 3), "padding": (1, 1)}, (2, 3, 4, 5)),
    ("Conv2d", {"in_channels": 5, "out_channels": 3, "kernel_size": (2, 4), "padding": "same"}, (2, 5, 6, 7)),
]
IDS = [f"{c}-{i}" for i, (c, _, _) in enumerate(CONV_CASES)]


def _make(name: str, kw: dict[str, Any], dtype: Any = np.float64) -> nn.Layer:
    return getattr(nn, name)(**kw, dtype=dtype, rng=0)


def _x(shape: tuple[int, ...], dtype: Any = np.float64, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("name,kw,shape", CONV_CASES, ids=IDS)
def test_finite_differences_float64(name: str, kw: dict[str, Any], shape: tuple[int, ...]) -> None:
    assert check_layer_fd(_make(name, kw), _x(shape)) <= 1e-6


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("name,kw,shape", CONV_CASES, ids=IDS)
def test_torch_parity(name: str, kw: dict[str, Any], shape: tuple[int, ...], dtype: Any, tol: float) -> None:
    torch = pytest.importorskip("torch")
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tlayer = getattr(torch.nn, name)(**kw).to(tdtype)
    layer = _make(name, kw, dtype)
    layer.load_state_dict({k: v.detach().numpy() for k, v in tlayer.state_dict().items()})
    x = _x(shape, dtype)
    y, cache = layer.forward(x)
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    dx, grads = layer.vjp(cache, dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = tlayer(tx)
    ty.backward(torch.tensor(dy))
    assert y.shape == tuple(ty.shape) and y.dtype == dtype and dx.dtype == dtype
    assert rel_err(y, ty.detach().numpy()) <= tol
    assert rel_err(dx, tx.grad.numpy()) <= tol
    tgrads = dict(tlayer.named_parameters())
    assert set(grads) == set(tgrads)
    for k, g in grads.items():
        assert g.shape == tuple(tgrads[k].shape) and g.dtype == dtype
        assert rel_err(g, tgrads[k].grad.numpy()) <= tol, k


@pytest.mark.parametrize("name,kw,shape", CONV_CASES, ids=IDS)
def test_per_sample_grads_sum_to_batch_and_equal_singletons(
    name: str, kw: dict[str, Any], shape: tuple[int, ...]
) -> None:
    layer = _make(name, kw)
    x = _x(shape)
    y, cache = layer.forward(x)
    dy = np.random.default_rng(3).standard_normal(y.shape)
    _, g = layer.vjp(cache, dy)
    _, gn = layer.vjp(cache, dy, per_sample=True)
    for k in g:
        assert gn[k].shape == (shape[0], *g[k].shape)
        np.testing.assert_allclose(gn[k].sum(0), g[k], rtol=1e-12, atol=1e-12)
    for n in range(shape[0]):
        _, c1 = layer.forward(x[n : n + 1])
        _, g1 = layer.vjp(c1, dy[n : n + 1])
        for k in g:
            np.testing.assert_allclose(gn[k][n], g1[k], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,kw,shape", CONV_CASES, ids=IDS)
def test_vector_axes_equal_separate_vjps(name: str, kw: dict[str, Any], shape: tuple[int, ...]) -> None:
    layer = _make(name, kw)
    y, cache = layer.forward(_x(shape))
    dys = np.random.default_rng(4).standard_normal((2, 3, *y.shape))
    dx, grads = layer.vjp(cache, dys)
    _, gps = layer.vjp(cache, dys, per_sample=True)
    assert dx.shape == (2, 3, *shape)
    for a in range(2):
        for b in range(3):
            dx1, g1 = layer.vjp(cache, dys[a, b])
            _, gp1 = layer.vjp(cache, dys[a, b], per_sample=True)
            np.testing.assert_allclose(dx[a, b], dx1, rtol=1e-12, atol=1e-13)
            for k in g1:
                np.testing.assert_allclose(grads[k][a, b], g1[k], rtol=1e-12, atol=1e-13)
                np.testing.assert_allclose(gps[k][a, b], gp1[k], rtol=1e-12, atol=1e-13)


def test_need_dx_false_gives_the_same_parameter_gradients() -> None:
    layer = nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64)
    y, cache = layer.forward(_x((2, 2, 5, 5)))
    dy = np.ones_like(y)
    _, g = layer.vjp(cache, dy)
    dx, g2 = layer.vjp(cache, dy, need_dx=False)
    assert dx.size == 0
    for k in g:
        np.testing.assert_array_equal(g[k], g2[k])


def test_hand_worked_conv1d() -> None:
    # x = [1, 2, 3, 4], w = [1, −1], b = 0.5, stride 1, no padding:
    # y[p] = x[p] − x[p+1] + 0.5 = [−0.5, −0.5, −0.5]
    layer = nn.Conv1d(1, 1, 2, dtype=np.float64)
    layer.load_state_dict({"weight": [[[1.0, -1.0]]], "bias": [0.5]})
    x = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    y, cache = layer.forward(x)
    np.testing.assert_allclose(y, [[[-0.5, -0.5, -0.5]]])
    # dy = [1, 2, 3]: dx[q] = Σ_p dy[p] w[q − p] = [1, 2−1, 3−2, −3] = [1, 1, 1, −3]
    # dw[t] = Σ_p dy[p] x[p + t] = [1+4+9, 2+6+12] = [14, 20]; db = 6
    dx, g = layer.vjp(cache, np.array([[[1.0, 2.0, 3.0]]]))
    np.testing.assert_allclose(dx, [[[1.0, 1.0, 1.0, -3.0]]])
    np.testing.assert_allclose(g["weight"], [[[14.0, 20.0]]])
    np.testing.assert_allclose(g["bias"], [6.0])


def test_output_feeds_the_next_layer_without_copies_and_layouts_match_torch() -> None:
    # y is an NCHW-shaped view of a channels-last array; the next conv reads it as is.
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, rng=0), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 4, 3, rng=1), nn.Flatten(), nn.Linear(4 * 2 * 2, 3, rng=2)).double()
    x = _x((2, 3, 8, 8))
    y = model(x)
    assert y.shape == (2, 3)
    report = nn.gradcheck(model, nn.CrossEntropyLoss(), x, np.array([0, 2]))
    assert not report.failed and max(report.rel_errors.values()) <= 1e-6


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"in_channels": 0, "out_channels": 2, "kernel_size": 3}, "in_channels"),
        ({"in_channels": 3, "out_channels": 2, "kernel_size": 3, "groups": 2}, "divisible by groups"),
        ({"in_channels": 2, "out_channels": 2, "kernel_size": (3, 3, 3)}, "kernel_size"),
        ({"in_channels": 2, "out_channels": 2, "kernel_size": 3, "stride": 0}, "stride"),
        ({"in_channels": 2, "out_channels": 2, "kernel_size": 3, "padding": "full"}, "padding"),
        ({"in_channels": 2, "out_channels": 2, "kernel_size": 3, "padding": "same", "stride": 2}, "stride 1"),
        ({"in_channels": 2, "out_channels": 2, "kernel_size": 3, "padding_mode": "reflect"}, "zeros"),
    ],
)
def test_bad_arguments(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        nn.Conv2d(**kw)


def test_bad_inputs_say_what_was_expected() -> None:
    layer = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"got x.shape=\(2, 4, 8, 8\); expected \(N, 3, H, W\)"):
        layer(np.zeros((2, 4, 8, 8)))
    with pytest.raises(ValueError, match=r"x\[None\]"):
        layer(np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="larger than the padded input"):
        layer(np.zeros((1, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"expected \(N, 2, L\)"):
        nn.Conv1d(2, 2, 3)(np.zeros((2, 2, 3, 3)))


def test_save_and_load_round_trip(tmp_path: Any) -> None:
    model = nn.Sequential(nn.Conv1d(1, 4, 5, stride=2, padding="valid", rng=0), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 8, 3, rng=2))
    x = _x((2, 1, 20), np.float32)
    nn.save(model, tmp_path / "m.npz")
    again = nn.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(again(x), model(x))
    conv = nn.Conv2d(4, 2, (1, 3), padding="same", groups=2, dilation=(1, 2), bias=False)
    nn.save(nn.Sequential(conv), tmp_path / "c.npz")
    loaded = nn.load(tmp_path / "c.npz")[0]
    assert loaded.get_config() == conv.get_config()


@pytest.mark.parametrize("name,kw,shape", CONV_CASES, ids=IDS)
def test_blocked_im2col_equals_one_block(
    name: str, kw: dict[str, Any], shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Large batches run im2col in blocks of samples; one sample per block must give the same numbers.
    import nablanet.layers.conv as conv

    layer = _make(name, kw)
    x = _x((5, *shape[1:]))
    y, cache = layer.forward(x)
    dys = np.random.default_rng(6).standard_normal((2, *y.shape))
    ref = [layer.vjp(cache, dys[0]), layer.vjp(cache, dys), layer.vjp(cache, dys[1], per_sample=True)]
    monkeypatch.setattr(conv, "_BLOCK_BYTES", 1)
    yb, cb = layer.forward(x)
    assert len(cb.starts) - 1 == 5
    got = [layer.vjp(cb, dys[0]), layer.vjp(cb, dys), layer.vjp(cb, dys[1], per_sample=True)]
    np.testing.assert_allclose(yb, y, rtol=1e-13, atol=1e-13)
    for (dx, g), (dxb, gb) in zip(ref, got, strict=True):
        np.testing.assert_allclose(dxb, dx, rtol=1e-12, atol=1e-13)
        for k in g:
            np.testing.assert_allclose(gb[k], g[k], rtol=1e-12, atol=1e-13)


def test_channels_last_input_and_gradient_layouts_give_the_same_numbers() -> None:
    # An NCHW view of channels-last memory (what a convolution or pooling layer outputs) and an
    # NCHW-contiguous array of the same values: the same outputs and gradients.
    layer = nn.Conv2d(6, 4, 3, rng=0, dtype=np.float64)
    xh = _x((2, 7, 8, 6))
    x_view, x_copy = np.moveaxis(xh, -1, 1), np.ascontiguousarray(np.moveaxis(xh, -1, 1))
    (y1, c1), (y2, c2) = layer.forward(x_view), layer.forward(x_copy)
    np.testing.assert_array_equal(y1, y2)
    dyh = np.random.default_rng(8).standard_normal((2, 5, 6, 4))
    for dy in (np.moveaxis(dyh, -1, 1), np.ascontiguousarray(np.moveaxis(dyh, -1, 1))):
        (dx1, g1), (dx2, g2) = layer.vjp(c1, dy), layer.vjp(c2, dy)
        np.testing.assert_allclose(dx1, dx2, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(g1["weight"], g2["weight"], rtol=1e-14, atol=1e-14)
