"""Losses: finite differences, PyTorch parity, per-sample identities, worked examples, error messages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from nablanet.layers.softmax import log_softmax, softmax
from nablanet.losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    KLDivLoss,
    Loss,
    MSELoss,
    NLLLoss,
    QuadraticLoss,
)

N, C, D = 5, 4, 3
W4 = np.array([0.5, 2.0, 1.0, 1.5])  # class weights for C = 4
POS4 = np.array([3.0, 0.5, 1.0, 2.0])

Data = Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]


# -- data ---------------------------------------------------------------------------------------------
def _indices(rng: np.random.Generator, shape: tuple[int, ...], n_ignored: int = 0, ignore: int = -100) -> np.ndarray:
    y = rng.integers(0, C, size=shape)
    flat = y.reshape(-1)
    flat[rng.choice(flat.size, size=n_ignored, replace=False)] = ignore
    return y


def _probs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return softmax(rng.normal(size=shape), axis=1)


def logits_indices(shape: tuple[int, ...], n_ignored: int = 0, ignore: int = -100) -> Data:
    return lambda rng: (rng.normal(scale=2.0, size=shape), _indices(rng, (shape[0], *shape[2:]), n_ignored, ignore))


def logits_probs(shape: tuple[int, ...]) -> Data:
    return lambda rng: (rng.normal(scale=2.0, size=shape), _probs(rng, shape))


def logprobs_indices(shape: tuple[int, ...], n_ignored: int = 0) -> Data:
    def make(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return log_softmax(rng.normal(size=shape), axis=1), _indices(rng, (shape[0], *shape[2:]), n_ignored)

    return make


def regression(shape: tuple[int, ...]) -> Data:
    return lambda rng: (rng.normal(size=shape), rng.normal(size=shape))


def probabilities_soft(shape: tuple[int, ...]) -> Data:
    return lambda rng: (rng.uniform(0.1, 0.9, size=shape), rng.uniform(0.0, 1.0, size=shape))


def logits_binary(shape: tuple[int, ...]) -> Data:
    return lambda rng: (rng.normal(scale=3.0, size=shape), rng.integers(0, 2, size=shape).astype(np.float64))


def kl_data(log_target: bool) -> Data:
    def make(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        t = _probs(rng, (N, C))
        t[0, 1] = 0.0  # 0 · log 0 = 0 must hold
        t /= t.sum(axis=1, keepdims=True)
        x = log_softmax(rng.normal(size=(N, C)), axis=1)
        return x, (np.log(_probs(rng, (N, C))) if log_target else t)

    return make


@dataclass(frozen=True)
class Case:
    id: str
    cls: type[Loss]
    data: Data
    kwargs: dict[str, Any] = field(default_factory=dict)
    reductions: tuple[str, ...] = ("mean", "sum", "none")
    # False where ℓₙ is not the loss of sample n alone (class weights or ignored targets rescale it)
    singleton: bool = True


CASES = [
    Case("mse", MSELoss, regression((N, C))),
    Case("mse_kdim", MSELoss, regression((N, C, D))),
    Case("quadratic", QuadraticLoss, regression((N, C))),
    Case("quadratic_kdim", QuadraticLoss, regression((N, C, D))),
    Case("ce", CrossEntropyLoss, logits_indices((N, C))),
    Case("ce_weight", CrossEntropyLoss, logits_indices((N, C)), {"weight": W4}, singleton=False),
    Case("ce_ignore", CrossEntropyLoss, logits_indices((N, C), n_ignored=2), singleton=False),
    Case("ce_ignore_1", CrossEntropyLoss, logits_indices((N, C), 2, ignore=1), {"ignore_index": 1}, singleton=False),
    Case("ce_smooth", CrossEntropyLoss, logits_indices((N, C)), {"label_smoothing": 0.2}),
    Case("ce_smooth_ignore", CrossEntropyLoss, logits_indices((N, C), 2), {"label_smoothing": 0.3}, singleton=False),
    Case(
        "ce_smooth_weight_ignore",
        CrossEntropyLoss,
        logits_indices((N, C), 2),
        {"weight": W4, "label_smoothing": 0.3},
        singleton=False,
    ),
    Case("ce_prob", CrossEntropyLoss, logits_probs((N, C))),
    Case("ce_prob_weight_smooth", CrossEntropyLoss, logits_probs((N, C)), {"weight": W4, "label_smoothing": 0.25}),
    Case(
        "ce_kdim",
        CrossEntropyLoss,
        logits_indices((N, C, D), 4),
        {"weight": W4, "label_smoothing": 0.1},
        singleton=False,
    ),
    Case("ce_kdim_prob", CrossEntropyLoss, logits_probs((N, C, D)), {"label_smoothing": 0.1}),
    Case("nll", NLLLoss, logprobs_indices((N, C))),
    Case("nll_weight_ignore", NLLLoss, logprobs_indices((N, C), 2), {"weight": W4}, singleton=False),
    Case("nll_kdim", NLLLoss, logprobs_indices((N, C, D), 3), {"weight": W4}, singleton=False),
    Case("bce", BCELoss, probabilities_soft((N, C))),
    Case("bce_weight", BCELoss, probabilities_soft((N, C)), {"weight": W4}),
    Case("bce_logits", BCEWithLogitsLoss, logits_binary((N, C))),
    Case("bce_logits_weight_pos", BCEWithLogitsLoss, logits_binary((N, C)), {"weight": W4, "pos_weight": POS4}),
    Case("bce_logits_kdim_pos", BCEWithLogitsLoss, logits_binary((N, D, C)), {"pos_weight": POS4}),
    Case("kl", KLDivLoss, kl_data(False), reductions=("mean", "batchmean", "sum", "none")),
    Case("kl_log_target", KLDivLoss, kl_data(True), {"log_target": True}, ("mean", "batchmean", "sum", "none")),
]
CASE_REDUCTIONS = [pytest.param(c, r, id=f"{c.id}-{r}") for c in CASES for r in c.reductions]


def _rel(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _objective(loss: Loss, x: np.ndarray, y: np.ndarray, dvalue: np.ndarray | None) -> float:
    """The scalar whose input gradient ``loss.vjp(cache, dvalue)`` returns."""
    value, _ = loss.forward(x, y)
    return float(np.sum(np.asarray(value) * dvalue)) if dvalue is not None else float(value)


# -- 1. central finite differences ------------------------------------------------------------------
@pytest.mark.parametrize(("case", "reduction"), CASE_REDUCTIONS)
def test_vjp_matches_central_differences(case: Case, reduction: str) -> None:
    rng = np.random.default_rng(0)
    x, y = case.data(rng)
    loss = case.cls(reduction=reduction, **case.kwargs)
    value, cache = loss.forward(x, y)
    dvalue = rng.normal(size=np.shape(value)) if reduction == "none" else None
    grad = loss.vjp(cache, dvalue)
    assert grad.shape == x.shape and grad.dtype == np.float64
    h = 1e-5
    numeric = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        numeric[i] = (_objective(loss, xp, y, dvalue) - _objective(loss, xm, y, dvalue)) / (2 * h)
    assert _rel(grad, numeric) <= 1e-6


# -- 2. PyTorch parity ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def torch() -> Any:
    return pytest.importorskip("torch")


def _torch_loss(torch: Any, case: Case, reduction: str, dtype: Any) -> Callable[[Any, Any], Any]:
    if case.cls is QuadraticLoss:  # no PyTorch class: ½‖y − d‖² written out, mean over the batch only

        def quadratic(x: Any, d: Any) -> Any:
            terms = 0.5 * (x - d) ** 2
            return {"mean": terms.sum() / x.shape[0], "sum": terms.sum(), "none": terms}[reduction]

        return quadratic
    kw = {k: torch.tensor(v, dtype=dtype) if isinstance(v, np.ndarray) else v for k, v in case.kwargs.items()}
    module: Callable[[Any, Any], Any] = getattr(torch.nn, case.cls.__name__)(reduction=reduction, **kw)
    return module


def _torch_value_grad(
    torch: Any, case: Case, reduction: str, x: np.ndarray, y: np.ndarray, dvalue: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    dtype = torch.float64 if x.dtype == np.float64 else torch.float32
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.from_numpy(y) if y.dtype.kind in "iu" else torch.tensor(y, dtype=dtype)
    value = _torch_loss(torch, case, reduction, dtype)(xt, yt)
    (value if dvalue is None else (value * torch.tensor(dvalue, dtype=dtype)).sum()).backward()
    return value.detach().numpy(), xt.grad.numpy()


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch warns that KLDivLoss "mean" is not the true KL
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("case", "reduction"), CASE_REDUCTIONS)
def test_matches_pytorch(torch: Any, case: Case, reduction: str, dtype: Any) -> None:
    rng = np.random.default_rng(1)
    x, y = case.data(rng)
    x = x.astype(dtype)
    y = y if y.dtype.kind in "iu" else y.astype(dtype)
    loss = case.cls(reduction=reduction, **case.kwargs)
    value, cache = loss.forward(x, y)
    dvalue = rng.normal(size=np.shape(value)).astype(dtype) if reduction == "none" else None
    grad = loss.vjp(cache, dvalue)
    ref_value, ref_grad = _torch_value_grad(torch, case, reduction, x, y, dvalue)
    tol = 1e-10 if dtype == np.float64 else 1e-5
    assert grad.dtype == dtype
    assert np.shape(value) == ref_value.shape
    assert _rel(value, ref_value) <= tol
    assert _rel(grad, ref_grad) <= tol


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_all_targets_ignored_gives_nan_and_zero_gradient_like_pytorch(torch: Any, label_smoothing: float) -> None:
    x = np.random.default_rng(2).normal(size=(3, C))
    y = np.full(3, -100)
    loss = CrossEntropyLoss(label_smoothing=label_smoothing)
    value, cache = loss.forward(x, y)
    ref_value, ref_grad = _torch_value_grad(
        torch,
        Case("", CrossEntropyLoss, logits_indices((3, C)), {"label_smoothing": label_smoothing}),
        "mean",
        x,
        y,
        None,
    )
    assert np.isnan(value) and np.isnan(ref_value)
    np.testing.assert_array_equal(loss.vjp(cache), ref_grad)


# -- 3. CE ∘ softmax ----------------------------------------------------------------------------------
def test_cross_entropy_gradient_is_softmax_minus_target() -> None:
    rng = np.random.default_rng(3)
    z, q = rng.normal(scale=5.0, size=(6, 7)), _probs(rng, (6, 7))
    loss = CrossEntropyLoss(reduction="sum")
    _, cache = loss.forward(z, q)
    np.testing.assert_allclose(loss.vjp(cache), softmax(z, axis=1) - q, rtol=0, atol=1e-12)


def test_cross_entropy_is_stable_for_saturated_logits() -> None:
    z = np.array([[1000.0, -1000.0, 0.0]])
    loss = CrossEntropyLoss(reduction="sum")
    value, cache = loss.forward(z, np.array([1]))
    assert value == pytest.approx(2000.0)
    np.testing.assert_allclose(loss.vjp(cache), [[1.0, -1.0, 0.0]], atol=1e-300)


# -- 4. per-sample values and gradients ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "reduction"),
    [pytest.param(c, r, id=f"{c.id}-{r}") for c in CASES for r in c.reductions if r != "none"],
)
def test_per_sample_identities(case: Case, reduction: str) -> None:
    x, y = case.data(np.random.default_rng(4))
    loss = case.cls(reduction=reduction, **case.kwargs)
    value, cache = loss.forward(x, y)
    per = loss.per_sample(cache)
    assert per.shape == (N,)
    assert float(per.sum() if reduction == "sum" else per.mean()) == pytest.approx(value, rel=1e-12)
    per_grad = loss.per_sample_vjp(cache)
    # The batch gradient is the mean (or sum) of the per-sample gradients ∂ℓₙ/∂x, each nonzero in row n only.
    batch_grad = loss.vjp(cache)
    np.testing.assert_allclose(batch_grad, per_grad if reduction == "sum" else per_grad / N, rtol=1e-12, atol=0)
    if case.singleton:
        for n in range(N):
            alone, alone_cache = loss.forward(x[n : n + 1], y[n : n + 1])
            assert per[n] == pytest.approx(alone, rel=1e-12)
            np.testing.assert_allclose(per_grad[n : n + 1], loss.vjp(alone_cache), rtol=1e-12, atol=1e-15)


# -- worked examples -----------------------------------------------------------------------------------
def test_quadratic_loss_worked_example() -> None:
    y = np.array([[1.0, 2.0], [3.0, 4.0]])
    d = np.array([[0.0, 0.0], [3.0, 2.0]])
    loss = QuadraticLoss()
    value, cache = loss.forward(y, d)
    # sample 0: ½(1² + 2²) = 2.5;  sample 1: ½(0² + 2²) = 2.0;  mean over N = 2: 2.25 (MSE would give 1.125)
    assert value == pytest.approx(2.25)
    np.testing.assert_allclose(loss.per_sample(cache), [2.5, 2.0])
    # ∂L/∂y = (y − d)/N = [[1, 2], [0, 2]] / 2
    np.testing.assert_allclose(loss.vjp(cache), [[0.5, 1.0], [0.0, 1.0]])


def test_cross_entropy_worked_example() -> None:
    # logits [0, ln 3] → softmax [1/4, 3/4]; target class 1 → loss −ln(3/4) = ln(4/3)
    z = np.array([[0.0, np.log(3.0)]])
    loss = CrossEntropyLoss()
    value, cache = loss.forward(z, np.array([1]))
    assert value == pytest.approx(np.log(4 / 3))
    # softmax − onehot = [1/4 − 0, 3/4 − 1]
    np.testing.assert_allclose(loss.vjp(cache), [[0.25, -0.25]])
    # with ε = 0.5: r = 0.5·onehot + 0.25 = [0.25, 0.75]; loss = −0.25 ln ¼ − 0.75 ln ¾
    smooth = CrossEntropyLoss(label_smoothing=0.5)
    assert smooth(z, np.array([1])) == pytest.approx(-0.25 * np.log(0.25) - 0.75 * np.log(0.75))


def test_integral_float_index_targets_are_accepted() -> None:
    x = np.random.default_rng(5).normal(size=(3, C))
    loss = CrossEntropyLoss()
    assert loss(x, np.array([0.0, 3.0, 2.0])) == loss(x, np.array([0, 3, 2]))


def test_kl_zero_target_contributes_nothing() -> None:
    x = np.log(np.array([[0.5, 0.5]]))
    assert KLDivLoss(reduction="sum")(x, np.array([[1.0, 0.0]])) == pytest.approx(np.log(2.0))


# -- 6. BCELoss log clamp ------------------------------------------------------------------------------
def test_bce_clamps_log_at_the_boundaries_like_pytorch(torch: Any) -> None:
    x = np.array([[0.0, 1.0, 0.0, 1.0, 0.3]])
    y = np.array([[0.0, 0.0, 1.0, 1.0, 0.6]])
    for reduction in ("mean", "none"):
        loss = BCELoss(reduction=reduction)
        value, cache = loss.forward(x, y)
        grad = loss.vjp(cache)
        assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
        case = Case("", BCELoss, probabilities_soft((1, 5)))
        dvalue = np.ones(x.shape) if reduction == "none" else None
        ref_value, ref_grad = _torch_value_grad(torch, case, reduction, x, y, dvalue)
        np.testing.assert_allclose(value, ref_value, rtol=1e-12)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-12)
    # x = 0 with y = 1: −log 0 clamped to 100
    assert BCELoss(reduction="sum")(np.array([[0.0]]), np.array([[1.0]])) == pytest.approx(100.0)


# -- 5. errors -----------------------------------------------------------------------------------------
X = np.zeros((2, 3))


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        pytest.param(
            lambda: CrossEntropyLoss()(X, np.array([0, 5])),
            ValueError,
            r"class index 5 .*ignore_index=-100",
            id="ce-index-out-of-range",
        ),
        pytest.param(
            lambda: CrossEntropyLoss()(X, np.array([0, -1])),
            ValueError,
            r"class index -1 .*expected indices in \[0, 3\)",
            id="ce-negative-index",
        ),
        pytest.param(
            lambda: NLLLoss(ignore_index=0)(X, np.array([0, 3])),
            ValueError,
            r"class index 3",
            id="nll-index-out-of-range-with-ignore-index",
        ),
        pytest.param(
            lambda: CrossEntropyLoss()(X, np.zeros((2, 2))),
            ValueError,
            r"expected class indices of shape \(2,\)",
            id="ce-target-shape",
        ),
        pytest.param(
            lambda: CrossEntropyLoss()(np.zeros((2, 3, 4)), np.zeros((2, 3))),
            ValueError,
            r"shape \(2, 4\)",
            id="ce-kdim-target-shape",
        ),
        pytest.param(
            lambda: NLLLoss()(X, np.zeros((2, 3))),
            ValueError,
            r"shape \(2,\) .*use CrossEntropyLoss",
            id="nll-probability-target",
        ),
        pytest.param(
            lambda: CrossEntropyLoss()(X, np.array([0.5, 1.0])),
            ValueError,
            r"fractional value",
            id="ce-fractional-index",
        ),
        pytest.param(
            lambda: CrossEntropyLoss(weight=np.ones(4))(X, np.array([0, 1])),
            ValueError,
            r"weight with 4 entries",
            id="ce-weight-length",
        ),
        pytest.param(
            lambda: NLLLoss(weight=np.ones((3, 1))),
            ValueError,
            r"expected a 1-D array with one rescaling weight",
            id="nll-weight-2d",
        ),
        pytest.param(
            lambda: CrossEntropyLoss()(np.zeros(3), np.array([0])), ValueError, r"add a batch axis", id="ce-1d-input"
        ),
        pytest.param(
            lambda: CrossEntropyLoss(label_smoothing=1.5),
            ValueError,
            r"label_smoothing=1.5.*\[0.0, 1.0\]",
            id="ce-label-smoothing-range",
        ),
        pytest.param(
            lambda: CrossEntropyLoss(label_smoothing="0.1"),  # type: ignore[arg-type]
            TypeError,
            r"label_smoothing='0.1'",
            id="ce-label-smoothing-type",
        ),
        pytest.param(
            lambda: CrossEntropyLoss(ignore_index=None),  # type: ignore[arg-type]
            TypeError,
            r"ignore_index=None.*expected an int",
            id="ce-ignore-index-type",
        ),
        pytest.param(
            lambda: CrossEntropyLoss(reduction="avg"),
            ValueError,
            r"reduction='avg'.*expected one of",
            id="ce-reduction",
        ),
        pytest.param(
            lambda: MSELoss(reduction="batchmean"),
            ValueError,
            r"reduction='batchmean'.*expected one of",
            id="mse-reduction-batchmean",
        ),
        pytest.param(lambda: KLDivLoss(reduction="avg"), ValueError, r"'batchmean'", id="kl-reduction"),
        pytest.param(
            lambda: MSELoss()(np.array([["a", "b"]]), np.zeros((1, 2))),
            TypeError,
            r"input has dtype <U1",
            id="mse-input-non-numeric",
        ),
        pytest.param(
            lambda: CrossEntropyLoss()(X, np.array(["a", "b"])),
            TypeError,
            r"target has dtype <U1",
            id="ce-target-non-numeric",
        ),
        pytest.param(
            lambda: MSELoss()(np.array([[1.0, np.nan]]), np.zeros((1, 2))),
            ValueError,
            r"input contains 1 NaN/inf",
            id="mse-input-nan",
        ),
        pytest.param(
            lambda: CrossEntropyLoss()(np.array([[np.inf, 0.0]]), np.array([0])),
            ValueError,
            r"NaN/inf",
            id="ce-input-inf",
        ),
        pytest.param(
            lambda: CrossEntropyLoss()(X, np.full((2, 3), np.nan)),
            ValueError,
            r"target contains 6 NaN/inf",
            id="ce-target-nan",
        ),
        pytest.param(lambda: MSELoss()(X, np.zeros((2, 4))), ValueError, r"they must be equal", id="mse-target-shape"),
        pytest.param(
            lambda: BCELoss()(np.array([[0.5, 1.2]]), np.zeros((1, 2))),
            ValueError,
            r"outside \[0, 1\].*Sigmoid",
            id="bce-input-range",
        ),
        pytest.param(
            lambda: BCELoss(weight=np.ones(4))(np.full((2, 3), 0.5), X),
            ValueError,
            r"weight.shape=\(4,\).*broadcast",
            id="bce-weight-broadcast",
        ),
        pytest.param(
            lambda: BCEWithLogitsLoss(pos_weight=np.ones(2))(X, X),
            ValueError,
            r"pos_weight.shape=\(2,\)",
            id="bce-logits-pos-weight-broadcast",
        ),
        pytest.param(
            lambda: KLDivLoss()(X, np.array([[0.5, -0.5, 1.0], [1, 0, 0]])),
            ValueError,
            r"negative target",
            id="kl-negative-target",
        ),
        pytest.param(lambda: KLDivLoss(log_target="yes"), TypeError, r"log_target='yes'", id="kl-log-target-type"),  # type: ignore[arg-type]
    ],
)
def test_error_messages(make: Callable[[], Any], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        make()


def test_vjp_none_rejects_cotangent_of_wrong_shape() -> None:
    loss = MSELoss(reduction="none")
    _, cache = loss.forward(X, X)
    with pytest.raises(ValueError, match=r"needs dvalue.shape=\(2, 3\)"):
        loss.vjp(cache, np.ones(3))


def test_cross_entropy_plain_path_equals_the_general_one() -> None:
    # (N, C) logits with plain class indices take a shortcut; weight=ones takes the general path.
    z = np.random.default_rng(0).standard_normal((6, 4))
    y = np.array([0, 3, 1, 1, 2, 0])
    for reduction in ("mean", "sum", "none"):
        plain, general = CrossEntropyLoss(reduction=reduction), CrossEntropyLoss(np.ones(4), reduction=reduction)
        (v1, c1), (v2, c2) = plain.forward(z, y), general.forward(z, y)
        np.testing.assert_allclose(v1, v2, rtol=1e-15)
        np.testing.assert_allclose(plain.vjp(c1), general.vjp(c2), rtol=1e-15, atol=1e-17)
        np.testing.assert_allclose(plain.per_sample(c1), general.per_sample(c2), rtol=1e-15)
