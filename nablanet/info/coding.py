"""Huffman codes, and block coding of a binary stream (the source notes' Appendix A).

A code maps each symbol to a codeword, a string of '0' and '1'. A prefix code (no codeword begins
another) can be decoded without separators, left to right. Huffman's construction gives the prefix
code with the smallest expected length L = Σₛ p(s) |c(s)|, and Shannon's bound brackets it:
H(p) ≤ L < H(p) + 1 bits per symbol. Coding blocks of m source bits as single symbols spreads the
one spare bit over m of them: H(q) ≤ L_m/m < H(q) + 1/m bits per source bit for a Bernoulli(q) source.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from nablanet._random import RNGLike, get_rng
from nablanet.info._checks import probabilities as _probabilities
from nablanet.info._checks import sums_to_one

MAX_BLOCK_BITS = 16
"""The longest block ``block_code`` accepts: 2¹⁶ = 65,536 blocks, a table built in under a second;
each further bit doubles the table's size and time."""


def _table(probabilities: Any, who: str) -> tuple[list[Hashable], np.ndarray]:
    """(symbols, their probabilities as float64) from a dict {symbol: p} or a sequence (symbols 0..k−1)."""
    if isinstance(probabilities, Mapping):
        symbols, values = list(probabilities.keys()), list(probabilities.values())
    else:
        values = probabilities
        symbols = []
    given = _probabilities(values, "probabilities", who)
    p = given.astype(np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(
            f"{who} got probabilities of shape {p.shape}; expected a non-empty dict {{symbol: p}} or a 1-D "
            "sequence [p_0, ..., p_(k-1)] (the symbols are then 0..k-1). Fix: e.g. {'a': 0.5, 'b': 0.5}."
        )
    # within the tolerance of the dtype it came in (float32 softmax rows are off by ~1e-7)
    sums_to_one(given, 0, "probabilities", who, fix="divide each probability by their total")
    return (symbols if symbols else list(range(p.size))), p


def huffman_code(probabilities: Any) -> dict[Any, str]:
    """The Huffman code of a distribution: {symbol: codeword}, a prefix code of least expected length.

    ``probabilities`` is a dict {symbol: p} or a sequence [p_0, ..., p_(k-1)] (the symbols are then
    0..k−1); p ≥ 0, summing to 1. Symbols of probability 0 get (long) codewords too.
    Construction: every symbol is a node; repeatedly the two nodes of least probability are joined
    under a new node whose probability is their sum, the first taken getting bit "0" and the second
    "1", until one node is left; a symbol's codeword is the bits on the path from it to that node.
    Ties are broken deterministically by age: symbols in the order given come before joined nodes,
    and older joined nodes before newer ones. A single symbol gets the codeword "0".
    Cost: O(k log k) for k symbols.
    """
    symbols, p = _table(probabilities, "huffman_code")
    k = len(symbols)
    if k == 1:
        return {symbols[0]: "0"}
    heap = [(float(w), i) for i, w in enumerate(p)]  # (probability, node number): ties go to the older node
    heapq.heapify(heap)
    children: list[tuple[int, int]] = []  # node k + j joins children[j]
    while len(heap) > 1:
        (w0, a), (w1, b) = heapq.heappop(heap), heapq.heappop(heap)
        children.append((a, b))
        heapq.heappush(heap, (w0 + w1, k + len(children) - 1))
    words = [""] * (2 * k - 1)
    for node in range(2 * k - 2, k - 1, -1):  # a node is numbered after its children: walk down from the root
        a, b = children[node - k]
        words[a], words[b] = words[node] + "0", words[node] + "1"
    return {s: words[i] for i, s in enumerate(symbols)}


def _check_code(code: Any, who: str) -> dict[Any, str]:
    """``code`` as a dict of non-empty '0'/'1' codewords, none a prefix of another."""
    if not isinstance(code, Mapping) or not code:
        raise TypeError(f"{who} got code={type(code).__name__}; expected a non-empty dict {{symbol: codeword}} "
                        "such as huffman_code returns.")
    for symbol, word in code.items():
        if not isinstance(word, str) or not word or set(word) - {"0", "1"}:
            raise ValueError(f"{who} got the codeword {word!r} for symbol {symbol!r}; expected a non-empty "
                             "string of '0' and '1'. Fix: build the code with huffman_code.")
    words = sorted(code.values())  # a word that starts another sorts right before some word it starts
    for shorter, longer in itertools.pairwise(words):
        if longer.startswith(shorter):
            raise ValueError(f"{who} got a code that is not a prefix code: {shorter!r} begins {longer!r}, so a "
                             "stream cannot be split into codewords. Fix: build the code with huffman_code.")
    return dict(code)


def encode(symbols: Iterable[Any], code: Mapping[Any, str]) -> str:
    """The codewords of ``symbols``, concatenated: a string of '0' and '1' that ``decode`` inverts."""
    table = _check_code(code, "encode")
    symbols = list(symbols)
    missing = [i for i, s in enumerate(symbols) if s not in table]
    if missing:
        raise ValueError(f"encode got symbol {symbols[missing[0]]!r} at position {missing[0]} ({len(missing)} "
                         f"symbols in all) with no codeword; the code has {len(table)} symbols. Fix: build the "
                         "code from a distribution over every symbol that occurs.")
    return "".join([table[s] for s in symbols])


def decode(bits: str, code: Mapping[Any, str]) -> list[Any]:
    """The symbols whose codewords, concatenated, are ``bits`` (the inverse of ``encode``)."""
    inverse = {word: symbol for symbol, word in _check_code(code, "decode").items()}
    if not isinstance(bits, str) or set(bits) - {"0", "1"}:
        raise ValueError(f"decode got bits={bits!r:.60}; expected a string of '0' and '1' such as encode returns.")
    longest = max(map(len, inverse))
    out, start = [], 0
    for end in range(1, len(bits) + 1):
        if bits[start:end] in inverse:
            out.append(inverse[bits[start:end]])
            start = end
        elif end - start >= longest:
            raise ValueError(f"decode: bits[{start}:{end}] = {bits[start:end]!r} begins no codeword (the code "
                             "does not cover every bit string). Fix: decode bits that encode made with this code.")
    if start != len(bits):
        raise ValueError(f"decode: the bits end inside a codeword (the last {len(bits) - start} bits, "
                         f"{bits[start:]!r}, are an unfinished codeword). Fix: pass the whole encoded string.")
    return out


def expected_length(code: Mapping[Any, str], probabilities: Any) -> float:
    """Expected codeword length L = Σₛ p(s) |c(s)|, in bits per symbol.

    ``probabilities`` as for ``huffman_code``: a dict {symbol: p} or a sequence (symbols 0..k−1).
    """
    table = _check_code(code, "expected_length")
    symbols, p = _table(probabilities, "expected_length")
    missing = [s for s in symbols if s not in table]
    if missing:
        raise ValueError(f"expected_length: symbol {missing[0]!r} ({len(missing)} in all) has a probability but no "
                         "codeword. Fix: pass the code built from these probabilities.")
    return float(np.dot(p, [len(table[s]) for s in symbols]))


# -- block coding of a binary stream --------------------------------------------------------------------------
class BlockCoding(NamedTuple):
    """What ``block_code`` measured: the code, the coded stream, and its cost per source bit."""

    m: int  # bits per block
    p: float  # the probability of a 1 that the code was built for
    code: dict[str, str]  # block (m characters '0'/'1') → codeword
    encoded: str  # the stream's codewords, concatenated
    n_bits: int  # source bits coded
    bits_per_symbol: float  # measured: len(encoded) / n_bits
    expected_bits_per_symbol: float  # E[|c(block)|] / m for blocks from a Bernoulli(p) source


def _check_m(m: Any, who: str) -> int:
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or not 1 <= m <= MAX_BLOCK_BITS:
        raise ValueError(f"{who}(m={m!r}): expected an int block length 1 <= m <= {MAX_BLOCK_BITS} (the code has "
                         f"2^m words; above 2^{MAX_BLOCK_BITS} the table outgrows a quick computation). "
                         "Fix: pass e.g. m=8.")
    return int(m)


def _bit_string(stream: Any, who: str) -> str:
    """A 0/1 stream (a '0'/'1' string, or a sequence or array of 0 and 1) as a '0'/'1' string."""
    if isinstance(stream, str):
        bits = stream
    else:
        arr = np.asarray(stream).reshape(-1)
        if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{who} got a stream that is not all 0s and 1s (dtype {arr.dtype}); expected a '0'/'1' "
                             "string or an array of 0 and 1. Fix: e.g. bernoulli_stream(q, n, rng=0).")
        bits = (arr.astype(np.uint8) + ord("0")).tobytes().decode("ascii")
    if set(bits) - {"0", "1"}:
        raise ValueError(f"{who} got a stream with characters other than '0' and '1': {bits!r:.60}.")
    return bits


def to_blocks(stream: Any, m: int) -> list[str]:
    """The stream cut into blocks of ``m`` bits, each a string such as '0110'. The length must be a multiple of m."""
    m = _check_m(m, "to_blocks")
    bits = _bit_string(stream, "to_blocks")
    if len(bits) % m or not bits:
        raise ValueError(f"to_blocks got a stream of {len(bits)} bits; expected a positive multiple of m={m}. "
                         f"Fix: drop the tail, stream[:{len(bits) - len(bits) % m}], or pad it.")
    return [bits[i:i + m] for i in range(0, len(bits), m)]


def block_probabilities(p: float, m: int) -> dict[str, float]:
    """The distribution of m-bit blocks from a Bernoulli(p) source: P(b) = p^(ones) (1 − p)^(zeros).

    Keys are the 2^m blocks in counting order, '00…0' first.
    """
    m = _check_m(m, "block_probabilities")
    p_arr = _probabilities(p, "p", "block_probabilities", upper=1)
    if p_arr.ndim:
        raise ValueError(f"block_probabilities got p of shape {p_arr.shape}; expected one probability of a 1.")
    blocks = [format(i, f"0{m}b") for i in range(2**m)]
    ones = np.array([b.count("1") for b in blocks])
    probs = float(p_arr) ** ones * (1 - float(p_arr)) ** (m - ones)
    return dict(zip(blocks, probs.tolist(), strict=True))


def block_code(stream: Any, m: int, *, p: float) -> BlockCoding:
    """Huffman-code a binary stream in blocks of ``m`` bits, with the code built for a Bernoulli(p) source.

    ``p`` is the probability of a 1 the code assumes (the notes' estimate p). Built for the source's
    own q the bits per source bit approach the entropy H(q) as m grows, H(q) ≤ L_m/m < H(q) + 1/m;
    built for another p they cost more than H(q), about the cross entropy H(q, p), though not bounded
    below by it: Huffman's lengths are not −log₂ p, and on finite blocks the code for the wrong p can
    spend less than H(q, p) (q = 0.1, p = 0.05, m = 8: 0.4889 < 0.4988 bits). A code with lengths
    ⌈−log₂ p(b)⌉ (Shannon's), or an arithmetic code for p, is bounded below by H(q, p).
    m ≤ MAX_BLOCK_BITS (16).
    """
    blocks = to_blocks(stream, m)
    probs = block_probabilities(p, m)
    code = huffman_code(probs)  # a code over every block: encode's and expected_length's checks would only repeat
    encoded = "".join([code[b] for b in blocks])
    m = int(m)
    n_bits = len(blocks) * m
    expected = float(np.dot(list(probs.values()), [len(code[b]) for b in probs]))
    return BlockCoding(m, float(p), code, encoded, n_bits, len(encoded) / n_bits, expected / m)


def bernoulli_stream(q: float, n: int, *, rng: RNGLike = None) -> np.ndarray:
    """``n`` independent bits, each 1 with probability ``q``: an (n,) uint8 array.

    ``rng`` is a numpy Generator, an int seed, or None for nablanet's global generator.
    """
    q_arr = _probabilities(q, "q", "bernoulli_stream", upper=1)
    if q_arr.ndim or isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"bernoulli_stream(q={q!r}, n={n!r}): expected one probability q in [0, 1] and an int "
                         "n >= 0. Fix: e.g. bernoulli_stream(0.1, 1000, rng=0).")
    return (get_rng(rng).random(int(n)) < float(q_arr)).astype(np.uint8)
