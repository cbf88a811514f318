"""Exercises that check themselves (docs/exercises.md; nn.testing.check_vjp and nn.testing.replace_vjp).

The page cannot drift: every code block with an output under it is run here and must print exactly
that output, so the messages the page quotes for wrong answers are the ones nablanet gives. Each
exercise's solution, taken from the page, passes the check and trains inside ``replace_vjp`` to the
reference's weights; the lab sees it too. ``replace_vjp`` puts the reference back after its block,
after an exception and after a failed check, nests, and refuses what it cannot swap.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nablanet as nn
from nablanet._swaps import Swaps
from nablanet.layers import kernels
from nablanet.losses import base as loss_base
from nablanet.testing import VjpCheckError

PAGE = Path(__file__).resolve().parents[1] / "docs" / "exercises.md"
TEXT = PAGE.read_text(encoding="utf-8")
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)


def _blocks() -> list[tuple[str, str, int]]:
    """(language, code, offset) of every fenced block of the page, in order."""
    return [(m.group(1), m.group(2), m.start()) for m in FENCE.finditer(TEXT)]


def _with_outputs() -> list[tuple[str, str]]:
    """(python code, the output shown under it) for every python block followed by a ```text block."""
    blocks = _blocks()
    return [(code, blocks[k + 1][1]) for k, (lang, code, _) in enumerate(blocks)
            if lang == "python" and k + 1 < len(blocks) and blocks[k + 1][0] == "text"]


def _solutions() -> dict[str, str]:
    """Each solution's function definition (a python block inside <details>), by function name."""
    hidden = [(m.start(), m.end()) for m in re.finditer(r"<details.*?</details>", TEXT, re.S)]
    found = {}
    for lang, code, at in _blocks():
        if lang == "python" and any(a < at < b for a, b in hidden):
            name = re.search(r"^def (\w+)\(", code, re.M)
            assert name is not None
            found[name.group(1)] = code[: code.index("print(nn.testing.check_vjp")]
    return found


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    """The page's blocks set the default dtype; the tests here want float64 too. Put it back after."""
    saved = nn.get_default_dtype()
    nn.set_default_dtype(np.float64)
    yield
    nn.set_default_dtype(saved)


def _run(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(PAGE), "exec"), {"__name__": "__main__"})
    return out.getvalue()


# -- the page --------------------------------------------------------------------------------------------
def test_every_output_block_belongs_to_a_python_block() -> None:
    blocks = _blocks()
    assert all(blocks[k - 1][0] == "python" for k, (lang, _, _) in enumerate(blocks) if lang == "text")
    assert len(_with_outputs()) >= 12


@pytest.mark.parametrize("index", range(len(_with_outputs())))
def test_the_page_prints_what_it_shows(index: int) -> None:
    code, shown = _with_outputs()[index]
    assert _run(code) == shown


def test_the_page_quotes_a_message_for_each_classic_mistake() -> None:
    """The issue's list: transposed weight gradient, missing batch sum, wrong sign, forgotten σ′ (quoted in
    output blocks, which the test above checks against the code)."""
    shown = " ".join(" ".join(out for _, out in _with_outputs()).split())  # the reports wrap their lines
    for message in ("It is the right shape transposed: check the order of the factors",
                    "The extra leading axis has the batch size N = 4: sum over the samples (axis 0).",
                    "It is about -1× the right value: a wrong sign?",
                    "It is dy passed through unchanged: the layer's own derivative is missing",
                    "It lacks the factor fₜ(1 − fₜ), σ′ of the forget gate: multiply by it.",
                    "It does not change when dterms doubles",
                    "It is dy ⊙ diag(J), the Jacobian's diagonal alone",
                    "is the padding still on (crop it off)?"):
        assert message in shown, message


def test_five_exercises_each_with_a_hidden_solution() -> None:
    assert len(re.findall(r"^## Exercise \d", TEXT, re.M)) >= 5
    assert set(_solutions()) == {"linear_vjp", "sigmoid_vjp", "softmax_vjp", "cross_entropy_vjp", "conv2d_vjp",
                                 "lstm_step_vjp"}


# -- each solution: checked, then trained with, to the reference's weights ----------------------------------
def _solution(name: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {"__name__": "solution"}
    exec(compile(_solutions()[name], str(PAGE), "exec"), namespace)
    return namespace[name]


def _data(shape: tuple[int, ...], classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape)
    return x, rng.integers(0, classes, shape[0])


CASES: dict[str, tuple[type, Callable[[], nn.Layer], tuple[int, ...]]] = {
    "linear_vjp": (nn.Linear, lambda: nn.Sequential(nn.Linear(4, 6, rng=0), nn.Tanh(), nn.Linear(6, 3, rng=1)),
                   (40, 4)),
    "sigmoid_vjp": (nn.Sigmoid, lambda: nn.Sequential(nn.Linear(4, 6, rng=0), nn.Sigmoid(), nn.Linear(6, 3, rng=1)),
                    (40, 4)),
    "softmax_vjp": (nn.Softmax, lambda: nn.Sequential(nn.Linear(4, 3, rng=0), nn.Softmax(dim=1),
                                                      nn.Linear(3, 3, rng=1)), (40, 4)),
    "cross_entropy_vjp": (nn.CrossEntropyLoss, lambda: nn.Sequential(nn.Linear(4, 3, rng=0)), (40, 4)),
    "conv2d_vjp": (nn.Conv2d, lambda: nn.Sequential(nn.Conv2d(2, 3, 3, stride=(1, 2), padding=(1, 0), dilation=(2, 1),
                                                              rng=0), nn.Tanh(), nn.Flatten(), nn.Linear(36, 3, rng=1)),
                   (24, 2, 6, 7)),
    "lstm_step_vjp": (nn.LSTM, lambda: nn.Sequential(nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True,
                                                             rng=0), nn.LastStep(), nn.Linear(8, 3, rng=1)),
                      (24, 5, 3)),
}


def _fit(make: Callable[[], nn.Layer], shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    model = make()
    x, y = _data(shape)
    nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.3, momentum=0.5), (x, y), epochs=3,
           batch_size=8)
    return model.state_dict()


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_solution_passes_the_check_and_trains_to_the_reference_weights(name: str) -> None:
    cls, make, shape = CASES[name]
    vjp = _solution(name)
    assert nn.testing.check_vjp(cls, vjp).passed
    reference = _fit(make, shape)
    with nn.testing.replace_vjp(cls, vjp) as report:
        assert report is not None and report.passed
        mine = _fit(make, shape)
    for key in reference:
        np.testing.assert_allclose(mine[key], reference[key], rtol=0, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("name", ["linear_vjp", "conv2d_vjp", "lstm_step_vjp", "softmax_vjp"])
def test_the_lab_runs_the_solution_and_agrees_with_the_reference(name: str) -> None:
    """Per-sample gradients (the contract's loop, or BPTT's own), per-sample norms (the closed form is set
    aside), Jacobians (vector axes through a model) and value_and_grad, inside replace_vjp."""
    cls, make, shape = CASES[name]
    model, loss = make(), nn.CrossEntropyLoss()
    x, y = _data(shape)
    x, y = x[:5], y[:5]

    def measure() -> list[Any]:
        return [nn.lab.per_sample_grads(model, loss, x, y), nn.lab.per_sample_grad_norms(model, loss, x, y),
                nn.value_and_grad(model, loss, x, y)[1], {"J": nn.lab.jacobian(model, x[:2])}]

    reference = measure()
    with nn.testing.replace_vjp(cls, _solution(name)):
        assert kernels.swapped(cls)
        mine = measure()
    for want, got in zip(reference, mine, strict=True):
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-10, atol=1e-12, err_msg=key)


# -- replace_vjp: where the function runs, and that the reference comes back ---------------------------------
def _tables(cls: type) -> tuple[Any, Any, bool]:
    return kernels._FORWARD.get(cls), kernels._VJP.get(cls), cls in loss_base._TERMS_VJP_SWAPS.current


def _wrong_sign(layer: nn.Layer, cache: Any, dy: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    x, w = cache.x, layer.weight.data
    return dy @ w, {"weight": -(dy.T @ x), "bias": -dy.sum(axis=0)}


@pytest.mark.parametrize("cls", [nn.Linear, nn.Conv2d, nn.LSTM, nn.CrossEntropyLoss])
def test_the_reference_is_back_after_the_block_and_after_an_exception(cls: type) -> None:
    before = _tables(cls)

    def anything(*args: Any) -> Any:
        raise AssertionError("not called")

    with nn.testing.replace_vjp(cls, anything, check=False):
        assert _tables(cls) != before
    assert _tables(cls) == before
    with pytest.raises(KeyError, match="inside"), nn.testing.replace_vjp(cls, anything, check=False):
        raise KeyError("inside")
    assert _tables(cls) == before and not kernels.swapped(cls)


def test_a_wrong_function_is_refused_on_entering_and_nothing_is_swapped() -> None:
    before = _tables(nn.Linear)
    with pytest.raises(VjpCheckError, match="a wrong sign"), nn.testing.replace_vjp(nn.Linear, _wrong_sign):
        raise AssertionError("the block must not run")
    assert _tables(nn.Linear) == before


def test_check_false_trains_with_a_wrong_gradient_which_climbs_the_loss() -> None:
    x, y = _data((40, 4))

    def losses() -> list[float]:
        model = nn.Sequential(nn.Linear(4, 3, rng=0))
        return nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.5), (x, y), epochs=5,
                      batch_size=None)["loss"]

    right = losses()
    with nn.testing.replace_vjp(nn.Linear, _wrong_sign, check=False) as report:
        assert report is None
        wrong = losses()
    assert right[-1] < right[0] and all(b > a for a, b in itertools.pairwise(wrong))


def test_the_first_use_check_catches_a_configuration_the_entry_example_did_not_have() -> None:
    """Checked on entering with stride 1, where ignoring the stride is right; the model's stride 2 is caught
    at its first forward pass, with the configuration named."""
    def stride_one_only(layer: nn.Layer, cache: Any, dy: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        w, xp = layer.weight.data, np.moveaxis(cache.xp, -1, 1)
        h, v = cache.out_spatial
        dxp, dw = np.zeros_like(xp), np.zeros_like(w)
        for a in range(w.shape[2]):
            for b in range(w.shape[3]):
                dw[:, :, a, b] = np.einsum("nohw,nchw->oc", dy, xp[:, :, a:a + h, b:b + v])
                dxp[:, :, a:a + h, b:b + v] += np.einsum("nohw,oc->nchw", dy, w[:, :, a, b])
        return dxp, {"weight": dw, "bias": dy.sum(axis=(0, 2, 3))}

    x = np.random.default_rng(0).standard_normal((3, 1, 6, 6))
    example = (nn.Conv2d(1, 2, 3), x)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.Flatten())
    with nn.testing.replace_vjp(nn.Conv2d, stride_one_only, example=example) as report:
        assert report is not None and report.passed
        with pytest.raises(VjpCheckError, match=r"stride=\(2, 2\)"):
            nn.value_and_grad(model, nn.MSELoss(), x, np.zeros((3, 8)))
    assert not kernels.swapped(nn.Conv2d)


def test_blocks_nest_and_may_end_in_another_order() -> None:
    def tagged(tag: float) -> Callable[..., Any]:
        def vjp(layer: nn.Layer, cache: Any, dy: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
            return dy * tag, {}
        return vjp

    layer, x = nn.Tanh(), np.ones((2, 3))

    def dx() -> float:
        y, cache = kernels.forward(layer, x, train=False, rng=None)
        return float(kernels.vjp(layer, cache, np.ones_like(y), per_sample=False, need_dx=True)[0][0, 0])

    own = dx()
    outer, inner = (nn.testing.replace_vjp(nn.Tanh, tagged(t), check=False) for t in (2.0, 3.0))
    with outer:
        assert dx() == 2.0
        with inner:
            assert dx() == 3.0
        assert dx() == 2.0
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)  # the outer block ends first: the inner one stays in force
    assert dx() == 3.0
    inner.__exit__(None, None, None)
    assert dx() == own and not kernels.swapped(nn.Tanh)
    with pytest.raises(RuntimeError, match="already active"), outer, outer:
        pass
    assert not kernels.swapped(nn.Tanh)


def test_what_replace_vjp_refuses() -> None:
    def vjp(*args: Any) -> Any:
        return None

    with pytest.raises(TypeError, match="A container's backward runs its children's"):
        nn.testing.replace_vjp(nn.Sequential, vjp)
    with pytest.raises(TypeError, match="leaf layer or a loss class"):
        nn.testing.replace_vjp(nn.Linear(2, 2), vjp)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="as a function"):
        nn.testing.replace_vjp(nn.Linear, "vjp")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Pass one: check_vjp\(Bilinear\(\.\.\.\), vjp, x\)"):
        nn.testing.check_vjp(nn.Bilinear, vjp)


def test_gradcheck_inside_the_block_blames_the_swapped_layer() -> None:
    def no_derivative(layer: nn.Layer, cache: Any, dy: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        return dy, {}

    model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.Sigmoid(), nn.Linear(4, 2, rng=1))
    x, y = _data((5, 3), classes=2)
    assert nn.gradcheck(model, nn.CrossEntropyLoss(), x, y).passed
    with nn.testing.replace_vjp(nn.Sigmoid, no_derivative, check=False):
        report = nn.gradcheck(model, nn.CrossEntropyLoss(), x, y)
    assert report.diagnosis.startswith("gradcheck failed for layer '1' (Sigmoid)")
    assert "It is dy passed through unchanged" in report.diagnosis


def test_a_swapped_layer_keeps_its_tape_entry_as_nablanet_writes_it() -> None:
    """The tape holds the layer's own cache and no x, y (those are for a layer of the user's), so the
    Recorder's rows are those of the reference."""
    model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.Tanh())
    x = np.ones((2, 3))
    with nn.testing.replace_vjp(nn.Linear, _solution("linear_vjp")):
        y, caches = kernels.forward(model, x, train=False, rng=None)
        tape = model.backward(caches, np.ones_like(y), accumulate=False)
    assert type(tape[0].cache).__name__ == "LinearCache" and tape[0].x is None and tape[0].y is None


def test_a_loss_function_of_the_wrong_shape_is_named_when_it_runs() -> None:
    def summed(loss: nn.Loss, cache: Any, dterms: np.ndarray) -> np.ndarray:
        return (cache.p - cache.r).sum(axis=0)

    x, y = _data((6, 4))
    with nn.testing.replace_vjp(nn.CrossEntropyLoss, summed, check=False), \
            pytest.raises(ValueError, match=r"\(with the VJP .*summed\): It returned dinput of shape \(3,\), expected "
                          r"the input's \(6, 3\)\. The batch axis is missing"):
        nn.value_and_grad(nn.Sequential(nn.Linear(4, 3, rng=0)), nn.CrossEntropyLoss(), x, y)


def test_an_lstm_step_of_the_wrong_shape_is_named_when_it_runs() -> None:
    def half(layer: nn.Layer, step: Any, dh: np.ndarray, dc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros_like(dh), dc

    model = nn.Sequential(nn.LSTM(2, 3, batch_first=True, rng=0), nn.LastStep())
    x = np.ones((2, 4, 2))
    with nn.testing.replace_vjp(nn.LSTM, half, check=False), \
            pytest.raises(nn.layers.contract.LayerContractError, match=r"returned da of shape \(1, 2, 3\); expected "
                          r"\(1, 2, 12\)"):
        nn.value_and_grad(model, nn.MSELoss(), x, np.zeros((2, 3)))


def test_a_student_error_is_reported_with_its_line() -> None:
    code = "def broken(layer, cache, dy):\n    return dy @ layer.weight.data.T, {}\n"
    namespace: dict[str, Any] = {}
    exec(compile(code, str(PAGE), "exec"), namespace)
    report = nn.testing.check_vjp(nn.Linear, namespace["broken"], raise_exception=False)
    assert [c.check for c in report.checks] == ["call"]
    assert report.checks[0].detail.startswith("broken raised ValueError: matmul")


def test_check_vjp_on_an_instance_of_your_choice() -> None:
    layer = nn.Linear(5, 5, bias=False, rng=0)
    x = np.random.default_rng(1).standard_normal((3, 5))

    def square_transposed(layer: nn.Layer, cache: Any, dy: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        return dy @ layer.weight.data, {"weight": cache.x.T @ dy}

    report = nn.testing.check_vjp(layer, square_transposed, x, raise_exception=False)
    assert report.example == "Linear(in_features=5, out_features=5, bias=False) with x of shape (3, 5), float64"
    assert "It equals the right gradient transposed" in str(report)


# -- the swap table ------------------------------------------------------------------------------------------
def test_swaps_nest_end_in_any_order_and_end_once() -> None:
    changed: list[type] = []
    swaps: Swaps[str] = Swaps(changed.append)
    end_a = swaps.push(int, "a")
    end_b = swaps.push(int, "b")
    assert swaps.current == {int: "b"}
    end_a()
    assert swaps.current == {int: "b"}
    end_a()  # a second end is a no-op
    end_b()
    assert swaps.current == {} and changed == [int, int, int, int]
