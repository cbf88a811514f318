"""Study ``coding``: cross entropy as the cost of a code (source notes 004, Appendix A).

The theory (``nablanet.info``; docs/information.md). A Bernoulli(q) source emits 1 with probability q.

Blocks. A Huffman code on blocks of m source bits (2^m blocks b, P(b) = q^(ones) (1 − q)^(zeros)) has
expected length E_m bits per block, and Shannon's bound per source bit is

    H(q) ≤ E_m/m < H(q) + 1/m,      H(q) = −q log₂ q − (1 − q) log₂(1 − q),

so the cost per symbol approaches the entropy as m grows (not necessarily monotonically: E_m/m can rise
from one m to the next while staying in the bound). The study measures E_m/m and the bits a coded
stream actually takes (``nn.info.block_code``, then ``nn.info.decode`` back to the stream).

The entropy function. H(q) on a grid of q in [0, 1] (the notes' Figure 5), with the measured bits per
symbol of Huffman block codes (fixed m) and of an arithmetic code built for q beside it.

The wrong code. A code built for p while the source is q spends on average

    H(q, p) = −q log₂ p − (1 − q) log₂(1 − p) = H(q) + KL(q‖p)

bits per symbol when each outcome x costs −log₂ p(x) bits. Three codes built for p are measured on the
stream of q: an arithmetic code with the table (1 − p, p) (``nn.info.arithmetic_encode``), which spends
Σₙ −log₂ p(xₙ) bits plus at most 2 + N δ (so H(q, p) up to the stream's sampling error); a Shannon
code on blocks of m bits, lengths ⌈−log₂ p(b)⌉ (a prefix code with those lengths exists by Kraft's
inequality; its expected cost per symbol lies in [H(q, p), H(q, p) + 1/m)); and the Huffman code for p,
which is reported beside them but is not bounded below by H(q, p): its lengths are not −log₂ p(b), and
on finite blocks it can spend less (q = 0.1, p = 0.05, m = 8: 0.4889 < 0.4988 bits), never less than H(q).

The classifier. With one-hot labels q = e_y, H(q) = 0 and the cross-entropy loss −log₂ p_y is the
length of the label's codeword in a code built from the network's probabilities. A small MLP is
trained on the digits with ``nn.fit``; after every epoch (epoch 0: the initialization) its test labels
are arithmetic-coded with the per-sample table P (N, C) of its softmax outputs, decoded back, and the
code's length compared with Σₙ −log₂ P_{n,yₙ} (≤ that + 2 + N δ) and with the test loss of
``nn.CrossEntropyLoss`` (nats) divided by ln 2. Beside it: a uniform code (log₂ C bits per label) and a
code from the training set's class frequencies (add-one smoothed), both coded for real too.

Records: ``part="block"`` one row per m; ``part="entropy_curve"`` the grid; ``part="entropy_point"`` one
row per measured q; ``part="wrong_curve"`` H(q, p) and KL(q‖p) on a grid of p; ``part="wrong"`` one row per
p measured; ``part="labels"`` one row per label code (uniform, class frequencies, the network per
epoch); ``part="label_cost"`` one row per test label under the final network.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

import nablanet as nn
from nablanet.layers.softmax import softmax
from nablanet.studies._guard import did_not_learn, learned
from nablanet.studies._models import mlp
from nablanet.studies.base import Answer, Figure, Records, Study, Verdict, pyplot, register
from nablanet.studies.settings import POSITIVE, Check

_BITS = Check(low=1, high=nn.info.MAX_BLOCK_BITS)
_OPEN = Check(low=0, high=1, low_open=True, high_open=True)


# -- the source and its codes -----------------------------------------------------------------------------
def _bits(stream: np.ndarray) -> str:
    return (stream.astype(np.uint8) + ord("0")).tobytes().decode("ascii")


def huffman_on_stream(stream: np.ndarray, m: int, p: float, q: float) -> dict[str, Any]:
    """Huffman-code ``stream`` (cut to a multiple of m) in blocks of m bits with the code built for p:
    the expected bits per symbol under a Bernoulli(q) source, the measured ones, and the round trip."""
    bits = stream[: stream.size - stream.size % m]
    coded = nn.info.block_code(bits, m, p=p)
    expected = nn.info.expected_length(coded.code, nn.info.block_probabilities(q, m)) / m
    back = "".join(nn.info.decode(coded.encoded, coded.code)) == _bits(bits)
    return {"expected": expected, "measured": coded.bits_per_symbol, "n_bits": coded.n_bits,
            "coded_bits": len(coded.encoded), "round_trip": back}


def arithmetic_on_stream(stream: np.ndarray, p: float) -> dict[str, Any]:
    """Arithmetic-code ``stream`` with the table (1 − p, p): the stream's fraction of 1s q̂, measured bits per
    symbol, the stream's own Σ −log₂ p(xₙ) per symbol (the ideal, = H(q̂, p)), the coder's overhead bound per
    symbol, and the round trip."""
    with np.errstate(divide="ignore"):
        coded = code_labels(stream, np.array([1.0 - p, p]))  # the stream's bits as labels 0 and 1
    n = stream.size
    return {"empirical_q": float(stream.mean()), "arithmetic": coded["bits_per_label"],
            "arithmetic_ideal": coded["ideal_bits"] / n, "arithmetic_coded_bits": coded["bits"],
            "arithmetic_overhead": coded["overhead_bound"] / n, "arithmetic_round_trip": coded["round_trip"]}


def shannon_block_cost(stream: np.ndarray, m: int, p: float, q: float) -> tuple[float, float]:
    """A Shannon code for Bernoulli(p) blocks of m bits, lengths L(b) = ⌈−log₂ p(b)⌉ (they depend only on the
    number k of ones): (expected bits per symbol under Bernoulli(q), bits per symbol it spends on ``stream``)."""
    k = np.arange(m + 1)
    lengths = np.ceil(-(k * math.log2(p) + (m - k) * math.log2(1.0 - p)))
    binom = np.array([math.comb(m, int(i)) for i in k], dtype=np.float64)
    expected = float(np.sum(binom * q**k * (1.0 - q) ** (m - k) * lengths)) / m
    blocks = stream[: stream.size - stream.size % m].reshape(-1, m)
    measured = float(lengths[blocks.sum(axis=1)].sum()) / blocks.size
    return expected, measured


def _stream(q: float, n: int, seed: int, part: int, index: int = 0) -> np.ndarray:
    return nn.info.bernoulli_stream(q, n, rng=np.random.default_rng([seed, part, index]))


def _block_part(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    q = cfg["q"]
    h = float(nn.info.binary_entropy(q))
    stream = _stream(q, cfg["n_bits"], cfg["seed"], 1)
    rows = []
    for m in cfg["block_sizes"]:
        r = huffman_on_stream(stream, m, q, q)
        rows.append({"part": "block", "m": m, "q": q, "entropy": h, "upper_bound": h + 1 / m, **r})
    return rows


def _entropy_part(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    grid = np.linspace(0.0, 1.0, cfg["entropy_grid"])
    curve, mirror = np.atleast_1d(nn.info.binary_entropy(grid)), np.atleast_1d(nn.info.binary_entropy(1.0 - grid))
    rows: list[dict[str, Any]] = [
        {"part": "entropy_curve", "q": float(g), "entropy": float(h), "entropy_mirror": float(hm)}
        for g, h, hm in zip(grid, curve, mirror, strict=True)]
    m = cfg["entropy_m"]
    for i, q in enumerate(cfg["entropy_qs"]):
        stream = _stream(q, cfg["n_bits"], cfg["seed"], 2, i)
        r = huffman_on_stream(stream, m, q, q)
        rows.append({"part": "entropy_point", "q": q, "m": m, "entropy": float(nn.info.binary_entropy(q)),
                     "huffman_expected": r["expected"], "huffman_measured": r["measured"],
                     "huffman_round_trip": r["round_trip"], "n_bits": stream.size,
                     **arithmetic_on_stream(stream, q)})
    return rows


def _wrong_part(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    q, m = cfg["q"], cfg["wrong_m"]
    grid = np.linspace(0.005, 0.995, 199)
    qs = np.full_like(grid, q)
    cross = np.atleast_1d(nn.info.binary_cross_entropy(q=qs, p=grid))
    kl = np.atleast_1d(nn.info.binary_kl_divergence(q=qs, p=grid))
    rows: list[dict[str, Any]] = [
        {"part": "wrong_curve", "q": q, "p": float(p), "cross_entropy": float(c), "kl": float(k)}
        for p, c, k in zip(grid, cross, kl, strict=True)]
    stream = _stream(q, cfg["n_bits"], cfg["seed"], 1)  # the block part's stream
    h = float(nn.info.binary_entropy(q))
    for p in sorted({*cfg["wrong_ps"], q}):
        huff = huffman_on_stream(stream, m, p, q)
        shannon_expected, shannon_measured = shannon_block_cost(stream, m, p, q)
        rows.append({"part": "wrong", "q": q, "p": p, "m": m, "entropy": h,
                     "cross_entropy": float(nn.info.binary_cross_entropy(q=q, p=p)),
                     "kl": float(nn.info.binary_kl_divergence(q=q, p=p)), **arithmetic_on_stream(stream, p),
                     "shannon_expected": shannon_expected, "shannon_measured": shannon_measured,
                     "huffman_expected": huff["expected"], "huffman_measured": huff["measured"],
                     "huffman_round_trip": huff["round_trip"], "n_bits": stream.size})
    return rows


# -- the classifier's labels --------------------------------------------------------------------------------
def code_labels(labels: np.ndarray, table: np.ndarray) -> dict[str, Any]:
    """Arithmetic-code ``labels`` with ``table`` ((C,) shared or (N, C) per label): the bits, Σ −log₂ p_y,
    the coder's bound above it, and whether the decoder gives the labels back."""
    code = nn.info.arithmetic_encode(labels, table)
    back = nn.info.arithmetic_decode(code, table, n=labels.size)
    rows = np.broadcast_to(table, (labels.size, table.shape[-1]))
    cost = -np.log2(rows[np.arange(labels.size), labels])
    n, c = labels.size, table.shape[-1]
    return {"n_labels": n, "n_classes": c, "bits": len(code), "bits_per_label": len(code) / n,
            "ideal_bits": float(cost.sum()), "ce_bits_per_label": float(cost.mean()),
            "overhead_bound": nn.info.arithmetic_overhead_bound(n, c),
            "round_trip": bool(np.array_equal(back, labels)), "_cost": cost}


class _LabelCoder(nn.callbacks.Callback):
    """At initialization and after every epoch: the test labels coded with the network's probabilities."""

    def __init__(self, model: nn.Sequential, test: tuple[np.ndarray, np.ndarray]) -> None:
        self.model, self.test = model, test
        self.rows: list[dict[str, Any]] = []
        self.last: tuple[np.ndarray, dict[str, Any]] | None = None

    def _code(self, epoch: int) -> None:
        x, y = self.test
        z = self.model(x)
        probs = softmax(z, axis=1)
        r = code_labels(y, probs)
        loss = float(nn.CrossEntropyLoss()(z, y))  # nats per label
        wrong = probs.argmax(axis=1) != y
        cost = r.pop("_cost")
        self.rows.append({"part": "labels", "code": "network", "epoch": epoch, **r,
                          "loss_bits_per_label": loss / math.log(2), "accuracy": float(np.mean(~wrong)),
                          "n_errors": int(wrong.sum()), "error_bits": float(cost[wrong].sum())})
        self.last = (probs, {"cost": cost, "wrong": wrong})

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self._code(0)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self._code(epoch + 1)


def _classifier_part(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    splits = nn.data.load_digits(seed=cfg["seed"], dtype=np.float64)
    (x, y), (xt, yt) = splits.train, splits.test
    c = splits.n_classes
    rows: list[dict[str, Any]] = []
    uniform = code_labels(yt, np.full(c, 1.0 / c))
    uniform.pop("_cost")
    rows.append({"part": "labels", "code": "uniform", **uniform})
    counts = np.bincount(y, minlength=c) + 1.0  # add-one: a class absent from training still gets a codeword
    prior = code_labels(yt, counts / counts.sum())
    prior.pop("_cost")
    rows.append({"part": "labels", "code": "class frequencies", **prior})
    model = mlp(x.shape[1], cfg["hidden"], c, np.random.default_rng([cfg["seed"], 4]))
    coder = _LabelCoder(model, (xt, yt))
    opt = nn.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
    nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=cfg["epochs"], batch_size=cfg["batch_size"],
           seed=cfg["seed"], callbacks=[coder])
    rows += coder.rows
    assert coder.last is not None  # on_train_begin ran
    probs, last = coder.last
    rows += [{"part": "label_cost", "sample": i, "label": int(yt[i]), "p_label": float(probs[i, yt[i]]),
              "bits": float(last["cost"][i]), "correct": not bool(last["wrong"][i])} for i in range(yt.size)]
    return rows


def _check_config(cfg: dict[str, Any]) -> None:
    longest = max(cfg["block_sizes"] + [cfg["entropy_m"], cfg["wrong_m"]])
    if cfg["n_bits"] < 10 * longest:
        raise ValueError(f"n_bits={cfg['n_bits']}: expected at least 10 blocks of the longest m ({longest}), i.e. "
                         f"n_bits >= {10 * longest}. Fix: --set n_bits={max(10 * longest, 6720)}.")
    if cfg["entropy_grid"] < 3:
        raise ValueError(f"entropy_grid={cfg['entropy_grid']}: expected at least 3 points (0, ½ and 1). "
                         "Fix: --set entropy_grid=101.")


def measure(cfg: dict[str, Any]) -> Records:
    """The four parts (module docstring). Settings: ``q`` (the source), ``block_sizes``, ``n_bits`` (stream
    length), ``entropy_grid`` (points of H(q)), ``entropy_qs`` and ``entropy_m`` (the measured points),
    ``wrong_ps`` and ``wrong_m`` (codes built for p), and the classifier's ``hidden``, ``epochs``,
    ``batch_size``, ``lr``, ``momentum``; ``seed`` fixes the streams, the split, the initialization and
    the batch order."""
    _check_config(cfg)
    return Records(_block_part(cfg) + _entropy_part(cfg) + _wrong_part(cfg) + _classifier_part(cfg))


# -- the verdict --------------------------------------------------------------------------------------------
def _part(rows: list[dict[str, Any]], part: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["part"] == part]


def _at(k: int, n: int, what: str) -> str:
    """"at every m" / "at 5 of 8 m" for a claim checked on n cases."""
    return f"at every {what}" if k == n else f"at {k} of {n} {what}"


def _quoted_m(blocks: list[dict[str, Any]]) -> list[int]:
    """The block lengths a sentence quotes: the shortest, 4 (if measured) and the longest."""
    ms = [b["m"] for b in blocks]
    return list(dict.fromkeys(m for m in (ms[0], 4, ms[-1]) if m in ms))


def _block_sentence(rows: list[dict[str, Any]]) -> str:
    blocks = sorted(_part(rows, "block"), key=lambda r: r["m"])
    by_m = {b["m"]: b for b in blocks}
    quoted = _quoted_m(blocks)
    inside = sum(b["entropy"] - 1e-12 <= b["expected"] < b["upper_bound"] for b in blocks)
    rises = [b["m"] for a, b in itertools.pairwise(blocks) if b["expected"] > a["expected"] + 1e-12]
    gap = max(abs(b["measured"] - b["expected"]) for b in blocks)
    back = sum(b["round_trip"] for b in blocks)
    text = (f"A Bernoulli(q = {blocks[0]['q']:g}) source has entropy H(q) = {blocks[0]['entropy']:.4f} bits per "
            "symbol. Huffman codes on blocks of m bits spend, in expectation, "
            + ", ".join(f"{by_m[m]['expected']:.4f} (m = {m})" for m in quoted)
            + f" bits per symbol, and on a sampled stream of {blocks[-1]['n_bits']} bits (cut to a multiple of m) "
            + ", ".join(f"{by_m[m]['measured']:.4f}" for m in quoted)
            + f". E[length]/m lies inside Shannon's bound H(q) ≤ E/m < H(q) + 1/m {_at(inside, len(blocks), 'm')} "
            f"tried ({blocks[0]['m']} to {blocks[-1]['m']}), and it "
            + (f"does not fall at every step: it rises at m = {', '.join(map(str, rises))}" if rises
               else "falls at every step")
            + f". The measured cost differs from the expectation by at most {gap:.4f} bits per symbol (the "
            "stream's sampling error); "
            + ("every coded stream decoded back to itself." if back == len(blocks)
               else f"only {back} of {len(blocks)} coded streams decoded back to themselves."))
    return text


def _signed(x: float) -> str:
    """+0.0450 or − 0.0010: a difference as the verdict writes it after "H(q)"."""
    return f"{'+' if x >= 0 else '−'} {abs(x):.4f}"


def _entropy_sentence(rows: list[dict[str, Any]]) -> str:
    curve = _part(rows, "entropy_curve")
    points = sorted(_part(rows, "entropy_point"), key=lambda r: r["q"])
    half = min(curve, key=lambda r: abs(r["q"] - 0.5))
    asym = max(abs(r["entropy"] - r["entropy_mirror"]) for r in curve)
    m = points[0]["m"]
    measured = [p["huffman_measured"] - p["entropy"] for p in points]
    expected = [p["huffman_expected"] - p["entropy"] for p in points]
    arith = [abs(p["arithmetic"] - p["entropy"]) for p in points]
    over = max((p["arithmetic_coded_bits"] - p["arithmetic_ideal"] * p["n_bits"]) for p in points)
    back = all(p["huffman_round_trip"] and p["arithmetic_round_trip"] for p in points)
    qs = ", ".join(f"{p['q']:g}" for p in points)
    return (f"The entropy function, computed by nn.info on {len(curve)} points of q in [0, 1], is "
            f"{curve[0]['entropy']:.4g} at q = 0 and {curve[-1]['entropy']:.4g} at q = 1, {half['entropy']:.4g} at "
            f"q = {half['q']:g}, at most {max(r['entropy'] for r in curve):.4g}, and symmetric (largest "
            f"|H(q) − H(1 − q)| = {asym:.1e}). At q = {qs}, Huffman codes on blocks of m = {m} expect from "
            f"H(q) {_signed(min(expected))} to H(q) {_signed(max(expected))} bits per symbol (Shannon's bound: "
            f"below H(q) + 1/m = H(q) + {1 / m:.4f}) and spent, measured, from H(q) {_signed(min(measured))} to "
            f"H(q) {_signed(max(measured))}"
            + (" (a sampled stream can come out a little below its expectation, even below H(q))"
               if min(measured) < 0 else "")
            + f"; arithmetic codes built for q (no blocks) spent within {max(arith):.4f} of H(q), each at most "
            f"{over:.2f} bits above its stream's own Σ −log₂ q(xₙ) (the coder's bound: 2 bits); "
            + ("every stream decoded back to itself." if back else "NOT every stream decoded back to itself."))


def _wrong_sentence(rows: list[dict[str, Any]]) -> str:
    wrong = sorted(_part(rows, "wrong"), key=lambda r: r["p"])
    q, m = wrong[0]["q"], wrong[0]["m"]
    kl_gap = max(abs(r["arithmetic"] - r["entropy"] - r["kl"]) for r in wrong)
    over = max(r["arithmetic_coded_bits"] - r["arithmetic_ideal"] * r["n_bits"] for r in wrong)
    shannon_in = sum(r["cross_entropy"] - 1e-12 <= r["shannon_expected"] < r["cross_entropy"] + 1 / m for r in wrong)
    below = [r for r in wrong if r["huffman_expected"] < r["cross_entropy"] - 1e-12]
    floor = all(r["huffman_expected"] >= r["entropy"] - 1e-12 for r in wrong)
    back = all(r["arithmetic_round_trip"] and r["huffman_round_trip"] for r in wrong)
    text = (f"Coded with codes built for p while the source is q = {q:g}, the stream costs, with an arithmetic code, "
            + ", ".join(f"{r['arithmetic']:.4f} at p = {r['p']:g} (H(q, p) = {r['cross_entropy']:.4f})" for r in wrong)
            + f" bits per symbol: the excess over H(q) matches KL(q‖p) within {kl_gap:.4f} bits per symbol at every p "
            f"(the stream's sampling error: its {wrong[0]['n_bits']} bits hold a fraction q̂ = "
            f"{wrong[0]['empirical_q']:.4f} of 1s, and each code is at most {over:.2f} bits above the stream's "
            f"Σ −log₂ p(xₙ) = N H(q̂, p), bound 2 + Nδ). Shannon codes on blocks of m = {m} (lengths "
            f"⌈−log₂ p(b)⌉) expect between H(q, p) and H(q, p) + 1/m {_at(shannon_in, len(wrong), 'p')}. ")
    if below:
        text += ("Huffman codes built for p expect less than H(q, p) at "
                 + ", ".join(f"p = {r['p']:g} ({r['huffman_expected']:.4f} < {r['cross_entropy']:.4f})" for r in below)
                 + ": their lengths are not −log₂ p(b), so H(q, p) bounds the Shannon and arithmetic codes, not "
                 "Huffman's")
    else:
        text += ("Huffman codes built for p expect at least H(q, p) at every p tried, though H(q, p) is not their "
                 "bound in general (their lengths are not −log₂ p(b))")
    text += ("; none expects less than H(q)" if floor else "; some expect less than H(q), which no code can")
    return text + (". Every stream decoded back to itself." if back else ". NOT every stream decoded back to itself.")


def _label_rows(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(uniform, class frequencies, the network's rows by epoch)."""
    labels = _part(rows, "labels")
    by_code = {r["code"]: r for r in labels if r["code"] != "network"}
    net = sorted((r for r in labels if r["code"] == "network"), key=lambda r: r["epoch"])
    return by_code["uniform"], by_code["class frequencies"], net


def _classifier_sentence(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> str:
    uniform, prior, net = _label_rows(rows)
    init, end = net[0], net[-1]
    c, n = end["n_classes"], end["n_labels"]
    within = all(r["ideal_bits"] - 1e-6 * r["n_labels"] <= r["bits"] <= r["ideal_bits"] + r["overhead_bound"]
                 for r in [uniform, prior, *net])
    back = all(r["round_trip"] for r in [uniform, prior, *net])
    loss_gap = max(abs(r["loss_bits_per_label"] - r["ce_bits_per_label"]) for r in net)
    model = f"an MLP with hidden widths {cfg['hidden']}" if cfg["hidden"] else "a softmax regression"
    text = "" if learned(end["accuracy"], c) else did_not_learn(
        "The classifier", end["accuracy"], c, "Fix: train longer (--set epochs=30) or with another lr.") + " "
    return text + (
        f"On the digits, {model} trained {end['epoch']} epochs with nn.fit reaches {end['accuracy']:.1%} test "
        f"accuracy; its test loss (nn.CrossEntropyLoss, in nats, / ln 2) is {end['loss_bits_per_label']:.4f} bits per "
        f"label, the mean of −log₂ p_y to {loss_gap:.1e}, and Σ −log₂ p_y over the {n} test labels is "
        f"{end['ideal_bits']:.2f} bits. The arithmetic code built from its probabilities spent {end['bits']} bits "
        f"({end['bits_per_label']:.4f} per label), {end['bits'] - end['ideal_bits']:.2f} above that sum (bound "
        f"2 + Nδ = {end['overhead_bound']:.6f}); at initialization it spent {init['bits_per_label']:.4f} bits per "
        f"label. A uniform code needs log₂ {c} = {math.log2(c):.4f} bits per label (measured "
        f"{uniform['bits_per_label']:.4f}), the training set's class frequencies {prior['bits_per_label']:.4f}: the "
        f"network's probabilities save {1 - end['bits'] / uniform['bits']:.1%} of the uniform code's bits. The "
        f"{end['n_errors']} misclassified test labels cost {end['error_bits']:.2f} of the {end['ideal_bits']:.2f} "
        f"bits ({end['error_bits'] / end['ideal_bits']:.0%}): each mistake is an expensive amendment. Every code "
        + ("was within its bound" if within else "was NOT within its bound")
        + (" and decoded back to the labels." if back else ", and NOT every code decoded back to the labels."))


def _headline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    blocks = sorted(_part(rows, "block"), key=lambda r: r["m"])
    head: dict[str, Any] = {"H(q), bits per symbol": blocks[0]["entropy"]}
    for b in blocks:
        head[f"Huffman, m = {b['m']}: expected bits per symbol"] = b["expected"]
        head[f"Huffman, m = {b['m']}: measured bits per symbol"] = b["measured"]
    points = _part(rows, "entropy_point")
    head["entropy points: largest Huffman excess over H(q), measured"] = max(
        p["huffman_measured"] - p["entropy"] for p in points)
    head["entropy points: largest |arithmetic − H(q)|, measured"] = max(
        abs(p["arithmetic"] - p["entropy"]) for p in points)
    for r in sorted(_part(rows, "wrong"), key=lambda r: r["p"]):
        head[f"p = {r['p']:g}: H(q, p)"] = r["cross_entropy"]
        head[f"p = {r['p']:g}: arithmetic code, measured"] = r["arithmetic"]
        head[f"p = {r['p']:g}: Shannon blocks, expected"] = r["shannon_expected"]
        head[f"p = {r['p']:g}: Huffman for p, expected"] = r["huffman_expected"]
    uniform, prior, net = _label_rows(rows)
    end = net[-1]
    head.update({"classifier: test accuracy": end["accuracy"],
                 "classifier: test cross-entropy, bits per label": end["loss_bits_per_label"],
                 "classifier: arithmetic code, bits per label": end["bits_per_label"],
                 "classifier: code bits above Σ −log₂ p_y": end["bits"] - end["ideal_bits"],
                 "classifier at initialization: code bits per label": net[0]["bits_per_label"],
                 "uniform code: bits per label": uniform["bits_per_label"],
                 "class-frequency code: bits per label": prior["bits_per_label"],
                 "classifier: share of the uniform code's bits saved": 1 - end["bits"] / uniform["bits"],
                 "classifier: share of the bits spent on misclassified labels": end["error_bits"] / end["ideal_bits"]})
    return head


def verdict(records: Records, cfg: dict[str, Any]) -> Verdict:
    """Blocks against Shannon's bound, the entropy function with measured points, the wrong code's cost
    against H(q, p) and KL(q‖p), and the classifier's labels coded with its probabilities."""
    rows = records.rows
    text = " ".join((_block_sentence(rows), _entropy_sentence(rows), _wrong_sentence(rows),
                     _classifier_sentence(rows, cfg)))
    return Verdict(text, _headline(rows))


def answer(records: Records, cfg: dict[str, Any]) -> Answer:
    """Bits per symbol on the longest blocks against H(q), in words; the rest is in the verdict."""
    blocks = sorted(_part(records.rows, "block"), key=lambda r: r["m"])
    first, last = blocks[0], blocks[-1]
    start = ("spends a whole bit per symbol on single bits; on the longest blocks tried it spends"
             if first["m"] == 1 and first["expected"] == 1.0 else "on the longest blocks tried spends")
    return Answer(
        f"A Huffman code for a Bernoulli({first['q']:g}) source {start} {last['expected']:.4f} bits per symbol, "
        f"close to the entropy H(q) = {last['entropy']:.4f} that no code can beat. A code built for the wrong "
        "probability pays the KL divergence on top, and a classifier's cross-entropy loss is the length, in bits, "
        "of the code its probabilities give the labels.", "blocks")


# -- the figures --------------------------------------------------------------------------------------------
def figures(records: Records, cfg: dict[str, Any]) -> dict[str, Figure]:
    """The code length per symbol against m (the answer's), the entropy function with measured points, the
    cost of the wrong code against H(q, p) and KL(q‖p), and the classifier's bits per label."""
    rows = records.rows
    return {
        "blocks": Figure(_blocks_figure(rows), "Bits per source bit of Huffman codes on blocks of m bits: the "
                         "expectation E[length]/m (computed from the code) and the bits the coded stream took "
                         "(measured), inside Shannon's band H(q) ≤ E/m < H(q) + 1/m; the dotted line is an arithmetic "
                         "code built for q on the same stream, without blocks (measured). Right: the excess over "
                         "H(q) on a log scale, under the bound 1/m."),
        "entropy": Figure(_entropy_figure(rows), "The entropy function H(q), computed by nn.info on a grid (the "
                          "notes' Figure 5), with the bits per symbol measured on sampled streams: Huffman codes on "
                          "blocks and arithmetic codes built for q."),
        "wrong_code": Figure(_wrong_figure(rows), "Codes built for p, measured on the stream of q. Left: bits per "
                             "symbol against the cross entropy H(q, p) (computed); right: the excess over H(q) against "
                             "KL(q‖p). Huffman codes for p (hollow) are not bounded below by H(q, p)."),
        "classifier": Figure(_classifier_figure(rows), "The test labels coded with a uniform table, the training "
                             "set's class frequencies and the network's per-sample probabilities: Σ −log₂ p_y per "
                             "label (the cross entropy) and the bits the arithmetic code took (measured), by code and "
                             "by epoch; right: what each test label cost under the final network."),
    }


def _plain_log(axis: Any) -> None:
    """Label a log axis 0.01, 0.1, 1 in plain text (matplotlib's 10ⁿ labels go through mathtext, which is
    slow to lay out) and leave its minor ticks unlabelled."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _blocks_figure(rows: list[dict[str, Any]]) -> Any:
    plt = pyplot()
    blocks = sorted(_part(rows, "block"), key=lambda r: r["m"])
    ms = np.array([b["m"] for b in blocks])
    h, q = blocks[0]["entropy"], blocks[0]["q"]
    expected, measured = np.array([b["expected"] for b in blocks]), np.array([b["measured"] for b in blocks])
    upper = np.array([b["upper_bound"] for b in blocks])
    same = [r for r in _part(rows, "wrong") if r["p"] == q]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    ax1.fill_between(ms, h, upper, color="C5", alpha=0.3, lw=0,
                     label="Shannon's band: H(q) ≤ E/m < H(q) + 1/m")
    ax1.axhline(h, color="k", lw=1.5, label=f"entropy H(q) = {h:.4f}")
    ax1.plot(ms, expected, "o-", color="C0", label="Huffman: expected E[length]/m")
    ax1.plot(ms, measured, "x", color="C3", ms=9, mew=2, label=f"Huffman: measured on {blocks[-1]['n_bits']} bits")
    if same:
        ax1.axhline(same[0]["arithmetic"], color="C2", ls=":", lw=2,
                    label=f"arithmetic code for q, no blocks: {same[0]['arithmetic']:.4f} (measured)")
    ax1.set(xlabel="block length m (source bits per block)", ylabel="code bits per source bit",
            title=f"Bernoulli(q = {q:g}) source")
    ax1.legend(fontsize=8)
    ax2.plot(ms, upper - h, "--", color="C5", lw=2, label="Shannon's bound: 1/m")
    ax2.plot(ms, expected - h, "o-", color="C0", label="Huffman: expected E/m − H(q)")
    above = measured > h  # a log axis shows only a positive excess
    ax2.plot(ms[above], measured[above] - h, "x", color="C3", ms=9, mew=2, label="Huffman: measured − H(q)")
    ax2.set(yscale="log", xlabel="block length m (source bits per block)", ylabel="bits per source bit above H(q)",
            title="the excess over the entropy")
    _plain_log(ax2.yaxis)
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.set_xticks(ms)
    fig.suptitle("How close do Huffman codes on blocks of m bits come to the entropy?")
    fig.tight_layout()
    return fig


def _entropy_figure(rows: list[dict[str, Any]]) -> Any:
    plt = pyplot()
    curve = _part(rows, "entropy_curve")
    points = sorted(_part(rows, "entropy_point"), key=lambda r: r["q"])
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    ax.plot([r["q"] for r in curve], [r["entropy"] for r in curve], color="k", label="H(q), computed by nn.info")
    qs = [p["q"] for p in points]
    ax.plot(qs, [p["huffman_measured"] for p in points], "o", color="C0", ms=7,
            label=f"Huffman, blocks of m = {points[0]['m']}: measured")
    ax.plot(qs, [p["arithmetic"] for p in points], "x", color="C3", ms=9, mew=2,
            label="arithmetic code built for q: measured")
    ax.set(xlabel="q, the probability of a 1", ylabel="bits per source bit", title="the entropy function",
           ylim=(0, 1.1))
    ax.legend(fontsize=8, loc="lower center")
    fig.suptitle("What does the entropy function look like, and do real codes reach it?")
    fig.tight_layout()
    return fig


def _wrong_figure(rows: list[dict[str, Any]]) -> Any:
    plt = pyplot()
    wrong = sorted(_part(rows, "wrong"), key=lambda r: r["p"])
    top = min(1.0, wrong[-1]["p"] + 0.1)
    curve = [r for r in _part(rows, "wrong_curve") if r["p"] <= top]
    q, h, m = wrong[0]["q"], wrong[0]["entropy"], wrong[0]["m"]
    ps = [r["p"] for r in wrong]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, shift, name in ((ax1, 0.0, "H(q, p), computed"), (ax2, h, "KL(q‖p), computed")):
        key = "cross_entropy" if shift == 0.0 else "kl"
        ax.plot([r["p"] for r in curve], [r[key] for r in curve], color="k", label=name)
        ax.plot(ps, [r["arithmetic"] - shift for r in wrong], "x", color="C3", ms=9, mew=2,
                label="arithmetic code for p: measured")
        ax.plot(ps, [r["shannon_expected"] - shift for r in wrong], "s", color="C0", ms=6,
                label=f"Shannon code, blocks of m = {m}: expected")
        ax.plot(ps, [r["huffman_expected"] - shift for r in wrong], "o", mfc="none", color="C1", ms=9,
                label=f"Huffman code for p, m = {m}: expected")
        ax.axvline(q, color="grey", ls=":", lw=1)
    ax1.axhline(h, color="C2", ls="--", label=f"H(q) = {h:.4f}")
    ax1.set(xlabel="p, the probability the code assumes", ylabel="bits per source bit",
            title=f"cost of a code built for p (q = {q:g})")
    ax2.set(xlabel="p, the probability the code assumes", ylabel="bits per source bit above H(q)",
            title="the excess is the KL divergence")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.suptitle("What does a code built for the wrong p cost when the source is q?")
    fig.tight_layout()
    return fig


def _classifier_figure(rows: list[dict[str, Any]]) -> Any:
    plt = pyplot()
    uniform, prior, net = _label_rows(rows)
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.8))
    codes = [("uniform code", uniform), ("class frequencies", prior), ("network, epoch 0", net[0]),
             (f"network, epoch {net[-1]['epoch']}", net[-1])]
    y = np.arange(len(codes))
    ax1.barh(y - 0.2, [r["ce_bits_per_label"] for _, r in codes], 0.4, color="C0", label="Σ −log₂ p_y / N")
    ax1.barh(y + 0.2, [r["bits_per_label"] for _, r in codes], 0.4, color="C1", label="arithmetic code (measured)")
    for i, (_, r) in enumerate(codes):
        ax1.text(r["bits_per_label"], i + 0.2, f" {r['bits_per_label']:.4f}", va="center", fontsize=7)
    ax1.set_yticks(y, [name for name, _ in codes])
    ax1.invert_yaxis()
    ax1.set(xlabel="bits per test label", title=f"{net[-1]['n_labels']} test labels",
            xlim=(0, 1.25 * uniform["bits_per_label"]))
    ax1.legend(fontsize=8, loc="lower right")
    epochs = [r["epoch"] for r in net]
    ax2.plot(epochs, [r["loss_bits_per_label"] for r in net], "-", color="C0", label="test loss / ln 2")
    ax2.plot(epochs, [r["bits_per_label"] for r in net], "x", color="C1", ms=8, mew=2,
             label="arithmetic code (measured)")
    ax2.axhline(uniform["bits_per_label"], color="grey", ls="--", label="uniform code (measured)")
    ax2.set(yscale="log", xlabel="epoch", ylabel="bits per test label", title="during training")
    _plain_log(ax2.yaxis)
    ax2.legend(fontsize=8)
    cost = _part(rows, "label_cost")
    bits = np.array([r["bits"] for r in cost])
    right = np.array([r["correct"] for r in cost])
    low = 10.0 ** math.floor(math.log10(max(float(bits[bits > 0].min(initial=1.0)), 1e-9)))
    edges = np.logspace(math.log10(low), math.log10(max(float(bits.max()), 10 * low)) + 0.01, 30)
    ax3.hist([np.clip(bits[right], low, None), np.clip(bits[~right], low, None)], bins=edges, stacked=True,
             color=["C2", "C3"], label=["correct", "misclassified"])
    ax3.set(xscale="log", xlabel="−log₂ p_y, bits (final network)", ylabel="test labels",
            title="what each label cost")
    _plain_log(ax3.xaxis)
    ax3.legend(fontsize=8)
    fig.suptitle("How many bits does a code built from the classifier's probabilities spend on the labels?")
    fig.tight_layout()
    return fig


STUDY = register(Study(
    name="coding",
    question="How close do real codes come to the entropy, what does a code built for the wrong probability cost, "
             "and how many bits does a classifier's own code spend on its labels?",
    notes="Source notes 004, Appendix A (coding for efficiency: Huffman codes on blocks of m bits, the entropy "
          "H(q), the cross entropy H(q, p) of a code built for p, and the cross-entropy loss as coding cost).",
    measure=measure, verdict=verdict, figures=figures, answer=answer,
    method="We draw bit streams from a Bernoulli source and code them for real, Huffman codes on blocks of m bits "
           "and arithmetic codes, decoding every stream back and counting the bits against Shannon's bounds computed "
           "by nn.info. The same stream coded with codes built for other probabilities measures the cross entropy "
           "and the KL divergence. Then we train a small network on the digits and arithmetic-code its test labels "
           "with its own predicted probabilities, comparing the bits with its cross-entropy loss.",
    checks={"q": _OPEN, "wrong_ps": _OPEN, "entropy_qs": Check(low=0, high=1), "block_sizes": _BITS,
            "entropy_m": _BITS, "wrong_m": _BITS, "n_bits": POSITIVE, "entropy_grid": POSITIVE,
            "hidden": Check(low=1, empty=True, example=[64])},
    quick={"seed": 0, "q": 0.1, "block_sizes": list(range(1, 9)), "n_bits": 6720, "entropy_grid": 101,
           "entropy_qs": [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9], "entropy_m": 8,
           "wrong_ps": [0.02, 0.05, 0.2, 0.3, 0.5], "wrong_m": 8, "hidden": [64], "epochs": 10, "batch_size": 32,
           "lr": 0.1, "momentum": 0.9},
    full={"seed": 0, "q": 0.1, "block_sizes": list(range(1, 13)), "n_bits": 110880, "entropy_grid": 101,
          "entropy_qs": [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9], "entropy_m": 8,
          "wrong_ps": [0.02, 0.05, 0.2, 0.3, 0.5], "wrong_m": 8, "hidden": [64], "epochs": 30, "batch_size": 32,
          "lr": 0.1, "momentum": 0.9},
))
