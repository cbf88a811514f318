"""Study ``label-smoothing``: what label smoothing does to the gradients reaching the non-target logits,
to confidence, and to calibration (source notes 001, "Label Smoothening").

Setting. A ReLU MLP with logits zₙ (n sample, c class, C classes), p = softmax(z), trained with
``nn.CrossEntropyLoss(label_smoothing=ε)`` for several ε from the same initialization and batch order.
The smoothed target (PyTorch's parametrization) and the per-sample loss are

    r_c = (1 − ε)[c = y] + ε/C,      ℓₙ = −Σ_c r_c log p_{n,c}.

The notes write the same target as 1 − (K − 1)e for the true class and e for the others: e = ε/C.

Gradients. With respect to the probabilities, ∂ℓ/∂p_c = −r_c/p_c: exactly 0 for every c ≠ y when
ε = 0 (the notes' complaint: "the derivative of the loss for all other classes is zero") and
−ε/(C p_c) ≠ 0 with smoothing. With respect to the logits (what backprop passes on),

    ∂ℓₙ/∂z_{n,c} = p_{n,c} − r_c:   c ≠ y:  p_c − ε/C      c = y:  p_y − (1 − ε + ε/C).

Without smoothing the non-target logit gradient p_c is always > 0 (it always pushes z_c down) and
vanishes only as the logit gap z_y − z_c → ∞: the minimizer is at infinity. With smoothing it changes
sign at p_c = ε/C (a non-target class below ε/C has its logit pushed *up*), and every gradient
vanishes at the finite optimum p = r, i.e. z_y − z_c = log((1 − ε + ε/C)/(ε/C)) for all c ≠ y
(4.51 for ε = 0.1, C = 10): the logits stay bounded and the confidence max_c p_c tends to 1 − ε + ε/C.
The study measures, on the training set at every epoch (epoch 0 = initialization), the mean of
|∂ℓₙ/∂z_{n,c}| over c ≠ yₙ and over c = yₙ (per-sample gradients of ℓₙ, from the loss's
``per_sample_vjp``; the batch gradient under reduction="mean" is 1/N of their sum), their signs, and
the logit gap z_y − mean_{c≠y} z_c against its optimum.

Calibration. With confidence κₙ = max_c p_{n,c} and correctness aₙ = [argmax_c p_{n,c} = yₙ] on the test
set, M = 15 equal-width bins Bₖ = (k/M, (k + 1)/M], k = 0 … M − 1 (κ = 0 goes into B₀),

    ECE = Σₖ (|Bₖ|/n) · |acc(Bₖ) − conf(Bₖ)|,   acc(Bₖ) = mean of aₙ,  conf(Bₖ) = mean of κₙ over n ∈ Bₖ,

empty bins contributing 0 (Guo et al. 2017, "On calibration of modern neural networks"). ECE ∈ [0, 1];
0 means every bin's accuracy equals its mean confidence. The reliability diagram plots acc(Bₖ)
against the bin. Smoothing lowers confidence by construction; whether that improves ECE depends on
whether the unsmoothed model was overconfident (mean confidence above accuracy) to begin with, so
the study runs two data sets: digits (an easy task, learned almost perfectly) and MNIST-1D (a hard
one, where an MLP overfits).

Uncertainty. A test set of a few hundred samples (359 digits) gives an ECE with a sampling error of a
few hundredths, and one seed's training is one draw. The study trains ``n_seeds`` seeds (≥ 3 in both
configurations) and reports each ECE as mean ± std over the seeds with their range, and a 95%
bootstrap interval over the test samples: the seeds' mean ECE ± 1.96 standard deviations of its
``n_boot`` bootstrap replicates (each replicate resamples every seed's test set with replacement and
averages the seeds' ECE, so the seeds stay fixed and the interval is the test sampling error of that
mean). The percentile interval is not used: ECE's plug-in estimate is biased upward on a resample (each
bin's |acc − conf| gains noise), which shifts the replicates above the estimate, off a small ECE by
more than the interval's width. The change of ECE against ε = 0 is bootstrapped paired (the same
resampled test samples for both ε, from the same seed's split), where that bias largely cancels: a
change is called an improvement or a worsening only when its interval excludes 0.

Records: ``part="epoch"`` one row per data set, seed, ε, epoch and split (train: gradient
statistics and logit gap; test: accuracy, confidence, ECE, NLL); ``part="bin"`` the final test
set's reliability bins (all seeds pooled); ``part="ece"`` one per data set and ε: the bootstrap
intervals of the mean ECE and of its change against ε = 0; ``part="check"`` the library's VJP
against p − r.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import nablanet as nn
from nablanet.layers.softmax import log_softmax, softmax
from nablanet.studies._guard import did_not_learn, learned, over_seeds
from nablanet.studies._models import mlp
from nablanet.studies.base import Answer, Figure, Records, Study, Verdict, pyplot, register
from nablanet.studies.settings import FRACTION, POSITIVE, Check


# -- calibration ------------------------------------------------------------------------------------
def _check_calibration_input(confidence: Any, correct: Any, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins={n_bins!r}: expected a positive int. Fix: pass e.g. n_bins=15.")
    kappa = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct)
    if kappa.ndim != 1 or hit.shape != kappa.shape or kappa.size == 0:
        raise ValueError(
            f"got confidence.shape={kappa.shape} and correct.shape={hit.shape}; expected two 1-D arrays of the same "
            "length n ≥ 1 (κₙ = max_c pₙ꜀ and aₙ = [argmax_c pₙ꜀ = yₙ]). Fix: pass p.max(1) and p.argmax(1) == y."
        )
    if not np.all(np.isfinite(kappa)) or kappa.min() < 0 or kappa.max() > 1:
        raise ValueError(
            f"confidence has values in [{np.nanmin(kappa):.4g}, {np.nanmax(kappa):.4g}]; expected probabilities in "
            "[0, 1]. Fix: pass softmax probabilities (p.max(1)), not logits."
        )
    if hit.dtype != bool and not np.all((hit == 0) | (hit == 1)):
        raise ValueError("correct must hold booleans or 0/1. Fix: pass p.argmax(1) == y.")
    return kappa, hit.astype(np.float64)


def calibration_bins(confidence: Any, correct: Any, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Reliability-diagram bins of equal width: Bₖ = (k/M, (k + 1)/M], κ = 0 in B₀ (M = ``n_bins``).

    Returns arrays of length M: ``lower``, ``upper`` (edges), ``count`` |Bₖ|, ``accuracy`` acc(Bₖ) and
    ``confidence`` conf(Bₖ) (both NaN for an empty bin). ``confidence`` κₙ ∈ [0, 1] (n,), ``correct``
    aₙ ∈ {0, 1} (n,).
    """
    kappa, hit = _check_calibration_input(confidence, correct, n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    k = np.clip(np.searchsorted(edges, kappa, side="left") - 1, 0, n_bins - 1)  # κ ∈ (e_k, e_k+1] → k
    count = np.bincount(k, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(k, weights=hit, minlength=n_bins) / count
        conf = np.bincount(k, weights=kappa, minlength=n_bins) / count
    return {"lower": edges[:-1], "upper": edges[1:], "count": count, "accuracy": acc, "confidence": conf}


def expected_calibration_error(confidence: Any, correct: Any, n_bins: int = 15) -> float:
    """ECE = Σₖ (|Bₖ|/n) |acc(Bₖ) − conf(Bₖ)| over ``calibration_bins`` (empty bins add 0); in [0, 1]."""
    bins = calibration_bins(confidence, correct, n_bins)
    used = bins["count"] > 0
    n = bins["count"].sum()
    return float(np.sum(bins["count"][used] / n * np.abs(bins["accuracy"][used] - bins["confidence"][used])))


# -- training and measurements ------------------------------------------------------------------------
def _data(name: str, seed: int) -> nn.data.Splits:
    if name == "digits":
        return nn.data.load_digits(seed=seed, dtype=np.float64)
    if name == "mnist1d":
        return nn.data.load_mnist1d(seed=seed, dtype=np.float64)
    raise ValueError(f"dataset {name!r}: expected 'digits' or 'mnist1d'")


def logit_gradient_stats(loss: nn.CrossEntropyLoss, z: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Per-sample logit gradients gₙ = ∂ℓₙ/∂zₙ (the loss's own VJP) split by target and non-target class:
    mean |g_c| over c ≠ y and over c = y, the mean signed non-target g_c, the fraction of non-target g_c < 0
    (logit pushed up), the logit gap z_y − mean_{c≠y} z_c, and the largest deviation of g from p − r."""
    n, n_classes = z.shape
    _, cache = loss.forward(z, y)
    g = loss.per_sample_vjp(cache)
    target = np.zeros((n, n_classes), dtype=bool)
    target[np.arange(n), y] = True
    eps = loss.label_smoothing
    r = (1 - eps) * target + eps / n_classes
    off = g[~target]
    return {
        "grad_nontarget_abs": float(np.mean(np.abs(off))),
        "grad_target_abs": float(np.mean(np.abs(g[target]))),
        "grad_nontarget_signed": float(np.mean(off)),
        "frac_nontarget_negative": float(np.mean(off < 0)),
        "logit_gap": float(np.mean(z[target] - z[~target].reshape(n, n_classes - 1).mean(axis=1))),
        "vjp_vs_p_minus_r": float(np.max(np.abs(g - (softmax(z, axis=1) - r)))),
    }


def heldout_metrics(z: np.ndarray, y: np.ndarray, n_bins: int) -> dict[str, float]:
    """Accuracy, mean confidence, ECE (``n_bins`` bins) and NLL (unsmoothed cross-entropy) of logits z."""
    p = softmax(z, axis=1)
    kappa, hit = p.max(axis=1), p.argmax(axis=1) == y
    return {"accuracy": float(hit.mean()), "confidence": float(kappa.mean()),
            "ece": expected_calibration_error(kappa, hit, n_bins),
            "nll": float(-np.mean(log_softmax(z, axis=1)[np.arange(len(y)), y]))}


class _EpochProbe(nn.callbacks.Callback):
    """At initialization and after every epoch: gradient statistics on the training set, calibration
    on the test set; rows tagged with ``tags``."""

    def __init__(self, model: nn.Sequential, loss: nn.CrossEntropyLoss, train: tuple[np.ndarray, np.ndarray],
                 test: tuple[np.ndarray, np.ndarray], n_bins: int, tags: dict[str, Any]) -> None:
        self.model, self.loss, self.train_set, self.test_set = model, loss, train, test
        self.n_bins, self.tags = n_bins, tags
        self.rows: list[dict[str, Any]] = []

    def _measure(self, epoch: int) -> None:
        (x, y), (xt, yt) = self.train_set, self.test_set
        z = self.model(x)
        stats = logit_gradient_stats(self.loss, z, y)
        stats["accuracy"] = float(np.mean(z.argmax(axis=1) == y))
        stats["confidence"] = float(softmax(z, axis=1).max(axis=1).mean())
        self.rows.append({"part": "epoch", **self.tags, "epoch": epoch, "split": "train", **stats})
        self.rows.append({"part": "epoch", **self.tags, "epoch": epoch, "split": "test",
                          **heldout_metrics(self.model(xt), yt, self.n_bins)})

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self._measure(0)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self._measure(epoch + 1)


def _train(dataset: str, splits: nn.data.Splits, eps: float, seed: int, cfg: dict[str, Any]
           ) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Train from the seed's initialization with label smoothing ε; rows per epoch, final test logits."""
    (x, y), (xt, yt) = splits.train, splits.test
    model = mlp(x.shape[1], cfg["hidden"], splits.n_classes, np.random.default_rng(seed))
    loss = nn.CrossEntropyLoss(label_smoothing=eps)
    tags = {"dataset": dataset, "seed": seed, "epsilon": eps, "n_classes": splits.n_classes}
    probe = _EpochProbe(model, loss, (x, y), (xt, yt), cfg["n_bins"], tags)
    opt = nn.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
    nn.fit(model, loss, opt, train=(x, y), epochs=cfg["epochs"][dataset], batch_size=cfg["batch_size"], seed=seed,
           callbacks=[probe])
    return probe.rows, model(xt)


# -- the study -------------------------------------------------------------------------------------------
def _check_config(cfg: dict[str, Any]) -> None:
    eps = cfg["epsilons"]
    if not eps or eps[0] != 0 or any(not 0 < e < 1 for e in eps[1:]):
        raise ValueError(f"epsilons={eps!r}: expected 0 first (the unsmoothed reference) and then values in (0, 1). "
                         "Fix: --set 'epsilons=[0, 0.1]'.")
    missing = [d for d in cfg["datasets"] if d not in cfg["epochs"]]
    if missing:
        raise ValueError(f"epochs={cfg['epochs']!r} has no entry for {missing}: expected epochs per data set. "
                         f"Fix: --set 'epochs={{\"digits\": 15, \"mnist1d\": 10}}'.")
    if isinstance(cfg["n_seeds"], bool) or not isinstance(cfg["n_seeds"], int) or cfg["n_seeds"] < 1:
        raise ValueError(f"n_seeds={cfg['n_seeds']!r}: expected a positive int. Fix: --set n_seeds=3.")
    if isinstance(cfg["n_boot"], bool) or not isinstance(cfg["n_boot"], int) or cfg["n_boot"] < 2:
        raise ValueError(f"n_boot={cfg['n_boot']!r}: expected an int ≥ 2. Fix: --set n_boot=1000.")


def measure(cfg: dict[str, Any]) -> Records:
    """Train every (data set, seed, ε) from the seed's initialization; settings: ``datasets``, ``epsilons``
    (0 first), ``seed`` and ``n_seeds`` (seeds seed … seed + n_seeds − 1; headline numbers are medians over
    them), ``hidden`` widths, ``epochs`` per data set, ``batch_size``, ``lr``, ``momentum``, ``n_bins``.
    Rows as the module docstring says."""
    _check_config(cfg)
    rows: list[dict[str, Any]] = []
    finals: dict[tuple[str, float], list[tuple[np.ndarray, np.ndarray]]] = {}
    for dataset in cfg["datasets"]:
        for seed in _seeds(cfg):
            splits = _data(dataset, seed)
            for eps in cfg["epsilons"]:
                per_epoch, zt = _train(dataset, splits, eps, seed, cfg)
                rows += per_epoch
                finals.setdefault((dataset, eps), []).append((zt, splits.test[1]))
    rows += _ece_intervals(finals, cfg)
    for (dataset, eps), runs in finals.items():
        p = softmax(np.concatenate([z for z, _ in runs]), axis=1)
        yt = np.concatenate([y for _, y in runs])
        bins = calibration_bins(p.max(axis=1), p.argmax(axis=1) == yt, cfg["n_bins"])
        rows += [{"part": "bin", "dataset": dataset, "epsilon": eps, "bin": k,
                  **{key: float(v[k]) for key, v in bins.items()}} for k in range(cfg["n_bins"])]
    check = max(r["vjp_vs_p_minus_r"] for r in rows if r["part"] == "epoch" and r["split"] == "train")
    rows.append({"part": "check", "quantity": "max |per_sample_vjp − (p − r)|", "value": check})
    return Records(rows)


def _ece_intervals(finals: dict[tuple[str, float], list[tuple[np.ndarray, np.ndarray]]],
                   cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Per data set and ε: the mean ECE over the seeds and its change against ε = 0, each ± 1.96 bootstrap
    standard errors over the test samples (paired: one resampling of each seed's test set per replicate,
    shared by every ε; the module docstring)."""
    rows: list[dict[str, Any]] = []
    eps0 = cfg["epsilons"][0]
    for dataset in dict.fromkeys(d for d, _ in finals):
        conf = {eps: [(softmax(z, axis=1).max(axis=1), softmax(z, axis=1).argmax(axis=1) == y)
                      for z, y in finals[dataset, eps]] for eps in cfg["epsilons"]}
        gen = np.random.default_rng([cfg["seed"], 15])
        draws = [[gen.integers(0, len(k), len(k)) for k, _ in conf[eps0]] for _ in range(cfg["n_boot"])]
        boot = {eps: np.array([np.mean([expected_calibration_error(k[i], a[i], cfg["n_bins"])
                                        for (k, a), i in zip(runs, idx, strict=True)]) for idx in draws])
                for eps, runs in conf.items()}
        for eps, runs in conf.items():
            ece = np.mean([expected_calibration_error(k, a, cfg["n_bins"]) for k, a in runs])
            ece0 = np.mean([expected_calibration_error(k, a, cfg["n_bins"]) for k, a in conf[eps0]])
            half, dhalf = 1.96 * boot[eps].std(ddof=1), 1.96 * (boot[eps] - boot[eps0]).std(ddof=1)
            lo, hi, dlo, dhi = ece - half, ece + half, ece - ece0 - dhalf, ece - ece0 + dhalf
            rows.append({"part": "ece", "dataset": dataset, "epsilon": eps, "n_test": len(runs[0][0]),
                         "ece_mean": float(ece), "ece_lo": float(lo), "ece_hi": float(hi),
                         "delta_mean": float(ece - ece0), "delta_lo": float(dlo), "delta_hi": float(dhi)})
    return rows


def _seeds(cfg: dict[str, Any]) -> list[int]:
    return list(range(cfg["seed"], cfg["seed"] + cfg["n_seeds"]))


def _series(rows: list[dict[str, Any]], cfg: dict[str, Any], dataset: str, eps: float, split: str,
            key: str) -> np.ndarray:
    """(epochs + 1,) median over seeds of ``key``."""
    per_seed = [[r[key] for r in rows if r["part"] == "epoch" and r["dataset"] == dataset
                 and r["epsilon"] == eps and r["seed"] == seed and r["split"] == split] for seed in _seeds(cfg)]
    return np.median(np.array(per_seed), axis=0)


def _bins(rows: list[dict[str, Any]], dataset: str, eps: float) -> dict[str, np.ndarray]:
    """The final test set's reliability bins (``calibration_bins``' arrays) back from the rows."""
    mine = [r for r in rows if r["part"] == "bin" and r["dataset"] == dataset and r["epsilon"] == eps]
    return {key: np.array([r[key] for r in mine]) for key in ("lower", "upper", "count", "accuracy", "confidence")}


def verdict(records: Records, cfg: dict[str, Any]) -> Verdict:
    """Per data set: confidence and ECE with and without smoothing (over seeds, with bootstrap intervals),
    the non-target gradients and the logit gap; then where the first ε changed calibration beyond the
    intervals. A data set whose run stayed at chance is reported as not learned instead."""
    rows = records.rows
    head: dict[str, Any] = {"max |per_sample_vjp − (p − r)|": next(r["value"] for r in rows if r["part"] == "check")}
    sentences: list[str] = []
    eps0, smoothed = cfg["epsilons"][0], cfg["epsilons"][1:]
    summary: dict[str, dict[str, float]] = {}  # data set → unsmoothed overconfidence, first ε's ECE change
    for dataset in cfg["datasets"]:
        n_classes = _n_classes(rows, dataset)
        end = {eps: _endpoints(rows, cfg, dataset, eps) for eps in cfg["epsilons"]}
        for eps, e in end.items():
            head.update(_headline(f"{dataset} ε={eps:g}", e))
            if eps > 0:
                head[f"{dataset} ε={eps:g}: optimal logit gap log((1−ε+ε/C)/(ε/C))"] = _optimal_gap(eps, n_classes)
                head[f"{dataset} ε={eps:g}: confidence drop vs ε={eps0:g}"] = end[eps0]["confidence"] - e["confidence"]
        stalled = [eps for eps, e in end.items() if not learned(e["accuracy"], n_classes)]
        if stalled:
            sentences.append(did_not_learn(f"{dataset} at ε = {stalled[0]:g}", end[stalled[0]]["accuracy"], n_classes,
                                           f"Train longer (--set 'epochs={{\"{dataset}\": ...}}') or change lr."))
            continue
        sentences.append(_dataset_sentence(dataset, end, eps0, smoothed, cfg))
        if smoothed:
            summary[dataset] = {"over": end[eps0]["confidence"] - end[eps0]["accuracy"],
                                "lo": end[smoothed[0]]["delta_lo"], "hi": end[smoothed[0]]["delta_hi"]}
    if smoothed and summary:
        sentences.append(_calibration_sentence(summary, smoothed[0]))
    return Verdict(" ".join(sentences), head)


def _calibration_sentence(summary: dict[str, dict[str, float]], eps: float) -> str:
    """Where the first ε improved or worsened ECE beyond the bootstrap interval, against the unsmoothed
    overconfidence."""
    helped = [d for d, v in summary.items() if v["hi"] < 0]
    hurt = [d for d, v in summary.items() if v["lo"] > 0]
    unclear = [d for d in summary if d not in helped + hurt]
    over = {d: f"{summary[d]['over']:+.3f}" for d in summary}
    said = [f"{word} on {', '.join(f'{d} (unsmoothed confidence − accuracy {over[d]})' for d in ds)}"
            for word, ds in (("improved calibration", helped), ("worsened it", hurt),
                             ("changed it by less than the 95% interval", unclear)) if ds]
    text = f"So ε = {eps:g} " + "; ".join(said)
    if helped and hurt and min(summary[d]["over"] for d in helped) > max(summary[d]["over"] for d in hurt):
        return text + (": it lowers confidence whatever the accuracy, which corrects a large overconfidence and "
                       "turns a small one into underconfidence.")
    return text + "."


def _optimal_gap(eps: float, n_classes: int) -> float:
    """The logit gap z_y − z_c at the smoothed optimum p = r, log((1 − ε + ε/C)/(ε/C)), C = ``n_classes``."""
    return math.log((1 - eps + eps / n_classes) / (eps / n_classes))


def _n_classes(rows: list[dict[str, Any]], dataset: str) -> int:
    """C of ``dataset``, as its training runs recorded it."""
    return int(next(r["n_classes"] for r in rows if r["part"] == "epoch" and r["dataset"] == dataset))


def _endpoints(rows: list[dict[str, Any]], cfg: dict[str, Any], dataset: str, eps: float) -> dict[str, Any]:
    """The final test metrics (medians over seeds, and the ECE per seed with its bootstrap intervals), the
    train-set gradient statistics at initialization and at the end, and the logit gap's growth over the
    last quarter of the epochs (medians over seeds)."""
    def series(split: str, key: str) -> np.ndarray:
        return _series(rows, cfg, dataset, eps, split, key)

    e: dict[str, Any] = {key: float(series("test", key)[-1]) for key in ("accuracy", "confidence", "ece", "nll")}
    last = {r["seed"]: r for r in rows if r["part"] == "epoch" and r["dataset"] == dataset and r["epsilon"] == eps
            and r["split"] == "test"}  # each seed's last test row (later epochs overwrite earlier ones)
    e["ece_seeds"] = [last[seed]["ece"] for seed in _seeds(cfg)]
    e["n_classes"] = _n_classes(rows, dataset)
    interval = next(r for r in rows if r["part"] == "ece" and r["dataset"] == dataset and r["epsilon"] == eps)
    e.update({key: interval[key] for key in ("n_test", "ece_mean", "ece_lo", "ece_hi", "delta_mean", "delta_lo",
                                             "delta_hi")})
    gaps = series("train", "logit_gap")
    e.update({
        "nt_init": float(series("train", "grad_nontarget_abs")[0]),
        "nt_end": float(series("train", "grad_nontarget_abs")[-1]),
        "t_init": float(series("train", "grad_target_abs")[0]),
        "t_end": float(series("train", "grad_target_abs")[-1]),
        "neg_end": float(series("train", "frac_nontarget_negative")[-1]),
        "gap_end": float(gaps[-1]),
        "gap_growth": float(gaps[-1] - gaps[(3 * (len(gaps) - 1)) // 4]),  # over the last quarter
    })
    return e


def _headline(tag: str, e: dict[str, Any]) -> dict[str, Any]:
    head = {
        f"{tag}: test accuracy": e["accuracy"], f"{tag}: test confidence": e["confidence"],
        f"{tag}: test ECE": e["ece"], f"{tag}: test NLL": e["nll"],
        f"{tag}: test ECE per seed": e["ece_seeds"],
        f"{tag}: test ECE, mean over seeds": e["ece_mean"],
        f"{tag}: test ECE, mean over seeds, 95% bootstrap interval": [e["ece_lo"], e["ece_hi"]],
        f"{tag}: mean |∂ℓ/∂z_c|, c ≠ y, init": e["nt_init"], f"{tag}: mean |∂ℓ/∂z_c|, c ≠ y, end": e["nt_end"],
        f"{tag}: mean |∂ℓ/∂z_y|, init": e["t_init"], f"{tag}: mean |∂ℓ/∂z_y|, end": e["t_end"],
        f"{tag}: fraction of non-target ∂ℓ/∂z_c < 0, end": e["neg_end"],
        f"{tag}: logit gap, end": e["gap_end"],
        f"{tag}: logit gap growth over the last quarter": e["gap_growth"],
    }
    if not tag.endswith("ε=0"):
        head[f"{tag}: ECE change vs ε=0, mean over seeds"] = e["delta_mean"]
        head[f"{tag}: ECE change vs ε=0, 95% bootstrap interval"] = [e["delta_lo"], e["delta_hi"]]
    return head


def _fit_word(gap: float) -> str:
    return f"{'over' if gap > 0 else 'under'}confident by {abs(gap):.3f}"


def _ece_said(e: dict[str, Any]) -> str:
    """ECE per seed and the bootstrap interval of the seeds' mean."""
    return (f"ECE {over_seeds(e['ece_seeds'], '.3f')}, mean {e['ece_mean']:.3f} with 95% bootstrap interval over "
            f"the test samples {e['ece_lo']:.3f}–{e['ece_hi']:.3f}")


def _dataset_sentence(dataset: str, end: dict[float, dict[str, Any]], eps0: float, smoothed: list[float],
                      cfg: dict[str, Any]) -> str:
    """One data set's confidence, ECE and non-target gradients without and with each smoothing ε."""
    base = end[eps0]
    parts = [f"ε = {eps:g} lowers it to {end[eps]['confidence']:.3f} at accuracy {end[eps]['accuracy']:.1%} "
             f"({_fit_word(end[eps]['confidence'] - end[eps]['accuracy'])}; {_ece_said(end[eps])}; change "
             f"{end[eps]['delta_mean']:+.3f}, paired interval {end[eps]['delta_lo']:+.3f} to "
             f"{end[eps]['delta_hi']:+.3f})" for eps in smoothed]
    grads = "; ".join(
        f"ε = {eps:g}: {end[eps]['nt_end']:.2g} ({end[eps]['nt_end'] / base['nt_end']:.2g}× the unsmoothed), "
        f"{end[eps]['neg_end']:.0%} of them negative (pushing z_c up, towards p_c = ε/C), logit gap "
        f"{end[eps]['gap_end']:.2f} (optimum {_optimal_gap(eps, end[eps]['n_classes']):.2f})"
        for eps in smoothed)
    return (
        f"{dataset} ({base['n_test']} test samples, {cfg['n_seeds']} seeds; confidence and accuracy are medians "
        "over the seeds): without smoothing the test "
        f"confidence is {base['confidence']:.3f} at accuracy {base['accuracy']:.1%} "
        f"({_fit_word(base['confidence'] - base['accuracy'])}; {_ece_said(base)}); "
        + "; ".join(parts) + ". "
        "On the training set the mean |∂ℓ/∂z_c| over non-target classes starts at "
        f"{base['nt_init']:.3f} and ends at {base['nt_end']:.2g} without smoothing "
        f"({base['neg_end']:.0%} negative; logit gap {base['gap_end']:.2f}, "
        + (f"still growing by {base['gap_growth']:.2f} over the last quarter of {cfg['epochs'][dataset]} epochs: "
           "consistent with the optimum at infinity that the algebra gives (p_c > 0 at every finite gap), a "
           "trend rather than a measurement of the limit"
           if base["gap_growth"] > 0 else "no longer growing")
        + (f"); with {grads}." if smoothed else ")."))


def figures(records: Records, cfg: dict[str, Any]) -> dict[str, Figure]:
    """Reliability diagrams, the logit gradients and gap per epoch, test calibration per epoch."""
    seeds = f"{cfg['n_seeds']} seed{'s' if cfg['n_seeds'] > 1 else ''}"
    return {
        "reliability": Figure(_reliability_figure(records.rows, cfg), "Reliability diagrams on the test set after "
                              f"training ({cfg['n_bins']} equal-width bins, {seeds} pooled): accuracy per confidence "
                              "bin; the hatched part is the gap to the bin's mean confidence (above the bar: "
                              "overconfident; inside it: underconfident)."),
        "gradients": Figure(_gradients_figure(records.rows, cfg), "Top: mean |∂ℓₙ/∂z_c| over the non-target "
                            "classes (solid) and the target class (dashed) on the training set per epoch. Bottom: "
                            "the mean logit gap and, dotted, its finite optimum under smoothing (median over "
                            f"{seeds})."),
        "calibration": Figure(_calibration_figure(records.rows, cfg), "Test confidence, accuracy and ECE per epoch "
                              f"for each ε (median over {seeds})."),
    }


def _reliability_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    plt = pyplot()
    datasets, epsilons = cfg["datasets"], cfg["epsilons"]
    fig, axes = plt.subplots(len(datasets), len(epsilons), figsize=(3.6 * len(epsilons), 3.4 * len(datasets)),
                             squeeze=False, sharex=True, sharey=True)
    for i, dataset in enumerate(datasets):
        for j, eps in enumerate(epsilons):
            ax, b = axes[i, j], _bins(rows, dataset, eps)
            used = b["count"] > 0
            width = b["upper"] - b["lower"]
            ax.bar(b["lower"][used], b["accuracy"][used], width=width[used], align="edge", edgecolor="k",
                   color="C0", label="accuracy")
            ax.bar(b["lower"][used], b["confidence"][used] - b["accuracy"][used], bottom=b["accuracy"][used],
                   width=width[used], align="edge", facecolor="none", edgecolor="C3", hatch="//",
                   label="gap to the bin's mean confidence")
            ax.plot([0, 1], [0, 1], "k--", lw=1)
            ece = float(np.sum(b["count"][used] / b["count"].sum()
                               * np.abs(b["accuracy"][used] - b["confidence"][used])))
            ax.set(title=f"{dataset}, ε = {eps:g}: ECE {ece:.3f}", xlim=(0, 1), ylim=(0, 1))
            if i == len(datasets) - 1:
                ax.set_xlabel("confidence (max softmax probability)")
            if j == 0:
                ax.set_ylabel("accuracy in bin")
    axes[0, 0].legend(fontsize=8, loc="upper left")
    fig.suptitle("Is the network as accurate as it is confident, with and without smoothing?")
    fig.tight_layout()
    return fig


def _gradients_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    plt = pyplot()
    datasets = cfg["datasets"]
    fig, axes = plt.subplots(2, len(datasets), figsize=(5.5 * len(datasets), 7), squeeze=False)
    for i, dataset in enumerate(datasets):
        ax, ax_gap = axes[0, i], axes[1, i]
        for eps in cfg["epsilons"]:
            nt = _series(rows, cfg, dataset, eps, "train", "grad_nontarget_abs")
            line = ax.semilogy(np.arange(len(nt)), nt, label=f"ε = {eps:g}, c ≠ y")[0]
            ax.semilogy(np.arange(len(nt)), _series(rows, cfg, dataset, eps, "train", "grad_target_abs"), ls="--",
                        color=line.get_color(), label=f"ε = {eps:g}, c = y")
            ax_gap.plot(np.arange(len(nt)), _series(rows, cfg, dataset, eps, "train", "logit_gap"),
                        color=line.get_color(), label=f"ε = {eps:g}")
            if eps > 0:
                ax_gap.axhline(_optimal_gap(eps, _n_classes(rows, dataset)), color=line.get_color(), ls=":", lw=1)
        ax.set(title=f"{dataset}: mean |∂ℓₙ/∂z_c| on the training set", xlabel="epoch", ylabel="mean |∂ℓ/∂z|")
        ax.legend(fontsize=7)
        ax_gap.set(title=f"{dataset}: logit gap z_y − mean z_c (dotted: optimum)", xlabel="epoch", ylabel="gap")
        ax_gap.legend(fontsize=7)
    fig.suptitle("What does smoothing do to the gradients on the non-target logits and to the logit gap?")
    fig.tight_layout()
    return fig


def _calibration_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    plt = pyplot()
    datasets = cfg["datasets"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 3.8), squeeze=False)
    for i, dataset in enumerate(datasets):
        ax = axes[0, i]
        for eps in cfg["epsilons"]:
            conf, acc, ece = (_series(rows, cfg, dataset, eps, "test", key)
                              for key in ("confidence", "accuracy", "ece"))
            line = ax.plot(np.arange(len(conf)), conf, label=f"ε = {eps:g}: confidence")[0]
            ax.plot(np.arange(len(conf)), acc, ls="--", color=line.get_color(), label=f"ε = {eps:g}: accuracy")
            ax.plot(np.arange(len(conf)), ece, ls=":", color=line.get_color(), label=f"ε = {eps:g}: ECE")
        ax.set(title=f"{dataset}: test set", xlabel="epoch", ylabel="confidence, accuracy, ECE (fractions)",
               ylim=(0, 1))
        ax.legend(fontsize=7, ncol=1)
    fig.suptitle("Does label smoothing lower confidence, and does that improve calibration?")
    fig.tight_layout()
    return fig


def answer(records: Records, cfg: dict[str, Any]) -> Answer:
    """What the first ε does to confidence on every data set that learned, and where it helped or hurt
    calibration beyond the bootstrap interval."""
    _, head = verdict(records, cfg)
    eps = cfg["epsilons"][1] if len(cfg["epsilons"]) > 1 else None
    learnt = [d for d in cfg["datasets"] if all(
        learned(head[f"{d} ε={e:g}: test accuracy"], _n_classes(records.rows, d)) for e in cfg["epsilons"])]
    if eps is None or not learnt:
        why = "no smoothed ε was run" if eps is None else "no data set's runs learned"
        return Answer(f"This run answers nothing about smoothing: {why} (see the verdict).", "calibration")
    lo, hi = ({d: head[f"{d} ε={eps:g}: ECE change vs ε={cfg['epsilons'][0]:g}, 95% bootstrap interval"][i]
               for d in learnt} for i in (0, 1))
    helped, hurt = [d for d in learnt if hi[d] < 0], [d for d in learnt if lo[d] > 0]
    e0 = cfg["epsilons"][0]
    over = {d: head[f"{d} ε={e0:g}: test confidence"] - head[f"{d} ε={e0:g}: test accuracy"] for d in learnt}
    lowered = all(head[f"{d} ε={eps:g}: confidence drop vs ε={e0:g}"] > 0 for d in learnt)
    text = (f"Smoothing the labels (ε = {eps:g}) {'lowers' if lowered else 'changes'} the network's confidence on "
            f"{'every data set tried' if lowered else 'the data sets tried'}; since the smoothed loss has a finite "
            "optimum, its logits no longer grow without bound.")
    said = [f"improved on {d}" + (", where the plain network was overconfident" if over[d] > 0.02 else "")
            for d in helped]
    said += [f"worsened on {d}" + (", where the plain network was already calibrated and the smoothed one is "
                                   "underconfident" if abs(over[d]) <= 0.02 else "") for d in hurt]
    text += (f" Whether that helps calibration depends on the network: it {'; it '.join(said)}." if said else
             " Its effect on calibration stayed within the bootstrap interval.")
    return Answer(text, "calibration")


STUDY = register(Study(
    name="label-smoothing",
    question="What does label smoothing do to the gradients reaching the non-target logits, to confidence and "
             "to calibration (ECE)?",
    notes="Source notes 001 (multi-class cross-entropy and label smoothing).",
    measure=measure, verdict=verdict, figures=figures, answer=answer,
    method="The same MLP is trained on two data sets with and without label smoothing, from the same "
           "initialisations over several seeds. We measure the gradients reaching the target and non-target "
           "logits, the logit gap against its predicted optimum, and test confidence and calibration (ECE) "
           "with bootstrap intervals.",
    checks={"datasets": Check(choices=("digits", "mnist1d")), "epsilons": FRACTION, "n_bins": POSITIVE,
            "hidden": Check(low=0, low_open=True, empty=True)},
    validate=_check_config,
    quick={"datasets": ["digits", "mnist1d"], "epsilons": [0.0, 0.1, 0.2], "seed": 0, "n_seeds": 3,
           "hidden": [128, 128], "epochs": {"digits": 12, "mnist1d": 6}, "batch_size": 32, "lr": 0.05,
           "momentum": 0.9, "n_bins": 15, "n_boot": 500},
    full={"datasets": ["digits", "mnist1d"], "epsilons": [0.0, 0.1, 0.2], "seed": 0, "n_seeds": 3,
          "hidden": [128, 128], "epochs": {"digits": 60, "mnist1d": 60}, "batch_size": 32, "lr": 0.05,
          "momentum": 0.9, "n_bins": 15, "n_boot": 2000},
))
