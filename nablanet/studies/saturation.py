"""Study ``saturation``: a sigmoid output that starts at the wrong end learns slowly under the
quadratic cost and not under cross-entropy (source notes 002; Nielsen, ch. 3).

Part 1, the single neuron: a = σ(w·1 + b), target 0, plain gradient descent with η = 0.15.
    quadratic  C = ½ a²            ∂C/∂b = a σ′(z) = a² (1 − a)   (σ′ → 0 as a → 1: a stall)
    cross-ent. C = −ln(1 − a)      ∂C/∂b = a                      (no σ′: the error drives the step)
Part 2, a network: a 64-32-10 MLP on the digits with sigmoid outputs, the output biases set so every
output starts near 1 (the wrong end for the nine zeros of each one-hot target), trained with MSE on
the sigmoid outputs and with binary cross-entropy (BCE) on the same outputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import nablanet as nn
from nablanet.studies.base import Figure, Records, Study, Verdict, pyplot, register


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


def _network(loss_name: str, epochs: int, bias0: float, seed: int, lr: float) -> list[dict[str, Any]]:
    splits = nn.data.load_digits(seed=seed, dtype=np.float64)
    (x, y), (xt, yt) = splits.train, splits.test
    d, dt = np.eye(10)[y], np.eye(10)[yt]
    rng = np.random.default_rng(seed)
    out_layer = nn.Linear(32, 10, rng=rng, dtype=np.float64)
    model = nn.Sequential(nn.Linear(64, 32, rng=rng, dtype=np.float64), nn.Sigmoid(), out_layer, nn.Sigmoid())
    if out_layer.bias is not None:
        out_layer.bias.data[...] = bias0  # outputs start near 1: the wrong end
    loss = nn.MSELoss() if loss_name == "mse" else nn.BCELoss()
    opt = nn.optim.SGD(model.parameters(), lr=lr)
    rows = []
    for epoch in range(epochs + 1):
        out = model(xt)
        acc = float(np.mean(out.argmax(1) == yt))
        rows.append({"part": "network", "loss": loss_name, "epoch": epoch, "test_accuracy": acc,
                     "mean_output": float(out.mean()), "test_mse": float(np.mean((out - dt) ** 2))})
        if epoch < epochs:
            nn.fit(model, loss, opt, train=(x, d), epochs=1, batch_size=32, seed=seed + epoch)
    return rows


STARTS = ((0.6, 0.9), (2.0, 2.0))
"""The single neuron's starting (w, b): one where the quadratic cost learns, one at the wrong end."""


def measure(cfg: dict[str, Any]) -> Records:
    rows: list[dict[str, Any]] = []
    for w0, b0 in STARTS:
        for loss_name in ("quadratic", "cross_entropy"):
            rows += _neuron(w0, b0, loss_name, cfg["eta"], cfg["steps"])
    for loss_name in ("mse", "bce"):
        rows += _network(loss_name, cfg["epochs"], cfg["output_bias"], cfg["seed"], cfg["lr"])
    return Records(rows)


def _curve(rows: list[dict[str, Any]], part: str, **match: Any) -> list[dict[str, Any]]:
    """The rows of one curve (one neuron start and loss, or one network loss), in step order."""
    return [r for r in rows if r["part"] == part and all(r[k] == v for k, v in match.items())]


def _escape(rows: list[dict[str, Any]]) -> int | None:
    """The first epoch after which the mean output is below 0.5 (off the wrong end)."""
    return next((r["epoch"] for r in rows if r["mean_output"] < 0.5), None)


def verdict(records: Records, cfg: dict[str, Any]) -> Verdict:
    rows, steps = records.rows, cfg["steps"]

    def out(start: str, loss: str, step: int) -> float:
        return next(r["output"] for r in _curve(rows, "neuron", start=start, loss=loss) if r["step"] == step)

    half = min(150, steps)
    head: dict[str, Any] = {
        "quadratic (0.6, 0.9): a at step 0": out("w=0.6, b=0.9", "quadratic", 0),
        f"quadratic (0.6, 0.9): a at step {steps}": out("w=0.6, b=0.9", "quadratic", steps),
        "quadratic (2, 2): a at step 0": out("w=2, b=2", "quadratic", 0),
        f"quadratic (2, 2): a at step {half}": out("w=2, b=2", "quadratic", half),
        f"quadratic (2, 2): a at step {steps}": out("w=2, b=2", "quadratic", steps),
        f"cross-entropy (2, 2): a at step {half}": out("w=2, b=2", "cross_entropy", half),
    }
    net = {loss: _curve(rows, "network", loss=loss) for loss in ("mse", "bce")}
    for loss, curve in net.items():
        head[f"network {loss}: mean output after epoch 1"] = curve[1]["mean_output"]
        head[f"network {loss}: epochs until mean output < 0.5"] = _escape(curve)
        head[f"network {loss}: final test accuracy"] = curve[-1]["test_accuracy"]
    stalled = head["quadratic (2, 2): a at step 0"] - head[f"quadratic (2, 2): a at step {half}"]
    text = (
        f"Quadratic cost, start (0.6, 0.9): the output falls from {head['quadratic (0.6, 0.9): a at step 0']:.2f} "
        f"to {head[f'quadratic (0.6, 0.9): a at step {steps}']:.2f} in {steps} steps. Start (2, 2): it moves only "
        f"{stalled:.3f} in the first {half} steps (σ′ ≈ 0 at the wrong end), while cross-entropy from the same start "
        f"is down to {head[f'cross-entropy (2, 2): a at step {half}']:.3f} by then. In the digits network whose "
        f"sigmoid outputs start near 1, one epoch of BCE brings the mean output to "
        f"{net['bce'][1]['mean_output']:.2f} and one epoch of MSE only to {net['mse'][1]['mean_output']:.2f}; "
        f"final test accuracy after {cfg['epochs']} epochs: BCE {net['bce'][-1]['test_accuracy']:.1%}, "
        f"MSE {net['mse'][-1]['test_accuracy']:.1%}."
    )
    return Verdict(text, head)


def figures(records: Records, cfg: dict[str, Any]) -> dict[str, Figure]:
    plt, rows = pyplot(), records.rows
    fig1, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, start in zip(axes, ("w=0.6, b=0.9", "w=2, b=2"), strict=True):
        for loss_name in ("quadratic", "cross_entropy"):
            curve = _curve(rows, "neuron", start=start, loss=loss_name)
            ax.plot([r["step"] for r in curve], [r["output"] for r in curve], label=loss_name.replace("_", "-"))
        ax.set(title=f"single neuron, {start}", xlabel="step", ylabel="output a")
        ax.legend()
    fig1.tight_layout()
    fig2, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for loss_name in ("mse", "bce"):
        curve = _curve(rows, "network", loss=loss_name)
        epochs = [r["epoch"] for r in curve]
        ax1.plot(epochs, [r["mean_output"] for r in curve], marker=".", label=loss_name.upper())
        ax2.plot(epochs, [r["test_accuracy"] for r in curve], marker=".", label=loss_name.upper())
    ax1.set(title="mean sigmoid output (targets: one 1, nine 0s)", xlabel="epoch", ylabel="mean output")
    ax2.set(title="test accuracy", xlabel="epoch", ylabel="accuracy")
    ax1.legend()
    ax2.legend()
    fig2.tight_layout()
    return {
        "neuron": Figure(fig1, "Output of one sigmoid neuron (input 1, target 0, η = 0.15) under the quadratic cost "
                               "and cross-entropy, from two starting points."),
        "network": Figure(fig2, "A 64-32-10 sigmoid MLP on digits whose outputs start saturated at 1: mean output "
                                "and test accuracy per epoch under MSE and BCE."),
    }


STUDY = register(Study(
    name="saturation",
    question="Does a sigmoid output that starts at the wrong end learn slowly, and does cross-entropy fix it?",
    notes="Source notes 002 (cross-entropy vs quadratic cost and saturation at the wrong end); Nielsen, ch. 3.",
    measure=measure,
    verdict=verdict,
    figures=figures,
    quick={"steps": 300, "eta": 0.15, "epochs": 5, "output_bias": 4.0, "seed": 0, "lr": 0.5},
    full={"steps": 300, "eta": 0.15, "epochs": 60, "output_bias": 4.0, "seed": 0, "lr": 0.5},
))
