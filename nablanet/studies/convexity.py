"""Study ``convexity``: the cross-entropy risk of a linear softmax classifier is convex, a hidden layer
breaks it, and the quadratic loss on one sigmoid neuron is not convex (source notes 004, §2).

(a) The linear softmax classifier. With x̃ = (x, 1), V = [W b] (C, d + 1), z = V x̃ and p = softmax(z),
the loss ℓ = −log p_y has ∇_z ℓ = p − q (q the one-hot label) and ∇²_z ℓ = J(p) = diag(p) − ppᵀ. The
logits are linear in V, so the risk's Hessian over vec(V) (row-major) is

    H = (1/N) Σₙ J(pₙ) ⊗ x̃ₙx̃ₙᵀ,

and for a direction U (C, d + 1), with uₙ = U x̃ₙ,

    vec(U)ᵀ H vec(U) = (1/N) Σₙ uₙᵀ J(pₙ) uₙ,    uᵀJ(p)u = Σ_c p_c u_c² − (Σ_c p_c u_c)² = Var_{c∼p}(u_c) ≥ 0:

every J(p) is positive semi-definite (PSD: it is a covariance; equally, its rows sum to 0 with a non-negative
diagonal), a Kronecker product of PSD matrices is PSD and so is their mean: H ⪰ 0 at every θ, the risk is
convex. Its null directions are those where every uₙ is constant over the classes: adding one row to every
class (softmax is shift-invariant) or moving weights of inputs that are 0 on every sample. Along them L is
exactly constant, so λ_min = 0 and the slice along the bottom eigenvector is flat, not curved down.
Measured: the dense Hessian (``nablanet.lab.hessian``, one exact HVP per column) against the formula
above built from the model's softmax outputs, the smallest eigenvalue of every J(pₙ), and the spectrum.

(b) One hidden layer, z = W₂ φ(W₁x + b₁) + b₂ (φ = tanh or ReLU). Now z is not linear in θ, and with
Gₙ = ∂zₙ/∂θ (C, P) the Jacobian of the logits,

    H = (1/N) Σₙ [Gₙᵀ J(pₙ) Gₙ + Σ_c (pₙ − qₙ)_c ∇²_θ zₙ,c],

the first term the Gauss-Newton part (PSD). In the second the (W₂, W₂) block is zero (z is linear in W₂),
the (W₂, W₁) block B is not, and the (W₁, W₁) block D carries φ″ (D = 0 for ReLU, whose φ″ = 0), so on
the (W₂, W₁) coordinates it reads [[0, B], [Bᵀ, D]]. For ReLU its eigenvalues are ±σᵢ(B); for any D, a
zero diagonal block with B ≠ 0 still gives a negative direction: with uᵀBw < 0, v = (u, εw) has
vᵀ[[0, B], [Bᵀ, D]]v = 2ε uᵀBw + ε² wᵀDw < 0 for small ε > 0. So the second term is indefinite, and
nothing makes the Gauss-Newton part outweigh it everywhere. λ_min and λ_max come from Lanczos on exact HVPs
(``nablanet.lab.hessian_eigenvalues``, which="SA" and "LA"), checked against the dense spectrum at one
point when P ≤ ``dense_max``.

(c) One sigmoid neuron, one sample (x, t) = (1, t), quadratic loss L(w, b) = ½ (σ(z) − t)², z = wx + b.
With g(z) = ½ (σ(z) − t)², σ′ = σ(1 − σ) and σ″ = σ′(1 − 2σ), the exact Hessian is H = g″(z) x̃x̃ᵀ, of
rank one (eigenvalues 0 and g″(z)(x² + 1)), with

    g″ = σ′² + (σ − t) σ″:    t = 0: g″ = σ′ σ (2 − 3σ) < 0  iff  σ > 2/3  iff  z > ln 2
                              t = 1: g″ = σ′ (1 − σ)(3σ − 1) < 0  iff  σ < 1/3  iff  z < −ln 2

so the loss curves downward wherever the output is past 2/3 towards the wrong label (cross-entropy,
−log σ(z), has g″ = σ′ > 0 instead). Measured: the 2×2 Hessian on a (w, b) grid, and the boundary by
bisection along w = b on the sign of its trace (the one non-zero eigenvalue), against ±ln 2.

Slices. f(s) = L(θ + s d) for d the bottom or top eigenvector or a random unit direction, through each
network's trained point and the neuron's most concave grid point: f″(0) = dᵀHd (checked against the
second difference of the measured f), and a convex L has convex slices. A curvature-free witness: convexity requires
f((a + b)/2) ≤ (f(a) + f(b))/2, so the largest midpoint violation f(s) − (f(s − kh) + f(s + kh))/2 over
the slice's grid, when positive beyond rounding, proves non-convexity without a derivative.

The tolerance. A point has negative curvature when λ_min < −``tol``·max(|λ_min|, |λ_max|), tol = 1e-9 by
default. Why not 0: a true zero eigenvalue (the linear model has at least d + 1) comes out of float64
arithmetic as ± rounding. The dense Hessian's entries are sums over N samples, each term rounded to a
relative ε = 2.2e-16, and ``eigh`` is backward stable (each computed eigenvalue within about P·ε·‖H‖ of an exact
one); Lanczos stops when a Ritz pair's residual is ≤ 1e-10·max |Ritz value|, which bounds the
distance from the Ritz value to an eigenvalue. 1e-9 sits above both and orders of magnitude below the
negative curvature of (b) and (c). The rounding actually met is recorded: the dense Hessian is exactly
symmetric in exact arithmetic, so max|H − Hᵀ|/max|H| measures it. Slices use the same tol relative to the
slice's largest loss for the midpoint violation.

The points. ``points_per_scale`` random points per scale of ``scales`` (each weight ~ N(0, (scale)²/fan_in),
each bias ~ N(0, scale²)), and ``train_points`` + 1 points along a full-batch gradient-descent run of
``epochs`` epochs at rate ``lr`` from the default initialization (its first point), for each network;
the digits of the first ``classes`` classes (the training split of ``nablanet.data.load_digits``, the
first ``n_train`` images, ``pool``×``pool`` mean-pooled: 64/pool² features).

Figure 2 of the notes, measured. ℓ(y, p) in bits from ``nablanet.BCELoss(reduction="none")`` divided by
ln 2, with ``nablanet.info.binary_cross_entropy(base=2)`` as a cross-check, on a dyadic grid (p = j/1024
and p = 2^−k, 1 − 2^−k for k = 1…40) on which 1 − p is exact in float64, so ℓ(1, p) = ℓ(0, 1 − p) is
tested to float precision; ℓ(1, 2^−k) = k bits shows the unbounded growth as p → 0. With it the 0-1 loss
[argmax(1 − p, p) ≠ y] (the tie at p = ½ goes to class 0, np.argmax's first maximum) and the quadratic
loss (p − y)² (``nablanet.MSELoss``).

Records: ``part="point"`` one per (model, point): λ_min, λ_max, their ratio, how they were computed, and for
the linear model the formula check; ``part="spectrum"`` the dense spectrum at each network's trained point;
``part="neuron"`` the (w, b) grid; ``part="boundary"`` the bisected boundaries; ``part="slice"`` the slices'
losses and ``part="slice_summary"`` their curvature and midpoint violation; ``part="ce"`` the loss curves.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import nablanet as nn
from nablanet.layers.softmax import softmax
from nablanet.studies._models import mlp, set_flat
from nablanet.studies.base import Answer, Figure, Records, Study, Verdict, blas_threads, pyplot, register
from nablanet.studies.settings import AT_LEAST_ONE, POSITIVE, Check
from nablanet.train.callbacks.base import Callback

NETWORKS = ("linear", "hidden")
DIRECTIONS = ("bottom", "top", "random")
TAIL = 40
"""The CE grid's tails: p = 2^−k and 1 − 2^−k for k = 1 … TAIL (exact in float64 up to k = 52)."""
ASYMMETRY = "linear: Hessian asymmetry max|H − Hᵀ|/max|H|, largest"
FORMULA = "linear: Hessian vs (1/N) Σ J(p) ⊗ x̃x̃ᵀ, max relative difference"
J_MIN = "linear: smallest eigenvalue of any J(pₙ)"
LANCZOS_CHECK = "hidden: |Lanczos − dense| at the trained point, relative to λ_max"
FD_KEY = "slices: |second difference at 0 − dᵀHd|, relative to each model's largest |dᵀHd|"


# -- data and models ---------------------------------------------------------------------------------------
def digits(cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The training digits of classes 0 … classes − 1: the first n_train images, pool×pool mean-pooled."""
    x, y = nn.data.load_digits(seed=cfg["seed"], dtype=np.float64).train
    keep = y < cfg["classes"]
    x, y = x[keep][: cfg["n_train"]], y[keep][: cfg["n_train"]]
    k, side = cfg["pool"], 8 // cfg["pool"]
    return x.reshape(-1, side, k, side, k).mean(axis=(2, 4)).reshape(len(x), side * side), y


def network(kind: str, features: int, cfg: dict[str, Any], rng: np.random.Generator) -> nn.Sequential:
    """Linear(d, C), or Linear(d, hidden) → tanh/ReLU → Linear(hidden, C), in float64."""
    hidden = [] if kind == "linear" else [cfg["hidden"]]
    return mlp(features, hidden, cfg["classes"], rng, nn.Tanh if cfg["activation"] == "tanh" else nn.ReLU)


def flat(model: nn.Sequential) -> np.ndarray:
    """The parameter vector θ (P,) in ``nablanet.lab.flatten_params``'s order (a copy)."""
    return nn.lab.flatten_params(model.state_dict(), model)


def random_point(model: nn.Sequential, scale: float, rng: np.random.Generator) -> np.ndarray:
    """θ with each weight ~ N(0, scale²/fan_in) and each bias ~ N(0, scale²)."""
    parts = []
    for _, p in model.named_parameters():
        fan_in = p.data.shape[-1] if p.data.ndim == 2 else 1
        parts.append(scale / math.sqrt(fan_in) * rng.standard_normal(p.data.size))
    return np.concatenate(parts)


class _Snapshots(Callback):
    """θ after the epochs listed in ``at`` (epoch 0, the initialization, is taken before fit)."""

    def __init__(self, model: nn.Sequential, at: list[int]) -> None:
        self.model, self.at = model, set(at)
        self.taken: list[tuple[int, np.ndarray]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if epoch + 1 in self.at:
            self.taken.append((epoch + 1, flat(self.model)))


def training_points(model: nn.Sequential, x: np.ndarray, y: np.ndarray,
                    cfg: dict[str, Any]) -> list[tuple[int, np.ndarray]]:
    """(epoch, θ) at train_points + 1 epochs evenly spaced over a full-batch GD run, the first the init."""
    at = sorted({round(cfg["epochs"] * i / cfg["train_points"]) for i in range(1, cfg["train_points"] + 1)})
    snaps = _Snapshots(model, at)
    start = flat(model)
    nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=cfg["lr"]), train=(x, y),
           epochs=cfg["epochs"], batch_size=None, seed=cfg["seed"], callbacks=[snaps])
    return [(0, start), *snaps.taken]


# -- curvature at one point ---------------------------------------------------------------------------------
def softmax_hessian(model: nn.Sequential, x: np.ndarray) -> tuple[np.ndarray, float]:
    """The linear model's Hessian from the formula H = (1/N) Σₙ J(pₙ) ⊗ x̃ₙx̃ₙᵀ, in the lab's order
    (weight (C, d) in C order, then bias (C,)), and min over n of λ_min(J(pₙ))."""
    p = softmax(model(x), axis=1)
    jac = np.einsum("nc,cd->ncd", p, np.eye(p.shape[1])) - p[:, :, None] * p[:, None, :]
    xt = np.hstack([x, np.ones((len(x), 1))])
    c, d1 = p.shape[1], xt.shape[1]
    h = np.einsum("nab,ni,nj->aibj", jac, xt, xt, optimize=True).reshape(c * d1, c * d1) / len(x)
    order = [a * d1 + i for a in range(c) for i in range(d1 - 1)] + [a * d1 + d1 - 1 for a in range(c)]
    return h[np.ix_(order, order)], float(np.linalg.eigvalsh(jac).min())


def curvature(model: nn.Sequential, x: np.ndarray, y: np.ndarray, method: str, seed: int,
              formula: bool = False) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray | None]:
    """λ_min, λ_max at the model's current θ, their unit eigenvectors (bottom, top) and the dense Hessian
    (None for Lanczos).

    method "dense": ``nablanet.lab.hessian`` and ``eigh`` of its symmetric part (with the asymmetry, the
    rounding met, and with ``formula`` the check against ``softmax_hessian``, for a Linear model alone);
    "lanczos": ``hessian_eigenvalues`` which="SA" and "LA" on exact HVPs.
    """
    loss = nn.CrossEntropyLoss()
    row: dict[str, Any] = {"method": method, "params": int(flat(model).size)}
    h: np.ndarray | None = None
    if method == "dense":
        h = nn.lab.hessian(model, loss, x, y)
        vals, vecs = np.linalg.eigh((h + h.T) / 2)
        row["asymmetry"] = float(np.abs(h - h.T).max() / np.abs(h).max())
        lo, hi, v_lo, v_hi = vals[0], vals[-1], vecs[:, 0], vecs[:, -1]
        if formula:
            built, j_min = softmax_hessian(model, x)
            row["formula_error"] = float(np.abs(h - built).max() / np.abs(h).max())
            row["j_min"] = j_min
    else:
        iters = min(row["params"], 1000)
        lo_v, lo_vec = nn.lab.hessian_eigenvalues(model, loss, x, y, 1, which="SA", seed=seed, iters=iters,
                                                  return_eigenvectors=True)
        hi_v, hi_vec = nn.lab.hessian_eigenvalues(model, loss, x, y, 1, which="LA", seed=seed, iters=iters,
                                                  return_eigenvectors=True)
        lo, hi, v_lo, v_hi = lo_v[0], hi_v[0], lo_vec[:, 0], hi_vec[:, 0]
    row.update(lambda_min=float(lo), lambda_max=float(hi), ratio=float(lo / hi))
    return row, v_lo, v_hi, h


def negative(lam_min: float, lam_max: float, tol: float) -> bool:
    """Negative curvature beyond rounding: λ_min < −tol·max(|λ_min|, |λ_max|)."""
    return lam_min < -tol * max(abs(lam_min), abs(lam_max))


def loss_value(model: nn.Sequential, loss: nn.Loss, x: np.ndarray, target: np.ndarray) -> float:
    """L(θ) at the model's current parameters (a forward pass, no gradient)."""
    value, _ = loss.forward(model(x), target)
    return float(value)


# -- slices -------------------------------------------------------------------------------------------------
def slices(name: str, model: nn.Sequential, loss: nn.Loss, x: np.ndarray, target: np.ndarray, theta: np.ndarray,
           directions: dict[str, np.ndarray], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """f(s) = L(θ + s d) on ``slice_steps`` points of [−slice_radius, slice_radius] per unit direction d; per
    slice a summary: dᵀHd by an exact HVP, f's second difference at s = 0 and its smallest, and the largest
    midpoint violation f(s) − (f(s − kh) + f(s + kh))/2 over the grid (> 0 only where f is not convex)."""
    s = np.linspace(-cfg["slice_radius"], cfg["slice_radius"], cfg["slice_steps"])
    h, mid = float(s[1] - s[0]), len(s) // 2
    rows: list[dict[str, Any]] = []
    for label, d in directions.items():
        f = np.empty(len(s))
        for i, si in enumerate(s):
            set_flat(model, theta + si * d)
            f[i] = loss_value(model, loss, x, target)
        set_flat(model, theta)
        hd = nn.lab.hvp(model, loss, x, target, nn.lab.unflatten_params(d, model))
        second = (f[2:] - 2 * f[1:-1] + f[:-2]) / h**2
        violation = max(float(np.max(f[k:-k] - (f[: -2 * k] + f[2 * k:]) / 2)) for k in range(1, mid + 1))
        scale = float(np.max(np.abs(f)))
        rows += [{"part": "slice", "model": name, "direction": label, "s": float(si), "loss": float(fi),
                  "change": float(fi - f[mid])} for si, fi in zip(s, f, strict=True)]
        rows.append({"part": "slice_summary", "model": name, "direction": label,
                     "curvature": float(d @ nn.lab.flatten_params(hd, model)),
                     "second_difference_at_0": float(second[mid - 1]),
                     "min_second_difference": float(second.min()), "midpoint_violation": violation,
                     "loss_scale": scale, "violated": violation > cfg["tol"] * scale})
    return rows


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal(n)
    return v / np.linalg.norm(v)


# -- (a) and (b): the networks ------------------------------------------------------------------------------
def network_part(kind: str, x: np.ndarray, y: np.ndarray, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """λ_min, λ_max at the training run's points and the random points; at the trained point (the run's
    last) the dense spectrum (P ≤ dense_max) and the slices."""
    rng = np.random.default_rng([cfg["seed"], 1 + NETWORKS.index(kind)])
    model, loss = network(kind, x.shape[1], cfg, rng), nn.CrossEntropyLoss()
    size = flat(model).size
    method = "dense" if kind == "linear" and size <= cfg["dense_max"] else "lanczos"
    points: list[tuple[str, float | None, int | None, np.ndarray]] = [
        ("training", None, epoch, theta) for epoch, theta in training_points(model, x, y, cfg)]
    ref = len(points) - 1  # the trained point, where the spectrum and the slices are taken
    points += [("random", scale, None, random_point(model, scale, rng)) for scale in cfg["scales"]
               for _ in range(cfg["points_per_scale"])]
    rows: list[dict[str, Any]] = []
    vectors: list[tuple[np.ndarray, np.ndarray]] = []
    h_ref: np.ndarray | None = None  # the dense Hessian at the trained point, if curvature built one
    for i, (how, scale, epoch, theta) in enumerate(points):
        set_flat(model, theta)
        row, v_lo, v_hi, h = curvature(model, x, y, method, cfg["seed"], formula=kind == "linear")
        h_ref = h if i == ref else h_ref
        rows.append({"part": "point", "model": kind, "point": i, "kind": how, "scale": scale, "epoch": epoch,
                     "samples": len(x), "features": x.shape[1], "loss": loss_value(model, loss, x, y),
                     "norm": float(np.linalg.norm(theta)), **row,
                     "negative": negative(row["lambda_min"], row["lambda_max"], cfg["tol"])})
        vectors.append((v_lo, v_hi))
    theta = points[ref][3]
    set_flat(model, theta)
    if size <= cfg["dense_max"]:
        h = h_ref if h_ref is not None else nn.lab.hessian(model, loss, x, y)
        spectrum = np.linalg.eigvalsh((h + h.T) / 2)
        rows += [{"part": "spectrum", "model": kind, "point": ref, "rank": r, "eigenvalue": float(v)}
                 for r, v in enumerate(spectrum)]
    directions = {"bottom": vectors[ref][0], "top": vectors[ref][1], "random": _unit(rng, size)}
    return rows + slices(kind, model, loss, x, y, theta, directions, cfg)


# -- (c): one sigmoid neuron under the quadratic loss ---------------------------------------------------------
def neuron(t: float) -> tuple[nn.Sequential, nn.Loss, np.ndarray, np.ndarray]:
    """σ(w·1 + b) with target t under ½(σ − t)²: model, loss, x = [[1]], target = [[t]]."""
    return (nn.Sequential(nn.Linear(1, 1, dtype=np.float64), nn.Sigmoid()), nn.QuadraticLoss(),
            np.ones((1, 1)), np.full((1, 1), float(t)))


def _neuron_hessian(parts: tuple[nn.Sequential, nn.Loss, np.ndarray, np.ndarray], w: float, b: float) -> np.ndarray:
    model, loss, x, target = parts
    set_flat(model, np.array([w, b]))
    return nn.lab.hessian(model, loss, x, target)


def boundary(t: float, radius: float) -> dict[str, Any]:
    """The z = w + b where the neuron's curvature changes sign, by bisection along w = b on the sign of the
    Hessian's trace (its one non-zero eigenvalue), from the bracket z ∈ [−2·radius, 2·radius]."""
    parts = neuron(t)

    def sign(z: float) -> bool:
        return bool(np.trace(_neuron_hessian(parts, z / 2, z / 2)) > 0)

    lo, hi = -2.0 * radius, 2.0 * radius
    left = sign(lo)
    if sign(hi) == left:
        raise RuntimeError(f"the neuron's curvature keeps its sign on z ∈ [{lo}, {hi}]; widen neuron_radius")
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sign(mid) == left else (lo, mid)
    z = (lo + hi) / 2
    set_flat(parts[0], np.array([z / 2, z / 2]))
    return {"part": "boundary", "target": t, "z": z, "bracket": hi - lo, "output": float(parts[0](parts[2])[0, 0]),
            "theory_z": math.log(2.0) * (1.0 if t == 0 else -1.0), "theory_output": 2 / 3 if t == 0 else 1 / 3}


def neuron_part(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The exact 2×2 Hessian on the (w, b) grid for targets 0 and 1, the boundaries, and the slices through
    the grid point of target 0 with the most negative λ_min."""
    grid = np.linspace(-cfg["neuron_radius"], cfg["neuron_radius"], cfg["neuron_grid"])
    rows: list[dict[str, Any]] = []
    for t in (0.0, 1.0):
        parts = neuron(t)
        for w in grid:
            for b in grid:
                h = _neuron_hessian(parts, float(w), float(b))
                lo, hi = np.linalg.eigvalsh((h + h.T) / 2)
                rows.append({"part": "neuron", "target": t, "w": float(w), "b": float(b), "z": float(w + b),
                             "lambda_min": float(lo), "lambda_max": float(hi), "trace": float(np.trace(h)),
                             "negative": negative(float(lo), float(hi), cfg["tol"])})
        rows.append(boundary(t, cfg["neuron_radius"]))
    worst = min((r for r in rows if r["part"] == "neuron" and r["target"] == 0), key=lambda r: r["lambda_min"])
    parts = neuron(0.0)
    theta = np.array([worst["w"], worst["b"]])
    _, vecs = np.linalg.eigh(_neuron_hessian(parts, worst["w"], worst["b"]))
    rng = np.random.default_rng([cfg["seed"], 3])
    directions = {"bottom": vecs[:, 0], "top": vecs[:, 1], "random": _unit(rng, 2)}
    return rows + slices("neuron", *parts, theta, directions, cfg)


# -- Figure 2: the two-class cross-entropy in bits ----------------------------------------------------------
def ce_part() -> list[dict[str, Any]]:
    """ℓ(y, p) in bits by BCELoss / ln 2 and by nablanet.info, the 0-1 loss and (p − y)² on the dyadic grid."""
    grid = {j / 1024 for j in range(1, 1024)} | {2.0**-k for k in range(1, TAIL + 1)}
    grid |= {1 - 2.0**-k for k in range(1, TAIL + 1)}
    p = np.array(sorted(grid))
    rows: list[dict[str, Any]] = []
    for y in (1, 0):
        target = np.full_like(p, float(y))
        bce, _ = nn.BCELoss(reduction="none").forward(p[:, None], target[:, None])
        bits = np.asarray(bce)[:, 0] / math.log(2.0)
        info = np.asarray(nn.info.binary_cross_entropy(q=target, p=p, base=2))
        decided = np.argmax(np.stack([1 - p, p], axis=1), axis=1)  # ties (p = ½) go to class 0
        quad, _ = nn.MSELoss(reduction="none").forward(p[:, None], target[:, None])
        rows += [{"part": "ce", "label": y, "p": float(pi), "bits": float(b), "bits_info": float(i),
                  "zero_one": int(dec != y), "quadratic": float(q)}
                 for pi, b, i, dec, q in zip(p, bits, info, decided, np.asarray(quad)[:, 0], strict=True)]
    return rows


def measure(cfg: dict[str, Any]) -> Records:
    """The rows of the module docstring. BLAS runs on one thread (threadpoolctl, installed with scikit-learn,
    which the digits need): the matrices are small, and on a shared machine more threads only wait."""
    with blas_threads(1, "convexity", setting=None):
        x, y = digits(cfg)
        rows = [*network_part("linear", x, y, cfg), *network_part("hidden", x, y, cfg), *neuron_part(cfg)]
    return Records(rows + ce_part())


# -- verdict ------------------------------------------------------------------------------------------------
def _part(rows: list[dict[str, Any]], part: str, **match: Any) -> list[dict[str, Any]]:
    return [r for r in rows if r["part"] == part and all(r[k] == v for k, v in match.items())]


def _network_numbers(rows: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    pts = _part(rows, "point", model=kind)
    worst = min(pts, key=lambda r: r["ratio"])
    trained = max((r for r in pts if r["kind"] == "training"), key=lambda r: r["epoch"])
    head: dict[str, Any] = {
        f"{kind}: parameters P": pts[0]["params"], f"{kind}: points tried": len(pts),
        f"{kind}: points along training": sum(r["kind"] == "training" for r in pts),
        f"{kind}: points with negative curvature": sum(r["negative"] for r in pts),
        f"{kind}: training points with negative curvature": sum(r["negative"] for r in pts if r["kind"] == "training"),
        f"{kind}: most negative λ_min/λ_max": worst["ratio"],
        f"{kind}: kind of the most negative point": "a training point" if worst["kind"] == "training"
        else f"a random point at scale {worst['scale']:g}",
        f"{kind}: λ_min/λ_max at the trained point": trained["ratio"]}
    spectrum = [r["eigenvalue"] for r in _part(rows, "spectrum", model=kind)]
    if kind == "linear" and trained["method"] == "dense":
        head[FORMULA] = max(r["formula_error"] for r in pts)
        head[J_MIN] = min(r["j_min"] for r in pts)
        head[ASYMMETRY] = max(r["asymmetry"] for r in pts)
    elif spectrum and trained["method"] == "lanczos":
        head[LANCZOS_CHECK] = max(
            abs(trained["lambda_min"] - min(spectrum)), abs(trained["lambda_max"] - max(spectrum))) / max(spectrum)
    return head


def _neuron_numbers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    head: dict[str, Any] = {}
    for t, side in ((0.0, 1.0), (1.0, -1.0)):
        grid, edge = _part(rows, "neuron", target=t), _part(rows, "boundary", target=t)[0]
        beyond = [side * (r["z"] - edge["z"]) > 0 for r in grid]
        head[f"neuron t={t:g}: grid points with negative curvature"] = sum(r["negative"] for r in grid)
        head[f"neuron t={t:g}: grid points off the measured boundary's side"] = sum(
            r["negative"] != b for r, b in zip(grid, beyond, strict=True))
        head[f"neuron t={t:g}: boundary z"] = edge["z"]
        head[f"neuron t={t:g}: |boundary − theory ±ln 2|"] = abs(edge["z"] - edge["theory_z"])
        head[f"neuron t={t:g}: output σ(z) at the boundary"] = edge["output"]
    head["neuron: grid points"] = len(_part(rows, "neuron", target=0.0))
    return head


def _slice_numbers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    head: dict[str, Any] = {}
    fd = 0.0
    for model in (*NETWORKS, "neuron"):
        mine = _part(rows, "slice_summary", model=model)
        top = max(abs(r["curvature"]) for r in mine)
        for r in mine:
            head[f"slice {model} {r['direction']}: dᵀHd"] = r["curvature"]
            head[f"slice {model} {r['direction']}: midpoint violation / loss scale"] = \
                r["midpoint_violation"] / r["loss_scale"]
            fd = max(fd, abs(r["second_difference_at_0"] - r["curvature"]) / top)
        head[f"slice {model}: slices with a midpoint violation"] = sum(r["violated"] for r in mine)
        head[f"slice {model}: directions with a midpoint violation"] = (
            ", ".join(r["direction"] for r in mine if r["violated"]) or "none")
    head[FD_KEY] = fd
    return head


def _ce_numbers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    one = {r["p"]: r for r in _part(rows, "ce", label=1)}
    zero = {r["p"]: r for r in _part(rows, "ce", label=0)}
    tail = [(k, one[2.0**-k]["bits"]) for k in range(1, TAIL + 1)]
    every = list(one.values()) + list(zero.values())
    return {"ce: grid points": len(one), "ce: ℓ(1, ½) bits": one[0.5]["bits"], "ce: ℓ(0, ½) bits": zero[0.5]["bits"],
            "ce: max |ℓ(1, p) − ℓ(0, 1 − p)| bits": max(abs(r["bits"] - zero[1 - p]["bits"]) for p, r in one.items()),
            "ce: max |ℓ(1, 2^−k) − k| bits": max(abs(b - k) for k, b in tail), "ce: tail k up to": TAIL,
            "ce: max |BCELoss − nablanet.info| bits": max(abs(r["bits"] - r["bits_info"]) for r in every),
            "ce: grid points where ℓ < the 0-1 loss": sum(r["bits"] < r["zero_one"] for r in every),
            "ce: largest quadratic loss (p − y)²": max(r["quadratic"] for r in every)}


def numbers(records: Records, cfg: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers, every one computed from the rows."""
    rows = records.rows
    first = _part(rows, "point")[0]
    head: dict[str, Any] = {"tolerance tol (relative to max |λ|)": cfg["tol"], "digits N": first["samples"],
                            "features d": first["features"]}
    for kind in NETWORKS:
        head.update(_network_numbers(rows, kind))
    return {**head, **_neuron_numbers(rows), **_slice_numbers(rows), **_ce_numbers(rows)}


def _count(k: int, n: int) -> str:
    return f"all {n}" if k == n else "none" if k == 0 else f"{k} of {n}"


def _linear_text(h: dict[str, Any], cfg: dict[str, Any]) -> str:
    k, n, t = h["linear: points with negative curvature"], h["linear: points tried"], h["linear: points along training"]
    scales = ", ".join(f"{s:g}" for s in cfg["scales"])
    where = (f"{n} points ({t} along a gradient-descent run of {cfg['epochs']} epochs, {n - t} random at "
             f"scales {scales})")
    worst = h["linear: most negative λ_min/λ_max"]
    found = (f"λ_min ≥ −tol·λ_max held at all {where}; the most negative λ_min/λ_max was {worst:.2g}, rounding"
             if k == 0 else f"λ_min < −tol·λ_max at {k} of {where} (down to λ_min/λ_max = {worst:.2g}), which "
             "contradicts the proof: look at those rows")
    text = (f"(a) Linear softmax classifier, {cfg['classes']} classes, {h['features d']} features, P = "
            f"{h['linear: parameters P']} parameters, N = {h['digits N']} digits, tol = {cfg['tol']:g}: {found}.")
    if FORMULA not in h:
        return text + f" (P > dense_max = {cfg['dense_max']}: Lanczos alone, so no check of the formula.)"
    return (f"{text} The dense Hessian's asymmetry, a measure of the rounding met, reached {h[ASYMMETRY]:.2g} of "
            f"its largest entry; it matched (1/N) Σ J(pₙ) ⊗ x̃ₙx̃ₙᵀ to a relative {h[FORMULA]:.2g}, and the "
            f"smallest eigenvalue of any J(pₙ) = diag(pₙ) − pₙpₙᵀ was {h[J_MIN]:.2g}, "
            "zero to rounding (each J(p) is a covariance matrix).")


def _hidden_text(h: dict[str, Any], cfg: dict[str, Any]) -> str:
    k, n = h["hidden: points with negative curvature"], h["hidden: points tried"]
    kt, t = h["hidden: training points with negative curvature"], h["hidden: points along training"]
    found = (f"Lanczos found λ_min < −tol·λ_max at {_count(k, n)} points ({_count(kt, t)} along training, "
             f"{_count(k - kt, n - t)} random), down to λ_min/λ_max = {h['hidden: most negative λ_min/λ_max']:.3g} "
             f"(at {h['hidden: kind of the most negative point']}); at the trained point it was "
             f"{h['hidden: λ_min/λ_max at the trained point']:.3g}" if k else
             f"Lanczos found no eigenvalue below −tol·λ_max at any of the {n} points")
    check = h.get(LANCZOS_CHECK)
    agree = ("" if check is None else
             f", and Lanczos's λ_min and λ_max matched the dense spectrum there to {check:.2g} of λ_max")
    return (f"(b) With one {cfg['activation']} hidden layer of {cfg['hidden']} units "
            f"(P = {h['hidden: parameters P']}): {found}{agree}.")


def _neuron_text(h: dict[str, Any]) -> str:
    def at(t: int) -> str:
        return (f"{h[f'neuron t={t}: boundary z']:.6f} (output {h[f'neuron t={t}: output σ(z) at the boundary']:.4f}) "
                f"for t = {t}")

    off = sum(h[f"neuron t={t}: grid points off the measured boundary's side"] for t in (0, 1))
    side = ("every one of them beyond the boundary found by bisection" if off == 0 else
            f"{off} of them on the wrong side of the boundary found by bisection")
    theory = max(h[f"neuron t={t}: |boundary − theory ±ln 2|"] for t in (0, 1))
    return (f"(c) One sigmoid neuron, one sample x = 1, loss ½(σ(w + b) − t)²: the exact 2×2 Hessian had a negative "
            f"eigenvalue at {h['neuron t=0: grid points with negative curvature']} of {h['neuron: grid points']} "
            f"(w, b) grid points for t = 0 and {h['neuron t=1: grid points with negative curvature']} for t = 1, "
            f"{side}: z = w + b = {at(0)} and {at(1)}, within {theory:.1g} of ±ln 2: the loss curves downward once "
            "the output is past 2/3 towards the wrong label.")


def _slice_text(h: dict[str, Any], tol: float) -> str:
    def pair(model: str, direction: str) -> str:
        return (f"dᵀHd = {h[f'slice {model} {direction}: dᵀHd']:.3g}, midpoint violation "
                f"{h[f'slice {model} {direction}: midpoint violation / loss scale']:.2g} of the loss")

    lin = max(h[f"slice linear {d}: midpoint violation / loss scale"] for d in DIRECTIONS)
    bottom = h["slice linear bottom: dᵀHd"]
    null = (f"its bottom eigenvector is a null direction (dᵀHd = {bottom:.2g}), along which the risk is flat"
            if abs(bottom) <= tol * h["slice linear top: dᵀHd"] else
            f"along its bottom eigenvector dᵀHd = {bottom:.3g}")
    lin_said = (f"the linear model's {len(DIRECTIONS)} slices are convex (largest midpoint violation "
                f"{lin:.2g} of the loss, rounding; {null})" if h["slice linear: slices with a midpoint violation"] == 0
                else f"the linear model's slices show a midpoint violation of {lin:.2g} of the loss")
    def bent(model: str) -> str:
        k = h[f"slice {model}: slices with a midpoint violation"]
        which = f" ({h[f'slice {model}: directions with a midpoint violation']})" if 0 < k < len(DIRECTIONS) else ""
        return f"{_count(k, len(DIRECTIONS))}{which}"

    return (f"Slices L(θ + s·d) through the trained points and the neuron's most concave grid point: {lin_said}. "
            f"Of the hidden network's slices {bent('hidden')} have a midpoint above the chord; along its bottom "
            f"eigenvector {pair('hidden', 'bottom')} (random direction: {pair('hidden', 'random')}). Of the neuron's "
            f"{bent('neuron')}; along its bottom eigenvector {pair('neuron', 'bottom')}. The second differences of "
            f"the measured slices at s = 0 matched dᵀHd to {h[FD_KEY]:.2g} of each model's largest curvature.")


def _ce_text(h: dict[str, Any]) -> str:
    below = h["ce: grid points where ℓ < the 0-1 loss"]
    return (f"Figure 2 of the notes, measured with BCELoss in bits on {h['ce: grid points']} values of p: "
            f"ℓ(1, ½) = {h['ce: ℓ(1, ½) bits']:.17g} and ℓ(0, ½) = {h['ce: ℓ(0, ½) bits']:.17g} bits; "
            f"max |ℓ(1, p) − ℓ(0, 1 − p)| = {h['ce: max |ℓ(1, p) − ℓ(0, 1 − p)| bits']:.2g}; ℓ(1, 2^−k) = k bits to "
            f"{h['ce: max |ℓ(1, 2^−k) − k| bits']:.2g} for k up to {h['ce: tail k up to']} (unbounded as p → 0); "
            f"nablanet.info's binary cross-entropy agrees to {h['ce: max |BCELoss − nablanet.info| bits']:.2g}; and "
            + ("the loss is at least the 0-1 loss at every grid point (an upper bound on the errors it proxies)."
               if below == 0 else f"the loss is below the 0-1 loss at {below} grid points."))


def verdict(records: Records, cfg: dict[str, Any]) -> Verdict:
    """(a), (b), (c), the slices and the cross-entropy curves, in that order, with the numbers they rest on."""
    h = numbers(records, cfg)
    parts = (_linear_text(h, cfg), _hidden_text(h, cfg), _neuron_text(h), _slice_text(h, cfg["tol"]), _ce_text(h))
    text = " ".join(parts)
    return Verdict(text, h)


def answer(records: Records, cfg: dict[str, Any]) -> Answer:
    """Convex for the linear model, how often and how negative for the hidden layer, and the neuron in words."""
    h = numbers(records, cfg)
    lin = ("curved downward nowhere: at every point tried its Hessian had no negative eigenvalue beyond rounding"
           if h["linear: points with negative curvature"] == 0 else
           "showed negative eigenvalues at some points, against the proof (see the verdict)")
    k, n = h["hidden: points with negative curvature"], h["hidden: points tried"]
    hid = (f"Lanczos found negative eigenvalues at {_count(k, n)} points tried (down to λ_min/λ_max = "
           f"{h['hidden: most negative λ_min/λ_max']:.2f})" if k else "Lanczos found no negative eigenvalue at the "
           "points tried")
    neg = h["neuron t=0: grid points with negative curvature"] + h["neuron t=1: grid points with negative curvature"]
    neu = ("the quadratic loss on a single sigmoid neuron is concave wherever its output leans past two thirds "
           "towards the wrong label" if neg else "the single sigmoid neuron showed no negative curvature on its grid")
    text = f"The cross-entropy risk of a linear softmax classifier {lin}. With one hidden layer {hid}, and {neu}."
    return Answer(text, "spectra")


# -- figures ------------------------------------------------------------------------------------------------
COLORS = {"linear": "C0", "hidden": "C3", "neuron": "C2"}


def figures(records: Records, cfg: dict[str, Any]) -> dict[str, Figure]:
    """The spectra (the answer's figure), the slices and the notes' Figure 2, all from the rows."""
    rows = records.rows
    return {
        "spectra": Figure(_spectra_figure(rows, cfg), "Left: λ_min/λ_max of the Hessian at every point tried (circles: "
                          "along gradient descent, squares: random points), on a symmetric-log axis whose linear band "
                          "is the tolerance; the linear model's values are rounding, the hidden layer's are negative. "
                          "Middle: the whole dense spectrum at each network's trained point, divided by λ_max. Right: "
                          "the single sigmoid neuron's curvature (the one non-zero eigenvalue of its exact 2×2 "
                          "Hessian) at every (w, b) grid point against z = w + b, with the boundaries found by "
                          "bisection."),
        "slices": Figure(_slices_figure(rows, cfg), "The measured loss along lines θ + s·d through each model's point, "
                         "minus its value at s = 0 and divided by its largest magnitude on the line (so that the "
                         "shape shows; a line along which the loss changes by rounding only is drawn undivided and "
                         "marked flat), for d the bottom and top eigenvectors of the Hessian there and a random unit "
                         "direction. A convex loss has convex slices; a slice that bends down anywhere proves the loss "
                         "is not convex."),
        "cross_entropy": Figure(_ce_figure(rows), "The notes' Figure 2 from BCELoss: left, the domain {0, 1} × [0, 1]; "
                                "middle, ℓ(1, p) and ℓ(0, p) in bits, meeting at 1 bit at p = ½, with the 0-1 loss "
                                "they stand in for and the quadratic loss (p − y)²; right, ℓ(1, p) against p on a "
                                "logarithmic axis: one more bit per halving of p, without bound."),
    }


def _spectra_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    plt = pyplot()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.6))
    for kind in NETWORKS:
        pts = _part(rows, "point", model=kind)
        for how, marker in (("training", "o"), ("random", "s")):
            mine = [r for r in pts if r["kind"] == how]
            ax1.scatter([r["point"] for r in mine], [r["ratio"] for r in mine], marker=marker, color=COLORS[kind],
                        label=f"{kind}, {how}")
        spectrum = np.array([r["eigenvalue"] for r in _part(rows, "spectrum", model=kind)])
        if spectrum.size:
            ax2.plot(np.arange(spectrum.size) / max(spectrum.size - 1, 1), spectrum / spectrum.max(), ".",
                     color=COLORS[kind], label=f"{kind} (P = {spectrum.size})")
    for ax in (ax1, ax2):
        _symlog(ax, cfg["tol"])
        ax.axhline(0, color="k", lw=0.6)
        ax.legend(fontsize=7)
    ax1.set(xlabel="point (training run first, then random)", ylabel="λ_min / λ_max",
            title=f"smallest eigenvalue per point (grey: |ratio| ≤ tol = {cfg['tol']:g})")
    ax2.set(xlabel="rank / (P − 1)", ylabel="eigenvalue / λ_max", title="the dense spectrum at the trained point")
    for t, color in ((0.0, "C2"), (1.0, "C4")):
        grid = _part(rows, "neuron", target=t)
        ax3.scatter([r["z"] for r in grid], [r["trace"] for r in grid], s=6, color=color, label=f"target t = {t:g}")
        ax3.axvline(_part(rows, "boundary", target=t)[0]["z"], color=color, ls="--", lw=1)
    ax3.axhline(0, color="k", lw=0.6)
    ax3.set(xlabel="z = w + b", ylabel="non-zero eigenvalue of the 2×2 Hessian",
            title="one neuron, ½(σ(z) − t)²: concave past the dashed lines")
    ax3.legend(fontsize=7)
    fig.suptitle("Does the Hessian of the risk have a negative eigenvalue anywhere?")
    fig.tight_layout()
    return fig


def _symlog(ax: Any, tol: float) -> None:
    """A symmetric-log y axis, linear within ±tol (shaded), with a tick per three decades in plain text (fast:
    matplotlib's default labels go through its TeX parser, one per decade)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    ax.set_yscale("symlog", linthresh=tol)
    top = max(1.0, abs(ax.get_ylim()[1]))
    decades = np.arange(0, math.floor(math.log10(tol)) - 1, -3)
    ticks = sorted({0.0, *(-(10.0**decades)), *(10.0**decades[10.0**decades <= top])})
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(FixedLocator([]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.axhspan(-tol, tol, color="0.85", zorder=0)


def _slices_figure(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    titles = {"linear": "(a) linear softmax, trained point", "hidden": f"(b) {cfg['activation']} hidden layer, "
              "trained point", "neuron": "(c) one sigmoid neuron, most concave grid point"}
    for ax, model in zip(axes, titles, strict=True):
        for i, direction in enumerate(DIRECTIONS):
            mine = _part(rows, "slice", model=model, direction=direction)
            summary = _part(rows, "slice_summary", model=model, direction=direction)[0]
            change = np.array([r["change"] for r in mine])
            level = np.abs(change).max() <= cfg["tol"] * summary["loss_scale"]  # rounding only: drawn as it is
            ax.plot([r["s"] for r in mine], change if level else change / np.abs(change).max(), color=f"C{i}",
                    label=f"{direction} (dᵀHd = {summary['curvature']:.3g}{', flat' if level else ''})")
        ax.axhline(0, color="k", lw=0.6)
        ax.set(xlabel="s", ylabel="(L(θ + s·d) − L(θ)) / its largest |value|", title=titles[model])
        ax.legend(fontsize=7)
    fig.suptitle("Does the loss bend downward along a line through the point?")
    fig.tight_layout()
    return fig


def _ce_figure(rows: list[dict[str, Any]]) -> Any:
    plt = pyplot()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.4), gridspec_kw={"width_ratios": [1, 2, 2]})
    style = {1: ("C0", "ℓ(1, p) = −log₂ p"), 0: ("C1", "ℓ(0, p) = −log₂(1 − p)")}
    for y, (color, label) in style.items():
        mine = _part(rows, "ce", label=y)
        p = [r["p"] for r in mine]
        ax1.plot(p, [y] * len(p), color=color, lw=4, label=f"y = {y}")
        ax2.plot(p, [r["bits"] for r in mine], color=color, lw=2, label=label)
        ax2.step(p, [r["zero_one"] for r in mine], where="mid", color=color, ls=":", label=f"0-1 loss, y = {y}")
        ax2.plot(p, [r["quadratic"] for r in mine], color=color, ls="--", lw=1, label=f"(p − y)², y = {y}")
    half = next(r for r in _part(rows, "ce", label=1) if r["p"] == 0.5)
    ax2.plot([0.5], [half["bits"]], "ko", label=f"ℓ(1, ½) = ℓ(0, ½) = {half['bits']:g} bit")
    ax1.set(xlabel="p (score of the hypothesis y = 1)", ylabel="y", yticks=[0, 1], ylim=(-0.5, 1.5),
            title="the domain {0, 1} × [0, 1]")
    ax1.legend(fontsize=7)
    ax2.set(xlabel="p", ylabel="loss (bits for the cross-entropy)", ylim=(0, 5),
            title="cross-entropy and what it proxies")
    ax2.legend(fontsize=7, loc="upper center")
    tail = [r for r in _part(rows, "ce", label=1) if r["p"] <= 0.5]
    ax3.plot([r["p"] for r in tail], [r["bits"] for r in tail], color="C0", marker=".", ms=3)
    ax3.set(xscale="log", xlabel="p (log scale)", ylabel="ℓ(1, p) bits", title="unbounded as p → 0")
    fig.suptitle("What does the two-class cross-entropy charge, in bits, against the 0-1 loss it stands in for?")
    fig.tight_layout()
    return fig


def _check(cfg: dict[str, Any]) -> None:
    if 8 % cfg["pool"]:
        raise ValueError(f"pool={cfg['pool']}: expected 1, 2, 4 or 8 (it must divide the digits' 8×8 pixels). "
                         "Fix: --set pool=2.")
    if cfg["train_points"] > cfg["epochs"]:
        raise ValueError(f"train_points={cfg['train_points']} exceeds epochs={cfg['epochs']}: expected at most one "
                         f"point per epoch. Fix: --set train_points={cfg['epochs']}.")
    if cfg["slice_steps"] % 2 == 0:
        raise ValueError(f"slice_steps={cfg['slice_steps']}: expected an odd number, so that s = 0 is on the grid. "
                         f"Fix: --set slice_steps={cfg['slice_steps'] + 1}.")


STUDY = register(Study(
    name="convexity",
    question="Is the cross-entropy risk of a linear softmax classifier convex, does a hidden layer break that, and "
             "is the quadratic loss on a sigmoid neuron convex?",
    notes="Source notes 004, §2 (the cross-entropy loss as a proxy for the 0-1 loss, Figure 2, and the convexity of "
          "the resulting risk).",
    measure=measure, verdict=verdict, figures=figures, answer=answer, validate=_check,
    method="We compute the Hessian of the risk exactly, from Hessian-vector products: densely for the linear "
           "classifier (and check it against the formula that proves it positive semi-definite), by Lanczos for the "
           "network with a hidden layer, and as a 2×2 matrix for one sigmoid neuron, at random points of several "
           "scales and along a training run. Slices of the loss along eigenvectors give a second, derivative-free "
           "witness (a midpoint above the chord), and the two-class cross-entropy curves are measured from the loss.",
    checks={"activation": Check(choices=("tanh", "relu")), "classes": Check(low=2, high=10),
            "pool": Check(low=1, high=8), "tol": Check(low=0, low_open=True, high=1e-3),
            "slice_steps": Check(low=5), "neuron_grid": Check(low=2),
            **dict.fromkeys(("n_train", "train_points", "points_per_scale", "dense_max"), AT_LEAST_ONE),
            **dict.fromkeys(("scales", "slice_radius", "neuron_radius"), POSITIVE)},
    quick={"seed": 0, "classes": 3, "pool": 2, "n_train": 300, "hidden": 8, "activation": "tanh",
           "scales": [0.1, 1.0, 10.0], "points_per_scale": 2, "epochs": 40, "train_points": 3, "lr": 0.5,
           "tol": 1e-9, "dense_max": 400, "slice_radius": 2.0, "slice_steps": 41, "neuron_radius": 4.0,
           "neuron_grid": 15},
    full={"seed": 0, "classes": 10, "pool": 1, "n_train": 2000, "hidden": 16, "activation": "tanh",
          "scales": [0.1, 0.3, 1.0, 3.0, 10.0], "points_per_scale": 3, "epochs": 300, "train_points": 6, "lr": 0.5,
          "tol": 1e-9, "dense_max": 1500, "slice_radius": 2.0, "slice_steps": 81, "neuron_radius": 4.0,
          "neuron_grid": 41},
))
