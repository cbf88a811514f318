"""Study ``loss-gradients``: how the per-sample gradients of cross-entropy and of the quadratic loss on
softmax outputs are related, layer by layer, and whether the quadratic one dies out in training
(source notes 000: "if ‖∂L_CE/∂W‖ > r, what about ‖∂L_quad/∂W‖?", and 002: "does the cost function
change the training of the earlier layers, or only of the output layer?").

Setting. A ReLU MLP with logits zₙ = f(xₙ; W) (n sample, c class, C classes), p = softmax(z),
q = onehot(y), last hidden activation hₙ, so zₙ = W_out hₙ + b_out. Three losses on the same network
(same initialization, data and batch order), each per sample ℓₙ:

    CE     ℓₙ = −log p_{n,yₙ}             ∂ℓₙ/∂zₙ = pₙ − qₙ  =: eₙ
    quad   ℓₙ = ½‖pₙ − qₙ‖²               ∂ℓₙ/∂zₙ = J(pₙ) eₙ,   J(p) = diag(p) − p pᵀ   (the softmax Jacobian)
    MSE    ℓₙ = (1/C)‖σ(zₙ) − qₙ‖²        ∂ℓₙ/∂zₙ = (2/C)(σ(zₙ) − qₙ) ⊙ σ′(zₙ),  σ′ ≤ ¼

(nn.CrossEntropyLoss on z; nn.Softmax(dim=-1) + nn.QuadraticLoss; nn.Sigmoid + nn.MSELoss.)

The output layer, analytically. J(p) is symmetric positive semi-definite with J1 = 0; by
Gershgorin every eigenvalue is at most maxᵢ [pᵢ(1 − pᵢ) + pᵢ Σ_{j≠i} pⱼ] = maxᵢ 2pᵢ(1 − pᵢ) ≤ ½, so

    ‖∂ℓ_quad/∂zₙ‖ ≤ ‖J(pₙ)‖₂ ‖∂ℓ_CE/∂zₙ‖ ≤ ½ ‖∂ℓ_CE/∂zₙ‖        per sample, at the same weights.

The last layer's per-sample weight gradient is the outer product ∂ℓ/∂zₙ hₙᵀ, whose norm is
‖∂ℓ/∂W_out,ₙ‖ = ‖∂ℓ/∂zₙ‖ ‖hₙ‖ (closed form; hₙ does not depend on the loss), so the same bound
carries over to W_out: ‖∂ℓ_quad/∂W_out,ₙ‖ / ‖∂ℓ_CE/∂W_out,ₙ‖ = ‖J eₙ‖/‖eₙ‖ ≤ ‖J(pₙ)‖₂ ≤ ½.
At uniform p (initialization with small logits) J = (1/C)(I − 11ᵀ/C) acts as 1/C on the sum-zero
vectors e lives in, so the ratio is 1/C. Near the correct vertex, p_y = 1 − δ with the rest
s = Σ_{c≠y} p_c² ∈ [δ²/(C − 1), δ²]: (J e)_y = −(1 − δ)(δ² + s) and (J e)_c = p_c(p_c + δ − δ² − s), so
to first order ‖J e‖/‖e‖ runs from δ·C/(C − 1) (the rest spread evenly) to 2δ (the rest on one class):
the ratio shrinks like 1 − p_y as training saturates p, the quadratic gradient ~ (1 − p_y)² against
CE's ~ (1 − p_y). For a sample saturated at a wrong class ‖e‖ → √2 while ‖J e‖ → 0. There is no
reverse bound (note 000's question 1): ‖∂ℓ_CE‖ > r forces nothing on ‖∂ℓ_quad‖ beyond ≥ 0, since
J(p) → 0 at every vertex, unless p is assumed away from them: J = diag(p) − ppᵀ is a rank-one downdate of
diag(p), so its eigenvalues interlace with the sorted p_c; the smallest is 0 (eigenvector 1) and the other
C − 1, whose eigenvectors span the sum-zero vectors e lives in, lie in [p_min, p_max]. Hence
p_min‖e‖ ≤ ‖J(p)e‖ ≤ min(p_max, ½)‖e‖ and ‖∂ℓ_quad/∂zₙ‖ ≥ min_c p_{n,c} ‖∂ℓ_CE/∂zₙ‖ (and for W_out).

Question 2 (does the quadratic gradient die out?). With δ = 1 − p_y ≤ ½: ‖e‖ ∈ [δ, √2 δ] and by Gershgorin
‖J‖₂ ≤ maxᵢ 2pᵢ(1 − pᵢ) ≤ 2δ, so ‖∂ℓ_quad/∂z‖ ≤ 2√2 δ² against CE's ≥ δ: both vanish as training fits a
sample, the quadratic one like δ². On a sample misclassified with p_max ≥ ½ the same bound gives
‖∂ℓ_quad/∂z‖ ≤ 2√2(1 − p_max) while ‖∂ℓ_CE/∂z‖ ≥ 1 − p_y ≥ p_max: saturated at a wrong class, the quadratic
gradient vanishes too, wrongly. The seed runs measure both on the training set.

Earlier layers. Backpropagation gives δˡₙ = Aˡₙ ∂ℓ/∂zₙ with Aˡₙ = (∂zₙ/∂(pre-activation of layer l))ᵀ,
a product of weights and ReLU masks that does not depend on the loss; the per-sample weight gradient
is δˡₙ (h^{l−1}ₙ)ᵀ. Hence the per-sample ratio in layer l is ‖Aˡₙ J eₙ‖ / ‖Aˡₙ eₙ‖: equal to the
output layer's ratio when J acts as a scalar on eₙ (as at initialization), otherwise different, and
not bounded by ½ in general (Aˡ may shrink eₙ more than J eₙ). The study measures both along the
same trajectory (both losses' per-sample gradients evaluated at the same weights and samples), and
sweeps depth L and width m to see whether the ratio is the same in every layer (the loss rescales
the backpropagated signal uniformly) or only the output layer's gradient changes.

Seeds. Every claim about training rests on ``seeds`` runs (seed, seed + 1, …: initialization and batch
order; same split, shared lr) and is reported as mean ± std with the range (``_guard.over_seeds``), or
says on how many seeds it holds. Each seed trains each loss to ``epochs`` and CE and quad on to
``long_epochs``; along the way the CE and quad runs keep the output layer's median ratio, ‖∂ℓ/∂W_out‖,
‖J(p)‖₂ and p_min on the probe set every ``probe_every`` steps up to ``epochs`` (closed form, from the
logits and hₙ), and every run the batch ‖∇L‖ every ``record_every`` steps (the rise and fall of the
quadratic gradient: its last tenth against its first and its largest tenth). The (L, m) sweep runs
on every seed. The run of seed ``seed`` is also probed layer by layer through backprop (all three
losses, every probe sample): the figures draw it, and the verdict quotes its numbers as that one
seed's.

Records (one row per measurement): ``part="train"`` the Recorder rows of each run of seed ``seed`` (its
own loss: per-layer ‖∂L/∂θ‖ and per-sample norm mean/std/max); ``part="probe"`` one row per trajectory,
step, probe sample and layer with the three losses' per-sample norms at those weights (layer "z": the
logit gradients ‖∂ℓ/∂zₙ‖, with ‖J(pₙ)‖₂ and the analytic ‖J(pₙ)(pₙ − qₙ)‖, ``Je_norm``);
``part="check"`` the analytic-vs-backprop checks; ``part="test"`` the test accuracy of each run;
``part="sweep"`` the per-layer ratios over (seed, L, m); ``part="seed"`` one row per seed, loss and
checkpoint (``epochs`` and, for CE and quad, ``long_epochs``): updates done, test/train accuracy,
``probe_medians`` and, for CE at ``epochs``, the per-sample spread of the ratio over the layers;
``part="path"`` the CE and quad runs' ``probe_medians`` per seed and step up to ``epochs``;
``part="seed_grad"`` the batch ‖∇L‖ per seed, loss and recorded step; ``part="sample"`` per training
sample at ``long_epochs`` (CE and quad runs): both losses' ‖∂ℓ/∂zₙ‖, p_y, p_max, correct. The verdict
and the figures read these rows only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import nablanet as nn
from nablanet.layers.softmax import softmax
from nablanet.losses.base import Loss
from nablanet.studies._guard import did_not_learn, learned, over_seeds
from nablanet.studies.base import Answer, Figure, Records, Study, Verdict, pyplot, register
from nablanet.studies.settings import POSITIVE, Check

LOSSES = ("ce", "quad", "mse")
LONG = ("ce", "quad")
"""The losses the seed runs train on to ``long_epochs`` and follow step by step: the pair the questions compare."""
LABELS = {"ce": "cross-entropy (softmax)", "quad": "½‖softmax − onehot‖²", "mse": "MSE (sigmoid)"}


# -- the network and its three heads ---------------------------------------------------------------
def relu_mlp(depth: int, width: int, n_in: int, n_out: int, seed: int) -> nn.Sequential:
    """L = ``depth`` hidden ReLU layers of ``width`` m (He-normal weights, zero biases) and a linear
    output layer (PyTorch's default uniform init), float64; the same ``seed`` gives the same weights."""
    if depth < 1 or width < 1:
        raise ValueError(f"relu_mlp(depth={depth}, width={width}): expected depth ≥ 1 and width ≥ 1")
    rng = np.random.default_rng(seed)
    layers: list[nn.Layer] = []
    fan = n_in
    for _ in range(depth):
        lin = nn.Linear(fan, width, rng=rng, dtype=np.float64)
        nn.init.kaiming_normal_(lin.weight, nonlinearity="relu", rng=rng)
        if lin.bias is not None:
            nn.init.zeros_(lin.bias)
        layers += [lin, nn.ReLU()]
        fan = width
    layers.append(nn.Linear(fan, n_out, rng=rng, dtype=np.float64))
    return nn.Sequential(*layers)


def with_head(body: nn.Sequential, loss_name: str) -> tuple[nn.Sequential, Loss]:
    """The model and loss for ``loss_name``: the logits model with CE, or the same layer objects
    (shared parameters, same names) followed by Softmax or Sigmoid."""
    if loss_name == "ce":
        return body, nn.CrossEntropyLoss()
    if loss_name == "quad":
        return nn.Sequential(*body, nn.Softmax(dim=-1)), nn.QuadraticLoss()
    if loss_name == "mse":
        return nn.Sequential(*body, nn.Sigmoid()), nn.MSELoss()
    raise ValueError(f"loss {loss_name!r}: expected one of {list(LOSSES)}")


def target_for(loss_name: str, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Class indices for CE, one-hot rows q for the quadratic and MSE losses."""
    return y if loss_name == "ce" else np.eye(n_classes)[y]


def weight_names(body: nn.Sequential) -> list[str]:
    """State-dict names of the Linear weights, first layer to output layer."""
    return [f"{i}.weight" for i, layer in enumerate(body) if isinstance(layer, nn.Linear)]


def softmax_jacobian(p: np.ndarray) -> np.ndarray:
    """J(pₙ) = diag(pₙ) − pₙ pₙᵀ for every row of p (N, C) → (N, C, C), symmetric."""
    return p[:, :, None] * np.eye(p.shape[1]) - p[:, :, None] * p[:, None, :]


def logit_stats(z: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Per sample, from the logits z (N, C) alone: ‖eₙ‖ = ‖∂ℓ_CE/∂zₙ‖ with eₙ = pₙ − qₙ, ‖J(pₙ)eₙ‖ =
    ‖∂ℓ_quad/∂zₙ‖, ‖J(pₙ)‖₂ (largest eigenvalue), p_y, the smallest and largest p_c, and whether the
    argmax is yₙ."""
    p = softmax(z, axis=-1)
    e = p - np.eye(z.shape[1])[y]
    jac = softmax_jacobian(p)
    return {"e_norm": np.linalg.norm(e, axis=1), "Je_norm": np.linalg.norm(np.einsum("nij,nj->ni", jac, e), axis=1),
            "J_norm": np.linalg.eigvalsh(jac)[:, -1], "p_y": p[np.arange(len(y)), y], "p_min": p.min(axis=1),
            "p_max": p.max(axis=1), "correct": z.argmax(axis=1) == y}


def probe(body: nn.Sequential, x: np.ndarray, y: np.ndarray, n_classes: int,
          losses: tuple[str, ...] = LOSSES) -> dict[str, np.ndarray]:
    """At the current weights, for the same samples: per-sample ‖∂ℓₙ/∂W‖ of every Linear weight under
    each of ``losses`` (``{loss}_W`` (layers, N), by the lab's closed forms through backprop), the logit
    gradients ‖∂ℓₙ/∂zₙ‖ = ‖∂ℓₙ/∂b_out‖ (``{loss}_dz``), ‖hₙ‖ and the analytic ``logit_stats``."""
    names = weight_names(body)
    out_bias = names[-1].replace("weight", "bias")
    res: dict[str, np.ndarray] = {}
    for name in losses:
        model, loss = with_head(body, name)
        norms = nn.lab.per_sample_grad_norms(model, loss, x, target_for(name, y, n_classes))
        res[f"{name}_W"] = np.stack([norms[w] for w in names])
        res[f"{name}_dz"] = norms[out_bias]
    h = body[:-1](x)
    res["h_norm"] = np.linalg.norm(h, axis=1)
    return res | logit_stats(body[-1](h), y)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b elementwise, NaN where b = 0 (a sample whose CE gradient vanishes in a layer)."""
    return np.divide(a, b, out=np.full(np.shape(a), np.nan), where=b > 0)


Probes = list[tuple[int, dict[str, np.ndarray]]]
"""One trajectory's probes: (number of updates done, what ``probe`` returned), in step order."""


class _Probe(nn.callbacks.Callback):
    """Runs ``probe`` on a fixed set of samples at step 0 and after every ``every`` updates (and at the
    end), keeping (number of updates done, result)."""

    def __init__(self, body: nn.Sequential, x: np.ndarray, y: np.ndarray, n_classes: int, every: int) -> None:
        self.body, self.x, self.y, self.n_classes, self.every = body, x, y, n_classes, every
        self.results: Probes = []
        self._done = 0

    def _take(self, step: int) -> None:
        if not self.results or self.results[-1][0] != step:
            self.results.append((step, probe(self.body, self.x, self.y, self.n_classes)))

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self._take(0)

    def on_batch_end(self, step: int, logs: dict[str, Any], tape: nn.Tape) -> None:
        self._done = step + 1
        if self._done % self.every == 0:
            self._take(self._done)

    def on_train_end(self, logs: dict[str, Any]) -> None:
        self._take(self._done)


def _probe_rows(trajectory: str, results: Probes) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for step, r in results:
        n_layers, n = r["ce_W"].shape
        for i in range(n):
            base = {"part": "probe", "trajectory": trajectory, "step": step, "sample": i,
                    "correct": bool(r["correct"][i])}
            for layer in range(n_layers):
                ce, quad = float(r["ce_W"][layer, i]), float(r["quad_W"][layer, i])
                rows.append({**base, "layer": f"W{layer + 1}", "ce": ce, "quad": quad,
                             "mse": float(r["mse_W"][layer, i]), "ratio": quad / ce if ce > 0 else float("nan")})
            ce, quad = float(r["ce_dz"][i]), float(r["quad_dz"][i])
            rows.append({**base, "layer": "z", "ce": ce, "quad": quad, "mse": float(r["mse_dz"][i]),
                         "ratio": quad / ce if ce > 0 else float("nan"), "J_norm": float(r["J_norm"][i]),
                         "h_norm": float(r["h_norm"][i]), "p_y": float(r["p_y"][i]),
                         "p_min": float(r["p_min"][i]), "p_max": float(r["p_max"][i]),
                         "Je_norm": float(r["Je_norm"][i])})
    return rows


# -- the parts -------------------------------------------------------------------------------------
def _train(loss_name: str, cfg: dict[str, Any], data: tuple[np.ndarray, ...], probe_set: tuple[np.ndarray, np.ndarray]
           ) -> tuple[nn.Sequential, nn.lab.Recorder, _Probe | None, float]:
    """Train the main network with ``loss_name`` from the shared initialization (seed) with the shared
    batch order (fit's seed); Recorder rows every ``record_every`` steps; probes along the trajectory."""
    x, y, xt, yt = data
    body = relu_mlp(cfg["depth"], cfg["width"], x.shape[1], 10, cfg["seed"])
    model, loss = with_head(body, loss_name)
    rec = nn.lab.Recorder(every=cfg["record_every"], quantities=["loss", "grad_norm", "per_sample_grad_norm"])
    callbacks: list[nn.callbacks.Callback] = [rec]
    tracker = None
    if loss_name in cfg["trajectories"]:
        tracker = _Probe(body, probe_set[0], probe_set[1], 10, cfg["probe_every"])
        callbacks.append(tracker)
    nn.fit(model, loss, nn.optim.SGD(model.parameters(), lr=cfg["lr"]), train=(x, target_for(loss_name, y, 10)),
           epochs=cfg["epochs"], batch_size=cfg["batch_size"], seed=cfg["seed"], callbacks=callbacks)
    accuracy = float(np.mean(body(xt).argmax(axis=1) == yt))
    return body, rec, tracker, accuracy


def _closed_form_check(body: nn.Sequential, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Backprop's materialized per-sample gradients vs the analytic forms at the same weights:
    ∂ℓ/∂b_out = ∂ℓ/∂z (p − q for CE, J(p)(p − q) for quad) and ‖∂ℓ/∂W_out,ₙ‖ = ‖∂ℓ/∂zₙ‖‖hₙ‖.
    Returns the largest relative deviations."""
    names = weight_names(body)
    w_out, b_out = names[-1], names[-1].replace("weight", "bias")
    h = body[:-1](x)
    p = softmax(body[-1](h), axis=-1)
    e = p - np.eye(10)[y]
    analytic = {"ce": e, "quad": np.einsum("nij,nj->ni", softmax_jacobian(p), e)}
    out: dict[str, float] = {}
    for name, dz in analytic.items():
        model, loss = with_head(body, name)
        g = nn.lab.per_sample_grads(model, loss, x, target_for(name, y, 10))
        scale = np.linalg.norm(dz, axis=1) + 1e-300
        out[f"{name}: dz analytic vs backprop"] = float(np.max(np.linalg.norm(g[b_out] - dz, axis=1) / scale))
        closed = np.linalg.norm(dz, axis=1) * np.linalg.norm(h, axis=1)
        full = np.linalg.norm(g[w_out].reshape(len(x), -1), axis=1)
        out[f"{name}: ‖dW_out‖ closed form vs materialized"] = float(np.max(np.abs(full - closed) / (closed + 1e-300)))
    return out


def _sweep(cfg: dict[str, Any], x: np.ndarray, y: np.ndarray, probe_set: tuple[np.ndarray, np.ndarray]
           ) -> list[dict[str, Any]]:
    """For each seed (seed … seed + seeds − 1), depth L and width m: per-layer ratios quad/CE at the same
    weights, at initialization and after training with CE (median over the probe samples of the per-sample
    ratio, and the ratio of the probe batch's mean-gradient norms)."""
    rows: list[dict[str, Any]] = []
    for seed in range(cfg["seed"], cfg["seed"] + cfg["seeds"]):
        for depth in cfg["sweep_depths"]:
            for width in cfg["sweep_widths"]:
                rows += _sweep_cell({**cfg, "seed": seed}, depth, width, x, y, probe_set)
    return rows


def _sweep_cell(cfg: dict[str, Any], depth: int, width: int, x: np.ndarray, y: np.ndarray,
                probe_set: tuple[np.ndarray, np.ndarray]) -> list[dict[str, Any]]:
    """One (seed, L, m) of ``_sweep``: one row per stage and layer."""
    xp, yp = probe_set
    rows: list[dict[str, Any]] = []
    body = relu_mlp(depth, width, x.shape[1], 10, cfg["seed"])
    for stage in ("init", "trained"):
        if stage == "trained":
            model, loss = with_head(body, "ce")
            nn.fit(model, loss, nn.optim.SGD(model.parameters(), lr=cfg["lr"]), train=(x, y),
                   epochs=cfg["sweep_epochs"], batch_size=cfg["batch_size"], seed=cfg["seed"])
        r = probe(body, xp, yp, 10, losses=LONG)
        ratios = _ratio(r["quad_W"], r["ce_W"])
        batch = {}
        for name in LONG:
            model, loss = with_head(body, name)
            gn = nn.lab.grad_norms(model, loss, xp, target_for(name, yp, 10))
            batch[name] = np.array([gn[w] for w in weight_names(body)])
        accuracy = float(np.mean(body(xp).argmax(axis=1) == yp))
        for layer in range(depth + 1):
            rows.append({"part": "sweep", "seed": cfg["seed"], "depth": depth, "width": width, "stage": stage,
                         "layer": layer + 1, "output_layer": layer == depth,
                         "median_ratio": float(np.nanmedian(ratios[layer])),
                         "batch_ratio": float(batch["quad"][layer] / batch["ce"][layer]),
                         "ce_median": float(np.median(r["ce_W"][layer])),
                         "quad_median": float(np.median(r["quad_W"][layer])),
                         "probe_accuracy": accuracy})
    return rows


# -- seeds: accuracy at a shared rate, and whether the gradients die out ----------------------------
BOUND_RTOL = 1e-6
"""Relative slack of a bound checked on measured gradients (backprop matches the analytic form to ~1e-9)."""
DELTA_MIN = 1e-6
"""Samples with 1 − p_y (or 1 − p_max) below this are left out of the rate checks: 1 − p in float64 has
lost its digits there."""


def probe_medians(body: nn.Sequential, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The output layer at the current weights in closed form (‖∂ℓ/∂W_out,ₙ‖ = ‖∂ℓ/∂zₙ‖‖hₙ‖, no backprop):
    medians over the samples of the ratio quad/CE, of both losses' ‖∂ℓ/∂W_out,ₙ‖, of ‖J(pₙ)‖₂ and of p_min."""
    h = body[:-1](x)
    s, h_norm = logit_stats(body[-1](h), y), np.linalg.norm(h, axis=1)
    return {"probe_median_ratio": float(np.nanmedian(_ratio(s["Je_norm"], s["e_norm"]))),
            "probe_median_ce_W_out": float(np.median(s["e_norm"] * h_norm)),
            "probe_median_quad_W_out": float(np.median(s["Je_norm"] * h_norm)),
            "probe_median_J_norm": float(np.median(s["J_norm"])), "probe_median_p_min": float(np.median(s["p_min"]))}


def layer_spread(w_ratio: np.ndarray) -> np.ndarray:
    """Per sample, max/min over the layers of the per-sample ratio quad/CE (``w_ratio`` (layers, N))."""
    return np.nanmax(w_ratio, axis=0) / np.nanmin(w_ratio, axis=0)


def _lengths(name: str, cfg: dict[str, Any]) -> list[int]:
    """The checkpoints (epochs) of a seed run with loss ``name``: ``epochs``, and ``long_epochs`` for ``LONG``."""
    return sorted({cfg["epochs"], cfg["long_epochs"]}) if name in LONG else [cfg["epochs"]]


class _Checkpoints(nn.callbacks.Callback):
    """For a ``LONG`` loss, one ``part="path"`` row (``probe_medians``) at step 0 and after every ``every``
    updates until the end of epoch ``at[0]``. At the end of each epoch in ``at``: one ``part="seed"`` row
    (updates done, test and train accuracy, ``probe_medians``, training-set medians of ``logit_stats``; for CE
    at ``at[0]`` also the per-sample spread of the ratio over the layers); at the last, one ``part="sample"``
    row per training sample with its logit-gradient norms under both losses at these weights."""

    def __init__(self, body: nn.Sequential, tags: dict[str, Any], data: tuple[np.ndarray, ...],
                 probe_set: tuple[np.ndarray, np.ndarray], at: list[int], every: int) -> None:
        self.body, self.tags, self.data, self.probe_set, self.at, self.every = body, tags, data, probe_set, at, every
        self.rows: list[dict[str, Any]] = []
        self._done, self._path_open = 0, tags["loss"] in LONG

    def _path(self) -> None:
        if self._path_open and not (self.rows and self.rows[-1]["step"] == self._done):
            medians = probe_medians(self.body, *self.probe_set)
            self.rows.append({"part": "path", **self.tags, "step": self._done, **medians})

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self._path()

    def on_batch_end(self, step: int, logs: dict[str, Any], tape: nn.Tape) -> None:
        self._done = step + 1
        if self._done % self.every == 0:
            self._path()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if epoch + 1 not in self.at:
            return
        if epoch + 1 == self.at[0]:
            self._path()
            self._path_open = False
        x, y, xt, yt = self.data
        train = logit_stats(self.body(x), y)
        row = {"part": "seed", **self.tags, "epoch": epoch + 1, "steps": self._done,
               "test_accuracy": float(np.mean(self.body(xt).argmax(axis=1) == yt)),
               "train_accuracy": float(np.mean(train["correct"])), **probe_medians(self.body, *self.probe_set),
               "train_median_ce": float(np.median(train["e_norm"])),
               "train_median_quad": float(np.median(train["Je_norm"]))}
        if self.tags["loss"] == "ce" and epoch + 1 == self.at[0]:
            r = probe(self.body, *self.probe_set, 10, losses=LONG)
            spread = layer_spread(_ratio(r["quad_W"], r["ce_W"]))
            row |= {"layer_spread_median": float(np.nanmedian(spread)), "layer_spread_max": float(np.nanmax(spread))}
        self.rows.append(row)
        if epoch + 1 == max(self.at) and self.tags["loss"] in LONG:
            self.rows += [{"part": "sample", **self.tags, "epoch": epoch + 1, "sample": i,
                           "ce": float(train["e_norm"][i]), "quad": float(train["Je_norm"][i]),
                           "p_y": float(train["p_y"][i]), "p_max": float(train["p_max"][i]),
                           "correct": bool(train["correct"][i])}
                          for i in range(len(y))]


def _seed_runs(cfg: dict[str, Any], data: tuple[np.ndarray, ...], probe_set: tuple[np.ndarray, np.ndarray]
               ) -> list[dict[str, Any]]:
    """``seeds`` initializations and batch orders (seed, seed + 1, …) on the same split and rate: each loss
    to ``epochs``, the ``LONG`` pair on to ``long_epochs``, with ``_Checkpoints`` rows and the batch ‖∇L‖
    every ``record_every`` updates (``part="seed_grad"``, the Recorder's model-level ``grad_norm``)."""
    x, y = data[0], data[1]
    rows: list[dict[str, Any]] = []
    for seed in range(cfg["seed"], cfg["seed"] + cfg["seeds"]):
        for name in LOSSES:
            body = relu_mlp(cfg["depth"], cfg["width"], x.shape[1], 10, seed)
            model, loss = with_head(body, name)
            at = _lengths(name, cfg)
            marks = _Checkpoints(body, {"seed": seed, "loss": name}, data, probe_set, at, cfg["probe_every"])
            rec = nn.lab.Recorder(every=cfg["record_every"], quantities=["grad_norm"])
            nn.fit(model, loss, nn.optim.SGD(model.parameters(), lr=cfg["lr"]), train=(x, target_for(name, y, 10)),
                   epochs=max(at), batch_size=cfg["batch_size"], seed=seed, callbacks=[marks, rec])
            rows += marks.rows + [{"part": "seed_grad", "seed": seed, "loss": name, "step": r["step"],
                                   "grad_norm": r["value"]}
                                  for r in rec.to_records() if r["layer"] == "" and r["parameter"] == ""]
    return rows


# -- measure ---------------------------------------------------------------------------------------
def check_config(cfg: dict[str, Any]) -> None:
    """The trajectories probed must include CE's, the reference every ratio is read along."""
    if "ce" not in cfg["trajectories"] or not set(cfg["trajectories"]) <= set(LOSSES):
        raise ValueError(f"trajectories={cfg['trajectories']!r}: expected a list of losses from {list(LOSSES)} that "
                         "includes 'ce' (the reference trajectory). Fix: --set 'trajectories=[\"ce\", \"quad\"]'.")
    if cfg["long_epochs"] < cfg["epochs"]:
        raise ValueError(f"long_epochs={cfg['long_epochs']} < epochs={cfg['epochs']}: the seed runs train on past "
                         f"epochs to show what longer training does. Fix: --set long_epochs={4 * cfg['epochs']}.")


def measure(cfg: dict[str, Any]) -> Records:
    """Train the network of seed ``seed`` once per loss from the same start (Recorder rows, probes along the
    chosen trajectories, test accuracy), check the closed forms on the CE-trained net, sweep (L, m) on every
    seed, and run every seed (``_seed_runs``)."""
    splits = nn.data.load_digits(seed=cfg["seed"], dtype=np.float64)
    (x, y), (xt, yt) = splits.train, splits.test
    pick = np.random.default_rng(cfg["seed"]).choice(len(x), size=min(cfg["probe_size"], len(x)), replace=False)
    probe_set = (x[pick], y[pick])
    rows: list[dict[str, Any]] = []
    bodies: dict[str, nn.Sequential] = {}
    for name in LOSSES:
        bodies[name], recorder, tracker, accuracy = _train(name, cfg, (x, y, xt, yt), probe_set)
        rows += [{"part": "train", "loss": name, **r} for r in recorder.to_records()]
        rows.append({"part": "test", "loss": name, "test_accuracy": accuracy})
        if tracker is not None:
            rows += _probe_rows(name, tracker.results)
    checks = _closed_form_check(bodies["ce"], *probe_set)
    rows += [{"part": "check", "quantity": k, "value": v} for k, v in checks.items()]
    return Records(rows + _sweep(cfg, x, y, probe_set) + _seed_runs(cfg, (x, y, xt, yt), probe_set))


# -- reading the rows back -------------------------------------------------------------------------
def _trajectories(rows: list[dict[str, Any]]) -> dict[str, Probes]:
    """Each probed trajectory (in the order trained) as ``probe`` returned it step by step, rebuilt from
    the probe rows: {"ce_W": (layers, N), …, "ce_dz": (N,), …, "J_norm", "Je_norm", "h_norm", "p_y",
    "correct"}."""
    grouped: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for r in rows:
        if r["part"] == "probe":
            grouped.setdefault(r["trajectory"], {}).setdefault(r["step"], []).append(r)
    return {name: [(step, _probe_arrays(at)) for step, at in steps.items()] for name, steps in grouped.items()}


def _probe_arrays(at: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """One probe's rows (sample by sample, layers W1 … W_out then z) as arrays."""
    z = [r for r in at if r["layer"] == "z"]
    weights = dict.fromkeys(r["layer"] for r in at if r["layer"] != "z")  # W1 … W_out, in order
    res = {f"{loss}_W": np.array([[r[loss] for r in at if r["layer"] == w] for w in weights]) for loss in LOSSES}
    res |= {f"{loss}_dz": np.array([r[loss] for r in z]) for loss in LOSSES}
    res |= {key: np.array([r[key] for r in z]) for key in ("J_norm", "Je_norm", "h_norm", "p_y", "p_min", "p_max",
                                                                "correct")}
    return res


def _series(rows: list[dict[str, Any]], loss: str, quantity: str, parameter: str,
            layer: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``Recorder.series`` of the run trained with ``loss``, from its train rows."""
    picked = [r for r in rows if r["part"] == "train" and r["loss"] == loss and r["quantity"] == quantity
              and r["parameter"] == parameter and (layer is None or r["layer"] == layer)]
    return np.array([r["step"] for r in picked]), np.array([r["value"] for r in picked])


def _median_ratio(r: dict[str, np.ndarray], layer: int) -> float:
    """Median over the probe samples of the per-sample ratio quad/CE in ``layer`` (0-based)."""
    return float(np.nanmedian(_ratio(r["quad_W"][layer], r["ce_W"][layer])))


def _weight_ratios(probes: Probes) -> np.ndarray:
    """Per-sample ratios quad/CE of every Linear weight, (layers, samples × probes)."""
    return _ratio(np.concatenate([r["quad_W"] for _, r in probes], axis=-1),
                  np.concatenate([r["ce_W"] for _, r in probes], axis=-1))


# -- verdict ---------------------------------------------------------------------------------------
def verdict(records: Records, cfg: dict[str, Any]) -> Verdict:
    rows = records.rows
    traj = _trajectories(rows)
    h = {**_output_numbers(traj, rows), **_layer_numbers(traj["ce"]), **_trajectory_numbers(traj),
         **_training_numbers(rows), **_sweep_numbers(rows), **_seed_numbers(rows, cfg), **_path_numbers(rows),
         **_grad_numbers(rows, cfg)}
    sentences = [_bound_sentence(h), _lower_bound_sentence(h, cfg), _ce_trajectory_sentence(h, cfg),
                 _quad_trajectory_sentence(h, cfg), _growth_sentence(h, cfg), _vanishing_sentence(h, cfg),
                 _layers_sentence(h, _weight_ratios(traj["ce"])[:-1], cfg), _accuracy_sentence(h, cfg)]
    return Verdict(" ".join(sentences), h)


def _output_numbers(traj: dict[str, Probes], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The logit-gradient ratio against its bounds ½ and ‖J(p)‖₂, over every probe of every trajectory,
    and the analytic-vs-backprop checks."""

    def stacked(key: str) -> np.ndarray:
        return np.concatenate([r[key] for probes in traj.values() for _, r in probes], axis=-1)

    dz_ratio = _ratio(stacked("quad_dz"), stacked("ce_dz"))
    j_norm = stacked("J_norm")
    tight = _ratio(dz_ratio, j_norm)
    first, last = traj["ce"][0][1], traj["ce"][-1][1]
    # p_min‖e‖ ≤ ‖J e‖ ≤ min(p_max, ½)‖e‖ on sum-zero e (module docstring); the output weights' ratio is the
    # logits' (‖∂ℓ/∂W_out,ₙ‖ = ‖∂ℓ/∂zₙ‖‖hₙ‖), so one check covers both
    over_low = _ratio(dz_ratio, stacked("p_min"))
    under_high = dz_ratio / np.minimum(stacked("p_max"), 0.5)
    return {
        "lower bound: min ‖∂ℓ_quad/∂z‖ / (p_min ‖∂ℓ_CE/∂z‖) (≥ 1)": float(np.nanmin(over_low)),
        "lower bound: fraction of samples with ‖∂ℓ_quad/∂z‖ ≥ p_min ‖∂ℓ_CE/∂z‖": float(
            np.mean(over_low >= 1 - BOUND_RTOL)),
        "upper bound: max ‖∂ℓ_quad/∂z‖ / (min(p_max, ½) ‖∂ℓ_CE/∂z‖) (≤ 1)": float(np.nanmax(under_high)),
        "median p_min at init": float(np.median(first["p_min"])),
        "median p_min at end (CE)": float(np.median(last["p_min"])),
        "samples × probes checked (all trajectories)": int(dz_ratio.size),
        "max ‖∂ℓ_quad/∂z‖ / ‖∂ℓ_CE/∂z‖ (bound ½)": float(np.nanmax(dz_ratio)),
        "fraction of samples with ‖∂ℓ_quad/∂z‖ ≤ ½‖∂ℓ_CE/∂z‖": float(np.mean(dz_ratio <= 0.5 + 1e-12)),
        "max ‖∂ℓ_quad/∂z‖ / (‖J‖₂ ‖∂ℓ_CE/∂z‖) (sharpened bound 1)": float(np.nanmax(tight)),
        "median ‖∂ℓ_quad/∂z‖ / (‖J‖₂ ‖∂ℓ_CE/∂z‖)": float(np.nanmedian(tight)),
        "max ‖J(p)‖₂ observed": float(np.max(j_norm)),
        "median ‖J(p)‖₂ at init": float(np.median(first["J_norm"])),
        "median ‖J(p)‖₂ at end (CE)": float(np.median(last["J_norm"])),
        # backprop's ‖∂ℓ_quad/∂z‖ (the lab's norm of the output bias gradient) against the analytic ‖J(p)(p − q)‖
        "max rel. deviation backprop vs ‖J(p)(p − q)‖": float(np.max(
            np.abs(stacked("quad_dz") - stacked("Je_norm")) / (stacked("Je_norm") + 1e-300))),
        **{f"check {r['quantity']}": r["value"] for r in rows if r["part"] == "check"},
    }


def _layer_numbers(ce: Probes) -> dict[str, Any]:
    """Along the CE trajectory: each layer's per-sample ratio, its spread over one sample's layers,
    and the ratio near the correct vertex."""
    (_, first), (last_step, last) = ce[0], ce[-1]
    w_ratio = _weight_ratios(ce)
    n_layers = len(w_ratio)
    head: dict[str, Any] = {}
    for layer in range(n_layers):
        tag = "output W" if layer == n_layers - 1 else f"W{layer + 1}"
        head[f"{tag}: ratio quad/CE min over samples × steps"] = float(np.nanmin(w_ratio[layer]))
        head[f"{tag}: ratio quad/CE max over samples × steps"] = float(np.nanmax(w_ratio[layer]))
        head[f"{tag}: median ratio at step 0"] = _median_ratio(first, layer)
        head[f"{tag}: median ratio at step {last_step}"] = _median_ratio(last, layer)
    spread = layer_spread(w_ratio)
    head["per sample: max/min ratio over layers, median"] = float(np.nanmedian(spread))
    head["per sample: max/min ratio over layers, max"] = float(np.nanmax(spread))
    # near the correct vertex (p_y = 1 − δ) the ratio is δ·[C/(C − 1), 2] to first order in δ (docstring)
    sure = last["correct"] & (last["p_y"] > 0.9)
    vertex = _ratio(last["quad_dz"], last["ce_dz"])[sure] / (1 - last["p_y"][sure])
    head["end, correct with p_y > 0.9: samples"] = int(sure.sum())
    if sure.any():
        head["end, p_y > 0.9: min ratio/(1 − p_y) (first order: C/(C−1))"] = float(np.min(vertex))
        head["end, p_y > 0.9: max ratio/(1 − p_y) (first order: 2)"] = float(np.max(vertex))
    hidden = w_ratio[:-1]
    head["hidden layers: fraction of per-sample ratios ≤ ½"] = float(np.mean(hidden[np.isfinite(hidden)] <= 0.5))
    return head


def _trajectory_numbers(traj: dict[str, Probes]) -> dict[str, Any]:
    """The output layer's median ratio along the CE trajectory (its peak, the misclassified samples at
    the end) and along the quad trajectory when probed."""
    ce = traj["ce"]
    first, last = ce[0][1], ce[-1][1]
    out = len(first["ce_W"]) - 1
    out_path = [_median_ratio(r, out) for _, r in ce]
    peak = int(np.argmax(out_path))
    head: dict[str, Any] = {
        "CE trajectory: peak output median ratio": out_path[peak],
        "CE trajectory: step of the peak": ce[peak][0],
        "CE trajectory: median ‖∂ℓ_CE/∂W_out‖ end / start": float(np.median(last["ce_W"][-1])
                                                                   / np.median(first["ce_W"][-1])),
        "CE trajectory: median ‖∂ℓ_quad/∂W_out‖ end / start": float(np.median(last["quad_W"][-1])
                                                                     / np.median(first["quad_W"][-1])),
    }
    wrong = ~last["correct"]
    head["CE trajectory end: misclassified probe samples"] = int(wrong.sum())
    if wrong.any():
        head["CE trajectory end: median output ratio on misclassified"] = float(
            np.nanmedian(_ratio(last["quad_W"][-1][wrong], last["ce_W"][-1][wrong])))
    if "quad" in traj:
        q_first, q_last = traj["quad"][0][1], traj["quad"][-1][1]
        head["quad trajectory: output median ratio start"] = _median_ratio(q_first, out)
        head["quad trajectory: output median ratio end"] = _median_ratio(q_last, out)
        head["quad trajectory: median ‖J(p)‖₂ end"] = float(np.median(q_last["J_norm"]))
    return head


def _tenth_ratios(total: np.ndarray) -> tuple[float, float]:
    """The batch ‖∇L‖ averaged over the last tenth of the recorded steps against the first tenth's and against
    the largest tenth's (means over tenths smooth the mini-batch noise)."""
    k = max(1, len(total) // 10)
    tenths = np.array([np.mean(total[i : i + k]) for i in range(0, len(total) - k + 1, k)])
    return float(tenths[-1] / tenths[0]), float(tenths[-1] / tenths.max())


def _training_numbers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each loss's own training (the probed run, seed ``seed``): ``_tenth_ratios`` of the batch ‖∇L‖ and the
    test accuracy."""
    accuracy = {r["loss"]: r["test_accuracy"] for r in rows if r["part"] == "test"}
    head: dict[str, Any] = {}
    for name in LOSSES:
        first, top = _tenth_ratios(_series(rows, name, "grad_norm", parameter="", layer="")[1])
        head[f"own training {name}: ‖∇L‖ last/first tenth"] = first
        head[f"own training {name}: ‖∇L‖ last/largest tenth"] = top
        head[f"test accuracy {name}"] = accuracy[name]
    return head


def _sweep_numbers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Over the (L, m) sweep and its seeds: how far the median ratio (and the ratio of the batch-gradient
    norms) differs across the layers of one net, the largest factor per seed and over all."""
    cells: dict[tuple[str, int, int, int], list[dict[str, Any]]] = {}
    for r in rows:
        if r["part"] == "sweep":  # rows come layer by layer, first layer to output layer
            cells.setdefault((r["stage"], r["seed"], r["depth"], r["width"]), []).append(r)

    def factor(cell: list[dict[str, Any]], key: str) -> float:
        return max(r[key] for r in cell) / min(r[key] for r in cell)

    seeds = sorted({key[1] for key in cells})
    head: dict[str, Any] = {}
    for stage in ("init", "trained"):
        per_seed = [max(factor(c, "median_ratio") for k, c in cells.items() if k[:2] == (stage, s)) for s in seeds]
        head[f"sweep {stage}: max over seeds and (L, m) of max/min layer ratio"] = max(per_seed)
        head[f"sweep {stage}: max over (L, m) of max/min layer ratio, over seeds"] = over_seeds(per_seed)
        first_vs_out = [c[0]["median_ratio"] / c[-1]["median_ratio"] for k, c in cells.items() if k[0] == stage]
        head[f"sweep {stage}: first-layer / output-layer ratio, range"] = (
            f"{min(first_vs_out):.3g} … {max(first_vs_out):.3g}")
    head["sweep trained: max over seeds and (L, m) of max/min layer ratio of batch-gradient norms"] = max(
        factor(c, "batch_ratio") for k, c in cells.items() if k[0] == "trained")
    head["sweep: first-layer median ratio quad/CE, max"] = max(c[0]["median_ratio"] for c in cells.values())
    return head


def _seed_values(rows: list[dict[str, Any]], loss: str, epoch: int, key: str) -> list[Any]:
    """``key`` of the ``part="seed"`` rows of ``loss`` at ``epoch``, one per seed, in seed order."""
    picked = [r for r in rows if r["part"] == "seed" and r["loss"] == loss and r["epoch"] == epoch]
    return [r[key] for r in sorted(picked, key=lambda r: r["seed"])]


def _seed_numbers(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    """Over the seed runs: test accuracy at both lengths, median ‖J(p)‖₂ on the probes, the per-sample spread
    of the ratio over the layers after CE training, and question 2 on the training set at ``long_epochs``:
    log-log slope of ‖∂ℓ/∂zₙ‖ against 1 − p_y on the correct samples near their vertex, the exact rate
    bounds, and the misclassified samples."""
    head: dict[str, Any] = {}
    for name in LOSSES:
        for epoch in _lengths(name, cfg):
            acc = _seed_values(rows, name, epoch, "test_accuracy")
            head[f"seeds: test accuracy {name} at {epoch} epochs, mean"] = float(np.mean(acc))
            head[f"seeds: test accuracy {name} at {epoch} epochs"] = over_seeds(acc)
            if name in LONG:
                j_norm = _seed_values(rows, name, epoch, "probe_median_J_norm")
                head[f"seeds: {name} median ‖J(p)‖₂ at {epoch} epochs, mean"] = float(np.mean(j_norm))
                head[f"seeds: {name} median ‖J(p)‖₂ at {epoch} epochs, per seed"] = j_norm
                head[f"seeds: {name} median ‖J(p)‖₂ at {epoch} epochs"] = over_seeds(j_norm)
                head[f"seeds: {name} median ratio quad/CE at {epoch} epochs"] = over_seeds(
                    _seed_values(rows, name, epoch, "probe_median_ratio"))
                head[f"seeds: {name} training-set median ‖∂ℓ_quad/∂z‖ at {epoch} epochs"] = over_seeds(
                    _seed_values(rows, name, epoch, "train_median_quad"))
    for key in ("median", "max"):
        head[f"seeds: per sample max/min ratio over layers after {cfg['epochs']} epochs CE, {key}"] = over_seeds(
            _seed_values(rows, "ce", cfg["epochs"], f"layer_spread_{key}"))
    for name in LONG:
        head |= _rate_numbers([r for r in rows if r["part"] == "sample" and r["loss"] == name], name)
    return head


def _path_numbers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Over the seed runs' paths (``part="path"``, the output layer on the probe set up to ``epochs``), per
    ``LONG`` loss: the median ratio quad/CE at step 0, at its peak and at the end, how far each loss's median
    ‖∂ℓ/∂W_out‖ fell, ‖J(p)‖₂ at step 0 and p_min at both ends; each as a list per seed (``…, per seed``)
    and, for the values, ``over_seeds``."""
    head: dict[str, Any] = {}
    for name in LONG:
        paths: dict[int, list[dict[str, Any]]] = {}
        for r in rows:
            if r["part"] == "path" and r["loss"] == name:
                paths.setdefault(r["seed"], []).append(r)
        per_seed = [_one_path(paths[s]) for s in sorted(paths)]
        for key in per_seed[0]:
            values = [p[key] for p in per_seed]
            head[f"seeds: {name} path: {key}, per seed"] = values
            if not key.endswith(" step"):
                head[f"seeds: {name} path: {key}"] = over_seeds(values)
        head[f"seeds: {name} path: peak inside the run, per seed"] = [
            0 < p["peak step"] < p["last step"] for p in per_seed]
        head[f"seeds: {name} path: quad fell further than CE, per seed"] = [
            p["‖∂ℓ_quad/∂W_out‖ end/start"] < p["‖∂ℓ_CE/∂W_out‖ end/start"] for p in per_seed]
    return head


def _one_path(path: list[dict[str, Any]]) -> dict[str, Any]:
    """One seed's path (rows in step order): its start, peak and end."""
    ratio = [r["probe_median_ratio"] for r in path]
    peak, first, last = int(np.argmax(ratio)), path[0], path[-1]
    return {"ratio at step 0": ratio[0], "peak ratio": ratio[peak], "peak step": path[peak]["step"],
            "ratio at end": ratio[-1], "last step": last["step"],
            "‖∂ℓ_CE/∂W_out‖ end/start": last["probe_median_ce_W_out"] / first["probe_median_ce_W_out"],
            "‖∂ℓ_quad/∂W_out‖ end/start": last["probe_median_quad_W_out"] / first["probe_median_quad_W_out"],
            "‖J(p)‖₂ at step 0": first["probe_median_J_norm"], "p_min at step 0": first["probe_median_p_min"],
            "p_min at end": last["probe_median_p_min"]}


def _grad_numbers(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    """Over the seed runs, each loss's own training up to each checkpoint: ``_tenth_ratios`` of the batch
    ‖∇L‖ (``part="seed_grad"``, the steps before the checkpoint's updates done), per seed and over seeds."""
    grads: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        if r["part"] == "seed_grad":
            grads.setdefault((r["loss"], r["seed"]), []).append(r)
    head: dict[str, Any] = {}
    for name in LOSSES:
        for epoch in _lengths(name, cfg):
            ratios = [_tenth_ratios(np.array([g["grad_norm"] for g in grads[name, seed] if g["step"] < steps]))
                      for seed, steps in zip(_seed_values(rows, name, epoch, "seed"),
                                             _seed_values(rows, name, epoch, "steps"), strict=True)]
            for i, which in enumerate(("first", "largest")):
                tag = f"seeds: {name} ‖∇L‖ over {epoch} epochs, last tenth / {which} tenth"
                head[tag + ", per seed"] = [r[i] for r in ratios]
                head[tag] = over_seeds([r[i] for r in ratios])
    return head


def _rate_numbers(samples: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """Question 2 on one loss's trained nets (every seed's training set): for p_y ≥ ½, (1 − p_y) ≤
    ‖∂ℓ_CE/∂z‖ ≤ √2(1 − p_y) and ‖∂ℓ_quad/∂z‖ ≤ 2√2(1 − p_y)² (‖e‖ ≤ √2 δ, ‖J‖₂ ≤ maxᵢ 2pᵢ(1 − pᵢ) ≤
    2δ); on a sample misclassified with p_max ≥ ½, ‖∂ℓ_quad/∂z‖ ≤ 2√2(1 − p_max) while ‖∂ℓ_CE/∂z‖ ≥ p_max."""
    arr = {k: np.array([r[k] for r in samples]) for k in ("seed", "ce", "quad", "p_y", "p_max", "correct")}
    delta, tag = 1 - arr["p_y"], f"{name}-trained"
    near = arr["correct"] & (delta < 0.1) & (delta > DELTA_MIN)
    slopes = {loss: [float(np.polyfit(np.log(delta[near & (arr["seed"] == s)]),
                                      np.log(arr[loss][near & (arr["seed"] == s)]), 1)[0])
                     for s in np.unique(arr["seed"])] for loss in ("ce", "quad")}
    fit = arr["correct"] & (arr["p_y"] >= 0.5) & (delta > DELTA_MIN)
    wrong = ~arr["correct"] & (arr["p_max"] >= 0.5)
    head: dict[str, Any] = {
        f"{tag}: correct samples with 1 − p_y < 0.1": int(near.sum()),
        f"{tag}: slope of log ‖∂ℓ_CE/∂z‖ on log(1 − p_y), mean": float(np.mean(slopes["ce"])),
        f"{tag}: slope of log ‖∂ℓ_CE/∂z‖ on log(1 − p_y)": over_seeds(slopes["ce"]),
        f"{tag}: slope of log ‖∂ℓ_quad/∂z‖ on log(1 − p_y), mean": float(np.mean(slopes["quad"])),
        f"{tag}: slope of log ‖∂ℓ_quad/∂z‖ on log(1 − p_y)": over_seeds(slopes["quad"]),
        f"{tag}: max ‖∂ℓ_quad/∂z‖ / (1 − p_y)² on correct, p_y ≥ ½ (≤ 2√2)": float(
            np.max(arr["quad"][fit] / delta[fit] ** 2)),
        f"{tag}: misclassified samples": int((~arr["correct"]).sum()),
        f"{tag}: misclassified with p_max ≥ ½": int(wrong.sum()),
        f"{tag}: misclassified with p_max > 0.9": int((wrong & (arr["p_max"] > 0.9)).sum()),
    }
    if wrong.any():
        head[f"{tag}: misclassified, p_max ≥ ½: max ‖∂ℓ_quad/∂z‖ / (1 − p_max) (≤ 2√2)"] = float(
            np.max(arr["quad"][wrong] / (1 - arr["p_max"][wrong])))
        head[f"{tag}: misclassified, p_max ≥ ½: min ‖∂ℓ_CE/∂z‖ / p_max (≥ 1)"] = float(
            np.min(arr["ce"][wrong] / arr["p_max"][wrong]))
        head[f"{tag}: misclassified, p_max ≥ ½: median ratio quad/CE"] = float(
            np.median(arr["quad"][wrong] / arr["ce"][wrong]))
        top = int(np.argmax(np.where(wrong, arr["p_max"], -1.0)))
        head[f"{tag}: most confident misclassified: p_max, ‖∂ℓ_quad/∂z‖, ‖∂ℓ_CE/∂z‖"] = (
            f"{arr['p_max'][top]:.3f}, {arr['quad'][top]:.3g}, {arr['ce'][top]:.3g}")
    return head


def _bound_sentence(h: dict[str, Any]) -> str:
    max_dz = h["max ‖∂ℓ_quad/∂z‖ / ‖∂ℓ_CE/∂z‖ (bound ½)"]
    tight_med = h["median ‖∂ℓ_quad/∂z‖ / (‖J‖₂ ‖∂ℓ_CE/∂z‖)"]
    return (
        f"Output layer: over {h['samples × probes checked (all trajectories)']} per-sample measurements the ratio "
        f"‖∂ℓ_quad/∂z‖/‖∂ℓ_CE/∂z‖ never exceeds {max_dz:.3f} ({'within' if max_dz <= 0.5 + 1e-12 else 'VIOLATING'} "
        f"the analytic bound ½; backprop matches ‖J(p)(p − q)‖ to "
        f"{h['max rel. deviation backprop vs ‖J(p)(p − q)‖']:.1e}); the sharpened bound ‖J(p)‖₂ holds with "
        f"ratio/bound ≤ {h['max ‖∂ℓ_quad/∂z‖ / (‖J‖₂ ‖∂ℓ_CE/∂z‖) (sharpened bound 1)']:.3f} (median ratio/bound "
        f"{tight_med:.3f}" + (": p − q lies close to J's top eigenvector); " if tight_med > 0.9 else "); ")
        + f"‖J(p)‖₂ itself reached at most {h['max ‖J(p)‖₂ observed']:.3f}. With ‖∂ℓ/∂W_out,ₙ‖ = ‖∂ℓ/∂zₙ‖‖hₙ‖ "
        "(checked against materialized per-sample gradients) the same bounds hold for the last layer's weights.")


def _on_seeds(flags: list[bool]) -> str:
    """How many seeds a claim holds on: "on every seed", "on 2 of 3 seeds", "on no seed"."""
    n = sum(bool(f) for f in flags)
    return "on every seed" if n == len(flags) else f"on {n} of {len(flags)} seeds" if n else "on no seed"


def _steps(steps: list[int]) -> str:
    """One step, or the steps seed by seed."""
    return f"step {steps[0]} on every seed" if len(set(steps)) == 1 else f"steps {steps} (seed by seed)"


def _ce_trajectory_sentence(h: dict[str, Any], cfg: dict[str, Any]) -> str:
    p = "seeds: ce path: "
    inside, faster = h[p + "peak inside the run, per seed"], h[p + "quad fell further than CE, per seed"]
    sure = h["end, correct with p_y > 0.9: samples"]
    return (
        f"Along the CE trajectory ({cfg['seeds']} seeds, {cfg['epochs']} epochs) the median per-sample ratio quad/CE "
        f"of the output weights goes from {h[p + 'ratio at step 0']} at step 0 (1/C = 0.1 at uniform p)"
        + (f", up to {h[p + 'peak ratio']} at {_steps(h[p + 'peak step, per seed'])} (p leaving uniform, J "
           f"growing; a peak inside the run {_on_seeds(inside)})," if any(inside) else "")
        + f" to {h[p + 'ratio at end']} at step {max(h[p + 'last step, per seed'])}: the median ‖∂ℓ_CE/∂W_out‖ ended "
        f"at {h[p + '‖∂ℓ_CE/∂W_out‖ end/start']} of its start and ‖∂ℓ_quad/∂W_out‖ at "
        f"{h[p + '‖∂ℓ_quad/∂W_out‖ end/start']} of its start, so the quadratic gradient "
        + ("vanishes faster as p saturates, on every seed" if all(faster) else f"fell further {_on_seeds(faster)}")
        + (f" (on seed {cfg['seed']}'s trajectory, the one the figures draw, the {sure} probe samples with p_y > 0.9 "
           f"at the end have the ratio in [{h['end, p_y > 0.9: min ratio/(1 − p_y) (first order: C/(C−1))']:.2f}, "
           f"{h['end, p_y > 0.9: max ratio/(1 − p_y) (first order: 2)']:.2f}] × (1 − p_y); first-order theory: "
           f"[{10 / 9:.2f}, 2])" if sure else "") + ".")


def _quad_trajectory_sentence(h: dict[str, Any], cfg: dict[str, Any]) -> str:
    p, e, long = "seeds: quad path: ", cfg["epochs"], cfg["long_epochs"]
    j0 = h[p + "‖J(p)‖₂ at step 0, per seed"]
    j_short, j_long, j_ce = (h[f"seeds: {n} median ‖J(p)‖₂ at {t} epochs, per seed"]
                             for n, t in (("quad", e), ("quad", long), ("ce", long)))
    rose = [s > i for s, i in zip(j_short, j0, strict=True)]
    fell = [lo < min(s, i) for lo, s, i in zip(j_long, j_short, j0, strict=True)]
    slower = _on_seeds([q > c for q, c in zip(j_long, j_ce, strict=True)])
    if all(fell) and all(rose):
        finding = (f"after {e} epochs the quadratic loss has not yet driven p to the vertices, where J vanishes "
                   f"(J grew {_on_seeds(rose)}), but it does with longer training (J fell below its start by "
                   f"{long} epochs {_on_seeds(fell)}), more slowly than CE ({slower})")
    elif all(fell):
        finding = (f"the quadratic loss drives p to the vertices, where J vanishes, more slowly than CE ({slower}): "
                   f"J fell below its start by {long} epochs on every seed, "
                   + (f"after growing over the first {e} epochs {_on_seeds(rose)}" if any(rose) else
                      f"and was already below it after {e} epochs"))
    else:
        finding = (f"the quadratic loss has not driven p to the vertices, where J vanishes, by {long} epochs "
                   f"{_on_seeds([not f for f in fell])}")
    return (
        f"Along the quad-trained trajectory ({cfg['seeds']} seeds, shared lr {cfg['lr']}) the median ratio goes from "
        f"the same start to {h[p + 'ratio at end']} after {e} epochs, and the median ‖J(p)‖₂ "
        f"on the probes from {h[p + '‖J(p)‖₂ at step 0']} to {h[f'seeds: quad median ‖J(p)‖₂ at {e} epochs']} "
        f"after {e} epochs and {h[f'seeds: quad median ‖J(p)‖₂ at {long} epochs']} after {long} (CE: "
        f"{h[f'seeds: ce median ‖J(p)‖₂ at {e} epochs']} and {h[f'seeds: ce median ‖J(p)‖₂ at {long} epochs']}): "
        f"{finding}.")


def _growth_sentence(h: dict[str, Any], cfg: dict[str, Any]) -> str:
    e, long = cfg["epochs"], cfg["long_epochs"]

    def pair(name: str, epoch: int) -> str:
        tag = f"seeds: {name} ‖∇L‖ over {epoch} epochs, last tenth / "
        return f"{h[tag + 'first tenth']} and {h[tag + 'largest tenth']}"

    grow = [r > 1 for r in h[f"seeds: quad ‖∇L‖ over {e} epochs, last tenth / first tenth, per seed"]]
    shrink = [r < 1 for r in h[f"seeds: quad ‖∇L‖ over {long} epochs, last tenth / largest tenth, per seed"]]
    return (
        f"In each loss's own training ({cfg['seeds']} seeds) the batch ‖∇L‖ averaged over the last tenth of the "
        f"steps, divided by the first tenth's and by the largest tenth's, is over {e} epochs {pair('quad', e)} for "
        f"quad, {pair('ce', e)} for CE and {pair('mse', e)} for MSE-sigmoid"
        + (f", and over {long} epochs {pair('quad', long)} for quad and {pair('ce', long)} for CE" if long != e else "")
        + ((f": the quadratic gradient starts small (J ≈ I/C at uniform p) and grows, ending the first {e} epochs "
            f"larger than it began ({_on_seeds(grow)})"
            + (f", and by {long} epochs it has shrunk from its largest ({_on_seeds(shrink)})" if any(shrink) else "")
            + ".") if any(grow) else "."))


def _lower_bound_sentence(h: dict[str, Any], cfg: dict[str, Any]) -> str:
    p = "seeds: ce path: "
    return (
        "From below: J(p) = diag(p) − ppᵀ is a rank-one downdate of diag(p), so its eigenvalues interlace with the "
        "p_c and, on the sum-zero vectors e = p − q lives in, p_min‖e‖ ≤ ‖J(p)e‖ ≤ min(p_max, ½)‖e‖; hence "
        "‖∂ℓ_quad/∂z‖ ≥ min_c p_c · ‖∂ℓ_CE/∂z‖, and the same for the output weights (question 1: given "
        "‖∂ℓ_CE/∂W_out‖ > r, ‖∂ℓ_quad/∂W_out‖ > p_min r). On the measured samples the lower bound held on "
        f"{h['lower bound: fraction of samples with ‖∂ℓ_quad/∂z‖ ≥ p_min ‖∂ℓ_CE/∂z‖']:.1%} (min ratio/p_min "
        f"{h['lower bound: min ‖∂ℓ_quad/∂z‖ / (p_min ‖∂ℓ_CE/∂z‖) (≥ 1)']:.3f} ≥ 1) and the upper one with "
        f"ratio/min(p_max, ½) ≤ {h['upper bound: max ‖∂ℓ_quad/∂z‖ / (min(p_max, ½) ‖∂ℓ_CE/∂z‖) (≤ 1)']:.3f}; but "
        f"the median p_min on the probes is {h[p + 'p_min at step 0']} at init and {h[p + 'p_min at end']} after "
        f"{cfg['epochs']} epochs of CE ({cfg['seeds']} seeds): without an assumption on p (p_min bounded away from "
        "0) there is no lower bound, since J vanishes at every vertex.")


def _vanishing_sentence(h: dict[str, Any], cfg: dict[str, Any]) -> str:
    e, long, k = cfg["epochs"], cfg["long_epochs"], cfg["seeds"]
    acc = h[f"seeds: test accuracy quad at {long} epochs, mean"]
    if not learned(acc, 10):
        return did_not_learn(f"Question 2: the quad-trained nets after {long} epochs", acc, 10,
                             "Fix: train longer (--set long_epochs=…) or at a larger rate (--set lr=…).")
    q, c = "quad-trained: ", "ce-trained: "
    wrong = h[q + "misclassified with p_max ≥ ½"]
    return (
        f"Question 2, does the quadratic gradient go to zero in training? Yes where training fits the data, and "
        f"faster than CE's: for p_y ≥ ½, (1 − p_y) ≤ ‖∂ℓ_CE/∂z‖ ≤ √2(1 − p_y) and ‖∂ℓ_quad/∂z‖ ≤ 2√2(1 − p_y)² "
        f"(max measured ‖∂ℓ_quad/∂z‖/(1 − p_y)² "
        f"{h[q + 'max ‖∂ℓ_quad/∂z‖ / (1 − p_y)² on correct, p_y ≥ ½ (≤ 2√2)']:.3f} ≤ 2√2); on the correctly "
        f"classified training samples with 1 − p_y < 0.1 after {long} epochs "
        f"({k} seeds) the log-log slope of ‖∂ℓ/∂z‖ against 1 − p_y is "
        f"{h[q + 'slope of log ‖∂ℓ_quad/∂z‖ on log(1 − p_y)']} for quad and "
        f"{h[q + 'slope of log ‖∂ℓ_CE/∂z‖ on log(1 − p_y)']} for CE on the quad-trained nets "
        f"({h[c + 'slope of log ‖∂ℓ_quad/∂z‖ on log(1 − p_y)']} and {h[c + 'slope of log ‖∂ℓ_CE/∂z‖ on log(1 − p_y)']}"
        f" on the CE-trained), and the training-set median ‖∂ℓ_quad/∂z‖ of the quad-trained nets falls from "
        f"{h[f'seeds: quad training-set median ‖∂ℓ_quad/∂z‖ at {e} epochs']} after "
        f"{cfg['epochs']} epochs to {h[f'seeds: quad training-set median ‖∂ℓ_quad/∂z‖ at {long} epochs']} after "
        f"{long}. It also goes to zero, wrongly, on a sample saturated at a wrong class: misclassified with p_max ≥ ½, "
        "‖∂ℓ_quad/∂z‖ ≤ 2√2(1 − p_max) while ‖∂ℓ_CE/∂z‖ ≥ p_max. The quad-trained nets misclassify "
        f"{h[q + 'misclassified samples']} training samples over the {k} seeds, {wrong} with p_max ≥ ½ and "
        f"{h[q + 'misclassified with p_max > 0.9']} with p_max > 0.9"
        + (f"; on those with p_max ≥ ½ the median ratio quad/CE is "
           f"{h[q + 'misclassified, p_max ≥ ½: median ratio quad/CE']:.3f}, ‖∂ℓ_quad/∂z‖/(1 − p_max) ≤ "
           f"{h[q + 'misclassified, p_max ≥ ½: max ‖∂ℓ_quad/∂z‖ / (1 − p_max) (≤ 2√2)']:.3f} ≤ 2√2 and "
           f"‖∂ℓ_CE/∂z‖/p_max ≥ {h[q + 'misclassified, p_max ≥ ½: min ‖∂ℓ_CE/∂z‖ / p_max (≥ 1)']:.3f} ≥ 1 (the "
           f"most confident: p_max, ‖∂ℓ_quad/∂z‖, ‖∂ℓ_CE/∂z‖ = "
           f"{h[q + 'most confident misclassified: p_max, ‖∂ℓ_quad/∂z‖, ‖∂ℓ_CE/∂z‖']})" if wrong else "")
        + f"; the CE-trained nets misclassify {h[c + 'misclassified samples']}.")


def _accuracy_sentence(h: dict[str, Any], cfg: dict[str, Any]) -> str:
    e, long = cfg["epochs"], cfg["long_epochs"]
    parts, failed = [], []
    for name, epoch in [(n, e) for n in LOSSES] + [(n, long) for n in LONG if long != e]:
        acc = h[f"seeds: test accuracy {name} at {epoch} epochs, mean"]
        if learned(acc, 10):
            parts.append(f"{LABELS[name]} {h[f'seeds: test accuracy {name} at {epoch} epochs']} after {epoch} epochs")
        else:
            failed.append(did_not_learn(f"{LABELS[name]} after {epoch} epochs", acc, 10,
                                        "Fix: train longer or at a rate tuned for this loss (--set lr=…)."))
    return (
        f"Test accuracy, all at one shared learning rate (SGD, lr {cfg['lr']}, not tuned per loss) over "
        f"{cfg['seeds']} seeds: " + "; ".join(parts) + ". A gap at the shared rate measures the step each loss's "
        f"gradient gets at that rate (the quadratic one starts at a median {h['seeds: ce path: ratio at step 0']} "
        "of CE's per sample, about 1/C, the sigmoid-MSE one carries σ′ ≤ ¼), not the accuracy the loss can reach; "
        "MSE-sigmoid was trained neither longer nor at its own rate." + "".join(" " + f for f in failed))


def _layers_sentence(h: dict[str, Any], hidden: np.ndarray, cfg: dict[str, Any]) -> str:
    spreads = {stage: h[f"sweep {stage}: max over seeds and (L, m) of max/min layer ratio"]
               for stage in ("init", "trained")}
    flat = {stage: spread < 1.5 for stage, spread in spreads.items()}
    k, e, spread = cfg["seeds"], cfg["epochs"], "seeds: per sample max/min ratio over layers after"
    return (
        f"Earlier layers: along seed {cfg['seed']}'s CE trajectory (the scatter figure) the per-sample ratio of the "
        f"hidden weights ranged over [{np.nanmin(hidden):.3g}, {np.nanmax(hidden):.3g}] "
        f"({h['hidden layers: fraction of per-sample ratios ≤ ½']:.1%} ≤ ½, though no ½ bound is guaranteed there), "
        "and for one sample the ratios of its layers differ by a median factor "
        f"{h['per sample: max/min ratio over layers, median']:.3f} "
        f"(max {h['per sample: max/min ratio over layers, max']:.2f}); after {e} epochs of CE on {k} seeds that "
        f"factor has median {h[f'{spread} {e} epochs CE, median']} and max {h[f'{spread} {e} epochs CE, max']}. "
        f"Sweep over L ∈ {cfg['sweep_depths']}, m ∈ {cfg['sweep_widths']} ({k} seeds each): the median ratio differs "
        f"across layers by at most a factor {spreads['init']:.3f} at init and {spreads['trained']:.3f} after CE "
        f"training (the largest factor over (L, m) after training, per seed: "
        f"{h['sweep trained: max over (L, m) of max/min layer ratio, over seeds']}; first-layer/output-layer ratio "
        f"{h['sweep trained: first-layer / output-layer ratio, range']}; the norms of the probe batch's mean "
        f"gradients, where per-sample directions partly cancel, differ across layers by at most a factor "
        f"{h['sweep trained: max over seeds and (L, m) of max/min layer ratio of batch-gradient norms']:.2f}), "
        + ("so, on every seed and (L, m), the loss rescales the backpropagated signal nearly uniformly: it changes "
           "the earlier layers' gradients by the same factor as the output layer's, not only the output layer's."
           if flat["init"] and flat["trained"] else
           "so after CE training, on every seed and (L, m), the loss rescales the backpropagated signal nearly "
           "uniformly (it changes the earlier layers' gradients by about the same factor as the output layer's, not "
           "only the output layer's), though at initialization some nets' layers differ by up to "
           f"{spreads['init']:.3f}."
           if flat["trained"] else
           "so the rescaling is not uniform: the earlier layers' ratio differs from the output layer's, "
           "though every layer's gradient changes with the loss."))


# -- figures ---------------------------------------------------------------------------------------
def figures(records: Records, cfg: dict[str, Any]) -> dict[str, Figure]:
    rows, n_layers = records.rows, cfg["depth"] + 1
    traj = _trajectories(rows)
    return {
        "training": Figure(_training_figure(rows, n_layers),
                           "Per-layer gradient norms ‖∂L/∂W‖ during training with each loss from the same "
                           "initialization and batch order (solid: batch gradient; dotted: mean per-sample norm; "
                           "Recorder rows)."),
        "scatter": Figure(_scatter_figure(traj["ce"], n_layers),
                          "Per-sample gradient norms of the two losses at the same weights and samples along the "
                          "CE-trained trajectory, colored by step: output layer (left, bounded by ½) and first "
                          "layer."),
        "bound": Figure(_bound_figure(traj, [r for r in rows if r["part"] == "path"], n_layers),
                        "Left: the logit-gradient ratio against the softmax Jacobian's spectral norm (every point "
                        "lies under the diagonal ‖J‖₂ and under ½). Right: median per-sample ratio quad/CE per layer "
                        f"over training, along the CE and the quad trajectories of seed {cfg['seed']}, and in grey the "
                        "output layer's along every seed's."),
        "sweep": Figure(_sweep_figure([r for r in rows if r["part"] == "sweep"], cfg),
                        "Median per-sample ratio quad/CE in each layer of ReLU nets of depth L and width m, at the "
                        "same weights: at initialization and after CE training (mean over the seeds, bars from the "
                        "smallest to the largest)."),
    }


def _training_figure(rows: list[dict[str, Any]], n_layers: int) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    for ax, loss in zip(axes, LOSSES, strict=True):
        for i in range(n_layers):
            weight = f"{2 * i}.weight"  # the Linear weights' state_dict names
            ax.semilogy(*_series(rows, loss, "grad_norm", weight),
                        label=f"W{i + 1}" + (" (output)" if i == n_layers - 1 else ""))
            ax.semilogy(*_series(rows, loss, "per_sample_grad_norm_mean", weight), ls=":",
                        color=ax.lines[-1].get_color())
        ax.set(title=f"trained with {LABELS[loss]}", xlabel="step")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("‖∂L/∂W‖ (solid: batch, dotted: mean per-sample)")
    fig.suptitle("How do the two losses' gradients change while each loss trains its own net?")
    fig.tight_layout()
    return fig


def _scatter_figure(ce: Probes, n_layers: int) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, layer, title in ((axes[0], n_layers - 1, "output layer W_out"), (axes[1], 0, "first layer W1")):
        ce_norm = np.concatenate([r["ce_W"][layer] for _, r in ce])
        quad = np.concatenate([r["quad_W"][layer] for _, r in ce])
        color = np.concatenate([np.full(r["ce_W"].shape[1], s) for s, r in ce])
        ok = (ce_norm > 0) & (quad > 0)
        sc = ax.scatter(ce_norm[ok], quad[ok], c=color[ok], s=4, cmap="viridis", alpha=0.6)
        lo, hi = ce_norm[ok].min(), ce_norm[ok].max()
        ax.loglog([lo, hi], [lo / 2, hi / 2], "k--", lw=1, label="quad = ½ CE (output-layer bound)")
        ax.loglog([lo, hi], [lo / 10, hi / 10], "k:", lw=1, label="quad = CE / C")
        ax.set(title=f"{title}, per sample, CE trajectory", xlabel="‖∂ℓ_CE/∂W‖", ylabel="‖∂ℓ_quad/∂W‖")
        ax.legend(fontsize=8)
        fig.colorbar(sc, ax=ax, label="step")
    fig.suptitle("Is the quadratic gradient a fixed fraction of cross-entropy's, sample by sample?")
    fig.tight_layout()
    return fig


def _bound_figure(traj: dict[str, Probes], paths: list[dict[str, Any]], n_layers: int) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    every = [r for probes in traj.values() for _, r in probes]
    jn = np.concatenate([r["J_norm"] for r in every])
    axes[0].scatter(jn, _ratio(np.concatenate([r["quad_dz"] for r in every]),
                               np.concatenate([r["ce_dz"] for r in every])), s=4, alpha=0.5)
    axes[0].plot([0, 0.5], [0, 0.5], "k--", lw=1, label="ratio = ‖J‖₂ (sharpened bound)")
    axes[0].axhline(0.5, color="C3", lw=1, label="½ (bound)")
    axes[0].set(xlabel="‖J_softmax(pₙ)‖₂", ylabel="‖∂ℓ_quad/∂zₙ‖ / ‖∂ℓ_CE/∂zₙ‖",
                title="logit gradients, every sample and probe")
    axes[0].legend(fontsize=8)
    for name, probes in traj.items():
        probe_steps = [step for step, _ in probes]
        for layer in range(n_layers):
            med = [_median_ratio(r, layer) for _, r in probes]
            axes[1].semilogy(probe_steps, med, ls="-" if name == "ce" else "--", marker="os^v<>"[layer % 6], ms=4,
                             label=f"W{layer + 1}{' (out)' if layer == n_layers - 1 else ''}, {name} trajectory")
    for name, seed in dict.fromkeys((r["loss"], r["seed"]) for r in paths):
        path = [r for r in paths if (r["loss"], r["seed"]) == (name, seed)]
        axes[1].semilogy([r["step"] for r in path], [r["probe_median_ratio"] for r in path], color="0.6", lw=0.8,
                         ls="-" if name == "ce" else "--", zorder=0)
    axes[1].set(xlabel="step", ylabel="median per-sample ratio quad/CE", title="ratio at the same weights")
    axes[1].legend(fontsize=7)
    fig.suptitle("Is the quadratic loss's gradient at most half of cross-entropy's, and does it vanish in training?")
    fig.tight_layout()
    return fig


def _sweep_figure(sweep: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, stage in zip(axes, ("init", "trained"), strict=True):
        for depth in cfg["sweep_depths"]:
            for width in cfg["sweep_widths"]:
                cell = [r for r in sweep if r["stage"] == stage and r["depth"] == depth and r["width"] == width]
                layers = sorted({r["layer"] for r in cell})
                by_layer = np.array([[r["median_ratio"] for r in cell if r["layer"] == la] for la in layers])
                mean = by_layer.mean(axis=1)  # (layers,): over the seeds; the bar spans their min–max
                ax.errorbar(np.array(layers) / (depth + 1), mean, marker="o", capsize=2, label=f"L={depth}, m={width}",
                            yerr=[mean - by_layer.min(axis=1), by_layer.max(axis=1) - mean])
        ax.set(title=f"sweep, {stage}" + (f" ({cfg['sweep_epochs']} epochs CE)" if stage == "trained" else ""),
               xlabel="layer l / (L + 1)  (1 = output layer)", ylabel="median per-sample ratio quad/CE")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle("Does the loss rescale every layer's gradient alike, whatever the depth and width?")
    fig.tight_layout()
    return fig


def answer(records: Records, cfg: dict[str, Any]) -> Answer:
    """The ½ bound and the missing lower bound (question 1), the quadratic gradient's vanishing rate
    against cross-entropy's (question 2), and whether the loss rescales the earlier layers alike."""
    _, head = verdict(records, cfg)
    upper = head["fraction of samples with ‖∂ℓ_quad/∂z‖ ≤ ½‖∂ℓ_CE/∂z‖"] == 1.0
    text = ("The quadratic loss's gradient is " + ("never more than half" if upper else "mostly under half")
            + " the cross-entropy gradient, because the softmax Jacobian it carries has norm at most one half, "
            "and it can be far smaller: no lower bound holds unless every probability stays away from 0.")
    tag = "quad-trained: slope of log ‖∂ℓ_{}/∂z‖ on log(1 − p_y), mean"
    quad, ce = head.get(tag.format("quad")), head.get(tag.format("CE"))
    if quad is not None and ce is not None and quad > 1.5 * ce:
        text += (" It vanishes as training fits the data, faster than cross-entropy's (like (1 − p_y)² against "
                 "1 − p_y), and also, wrongly, on samples confidently misclassified.")
    spread = head.get("sweep trained: max over seeds and (L, m) of max/min layer ratio")
    if spread is not None:
        text += (" The loss rescales every layer's gradient by " + ("nearly the same factor, so it changes the "
                 "earlier layers' learning as much as the output layer's." if spread < 1.5 else
                 "different factors, so the earlier layers do not follow the output layer alike."))
    return Answer(text, "bound")


STUDY = register(Study(
    name="loss-gradients",
    question="How are ‖∂L/∂W‖ under cross-entropy and under the quadratic loss on softmax related, does the "
             "quadratic one vanish in training, and does the loss change the earlier layers' gradients?",
    notes="Source notes 000 (norms of the gradients of the quadratic and the cross-entropy loss) and 002 "
          "(does cross-entropy change the training of earlier layers?).",
    measure=measure,
    verdict=verdict,
    figures=figures,
    answer=answer,
    method="A ReLU network on digits is trained with cross-entropy, the quadratic loss on the softmax and MSE on "
           "sigmoids over three seeds. Along the training paths we compute both losses' per-sample gradients at "
           "the same weights for every layer, check them against the bounds the softmax Jacobian gives, and "
           "repeat over depths and widths.",
    checks={"record_every": POSITIVE, "probe_every": POSITIVE, "probe_size": POSITIVE,
            "trajectories": Check(choices=LOSSES), "sweep_depths": POSITIVE, "sweep_widths": POSITIVE,
            "seeds": POSITIVE, "long_epochs": POSITIVE},
    validate=check_config,
    quick={"seed": 0, "depth": 2, "width": 64, "epochs": 10, "batch_size": 32, "lr": 0.1, "record_every": 5,
           "probe_every": 40, "probe_size": 128, "trajectories": ["ce", "quad"], "sweep_depths": [1, 4],
           "sweep_widths": [16, 64], "sweep_epochs": 5, "seeds": 3, "long_epochs": 40},
    full={"seed": 0, "depth": 2, "width": 64, "epochs": 40, "batch_size": 32, "lr": 0.1, "record_every": 10,
          "probe_every": 80, "probe_size": 200, "trajectories": ["ce", "quad"], "sweep_depths": [1, 2, 4, 8],
          "sweep_widths": [16, 64, 256], "sweep_epochs": 15, "seeds": 3, "long_epochs": 100},
))
