"""Study ``momentum``: plain gradient descent, heavy-ball momentum, Nesterov and the Sutskever
schedule, on an ill-conditioned quadratic (where theory predicts the rates) and on a deep sigmoid
network (source notes 004, section 4; Polyak 1964; Sutskever, Martens, Dahl & Hinton 2013).

The momentum method of the notes:   v_{t+1} = μₜ vₜ − α ∇L(wₜ),   w_{t+1} = wₜ + v_{t+1}
(``nn.optim.SGD(momentum=μ)``, the same iteration in PyTorch's form; ``nesterov=True`` evaluates
the gradient at the look-ahead point; ``schedules.sutskever_momentum`` gives
μₜ = min(1 − 1/(2(⌊t/period⌋ + 1)), μ_max): 0.5, 0.75, 0.83, ... capped at μ_max).

(b) The quadratic  f(w) = ½ wᵀAw,  A = Q diag(λ) Qᵀ,  λ_min = λ₁ ≤ … ≤ λ_d = λ_max,  κ = λ_max/λ_min,
minimum w* = 0. Along an eigenvector qᵢ the iterations are linear recurrences in one variable:

    gradient descent   w_{t+1} = (1 − αλ) wₜ                           rate |1 − αλ|
    heavy ball         w_{t+1} = (1 + μ − αλ) wₜ − μ w_{t−1}           r² − (1 + μ − αλ) r + μ = 0
    Nesterov           r² − (1 + μ)(1 − αλ) r + μ (1 − αλ) = 0

and ‖w_t − w*‖ shrinks like ρᵗ with ρ the largest root modulus over the spectrum (the spectral
radius of the 2×2 iteration matrices; computed numerically by ``spectral_radius``). Closed forms:

    GD, α = 2/(λ_max + λ_min):                            ρ = (κ − 1)/(κ + 1)      ≈ 1 − 2/κ
    heavy ball, α* = 4/(√λ_max + √λ_min)²,
                μ* = ((√κ − 1)/(√κ + 1))²:                 ρ = √μ* = (√κ − 1)/(√κ + 1) ≈ 1 − 2/√κ
    Nesterov, α = 1/λ_max, μ = (√κ − 1)/(√κ + 1):          ρ = 1 − 1/√κ
    heavy ball, α = 1/λ_max, μ = (1 − 1/√κ)²:              ρ = 1 − 1/√κ   (the Sutskever schedule's cap here)

(with complex roots of the heavy-ball polynomial |r| = √μ; α*, μ* put λ_min and λ_max exactly on
the edge of that region). Reaching a tolerance ε takes about ln(1/ε)·κ/2 steps for GD and
ln(1/ε)·√κ/2 for the heavy ball: for κ = 100, ten times fewer.

Measuring the rate: a least-squares line through log‖wₜ − w*‖ over t, after a 10% burn-in (for the
schedule: from the step where μₜ reaches its cap), up to ‖wₜ‖ < ``floor``. Because w* = 0 the
iteration is homogeneous, so floating-point rounding is relative and the fit can run down to
‖wₜ‖ = 1e-100 without hitting a precision floor. At the optimal (α*, μ*) the extreme eigenvalues
give double roots, whose components decay like t ρᵗ rather than ρᵗ; over a window centred at t̄ that
raises the fitted rate by a factor of about e^{1/t̄}, a fraction of a percent over the long window.

The quadratic is built from nablanet parts: a bias-free ``Linear(d, 1)`` whose weight row is w,
applied to the d rows of B = diag(√λ) Qᵀ, with ``QuadraticLoss(reduction="sum")`` and target 0:
L(w) = ½ Σᵢ (bᵢ·w)² = ½ ‖Bw‖² = ½ wᵀ(BᵀB)w and BᵀB = A. The optimizers update that Linear's
weight from the gradient backpropagation puts in ``.grad``; the lab's Lanczos
(``nn.lab.hessian_eigenvalues``) measures λ_min and λ_max, from which α and μ are set.

(a) A sigmoid network on the digits (``depth`` sigmoid hidden layers, PyTorch's default init,
cross-entropy, mini-batches): the training loss vs steps under plain SGD at α, SGD at α/(1 − μ)
(the heavy ball's effective step for slowly varying gradients), momentum μ, Nesterov μ and the
Sutskever schedule, all from the same initial weights and batch order, over ``net_seeds`` seeds (≥ 3).
For slowly varying gradients the heavy ball's velocity settles at −α g/(1 − μ), so momentum at α is
plain SGD at α/(1 − μ) plus a filter of the gradient noise: if SGD at α/(1 − μ) leaves the sigmoid
plateau at the same step as momentum, momentum's early gain is its effective step size, and what is
left to credit to momentum is what comes after (the final loss).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

import nablanet as nn
from nablanet.studies._guard import did_not_learn, learned, over_seeds
from nablanet.studies.base import Answer, Figure, Records, Study, Verdict, pyplot, register
from nablanet.studies.settings import POSITIVE, Check

QUAD_METHODS = ("gd", "heavy_ball", "momentum_0.9", "nesterov", "sutskever")
NET_METHODS = ("sgd", "sgd_lr/(1-mu)", "momentum", "nesterov", "sutskever")


# -- the quadratic --------------------------------------------------------------------------------------
def quadratic_problem(kappa: float, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigenvalues λ (geometric from 1 to κ), B = diag(√λ) Qᵀ (so BᵀB = A = Q diag(λ) Qᵀ) with a random
    orthogonal Q, and a random unit starting point w₀."""
    if not kappa > 1 or dim < 2:
        raise ValueError(f"quadratic_problem(kappa={kappa!r}, dim={dim!r}): expected kappa > 1 and dim >= 2")
    rng = np.random.default_rng(seed)
    lam = np.geomspace(1.0, float(kappa), dim)
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    q *= np.sign(np.diag(r))  # a Haar-random rotation
    w0 = rng.standard_normal(dim)
    return lam, np.sqrt(lam)[:, None] * q.T, w0 / np.linalg.norm(w0)


def quadratic_model(b: np.ndarray, w0: np.ndarray) -> tuple[nn.Linear, nn.Loss, np.ndarray]:
    """The Linear layer (weight row = w), the loss and the target whose L(w) = ½ wᵀ BᵀB w."""
    model = nn.Linear(b.shape[1], 1, bias=False, dtype=np.float64)
    model.weight.data[0] = w0
    return model, nn.QuadraticLoss(reduction="sum"), np.zeros((b.shape[0], 1))


def spectral_radius(lam: np.ndarray, lr: float, mu: float, nesterov: bool = False) -> float:
    """max over λ of the largest |root| of the one-dimensional recurrence (the module docstring)."""
    lam = np.asarray(lam, dtype=np.float64)
    if nesterov:
        tr, det = (1 + mu) * (1 - lr * lam), mu * (1 - lr * lam)
    else:
        tr, det = 1 + mu - lr * lam, mu * np.ones_like(lam)
    disc = (tr * tr - 4 * det).astype(complex)
    roots = np.abs(np.stack([(tr + np.sqrt(disc)) / 2, (tr - np.sqrt(disc)) / 2]))
    return float(roots.max())


def fit_rate(norms: np.ndarray, start: int, floor: float) -> tuple[float, int, int]:
    """exp(slope) of a least-squares line through log ‖wₜ‖ for t in [start, end), where end is the
    first t with ‖wₜ‖ < floor (or the last step). NaN when fewer than 10 points remain."""
    below = np.flatnonzero(norms < floor)
    end = int(below[0]) if below.size else len(norms)
    if end - start < 10:
        return float("nan"), start, end
    t = np.arange(start, end)
    slope = np.polyfit(t, np.log(norms[start:end]), 1)[0]
    return float(np.exp(slope)), start, end


def _quadratic_settings(kappa: float, lmin: float, lmax: float, cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Optimizer settings per method, with the closed-form rate each one predicts (NaN: none)."""
    sk = math.sqrt(kappa)
    mu_star = ((sk - 1) / (sk + 1)) ** 2
    mu_cap = (1 - 1 / sk) ** 2
    return {
        "gd": {"lr": 2 / (lmax + lmin), "momentum": 0.0, "closed_form": (kappa - 1) / (kappa + 1)},
        "heavy_ball": {"lr": 4 / (math.sqrt(lmax) + math.sqrt(lmin)) ** 2, "momentum": mu_star,
                       "closed_form": math.sqrt(mu_star)},
        "momentum_0.9": {"lr": 1 / lmax, "momentum": 0.9, "closed_form": float("nan")},
        "nesterov": {"lr": 1 / lmax, "momentum": (sk - 1) / (sk + 1), "nesterov": True, "closed_form": 1 - 1 / sk},
        "sutskever": {"lr": 1 / lmax,
                      "momentum": nn.optim.schedules.sutskever_momentum(mu_max=mu_cap, period=cfg["quad_period"]),
                      "mu_final": mu_cap, "closed_form": 1 - 1 / sk},
    }


def _run_quadratic(b: np.ndarray, w0: np.ndarray, setting: dict[str, Any], steps: int, floor: float) -> np.ndarray:
    model, loss, target = quadratic_model(b, w0)
    opt = nn.optim.SGD(model.parameters(), lr=setting["lr"], momentum=setting["momentum"],
                       nesterov=setting.get("nesterov", False))
    norms = [float(np.linalg.norm(model.weight.data))]
    for _ in range(steps):
        y, cache = model.forward(b, train=True)
        _, lcache = loss.forward(y, target)
        opt.zero_grad()
        model.backward(cache, loss.vjp(lcache))
        opt.step()
        norms.append(float(np.linalg.norm(model.weight.data)))
        if norms[-1] < floor * 1e-3:
            break
    return np.asarray(norms)


def _schedule_settled(schedule: Callable[[int], float], cap: float, steps: int) -> int:
    """The first step t at which the schedule has reached its cap."""
    return next((t for t in range(steps) if schedule(t) >= cap), steps)


def _quadratic_part(cfg: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Trajectory rows (thinned) and one summary row per (κ, seed, method)."""
    traj, summary = [], []
    for kappa in cfg["kappas"]:
        for seed in range(cfg["quad_seeds"]):
            lam, b, w0 = quadratic_problem(kappa, cfg["dim"], seed)
            model, loss, target = quadratic_model(b, w0)
            lmax = float(nn.lab.hessian_eigenvalues(model, loss, b, target, k=1, which="LA")[0])
            lmin = float(nn.lab.hessian_eigenvalues(model, loss, b, target, k=1, which="SA")[0])
            settings = _quadratic_settings(lmax / lmin, lmin, lmax, cfg)
            for method in cfg["quad_methods"]:
                s = settings[method]
                norms = _run_quadratic(b, w0, s, cfg["quad_steps"], cfg["floor"])
                mu_end = s.get("mu_final", s["momentum"])
                below = np.flatnonzero(norms < cfg["floor"])
                start = int(0.1 * (below[0] if below.size else len(norms)))
                if method == "sutskever":
                    start = max(start, _schedule_settled(s["momentum"], mu_end, len(norms)))
                measured, t0, t1 = fit_rate(norms, start, cfg["floor"])
                predicted = spectral_radius(lam, s["lr"], mu_end, s.get("nesterov", False))
                to_tol = np.flatnonzero(norms < cfg["tolerance"])
                summary.append({
                    "part": "quadratic_rate", "kappa": kappa, "seed": seed, "method": method,
                    "lr": s["lr"], "momentum": mu_end, "lambda_min_lanczos": lmin, "lambda_max_lanczos": lmax,
                    "lambda_min_true": float(lam[0]), "lambda_max_true": float(lam[-1]),
                    "rate_measured": measured, "rate_predicted": predicted, "rate_closed_form": s["closed_form"],
                    "relative_error": measured / predicted - 1, "fit_from": t0, "fit_to": t1,
                    "steps_to_tolerance": int(to_tol[0]) if to_tol.size else None,
                })
                if seed == 0:
                    stride = max(1, len(norms) // cfg["points"])
                    traj += [{"part": "quadratic", "kappa": kappa, "seed": seed, "method": method, "step": t,
                              "distance": float(norms[t])} for t in range(0, len(norms), stride)]
    return traj, summary


# -- the network ----------------------------------------------------------------------------------------
def _network_run(cfg: dict[str, Any], data: Any, depth: int, method: str, seed: int) -> list[dict[str, Any]]:
    (x, y), (xt, yt) = data.train, data.test
    rng = np.random.default_rng(seed)
    layers: list[nn.Layer] = []
    n_in = x.shape[1]
    for _ in range(depth):
        layers += [nn.Linear(n_in, cfg["width"], rng=rng, dtype=np.float64), nn.Sigmoid()]
        n_in = cfg["width"]
    model = nn.Sequential(*layers, nn.Linear(n_in, 10, rng=rng, dtype=np.float64))
    lr, mu = cfg["lr"], cfg["mu"]
    kw: dict[str, Any] = {
        "sgd": {"lr": lr},
        "sgd_lr/(1-mu)": {"lr": lr / (1 - mu)},
        "momentum": {"lr": lr, "momentum": mu},
        "nesterov": {"lr": lr, "momentum": mu, "nesterov": True},
        "sutskever": {"lr": lr, "momentum": nn.optim.schedules.sutskever_momentum(mu_max=cfg["mu_max"],
                                                                               period=cfg["period"])},
    }[method]
    opt = nn.optim.SGD(model.parameters(), **kw)
    loss = nn.CrossEntropyLoss()
    batch_rng = np.random.default_rng(1000 + seed)  # the same batch order for every method
    rows, step = [], 0

    def record() -> None:
        rows.append({"part": "network", "depth": depth, "method": method, "seed": seed, "step": step,
                     "train_loss": float(loss(model(x), y)), "momentum": float(opt.current("momentum"))})

    while step < cfg["steps"]:
        for xb, yb in nn.data.batches(x, y, cfg["batch_size"], rng=batch_rng):
            if step % cfg["eval_every"] == 0:
                record()
            out, caches = model.forward(xb, train=True)
            _, lcache = loss.forward(out, yb)
            opt.zero_grad()
            model.backward(caches, loss.vjp(lcache))
            opt.step()
            step += 1
            if step == cfg["steps"]:
                break
    record()
    rows[-1]["test_accuracy"] = float(np.mean(model(xt).argmax(1) == yt))
    return rows


def _network_part(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    data = nn.data.load_digits(seed=0, dtype=np.float64)
    rows: list[dict[str, Any]] = []
    for depth in cfg["depths"]:
        for seed in range(cfg["net_seeds"]):
            for method in cfg["net_methods"]:
                rows += _network_run(cfg, data, depth, method, seed)
    return rows


def _escape_step(rows: list[dict[str, Any]], threshold: float) -> int | None:
    """The first recorded step with training loss below ``threshold`` (off the plateau at ln 10)."""
    return next((r["step"] for r in rows if r["train_loss"] < threshold), None)


# -- the study ----------------------------------------------------------------------------------------
def measure(cfg: dict[str, Any]) -> Records:
    """Rows ``part="quadratic"`` (the distance per step, seed 0, thinned), ``"quadratic_rate"`` (one per
    κ, seed and method: measured and predicted rates) and ``"network"`` (the training loss per recorded
    step; the last row of a run carries its test accuracy)."""
    traj, summary = _quadratic_part(cfg)
    return Records(traj + summary + _network_part(cfg))


def verdict(records: Records, cfg: dict[str, Any]) -> Verdict:
    """Measured vs predicted rates and steps to the tolerance per κ; the network's escape from the plateau."""
    summary = [r for r in records.rows if r["part"] == "quadratic_rate"]
    head = {**_quadratic_headline(summary, cfg), **_network_headline(records.rows, cfg)}
    parts = []
    tol = cfg["tolerance"]
    for kappa in cfg["kappas"]:
        def h(method: str, what: str, kappa: float = kappa) -> Any:
            return head.get(f"κ={kappa:g} {method}: {what}")

        rates = [f"{m} {h(m, 'rate measured'):.4f} vs {h(m, 'rate predicted'):.4f} ({h(m, 'relative error'):+.2%})"
                 for m in cfg["quad_methods"]]
        steps = [f"{m} {h(m, f'steps to {tol:g}'):.0f}" if h(m, f"steps to {tol:g}") is not None
                 else f"{m} > {cfg['quad_steps']}" for m in cfg["quad_methods"]]
        parts.append(f"Quadratic, κ = {kappa:g} (d = {cfg['dim']}, median over {cfg['quad_seeds']} seed(s)): "
                     f"measured vs predicted rate per step: {'; '.join(rates)}. Steps until ‖w − w*‖ < {tol:g}: "
                     f"{', '.join(steps)}.")
    lan = max(max(abs(r["lambda_max_lanczos"] / r["lambda_max_true"] - 1),
                  abs(r["lambda_min_lanczos"] / r["lambda_min_true"] - 1)) for r in summary)
    parts.append(f"The lab's Lanczos eigenvalues, from which α and μ were set, match the constructed λ_min and "
                 f"λ_max to a relative {lan:.1e}.")
    for depth in cfg["depths"]:
        parts.append(_network_sentence(head, cfg, depth))
    return Verdict(" ".join(parts), head)


def _network_sentence(head: dict[str, Any], cfg: dict[str, Any], depth: int) -> str:
    """Per method: the step off the plateau, the final loss over seeds and the test accuracy (a run at
    chance is said to have not learned); then what the SGD-at-α/(1 − μ) arm says momentum's gain is."""
    thr = cfg["escape_loss"]
    items = []
    for m in cfg["net_methods"]:
        k = f"net depth {depth} {m}"
        if not learned(head[f"{k}: test accuracy"], 10):
            items.append(did_not_learn(m, head[f"{k}: test accuracy"], 10, "It is still on the plateau (loss "
                                       f"{head[f'{k}: final train loss']:.3g} ≈ ln 10): it needs more steps or a "
                                       "larger step, e.g. α/(1 − μ)"))
            continue
        esc = head[f"{k}: median step loss < {thr:g}"]
        where = f"loss < {thr:g} at step {esc:.0f}" if esc is not None else f"never below {thr:g}"
        items.append(f"{m}: {where} ({head[f'{k}: seeds off the plateau']}/{cfg['net_seeds']} seeds), final loss "
                     f"{head[f'{k}: final train loss over seeds']}, test accuracy {head[f'{k}: test accuracy']:.1%}")
    text = (f"Digits, {depth} sigmoid hidden layers of {cfg['width']}, α = {cfg['lr']:g}, μ = {cfg['mu']:g} "
            f"(Sutskever: μ_max = {cfg['mu_max']:g}, period {cfg['period']}), {cfg['steps']} steps, medians over "
            f"{cfg['net_seeds']} seeds: {'; '.join(items)}.")
    eff, mom = f"net depth {depth} sgd_lr/(1-mu)", f"net depth {depth} momentum"
    if eff + ": test accuracy" not in head or mom + ": test accuracy" not in head:
        return text
    e_esc, m_esc = head[f"{eff}: median step loss < {thr:g}"], head[f"{mom}: median step loss < {thr:g}"]
    if e_esc is not None and m_esc is not None and abs(e_esc - m_esc) <= cfg["eval_every"]:
        text += (f" SGD at α/(1 − μ) = {cfg['lr'] / (1 - cfg['mu']):g} leaves the plateau at step {e_esc:.0f}, "
                 f"momentum at {m_esc:.0f} (within one recording interval, {cfg['eval_every']} steps): momentum's "
                 "early gain is its effective step size α/(1 − μ)")
        better = head[f"{mom}: final train loss"] < head[f"{eff}: final train loss"]
        text += (f"; its advantage is the final loss, {head[f'{mom}: final train loss over seeds']} vs "
                 f"{head[f'{eff}: final train loss over seeds']}." if better else
                 "; it has no advantage in the final loss either.")
    return text


def _quadratic_headline(summary: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    """Per κ and method, medians over the seeds: measured and predicted rate, steps to the tolerance."""
    head: dict[str, Any] = {}
    for kappa in cfg["kappas"]:
        for method in cfg["quad_methods"]:
            rows = [r for r in summary if r["kappa"] == kappa and r["method"] == method]
            meas = float(np.median([r["rate_measured"] for r in rows]))
            pred = float(np.median([r["rate_predicted"] for r in rows]))
            steps = [r["steps_to_tolerance"] for r in rows]
            head[f"κ={kappa:g} {method}: rate measured"] = meas
            head[f"κ={kappa:g} {method}: rate predicted"] = pred
            head[f"κ={kappa:g} {method}: relative error"] = meas / pred - 1
            head[f"κ={kappa:g} {method}: steps to {cfg['tolerance']:g}"] = (
                float(np.median(steps)) if all(s is not None for s in steps) else None)
    return head


def _network_headline(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    """Per depth and method, medians over the seeds: final loss, test accuracy, the step off the plateau."""
    net = [r for r in rows if r["part"] == "network"]
    thr = cfg["escape_loss"]
    head: dict[str, Any] = {}
    for depth in cfg["depths"]:
        for method in cfg["net_methods"]:
            per_seed = [[r for r in net if r["depth"] == depth and r["method"] == method and r["seed"] == s]
                        for s in range(cfg["net_seeds"])]
            esc = [_escape_step(run, thr) for run in per_seed]
            k = f"net depth {depth} {method}"
            finals = [run[-1]["train_loss"] for run in per_seed]
            head[f"{k}: final train loss"] = float(np.median(finals))
            head[f"{k}: final train loss per seed"] = finals
            head[f"{k}: final train loss over seeds"] = over_seeds(finals)
            head[f"{k}: test accuracy"] = float(np.median([run[-1]["test_accuracy"] for run in per_seed]))
            head[f"{k}: seeds off the plateau"] = sum(e is not None for e in esc)
            done = [e for e in esc if e is not None]
            head[f"{k}: median step loss < {thr:g}"] = float(np.median(done)) if done else None
    return head


def figures(records: Records, cfg: dict[str, Any]) -> dict[str, Figure]:
    """The distance per step on the quadratic, measured against predicted rates, the network's loss."""
    rows = records.rows
    return {
        "quadratic": Figure(_quadratic_figure(rows, cfg), "Distance to the minimum of ½wᵀAw per step (seed 0); "
                            "dotted: the predicted rate ρᵗ over the fit window; dashed: the tolerance."),
        "rates": Figure(_rates_figure(rows, cfg), "Measured per-step rate (least-squares fit of log‖wₜ − w*‖) "
                        "against the spectral radius of the iteration; the grey line is equality."),
        "network": Figure(_network_figure(rows, cfg), "Training loss of the sigmoid network on digits (median "
                          f"over {cfg['net_seeds']} seed(s), band min–max): the same initial weights and batches "
                          "for every method."),
    }


def _quadratic_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    plt = pyplot()
    kappas = cfg["kappas"]
    fig, axes = plt.subplots(1, len(kappas), figsize=(5.2 * len(kappas), 4), squeeze=False)
    for ax, kappa in zip(axes[0], kappas, strict=True):
        for method in cfg["quad_methods"]:
            traj = [r for r in rows if r["part"] == "quadratic" and r["kappa"] == kappa and r["method"] == method]
            line = ax.plot([r["step"] for r in traj], [r["distance"] for r in traj], label=method)[0]
            s = next(r for r in rows if r["part"] == "quadratic_rate" and r["kappa"] == kappa
                     and r["method"] == method and r["seed"] == 0)
            t = np.arange(s["fit_from"], s["fit_to"])
            d0 = next((r["distance"] for r in traj if r["step"] >= s["fit_from"]), 1.0)
            ax.plot(t, d0 * s["rate_predicted"] ** (t - t[0]) if t.size else t, ls=":", color=line.get_color())
        ax.axhline(cfg["tolerance"], color="grey", lw=0.8, ls="--")
        ax.set(yscale="log", ylim=(cfg["floor"] * 1e-3, 10), xlabel="step t", ylabel="‖wₜ − w*‖",
               title=f"quadratic, κ = {kappa:g}", xscale="symlog" if kappa >= 1000 else "linear")
        ax.legend(fontsize=8)
    fig.suptitle("How much faster does momentum reach the minimum, and at the predicted rate?")
    fig.tight_layout()
    return fig


def _rates_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    plt = pyplot()
    summary = [r for r in rows if r["part"] == "quadratic_rate"]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for method, marker in zip(cfg["quad_methods"], "osD^vP*", strict=False):
        mine = [r for r in summary if r["method"] == method]
        ax.scatter([r["rate_predicted"] for r in mine], [r["rate_measured"] for r in mine], label=method,
                   marker=marker, alpha=0.7)
    lo = min(r["rate_predicted"] for r in summary) - 0.02
    ax.plot([lo, 1], [lo, 1], color="grey", lw=0.8)
    ax.set(xlabel="predicted rate (spectral radius)", ylabel="measured rate (fit of log‖wₜ − w*‖)",
           title="per-step contraction factor, all κ and seeds")
    ax.legend(fontsize=8)
    fig.suptitle("Do the measured convergence rates match the predicted ones?")
    fig.tight_layout()
    return fig


def _network_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    plt = pyplot()
    depths = cfg["depths"]
    fig, axes = plt.subplots(1, len(depths), figsize=(6 * len(depths), 4.2), squeeze=False)
    for ax, depth in zip(axes[0], depths, strict=True):
        for method in cfg["net_methods"]:
            run = [r for r in rows if r["part"] == "network" and r["depth"] == depth and r["method"] == method]
            steps = sorted({r["step"] for r in run})
            table = np.array([[r["train_loss"] for r in run if r["seed"] == s] for s in range(cfg["net_seeds"])])
            line = ax.plot(steps, np.median(table, axis=0), label=method)[0]
            if cfg["net_seeds"] > 1:
                ax.fill_between(steps, table.min(axis=0), table.max(axis=0), color=line.get_color(), alpha=0.12)
        ax.set(yscale="log", xlabel="SGD step", ylabel="training loss (cross-entropy)",
               title=f"digits, {depth} sigmoid hidden layers")
        ax.legend(fontsize=8)
    fig.suptitle("Does momentum train a sigmoid network faster than SGD at the same effective step?")
    fig.tight_layout()
    return fig


_COMMON: dict[str, Any] = {
    "quad_methods": list(QUAD_METHODS), "floor": 1e-100, "tolerance": 1e-8, "points": 400, "quad_period": 50,
    "net_methods": list(NET_METHODS), "width": 32, "batch_size": 32, "lr": 0.1, "mu": 0.9, "mu_max": 0.99,
    "period": 250, "eval_every": 50, "escape_loss": 1.0,
}

def answer(records: Records, cfg: dict[str, Any]) -> Answer:
    """Steps to the tolerance of tuned heavy-ball momentum vs gradient descent on the most ill-conditioned
    quadratic, how close the rates are to theory, and what the network arm says momentum's gain is."""
    _, head = verdict(records, cfg)
    kappa, tol = max(cfg["kappas"]), cfg["tolerance"]
    errors = [abs(v) for k, v in head.items() if k.endswith("relative error") and v is not None]
    gd, hb = (head.get(f"κ={kappa:g} {m}: steps to {tol:g}") for m in ("gd", "heavy_ball"))
    text = (f"On an ill-conditioned quadratic every method converges at the rate theory predicts (within "
            f"{max(errors):.1%})")
    text += (f", and momentum tuned to the curvature needs {hb:.0f} steps where gradient descent needs {gd:.0f}."
             if gd is not None and hb is not None else ".")
    depth = cfg["depths"][0]
    mom, eff = (head.get(f"net depth {depth} {m}: final train loss") for m in ("momentum", "sgd_lr/(1-mu)"))
    if mom is not None and eff is not None and head.get(f"net depth {depth} momentum: seeds off the plateau"):
        text += (" In a sigmoid network, momentum's early speed-up is the larger effective step it implies (plain SGD "
                 "at that step leaves the plateau as early); what momentum adds is a "
                 + ("lower final loss." if mom < eff else "smoother path, not a lower final loss in this run."))
    return Answer(text, "quadratic")


STUDY = register(Study(
    name="momentum",
    question="How much does momentum (heavy ball, Nesterov, the Sutskever schedule) speed up gradient descent, "
             "and does an ill-conditioned quadratic converge at the rate theory predicts?",
    notes="Source notes 004, section 4 (SGD with momentum and its schedule); Polyak 1964; "
          "Sutskever, Martens, Dahl & Hinton 2013.",
    measure=measure, verdict=verdict, figures=figures, answer=answer,
    method="On quadratics ½wᵀAw with known eigenvalues we fit each method's per-step convergence rate and count "
           "the steps to a tolerance, against the rates theory predicts. A sigmoid network on digits is then "
           "trained with each method from the same initialisations over several seeds, with plain SGD at the "
           "effective step α/(1 − μ) as the control.",
    checks={"quad_methods": Check(choices=QUAD_METHODS), "net_methods": Check(choices=NET_METHODS),
            "kappas": Check(low=1, low_open=True), "dim": Check(low=2), **dict.fromkeys(
                ("floor", "tolerance", "points", "quad_period", "period", "eval_every", "escape_loss"), POSITIVE)},
    quick={**_COMMON, "kappas": [100], "dim": 50, "quad_seeds": 1, "quad_steps": 3000,
           "depths": [3], "net_seeds": 3, "steps": 3000, "eval_every": 100},
    full={**_COMMON, "kappas": [10, 100, 1000], "dim": 100, "quad_seeds": 3, "quad_steps": 20000,
          "depths": [3, 4], "net_seeds": 5, "steps": 6000},
))
