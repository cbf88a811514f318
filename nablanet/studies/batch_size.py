"""Study ``batch-size``: how the mini-batch gradient's error falls with the batch size, and what that
means for online, mini-batch and full-batch training (source notes 001, "SGD vs batch vs mini-batch";
004, section 4, "Mini-Batches").

Part 1, the 1/B law. With gₙ = ∂ℓₙ/∂θ the per-sample gradients on the N training samples,
g = (1/N) Σₙ gₙ the full-batch gradient and g_B the mean over a mini-batch of B samples,

    m_B = E ‖g_B − g‖² = tr(Σ_pop)/B                    (B samples drawn with replacement)
    m_B = tr(Σ_pop)/B · (N − B)/(N − 1)                 (B distinct samples, without replacement)

where Σ_pop = (1/N) Σₙ (gₙ − g)(gₙ − g)ᵀ = (N − 1)/N · Σ, Σ the unbiased covariance whose trace
``batch_size_sweep`` reports. With replacement the samples of a batch are independent draws from the
N gradients, so the variances add and the mean's variance is the per-sample variance over B: the
notes' "variance of mini-batch GD ∝ 1/b". Without replacement the finite-population factor
(N − B)/(N − 1) bends the curve down to m_N = 0 (the full batch has no error about itself).

The measurement: ``nablanet.lab.batch_size_sweep`` draws ``draws`` mini-batches for each B and averages
‖g_B − g‖², for a 64-h-10 tanh MLP on the digits' training set (float64), at initialization and after
a few epochs of training. The power law m_B = c·B^k is fitted by least squares on (log B, log m_B):

    k, log c = argmin Σ_B (log m_B − log c − k log B)²

and compared with k = −1 and with the exact prediction. With replacement the 1/B law holds by
construction: a mean of B independent draws from any N vectors has variance tr(Σ_pop)/B, whatever the
network, so the exponent fitted there checks the sampler (and the per-sample gradients), not a
property of the network. What training uses is the draws without replacement (an epoch's shuffled
batches); they are fitted twice, raw (bent by the factor, k < −1) and with the factor divided out,
m_B · (N − 1)/(N − B) for B < N, at initialization and after training: these carry the claim.

Two sizes of the noise. ``nn.lab.gradient_stats`` gives the simple noise scale B_simple = tr(Σ)/‖g‖²
(McCandlish et al. 2018): the batch size at which the mini-batch gradient's noise tr(Σ)/B equals the
squared signal ‖g‖². For an optimal step on a locally quadratic loss, one step at batch size B makes
1/(1 + B_simple/B) of the progress of a full-gradient step, so B ≪ B_simple wastes little computation
per sample and B ≫ B_simple gains little per step: this, not the 1/B law itself, is what tests the
notes' "a variance of 1/100 vs 1/1000 hardly matters". And the notes' "full batch ∝ 1/N" is the error
of g against the expected gradient over the data distribution, E‖g − E_data[∇ℓ]‖² = tr(Σ_pop)/N for
N i.i.d. training samples, while m_N = 0 here is the error of the full batch against the training-set
gradient g, which it is: both hold, about different targets.

Part 2, online vs mini-batch vs full batch. The same network is trained by plain SGD with batch size
1 (online: N steps per epoch), a mini-batch size (⌈N/B⌉ steps) and N (full batch: one step per epoch),
on ``n_seeds`` seeds ``seed`` … ``seed`` + n_seeds − 1; a seed fixes the initialization and the
epoch-wise shuffles, the same for the three settings (the data split is the one of ``seed``).
Learning-rate policy: on the first seed, for each setting, every rate of the same grid ``lr_grid`` is
run and the one with the lowest mean training loss over the last half of the ``epochs`` epochs is
kept (a diverged run counts as +∞); the other seeds reuse that rate, so they test it rather than pick
it (and the quick run stays short). The training loss on all N samples is evaluated after every epoch.
The claims are per epoch and over seeds: each setting's final loss as mean ± std (range), two loss
targets fixed across seeds (A: the highest over seeds of the lowest loss both stochastic settings
reach, so both reach it on every seed; B: the highest over seeds of full batch's lowest loss), the
epochs each setting needs to reach them, and which setting gets there first, counted seed by seed; an
ordering is stated for every seed only where it holds on every seed, else with the count.

Every setting processes all N samples per epoch; what differs is the number of steps, N, ⌈N/B⌉ or 1.
A NumPy step has a fixed overhead (Python, small matrix products), so online, with N steps, is the
slowest per epoch: that claim rests on the steps per epoch, a count. The records also keep the
training wall time (``time.perf_counter`` around each epoch inside ``fit``, evaluation excluded) and
the figure plots the loss against it, but wall times depend on the machine and its load; the verdict
quotes them once, labelled, and no claim rests on them. ``blas_threads`` (default 1) limits BLAS to
that many threads during the run (threadpoolctl, restored afterwards): on a shared 2-core machine a
multi-threaded BLAS made the full-batch step 10–40× slower through thread contention, a measurement of
the machine rather than of the method. None leaves BLAS as it is.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any

import numpy as np

import nablanet as nn
from nablanet.studies._guard import over_seeds, stuck
from nablanet.studies._models import mlp
from nablanet.studies.base import Answer, Figure, Records, Study, Verdict, blas_threads, pyplot, register
from nablanet.studies.settings import POSITIVE, Check
from nablanet.train.callbacks import Callback

_STATES = ("init", "trained")
_SAMPLINGS = ("with replacement", "without replacement")


def _model(hidden: int, seed: int) -> nn.Sequential:
    return mlp(64, [hidden], 10, np.random.default_rng(seed), nn.Tanh)


def _full_loss(model: nn.Layer, loss: nn.Loss, x: np.ndarray, y: np.ndarray) -> float:
    """The loss on all of (x, y) in evaluation mode (+∞ if it is not a finite number)."""
    value = nn.evaluate(model, loss, x, y)["loss"]
    return float(value) if value is not None and math.isfinite(value) else math.inf


def power_law_fit(batch_sizes: Any, values: Any) -> tuple[float, float, float]:
    """Least squares in log-log space: log m = log c + k log B. Returns (k, c, R² of the log fit)."""
    lb, lm = np.log(np.asarray(batch_sizes, dtype=np.float64)), np.log(np.asarray(values, dtype=np.float64))
    k, logc = np.polyfit(lb, lm, 1)
    resid = lm - (logc + k * lb)
    ss_tot = float(np.sum((lm - lm.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else math.nan
    return float(k), float(math.exp(logc)), r2


def _variance_part(cfg: dict[str, Any], x: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    n = len(x)
    loss = nn.CrossEntropyLoss()
    model = _model(cfg["hidden"], cfg["seed"])
    with_sizes = [int(b) for b in cfg["batch_sizes"]]
    without_sizes = sorted({b for b in with_sizes if b < n} | {n})
    rows: list[dict[str, Any]] = []
    for state in _STATES:
        if state == "trained":
            opt = nn.optim.SGD(model.parameters(), lr=cfg["pretrain_lr"])
            nn.fit(model, loss, opt, train=(x, y), epochs=cfg["pretrain_epochs"], batch_size=cfg["minibatch"],
                   seed=cfg["seed"])
        train_loss = _full_loss(model, loss, x, y)
        stats = nn.lab.gradient_stats(model, loss, x, y).total
        rows.append({"part": "noise_scale", "state": state, "n": n, "train_loss": train_loss,
                     "trace_cov": stats.trace_cov, "grad_sq_norm": stats.grad_sq_norm,
                     "noise_scale": stats.noise_scale})
        for sampling, sizes in zip(_SAMPLINGS, (with_sizes, without_sizes), strict=True):
            sweep = nn.lab.batch_size_sweep(model, loss, x, y, sizes, draws=cfg["draws"], seed=cfg["seed"],
                                            replace=sampling == "with replacement")
            for r in sweep.to_records():
                b = r["batch_size"]
                fpc = (n - b) / (n - 1) if sampling == "without replacement" else 1.0
                rows.append({"part": "variance", "state": state, "sampling": sampling, "n": n,
                             "train_loss": train_loss, "batch_size": b, "measured": r["measured"],
                             "stderr": r["stderr"], "predicted": r["predicted"], "fpc": fpc,
                             "trace_cov": sweep.trace_cov, "trace_over_b": sweep.trace_cov / b})
    return rows


def _fits(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (state, sampling, treatment): the fitted exponent k, the constant c and R²."""
    out: list[dict[str, Any]] = []
    for state in _STATES:
        for sampling in _SAMPLINGS:
            sel = [r for r in rows if r["part"] == "variance" and r["state"] == state and r["sampling"] == sampling
                   and r["measured"] > 0]
            bs = [r["batch_size"] for r in sel]
            treatments = [("raw", [r["measured"] for r in sel])]
            if sampling == "without replacement":
                treatments.append(("factor divided out", [r["measured"] / r["fpc"] for r in sel]))
            pop_trace = sel[0]["trace_cov"] * (sel[0]["n"] - 1) / sel[0]["n"]
            for treatment, values in treatments:
                k, c, r2 = power_law_fit(bs, values)
                out.append({"part": "fit", "state": state, "sampling": sampling, "treatment": treatment,
                            "exponent": k, "c": c, "r2_log": r2, "trace_cov_pop": pop_trace,
                            "b_min": min(bs), "b_max": max(bs)})
    return out


class _EpochLoss(Callback):
    """After each epoch: the training loss on all of (x, y) and the epoch's training seconds."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        super().__init__()
        self.x, self.y = x, y
        self.rows: list[tuple[int, float, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        value = _full_loss(self.context.model, self.context.loss, self.x, self.y)
        self.rows.append((epoch + 1, float(logs["seconds"]), value))


def _training_run(cfg: dict[str, Any], x: np.ndarray, y: np.ndarray, setting: str, batch_size: int | None,
                  lr: float, seed: int) -> list[dict[str, Any]]:
    n = len(x)
    model = _model(cfg["hidden"], seed)
    loss = nn.CrossEntropyLoss()
    steps_per_epoch = math.ceil(n / (batch_size or n))
    cb = _EpochLoss(x, y)
    initial = _full_loss(model, loss, x, y)
    history = nn.fit(model, loss, nn.optim.SGD(model.parameters(), lr=lr), train=(x, y), epochs=cfg["epochs"],
                     batch_size=batch_size, seed=seed, callbacks=[cb])
    diverged = history.stop_reason is not None
    base = {"part": "training", "setting": setting, "seed": seed, "batch_size": batch_size or n, "lr": lr,
            "steps_per_epoch": steps_per_epoch, "diverged": diverged}
    rows = [{**base, "epoch": 0, "steps": 0, "seconds": 0.0, "train_loss": initial}]
    elapsed = 0.0
    for epoch, seconds, value in cb.rows:
        elapsed += seconds
        rows.append({**base, "epoch": epoch, "steps": epoch * steps_per_epoch, "seconds": elapsed,
                     "train_loss": value})
    return rows


def selection_score(run: list[dict[str, Any]], epochs: int) -> float:
    """The learning-rate selection criterion: the mean training loss over the last half of the
    epochs, ⌈E/2⌉…E (less sensitive to one noisy final epoch than the final loss alone); +∞ for a run
    that diverged or stopped early."""
    last = run[-1]
    if last["diverged"] or last["epoch"] != epochs or not all(math.isfinite(r["train_loss"]) for r in run):
        return math.inf
    return float(np.mean([r["train_loss"] for r in run if r["epoch"] >= math.ceil(epochs / 2)]))


def _seeds(cfg: dict[str, Any]) -> list[int]:
    return list(range(cfg["seed"], cfg["seed"] + cfg["n_seeds"]))


def _training_part(cfg: dict[str, Any], x: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    """The whole rate grid on the first seed, then the selected rate on each further seed."""
    settings: list[tuple[str, int | None]] = [("online", 1), (f"mini-batch {cfg['minibatch']}", cfg["minibatch"]),
                                              ("full batch", None)]
    first, *others = _seeds(cfg)
    rows: list[dict[str, Any]] = []
    for setting, batch_size in settings:
        runs = {lr: _training_run(cfg, x, y, setting, batch_size, lr, first) for lr in cfg["lr_grid"]}
        scores = {lr: selection_score(run, cfg["epochs"]) for lr, run in runs.items()}
        best = min(scores, key=lambda lr: scores[lr])
        for lr, run in runs.items():
            rows += [{**r, "score": scores[lr], "selected": lr == best} for r in run]
        for seed in others:
            run = _training_run(cfg, x, y, setting, batch_size, best, seed)
            rows += [{**r, "score": selection_score(run, cfg["epochs"]), "selected": True} for r in run]
    return rows


def _selected_runs(rows: list[dict[str, Any]]) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """setting → seed → the rows of the run at the setting's selected rate, epoch 0 first."""
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for r in rows:
        if r["part"] == "training" and r["selected"]:
            runs.setdefault(r["setting"], {}).setdefault(r["seed"], []).append(r)
    return runs


def _final(run: list[dict[str, Any]], epochs: int) -> float:
    """The training loss after the last epoch (+∞ for a run that stopped before it)."""
    return float(run[-1]["train_loss"]) if run[-1]["epoch"] == epochs else math.inf


def _epochs_to(run: list[dict[str, Any]], target: float) -> int | None:
    """The first epoch whose training loss is at most ``target`` (None if none is)."""
    return next((r["epoch"] for r in run if r["train_loss"] <= target), None)


def measure(cfg: dict[str, Any]) -> Records:
    """Rows ``part="variance"`` (one per state, sampling and B: measured and predicted ‖g_B − g‖²),
    ``"fit"`` (the power law per state, sampling and treatment) and ``"training"`` (one per setting, seed,
    learning rate and epoch, with the run's selection score and whether it ran at the setting's selected
    rate: the whole grid on the first seed, the selected rate alone on the others)."""
    splits = nn.data.load_digits(seed=cfg["seed"], dtype=np.float64)
    x, y = splits.train
    with blas_threads(cfg["blas_threads"], "batch-size"):
        rows = _variance_part(cfg, x, y)
        rows += _fits(rows)
        rows += _training_part(cfg, x, y)
    return Records(rows)


def verdict(records: Records, cfg: dict[str, Any]) -> Verdict:
    """The fitted exponents against −1, the exact prediction, the noise scale, and how each setting fares per
    epoch over the seeds."""
    head = {**_variance_headline(records.rows), **_training_headline(records.rows, cfg)}
    return Verdict(_variance_sentence(head, cfg) + " " + _training_sentence(head, cfg), head)


WALL_TIME_LABEL = "Wall time on this machine, for illustration only (not reproducible; no claim rests on it)"
"""Opens the verdict's one sentence that quotes seconds."""


def _count(k: int, n: int) -> str:
    return "every seed" if k == n else "no seed" if k == 0 else f"{k} of {n} seeds"


def _reached(epochs: list[int | None], limit: int) -> str:
    """"at epoch 5.3 ± 0.58 (3 seeds: 5–6)", over the seeds that reach the target, and how many do."""
    hit = [e for e in epochs if e is not None]
    if not hit:
        return f"not within {limit} epochs on any seed"
    text = f"at epoch {over_seeds(hit, '.2g')}"
    return text if len(hit) == len(epochs) else (f"{text} on {_count(len(hit), len(epochs))}, not within {limit} "
                                                 "epochs on the others")


def _tally(firsts: list[list[str]]) -> str:
    """"online on 2 of 3 seeds, online and mini-batch 32 (tied) on 1 of 3 seeds": who is first, seed by seed."""
    counts = Counter(" and ".join(f) + (" (tied)" if len(f) > 1 else "") for f in firsts)
    return ", ".join(f"{who} on {_count(k, len(firsts))}" for who, k in counts.most_common())


def _training_sentence(head: dict[str, Any], cfg: dict[str, Any]) -> str:
    """Per epoch, over seeds: the final losses and their order, the epochs to the two targets and who gets
    there first, the steps per epoch; the wall times in one labelled clause; the stuck guard, seed by seed."""
    settings, seeds, e = head["training settings"], head["training seeds"], cfg["epochs"]
    online, mini, full = settings
    steps = {s: head[f"{s}: steps per epoch"] for s in settings}
    sec = {s: head[f"{s}: seconds per epoch (wall time, mean over seeds)"] for s in settings}

    def final(s: str) -> str:
        return (f"{s} (lr {head[f'{s}: learning rate (best of grid on the first seed)']:g}, {steps[s]} "
                f"step{'' if steps[s] == 1 else 's'}/epoch) "
                f"{head[f'{s}: final training loss after {e} epochs, over seeds']}")

    def reached(s: str, name: str) -> str:
        return _reached(head[f"{s}: epochs to target {name}, per seed"], e)

    order = head["final training loss: settings by the mean, lowest first"]
    several = len(seeds) > 1
    text = (
        f"Training for {e} epochs on {len(seeds)} seed{'s' if several else ''} ({', '.join(map(str, seeds))}: "
        f"initialization and batch order), each setting at the best rate of {cfg['lr_grid']} on seed {seeds[0]}"
        f"{', reused on the others' if several else ''}: final training loss {', '.join(final(s) for s in settings)}; "
        f"by the mean {' < '.join(order)}, an order that "
        f"holds on {_count(head['seeds on which the final losses keep that order'], len(seeds))}. Loss "
        f"{head['target A: the highest over seeds of the lowest loss of online and mini-batch']:.4f} (the lowest "
        f"that both stochastic settings reach on every seed) is reached online {reached(online, 'A')}, by {mini} "
        f"{reached(mini, 'A')}, full batch {reached(full, 'A')}; first per epoch: "
        f"{_tally(head['target A: first per epoch, per seed'])}. Loss "
        f"{head['target B: the highest over seeds of the lowest loss of full batch']:.4f} (the lowest that full "
        f"batch reaches on every seed) is reached online "
        f"{reached(online, 'B')}, by {mini} {reached(mini, 'B')} and by full batch {reached(full, 'B')}; first per "
        f"epoch: {_tally(head['target B: first per epoch, per seed'])}. Every setting processes all N = "
        f"{head['N (training samples)']} samples per epoch, online in {steps[online]} steps, {mini} in "
        f"{steps[mini]} and full batch in {steps[full]}, so online pays the fixed cost of a step (Python, small "
        f"matrix products) {steps[online]} times per epoch and full batch once: per epoch, online is the slowest. "
        f"{WALL_TIME_LABEL}: an epoch took {sec[online]:.3g} s online, {sec[mini]:.3g} s for {mini} and "
        f"{sec[full]:.3g} s full batch (mean over seeds, BLAS threads: {cfg['blas_threads']})."
    )
    stalled = [f"{s} on seed {seed} ({last:.4f})" for s in settings for seed, first, last in
               zip(seeds, head[f"{s}: initial training loss, per seed"],
                   head[f"{s}: final training loss after {e} epochs, per seed"], strict=True) if stuck(first, last)]
    if stalled:
        text += (f" Not a finding: {', '.join(stalled)} ended with the training loss at its initial value (or "
                 "diverged); give it more epochs or widen lr_grid.")
    return text


def _variance_sentence(head: dict[str, Any], cfg: dict[str, Any]) -> str:
    """The 1/B law (with replacement: the sampler; without: the claim), the noise scale and what it says
    about B = 100 vs 1000, and the two meanings of the full batch's error."""
    k, kt = "fitted exponent k, at init", "fitted exponent k, after training"
    ns = [head[f"noise scale B_simple = tr(Σ)/‖g‖² {w}"] for w in ("at init", "after training")]
    p = {(b, w): head[f"progress per step at B = {b}, 1/(1 + B_simple/B), {w}"] for b in (100, 1000)
         for w in ("at init", "after training")}
    gain = [p[1000, w] / p[100, w] for w in ("at init", "after training")]
    losses = (head["training loss at init"], head["training loss after training"])
    text = (
        f"Drawn with replacement, the mini-batch gradient's squared error falls as B^k with k = "
        f"{head[f'{k} (with replacement)']:.3f} at initialization and {head[f'{kt} (with replacement)']:.3f} after "
        f"{cfg['pretrain_epochs']} epochs of training (least squares in log-log space over "
        f"B = {min(cfg['batch_sizes'])}…{max(cfg['batch_sizes'])}); measured/predicted tr(Σ_pop)/B lies in "
        f"{head['measured / predicted tr(Σ_pop)/B, min']:.3f}–{head['measured / predicted tr(Σ_pop)/B, max']:.3f} "
        f"(at most {head['max |measured − predicted| / stderr']:.1f} standard errors off). That law holds by "
        "construction for any mean of B independent draws, so it checks the sampler, not the network. Drawn "
        "without replacement, as training draws its batches, the finite-population factor (N − B)/(N − 1) bends "
        f"the curve (raw k = {head[f'{k}, without replacement (raw)']:.3f} at initialization, "
        f"{head[f'{kt}, without replacement (raw)']:.3f} after training; m_N = 0), and dividing it out gives k = "
        f"{head[f'{k}, without replacement (factor divided out)']:.3f} and "
        f"{head[f'{kt}, without replacement (factor divided out)']:.3f}: the notes' 1/B, before and after "
        f"training (loss {losses[0]:.3f} → {losses[1]:.3f}). The noise scale B_simple = tr(Σ)/‖g‖² is "
        f"{ns[0]:.0f} at initialization and {ns[1]:.0f} after training, so a step at B = 100 makes "
        f"{p[100, 'at init']:.2f} and {p[100, 'after training']:.2f} of a full-gradient step's progress "
        f"(1/(1 + B_simple/B)) and one at B = 1000 {p[1000, 'at init']:.2f} and {p[1000, 'after training']:.2f}: "
        f"ten times the samples per step buy {gain[0]:.2g}× and {gain[1]:.2g}× the progress, so the notes' "
        "\"1/100 vs 1/1000 hardly matters\" holds per sample processed, not per step, because B_simple is of "
        "the order of 100 here. The full batch's zero error is against the training-set gradient, which it is; "
        "the notes' \"full batch ∝ 1/N\" is its error against the expected gradient over the data distribution, "
        f"tr(Σ_pop)/N = {head['full-batch error against the expected gradient, tr(Σ_pop)/N, at init']:.3g} at "
        f"initialization for these N = {head['N (training samples)']} samples."
    )
    if stuck(*losses):
        text += (f" Not a finding about training: the {cfg['pretrain_epochs']} epochs of training left the loss at "
                 "its initial value; raise pretrain_epochs or pretrain_lr.")
    return text


def _variance_headline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The fitted exponents, the constant, and how far the measured errors are from the exact prediction."""
    fit = {(r["state"], r["sampling"], r["treatment"]): r for r in rows if r["part"] == "fit"}
    var_with = [r for r in rows if r["part"] == "variance" and r["sampling"] == "with replacement"]
    ratios = [r["measured"] / r["predicted"] for r in var_with]
    zs = [abs(r["measured"] - r["predicted"]) / r["stderr"] for r in var_with if r["stderr"] > 0]
    return {
        "fitted exponent k, at init (with replacement)": fit["init", "with replacement", "raw"]["exponent"],
        "fitted exponent k, after training (with replacement)": fit["trained", "with replacement", "raw"]["exponent"],
        "fitted exponent k, at init, without replacement (raw)": fit["init", "without replacement", "raw"]["exponent"],
        "fitted exponent k, at init, without replacement (factor divided out)":
            fit["init", "without replacement", "factor divided out"]["exponent"],
        "fitted exponent k, after training, without replacement (raw)":
            fit["trained", "without replacement", "raw"]["exponent"],
        "fitted exponent k, after training, without replacement (factor divided out)":
            fit["trained", "without replacement", "factor divided out"]["exponent"],
        "tr(Σ_pop) at init": fit["init", "with replacement", "raw"]["trace_cov_pop"],
        "fitted c at init (m_B = c·B^k)": fit["init", "with replacement", "raw"]["c"],
        "measured / predicted tr(Σ_pop)/B, min": min(ratios),
        "measured / predicted tr(Σ_pop)/B, max": max(ratios),
        "max |measured − predicted| / stderr": max(zs),
        **_noise_headline(rows),
    }


def _noise_headline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """B_simple per state, the progress per step 1/(1 + B_simple/B) at B = 100 and 1000, the training loss
    at each state, and the full batch's error against the expected gradient, tr(Σ_pop)/N."""
    head: dict[str, Any] = {}
    for r in (r for r in rows if r["part"] == "noise_scale"):
        where = "at init" if r["state"] == "init" else "after training"
        head[f"training loss {where}"] = r["train_loss"]
        head[f"noise scale B_simple = tr(Σ)/‖g‖² {where}"] = r["noise_scale"]
        for b in (100, 1000):
            head[f"progress per step at B = {b}, 1/(1 + B_simple/B), {where}"] = 1 / (1 + r["noise_scale"] / b)
        if r["state"] == "init":
            head["N (training samples)"] = r["n"]
            head["full-batch error against the expected gradient, tr(Σ_pop)/N, at init"] = (
                r["trace_cov"] * (r["n"] - 1) / r["n"] ** 2)
    return head


def _training_headline(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    """Per setting at its selected rate: the rate, score and steps per epoch, and per seed the initial and
    final loss, the seconds per epoch and the epochs to the two targets (A: the highest over seeds of the
    lowest loss of online and mini-batch; B: the highest over seeds of full batch's lowest loss)."""
    runs = _selected_runs(rows)
    seeds, e = list(next(iter(runs.values()))), cfg["epochs"]
    online, mini, full = runs
    lowest = {s: [min(r["train_loss"] for r in run) for run in per.values()] for s, per in runs.items()}
    targets = {"A": max(lowest[online] + lowest[mini]), "B": max(lowest[full])}
    head: dict[str, Any] = {
        "training seeds": seeds, "training settings": list(runs),
        "target A: the highest over seeds of the lowest loss of online and mini-batch": targets["A"],
        "target B: the highest over seeds of the lowest loss of full batch": targets["B"]}
    for s, per in runs.items():
        first, finals = per[seeds[0]], [_final(run, e) for run in per.values()]
        head[f"{s}: learning rate (best of grid on the first seed)"] = first[0]["lr"]
        head[f"{s}: mean loss over the last half of the epochs (first seed)"] = first[0]["score"]
        head[f"{s}: steps per epoch"] = first[0]["steps_per_epoch"]
        head[f"{s}: initial training loss, per seed"] = [run[0]["train_loss"] for run in per.values()]
        head[f"{s}: final training loss after {e} epochs, per seed"] = finals
        head[f"{s}: final training loss after {e} epochs, over seeds"] = over_seeds(finals)
        head[f"{s}: seconds per epoch (wall time, mean over seeds)"] = float(
            np.mean([run[-1]["seconds"] / max(run[-1]["epoch"], 1) for run in per.values()]))
        for name, target in targets.items():
            head[f"{s}: epochs to target {name}, per seed"] = [_epochs_to(run, target) for run in per.values()]
    return {**head, **_orderings(head, e)}


def _orderings(head: dict[str, Any], epochs: int) -> dict[str, Any]:
    """The settings ranked by their mean final loss and on how many seeds that ranking holds; per target and
    seed, the setting(s) that reach it in the fewest epochs."""
    settings, n = head["training settings"], len(head["training seeds"])
    finals = {s: head[f"{s}: final training loss after {epochs} epochs, per seed"] for s in settings}
    order = sorted(settings, key=lambda s: float(np.mean(finals[s])))
    out: dict[str, Any] = {
        "final training loss: settings by the mean, lowest first": order,
        "seeds on which the final losses keep that order":
            sum(all(finals[a][i] < finals[b][i] for a, b in itertools.pairwise(order)) for i in range(n))}
    for name in ("A", "B"):
        firsts = []
        for i in range(n):
            hit = {s: head[f"{s}: epochs to target {name}, per seed"][i] for s in settings}
            fewest = min(v for v in hit.values() if v is not None)
            firsts.append([s for s, v in hit.items() if v == fewest])
        out[f"target {name}: first per epoch, per seed"] = firsts
    return out


def figures(records: Records, cfg: dict[str, Any]) -> dict[str, Figure]:
    """The error against B with its predictions, the selected runs' loss per epoch (over seeds) and second,
    the rate grid (first seed)."""
    rows = records.rows
    return {
        "variance": Figure(_variance_figure(rows), "Mean squared error of the mini-batch gradient vs batch size B "
                           f"on the digits (64-h-10 tanh MLP, {cfg['draws']} draws per B; error bars: standard "
                           f"errors), at initialization and after {cfg['pretrain_epochs']} epochs, with the exact "
                           "predictions; k is the slope fitted in log-log."),
        "training": Figure(_training_figure(rows, cfg), "Training loss on all N samples under online, mini-batch "
                           "and full-batch SGD, each at its best learning rate from the grid on the first seed, "
                           f"against epochs (mean over {cfg['n_seeds']} seeds, band: min–max) and against training "
                           "wall time (each seed; machine-dependent)."),
        "lr_grid": Figure(_lr_grid_figure(rows, cfg), "Final training loss for every learning rate of the grid, on "
                          "the first seed; each setting uses the rate with the lowest mean loss over the last half "
                          "of the epochs, on every seed."),
    }


def _variance_figure(rows: list[dict[str, Any]]) -> Any:
    plt = pyplot()
    fit = {(r["state"], r["sampling"], r["treatment"]): r for r in rows if r["part"] == "fit"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, state in zip(axes, _STATES, strict=True):
        for sampling, marker, color in zip(_SAMPLINGS, ("o", "s"), ("C0", "C1"), strict=True):
            mine = [r for r in rows if r["part"] == "variance" and r["state"] == state
                    and r["sampling"] == sampling and r["measured"] > 0]
            b = np.array([r["batch_size"] for r in mine], dtype=np.float64)
            k = fit[(state, sampling, "raw")]["exponent"]
            ax.errorbar(b, [r["measured"] for r in mine], yerr=[r["stderr"] for r in mine], fmt=marker,
                        color=color, mfc="none" if sampling == "without replacement" else color, ms=5,
                        label=f"measured, {sampling} (fit k = {k:.3f})")
            ax.plot(b, [r["predicted"] for r in mine], "-" if sampling == "with replacement" else "--",
                    color=color, lw=1, label="tr(Σ_pop)/B" if sampling == "with replacement"
                    else "tr(Σ_pop)/B · (N − B)/(N − 1)")
        ax.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="E‖g_B − g‖²",
               title=f"{state} (training loss {mine[0]['train_loss']:.3f})")
        ax.legend(fontsize=8)
    fig.suptitle("Does the mini-batch gradient's squared error fall as 1/B?")
    fig.tight_layout()
    return fig


def _training_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for setting, per in _selected_runs(rows).items():
        table = np.full((len(per), cfg["epochs"] + 1), np.nan)
        for i, run in enumerate(per.values()):
            table[i, [r["epoch"] for r in run]] = [r["train_loss"] for r in run]
        table[~np.isfinite(table)] = np.nan
        cols = [c[~np.isnan(c)] for c in table.T]
        epochs = np.arange(cfg["epochs"] + 1)
        mean, lo, hi = ([f(c) if c.size else np.nan for c in cols] for f in (np.mean, np.min, np.max))
        (line,) = ax1.plot(epochs, mean, marker=".", label=f"{setting} (lr {next(iter(per.values()))[0]['lr']:g})")
        ax1.fill_between(epochs, lo, hi, color=line.get_color(), alpha=0.2)
        for i, run in enumerate(per.values()):
            timed = [r for r in run if r["epoch"] > 0]
            ax2.plot([r["seconds"] for r in timed], [r["train_loss"] for r in timed], marker=".", lw=1,
                     color=line.get_color(), label=line.get_label() if i == 0 else None)
    ax1.set(yscale="log", xlabel="epoch", ylabel="training loss (all N samples)",
            title=f"loss vs epochs (mean over {cfg['n_seeds']} seeds, band min–max)")
    ax2.set_xscale("log")
    ax2.set(xlabel="training wall time (s, this machine; epoch 0 not shown)", title="loss vs wall time, each seed")
    ax1.legend()
    ax2.legend()
    fig.suptitle("Which reaches a low training loss in fewer epochs: online, mini-batch or full batch?")
    fig.tight_layout()
    return fig


def _lr_grid_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    first = next(r["seed"] for r in rows if r["part"] == "training")
    training = [r for r in rows if r["part"] == "training" and r["seed"] == first]
    for setting in dict.fromkeys(r["setting"] for r in training):
        finals = [r for r in training if r["setting"] == setting and r["epoch"] == cfg["epochs"]]
        ax.plot([r["lr"] for r in finals], [r["train_loss"] if math.isfinite(r["train_loss"]) else np.nan
                                            for r in finals], marker="o", label=setting)
    ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel=f"training loss after {cfg['epochs']} epochs",
           title="learning-rate grid (missing points: diverged)")
    ax.legend()
    fig.suptitle("Which learning rate suits each batch setting?")
    fig.tight_layout()
    return fig

def answer(records: Records, cfg: dict[str, Any]) -> Answer:
    """The 1/B law as training draws its batches, the noise scale that says when a bigger batch stops
    paying, and how the three settings rank per epoch (on how many seeds)."""
    _, head = verdict(records, cfg)
    k = head["fitted exponent k, at init, without replacement (factor divided out)"]
    noise = head["noise scale B_simple = tr(Σ)/‖g‖² at init"]
    law = "Yes" if abs(k + 1) < 0.1 else "Not quite"
    text = (f"{law}: drawn as training draws them, the mini-batch gradient's squared error falls as 1/B once the "
            "finite-sample correction is divided out.")
    order, kept, seeds = (head["final training loss: settings by the mean, lowest first"],
                          head["seeds on which the final losses keep that order"], head["training seeds"])
    every = kept == len(seeds)
    if every:
        text += (f" The gradient noise scale at initialisation is about {noise:.0f} samples: batches much larger "
                 "than that buy little progress per sample.")
    name = {s: "mini-batch" if s.startswith("mini-batch") else s.replace(" ", "-") for s in order}  # no size
    text += (f" Per epoch, {name[order[0]]} training reached the lowest training loss and {name[order[-1]]} the "
             "highest" + (", on every seed." if every else f", on {kept} of {len(seeds)} seeds."))
    return Answer(text, "variance")


STUDY = register(Study(
    name="batch-size",
    question="Does the mini-batch gradient's variance fall as 1/B, and how do online, mini-batch and full-batch "
             "training compare per epoch, and how many steps does an epoch cost each?",
    notes="Source notes 001 (SGD vs batch vs mini-batch: the variance of the mini-batch gradient ∝ 1/b) and 004 "
          "section 4 (online vs batch learning; mini-batches of a few dozen).",
    measure=measure, verdict=verdict, figures=figures, answer=answer,
    method="On a small network on digits we draw many mini-batches of each size B, with and without "
           "replacement, and measure the squared error of their gradient against the full training-set gradient, "
           "at initialisation and after training. Then the same network is trained online, with mini-batches and "
           "with the full batch, each at its best learning rate, over three seeds.",
    checks={"batch_sizes": POSITIVE, "draws": POSITIVE, "lr_grid": POSITIVE,
            "blas_threads": Check(low=0, low_open=True, nullable=True, hint="null: as many as BLAS likes")},
    quick={"seed": 0, "hidden": 32, "batch_sizes": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512], "draws": 64,
           "pretrain_epochs": 5, "pretrain_lr": 0.1, "minibatch": 32, "epochs": 8, "n_seeds": 3,
           "lr_grid": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0], "blas_threads": 1},
    full={"seed": 0, "hidden": 32, "batch_sizes": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], "draws": 256,
          "pretrain_epochs": 20, "pretrain_lr": 0.1, "minibatch": 32, "epochs": 40, "n_seeds": 3,
          "lr_grid": [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0], "blas_threads": 1},
))
