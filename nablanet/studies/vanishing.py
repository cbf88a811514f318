"""Study ``vanishing``: how fast does each hidden layer learn, at initialization and during
training, as a function of depth, activation and initialization? (source notes 002 and 004;
Nielsen, *Neural Networks and Deep Learning*, ch. 5.)

Speed of learning. For an MLP  zˡ = Wˡ aˡ⁻¹ + bˡ,  aˡ = f(zˡ)  (hidden layers l = 1..L, sigmoid
outputs a = σ(z^{L+1})), the error of layer l is δˡ = ∂C/∂zˡ = ∂C/∂bˡ, and backpropagation gives

    δˡ = f′(zˡ) ⊙ (Wˡ⁺¹)ᵀ δˡ⁺¹      so   δ¹ = f′(z¹) ⊙ W²ᵀ (f′(z²) ⊙ W³ᵀ ( … δᴸ))

(the notes' BP2, Nielsen's eq. 122 for a chain of one neuron per layer:
∂C/∂b₁ = σ′(z₁) w₂ σ′(z₂) w₃ σ′(z₃) w₄ σ′(z₄) ∂C/∂a₄). With σ′ ≤ ¼ and weights of order one,
each layer back multiplies ‖δ‖ by a factor below one: the earlier layers learn more slowly. The
"speed of learning" of layer l is the length ‖δˡ‖ of the bias gradient of the cost averaged over a
batch of N images (Nielsen's ``generate_gradient.py`` sums the per-image ∂Cₓ/∂bˡ and divides by N):

    ‖δˡ‖ = ‖(1/N) Σₙ ∂Cₙ/∂bˡ‖,     Cₙ = −Σₖ [yₖ ln aₖ + (1 − yₖ) ln(1 − aₖ)]   (cross-entropy)
                                    or Cₙ = ½ ‖aₙ − yₙ‖²                         (quadratic)

The summed ("sum" reduction) gradient is exactly N times the averaged one; the study records both
for the Nielsen setting and shows that only the average gives his magnitudes.

Nielsen reports for sigmoid [784, 30, 30, 30, 30, 10] at initialization, on 1,000 training images,
‖δˡ‖ ≈ 0.003, 0.017, 0.070, 0.285: the first hidden layer learns about 100 times more slowly than
the last. His script builds ``network2.Network(sizes)``, whose defaults are the cross-entropy cost
and weights ~ N(0, 1/n_in), biases ~ N(0, 1) ("scaled_normal" here); the N(0, 1) weights of his
chapter 1 ("normal") with the quadratic cost give a much smaller spread, which the study measures
too.

Initializations (n_in = fan-in of the layer):
    normal          W, b ~ N(0, 1)                            Nielsen ch. 1 (large_weight_initializer)
    scaled_normal   W ~ N(0, 1/n_in), b ~ N(0, 1)             Nielsen ch. 3, network2's default
    pytorch         W, b ~ U(±1/√n_in)                        nn.Linear's (and PyTorch's) default
    xavier          W ~ U(±√(6/(n_in + n_out))), b = 0        Glorot & Bengio 2010 (gain 1)
    kaiming         W ~ N(0, 2/n_in), b = 0                   He et al. 2015 (ReLU gain √2)

Data: the MNIST test images (``t10k``, pixels / 255) from ``mnist_root``, by default nablanet's
cache folder ``<cache>/mnist`` (``$NABLANET_CACHE`` or ~/.cache/nablanet; ``nablanet study
vanishing --download`` fetches them there); the probe batch is the first ``n_probe`` of them. When
those files are absent the study falls back to scikit-learn's 8×8 digits (64 inputs) and says so in
the first sentence of its verdict and the first line of its report. During training (mini-batch
SGD on the cost above, batch mean, sum over the 10 outputs, on up to ``n_train`` images after the
probe batch) the speeds and the accuracy are measured on the same probe batch, which is never trained
on: the probe accuracy is a test accuracy. A trained run whose accuracy stays within a few points of
chance is reported as a run that did not learn, not as a finding (``studies._guard``).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

import nablanet as nn
from nablanet.studies._guard import did_not_learn, learned, over_seeds
from nablanet.studies.base import Answer, Figure, Records, Study, Verdict, pyplot, register
from nablanet.studies.settings import POSITIVE, Check

NIELSEN_SPEEDS = (0.003, 0.017, 0.070, 0.285)
"""Nielsen's ‖δˡ‖ for the four hidden layers of a sigmoid [784, 30, 30, 30, 30, 10] at init."""

ACTIVATIONS: dict[str, type[nn.Layer]] = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}
INITS = ("normal", "scaled_normal", "pytorch", "xavier", "kaiming")
WEIGHTS = {"normal": "N(0, 1)", "scaled_normal": "N(0, 1/n_in)", "pytorch": "U(±1/√n_in)",
           "xavier": "U(±√(6/(n_in + n_out)))", "kaiming": "N(0, 2/n_in)"}
"""Each init's weight distribution, for the verdict's sentences (the module docstring has the biases)."""
COSTS = ("cross_entropy", "quadratic")
N_CLASSES = 10
"""Digits 0–9, in MNIST and in the 8×8 fallback: chance is 1/10."""


# -- data ---------------------------------------------------------------------------------------------
class Data(NamedTuple):
    """Images x (N, i) in [0, 1], one-hot targets d (N, 10), where they came from, and the fallback
    sentence when they are not the data the configuration asked for (else None)."""

    x: np.ndarray
    d: np.ndarray
    source: str
    fallback: str | None


def mnist_folder(cfg: dict[str, Any]) -> Path:
    """``mnist_root`` when set, else nablanet's MNIST cache folder ``<cache>/mnist``."""
    root = cfg.get("mnist_root")
    return Path(root).expanduser() if root is not None else nn.data.get_cache_dir() / "mnist"


def load_data(cfg: dict[str, Any]) -> Data:
    """All images and targets, float64. ``cfg["data"]``: "mnist" (the t10k images; the digits, said
    in ``fallback``, when the files are absent) or "digits"."""
    if cfg["data"] not in ("mnist", "digits"):
        raise ValueError(f"vanishing: data={cfg['data']!r}; expected 'mnist' or 'digits'. "
                         "Fix: --set data=digits for the 8×8 digits.")
    fallback = None
    if cfg["data"] == "mnist":
        root = mnist_folder(cfg)
        try:
            images, labels = nn.data.load_mnist_arrays(root, kind="t10k")
        except FileNotFoundError:
            fallback = (f"This run used scikit-learn's 8×8 digits, not MNIST: the MNIST t10k files are not in "
                        f"{root}, so its numbers are not comparable with Nielsen's. To use MNIST: nablanet study "
                        "vanishing --download (or --data-root DIR, a folder that holds them).")
        else:
            x = images.reshape(len(images), -1).astype(np.float64) / 255.0
            return Data(x, np.eye(10)[labels], describe(cfg, "mnist", None), None)
    splits = nn.data.load_digits(seed=0, validation=0.0, test=0.0, dtype=np.float64)
    x, y = splits.train
    return Data(np.asarray(x), np.eye(10)[np.asarray(y)], describe(cfg, "digits", fallback), fallback)


def describe(cfg: dict[str, Any], data: str, fallback: str | None) -> str:
    """Where the images came from, in words: ``data`` ("mnist" or "digits") as ``load_data`` read them."""
    if data == "mnist":
        return f"the MNIST test images (t10k) from {mnist_folder(cfg)}"
    return "scikit-learn's 8×8 digits" + (" (MNIST not found)" if fallback else "")


def fetch_data(cfg: dict[str, Any]) -> str | None:
    """Download the MNIST t10k files ``measure`` reads under ``cfg`` (``--download``); say where they are."""
    if cfg["data"] != "mnist":
        return None
    root = mnist_folder(cfg)
    nn.data.load_mnist_arrays(root, kind="t10k", download=True)
    return f"the MNIST t10k files are in {root}"


def check_config(cfg: dict[str, Any]) -> None:
    """Settings that must fit together: a learning rate per trained activation, the figure's depth measured."""
    missing = [a for a in cfg["train_activations"] if a not in cfg["lr"]]
    if missing:
        raise ValueError(f"vanishing: lr={cfg['lr']!r} has no learning rate for {missing} (train_activations="
                         f"{cfg['train_activations']!r}). Fix: --set 'lr={{\"sigmoid\": 0.5, \"tanh\": 0.1, "
                         "\"relu\": 0.1}'.")
    if cfg["figure_depth"] not in cfg["depths"]:
        raise ValueError(f"vanishing: figure_depth={cfg['figure_depth']!r} is not one of depths={cfg['depths']!r}. "
                         f"Fix: --set figure_depth={cfg['depths'][-1]}.")


# -- models -------------------------------------------------------------------------------------------
def init_linear(layer: nn.Linear, init: str, rng: np.random.Generator) -> None:
    """Fill ``layer``'s weight and bias in place by the rule named ``init`` (see the module docstring)."""
    w, b = layer.weight, layer.bias
    if b is None:
        raise ValueError("init_linear expects a Linear layer with a bias (the study measures bias gradients)")
    fan_in = layer.in_features
    if init == "normal":
        nn.init.normal_(w, 0.0, 1.0, rng=rng)
        nn.init.normal_(b, 0.0, 1.0, rng=rng)
    elif init == "scaled_normal":
        nn.init.normal_(w, 0.0, 1.0 / math.sqrt(fan_in), rng=rng)
        nn.init.normal_(b, 0.0, 1.0, rng=rng)
    elif init == "pytorch":
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(w, -bound, bound, rng=rng)
        nn.init.uniform_(b, -bound, bound, rng=rng)
    elif init == "xavier":
        nn.init.xavier_uniform_(w, rng=rng)
        nn.init.zeros_(b)
    elif init == "kaiming":
        nn.init.kaiming_normal_(w, nonlinearity="relu", rng=rng)
        nn.init.zeros_(b)
    else:
        raise ValueError(f"vanishing: init={init!r}; expected one of {list(INITS)}. Fix: use one of those names.")


def build_mlp(n_in: int, depth: int, width: int, activation: str, init: str, seed: int) -> nn.Sequential:
    """Linear–f blocks (``depth`` hidden layers of ``width``) and a Linear output of 10 logits.

    Hidden layer l (1-based) is module 2(l − 1); its bias gradient is δˡ. The output sigmoid belongs
    to the cost: BCE-with-logits for cross-entropy, an appended Sigmoid for the quadratic cost.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"vanishing: activation={activation!r}; expected one of {list(ACTIVATIONS)}. "
                         "Fix: use one of those names.")
    rng = np.random.default_rng(seed)
    layers: list[nn.Layer] = []
    sizes = [n_in, *([width] * depth), 10]
    for k, (i, o) in enumerate(itertools.pairwise(sizes)):
        lin = nn.Linear(i, o, dtype=np.float64, rng=rng)
        init_linear(lin, init, rng)
        layers.append(lin)
        if k < depth:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def _loss(cost: str) -> nn.Loss:
    """The summed cost Σₙ Cₙ on the logits z (sigmoid outputs a = σ(z) inside)."""
    if cost == "cross_entropy":
        return nn.BCEWithLogitsLoss(reduction="sum")
    if cost == "quadratic":
        return nn.QuadraticLoss(reduction="sum")
    raise ValueError(f"vanishing: cost={cost!r}; expected one of {list(COSTS)}. Fix: use one of those names.")


def speeds(model: nn.Sequential, x: np.ndarray, d: np.ndarray, cost: str = "cross_entropy",
           reduction: str = "mean") -> np.ndarray:
    """‖δˡ‖ for the hidden layers l = 1..L: the norm of ∂C/∂bˡ with C = (1/N) Σₙ Cₙ ("mean") or
    C = Σₙ Cₙ ("sum")."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"vanishing: reduction={reduction!r}; expected 'mean' or 'sum'")
    net: nn.Layer = model if cost == "cross_entropy" else nn.Sequential(*model, nn.Sigmoid())
    _, grads = nn.value_and_grad(net, _loss(cost), x, d)
    scale = 1.0 / len(x) if reduction == "mean" else 1.0
    depth = (len(model) - 1) // 2
    return np.array([np.linalg.norm(grads[f"{2 * k}.bias"]) * scale for k in range(depth)])


# -- the three measurements ----------------------------------------------------------------------------
def _nielsen_part(cfg: dict[str, Any], x: np.ndarray, d: np.ndarray) -> list[dict[str, Any]]:
    """Sigmoid [n_in, 30, 30, 30, 30, 10] at init: inits × costs × reductions × seeds."""
    rows = []
    for init in ("scaled_normal", "normal"):
        for cost in COSTS:
            for seed in range(cfg["seeds"]):
                model = build_mlp(x.shape[1], 4, 30, "sigmoid", init, seed)
                for reduction in ("mean", "sum"):
                    for layer, s in enumerate(speeds(model, x, d, cost, reduction), start=1):
                        rows.append({"part": "nielsen", "activation": "sigmoid", "init": init, "cost": cost,
                                     "reduction": reduction, "depth": 4, "seed": seed, "step": 0,
                                     "layer": layer, "speed": float(s)})
    return rows


def _init_part(cfg: dict[str, Any], x: np.ndarray, d: np.ndarray) -> list[dict[str, Any]]:
    rows = []
    for activation in cfg["activations"]:
        for init in cfg["inits"]:
            for depth in cfg["depths"]:
                for seed in range(cfg["seeds"]):
                    model = build_mlp(x.shape[1], depth, cfg["width"], activation, init, seed)
                    for layer, s in enumerate(speeds(model, x, d, cfg["cost"]), start=1):
                        rows.append({"part": "init", "activation": activation, "init": init, "cost": cfg["cost"],
                                     "reduction": "mean", "depth": depth, "seed": seed, "step": 0,
                                     "layer": layer, "speed": float(s)})
    return rows


def held_out_split(x: np.ndarray, d: np.ndarray, cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The training images: up to ``n_train`` of those after the first ``n_probe``, so that no probe image
    is ever trained on."""
    xt, dt = x[cfg["n_probe"]: cfg["n_probe"] + cfg["n_train"]], d[cfg["n_probe"]: cfg["n_probe"] + cfg["n_train"]]
    if len(xt) == 0:
        raise ValueError(f"vanishing: n_probe={cfg['n_probe']} leaves none of the {len(x)} images to train on "
                         f"(the probes are held out). Fix: --set n_probe={len(x) // 2}.")
    return xt, dt


def _train_run(cfg: dict[str, Any], x: np.ndarray, d: np.ndarray, activation: str, init: str,
               seed: int) -> list[dict[str, Any]]:
    """One SGD run on C = (1/B) Σₙ Cₙ over ``n_train`` images after the probe batch (held out: the probe
    accuracy is a test accuracy); speeds on the probe batch every ``probe_every`` steps and after the last."""
    xp, dp = x[: cfg["n_probe"]], d[: cfg["n_probe"]]
    xt, dt = held_out_split(x, d, cfg)
    depth, loss = cfg["train_depth"], _loss(cfg["cost"])
    model = build_mlp(x.shape[1], depth, cfg["width"], activation, init, seed)
    net: nn.Layer = model if cfg["cost"] == "cross_entropy" else nn.Sequential(*model, nn.Sigmoid())
    opt = nn.optim.SGD(model.parameters(), lr=cfg["lr"][activation])
    rng = np.random.default_rng(10_000 + seed)
    steps_per_epoch = math.ceil(len(xt) / cfg["batch_size"])
    rows: list[dict[str, Any]] = []

    def probe(step: int) -> None:
        acc = float(np.mean(model(xp).argmax(1) == dp.argmax(1)))
        for layer, s in enumerate(speeds(model, xp, dp, cfg["cost"]), start=1):
            rows.append({"part": "training", "activation": activation, "init": init, "cost": cfg["cost"],
                         "reduction": "mean", "depth": depth, "seed": seed, "step": step,
                         "epoch": step / steps_per_epoch, "layer": layer, "speed": float(s),
                         "probe_accuracy": acc, "train_images": len(xt)})

    step = 0
    for _ in range(cfg["epochs"]):
        for xb, db in nn.data.batches(xt, dt, cfg["batch_size"], rng=rng):
            if step % cfg["probe_every"] == 0:
                probe(step)
            y, caches = net.forward(xb, train=True)
            _, lcache = loss.forward(y, db)
            opt.zero_grad()
            net.backward(caches, loss.vjp(lcache, 1.0 / len(xb)))
            opt.step()
            step += 1
    probe(step)
    return rows


def _training_part(cfg: dict[str, Any], x: np.ndarray, d: np.ndarray) -> list[dict[str, Any]]:
    rows = []
    for activation in cfg["train_activations"]:
        for init in cfg["train_inits"]:
            for seed in range(cfg["train_seeds"]):
                rows += _train_run(cfg, x, d, activation, init, seed)
    return rows


# -- summaries ----------------------------------------------------------------------------------------
def _select(records: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def speed_table(records: list[dict[str, Any]], **match: Any) -> np.ndarray:
    """Speeds (seeds, layers) of the matching rows."""
    rows = _select(records, **match)
    seeds = sorted({r["seed"] for r in rows})
    layers = sorted({r["layer"] for r in rows})
    table = np.full((len(seeds), len(layers)), np.nan)
    for r in rows:
        table[seeds.index(r["seed"]), layers.index(r["layer"])] = r["speed"]
    return table


def ratio_stats(table: np.ndarray) -> dict[str, float]:
    """Median, min, max and quartiles over seeds of ‖δᴸ‖/‖δ¹‖ (last over first hidden layer)."""
    r = table[:, -1] / table[:, 0]
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    return {"median": float(med), "min": float(r.min()), "max": float(r.max()), "q1": float(q1), "q3": float(q3)}


def _per_layer_factor(records: list[dict[str, Any]], activation: str, init: str, depths: list[int]) -> float:
    """g in  median ratio(L) ≈ c · g^(L − 1): the factor by which one more layer back slows learning."""
    if len(depths) < 2:
        return float("nan")
    med = [ratio_stats(speed_table(records, part="init", activation=activation, init=init, depth=L))["median"]
           for L in depths]
    slope = np.polyfit(np.asarray(depths, dtype=float) - 1, np.log(med), 1)[0]
    return float(np.exp(slope))


def _fmt_range(s: dict[str, float]) -> str:
    return f"{s['median']:.3g} (min–max {s['min']:.3g}–{s['max']:.3g})"


# -- measure ------------------------------------------------------------------------------------------
def measure(cfg: dict[str, Any]) -> Records:
    """The three parts on the probe batch (the first ``n_probe`` images); each row also says which data
    it was measured on (``data``) and the size of the probe batch (``probe_images``)."""
    x, d, source, fallback = load_data(cfg)
    xp, dp = x[: cfg["n_probe"]], d[: cfg["n_probe"]]
    rows = _nielsen_part(cfg, xp, dp) + _init_part(cfg, xp, dp) + _training_part(cfg, x, d)
    for r in rows:
        r["data"] = "mnist" if "MNIST test" in source else "digits"
        r["probe_images"] = len(xp)
    return Records(rows, fallback)


# -- verdict ------------------------------------------------------------------------------------------
NIELSEN_SETTINGS: tuple[tuple[str, str, str], ...] = tuple(
    (i, c, red) for i in ("scaled_normal", "normal") for c in COSTS for red in ("mean", "sum"))
"""The (init, cost, reduction) settings tried in Nielsen's net, to see which gives his numbers."""


def _nielsen_medians(rows: list[dict[str, Any]], init: str, cost: str, reduction: str) -> np.ndarray:
    """Median over seeds of ‖δˡ‖ in Nielsen's net under one setting, per hidden layer."""
    return np.median(speed_table(rows, part="nielsen", init=init, cost=cost, reduction=reduction), axis=0)


def _nielsen_ratio(rows: list[dict[str, Any]], init: str, cost: str) -> dict[str, float]:
    return ratio_stats(speed_table(rows, part="nielsen", init=init, cost=cost, reduction="mean"))


def _nielsen_errors(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], float]:
    """For each setting, the largest per-layer |log10(ours/Nielsen)| of the median speeds."""
    return {s: float(np.max(np.abs(np.log10(_nielsen_medians(rows, *s) / np.asarray(NIELSEN_SPEEDS)))))
            for s in NIELSEN_SETTINGS}


def verdict(records: Records, cfg: dict[str, Any]) -> Verdict:
    rows = records.rows
    source = describe(cfg, rows[0]["data"], records.fallback)
    log_err = _nielsen_errors(rows)
    head: dict[str, Any] = {"data": source, "probe images": rows[0]["probe_images"]}
    nb = _nielsen_medians(rows, "scaled_normal", "cross_entropy", "mean")
    for layer, s in enumerate(nb, start=1):
        head[f"nielsen setting: ‖δ{layer}‖ median"] = float(s)
    head["nielsen setting: last/first median"] = _nielsen_ratio(rows, "scaled_normal", "cross_entropy")["median"]
    head["nielsen setting: max |log10(ours/Nielsen)|"] = log_err[("scaled_normal", "cross_entropy", "mean")]
    best = min(log_err, key=log_err.__getitem__)
    head["best match to Nielsen"] = "/".join(best)
    head["nielsen init, quadratic cost: last/first median"] = _nielsen_ratio(rows, "scaled_normal", "quadratic")[
        "median"]
    head["N(0,1) quadratic: last/first median"] = _nielsen_ratio(rows, "normal", "quadratic")["median"]
    head["N(0,1) quadratic: max |log10(ours/Nielsen)|"] = log_err[("normal", "quadratic", "mean")]
    head |= _init_numbers(rows, cfg) | _training_numbers(rows, cfg)
    parts = [_nielsen_sentence(rows, cfg, head, log_err[best]), _answer_sentence(head)]
    parts += _init_sentences(cfg, head) + _training_sentences(cfg, head)
    return Verdict(" ".join(parts), head)


def _init_numbers(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    """At init: last/first over seeds for every activation × init at the figure depth, and the factor per
    layer over the depth sweep."""
    head: dict[str, Any] = {}
    for a in cfg["activations"]:
        for i in cfg["inits"]:
            st = ratio_stats(speed_table(rows, part="init", activation=a, init=i, depth=cfg["figure_depth"]))
            head[f"{a}/{i}: last/first median"] = st["median"]
            head[f"{a}/{i}: last/first min"] = st["min"]
            head[f"{a}/{i}: last/first max"] = st["max"]
    for a in cfg["activations"]:
        for i in cfg["inits"]:
            head[f"{a}/{i}: factor per layer"] = _per_layer_factor(rows, a, i, cfg["depths"])
    return head


def training_per_seed(rows: list[dict[str, Any]], activation: str, init: str) -> dict[str, np.ndarray]:
    """One value per seed (sorted) of a trained (activation, init): the held-out probe accuracy at the
    end, and last/first at step 0 ("init"), its median over the later probes ("during") and at the end."""
    run = _select(rows, part="training", activation=activation, init=init)
    last, seeds = max(r["step"] for r in run), sorted({r["seed"] for r in run})
    later = sorted({r["step"] for r in run} - {0})

    def ratio(step: int) -> np.ndarray:
        table = speed_table(run, step=step)
        return table[:, -1] / table[:, 0]

    accuracy = {r["seed"]: r["probe_accuracy"] for r in run if r["step"] == last and r["layer"] == 1}
    return {"accuracy": np.array([accuracy[s] for s in seeds]), "init": ratio(0),
            "during": np.median([ratio(s) for s in later], axis=0), "end": ratio(last)}


def _training_numbers(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    """During training, per (activation, init): the held-out accuracy at the end over all seeds, and
    last/first (at init, median over training, at the end) over the seeds that learned (all seeds
    when none did: the verdict then says the run did not learn)."""
    head: dict[str, Any] = {}
    train = _select(rows, part="training")
    if train:
        head["training images"] = train[0]["train_images"]
        head["training steps"] = max(r["step"] for r in train)
    for a in cfg["train_activations"]:
        for i in cfg["train_inits"]:
            per, p = training_per_seed(rows, a, i), f"training {a}/{i}"
            ok = np.array([learned(acc, N_CLASSES) for acc in per["accuracy"]])
            use = ok if ok.any() else np.ones_like(ok)
            head[f"{p}: seeds"], head[f"{p}: seeds that learned"] = len(ok), int(ok.sum())
            head[f"{p}: probe accuracy at end"] = float(np.median(per["accuracy"]))
            head[f"{p}: probe accuracy at end, over seeds"] = over_seeds(per["accuracy"].tolist(), ".1%")
            for key, name in (("init", "last/first at init"), ("during", "last/first, median over training"),
                              ("end", "last/first at end")):
                head[f"{p}: {name}"] = float(np.median(per[key][use]))
                head[f"{p}: {name}, over seeds"] = over_seeds(per[key][use].tolist())
    return head


def _nielsen_sentence(rows: list[dict[str, Any]], cfg: dict[str, Any], head: dict[str, Any],
                      best_error: float) -> str:
    ours = ", ".join(f"{head[f'nielsen setting: ‖δ{layer}‖ median']:.3g}" for layer in range(1, 5))
    theirs = ", ".join(f"{s:g}" for s in NIELSEN_SPEEDS)
    return (
        f"Data: {head['data']} (probe batch of {head['probe images']} images); medians over {cfg['seeds']} seeds. "
        f"Nielsen's sigmoid [n, 30, 30, 30, 30, 10] at init with his script's settings (weights N(0, 1/n_in), "
        f"biases N(0, 1), cross-entropy, gradient averaged over the batch): ‖δˡ‖ = {ours} (he reports {theirs}); "
        f"last/first = {_fmt_range(_nielsen_ratio(rows, 'scaled_normal', 'cross_entropy'))}. The closest of the "
        f"{len(NIELSEN_SETTINGS)} settings tried is {head['best match to Nielsen']} (largest per-layer deviation "
        f"×{10 ** best_error:.2f}); "
        f"summing instead of averaging multiplies every speed by {head['probe images']}, and N(0, 1) weights with the "
        f"quadratic cost give last/first = {_fmt_range(_nielsen_ratio(rows, 'normal', 'quadratic'))}, not ~100.")


def _answer_sentence(head: dict[str, Any]) -> str:
    """The direct answer to note 002: cross-entropy does not remove the hidden layers' σ′ factors."""
    ce = head["nielsen setting: last/first median"]
    return (f"The answer to note 002: Nielsen's setting already uses the cross-entropy cost, which cancels σ′ only "
            f"in the output error (δ = a − y); every hidden layer's δˡ = σ′(zˡ) ⊙ Wˡ⁺¹ᵀ δˡ⁺¹ keeps its own σ′ "
            f"(BP2), so the ~{_order(ce)}× spread remains with cross-entropy: last/first = {ce:.3g} (the quadratic "
            f"cost in the same net: {head['nielsen init, quadratic cost: last/first median']:.3g}).")


def _order(x: float) -> str:
    """``x`` rounded to one significant digit, in words for a sentence ("100", "30")."""
    return f"{float(f'{x:.0e}'):g}"


def _init_sentences(cfg: dict[str, Any], head: dict[str, Any]) -> list[str]:
    def median(a: str, i: str) -> str | None:
        key = f"{a}/{i}: last/first median"
        return f"{head[key]:.3g}" if key in head else None

    parts = []
    sig = [f"{i} {median('sigmoid', i)}" for i in cfg["inits"] if median("sigmoid", i)]
    if sig:
        parts.append(f"Sigmoid nets of depth {cfg['figure_depth']}, last/first hidden-layer speed by init: "
                     f"{', '.join(sig)}.")
    xav = [f"{a} {median(a, 'xavier')}" for a in cfg["activations"] if median(a, "xavier")]
    if xav:
        parts.append(f"With Xavier init: {', '.join(xav)}.")
    relu = [f"{i} {median('relu', i)}" for i in cfg["inits"] if median("relu", i)]
    if relu:
        parts.append(f"ReLU by init: {', '.join(relu)}.")
        parts += [_exploding_sentence(cfg, head, i) for i in cfg["inits"] if head[f"relu/{i}: last/first median"] < 0.5]
    key = "sigmoid/scaled_normal: factor per layer"
    if key in head and np.isfinite(head[key]):
        parts.append(f"Over depths {cfg['depths']}, each extra sigmoid layer (scaled_normal) multiplies the "
                     f"last/first ratio by {head[key]:.2f}.")
    return parts


def _exploding_sentence(cfg: dict[str, Any], head: dict[str, Any], init: str) -> str:
    """ReLU whose first layer learns faster than its last: the gradients explode going back."""
    ratio, factor = head[f"relu/{init}: last/first median"], head[f"relu/{init}: factor per layer"]
    per_layer = (f"; each extra layer multiplies last/first by {factor:.2f} (over depths {cfg['depths']})"
                 if np.isfinite(factor) else "")
    he_key = "relu/kaiming: last/first median"
    he = (f"; He's init (kaiming), made to keep that factor near 1, gives last/first = {head[he_key]:.3g}"
          if he_key in head else "")
    return (f"ReLU with {init} weights ({WEIGHTS[init]}) has exploding gradients, not vanishing ones: last/first = "
            f"{ratio:.3g}, the first hidden layer's gradient is {1 / ratio:.3g}× the last's{per_layer}{he}.")


def _training_sentences(cfg: dict[str, Any], head: dict[str, Any]) -> list[str]:
    """Per trained (activation, init): the held-out accuracy over seeds and last/first at init, during and
    at the end, or, for a run at chance level, that it did not learn and what to change."""
    if "training images" not in head:
        return []
    parts = [f"Training: {cfg['epochs']} epoch(s) of mini-batch SGD (batch {cfg['batch_size']}, "
             f"{head['training steps']} steps) on {head['training images']} images; the {head['probe images']} "
             f"probe images are held out, so the probe accuracy is a test accuracy. Over {cfg['train_seeds']} "
             f"seed(s), mean ± sd (min–max):"]
    for a in cfg["train_activations"]:
        for i in cfg["train_inits"]:
            p, lr = f"training {a}/{i}", cfg["lr"][a]
            k, n = head[f"{p}: seeds that learned"], head[f"{p}: seeds"]
            if k == 0:
                parts.append(did_not_learn(f"{a}/{i} (lr {lr}, median over seeds)", head[f"{p}: probe accuracy at end"],
                                           N_CLASSES, f"Train longer (--set epochs={3 * cfg['epochs']}) or raise "
                                           f"lr[{a!r}] above {lr}."))
                continue
            left = f" ({n - k} of {n} seeds stayed at chance and are left out)" if k < n else ""
            parts.append(f"{a}/{i} (lr {lr}): held-out accuracy {head[f'{p}: probe accuracy at end, over seeds']}; "
                         f"last/first {head[f'{p}: last/first at init, over seeds']} at init, "
                         f"{head[f'{p}: last/first, median over training, over seeds']} during training (median "
                         f"over the probes after step 0), {head[f'{p}: last/first at end, over seeds']} at the "
                         f"end{left}.")
    return parts


# -- figures ------------------------------------------------------------------------------------------
def figures(records: Records, cfg: dict[str, Any]) -> dict[str, Figure]:
    rows, fd = records.rows, cfg["figure_depth"]
    data = "MNIST t10k" if rows[0]["data"] == "mnist" else "digits"
    return {
        "nielsen": Figure(_nielsen_figure(rows), f"Speed of learning ‖δˡ‖ (batch-mean bias gradient, {data}) of "
                          "the four hidden layers of a sigmoid net at init: median and min–max band over seeds for "
                          "two inits and two costs; stars: Nielsen's numbers."),
        "speeds_at_init": Figure(_speeds_figure(rows, cfg), f"‖δˡ‖ per hidden layer at init, depth {fd}, "
                                 "cross-entropy on sigmoid outputs: median and min–max over seeds, by activation "
                                 "and initialization."),
        "ratio_vs_depth": Figure(_ratio_figure(rows, cfg), "Last over first hidden layer's speed at init vs depth "
                                 "(median, whiskers min–max over seeds); 1 means every layer learns equally fast."),
        "training": Figure(_training_figure(rows, cfg), "‖δˡ‖ on the held-out probe batch during "
                           f"{cfg['epochs']} epoch(s) of mini-batch SGD (median over {cfg['train_seeds']} seed(s)), "
                           f"depth {cfg['train_depth']}."),
    }


def _band(ax: Any, xs: Any, table: np.ndarray, label: str, **kw: Any) -> None:
    med = np.median(table, axis=0)
    line = ax.plot(xs, med, marker="o", label=label, **kw)[0]
    ax.fill_between(xs, table.min(axis=0), table.max(axis=0), color=line.get_color(), alpha=0.15)


def _nielsen_figure(rows: list[dict[str, Any]]) -> Any:
    layers = np.arange(1, 5)
    fig, ax = pyplot().subplots(figsize=(6.5, 4.2))
    for (i, c, red) in NIELSEN_SETTINGS:
        if red == "mean":
            _band(ax, layers, speed_table(rows, part="nielsen", init=i, cost=c, reduction=red), f"{i}, {c}")
    ax.plot(layers, NIELSEN_SPEEDS, "k*", markersize=12, label="Nielsen (ch. 5)")
    ax.set(yscale="log", xlabel="hidden layer l", ylabel="‖δˡ‖", xticks=layers,
           title="sigmoid [n,30,30,30,30,10] at init")
    ax.legend(fontsize=8)
    fig.suptitle("Do the early layers of a sigmoid net learn more slowly than the late ones?")
    fig.tight_layout()
    return fig


def _speeds_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    acts, fd = cfg["activations"], cfg["figure_depth"]
    fig, axes = pyplot().subplots(1, len(acts), figsize=(4.2 * len(acts), 3.8), squeeze=False)
    for ax, a in zip(axes[0], acts, strict=True):
        for i in cfg["inits"]:
            _band(ax, np.arange(1, fd + 1), speed_table(rows, part="init", activation=a, init=i, depth=fd), i)
        ax.set(yscale="log", title=f"{a}, depth {fd}, at init", xlabel="hidden layer l", ylabel="‖δˡ‖",
               xticks=np.arange(1, fd + 1))
        ax.legend(fontsize=7)
    fig.suptitle("How fast does each hidden layer learn at initialisation?")
    fig.tight_layout()
    return fig


def _ratio_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    acts = cfg["activations"]
    fig, axes = pyplot().subplots(1, len(acts), figsize=(4.2 * len(acts), 3.8), squeeze=False)
    for ax, a in zip(axes[0], acts, strict=True):
        for i in cfg["inits"]:
            st = [ratio_stats(speed_table(rows, part="init", activation=a, init=i, depth=L)) for L in cfg["depths"]]
            med = np.array([s["median"] for s in st])
            err = np.array([[s["median"] - s["min"] for s in st], [s["max"] - s["median"] for s in st]])
            ax.errorbar(cfg["depths"], med, yerr=err, marker="o", capsize=3, label=i)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set(yscale="log", title=f"{a}: ‖δᴸ‖ / ‖δ¹‖ at init", xlabel="hidden layers L", ylabel="last / first",
               xticks=cfg["depths"])
        ax.legend(fontsize=7)
    fig.suptitle("How does the gap between the first and last layer grow with depth?")
    fig.tight_layout()
    return fig


def _training_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    ta, ti = cfg["train_activations"], cfg["train_inits"]
    fig, axes = pyplot().subplots(len(ta), len(ti), figsize=(4.2 * len(ti), 3.2 * len(ta)), squeeze=False)
    for row, a in zip(axes, ta, strict=True):
        for ax, i in zip(row, ti, strict=True):
            run = _select(rows, part="training", activation=a, init=i)
            probes = sorted({r["step"] for r in run})
            for layer in range(1, cfg["train_depth"] + 1):
                curve = [np.median([r["speed"] for r in run if r["step"] == s and r["layer"] == layer])
                         for s in probes]
                ax.plot(probes, curve, label=f"hidden layer {layer}")
            ax.set(yscale="log", title=f"{a}, {i}", xlabel="SGD step", ylabel="‖δˡ‖ on the probe batch")
            ax.legend(fontsize=7)
    fig.suptitle("Does the gap between the layers persist while the network trains?")
    fig.tight_layout()
    return fig


_COMMON: dict[str, Any] = {
    "data": "mnist", "mnist_root": None, "n_probe": 1000, "width": 30, "cost": "cross_entropy",
    "figure_depth": 4, "train_depth": 4, "batch_size": 10, "lr": {"sigmoid": 0.5, "tanh": 0.1, "relu": 0.1},
}

def answer(records: Records, cfg: dict[str, Any]) -> Answer:
    """How much slower the first layer learns in Nielsen's sigmoid net, why cross-entropy leaves it, and
    what ReLU with He's init does (where the run measured it)."""
    _, head = verdict(records, cfg)
    ratio, relu = head["nielsen setting: last/first median"], head.get("relu/kaiming: last/first median")
    text = (f"In a deep sigmoid network the first hidden layer learns about {ratio:.0f} times more slowly than the "
            "last one at initialisation (Nielsen's network), because each layer's backpropagated error picks up "
            "another factor σ′, which is at most a quarter. The cross-entropy cost does not change that: it "
            "cancels σ′ only at the output.")
    if relu is not None:
        text += f" ReLU with He's initialisation keeps the layers' speeds within a factor of {max(relu, 1 / relu):.1f}."
    return Answer(text, "nielsen")


STUDY = register(Study(
    name="vanishing",
    question="How much more slowly do the early layers learn than the late ones, and how do the activation "
             "(sigmoid, tanh, ReLU) and the initialization (N(0,1), PyTorch's, Xavier) change that?",
    notes="Source notes 002 (vanishing gradients in sigmoid nets, Nielsen eq. 122) and 004 (backpropagation); "
          "Nielsen, Neural Networks and Deep Learning, ch. 5.",
    measure=measure,
    verdict=verdict,
    figures=figures,
    answer=answer,
    method="The speed of learning of a layer is the norm of its bias gradient ‖δˡ‖ on a batch of images. We "
           "measure it per hidden layer at initialisation for each activation, initialisation and depth over "
           "several seeds, reproduce Nielsen's numbers in his setting, and follow it on held-out images while "
           "networks train.",
    checks={"data": Check(choices=("mnist", "digits")),
            "mnist_root": Check(kind=str, example="~/data/mnist", hint="null means <cache>/mnist"),
            "cost": Check(choices=COSTS), "activations": Check(choices=tuple(ACTIVATIONS)),
            "train_activations": Check(choices=tuple(ACTIVATIONS)), "inits": Check(choices=INITS),
            "train_inits": Check(choices=INITS), "n_probe": POSITIVE, "figure_depth": POSITIVE,
            "train_depth": POSITIVE, "n_train": POSITIVE, "probe_every": POSITIVE},
    validate=check_config,
    fetch=fetch_data,
    data_root="mnist_root",
    quick={**_COMMON, "seeds": 3, "depths": [2, 4, 6], "activations": ["sigmoid", "tanh", "relu"],
           "inits": ["normal", "scaled_normal", "pytorch", "xavier", "kaiming"],
           "train_activations": ["sigmoid", "relu"], "train_inits": ["scaled_normal"],
           "train_seeds": 3, "epochs": 3, "n_train": 9000, "probe_every": 500},
    full={**_COMMON, "seeds": 10, "depths": [2, 3, 4, 5, 6], "activations": ["sigmoid", "tanh", "relu"],
          "inits": ["normal", "scaled_normal", "pytorch", "xavier", "kaiming"],
          "train_activations": ["sigmoid", "tanh", "relu"], "train_inits": ["scaled_normal", "pytorch", "xavier"],
          "train_seeds": 5, "epochs": 3, "n_train": 9000, "probe_every": 100},
))
