"""nablanet.info: the identities of the notes' Appendix A and §2 to float precision, agreement with the
losses, the VJPs against central differences, Huffman and block codes (prefix property, round trips,
Shannon's bound), and the error messages."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import numeric_grad, rel_err

import nablanet as nn
from nablanet.info import measures
from nablanet.layers.softmax import softmax

info = nn.info
BASES = [2, math.e, 10, 0.5, 3.7]


def dirichlet(rng: np.random.Generator, shape: tuple[int, ...], axis: int = -1) -> np.ndarray:
    """Random distributions along ``axis``, every entry > 0."""
    g = rng.gamma(2.0, size=shape) + 0.1  # entries ≳ 0.02: central differences stay accurate to ~1e-9
    return g / g.sum(axis=axis, keepdims=True)


# -- the identities ------------------------------------------------------------------------------------------
def test_binary_entropy_identities() -> None:
    q = np.linspace(0, 1, 101)
    h = info.binary_entropy(q)
    assert info.binary_entropy(0.5) == 1.0  # exactly one bit
    assert info.binary_entropy(0.5, base=math.e) == pytest.approx(math.log(2), rel=1e-15)
    assert h[0] == 0.0 and h[-1] == 0.0 and not np.signbit(h[[0, -1]]).any()  # +0.0: nothing to send
    np.testing.assert_allclose(h, info.binary_entropy(1 - q), rtol=1e-14, atol=1e-16)  # H(q) = H(1 − q)
    np.testing.assert_allclose(h, h[::-1], rtol=1e-14, atol=1e-16)
    assert np.all(h[1:-1] > 0) and np.all(h <= 1.0) and np.argmax(h) == 50
    # the textbook formula, for one interior value written out: H(¼) = ¼·2 + ¾·log₂(4/3)
    assert info.binary_entropy(0.25) == pytest.approx(0.5 + 0.75 * math.log2(4 / 3), rel=1e-15)


def test_categorical_entropy_and_bases() -> None:
    assert info.entropy(np.full(8, 1 / 8)) == 3.0  # log₂ k for k equally likely outcomes
    assert info.entropy([0.0, 1.0, 0.0]) == 0.0 and not np.signbit(info.entropy([0.0, 1.0, 0.0]))
    q = dirichlet(np.random.default_rng(0), (5, 4))
    bits = info.entropy(q)
    assert bits.shape == (5,)
    for base in BASES:  # log_b x = log₂ x / log₂ b
        np.testing.assert_allclose(info.entropy(q, base=base), bits / math.log2(base), rtol=1e-14)
    np.testing.assert_allclose(info.entropy(q.T, axis=0), bits, rtol=1e-15)
    # the binary form is the categorical one on (1 − q, q)
    b = np.array([0.1, 0.3, 0.9])
    np.testing.assert_allclose(info.binary_entropy(b), info.entropy(np.stack([1 - b, b], axis=-1)), rtol=1e-15)


def test_cross_entropy_bounds_entropy_with_equality_iff_p_equals_q() -> None:
    rng = np.random.default_rng(1)
    q, p = dirichlet(rng, (20, 5)), dirichlet(rng, (20, 5))
    h_q, h_qp, kl = info.entropy(q), info.cross_entropy(q=q, p=p), info.kl_divergence(q=q, p=p)
    assert np.all(h_qp > h_q) and np.all(kl > 0)  # Gibbs' inequality, strict for p ≠ q
    np.testing.assert_allclose(kl, h_qp - h_q, rtol=1e-12, atol=1e-15)  # KL = H(q, p) − H(q)
    assert np.array_equal(info.cross_entropy(q=q, p=q), h_q)  # equality at p = q, exactly
    assert np.array_equal(info.kl_divergence(q=q, p=q), np.zeros(20))
    assert not np.allclose(info.cross_entropy(q=q, p=p), info.cross_entropy(q=p, p=q))  # not symmetric
    # a one-hot q: H(q) = 0, so cross entropy and KL are both −log p_y
    onehot = np.eye(5)[[0, 3, 4]]
    expected = -np.log2(p[:3][onehot.astype(bool)])
    np.testing.assert_allclose(info.cross_entropy(q=onehot, p=p[:3]), expected, rtol=1e-15)
    np.testing.assert_allclose(info.kl_divergence(q=onehot, p=p[:3]), expected, rtol=1e-14)
    # a binary source: the same inequalities
    bq, bp = np.array([0.1, 0.5, 0.7]), np.array([0.3, 0.2, 0.7])
    bkl = info.binary_kl_divergence(q=bq, p=bp)
    np.testing.assert_allclose(bkl, info.binary_cross_entropy(q=bq, p=bp) - info.binary_entropy(bq), atol=1e-15)
    assert bkl[0] > 0 and bkl[1] > 0 and bkl[2] == 0.0


def test_zero_log_zero_is_zero_and_a_missing_word_costs_infinity() -> None:
    q, p = np.array([0.5, 0.5, 0.0]), np.array([0.5, 0.0, 0.5])
    assert info.cross_entropy(q=p, p=q) == info.cross_entropy(q=[0.5, 0.0, 0.5], p=[0.5, 0.5, 0.0])
    assert info.cross_entropy(q=q, p=p) == math.inf and info.kl_divergence(q=q, p=p) == math.inf
    assert info.cross_entropy(q=q, p=[0.5, 0.5, 0.0]) == 1.0  # q₃ = 0: the 0 · log 0 term adds nothing
    assert info.kl_divergence(q=[1.0, 0.0], p=[0.25, 0.75]) == pytest.approx(2.0, rel=1e-15)


def test_two_class_loss_curves_meet_at_one_bit_and_are_unbounded() -> None:
    p = np.linspace(0, 1, 65)
    ones, zeros = np.ones_like(p), np.zeros_like(p)
    loss_1, loss_0 = info.binary_cross_entropy(q=ones, p=p), info.binary_cross_entropy(q=zeros, p=p)
    np.testing.assert_allclose(loss_1, info.binary_cross_entropy(q=zeros, p=1 - p), rtol=1e-15)  # ℓ(1, p) = ℓ(0, 1 − p)
    np.testing.assert_allclose(loss_1, loss_0[::-1], rtol=1e-15)
    assert loss_1[32] == loss_0[32] == 1.0  # they meet at p = ½, at −log₂ ½ = 1 bit
    assert loss_1[-1] == 0.0 and loss_0[0] == 0.0  # a certain, correct prediction costs nothing
    assert loss_1[0] == math.inf and loss_0[-1] == math.inf
    k = np.arange(1, 60)  # ℓ(1, 2⁻ᵏ) = k bits: unbounded as p → 0
    assert np.array_equal(info.binary_cross_entropy(q=np.ones(59), p=2.0 ** -k), k.astype(float))
    assert np.all(np.diff(loss_1[1:]) < 0) and np.all(np.diff(loss_0[:-1]) > 0)


def test_agrees_with_the_losses_in_nats() -> None:
    rng = np.random.default_rng(2)
    z, y = rng.standard_normal((6, 4)) * 2, rng.integers(0, 4, 6)
    p, onehot, soft = softmax(z, axis=1), np.eye(4)[y], dirichlet(rng, (6, 4))
    ce = nn.CrossEntropyLoss(reduction="none")
    np.testing.assert_allclose(info.cross_entropy(q=onehot, p=p, base=math.e), ce(z, y), rtol=1e-13)
    np.testing.assert_allclose(info.cross_entropy(q=soft, p=p, base=math.e), ce(z, soft), rtol=1e-13)
    kl_terms = nn.KLDivLoss(reduction="none")(np.log(p), soft)
    np.testing.assert_allclose(info.kl_divergence(q=soft, p=p, base=math.e), kl_terms.sum(axis=1), rtol=1e-12)
    pb, yb = rng.uniform(0.01, 0.99, (6, 3)), rng.uniform(0, 1, (6, 3))
    bce = nn.BCELoss(reduction="none")
    np.testing.assert_allclose(info.binary_cross_entropy(q=yb, p=pb, base=math.e), bce(pb, yb), rtol=1e-13)
    # the VJP in p is BCELoss's gradient (x − y)/(x(1 − x))
    _, cache = nn.BCELoss(reduction="sum").forward(pb, yb)
    _, dp = info.binary_cross_entropy_vjp(np.ones((6, 3)), q=yb, p=pb, base=math.e)
    np.testing.assert_allclose(dp, nn.BCELoss(reduction="sum").vjp(cache), rtol=1e-13)


# -- VJPs against central differences (float64) ------------------------------------------------------------
CATEGORICAL = {  # name: (core formula, public forward, public VJP, the arguments it differentiates)
    "entropy": (measures._entropy, info.entropy, info.entropy_vjp, ("q",)),
    "cross_entropy": (measures._cross_entropy, info.cross_entropy, info.cross_entropy_vjp, ("q", "p")),
    "kl_divergence": (measures._kl_divergence, info.kl_divergence, info.kl_divergence_vjp, ("q", "p")),
}


def _call(fn: Callable[..., Any], args: dict[str, np.ndarray], **kw: Any) -> Any:
    return fn(args["q"], **kw) if len(args) == 1 else fn(q=args["q"], p=args["p"], **kw)


@pytest.mark.parametrize("name", CATEGORICAL)
@pytest.mark.parametrize(("base", "axis"), [(2, -1), (math.e, 0), (10, 1), (0.5, -1)])
def test_categorical_vjps_match_central_differences(name: str, base: float, axis: int) -> None:
    """All entries: differences of the formula Σ dh ⊙ H (defined off the simplex too) against the VJP;
    along the simplex: differences of the public function along directions v with Σ v = 0."""
    core, forward, vjp, names = CATEGORICAL[name]
    rng = np.random.default_rng(3)
    args = {n: dirichlet(rng, (3, 4), axis=axis) for n in names}
    dh = rng.standard_normal(np.delete(np.array([3, 4]), axis))
    grads = vjp(dh, **args, base=base, axis=axis) if len(names) == 2 else (vjp(dh, args["q"], base=base, axis=axis),)
    ax = axis % 2
    for n, g in zip(names, grads, strict=True):
        fd = numeric_grad(lambda: float((dh * core(*[args[k] for k in names], base, ax)).sum()), args[n])
        assert rel_err(g, fd) < 1e-8, (name, n)
        v = rng.standard_normal(args[n].shape)
        v -= v.mean(axis=axis, keepdims=True)
        eps, at = 1e-6, args[n].copy()
        values = []
        for s in (eps, -eps):
            args[n] = at + s * v
            values.append(float((dh * _call(forward, args, base=base, axis=axis)).sum()))
        args[n] = at
        assert (values[0] - values[1]) / (2 * eps) == pytest.approx(float((g * v).sum()), rel=1e-7)


BINARY = {
    "binary_entropy": (info.binary_entropy, info.binary_entropy_vjp, ("q",)),
    "binary_cross_entropy": (info.binary_cross_entropy, info.binary_cross_entropy_vjp, ("q", "p")),
    "binary_kl_divergence": (info.binary_kl_divergence, info.binary_kl_divergence_vjp, ("q", "p")),
}


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("base", [2, math.e, 3.7])
def test_binary_vjps_match_central_differences(name: str, base: float) -> None:
    forward, vjp, names = BINARY[name]
    rng = np.random.default_rng(4)
    args = {n: rng.uniform(0.05, 0.95, (2, 3)) for n in names}
    dh = rng.standard_normal((2, 3))
    grads = vjp(dh, **args, base=base) if len(names) == 2 else (vjp(dh, args["q"], base=base),)
    for n, g in zip(names, grads, strict=True):
        fd = numeric_grad(lambda: float((dh * _call(forward, args, base=base)).sum()), args[n])
        assert rel_err(g, fd) < 1e-8, (name, n)
    closed = {"binary_entropy": [dh * np.log((1 - args["q"]) / args["q"]) / math.log(base)]}
    if name in closed:  # the docstring's closed form
        np.testing.assert_allclose(grads[0], closed[name][0], rtol=1e-12)


# -- Huffman codes ---------------------------------------------------------------------------------------------
def is_prefix_free(code: dict[Any, str]) -> bool:
    """No codeword is a proper prefix of another, and no two are equal (checked without sorting)."""
    words = list(code.values())
    prefixes = {w[:k] for w in words for k in range(1, len(w))}
    return len(set(words)) == len(words) and not prefixes & set(words)


def test_huffman_worked_example_and_tie_breaking() -> None:
    # dyadic probabilities: the codeword lengths are −log₂ p, and L = H = ½·1 + ¼·2 + 2·⅛·3 = 1.75 bits
    probs = {"a": 0.5, "b": 0.25, "c": 0.125, "d": 0.125}
    code = info.huffman_code(probs)
    assert code == {"a": "0", "b": "10", "c": "110", "d": "111"}
    assert info.expected_length(code, probs) == 1.75 == info.entropy(list(probs.values()))
    # ties go to the older node: four equal symbols in the order given, then the two joined pairs
    assert info.huffman_code([0.25] * 4) == {0: "00", 1: "01", 2: "10", 3: "11"}
    assert info.huffman_code({"x": 1.0}) == {"x": "0"}  # one symbol still needs a bit
    assert info.huffman_code([0.2, 0.8]) == {0: "0", 1: "1"}
    assert info.huffman_code([0.0, 0.5, 0.5]) == {0: "10", 1: "11", 2: "0"}  # p = 0 still gets a word


def test_huffman_codes_are_prefix_free_and_within_one_bit_of_entropy() -> None:
    rng = np.random.default_rng(5)
    for k in (2, 3, 7, 40):
        p = dirichlet(rng, (k,))
        if k > 2:  # zeros too (two symbols, one of them impossible, would cost L = 1 = H + 1 bit)
            p[rng.integers(0, k)] = 0.0
        p /= p.sum()
        code = info.huffman_code(p)
        assert is_prefix_free(code) and set(code) == set(range(k))
        assert sum(2.0 ** -len(w) for w in code.values()) == 1.0  # a full binary tree: Kraft with equality
        length, h = info.expected_length(code, p), info.entropy(p)
        shannon = float(np.dot(p, np.ceil(-np.log2(np.where(p > 0, p, 1)))))  # lengths ⌈−log₂ p⌉
        assert h <= length < h + 1 and length <= shannon + 1e-12
        symbols = rng.choice(k, size=300, p=p).tolist()
        assert info.decode(info.encode(symbols, code), code) == symbols
        assert info.huffman_code(p) == code  # deterministic


def test_block_codes_obey_shannons_bound_and_round_trip() -> None:
    for q in (0.1, 0.25, 0.5, 0.8):
        h = info.binary_entropy(q)
        stream = info.bernoulli_stream(q, 1680, rng=6)  # 1680 = lcm(1..8) · 2
        for m in range(1, 9):
            probs = info.block_probabilities(q, m)
            result = info.block_code(stream, m, p=q)
            assert is_prefix_free(result.code) and len(result.code) == 2**m
            per_symbol = result.expected_bits_per_symbol
            assert per_symbol == info.expected_length(result.code, probs) / m
            assert h - 1e-12 <= per_symbol < h + 1 / m, (q, m)  # H ≤ E[length]/m < H + 1/m
            assert result.bits_per_symbol == len(result.encoded) / 1680 and result.n_bits == 1680
            assert "".join(info.decode(result.encoded, result.code)) == "".join(map(str, stream))
        assert result.expected_bits_per_symbol < 1 or q == 0.5  # m = 8 beats one bit per symbol


def test_measured_bits_per_symbol_match_the_expected_length() -> None:
    """On a sampled stream the cost per bit is E[length]/m within five standard errors."""
    q, m, n = 0.1, 4, 40_000
    result = info.block_code(info.bernoulli_stream(q, n, rng=7), m, p=q)
    probs = info.block_probabilities(q, m)
    lengths = np.array([len(result.code[b]) for b in probs])
    mean = float(np.dot(list(probs.values()), lengths))
    se = math.sqrt(float(np.dot(list(probs.values()), (lengths - mean) ** 2)) / (n // m)) / m
    assert abs(result.bits_per_symbol - result.expected_bits_per_symbol) < 5 * se
    assert info.block_probabilities(0.5, 3) == {format(i, "03b"): 0.125 for i in range(8)}
    assert sum(info.block_probabilities(0.3, 6).values()) == pytest.approx(1.0, abs=1e-14)


def test_bernoulli_stream_is_seeded() -> None:
    a, b = info.bernoulli_stream(0.3, 500, rng=1), info.bernoulli_stream(0.3, 500, rng=np.random.default_rng(1))
    assert a.dtype == np.uint8 and np.array_equal(a, b) and set(np.unique(a)) == {0, 1}
    assert not np.array_equal(a, info.bernoulli_stream(0.3, 500, rng=2))
    assert info.to_blocks("011010", 3) == ["011", "010"] == info.to_blocks([0, 1, 1, 0, 1, 0], 3)


# -- arithmetic coding --------------------------------------------------------------------------------------
def test_arithmetic_code_worked_example() -> None:
    # a uniform table over two outcomes: each symbol is one bit, and the coder adds its two finishing bits
    # ("01": the pending bit and the bit that names a point inside the last interval)
    assert info.arithmetic_encode([0, 1, 1, 0], [0.5, 0.5]) == "0110" + "01"
    assert info.arithmetic_encode([], [0.5, 0.5]) == "01"  # no symbols: just the two
    assert info.arithmetic_encode([0, 0, 0], [1.0]) == "01"  # a certain outcome costs nothing
    np.testing.assert_array_equal(info.arithmetic_decode("01", [1.0], n=3), [0, 0, 0])
    # a quarter and three quarters: symbol 1 costs log₂(4/3) bits; ten of them 4.15 bits, + 2 → at most 6.15
    bits = info.arithmetic_encode([1] * 10, [0.25, 0.75])
    assert len(bits) == 6 and info.arithmetic_decode(bits, [0.25, 0.75], n=10).tolist() == [1] * 10


def test_arithmetic_code_round_trips_within_its_bound() -> None:
    """Per-symbol tables (a classifier's), with zeros and tiny probabilities: the decoder gives the symbols back,
    and the code spends between Σ −log₂ p(sₙ) (less a rounding of at most 1e-6 bits per symbol for p ≥ 1e-3)
    and Σ −log₂ p(sₙ) + 2 + N δ bits."""
    rng = np.random.default_rng(11)
    for k, n in ((2, 1), (3, 50), (10, 359), (10, 2000), (40, 300)):
        p = rng.dirichlet(np.full(k, 0.3), size=n)
        p[p < 1e-3] = 0.0  # impossible outcomes get no slice ...
        p /= p.sum(axis=1, keepdims=True)
        s = np.array([rng.choice(k, p=row) for row in p])  # ... and are never drawn
        bits = info.arithmetic_encode(s, p)
        np.testing.assert_array_equal(info.arithmetic_decode(bits, p), s)
        ideal = float(-np.log2(p[np.arange(n), s]).sum())
        bound = info.arithmetic_overhead_bound(n, k)
        assert ideal - 1e-6 * n <= len(bits) <= ideal + bound, (k, n, len(bits), ideal)
        assert 2 < bound < 2 + 1e-5 * n  # δ ≈ 5e-9 bits per symbol for K = 10
    tiny = np.array([1e-300, 1 - 1e-300])  # a probability far below 1/T still gets one count out of 2³²
    assert info.arithmetic_decode(info.arithmetic_encode([0, 1], tiny), tiny, n=2).tolist() == [0, 1]


def test_arithmetic_code_of_a_stream_costs_its_cross_entropy() -> None:
    """A shared table (1 − p, p) on a Bernoulli(q) stream: the bits per symbol are the stream's empirical cross
    entropy within 2/N (so ≈ H(q, p)), well under Huffman's one bit per symbol at m = 1."""
    q, n = 0.1, 20_000
    stream = info.bernoulli_stream(q, n, rng=3)
    for p in (0.1, 0.3):
        bits = info.arithmetic_encode(stream, [1 - p, p])
        np.testing.assert_array_equal(info.arithmetic_decode(bits, [1 - p, p], n=n), stream)
        ideal = float(-np.log2(np.where(stream == 1, p, 1 - p)).sum())
        assert ideal <= len(bits) <= ideal + info.arithmetic_overhead_bound(n, 2)
        assert abs(len(bits) / n - info.binary_cross_entropy(q=q, p=p)) < 0.02
    assert info.arithmetic_overhead_bound(0, 2) == 2.0


def test_float32_probabilities_are_held_to_float32s_tolerance() -> None:
    """A float32 softmax row sums to 1 only within ~1e-7: the codes take such tables (a classifier's default
    dtype), checked within √ε of float32, not of the float64 they are computed in."""
    from nablanet.layers.softmax import softmax

    rng = np.random.default_rng(0)
    p = softmax(rng.standard_normal((200, 10)).astype(np.float32) * 4, axis=1)
    assert p.dtype == np.float32 and np.abs(p.sum(axis=1, dtype=np.float64) - 1).max() > 1.5e-8
    labels = rng.integers(0, 10, 200)
    bits = nn.info.arithmetic_encode(labels, p)
    np.testing.assert_array_equal(nn.info.arithmetic_decode(bits, p), labels)
    row = np.float32([0.1, 0.2, 0.3, 0.4 + 2e-7])
    assert sorted(len(w) for w in nn.info.huffman_code(row).values()) == [1, 2, 3, 3]
    with pytest.raises(ValueError, match="sum to"):
        nn.info.huffman_code(np.float32([0.1, 0.2, 0.3, 0.41]))


def test_arithmetic_counts_keep_every_possible_outcome() -> None:
    from nablanet.info.arithmetic import _frequencies

    t = 2**info.ARITHMETIC_FREQUENCY_BITS
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.full(7, 0.2), size=500)
    p[:, 3] = 0.0
    p /= p.sum(axis=1, keepdims=True)
    f = _frequencies(p)
    assert f.dtype == np.int64 and (f.sum(axis=1) == t).all()
    assert ((f == 0) == (p == 0)).all()  # zero exactly where p is zero
    assert (f / t >= p * (1 - 8 / t)).all()  # fᵢ/T ≥ pᵢ (1 − (K + 1)/T)


# -- errors: received, expected, fix -------------------------------------------------------------------------
@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: info.entropy([0.5, -0.1, 0.6]), ValueError,
     r"q\[1\] = -0.1 \(1 of 3 entries out of range\); expected probabilities >= 0"),
    (lambda: info.entropy([[0.5, 0.6], [0.5, 0.5]]), ValueError,
     r"sum to 1.1 at index \[0\] .*\(1 of 2 distributions off\).*Fix: normalize, q = q / q.sum\(axis=1"),
    (lambda: info.cross_entropy(q=[0.5, 0.5], p=[0.2, 0.3, 0.5]), ValueError,
     r"q.shape=\(2,\) and p.shape=\(3,\); expected the same shape.*np.eye\(C\)\[y\]"),
    (lambda: info.cross_entropy(q=[0.5, 0.5], p=[0.3, 0.6]), ValueError, r"got p whose entries .* sum to 0.9"),
    (lambda: info.entropy([0.5, 0.5], base=0), ValueError, r"base=0\).*> 0 and ≠ 1.*base=2 for bits"),
    (lambda: info.entropy([0.5, 0.5], base=1), ValueError, r"base=1\)"),
    (lambda: info.kl_divergence(q=[1.0], p=[1.0], base=-2), ValueError, r"kl_divergence\(base=-2\)"),
    (lambda: info.entropy([0.5, 0.5], base="2"), TypeError, r"got str; expected a number"),
    (lambda: info.entropy([0.5, 0.5], axis=1), ValueError, r"axis=1\) got q with 1 axes; expected axis in \[-1, 0\]"),
    (lambda: info.entropy(0.3), ValueError, r"scalar q.*binary_entropy\(q\)"),
    (lambda: info.entropy([0.5, np.nan]), ValueError, r"NaN/inf"),
    (lambda: info.binary_entropy([0.2, 1.5]), ValueError, r"q\[1\] = 1.5 .*in \[0, 1\]"),
    (lambda: info.binary_cross_entropy(q=1.0, p=[0.5, 0.2]), ValueError, r"np.full_like\(p, q\)"),
    (lambda: info.entropy_vjp(1.0, [1.0, 0.0]), ValueError, r"q\[1\] = 0.0 .*derivative is infinite.*> 0"),
    (lambda: info.binary_cross_entropy_vjp(1.0, q=1.0, p=1.0), ValueError, r"strictly between 0 and 1"),
    (lambda: info.cross_entropy_vjp(np.ones(3), q=[0.5, 0.5], p=[0.5, 0.5]), ValueError,
     r"dh.shape=\(3,\); expected .* \(\)"),
    (lambda: info.huffman_code([]), ValueError, r"shape \(0,\); expected a non-empty dict"),
    (lambda: info.huffman_code({"a": 0.5, "b": 0.6}), ValueError,
     r"sum to 1.1; .*divide each probability by their total"),
    (lambda: info.block_code("0101", 17, p=0.5), ValueError, r"1 <= m <= 16 .*Fix: pass e.g. m=8"),
    (lambda: info.block_code("01010", 2, p=0.5), ValueError,
     r"5 bits; expected a positive multiple of m=2.*stream\[:4\]"),
    (lambda: info.to_blocks([0, 2, 1, 0], 2), ValueError, r"not all 0s and 1s"),
    (lambda: info.decode("0120", {"a": "0", "b": "1"}), ValueError, r"string of '0' and '1'"),
    (lambda: info.decode("0111", {"a": "0", "b": "11"}), ValueError, r"end inside a codeword \(the last 1 bits, '1'"),
    (lambda: info.decode("10", {"a": "0"}), ValueError, r"bits\[0:1\] = '1' begins no codeword"),
    (lambda: info.encode("ab", {"a": "0", "b": "01"}), ValueError, r"not a prefix code: '0' begins '01'"),
    (lambda: info.encode("abz", {"a": "0", "b": "1"}), ValueError, r"symbol 'z' at position 2 .*no codeword"),
    (lambda: info.expected_length({"a": "0"}, {"a": 0.5, "b": 0.5}), ValueError, r"symbol 'b' .*no codeword"),
    (lambda: info.bernoulli_stream(0.5, -1), ValueError, r"int n >= 0"),
    (lambda: info.arithmetic_encode([0, 1], [0.5, 0.0, 0.5]), ValueError,
     r"symbol 1 at position 1 .*probability 0 .*p = \(1 - eps\) \* p \+ eps / K"),
    (lambda: info.arithmetic_encode([0, 3], [0.5, 0.5]), ValueError, r"symbol 3 at position 1 .*K = 2 outcomes"),
    (lambda: info.arithmetic_encode([0.0, 1.0], [0.5, 0.5]), ValueError, r"dtype float64 .*int outcomes"),
    (lambda: info.arithmetic_encode([0, 1], [[0.5, 0.5]] * 3), ValueError, r"2 symbols and a table of 3 rows"),
    (lambda: info.arithmetic_encode([0], [0.5, 0.6]), ValueError, r"sum to 1.1"),
    (lambda: info.arithmetic_encode([0], [[[1.0]]]), ValueError, r"shape \(1, 1, 1\); expected one distribution"),
    (lambda: info.arithmetic_decode("0110", [0.5, 0.5]), ValueError, r"no n; .*n=len\(symbols\)"),
    (lambda: info.arithmetic_decode("01", [[0.5, 0.5]] * 2, n=3), ValueError, r"n=3\).*the table has 2 rows"),
    (lambda: info.arithmetic_decode("012", [0.5, 0.5], n=1), ValueError, r"string of '0' and '1'"),
    (lambda: info.arithmetic_overhead_bound(-1, 2), ValueError, r"n_symbols=-1\): expected an int >= 0"),
])
def test_errors_say_what_was_received_and_how_to_fix_it(call: Callable[[], Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()
