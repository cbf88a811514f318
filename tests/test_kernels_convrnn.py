"""The measured fast variants of the convolution and recurrent layers (``nablanet/layers/kernels/``) equal
their layers' reference forward and VJP to float64 precision, on random inputs, over the options each
variant handles: per-sample gradients, need_dx=False, vector axes of dy, and the layer's geometry.

Where a variant covers a case it must not hand it back to the reference: those cases run with the
layer's own ``forward``/``vjp`` replaced by a function that fails, so a variant that silently
declined everything could not pass."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from helpers import rel_err
from test_conv import CONV_CASES, IDS, _make, _x
from test_pooling import POOL_CASES
from test_pooling import _x as _pool_x

import nablanet as nn
from nablanet.layers import kernels

TOL = 1e-12  # float64: the variants reorder sums, nothing more


@contextmanager
def reference_forbidden(cls: type, *names: str) -> Iterator[None]:
    """Within the block, calling ``cls.<name>`` for each name fails the test."""
    saved = {name: cls.__dict__.get(name) for name in names}

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"the variant handed a case it covers back to {cls.__name__}'s reference")

    try:
        for name in names:
            setattr(cls, name, forbidden)
        yield
    finally:
        for name, fn in saved.items():
            if fn is None:
                delattr(cls, name)
            else:
                setattr(cls, name, fn)


def assert_same(got: Any, want: Any, what: str) -> None:
    if isinstance(want, tuple):
        for g, w in zip(got, want, strict=True):
            assert_same(g, w, what)
        return
    if isinstance(want, dict):
        assert set(got) == set(want), what
        for k in want:
            assert_same(got[k], want[k], f"{what} {k}")
        return
    assert got.shape == want.shape and got.dtype == want.dtype, (what, got.shape, want.shape)
    assert rel_err(got, want) <= TOL, what


def _conv_covered(layer: Any, cache: Any) -> bool:
    """The cases the convolution variant's VJP runs itself: one group, stride 1, padding within reach."""
    from nablanet.layers.kernels.conv import _transposed_ok

    return bool(layer.groups == 1 and _transposed_ok(layer, cache))


# -- convolution -------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("name,kw,shape", CONV_CASES, ids=IDS)
def test_conv_variant_equals_reference(name: str, kw: dict[str, Any], shape: tuple[int, ...], layout: str) -> None:
    layer = _make(name, kw)
    cls = type(layer)
    assert kernels._FORWARD[cls] is not None and kernels._VJP[cls] is not None
    x = _x(shape)
    if layout == "channels_last":  # what a previous convolution or pooling layer hands on
        x = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)
    y, cache = layer.forward(x)
    with reference_forbidden(cls, "forward") if layer.groups == 1 else _nothing():
        yk, ck = kernels.forward(layer, x, train=True, rng=0)
    assert_same(yk, y, "y")
    rng = np.random.default_rng(5)
    for vshape in ((), (3,)):
        dy = rng.standard_normal((*vshape, *y.shape))
        for per_sample in (False, True):
            for need_dx in (True, False):
                want = layer.vjp(cache, dy, per_sample=per_sample, need_dx=need_dx)
                covered = not vshape and not per_sample and (not need_dx or _conv_covered(layer, ck))
                with reference_forbidden(cls, "vjp") if covered and layer.groups == 1 else _nothing():
                    got = kernels.vjp(layer, ck, dy, per_sample=per_sample, need_dx=need_dx)
                assert_same(got[1], want[1], f"grads V={vshape} per_sample={per_sample}")
                if need_dx:
                    assert_same(got[0], want[0], f"dx V={vshape} per_sample={per_sample}")


@pytest.mark.parametrize("name,kw,shape", [c for c in CONV_CASES if c[1].get("groups", 1) == 1][:6])
def test_conv_variant_in_blocks_of_one_sample(
    name: str, kw: dict[str, Any], shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    import nablanet.layers.conv as conv

    layer = _make(name, kw)
    x = _x((5, *shape[1:]))
    y, cache = layer.forward(x)
    dy = np.random.default_rng(6).standard_normal(y.shape)
    want = layer.vjp(cache, dy)
    monkeypatch.setattr(conv, "_BLOCK_BYTES", 1)
    yk, ck = kernels.forward(layer, x, train=True, rng=0)
    assert len(ck.starts) - 1 == 5
    assert_same(yk, y, "y")
    assert_same(kernels.vjp(layer, ck, dy, per_sample=False, need_dx=True), want, "vjp")


def test_conv_variant_cache_serves_the_reference_and_the_lab() -> None:
    # The variant's cache is the reference's: the reference VJP and col_blocks (the lab's im2col) read it.
    layer = nn.Conv2d(6, 4, 3, padding=1, rng=0, dtype=np.float64)
    x = _x((3, 6, 7, 8))
    (y, cache), (_, ck) = layer.forward(x), kernels.forward(layer, x, train=False, rng=None)
    dy = np.random.default_rng(8).standard_normal(y.shape)
    assert_same(layer.vjp(ck, dy), layer.vjp(cache, dy), "reference VJP on the variant's cache")
    for (a0, a1, xa), (b0, b1, xb) in zip(layer.col_blocks(ck), layer.col_blocks(cache), strict=True):
        assert (a0, a1) == (b0, b1)
        np.testing.assert_array_equal(xa, xb)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


# -- max pooling ---------------------------------------------------------------------------------------
MAXPOOL_CASES: list[tuple[str, dict[str, Any], tuple[int, ...]]] = [
    *((n, kw, shape) for n, kw, shape in POOL_CASES if n.startswith("MaxPool")),
    ("MaxPool2d", {"kernel_size": 2, "stride": 3, "dilation": 2}, (2, 3, 9, 10)),  # disjoint, not tiling
    ("MaxPool2d", {"kernel_size": 2, "padding": 1}, (2, 3, 6, 6)),  # tiles the padded input
    ("MaxPool1d", {"kernel_size": 3, "stride": 4}, (2, 2, 13)),  # gaps between windows
]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("name,kw,shape", MAXPOOL_CASES)
def test_maxpool_variant_equals_reference(name: str, kw: dict[str, Any], shape: tuple[int, ...], ties: bool) -> None:
    layer = getattr(nn, name)(**kw)
    cls = type(layer)
    x = np.random.default_rng(1).integers(0, 3, shape).astype(np.float64) if ties else _pool_x(shape)
    y, cache = layer.forward(x)
    with reference_forbidden(cls, "forward"):
        yk, ck = kernels.forward(layer, x, train=True, rng=0)
    assert_same(yk, y, "y")
    np.testing.assert_array_equal(ck.argmax, cache.argmax)
    disjoint = all(s >= d * (k - 1) + 1 for s, k, d in zip(layer.stride, layer.kernel_size, layer.dilation,
                                                              strict=True))
    rng = np.random.default_rng(5)
    for vshape in ((), (3,)):
        dy = rng.standard_normal((*vshape, *y.shape))
        for per_sample in (False, True):
            want = layer.vjp(cache, dy, per_sample=per_sample)
            with reference_forbidden(cls, "vjp") if disjoint else _nothing():
                got = kernels.vjp(layer, ck, dy, per_sample=per_sample, need_dx=True)
            assert_same(got, want, f"V={vshape}")


# -- recurrent layers ----------------------------------------------------------------------------------
RECURRENT_CASES: list[dict[str, Any]] = [
    {},
    {"bidirectional": True},
    {"num_layers": 2, "bidirectional": True, "dropout": 0.3},
    {"num_layers": 2, "batch_first": True, "bias": False},
    {"bptt_truncate": 3},
    {"bidirectional": True, "bptt_truncate": 2, "batch_first": True},
]


@pytest.mark.parametrize("kw", RECURRENT_CASES, ids=[",".join(f"{k}={v}" for k, v in c.items()) or "plain"
                                                    for c in RECURRENT_CASES])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_recurrent_variant_equals_reference(kind: str, kw: dict[str, Any]) -> None:
    from nablanet.layers import recurrent

    cls = getattr(recurrent, kind)
    layer = cls(3, 4, **kw, dtype=np.float64, rng=0)
    assert kernels._FORWARD[cls] is not None and kernels._VJP[cls] is not None
    L, N = 7, 5
    x = np.random.default_rng(1).standard_normal((N, L, 3) if layer.batch_first else (L, N, 3))
    for train in (False, True):  # training draws the same dropout masks from the same seed
        y, cache = layer.forward(x, train=train, rng=3)
        with reference_forbidden(cls, "forward", "_scan"):
            yk, ck = kernels.forward(layer, x, train=train, rng=3)
        assert_same(yk, y, "y")
        rng = np.random.default_rng(5)
        for vshape in ((), (2,)):
            dy = rng.standard_normal((*vshape, *y.shape))
            for per_sample in (False, True):
                for need_dx in (True, False):
                    want = layer.vjp(cache, dy, per_sample=per_sample, need_dx=need_dx)
                    with reference_forbidden(cls, "vjp", "_bptt"):
                        got = kernels.vjp(layer, ck, dy, per_sample=per_sample, need_dx=need_dx)
                    assert_same(got[1], want[1], f"grads V={vshape} per_sample={per_sample}")
                    if need_dx:
                        assert_same(got[0], want[0], f"dx V={vshape} per_sample={per_sample}")
        # the variant's cache is the reference's (the lab and vjp_state read it)
        assert_same(layer.vjp(ck, dy), layer.vjp(cache, dy), "reference VJP on the variant's cache")
