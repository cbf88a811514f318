"""Study ``simplex``: training as a map of the data into the softmax simplex, each class carried into its own
decision region (source notes 004, §1, "The Soft-Max Simplex").

The theory (``nablanet.lab.simplex``). A classifier with C classes maps each sample x to the point
p = softmax(z(x)) of the simplex P = {p ≥ 0, Σ_c p_c = 1}; the arg max decides by the regions
P_c = {p_c ≥ p_j for every j}, convex and meeting at 1/C. The classifier is right on a training sample
exactly when its point lies in its label's region (up to exact ties, where the arg max picks the lower
index while the point sits on both regions' boundary), so

    fraction of the training set inside its regions = 1 − training error,

measured here two ways: membership from p (``simplex_records``: p_y ≥ p_j for every j), the error from
the logits' arg max (``nn.predict``), over every sample at every epoch. The margin
m = (p_y − max_{j≠y} p_j)/√2 is the Euclidean distance from p to its region's nearest boundary when
positive (inside), at most 1/√2 (at the vertex e_y); its distribution over the training set says how
far inside the points are, and how that grows with training.

Method. Digits (``nn.data.load_digits``, the training split of seed ``seed``, pixels in [0, 1]) of the
three classes ``classes``, relabelled 0, 1, 2 in that order; a 64-``hidden``-3 tanh MLP (float64,
PyTorch's initialisation from the seed's generator: small logits, so the points start near 1/3) trained
with cross-entropy by SGD at ``lr`` in mini-batches of ``batch_size`` for ``epochs`` epochs. After every
epoch (and before the first) the whole training set is mapped into P in evaluation mode (one
``nn.predict`` whose logits give both p, as ``simplex_points`` maps them, and the error): the inside
fraction (overall and per class), the training error and loss, the number of samples on which membership
and correctness disagree, and the margin's quantiles; at epoch 0 ("init"), ``epochs // 2`` ("mid") and
``epochs`` ("end") every sample's point is kept. The Recorder's ``simplex`` quantity records the batches'
clouds every ``record_every`` steps during ``fit``, read from the output each step computed (training
mode, before the update).

The 1-simplex: the digits ``binary_classes`` (relabelled 0, 1), a 64-``hidden``-1 tanh MLP with one
binary logit z under BCEWithLogitsLoss, p = (1 − σ(z), σ(z)) on the segment, the boundary at ½; its error
is that of the rule z > 0, measured on the logits.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

import nablanet as nn
from nablanet.lab.plots import plot_simplex
from nablanet.lab.simplex import output_probabilities
from nablanet.studies._guard import did_not_learn, learned
from nablanet.studies._models import mlp
from nablanet.studies.base import Answer, Figure, Records, Study, Verdict, pyplot, register
from nablanet.studies.settings import POSITIVE, Check
from nablanet.train.callbacks.base import Callback

RUNS = ("3-class", "2-class")
TIMES = ("init", "mid", "end")
WHEN = {"init": "init", "mid": "mid-training", "end": "end"}
MAX_MARGIN = 1 / math.sqrt(2.0)
"""The largest margin, at a vertex of the simplex."""


def check_config(cfg: dict[str, Any]) -> None:
    """Three different digits for the 2-simplex, two for the 1-simplex, and at least two epochs (init,
    mid and end must be three different times)."""
    for key, k in (("classes", 3), ("binary_classes", 2)):
        if len(cfg[key]) != k or len(set(cfg[key])) != k:
            raise ValueError(f"simplex: {key}={cfg[key]!r}: expected {k} different digits in 0 … 9. Fix: --set "
                             f"{key}={list(range(k))}.")
    if cfg["epochs"] < 2:
        raise ValueError(f"simplex: epochs={cfg['epochs']!r}: expected at least 2, so that init, mid-training "
                         "(epochs // 2) and the end are three different times. Fix: --set epochs=2.")


# -- the runs --------------------------------------------------------------------------------------------------
def digits(classes: list[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training split's images (float64) of the digits ``classes``, labels relabelled 0 … k − 1 in order."""
    x, y = nn.data.load_digits(seed=seed, dtype=np.float64).train
    keep = np.isin(y, classes)
    relabel = {c: k for k, c in enumerate(classes)}
    return x[keep], np.array([relabel[int(c)] for c in y[keep]], dtype=np.int64)


class _Snapshots(Callback):
    """After every epoch (and at the start): the training set's image in the simplex, from the model."""

    def __init__(self, run: str, seed: int, x: np.ndarray, y: np.ndarray, error: Any, keep: dict[int, str]) -> None:
        self.run, self.seed, self.x, self.y, self.error, self.keep = run, seed, x, y, error, keep
        self.rows: list[dict[str, Any]] = []

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.take(0)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self.take(epoch + 1)

    def take(self, epoch: int) -> None:
        model = self.context.model
        z = nn.predict(model, self.x)  # one forward pass: p (as simplex_points gives it) and the error
        rec = nn.lab.simplex_records(output_probabilities(z, model), self.y)
        correct, loss = self.error(z)  # each sample's verdict from the logits, apart from p
        n_classes = rec.p.shape[1]
        q10, q50, q90 = np.quantile(rec.margin, [0.1, 0.5, 0.9]).tolist()
        row = {"part": "epoch", "run": self.run, "seed": self.seed, "epoch": epoch, "n": len(self.y),
               "inside": float(rec.inside.mean()), "error": 1.0 - float(correct.mean()), "loss": loss,
               "n_inside": int(np.count_nonzero(rec.inside)), "n_correct": int(np.count_nonzero(correct)),
               "disagreements": int(np.count_nonzero(rec.inside != correct)),
               "ties": int(np.count_nonzero(rec.margin == 0)),
               "margin_mean": float(rec.margin.mean()), "margin_min": float(rec.margin.min()),
               "margin_q10": q10, "margin_median": q50, "margin_q90": q90,
               "distance_to_centre_max": float(np.linalg.norm(rec.p - 1 / n_classes, axis=1).max())}
        row.update({f"inside_{c}": float(rec.inside[rec.label == c].mean()) for c in range(n_classes)})
        self.rows.append(row)
        if epoch in self.keep:
            self.rows += [{"part": "point", "run": self.run, "seed": self.seed, "time": self.keep[epoch],
                           "epoch": epoch, "index": n, "label": int(rec.label[n]), "predicted": int(rec.predicted[n]),
                           **{f"p_{c}": float(rec.p[n, c]) for c in range(n_classes)},
                           "inside": bool(rec.inside[n]), "margin": float(rec.margin[n]),
                           "x": float(rec.xy[n, 0]), "y": float(rec.xy[n, 1])} for n in range(len(self.y))]


def _times(cfg: dict[str, Any]) -> dict[int, str]:
    return {0: "init", cfg["epochs"] // 2: "mid", cfg["epochs"]: "end"}


def _finished(run: str, history: Any) -> None:
    """A run that fit stopped early (a diverged loss) has no end to show: say so, with the fix."""
    if history.stop_reason is not None:
        raise ValueError(f"simplex: the {run} run stopped after {len(history.records)} epochs ({history.stop_reason}); "
                         "the study needs every epoch. Fix: a smaller rate, e.g. --set lr=0.02.")


def three_class_run(cfg: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """The 2-simplex: a 3-class MLP on the digits ``classes`` (module docstring); the per-epoch, per-point
    and Recorder rows."""
    x, y = digits(cfg["classes"], seed)
    model, loss = mlp(64, [cfg["hidden"]], 3, np.random.default_rng([seed, 3]), nn.Tanh), nn.CrossEntropyLoss()

    def error(z: np.ndarray) -> tuple[np.ndarray, float]:
        return z.argmax(axis=1) == y, float(loss(z, y))  # the rule arg max z

    snaps = _Snapshots("3-class", seed, x, y, error, _times(cfg))
    rec = nn.lab.Recorder(every=cfg["record_every"], quantities=["simplex"])
    _finished("3-class", nn.fit(model, loss, nn.optim.SGD(model.parameters(), lr=cfg["lr"]), (x, y),
                                epochs=cfg["epochs"], batch_size=cfg["batch_size"], seed=seed, callbacks=[snaps, rec]))
    steps = math.ceil(len(x) / cfg["batch_size"])
    recorded = [{"part": "recorder", "run": "3-class", "seed": seed, "step": r["step"], "epoch": r["step"] / steps,
                 "quantity": r["quantity"], "value": r["value"]} for r in rec.to_records()]
    return snaps.rows + recorded


def two_class_run(cfg: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """The 1-simplex: one binary logit on the digits ``binary_classes``; the per-epoch and per-point rows."""
    x, y = digits(cfg["binary_classes"], seed)
    model, loss = mlp(64, [cfg["hidden"]], 1, np.random.default_rng([seed, 2]), nn.Tanh), nn.BCEWithLogitsLoss()
    target = y[:, None].astype(np.float64)

    def error(z: np.ndarray) -> tuple[np.ndarray, float]:
        return (z[:, 0] > 0) == (y == 1), float(loss(z, target))  # the rule z > 0

    snaps = _Snapshots("2-class", seed, x, y, error, _times(cfg))
    _finished("2-class", nn.fit(model, loss, nn.optim.SGD(model.parameters(), lr=cfg["lr"]), (x, target),
                                epochs=cfg["epochs"], batch_size=cfg["batch_size"], seed=seed, callbacks=[snaps]))
    return snaps.rows


def measure(cfg: dict[str, Any]) -> Records:
    return Records(three_class_run(cfg, cfg["seed"]) + two_class_run(cfg, cfg["seed"]))


# -- reading the records -----------------------------------------------------------------------------------------
def _epochs(rows: list[dict[str, Any]], run: str) -> list[dict[str, Any]]:
    return sorted((r for r in rows if r["part"] == "epoch" and r["run"] == run), key=lambda r: r["epoch"])


def _points(rows: list[dict[str, Any]], run: str, time: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["part"] == "point" and r["run"] == run and r["time"] == time]


def _at(rows: list[dict[str, Any]], run: str, cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The epoch rows at init, mid-training and the end."""
    by_epoch = {r["epoch"]: r for r in _epochs(rows, run)}
    return {time: by_epoch[epoch] for epoch, time in _times(cfg).items()}


def _run_headline(rows: list[dict[str, Any]], run: str, cfg: dict[str, Any]) -> dict[str, Any]:
    eps, at = _epochs(rows, run), _at(rows, run, cfg)
    head: dict[str, Any] = {f"{run}: training samples": eps[0]["n"], f"{run}: epochs measured": len(eps)}
    for time, r in at.items():
        head[f"{run}: inside fraction at {time} (epoch {r['epoch']})"] = r["inside"]
        head[f"{run}: training error at {time}"] = r["error"]
        head[f"{run}: median margin at {time}"] = r["margin_median"]
        head[f"{run}: 10% quantile of the margin at {time}"] = r["margin_q10"]
        head[f"{run}: smallest margin at {time}"] = r["margin_min"]
    head[f"{run}: points outside at the end"] = at["end"]["n"] - at["end"]["n_inside"]
    head[f"{run}: largest |samples inside − samples classified right| over the epochs"] = max(
        abs(r["n_inside"] - r["n_correct"]) for r in eps)
    head[f"{run}: samples where inside ≠ correct, over all epochs"] = sum(r["disagreements"] for r in eps)
    head[f"{run}: sample-epochs measured"] = sum(r["n"] for r in eps)
    head[f"{run}: points on a boundary (margin exactly 0), over all epochs"] = sum(r["ties"] for r in eps)
    head[f"{run}: largest distance to 1/C at init"] = at["init"]["distance_to_centre_max"]
    medians = [r["margin_median"] for r in eps]
    head[f"{run}: epochs in which the median margin grew"] = sum(b > a for a, b in itertools.pairwise(medians))
    head[f"{run}: training loss at the end"] = at["end"]["loss"]
    return head


def _headline(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    head = _run_headline(rows, "3-class", cfg)
    end = _at(rows, "3-class", cfg)["end"]
    for k, digit in enumerate(cfg["classes"]):
        head[f"3-class: digit {digit} inside at the end"] = end[f"inside_{k}"]
    batch = [r for r in rows if r["part"] == "recorder" and r["quantity"] == "simplex_inside"]
    head["3-class: batch inside fraction at the first recorded step"] = batch[0]["value"]
    head["3-class: batch inside fraction at the last recorded step"] = batch[-1]["value"]
    head["3-class: last recorded step"] = batch[-1]["step"]
    head.update(_run_headline(rows, "2-class", cfg))
    return head


def _agreement(head: dict[str, Any], run: str) -> str:
    """The inside fraction against 1 − training error, sample by sample, in words."""
    off, seen = head[f"{run}: samples where inside ≠ correct, over all epochs"], head[f"{run}: sample-epochs measured"]
    gap, ties = head[f"{run}: largest |samples inside − samples classified right| over the epochs"], head[
        f"{run}: points on a boundary (margin exactly 0), over all epochs"]
    n = head[f"{run}: epochs measured"]
    if off == 0:
        return (f"inside fraction and 1 − training error agree exactly at all {n} epochs measured: membership from p "
                f"and correctness from the logits differ on {off} of {seen} sample-epochs ({ties} points exactly on "
                "a boundary)")
    return (f"inside fraction and 1 − training error differ: membership and correctness disagree on {off} of {seen} "
            f"sample-epochs (at most {gap} samples in one of the {n} epochs), and {ties} points lie exactly on a "
            "boundary, inside two regions, where the arg max picks the lower index")


def _progress(head: dict[str, Any], run: str) -> str:
    said = []
    for time in TIMES:
        key = next(k for k in head if k.startswith(f"{run}: inside fraction at {time} "))
        epoch = key.rsplit("epoch ", 1)[1].rstrip(")")
        when = "the end" if time == "end" else WHEN[time]
        error = head[f"{run}: training error at {time}"]
        said.append(f"{head[key]:.1%} at {when} (epoch {epoch}; training error {error:.1%})")
    return ", ".join(said)


def _margins(head: dict[str, Any], run: str, epochs: int) -> str:
    med = [head[f"{run}: median margin at {t}"] for t in TIMES]
    low = [head[f"{run}: 10% quantile of the margin at {t}"] for t in TIMES]
    text = (f"the median margin {med[0]:.3f} at init, {med[1]:.3f} at mid-training and {med[2]:.3f} at the end (its "
            f"10% quantile {low[0]:.3f}, {low[1]:.3f}, {low[2]:.3f}); the median grew in "
            f"{head[f'{run}: epochs in which the median margin grew']} of {epochs} epochs")
    out, worst = head[f"{run}: points outside at the end"], [head[f"{run}: smallest margin at {t}"] for t in TIMES]
    if out == 0:
        return text + f", and at the end every point is inside (the smallest margin {worst[2]:.3f})"
    further = "further out than" if worst[2] < worst[0] else "no further out than"
    return text + (f"; {out} point{'s are' if out > 1 else ' is'} still outside at the end, the worst at a margin of "
                   f"{worst[2]:.3f}, {further} the worst point at init ({worst[0]:.3f})")


def verdict(records: Records, cfg: dict[str, Any]) -> Verdict:
    """Inside fraction vs training error (both runs), the margin's growth, the batches' cloud during fit."""
    head = _headline(records.rows, cfg)
    digits3 = ", ".join(map(str, cfg["classes"]))
    per_class = ", ".join(f"digit {d} {head[f'3-class: digit {d} inside at the end']:.1%}" for d in cfg["classes"])
    text = (f"The 2-simplex (digits {digits3}; N = {head['3-class: training samples']} training images; a "
            f"64-{cfg['hidden']}-3 tanh MLP, cross-entropy, SGD at lr = {cfg['lr']:g}, {cfg['epochs']} epochs, seed "
            f"{cfg['seed']}): at init every training point lies within "
            f"{head['3-class: largest distance to 1/C at init']:.3f} of 1/3, where the three boundaries meet; the "
            f"fraction inside its label's region is {_progress(head, '3-class')}. The "
            f"{_agreement(head, '3-class')}. Inside at the end, per class: {per_class}. The margin to the nearest "
            f"boundary (at most 1/√2 ≈ {MAX_MARGIN:.3f}, at a vertex): {_margins(head, '3-class', cfg['epochs'])}. "
            f"The batches the Recorder read during fit (every {cfg['record_every']} steps, training mode, before "
            f"each update): {head['3-class: batch inside fraction at the first recorded step']:.1%} inside at step 0, "
            f"{head['3-class: batch inside fraction at the last recorded step']:.1%} at step "
            f"{head['3-class: last recorded step']}. The 1-simplex (digits {cfg['binary_classes'][0]} and "
            f"{cfg['binary_classes'][1]}; N = {head['2-class: training samples']}; one logit z, p = (1 − σ(z), σ(z)), "
            f"BCE): inside {_progress(head, '2-class')}; the {_agreement(head, '2-class')}; "
            f"{_margins(head, '2-class', cfg['epochs'])}.")
    accuracy = {run: 1 - head[f"{run}: training error at end"] for run in RUNS}
    guard = [did_not_learn(f"The {run} run", accuracy[run], k,
                           "Fix: train longer or at a larger rate (--set epochs=…, --set lr=…).")
             for run, k in (("3-class", 3), ("2-class", 2)) if not learned(accuracy[run], k)]
    return Verdict(" ".join([text, *guard]), head)


# -- figures -----------------------------------------------------------------------------------------------------
def _cloud(rows: list[dict[str, Any]], run: str, time: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The recorded points p (N, C) and labels of one run at one time."""
    pts = _points(rows, run, time)
    return np.array([[r[f"p_{c}"] for c in range(n_classes)] for r in pts]), np.array([r["label"] for r in pts])


def _cloud_figure(rows: list[dict[str, Any]], cfg: dict[str, Any], run: str) -> Any:
    plt = pyplot()
    n_classes, digits_ = (3, cfg["classes"]) if run == "3-class" else (2, cfg["binary_classes"])
    at = _at(rows, run, cfg)
    shape, size = ((1, 3), (13, 4.8)) if n_classes == 3 else ((3, 1), (7, 6.6))
    fig, axes = plt.subplots(*shape, figsize=size)
    for ax, time in zip(axes, TIMES, strict=True):
        p, labels = _cloud(rows, run, time, n_classes)
        r = at[time]
        plot_simplex(p, labels, ax=ax, names=[f"digit {d}" for d in digits_], size=9 if n_classes == 3 else 7,
                     title=f"{WHEN[time]} (epoch {r['epoch']}): {r['inside']:.1%} inside, error {r['error']:.1%}")
    question = ("Does training carry each class into its own region of the simplex?" if n_classes == 3 else
                "Does training carry each class to its own side of ½ on the 1-simplex?")
    fig.suptitle(question)
    fig.tight_layout()
    return fig


def _agreement_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for k, run in enumerate(RUNS):
        eps = _epochs(rows, run)
        e = [r["epoch"] for r in eps]
        ax.plot(e, [1 - r["error"] for r in eps], color=f"C{k}", lw=1.5, label=f"{run}: 1 − training error (logits)")
        ax.plot(e, [r["inside"] for r in eps], ls="none", marker="o", ms=7, mfc="none", color=f"C{k}",
                label=f"{run}: fraction inside its region (p)")
    batch = [r for r in rows if r["part"] == "recorder" and r["quantity"] == "simplex_inside"]
    ax.plot([r["epoch"] for r in batch], [r["value"] for r in batch], color="0.6", lw=0.8, zorder=0,
            label="3-class: each recorded batch, inside (Recorder, during fit)")
    ax.set(xlabel="epoch", ylabel="fraction of the training set", ylim=(-0.02, 1.05),
           title="membership from p (circles) and correctness from the logits (lines)")
    ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Is the fraction inside its region exactly one minus the training error?")
    fig.tight_layout()
    return fig


def _margin_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    margins = {t: np.array([r["margin"] for r in _points(rows, "3-class", t)]) for t in TIMES}
    bins = np.linspace(min(m.min() for m in margins.values()), MAX_MARGIN, 40)
    for k, (time, m) in enumerate(margins.items()):
        ax1.hist(m, bins=bins, histtype="step", lw=1.6, color=f"C{k + 2}",
                 label=f"{WHEN[time]}: median {np.median(m):.3f}")
    for ax in (ax1, ax2):
        ax.axvline(0.0, color="k", lw=0.8) if ax is ax1 else ax.axhline(0.0, color="k", lw=0.8)
    ax1.axvline(MAX_MARGIN, color="0.5", ls=":", lw=1)
    ax1.set(xlabel="margin (p_y − max over j ≠ y of p_j)/√2", ylabel="training images",
            title="3-class: margin distribution (0: a boundary; dotted: a vertex, 1/√2)")
    ax1.legend(fontsize=8, loc="upper right")
    eps = _epochs(rows, "3-class")
    e = [r["epoch"] for r in eps]
    ax2.fill_between(e, [r["margin_q10"] for r in eps], [r["margin_q90"] for r in eps], color="C0", alpha=0.2,
                     label="3-class: 10%–90% quantiles")
    ax2.plot(e, [r["margin_median"] for r in eps], color="C0", label="3-class: median")
    ax2.plot(e, [r["margin_min"] for r in eps], color="C0", ls=":", label="3-class: smallest")
    two = _epochs(rows, "2-class")
    ax2.plot([r["epoch"] for r in two], [r["margin_median"] for r in two], color="C1", ls="--", label="2-class: median")
    ax2.axhline(MAX_MARGIN, color="0.5", ls=":", lw=1)
    ax2.set(xlabel="epoch", ylabel="margin", title="margin over training (dotted: the vertex, 1/√2)")
    ax2.legend(fontsize=8, loc="upper left")
    fig.suptitle("How far inside their regions are the training points, and how does that grow?")
    fig.tight_layout()
    return fig


def figures(records: Records, cfg: dict[str, Any]) -> dict[str, Figure]:
    """The 2-simplex and the 1-simplex at init, mid-training and the end; inside vs 1 − error; the margins."""
    rows, head = records.rows, _headline(records.rows, cfg)
    digits3 = ", ".join(map(str, cfg["classes"]))
    gap = {run: head[f"{run}: largest |samples inside − samples classified right| over the epochs"] for run in RUNS}
    return {
        "simplex": Figure(_cloud_figure(rows, cfg, "3-class"), (
            f"The training images of the digits {digits3} in the 2-simplex (the triangle of p = softmax(z), drawn "
            f"isometrically) at init, mid-training and the end, coloured by true class, over the decision regions "
            f"P_c = {{p_c ≥ p_j}} shaded in the class colours; the boundaries meet at 1/3 (the black dot). A point is "
            f"classified right exactly when it lies in the region of its own colour.")),
        "segment": Figure(_cloud_figure(rows, cfg, "2-class"), (
            f"The 1-simplex: digits {cfg['binary_classes'][0]} and {cfg['binary_classes'][1]} under one logit z, "
            "p = (1 − σ(z), σ(z)) on the segment from e₀ to e₁, the boundary at ½; the height of a point means nothing "
            "(a fixed jitter spreads the points).")),
        "inside_vs_error": Figure(_agreement_figure(rows, cfg), (
            "Per epoch, on the whole training set: the fraction of points inside their label's region, from p, and "
            f"1 − the training error, from the logits' arg max, for both runs; they differ by at most {gap['3-class']} "
            f"samples in an epoch (3-class) and {gap['2-class']} (2-class). Grey: the inside fraction of each batch "
            "the Recorder read during fit (training mode, before the step).")),
        "margins": Figure(_margin_figure(rows, cfg), (
            "The signed margin m = (p_y − max over j ≠ y of p_j)/√2, the distance to the nearest boundary of the "
            "label's region (negative outside): its distribution over the training images at init, mid-training and "
            "the end (3-class), and its quantiles per epoch (the 2-class run's median dashed).")),
    }


def answer(records: Records, cfg: dict[str, Any]) -> Answer:
    """Where the training points end up in the simplex, against where they started, and how far inside."""
    _, head = verdict(records, cfg)
    start = head["3-class: inside fraction at init (epoch 0)"]
    end = head[f"3-class: inside fraction at end (epoch {cfg['epochs']})"]
    err = head["3-class: training error at end"]
    if not learned(1 - err, 3):
        return Answer("The three-class run stayed near chance, so where its points ended up is not a finding; the "
                      "verdict says how to train it longer.", "simplex")
    same = "exactly one minus the training error" if head[
        "3-class: samples where inside ≠ correct, over all epochs"] == 0 else "one minus the training error up to ties"
    median = head["3-class: median margin at end"]
    grew = (f"The median distance to the nearest boundary grows to {median:.2f} as training pushes the points towards "
            "the corners." if median > head["3-class: median margin at init"] else
            f"The median distance to the nearest boundary ends at {median:.2f}, no larger than at initialisation.")
    return Answer(
        f"Training carries each class's points from the centre of the simplex, where the decision regions meet, into "
        f"its own region: at the end {end:.1%} of the training images lie inside their class's region ({same}), "
        f"against {start:.1%} at initialisation. " + grew, "simplex")


STUDY = register(Study(
    name="simplex",
    question="Does training carry each class's points into its own decision region of the softmax simplex, and "
             "how far inside?",
    notes="Source notes 004 (Tomasi, Training CNNs, §1: the soft-max simplex, its convex decision regions and their "
          "boundaries meeting at 1/e).",
    measure=measure, verdict=verdict, figures=figures, answer=answer,
    method="A small network is trained with cross-entropy on three digit classes, and after every epoch we map the "
           "whole training set into the simplex of softmax outputs: which points lie in their own class's region, "
           "how far from its boundary, and whether that matches the training error computed from the logits. A "
           "two-class run with one logit does the same on the segment.",
    checks={"classes": Check(low=0, high=9), "binary_classes": Check(low=0, high=9), "record_every": POSITIVE},
    validate=check_config,
    quick={"seed": 0, "classes": [0, 1, 2], "binary_classes": [0, 1], "hidden": 16, "epochs": 20, "lr": 0.02,
           "batch_size": 32, "record_every": 5},
    full={"seed": 0, "classes": [0, 1, 2], "binary_classes": [0, 1], "hidden": 32, "epochs": 100, "lr": 0.02,
          "batch_size": 32, "record_every": 2},
))
