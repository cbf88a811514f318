"""Arithmetic coding: a code within a few bits of Σₙ −log₂ p(sₙ), with a model that may change per symbol.

The idea (Elias; Rissanen; Witten, Neal and Cleary 1987). A message s₁ … s_N is coded as one number in
[0, 1). Start from the interval [0, 1); for each symbol keep the slice of the current interval that the
symbol's probability assigns it, so the width shrinks by p(sₙ) to W = Πₙ p(sₙ). A binary fraction of
⌈−log₂ W⌉ + 1 bits lies inside the final interval and identifies the message, so the code spends at most

    Σₙ −log₂ p(sₙ) + 2 bits:

the cross entropy of the symbols under the model, in bits, plus two. No codeword table is needed, and
each symbol may have its own distribution (row n of a table (N, K)), such as a classifier's predicted
probabilities for sample n: the code then spends about N times the classifier's cross-entropy loss in bits.

Finite precision (what ``arithmetic_encode`` does). The interval is kept as integers low ≤ high of
b = ARITHMETIC_STATE_BITS = 64 bits. Each distribution p is rounded to integer counts fᵢ summing to
T = 2^ARITHMETIC_FREQUENCY_BITS = 2³²: with p̂ = p / Σp (a no-op for probabilities that already sum to
1 in float64) and K₊ outcomes of p̂ᵢ > 0, fᵢ = 1 + ⌊p̂ᵢ (T − K₊)⌋ where p̂ᵢ > 0 and fᵢ = 0 where
p̂ᵢ = 0, the few counts left over going to the most probable outcome; so fᵢ/T ≥ p̂ᵢ (1 − (K + 1)/T).
Symbol s with cumulative counts [cₛ, cₛ + fₛ) narrows the range R = high − low + 1 to

    low' = low + ⌊R cₛ / T⌋,   high' = low + ⌊R (cₛ + fₛ) / T⌋ − 1,

then the interval is renormalized: while it lies in one half, that half's bit is sent and the
interval doubled; while it straddles the middle within the second and third quarters, a "pending"
bit is counted (sent, opposite to the next bit sent, once the half is known) and the middle half is
doubled. After renormalizing, R > 2^(b−2) ≥ T, so every symbol with fₛ ≥ 1 keeps a non-empty slice,
and the slice's share of the range is ≥ fₛ/T − 1/R > (fₛ/T)(1 − T/2^(b−2)). The encoder finishes with
two bits (plus the pending ones) that the decoder, reading 0s past the end, places inside the final
interval. The output is then at most −log₂ W + 2 bits (the bits sent are the doublings, each of which
doubles the width, plus the two), and with the two rounding factors above,

    len(code) ≤ Σₙ −log₂ p̂ₙ(sₙ) + 2 + N δ,    δ = −log₂(1 − (K + 1)/T) − log₂(1 − T/2^(b−2)),

δ ≈ 5 × 10⁻⁹ bits per symbol for K = 10 (``arithmetic_overhead_bound`` returns 2 + N δ). The lower
side holds too: after d doublings the range is still R > 2^(b−2) of 2^(b + d), so W > 2^(−d−2) and the
code's d + 2 bits exceed −log₂ W; each slice's share is at most fₛ/T + 1/R < fₛ/T + 2^(2−b), so the code
is never shorter than Σₙ −log₂(fₙ/T + 2^(2−b)) bits, the rounded model's cost less a negligible amount.

A symbol of probability 0 has no slice: encoding one is an error (the model says it never happens,
and its cost −log₂ 0 is infinite). Decoding needs the same table and the number of symbols; it reads
bits that the encoder made with that table, and cannot tell other bits from a valid code.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np

from nablanet.info._checks import probabilities as _probabilities
from nablanet.info._checks import sums_to_one

ARITHMETIC_STATE_BITS = 64
"""b: the bits of the coder's registers low and high (Python ints, so exact)."""
ARITHMETIC_FREQUENCY_BITS = 32
"""Each distribution is rounded to integer counts summing to T = 2^32 (T ≤ 2^(b−2), so no slice is empty)."""
ARITHMETIC_MAX_OUTCOMES = 1 << 20
"""The most outcomes K a table may have: K ≪ T keeps the rounding's cost (K + 1)/T per symbol negligible."""

_FULL = 1 << ARITHMETIC_STATE_BITS
_HALF = _FULL >> 1
_QUARTER = _FULL >> 2
_T = 1 << ARITHMETIC_FREQUENCY_BITS


def arithmetic_overhead_bound(n_symbols: int, n_outcomes: int) -> float:
    """The most bits ``arithmetic_encode`` spends beyond Σₙ −log₂ p̂ₙ(sₙ) on ``n_symbols`` symbols from
    tables of ``n_outcomes`` outcomes: 2 + N δ, δ = −log₂(1 − (K + 1)/T) − log₂(1 − T/2^(b−2))
    (T = 2^ARITHMETIC_FREQUENCY_BITS, b = ARITHMETIC_STATE_BITS; the module docstring derives it).

    An exact coder's bound is 2: δ is what the integer registers and the rounded probabilities add,
    about 5e-9 bits per symbol for 10 outcomes.
    """
    for name, value, low in (("n_symbols", n_symbols, 0), ("n_outcomes", n_outcomes, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"arithmetic_overhead_bound({name}={value!r}): expected an int >= {low}. "
                             "Fix: e.g. arithmetic_overhead_bound(len(labels), n_classes).")
    if n_outcomes > ARITHMETIC_MAX_OUTCOMES:
        raise ValueError(f"arithmetic_overhead_bound(n_outcomes={n_outcomes}): expected at most "
                         f"{ARITHMETIC_MAX_OUTCOMES} outcomes (ARITHMETIC_MAX_OUTCOMES).")
    delta = -math.log2(1 - (n_outcomes + 1) / _T) - math.log2(1 - _T / _QUARTER)
    return 2.0 + int(n_symbols) * delta


def _table(probabilities: Any, who: str) -> np.ndarray:
    """The probability table as float64 (K,) or (N, K), checked: entries ≥ 0, each row summing to 1."""
    given = _probabilities(probabilities, "probabilities", who)
    p = given.astype(np.float64)
    if p.ndim not in (1, 2) or p.shape[-1] == 0 or (p.ndim == 2 and p.shape[0] == 0):
        raise ValueError(
            f"{who} got probabilities of shape {p.shape}; expected one distribution (K,) shared by every symbol, "
            "or one per symbol (N, K), with K >= 1 outcomes. Fix: e.g. [0.9, 0.1], or a classifier's softmax "
            "outputs (N, C).")
    if p.shape[-1] > ARITHMETIC_MAX_OUTCOMES:
        raise ValueError(f"{who} got {p.shape[-1]} outcomes; expected at most {ARITHMETIC_MAX_OUTCOMES} "
                         "(ARITHMETIC_MAX_OUTCOMES), so that rounding to counts out of 2^32 costs nothing visible.")
    sums_to_one(given, p.ndim - 1, "probabilities", who)  # within the tolerance of the dtype it came in
    return p


def _frequencies(p: np.ndarray) -> np.ndarray:
    """Integer counts (int64, p's shape), each row summing to T: fᵢ = 1 + ⌊p̂ᵢ (T − K₊)⌋ where p̂ᵢ > 0,
    0 where p̂ᵢ = 0, the remainder (< K₊ + 1) added to the most probable outcome (module docstring)."""
    p = p / p.sum(axis=-1, keepdims=True)
    pos = p > 0
    room = _T - pos.sum(axis=-1, keepdims=True)
    f = np.where(pos, 1 + np.floor(p * room).astype(np.int64), 0)
    # Σ⌊p̂ᵢ (T − K₊)⌋ ≤ T − K₊: the float error of p̂ᵢ (T − K₊) is far below one count for T = 2³², K ≤ 2²⁰
    top = np.expand_dims(p.argmax(axis=-1), -1)
    np.put_along_axis(f, top, np.take_along_axis(f, top, -1) + (_T - f.sum(axis=-1, keepdims=True)), -1)
    return f


def _cumulative(p: np.ndarray) -> list[Any]:
    """[0, f₀, f₀ + f₁, …, T] as Python ints: one list for a shared table, a list per row for (N, K)."""
    f = _frequencies(p)
    cum = np.concatenate([np.zeros((*f.shape[:-1], 1), dtype=np.int64), np.cumsum(f, axis=-1)], axis=-1)
    return cum.tolist()


def _symbols(symbols: Any, p: np.ndarray, who: str) -> np.ndarray:
    """``symbols`` as a 1-D int64 array of outcomes 0 … K−1, one per row of a per-symbol table."""
    s = np.asarray(symbols)
    if s.size == 0 and s.ndim == 1:  # [] is float64 to NumPy
        s = s.astype(np.int64)
    if s.dtype.kind not in "iu" or s.ndim != 1:
        raise ValueError(f"{who} got symbols of dtype {s.dtype} and shape {s.shape}; expected a 1-D sequence of "
                         "int outcomes 0 … K−1 (class labels). Fix: e.g. np.asarray(labels, dtype=int).")
    k = p.shape[-1]
    bad = np.flatnonzero((s < 0) | (s >= k))
    if bad.size:
        raise ValueError(f"{who} got symbol {int(s[bad[0]])} at position {int(bad[0])} ({bad.size} in all); the "
                         f"table has K = {k} outcomes, so symbols must lie in 0 … {k - 1}.")
    if p.ndim == 2 and p.shape[0] != s.size:
        raise ValueError(f"{who} got {s.size} symbols and a table of {p.shape[0]} rows; expected one row of "
                         "probabilities per symbol. Fix: pass probabilities[n] for symbols[n], or one shared (K,) row.")
    return s.astype(np.int64)


def arithmetic_encode(symbols: Any, probabilities: Any) -> str:
    """Arithmetic-code ``symbols`` (ints 0 … K−1) under ``probabilities``: a string of '0' and '1'.

    ``probabilities``: one distribution (K,) for every symbol, or one per symbol (N, K), e.g. a
    classifier's softmax outputs for the samples whose labels are coded. The code's length is at most
    Σₙ −log₂ pₙ(sₙ) + ``arithmetic_overhead_bound(N, K)`` bits (2 + about 5e-9 N for K = 10;
    the module docstring derives it) and at least Σₙ −log₂ of the rounded probabilities.
    A symbol whose probability is 0 cannot be coded: ValueError.
    """
    p = _table(probabilities, "arithmetic_encode")
    s = _symbols(symbols, p, "arithmetic_encode")
    rows = np.broadcast_to(p, (s.size, p.shape[-1])) if p.ndim == 1 else p
    zero = np.flatnonzero(rows[np.arange(s.size), s] == 0)
    if zero.size:
        n = int(zero[0])
        raise ValueError(
            f"arithmetic_encode: symbol {int(s[n])} at position {n} ({zero.size} such symbols) has probability 0 "
            "under its table, so no code can send it (its cost −log₂ 0 is infinite). Fix: give every outcome "
            "that can occur a probability > 0, e.g. p = (1 - eps) * p + eps / K.")
    cum = _cumulative(p)
    shared = p.ndim == 1
    low, high, pending = 0, _FULL - 1, 0
    out: list[str] = []
    for n, sym in enumerate(s.tolist()):
        c = cum if shared else cum[n]
        r = high - low + 1
        high = low + ((r * c[sym + 1]) >> ARITHMETIC_FREQUENCY_BITS) - 1
        low = low + ((r * c[sym]) >> ARITHMETIC_FREQUENCY_BITS)
        while True:
            if high < _HALF:  # in the lower half: send 0, then the pending bits as 1s
                out.append("0" + "1" * pending)
                pending = 0
            elif low >= _HALF:  # in the upper half: send 1, then the pending bits as 0s
                out.append("1" + "0" * pending)
                pending = 0
                low, high = low - _HALF, high - _HALF
            elif low >= _QUARTER and high < 3 * _QUARTER:  # around the middle: the half is not known yet
                pending += 1
                low, high = low - _QUARTER, high - _QUARTER
            else:
                break
            low, high = 2 * low, 2 * high + 1
    pending += 1  # two more bits name a point inside [low, high] (the decoder reads 0s past the end)
    out.append("0" + "1" * pending if low < _QUARTER else "1" + "0" * pending)
    return "".join(out)


def arithmetic_decode(bits: str, probabilities: Any, n: int | None = None) -> np.ndarray:
    """The ``n`` symbols that ``arithmetic_encode`` coded as ``bits`` under ``probabilities``: an (n,) int64 array.

    ``probabilities`` must be the table the encoder used; ``n`` is the number of symbols, needed with a
    shared (K,) table and taken from the rows of an (N, K) table (if given, it must equal N). Bits that
    were not made by the encoder with this table decode to some sequence without an error.
    """
    p = _table(probabilities, "arithmetic_decode")
    if not isinstance(bits, str) or set(bits) - {"0", "1"}:
        raise ValueError(f"arithmetic_decode got bits={bits!r:.60}; expected a string of '0' and '1' such as "
                         "arithmetic_encode returns.")
    if n is None and p.ndim == 1:
        raise ValueError("arithmetic_decode got one shared (K,) table and no n; expected the number of symbols "
                         "to decode. Fix: arithmetic_decode(bits, probabilities, n=len(symbols)).")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0
                          or (p.ndim == 2 and n != p.shape[0])):
        rows = f" (the table has {p.shape[0]} rows, one per symbol)" if p.ndim == 2 else ""
        raise ValueError(f"arithmetic_decode(n={n!r}): expected the number of symbols coded, an int >= 0{rows}.")
    count = int(p.shape[0] if n is None else n)
    cum = _cumulative(p)
    shared = p.ndim == 1
    value = int(bits[:ARITHMETIC_STATE_BITS].ljust(ARITHMETIC_STATE_BITS, "0"), 2)
    pos, low, high = ARITHMETIC_STATE_BITS, 0, _FULL - 1
    out = np.empty(count, dtype=np.int64)
    for i in range(count):
        c = cum if shared else cum[i]
        r = high - low + 1
        # the symbol s with ⌊R cₛ/T⌋ ≤ value − low < ⌊R cₛ₊₁/T⌋, i.e. cₛ ≤ target < cₛ₊₁
        target = (((value - low + 1) << ARITHMETIC_FREQUENCY_BITS) - 1) // r
        sym = bisect.bisect_right(c, target) - 1
        high = low + ((r * c[sym + 1]) >> ARITHMETIC_FREQUENCY_BITS) - 1
        low = low + ((r * c[sym]) >> ARITHMETIC_FREQUENCY_BITS)
        while True:
            if high < _HALF:
                pass
            elif low >= _HALF:
                low, high, value = low - _HALF, high - _HALF, value - _HALF
            elif low >= _QUARTER and high < 3 * _QUARTER:
                low, high, value = low - _QUARTER, high - _QUARTER, value - _QUARTER
            else:
                break
            bit = 1 if pos < len(bits) and bits[pos] == "1" else 0
            low, high, value, pos = 2 * low, 2 * high + 1, 2 * value + bit, pos + 1
        out[i] = sym
    return out
