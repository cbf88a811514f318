"""Study ``saturation``: a sigmoid output that starts at the wrong end learns slowly under the
quadratic cost and not under cross-entropy (source notes 002; Nielsen, ch. 3).

Part 1, the single neuron: a = σ(w·1 + b), target 0, plain gradient descent with η = 0.15.
    quadratic  C = ½ a²            ∂C/∂b = a σ′(z) = a² (1 − a)   (σ′ → 0 as a → 1: a stall)
    cross-ent. C = −ln(1 − a)      ∂C/∂b = a                      (no σ′: the error drives the step)
Part 2, a network: a 64-32-10 MLP on the digits with sigmoid outputs, trained with MSE and with binary
cross-entropy (BCE) on the same outputs, ``n_seeds`` seeds each, from two starts: "saturated" (every
output bias set to ``output_bias``, so every output starts near 1, the wrong end for the nine zeros of
each one-hot target) and the control "unsaturated" (output biases 0, outputs near ½).

What shows saturation is the escape time: optimizer steps until the mean wrong-end output (the mean
test-set output over the positions whose target is 0) falls below 0.5. The final-accuracy gap between
the losses is not its effect: it stays without the saturated start, because per output the quadratic
cost's gradient is ∂C/∂z = 2σ′(z)(a − y) against BCE's (a − y), with σ′ ≤ ¼, so at one shared learning
rate ``lr`` MSE takes steps at most half, and typically a fifth, as long. ``lr_grid`` (when not empty)
trains both losses at each of its rates as well, and compares them at the rate best for each.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import nablanet as nn
from nablanet.studies._guard import did_not_learn, learned, over_seeds
from nablanet.studies.base import Answer, Figure, Records, Study, Verdict, pyplot, register
from nablanet.studies.settings import Check
from nablanet.train.callbacks.base import Callback

LOSSES = ("mse", "bce")
STARTS_NET = ("saturated", "unsaturated")
"""The network's two starts: output biases at ``output_bias``, and the control at 0."""
N_CLASSES = 10


def _neuron(w0: float, b0: float, loss_name: str, eta: float, steps: int) -> list[dict[str, Any]]:
    model = nn.Sequential(nn.Linear(1, 1, dtype=np.float64), nn.Sigmoid())
    model.load_state_dict({"0.weight": [[w0]], "0.bias": [b0]})
    loss = nn.QuadraticLoss() if loss_name == "quadratic" else nn.BCELoss()
    opt = nn.optim.SGD(model.parameters(), lr=eta)
    x, d = np.ones((1, 1)), np.zeros((1, 1))
    rows = []
    for t in range(steps + 1):
        y, caches = model.forward(x, train=True)
        value, lc = loss.forward(y, d)
        rows.append({"part": "neuron", "start": f"w={w0:g}, b={b0:g}", "loss": loss_name, "step": t,
                     "output": float(y[0, 0]), "cost": float(value)})
        if t == steps:
            break
        opt.zero_grad()
        model.backward(caches, loss.vjp(lc))
        opt.step()
    return rows


class _Watch(Callback):
    """What a network run records on the test set: after each step until the escape, the mean output over the
    positions whose target is 0 (the wrong end); after each epoch, accuracy, that mean and 2σ′(z) = 2a(1 − a)."""

    def __init__(self, model: nn.Sequential, test: tuple[np.ndarray, np.ndarray], key: dict[str, Any]) -> None:
        self.model, (self.x, self.y), self.key = model, test, key
        self.wrong = np.eye(N_CLASSES, dtype=bool)[self.y] == 0
        self.trace = [self._wrong_end(model(self.x))]
        self.step: int | None = 0 if self.trace[0] < 0.5 else None
        self.rows: list[dict[str, Any]] = []
        self._record(0)

    def _wrong_end(self, out: np.ndarray) -> float:
        return float(out[self.wrong].mean())

    def on_batch_end(self, step: int, logs: dict[str, Any], tape: nn.Tape) -> None:
        if self.step is None:
            self.trace.append(self._wrong_end(self.model(self.x)))
            if self.trace[-1] < 0.5:
                self.step = len(self.trace) - 1

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self._record(epoch + 1)

    def _record(self, epochs_done: int) -> None:
        out = self.model(self.x)
        self.rows.append({"part": "network", **self.key, "epoch": epochs_done, "wrong_end_output": self._wrong_end(out),
                          "test_accuracy": float(np.mean(out.argmax(1) == self.y)),
                          "two_sigma_prime": float(np.mean(2 * out * (1 - out)))})


def _network(data: nn.data.Splits, loss_name: str, start: str, cfg: dict[str, Any], seed: int,
             lr: float) -> list[dict[str, Any]]:
    """One training run: a row per epoch, a row per step until the escape (at the shared ``lr``), a summary."""
    (x, y), test = data.train, data.test
    rng = np.random.default_rng(seed)
    out_layer = nn.Linear(32, N_CLASSES, rng=rng, dtype=np.float64)
    model = nn.Sequential(nn.Linear(64, 32, rng=rng, dtype=np.float64), nn.Sigmoid(), out_layer, nn.Sigmoid())
    if out_layer.bias is not None:
        out_layer.bias.data[...] = cfg["output_bias"] if start == "saturated" else 0.0
    loss = nn.MSELoss() if loss_name == "mse" else nn.BCELoss()
    key = {"loss": loss_name, "start": start, "lr": lr, "seed": seed}
    watch = _Watch(model, test, key)
    nn.fit(model, loss, nn.optim.SGD(model.parameters(), lr=lr), train=(x, np.eye(N_CLASSES)[y]),
           epochs=cfg["epochs"], batch_size=32, seed=seed, callbacks=[watch])
    summary = {"part": "run", **key, "escape_step": watch.step, "final_accuracy": watch.rows[-1]["test_accuracy"]}
    trace = [{"part": "escape", **key, "step": t, "wrong_end_output": v} for t, v in enumerate(watch.trace)]
    return [*watch.rows, *(trace if lr == cfg["lr"] else []), summary]


STARTS = ((0.6, 0.9), (2.0, 2.0))
"""The single neuron's starting (w, b): one where the quadratic cost learns, one at the wrong end."""


def measure(cfg: dict[str, Any]) -> Records:
    rows: list[dict[str, Any]] = []
    for w0, b0 in STARTS:
        for loss_name in ("quadratic", "cross_entropy"):
            rows += _neuron(w0, b0, loss_name, cfg["eta"], cfg["steps"])
    data = {seed: nn.data.load_digits(seed=seed, dtype=np.float64)
            for seed in range(cfg["seed"], cfg["seed"] + cfg["n_seeds"])}
    for lr in sorted({cfg["lr"], *cfg["lr_grid"]}):
        for start in STARTS_NET:
            for loss_name in LOSSES:
                for seed, splits in data.items():
                    rows += _network(splits, loss_name, start, cfg, seed, lr)
    return Records(rows)


def _curve(rows: list[dict[str, Any]], part: str, **match: Any) -> list[dict[str, Any]]:
    """The rows of one curve (one neuron start and loss, or one network run), in step order."""
    return [r for r in rows if r["part"] == part and all(r[k] == v for k, v in match.items())]


def _runs(rows: list[dict[str, Any]], loss: str, start: str, lr: float) -> list[dict[str, Any]]:
    """The summary rows of one (loss, start, lr), one per seed."""
    return _curve(rows, "run", loss=loss, start=start, lr=lr)


def _neuron_text(rows: list[dict[str, Any]], steps: int, head: dict[str, Any]) -> str:
    def out(start: str, loss: str, step: int) -> float:
        return next(r["output"] for r in _curve(rows, "neuron", start=start, loss=loss) if r["step"] == step)

    half = min(150, steps)
    head.update({
        "quadratic (0.6, 0.9): a at step 0": out("w=0.6, b=0.9", "quadratic", 0),
        f"quadratic (0.6, 0.9): a at step {steps}": out("w=0.6, b=0.9", "quadratic", steps),
        "quadratic (2, 2): a at step 0": out("w=2, b=2", "quadratic", 0),
        f"quadratic (2, 2): a at step {half}": out("w=2, b=2", "quadratic", half),
        f"quadratic (2, 2): a at step {steps}": out("w=2, b=2", "quadratic", steps),
        f"cross-entropy (2, 2): a at step {half}": out("w=2, b=2", "cross_entropy", half),
    })
    stalled = head["quadratic (2, 2): a at step 0"] - head[f"quadratic (2, 2): a at step {half}"]
    return (
        f"Quadratic cost, start (0.6, 0.9): the output falls from {head['quadratic (0.6, 0.9): a at step 0']:.2f} "
        f"to {head[f'quadratic (0.6, 0.9): a at step {steps}']:.2f} in {steps} steps. Start (2, 2): it moves only "
        f"{stalled:.3f} in the first {half} steps (σ′ ≈ 0 at the wrong end), while cross-entropy from the same start "
        f"is down to {head[f'cross-entropy (2, 2): a at step {half}']:.3f} by then."
    )


def _escape_text(rows: list[dict[str, Any]], cfg: dict[str, Any], head: dict[str, Any]) -> str:
    """The saturation claim: steps until the mean wrong-end output is below 0.5, per loss and start."""
    said = {}
    for start in STARTS_NET:
        for loss in LOSSES:
            steps = [r["escape_step"] for r in _runs(rows, loss, start, cfg["lr"])]
            stuck = sum(s is None for s in steps)
            head[f"{loss} {start}: escape steps"] = steps
            head[f"{loss} {start}: escape step"] = None if stuck else float(np.mean(steps))
            said[loss, start] = (f"did not escape in {cfg['epochs']} epochs in {stuck} of {len(steps)} seeds" if stuck
                                 else f"{over_seeds(steps)} steps")
    delay = {s: _delay(head[f"mse {s}: escape step"], head[f"bce {s}: escape step"]) for s in STARTS_NET}
    for start in STARTS_NET:
        head[f"MSE's escape delay behind BCE, {start}"] = delay[start]
    never = head["mse saturated: escape step"] is None and head["bce saturated: escape step"] is not None
    if never or (delay["saturated"] is not None and delay["unsaturated"] is not None
                 and delay["saturated"] > 0 and 2 * delay["unsaturated"] < delay["saturated"]):
        reading = ("MSE leaves the wrong end later than BCE from the saturated start and not from the control: "
                   "the network's σ′ ≈ 0 stall of the neuron above")
    else:
        reading = "no escape delay of MSE that the saturated start alone explains"
    return (f"Saturation shows in the escape time, the optimizer steps until the mean wrong-end output (test outputs "
            f"whose target is 0) falls below 0.5, at lr = {cfg['lr']:g}: from the saturated start (output biases "
            f"{cfg['output_bias']:g}) BCE {said['bce', 'saturated']}, MSE {said['mse', 'saturated']}; from the "
            f"unsaturated control (output biases 0) BCE {said['bce', 'unsaturated']}, MSE "
            f"{said['mse', 'unsaturated']}: {reading}.")


def _delay(mse: float | None, bce: float | None) -> float | None:
    """Steps by which MSE's mean escape trails BCE's; None when either never escaped in some seed."""
    return None if mse is None or bce is None else mse - bce


def _accuracies(rows: list[dict[str, Any]], lr: float) -> dict[tuple[str, str], list[float]]:
    """Final test accuracy per seed of each (loss, start) trained at ``lr``."""
    return {(loss, start): [r["final_accuracy"] for r in _runs(rows, loss, start, lr)]
            for start in STARTS_NET for loss in LOSSES}


def _pct(values: list[float]) -> str:
    """Accuracies over seeds, in percent: "90.7% ± 2.6% (3 seeds: 88.0%–93.3%)"."""
    return over_seeds(values, ".1%")


def _not_learned(acc: dict[tuple[str, str], list[float]], how: str) -> str | None:
    """The guard's sentences for the (loss, start) runs that ended near chance; None when all learned."""
    failed = [(k, float(np.mean(v))) for k, v in acc.items() if not learned(float(np.mean(v)), N_CLASSES)]
    if not failed:
        return None
    fix = ("Fix: train longer or at a larger rate (--set epochs=…, --set lr=…) before reading an accuracy gap "
           "between the losses from these runs.")
    return " ".join(did_not_learn(f"{loss.upper()} from the {start} start ({how}, mean over seeds)", a, N_CLASSES,
                                  fix if i == len(failed) - 1 else "").strip()
                    for i, ((loss, start), a) in enumerate(failed))


def _gap_text(rows: list[dict[str, Any]], cfg: dict[str, Any], head: dict[str, Any]) -> str:
    """The final-accuracy gap at the shared rate, with and without the saturated start, and its cause."""
    acc = _accuracies(rows, cfg["lr"])
    for (loss, start), values in acc.items():
        head[f"{loss} {start}: final test accuracy"] = float(np.mean(values))
        head[f"{loss} {start}: final test accuracies"] = values
    how = f"lr = {cfg['lr']:g}, {cfg['epochs']} epochs"
    guard = _not_learned(acc, how)
    if guard is not None:
        return guard
    gap = {s: float(np.mean(acc["bce", s]) - np.mean(acc["mse", s])) for s in STARTS_NET}
    head["accuracy gap BCE − MSE, saturated"], head["accuracy gap BCE − MSE, unsaturated"] = gap.values()
    kept = gap["unsaturated"] / gap["saturated"] if gap["saturated"] > 0 else None
    head["gap kept without saturation (unsaturated / saturated)"] = kept
    two_sp = float(np.mean([r["two_sigma_prime"] for r in _curve(rows, "network", loss="mse", lr=cfg["lr"])
                            if r["epoch"] > 0]))
    head["mse: mean 2σ′(z) over training"] = two_sp
    text = (f"Final test accuracy ({how}, one rate shared by both losses): from the saturated start BCE "
            f"{_pct(acc['bce', 'saturated'])} vs MSE {_pct(acc['mse', 'saturated'])}, a gap of "
            f"{100 * gap['saturated']:.1f} points; from the unsaturated control BCE "
            f"{_pct(acc['bce', 'unsaturated'])} vs MSE {_pct(acc['mse', 'unsaturated'])}, a gap of "
            f"{100 * gap['unsaturated']:.1f} points.")
    cause = (f" What drives it is the shared rate: per output the quadratic cost's gradient is ∂C/∂z = 2σ′(z)(a − y) "
             f"against BCE's (a − y), with σ′ ≤ ¼, so at one lr MSE's steps are 2σ′(z) ≤ ½ times BCE's; 2σ′(z) "
             f"averaged {two_sp:.2f} over the MSE runs' test outputs.")
    if kept is None or gap["saturated"] < 0.05:
        return text + " The losses end within 5 points of each other."
    if kept >= 0.8:
        return text + (f" The gap stays without the saturated start ({kept:.0%} of it), so it is not the effect of "
                       "starting at the wrong end." + cause)
    if kept >= 0.5:
        return text + (f" Most of the gap ({kept:.0%}) stays without the saturated start, so its main cause is not "
                       "the wrong-end start; the rest is what the saturated start costs MSE in a run this short."
                       + cause)
    return text + (f" Only {kept:.0%} of the gap stays without the saturated start: here the saturated start costs "
                   "MSE accuracy as well as time." + cause)


def _tuned_text(rows: list[dict[str, Any]], cfg: dict[str, Any], head: dict[str, Any]) -> str:
    """Each loss at the rate of ``lr_grid`` best for it (mean final accuracy over seeds), both starts."""
    grid = sorted(set(cfg["lr_grid"]))
    if not grid:
        return (f"Both losses share lr = {cfg['lr']:g} here; --set lr_grid=[…] compares them at rates tuned per loss "
                "(the full run does).")
    by_lr = {lr: _accuracies(rows, lr) for lr in grid}
    best = {k: max(grid, key=lambda lr: float(np.mean(by_lr[lr][k]))) for k in by_lr[grid[0]]}
    acc = {k: by_lr[lr][k] for k, lr in best.items()}
    for (loss, start), lr in best.items():
        head[f"tuned {loss} {start}: lr"] = lr
        head[f"tuned {loss} {start}: final test accuracy"] = float(np.mean(acc[loss, start]))
    how = f"best of lr ∈ {grid}, {cfg['epochs']} epochs"
    guard = _not_learned(acc, how)
    if guard is not None:
        return guard
    gap = {s: float(np.mean(acc["bce", s]) - np.mean(acc["mse", s])) for s in STARTS_NET}
    head["tuned accuracy gap BCE − MSE, saturated"], head["tuned accuracy gap BCE − MSE, unsaturated"] = gap.values()
    parts = [f"from the {s} start BCE at lr {best['bce', s]:g} {_pct(acc['bce', s])} vs MSE at lr "
             f"{best['mse', s]:g} {_pct(acc['mse', s])}, a gap of {100 * gap[s]:.1f} points" for s in STARTS_NET]
    text = f"At the rate best for each loss ({how}): {'; '.join(parts)}."
    if max(abs(g) for g in gap.values()) < 0.05:
        text += (" Tuned per loss, the losses end within 5 points of each other: the gap at one shared rate was the "
                 "rate's.")
    if grid[-1] in best.values():
        text += f" lr = {grid[-1]:g} is the grid's largest: a larger rate may do better still."
    return text


def verdict(records: Records, cfg: dict[str, Any]) -> Verdict:
    head: dict[str, Any] = {}
    rows = records.rows
    text = " ".join((_neuron_text(rows, cfg["steps"], head), _escape_text(rows, cfg, head),
                     _gap_text(rows, cfg, head), _tuned_text(rows, cfg, head)))
    return Verdict(text, head)


def _network_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    """Left: the wrong-end output per step until the escape; right: test accuracy per epoch, at the shared lr."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for color, loss in zip(("C0", "C1"), LOSSES, strict=True):
        for style, start in zip(("-", "--"), STARTS_NET, strict=True):
            label = f"{loss.upper()}, {start}"
            for seed in range(cfg["seed"], cfg["seed"] + cfg["n_seeds"]):
                trace = _curve(rows, "escape", loss=loss, start=start, lr=cfg["lr"], seed=seed)
                ax1.plot([r["step"] for r in trace], [r["wrong_end_output"] for r in trace], style, color=color,
                         alpha=0.7, label=label if seed == cfg["seed"] else None)
            curves = np.array([[r["test_accuracy"] for r in _curve(rows, "network", loss=loss, start=start,
                                                                    lr=cfg["lr"], seed=seed)]
                               for seed in range(cfg["seed"], cfg["seed"] + cfg["n_seeds"])])
            epochs = np.arange(curves.shape[1])
            ax2.plot(epochs, np.median(curves, axis=0), style, color=color, marker=".", label=label)
            ax2.fill_between(epochs, curves.min(axis=0), curves.max(axis=0), color=color, alpha=0.12)
    ax1.axhline(0.5, color="grey", lw=0.8)
    ax2.axhline(1 / N_CLASSES, color="grey", lw=0.8)
    ax1.set(title="mean wrong-end output until it falls below 0.5", xlabel="step", ylabel="mean output (target 0)")
    ax2.set(title="test accuracy (median, band min–max over seeds)", xlabel="epoch", ylabel="accuracy")
    fig.suptitle("Does a saturated start slow the quadratic cost down, and is that what costs it accuracy?")
    ax1.legend()
    ax2.legend()
    fig.tight_layout()
    return fig


def figures(records: Records, cfg: dict[str, Any]) -> dict[str, Figure]:
    plt, rows = pyplot(), records.rows
    fig1, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, start in zip(axes, ("w=0.6, b=0.9", "w=2, b=2"), strict=True):
        for loss_name in ("quadratic", "cross_entropy"):
            curve = _curve(rows, "neuron", start=start, loss=loss_name)
            ax.plot([r["step"] for r in curve], [r["output"] for r in curve], label=loss_name.replace("_", "-"))
        ax.set(title=f"single neuron, {start}", xlabel="step", ylabel="output a")
        ax.legend()
    fig1.suptitle("Does one sigmoid neuron at the wrong end learn slowly under the quadratic cost?")
    fig1.tight_layout()
    return {
        "neuron": Figure(fig1, "Output of one sigmoid neuron (input 1, target 0, η = 0.15) under the quadratic cost "
                               "and cross-entropy, from two starting points."),
        "network": Figure(_network_figure(rows, cfg), (
            f"A 64-32-10 sigmoid MLP on digits, MSE and BCE at one shared lr = {cfg['lr']:g}, from outputs saturated "
            f"at 1 (output biases {cfg['output_bias']:g}, solid) and from the unsaturated control (biases 0, dashed), "
            f"{cfg['n_seeds']} seeds: the mean wrong-end output per step until it falls below 0.5 (the escape), and "
            "test accuracy per epoch (grey: chance).")),
    }


def answer(records: Records, cfg: dict[str, Any]) -> Answer:
    """Slow escape from the wrong end under the quadratic cost (the network's escape delay), and what
    the accuracy gap is really made of (the share that stays without saturation)."""
    _, head = verdict(records, cfg)
    delay = head["MSE's escape delay behind BCE, saturated"]
    kept = head.get("gap kept without saturation (unsaturated / saturated)")  # absent when a run did not learn
    neuron = ("Yes: a sigmoid output stuck at the wrong end barely moves under the quadratic cost, because its "
              "gradient carries σ′(z), which is nearly zero there, while cross-entropy's gradient does not.")
    if delay is not None and delay > 0:
        net = (f" In a network the quadratic cost needs {delay:.2g} more steps than cross-entropy (mean over seeds) to "
               "leave the wrong end.")
    else:
        net = " In this network run both losses left the wrong end equally fast, so saturation cost nothing here."
    if "accuracy gap BCE − MSE, saturated" not in head:
        gap = (" Some network runs stayed near chance accuracy, so their final accuracies are not a finding "
               "(the verdict says which, and how to train them longer).")
    elif kept is not None and kept > 0.5:
        gap = (f" But {kept:.0%} of its final accuracy gap remains without any saturation: at one shared learning "
               "rate the quadratic cost simply takes smaller steps")
        tuned, shared = head.get("tuned accuracy gap BCE − MSE, saturated"), head["accuracy gap BCE − MSE, saturated"]
        gap += ", and at rates tuned per loss the gap nearly closes." if tuned is not None and abs(tuned) < shared / 4 \
            else "."
    else:
        gap = " Most of the final accuracy gap goes with the saturated start."
    return Answer(neuron + net + gap, "network")


STUDY = register(Study(
    name="saturation",
    question="Does a sigmoid output that starts at the wrong end learn slowly, and does cross-entropy fix it?",
    notes="Source notes 002 (cross-entropy vs quadratic cost and saturation at the wrong end); Nielsen, ch. 3.",
    measure=measure,
    verdict=verdict,
    figures=figures,
    answer=answer,
    method="One sigmoid neuron is trained from a good and a saturated start under both costs; then a small network "
           "on digits starts with its output biases pushed to the wrong end (and, as a control, without), over "
           "three seeds. We count the steps until the wrong-end outputs fall below one half, and compare final "
           "accuracies at a shared learning rate and at rates tuned per loss.",
    quick={"steps": 300, "eta": 0.15, "epochs": 4, "output_bias": 4.0, "seed": 0, "n_seeds": 3, "lr": 8.0,
           "lr_grid": []},
    full={"steps": 300, "eta": 0.15, "epochs": 60, "output_bias": 4.0, "seed": 0, "n_seeds": 3, "lr": 0.5,
          "lr_grid": [0.5, 2.0, 8.0]},
    checks={"lr_grid": Check(low=0, low_open=True, empty=True, example=[0.5, 2.0, 8.0],
                              hint="or [] to train at lr only")},
))
