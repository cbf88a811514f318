"""Study ``newton``: gradient descent at fixed steps set by the curvature, diagonal preconditioning
and Newton's method, on a convex quadratic and on logistic regression (source notes 001, "Issues with
Convergence": the optimal step on a quadratic, the inverse Hessian, preconditioning).

The theory (notes 001; ``nablanet.lab.curvature``). Near θ the loss is L(θ + s) ≈ L + gᵀs + ½ sᵀHs.
In the eigenbasis H uᵢ = λᵢ uᵢ, gradient descent θ ← θ − η g multiplies the error along uᵢ by
(1 − η λᵢ) per step:

    η = 1/λ_max              the optimal step for the top mode (it is solved in one step); the slowest
                             mode shrinks by 1 − λ_min/λ_max = 1 − 1/κ per step: ~κ·ln(1/tol) steps
    η = 2/(λ_max + λ_min)    the best fixed step on a quadratic: every mode shrinks by ≤ (κ − 1)/(κ + 1)
    η = 2/λ_max              exactly on the stability bound, not inside it: the top mode's factor is
                             −1, so it oscillates with constant amplitude and the gradient never
                             falls below |λ_max cₘₐₓ| (the guarantee of convergence, for an L-smooth
                             loss, is for η < 2/L; at η = 2/L the descent lemma promises no decrease)
    η > 2/λ_max              the top mode grows by |1 − ηλ_max| > 1 per step: divergence
    Newton  s = −H⁻¹ g       every mode is solved at once: one step on a quadratic, and quadratic
                             convergence (the number of correct digits doubles) near a minimum θ*
                             of a smooth loss where H(θ*) ≻ 0 (and H is Lipschitz near θ*). At a
                             degenerate minimum it is only linear: on f = x⁴, f″(0) = 0, the step
                             x ← x − f′/f″ = x − 4x³/12x² = (2/3)x

Preconditioned descent, as implemented here: Jacobi (diagonal) preconditioning, θ ← θ − η D⁻¹ g with
D = diag H(θ₀) and η = 1/λ_max(D^(−½) H(θ₀) D^(−½)). It is the notes' "scale the axes, then use the
optimal step" with the diagonal of the Hessian in place of the Hessian: exact when H is diagonal
(axis-aligned ill-conditioning, e.g. features of different scales), of little help when the
ill-conditioning is rotated. (Gradient normalization, θ ← θ − η g/‖g‖, is not run: with a fixed η it
stalls at a distance of order η from the minimum and never reaches a gradient tolerance.)

Problem (a), a convex quadratic with known eigenvalues: L(θ) = (1/N) Σₙ ½ (xₙ·θ − tₙ)², a bias-free
``Linear(d, 1)`` under ``QuadraticLoss``, with X = √N · Λ^½ Qᵀ (N = d rows, Q a random rotation,
Λ = diag(λ), λ log-spaced from 1 to κ) and t = X θ*, so H = Q Λ Qᵀ and L* = 0; θ* is a random
direction scaled so that ‖∇L(θ₀ = 0)‖ = ‖H θ*‖ = 1 (the tolerance is then a relative reduction). λ_max, λ_min are
measured by Lanczos on exact HVPs (``nablanet.lab.step_size_report``) and compared with the known ones;
the GD iteration counts are compared with the exact prediction: the first t with
‖g(t)‖² = Σᵢ (λᵢ (1 − ηλᵢ)^t cᵢ)² < tol², cᵢ = uᵢ·(θ₀ − θ*). A sweep over κ shows GD at 1/λ_max
needing ~κ times more steps while Newton needs one.

Problem (b), logistic regression (float64): ``Linear(d, 1)`` with ``BCEWithLogitsLoss`` on a synthetic
set with features of scales log-spaced from 1 to ``feature_scale`` and labels drawn from a logistic
model, so the classes overlap and the minimizer θ* is finite (two digit classes are linearly
separable, which sends the unregularized minimizer to infinity). θ* and L* come from a reference
Newton run to ‖∇L‖ < 1e-13. The Hessian H(θ) = (1/N) Σₙ σ′(zₙ) x̃ₙx̃ₙᵀ, σ′ ≤ ¼ = σ′(0), so from θ₀ = 0
H(θ) ≼ H(θ₀) everywhere: 2/λ_max(θ₀) is a global stability bound, while λ_max(θ*) decides the local
behaviour at the minimum (the steps m/λ_max(θ*) use that oracle value). Newton's method is the
undamped step of ``nablanet.lab.newton_step`` (conjugate gradients on exact HVPs, stopped at
‖Hs + g‖ ≤ ``cg_tol``·‖g‖), no line search.

Problem (c), a degenerate minimum: a two-layer linear chain w₂w₁x with x = 1 under ``QuadraticLoss``,
L = ½ (w₁w₂)². Its minima (w₁w₂ = 0) have H = 0 at the origin; along w₁ = w₂ = a, L = ½ a⁴ and the
gradient lies in the Hessian's eigenvector (1, 1)/√2 (eigenvalue 3a²; the other is −a², so the
step is the dense solve ``newton_step(method="direct")``, which CG on an indefinite H refuses), so
Newton from (1, 1) is f = x⁴'s iteration a ← (2/3)a: the ratio aₜ₊₁/aₜ is measured over
``degenerate_steps`` steps.

Every method starts at θ₀ = 0 and stops when ‖∇L‖ < ``grad_tol``, when ‖∇L‖ exceeds 1e6·‖∇L(θ₀)‖
(diverged) or after ``max_iters`` iterations. Seconds are ``time.perf_counter`` around each method's
loop (gradients, steps and the convergence checks; λ_max and preconditioner set-up reported apart),
machine-dependent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import nablanet as nn
from nablanet.studies._models import set_flat
from nablanet.studies.base import Answer, Figure, Records, Study, Verdict, pyplot, register
from nablanet.studies.settings import AT_LEAST_ONE, POSITIVE

Update = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (θ, ∇L(θ)) -> the next θ
Method = tuple[str, str, float | None, Update]  # name, family, step η (None for Newton), update


# -- problems ------------------------------------------------------------------------------------------------
def quadratic_problem(dim: int, kappa: float, seed: int) -> dict[str, Any]:
    """The quadratic L(θ) = ½ (θ − θ*)ᵀ Q Λ Qᵀ (θ − θ*) as a bias-free Linear(dim, 1) under QuadraticLoss
    (module docstring). Returns model, loss, x, target, the eigenvalues λ (ascending), Q and θ*."""
    gen = np.random.default_rng([seed, 1])
    lam = np.logspace(0.0, math.log10(kappa), dim)
    q, r = np.linalg.qr(gen.standard_normal((dim, dim)))
    q *= np.sign(np.diag(r))  # a Haar-random rotation
    theta_star = gen.standard_normal(dim)
    theta_star /= np.linalg.norm(q @ (lam * (q.T @ theta_star)))  # ‖∇L(0)‖ = ‖H θ*‖ = 1
    n = dim
    x = math.sqrt(n) * (np.sqrt(lam)[:, None] * q.T)
    target = (x @ theta_star)[:, None]
    model = nn.Sequential(nn.Linear(dim, 1, bias=False, dtype=np.float64))
    set_flat(model, np.zeros(dim))
    return {"model": model, "loss": nn.QuadraticLoss(), "x": x, "target": target, "lam": lam, "q": q,
            "theta_star": theta_star}


def logistic_problem(n: int, features: int, feature_scale: float, seed: int) -> dict[str, Any]:
    """Synthetic logistic regression: x (n, features) with column scales log-spaced 1…feature_scale,
    labels ~ Bernoulli(σ(x·w + 0.5)) with w = (standard normal)/scale; a Linear(features, 1) at θ = 0."""
    gen = np.random.default_rng([seed, 2])
    scale = np.logspace(0.0, math.log10(feature_scale), features)
    x = gen.standard_normal((n, features)) * scale
    w = gen.standard_normal(features) / scale
    p = 1.0 / (1.0 + np.exp(-(x @ w + 0.5)))
    target = (gen.random(n) < p).astype(np.float64)[:, None]
    model = nn.Sequential(nn.Linear(features, 1, dtype=np.float64))
    set_flat(model, np.zeros(features + 1))
    return {"model": model, "loss": nn.BCEWithLogitsLoss(), "x": x, "target": target}


def _value_grad(prob: dict[str, Any], theta: np.ndarray) -> tuple[float, np.ndarray]:
    model = prob["model"]
    set_flat(model, theta)
    value, grads = nn.value_and_grad(model, prob["loss"], prob["x"], prob["target"], train=False)
    return value, nn.lab.flatten_params(grads, model)


def _newton_update(prob: dict[str, Any], cg_tol: float) -> Update:
    def update(theta: np.ndarray, g: np.ndarray) -> np.ndarray:
        set_flat(prob["model"], theta)
        step = nn.lab.newton_step(prob["model"], prob["loss"], prob["x"], prob["target"], tol=cg_tol)
        return theta + nn.lab.flatten_params(step, prob["model"])
    return update


def _keep(t: int) -> bool:
    """Which iterations are recorded: all up to 100, then ~90 per decade."""
    return t <= 100 or t % 10 ** (int(math.log10(t)) - 1) == 0


def descend(prob: dict[str, Any], update: Update, *, grad_tol: float, max_iters: int,
            loss_star: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Iterate θ ← update(θ, ∇L(θ)) from θ = 0 until ‖∇L‖ < grad_tol, divergence or max_iters.

    Returns the recorded trajectory (iteration, loss_gap = L − L*, grad_norm, seconds) and a summary:
    iterations (updates taken), converged, diverged, seconds, final grad_norm and loss_gap.
    """
    theta = np.zeros(sum(p.data.size for p in prob["model"].parameters()))
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    g0 = math.nan
    status = "max_iters"
    for t in range(max_iters + 1):
        value, g = _value_grad(prob, theta)
        gnorm = float(np.linalg.norm(g))
        if t == 0:
            g0 = gnorm
        seconds = time.perf_counter() - t0
        done = gnorm < grad_tol
        blown = not math.isfinite(gnorm) or not math.isfinite(value) or gnorm > 1e6 * g0
        if _keep(t) or done or blown or t == max_iters:
            rows.append({"iteration": t, "loss_gap": value - loss_star, "grad_norm": gnorm, "seconds": seconds})
        if done or blown:
            status = "converged" if done else "diverged"
            break
        if t < max_iters:
            theta = update(theta, g)
    last = rows[-1]
    summary = {"iterations": last["iteration"], "converged": status == "converged", "diverged": status == "diverged",
               "seconds": last["seconds"], "final_grad_norm": last["grad_norm"], "final_loss_gap": last["loss_gap"],
               "initial_grad_norm": g0}
    return rows, summary


def predicted_gd_iterations(lam: np.ndarray, c: np.ndarray, eta: float, grad_tol: float, max_iters: int) -> int | None:
    """The first t with ‖g(t)‖ = ‖(λᵢ (1 − ηλᵢ)^t cᵢ)ᵢ‖ < grad_tol (exact for GD on a quadratic), or None."""
    factor = np.abs(1.0 - eta * lam)
    weight = (lam * c) ** 2
    for start in range(0, max_iters + 1, 4096):
        t = np.arange(start, min(start + 4096, max_iters + 1), dtype=np.float64)[:, None]
        with np.errstate(under="ignore", over="ignore", invalid="ignore"):
            g2 = np.sum(weight * factor ** (2 * t), axis=1)
        hit = np.nonzero(g2 < grad_tol**2)[0]
        if hit.size:
            return start + int(hit[0])
    return None


def _jacobi(prob: dict[str, Any]) -> tuple[np.ndarray, float, float]:
    """D = diag H(θ₀), λ_max of D^(−½) H(θ₀) D^(−½) and the seconds to get them (dense Hessian, P small)."""
    t0 = time.perf_counter()
    set_flat(prob["model"], np.zeros(sum(p.data.size for p in prob["model"].parameters())))
    h = nn.lab.hessian(prob["model"], prob["loss"], prob["x"], prob["target"])
    d = np.diag(h).copy()
    s = 1.0 / np.sqrt(d)
    lam = float(np.linalg.eigvalsh(h * s[:, None] * s[None, :])[-1])
    return d, lam, time.perf_counter() - t0


def _report(prob: dict[str, Any], theta: np.ndarray) -> tuple[dict[str, float], float]:
    t0 = time.perf_counter()
    set_flat(prob["model"], theta)
    rep = nn.lab.step_size_report(prob["model"], prob["loss"], prob["x"], prob["target"])
    return rep, time.perf_counter() - t0


# -- the runs -------------------------------------------------------------------------------------------------
def _run_methods(prob: dict[str, Any], problem: str, methods: list[Method],
                 cfg: dict[str, Any], loss_star: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    traj: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    for method, family, eta, update in methods:
        rows, summary = descend(prob, update, grad_tol=cfg["grad_tol"], max_iters=cfg["max_iters"],
                                loss_star=loss_star)
        base = {"problem": problem, "method": method, "family": family, "step": eta}
        traj += [{"part": "trajectory", **base, **r} for r in rows]
        summaries.append({"part": "summary", **base, **summary})
    return traj, summaries


def gd_update(eta: float, diag: np.ndarray | None = None) -> Update:
    """θ ← θ − η g, or with a diagonal preconditioner D, θ ← θ − η D⁻¹ g."""
    def update(theta: np.ndarray, g: np.ndarray) -> np.ndarray:
        return theta - eta * (g if diag is None else g / diag)
    return update



def _gd_methods(multiples: list[float], lam_max: float, lam_min: float, label: str) -> list[Method]:
    methods: list[Method] = [(f"GD η = {m:g}/λ_max{label}", "gd", m / lam_max, gd_update(m / lam_max))
                             for m in multiples]
    eta_opt = 2.0 / (lam_max + lam_min)
    methods.append((f"GD η = 2/(λ_max{label} + λ_min{label})", "gd", eta_opt, gd_update(eta_opt)))
    return methods


def _quadratic_part(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    prob = quadratic_problem(cfg["dim"], cfg["kappa"], cfg["seed"])
    rep, rep_seconds = _report(prob, np.zeros(cfg["dim"]))
    lam, q = prob["lam"], prob["q"]
    c = q.T @ (np.zeros(cfg["dim"]) - prob["theta_star"])
    d, lam_pre, pre_seconds = _jacobi(prob)
    eta_pre = 1.0 / lam_pre
    methods = _gd_methods(cfg["step_multiples"], rep["lambda_max"], rep["lambda_min"], "")
    methods.append(("Jacobi-preconditioned GD", "preconditioned", eta_pre, gd_update(eta_pre, d)))
    methods.append(("Newton", "newton", None, _newton_update(prob, cfg["cg_tol"])))
    traj, summaries = _run_methods(prob, "quadratic", methods, cfg, 0.0)
    for s in summaries:
        if s["family"] == "gd":
            s["predicted_iterations"] = predicted_gd_iterations(lam, c, s["step"], cfg["grad_tol"], cfg["max_iters"])
        s["setup_seconds"] = pre_seconds if s["family"] == "preconditioned" else (
            rep_seconds if s["family"] == "gd" else 0.0)
    info = {"part": "curvature", "problem": "quadratic", "dim": cfg["dim"], "kappa": cfg["kappa"],
            "lambda_max": rep["lambda_max"], "lambda_min": rep["lambda_min"], "lambda_max_known": float(lam[-1]),
            "lambda_min_known": float(lam[0]), "condition_number": rep["condition_number"],
            "preconditioned_lambda_max": lam_pre, "report_seconds": rep_seconds,
            "top_mode_grad": float(abs(lam[-1] * c[-1]))}
    return traj + summaries + [info]


def _sweep_part(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for kappa in cfg["kappa_sweep"]:
        prob = quadratic_problem(cfg["dim"], kappa, cfg["seed"])
        rep, _ = _report(prob, np.zeros(cfg["dim"]))
        c = prob["q"].T @ (-prob["theta_star"])
        methods = _gd_methods([1.0], rep["lambda_max"], rep["lambda_min"], "")
        methods.append(("Newton", "newton", None, _newton_update(prob, cfg["cg_tol"])))
        max_iters = cfg["sweep_max_iters"]
        for method, family, eta, update in methods:
            _, s = descend(prob, update, grad_tol=cfg["grad_tol"], max_iters=max_iters, loss_star=0.0)
            pred = predicted_gd_iterations(prob["lam"], c, eta, cfg["grad_tol"], max_iters) if eta else None
            rows.append({"part": "sweep", "problem": "quadratic", "kappa": kappa, "measured_kappa":
                         rep["condition_number"], "method": method, "family": family, "step": eta,
                         "iterations": s["iterations"], "converged": s["converged"], "seconds": s["seconds"],
                         "predicted_iterations": pred})
    return rows


def _newton_reference(prob: dict[str, Any], cg_tol: float, dim: int) -> np.ndarray:
    """θ* to ‖∇L‖ < 1e-13 (or as far as rounding lets Newton go in 50 steps)."""
    theta = np.zeros(dim)
    update = _newton_update(prob, cg_tol)
    best, best_norm = theta, math.inf
    for _ in range(50):
        _, g = _value_grad(prob, theta)
        gnorm = float(np.linalg.norm(g))
        if gnorm < best_norm:
            best, best_norm = theta, gnorm
        if gnorm < 1e-13:
            break
        theta = update(theta, g)
    return best


def _logistic_part(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    prob = logistic_problem(cfg["n_samples"], cfg["features"], cfg["feature_scale"], cfg["seed"])
    p = cfg["features"] + 1
    theta_star = _newton_reference(prob, cfg["cg_tol"], p)
    loss_star, g_star = _value_grad(prob, theta_star)
    rep0, rep0_seconds = _report(prob, np.zeros(p))
    rep_star, _ = _report(prob, theta_star)
    d, lam_pre, pre_seconds = _jacobi(prob)
    eta_pre = 1.0 / lam_pre
    methods = _gd_methods(cfg["step_multiples"], rep_star["lambda_max"], rep_star["lambda_min"], "(θ*)")
    methods += [(f"GD η = {m:g}/λ_max(θ₀)", "gd_start", m / rep0["lambda_max"], gd_update(m / rep0["lambda_max"]))
                for m in (1.0, 2.0)]
    methods.append(("Jacobi-preconditioned GD", "preconditioned", eta_pre, gd_update(eta_pre, d)))
    methods.append(("Newton", "newton", None, _newton_update(prob, cfg["cg_tol"])))
    traj, summaries = _run_methods(prob, "logistic", methods, cfg, loss_star)
    for s in summaries:
        s["setup_seconds"] = {"preconditioned": pre_seconds, "gd_start": rep0_seconds}.get(s["family"], 0.0)
    info = {"part": "curvature", "problem": "logistic", "n_samples": cfg["n_samples"], "features": cfg["features"],
            "loss_star": loss_star, "grad_norm_star": float(np.linalg.norm(g_star)),
            "lambda_max_start": rep0["lambda_max"], "lambda_min_start": rep0["lambda_min"],
            "lambda_max": rep_star["lambda_max"], "lambda_min": rep_star["lambda_min"],
            "condition_number": rep_star["condition_number"], "condition_number_start": rep0["condition_number"],
            "preconditioned_lambda_max": lam_pre, "report_seconds": rep0_seconds,
            "accuracy_star": float(np.mean((prob["x"] @ theta_star[:-1] + theta_star[-1] > 0)
                                           == (prob["target"][:, 0] > 0.5)))}
    return traj + summaries + [info]


def _degenerate_part(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Newton on L = ½ (w₁w₂)² from w₁ = w₂ = 1 (problem (c)): a, L and the ratio aₜ₊₁/aₜ per step."""
    model = nn.Sequential(nn.Linear(1, 1, bias=False, dtype=np.float64), nn.Linear(1, 1, bias=False, dtype=np.float64))
    x, target, loss = np.ones((1, 1)), np.zeros((1, 1)), nn.QuadraticLoss()
    set_flat(model, np.ones(2))
    rows: list[dict[str, Any]] = []
    a = 1.0
    for t in range(cfg["degenerate_steps"] + 1):
        value, grads = nn.value_and_grad(model, loss, x, target, train=False)
        rows.append({"part": "degenerate", "iteration": t, "a": a, "loss": value,
                     "grad_norm": float(np.linalg.norm(nn.lab.flatten_params(grads, model))),
                     "ratio": a / rows[-1]["a"] if rows else None})
        step = nn.lab.newton_step(model, loss, x, target, method="direct")
        theta = nn.lab.flatten_params(model.state_dict(), model) + nn.lab.flatten_params(step, model)
        set_flat(model, theta)
        a = float(theta[0])
    return rows


# -- the study ------------------------------------------------------------------------------------------------
def measure(cfg: dict[str, Any]) -> Records:
    """Rows ``part="trajectory"`` (per recorded iteration), ``"summary"`` (one per problem and method),
    ``"curvature"`` (one per problem: λ_max, λ_min, κ, ...), ``"sweep"`` (one per κ and method) and
    ``"degenerate"`` (Newton at a minimum with H = 0, per iteration)."""
    return Records(_quadratic_part(cfg) + _logistic_part(cfg) + _sweep_part(cfg) + _degenerate_part(cfg))


def verdict(records: Records, cfg: dict[str, Any]) -> Verdict:
    """Iterations per method on each problem, and the iterations of GD and Newton over κ (seconds, which
    are not reproducible, stay in the headline and the timing figure)."""
    rows = records.rows
    summ = {(r["problem"], r["method"]): r for r in rows if r["part"] == "summary"}
    curvature = {r["problem"]: r for r in rows if r["part"] == "curvature"}
    quad, logi = curvature["quadratic"], curvature["logistic"]
    head = _headline(rows, cfg)
    said = {key: _said(s) for key, s in summ.items()}
    gd1, gd2, gd21 = "GD η = 1/λ_max", "GD η = 2/λ_max", f"GD η = {max(cfg['step_multiples']):g}/λ_max"
    sweep = [r for r in rows if r["part"] == "sweep" and r["method"] == gd1]
    newton_hist = ", ".join(f"{r['grad_norm']:.1e}" for r in rows if r["part"] == "trajectory"
                            and r["problem"] == "logistic" and r["method"] == "Newton")
    text = (
        f"Quadratic (d = {cfg['dim']}, κ = {quad['condition_number']:.4g}; Lanczos λ_max = {quad['lambda_max']:.6g} "
        f"vs known {quad['lambda_max_known']:.6g}), to ‖∇L‖ < {cfg['grad_tol']:g} from θ₀ = 0: Newton "
        f"{said['quadratic', 'Newton']} (‖∇L‖ = {summ['quadratic', 'Newton']['final_grad_norm']:.2g} after it); GD "
        f"at 1/λ_max {said['quadratic', gd1]} (predicted {summ['quadratic', gd1]['predicted_iterations']}); at "
        f"2/(λ_max + λ_min) {said['quadratic', 'GD η = 2/(λ_max + λ_min)']}; at 2/λ_max, exactly on the stability "
        f"bound (convergence is guaranteed only for η < 2/λ_max), it {said['quadratic', gd2]}: the top mode's "
        f"factor is 1 − ηλ_max = −1 and it keeps its initial gradient {quad['top_mode_grad']:.3g}; at "
        f"{max(cfg['step_multiples']):g}/λ_max it {said['quadratic', gd21]}; Jacobi preconditioning (rotated H) "
        f"{said['quadratic', 'Jacobi-preconditioned GD']}. "
        f"Over κ = {list(cfg['kappa_sweep'])}, GD at 1/λ_max needs {[r['iterations'] for r in sweep]} iterations "
        f"(∝ κ^{head['sweep: fitted exponent of iterations vs κ']:.2f}) while Newton needs "
        f"{head['sweep: Newton iterations']}. Logistic regression (N = {cfg['n_samples']}, "
        f"{cfg['features']} features, float64; κ = {logi['condition_number']:.4g} at θ*, λ_max = "
        f"{logi['lambda_max']:.4g} at θ* vs {logi['lambda_max_start']:.4g} at θ₀): Newton "
        f"{said['logistic', 'Newton']}, with ‖∇L‖ per iteration "
        f"{newton_hist}: quadratic convergence, which rests on H(θ*) ≻ 0 (λ_min(θ*) = {logi['lambda_min']:.3g}); "
        f"{_degenerate_sentence(head)} GD at 1/λ_max(θ*) "
        f"{said['logistic', gd1 + '(θ*)']}; at 2/λ_max(θ*) it {said['logistic', gd2 + '(θ*)']}; at "
        f"{max(cfg['step_multiples']):g}/λ_max(θ*) it {said['logistic', gd21 + '(θ*)']}; at 2/λ_max(θ₀), on the "
        f"global bound 2/L (L = λ_max(θ₀), the largest curvature anywhere), it takes "
        f"{said['logistic', 'GD η = 2/λ_max(θ₀)']}"
        + (f": the bound guarantees nothing at η = 2/L, and it converges because the curvature it meets after "
           f"θ₀ is below L (λ_max(θ*) = {logi['lambda_max']:.4g})"
           if summ["logistic", "GD η = 2/λ_max(θ₀)"]["converged"] else "")
        + f"; Jacobi-preconditioned GD {said['logistic', 'Jacobi-preconditioned GD']}. Iterations are counts "
        "and repeat exactly; the seconds per method depend on the machine and are in the record and the "
        "timing figure only."
    )
    return Verdict(text, head)


def _degenerate_sentence(head: dict[str, Any]) -> str:
    """Newton at the degenerate minimum (problem (c)): linear convergence, with the measured ratio."""
    ratio = head["degenerate: Newton's ratio a(t+1)/a(t), median"]
    kind = "only linear convergence" if ratio > 0.1 else "faster than linear convergence"
    return (f"at a degenerate minimum, L = ½ (w₁w₂)² with H = 0 at the origin (along w₁ = w₂ = a, L = ½a⁴, "
            f"f = x⁴'s case), Newton's a shrinks by a ratio of {ratio:.4f} per step (2/3 predicted): {kind}, "
            f"‖∇L‖ = {head['degenerate: Newton ‖∇L‖ at the end']:.2g} after "
            f"{head['degenerate: Newton iterations']} steps.")


def _said(s: dict[str, Any]) -> str:
    """How a method's run ended, in words, from its summary row."""
    if s["converged"]:
        return f"{s['iterations']} iteration{'' if s['iterations'] == 1 else 's'}"
    if s["diverged"]:
        return f"diverges (‖∇L‖ > 10⁶·‖∇L₀‖ after {s['iterations']} iterations)"
    return (f"does not converge in {s['iterations']} iterations (‖∇L‖ = {s['final_grad_norm']:.3g}, "
            f"L − L* = {s['final_loss_gap']:.3g})")


def _headline(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    """The curvature measured per problem, iterations and seconds per method, and the κ sweep's trend."""
    summ = {(r["problem"], r["method"]): r for r in rows if r["part"] == "summary"}
    curvature = {r["problem"]: r for r in rows if r["part"] == "curvature"}
    quad, logi = curvature["quadratic"], curvature["logistic"]
    newton_q, newton_l = summ["quadratic", "Newton"], summ["logistic", "Newton"]
    sweep = [r for r in rows if r["part"] == "sweep" and r["method"] == "GD η = 1/λ_max"]
    kap = np.array([r["kappa"] for r in sweep if r["converged"]], dtype=np.float64)
    sweep_its = np.array([r["iterations"] for r in sweep if r["converged"]], dtype=np.float64)
    head: dict[str, Any] = {
        "quadratic: λ_max measured (known)": f"{quad['lambda_max']:.10g} ({quad['lambda_max_known']:.10g})",
        "quadratic: λ_min measured (known)": f"{quad['lambda_min']:.10g} ({quad['lambda_min_known']:.10g})",
        "quadratic: λ_max relative error": abs(quad["lambda_max"] / quad["lambda_max_known"] - 1),
        "quadratic: Newton iterations": newton_q["iterations"] if newton_q["converged"] else None,
        "quadratic: ‖∇L‖ after Newton": newton_q["final_grad_norm"],
        "quadratic: Newton seconds": newton_q["seconds"],
    }
    head.update(_method_headline(summ, "quadratic"))
    head["quadratic: GD at 2/λ_max: final ‖∇L‖"] = summ["quadratic", "GD η = 2/λ_max"]["final_grad_norm"]
    head["quadratic: top mode's initial gradient |λ_max c_max|"] = quad["top_mode_grad"]
    head.update({
        "logistic: λ_max at θ₀ = 0": logi["lambda_max_start"],
        "logistic: λ_max at θ*": logi["lambda_max"],
        "logistic: λ_min at θ*": logi["lambda_min"],
        "logistic: κ at θ*": logi["condition_number"],
        "logistic: L*": logi["loss_star"],
        "logistic: Newton iterations": newton_l["iterations"] if newton_l["converged"] else None,
        "logistic: Newton seconds": newton_l["seconds"],
    })
    head.update(_method_headline(summ, "logistic"))
    head[f"sweep: GD at 1/λ_max iterations for κ = {list(cfg['kappa_sweep'])}"] = [r["iterations"] for r in sweep]
    head["sweep: fitted exponent of iterations vs κ"] = (
        float(np.polyfit(np.log(kap), np.log(sweep_its), 1)[0]) if len(kap) >= 2 else math.nan)
    head["sweep: Newton iterations"] = [r["iterations"] for r in rows if r["part"] == "sweep"
                                        and r["family"] == "newton"]
    degenerate = [r for r in rows if r["part"] == "degenerate"]
    head["degenerate: Newton iterations"] = degenerate[-1]["iteration"]
    head["degenerate: Newton's ratio a(t+1)/a(t), median"] = float(np.median(
        [r["ratio"] for r in degenerate if r["ratio"] is not None]))
    head["degenerate: Newton ‖∇L‖ at the end"] = degenerate[-1]["grad_norm"]
    return head


def _method_headline(summ: dict[tuple[str, str], dict[str, Any]], problem: str) -> dict[str, Any]:
    """Iterations (None: not converged), the predicted iterations where known (GD on the quadratic) and
    seconds of every method on ``problem`` but Newton."""
    head: dict[str, Any] = {}
    for (prob, method), s in summ.items():
        if prob != problem or s["family"] == "newton":
            continue
        head[f"{problem}: {method}: iterations"] = s["iterations"] if s["converged"] else None
        if "predicted_iterations" in s:
            head[f"{problem}: {method}: predicted iterations"] = s["predicted_iterations"]
        head[f"{problem}: {method}: seconds"] = s["seconds"]
    return head


def figures(records: Records, cfg: dict[str, Any]) -> dict[str, Figure]:
    """Gradient norm and loss gap per iteration on each problem, iterations vs κ, seconds per method."""
    rows = records.rows
    return {
        "quadratic": Figure(_trajectory_figure(rows, "quadratic", cfg), f"Convex quadratic (d = {cfg['dim']}, "
                            f"κ = {cfg['kappa']:g}, known eigenvalues): gradient norm and loss gap per iteration "
                            "for GD at fixed steps, Jacobi-preconditioned GD and Newton."),
        "logistic": Figure(_trajectory_figure(rows, "logistic", cfg), f"Logistic regression (N = "
                           f"{cfg['n_samples']}, {cfg['features']} features, float64): gradient norm and L − L* "
                           "per iteration; λ_max(θ*) is the curvature at the minimum, λ_max(θ₀) at the start."),
        "kappa_sweep": Figure(_sweep_figure(rows, cfg), "Iterations to the tolerance vs the condition number: GD "
                              "at 1/λ_max (measured and the exact prediction from the eigenvalues), GD at "
                              "2/(λ_max + λ_min), and Newton (one step)."),
        "time": Figure(_time_figure(rows, cfg), "Wall time to the tolerance per method (green: converged, grey: "
                       "not within the iteration budget, vermilion: diverged), with the iteration counts; wall times "
                       "are machine-dependent."),
    }


def _trajectory_figure(rows: list[dict[str, Any]], problem: str, cfg: dict[str, Any]) -> Any:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    traj = [r for r in rows if r["part"] == "trajectory" and r["problem"] == problem]
    for i, method in enumerate(dict.fromkeys(r["method"] for r in traj)):
        mine = [r for r in traj if r["method"] == method]
        style = {"color": f"C{i % 10}", "lw": 2.5 if method == "Newton" else 1.2,
                 "marker": "o" if method == "Newton" else None, "ms": 4}
        its = [r["iteration"] for r in mine]
        ax1.plot(its, [r["grad_norm"] for r in mine], label=method, **style)
        ax2.plot(its, [max(r["loss_gap"], 1e-17) for r in mine], label=method, **style)
    ax1.axhline(cfg["grad_tol"], color="k", ls=":", lw=1)
    for ax, ylabel in ((ax1, "‖∇L‖"), (ax2, "L − L* (floored at 1e-17)")):
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlim(left=0)
        ax.set(yscale="log", xlabel="iteration", ylabel=ylabel, title=f"{problem}: {ylabel.split(' (')[0]}")
    ax1.legend(fontsize=7)
    fig.suptitle(f"How many iterations does each method need on the {problem} problem?")
    fig.tight_layout()
    return fig


def _sweep_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    sweep = [r for r in rows if r["part"] == "sweep"]
    for i, method in enumerate(dict.fromkeys(r["method"] for r in sweep)):
        mine = [r for r in sweep if r["method"] == method and r["converged"]]
        ax.plot([r["kappa"] for r in mine], [r["iterations"] for r in mine], marker="o", color=f"C{i}",
                label=f"{method} (measured)")
        if any(r["predicted_iterations"] for r in mine):
            ax.plot([r["kappa"] for r in mine], [r["predicted_iterations"] for r in mine], ls="none", marker="x",
                    ms=10, color="k", label=f"{method} (predicted from the eigenvalues)")
    ax.set(xscale="log", yscale="log", xlabel="condition number κ", ylabel=f"iterations to ‖∇L‖ < {cfg['grad_tol']:g}",
           title=f"quadratic, d = {cfg['dim']}")
    ax.legend(fontsize=8)
    fig.suptitle("How do the iterations grow with the condition number?")
    fig.tight_layout()
    return fig


def _time_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, problem in zip(axes, ("quadratic", "logistic"), strict=True):
        mine = [r for r in rows if r["part"] == "summary" and r["problem"] == problem]
        colors = ["C2" if r["converged"] else ("C3" if r["diverged"] else "grey") for r in mine]
        ax.barh([r["method"] for r in mine], [r["seconds"] for r in mine], color=colors)
        for y, r in enumerate(mine):
            ax.text(r["seconds"], y, f" {r['iterations']} it" + ("" if r["converged"] else " ✗"), va="center",
                    fontsize=7)
        ax.set(xscale="log", xlabel="seconds (this machine)", title=f"{problem}: time to ‖∇L‖ < {cfg['grad_tol']:g}")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("How long does each method take on this machine?")
    fig.tight_layout()
    return fig


def answer(records: Records, cfg: dict[str, Any]) -> Answer:
    """Newton's iterations vs gradient descent's at its best fixed step on logistic regression, and the
    step-size bound that λ_max sets."""
    _, head = verdict(records, cfg)
    newton = head["logistic: Newton iterations"]
    runs = [v for k, v in head.items() if k.startswith("logistic: GD η") and k.endswith(": iterations")]
    gd = min((v for v in runs if v is not None), default=None)
    said = (f"in {newton} steps" if newton is not None else "not within the iteration limit")
    text = (f"Gradient descent's step is limited by the sharpest direction: it must stay below 2/λ_max, so on a "
            f"badly conditioned problem it crawls along the flat directions. On logistic regression Newton's "
            f"method, which rescales every direction by its curvature, converges {said}")
    text += f", where gradient descent at the best of the fixed steps tried needs {gd}." if gd is not None else \
        ", where gradient descent at each of the fixed steps tried stops at the iteration limit."
    return Answer(text, "logistic")


STUDY = register(Study(
    name="newton",
    question="How many iterations does gradient descent need at steps set by λ_max, and how many does Newton's "
             "method need, on a quadratic and on logistic regression?",
    notes="Source notes 001 (convergence for a convex problem: the optimal step 1/a, the 2/λ_max bound, scaling the "
          "axes, Newton's method with the inverse Hessian).",
    measure=measure, verdict=verdict, figures=figures, answer=answer,
    method="We build a quadratic with known eigenvalues and a logistic regression, measure their Hessians' "
           "extreme eigenvalues with the lab's Lanczos, and run gradient descent at steps set by λ_max, "
           "Jacobi-preconditioned descent and Newton's method to the same gradient tolerance, counting iterations. "
           "A sweep over the condition number and a degenerate minimum test the theory's conditions.",
    checks={"kappa": AT_LEAST_ONE, "kappa_sweep": AT_LEAST_ONE, **dict.fromkeys(
        ("n_samples", "features", "feature_scale", "grad_tol", "max_iters", "sweep_max_iters", "step_multiples",
         "cg_tol", "degenerate_steps"), POSITIVE)},
    quick={"seed": 0, "dim": 20, "kappa": 100.0, "kappa_sweep": [10.0, 100.0, 1000.0], "n_samples": 1000,
           "features": 10, "feature_scale": 10.0, "grad_tol": 1e-8, "max_iters": 10000, "sweep_max_iters": 40000,
           "step_multiples": [0.5, 1.0, 2.0, 2.1], "cg_tol": 1e-10, "degenerate_steps": 10},
    full={"seed": 0, "dim": 50, "kappa": 1000.0, "kappa_sweep": [10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0],
          "n_samples": 5000, "features": 20, "feature_scale": 30.0, "grad_tol": 1e-8, "max_iters": 100000,
          "sweep_max_iters": 200000, "step_multiples": [0.5, 1.0, 2.0, 2.1], "cg_tol": 1e-10, "degenerate_steps": 10},
))
