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
J(p) → 0 at every vertex.

Earlier layers. Backpropagation gives δˡₙ = Aˡₙ ∂ℓ/∂zₙ with Aˡₙ = (∂zₙ/∂(pre-activation of layer l))ᵀ,
a product of weights and ReLU masks that does not depend on the loss; the per-sample weight gradient
is δˡₙ (h^{l−1}ₙ)ᵀ. Hence the per-sample ratio in layer l is ‖Aˡₙ J eₙ‖ / ‖Aˡₙ eₙ‖: equal to the
output layer's ratio when J acts as a scalar on eₙ (as at initialization), otherwise different, and
not bounded by ½ in general (Aˡ may shrink eₙ more than J eₙ). The study measures both along the
same trajectory (both losses' per-sample gradients evaluated at the same weights and samples), and
sweeps depth L and width m to see whether the ratio is the same in every layer (the loss rescales
the backpropagated signal uniformly) or only the output layer's gradient changes.

Records (one row per measurement): ``part="train"`` the Recorder rows of each run (its own loss:
per-layer ‖∂L/∂θ‖ and per-sample norm mean/std/max); ``part="probe"`` one row per trajectory, step,
probe sample and layer with the three losses' per-sample norms at those weights (layer "z": the
logit gradients ‖∂ℓ/∂zₙ‖, with ‖J(pₙ)‖₂ and the analytic ‖J(pₙ)(pₙ − qₙ)‖, ``Je_norm``);
``part="check"`` the analytic-vs-backprop checks; ``part="test"`` the test accuracy of each run;
``part="sweep"`` the per-layer ratios over (L, m). The verdict and the figures read these rows only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import nablanet as nn
from nablanet.layers.softmax import softmax
from nablanet.losses.base import Loss
from nablanet.studies.base import Figure, Records, Study, Verdict, pyplot, register
from nablanet.studies.settings import POSITIVE, Check

LOSSES = ("ce", "quad", "mse")
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


def probe(body: nn.Sequential, x: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """At the current weights, for the same samples: per-sample ‖∂ℓₙ/∂W‖ of every Linear weight under
    each loss (``{loss}_W`` (layers, N), by the lab's closed forms through backprop), the logit
    gradients ‖∂ℓₙ/∂zₙ‖ = ‖∂ℓₙ/∂b_out‖ (``{loss}_dz``), and the analytic output-layer quantities:
    ‖eₙ‖, ‖J(pₙ)eₙ‖, ‖J(pₙ)‖₂ (largest eigenvalue), ‖hₙ‖, whether sample n is classified correctly."""
    names = weight_names(body)
    out_bias = names[-1].replace("weight", "bias")
    res: dict[str, np.ndarray] = {}
    for name in LOSSES:
        model, loss = with_head(body, name)
        norms = nn.lab.per_sample_grad_norms(model, loss, x, target_for(name, y, n_classes))
        res[f"{name}_W"] = np.stack([norms[w] for w in names])
        res[f"{name}_dz"] = norms[out_bias]
    h = body[:-1](x)
    z = body[-1](h)
    p = softmax(z, axis=-1)
    e = p - np.eye(n_classes)[y]
    jac = softmax_jacobian(p)
    res["J_norm"] = np.linalg.eigvalsh(jac)[:, -1]
    res["e_norm"] = np.linalg.norm(e, axis=1)
    res["Je_norm"] = np.linalg.norm(np.einsum("nij,nj->ni", jac, e), axis=1)
    res["h_norm"] = np.linalg.norm(h, axis=1)
    res["p_y"] = p[np.arange(len(y)), y]
    res["correct"] = z.argmax(axis=1) == y
    return res


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
    """For each depth L and width m: per-layer ratios quad/CE at the same weights, at initialization and
    after training with CE (median over the probe samples of the per-sample ratio, and the ratio of the
    probe batch's mean-gradient norms)."""
    xp, yp = probe_set
    rows: list[dict[str, Any]] = []
    for depth in cfg["sweep_depths"]:
        for width in cfg["sweep_widths"]:
            body = relu_mlp(depth, width, x.shape[1], 10, cfg["seed"])
            for stage in ("init", "trained"):
                if stage == "trained":
                    model, loss = with_head(body, "ce")
                    nn.fit(model, loss, nn.optim.SGD(model.parameters(), lr=cfg["lr"]), train=(x, y),
                           epochs=cfg["sweep_epochs"], batch_size=cfg["batch_size"], seed=cfg["seed"])
                r = probe(body, xp, yp, 10)
                ratios = _ratio(r["quad_W"], r["ce_W"])
                batch = {}
                for name in ("ce", "quad"):
                    model, loss = with_head(body, name)
                    gn = nn.lab.grad_norms(model, loss, xp, target_for(name, yp, 10))
                    batch[name] = np.array([gn[w] for w in weight_names(body)])
                accuracy = float(np.mean(body(xp).argmax(axis=1) == yp))
                for layer in range(depth + 1):
                    rows.append({"part": "sweep", "depth": depth, "width": width, "stage": stage,
                                 "layer": layer + 1, "output_layer": layer == depth,
                                 "median_ratio": float(np.nanmedian(ratios[layer])),
                                 "batch_ratio": float(batch["quad"][layer] / batch["ce"][layer]),
                                 "ce_median": float(np.median(r["ce_W"][layer])),
                                 "quad_median": float(np.median(r["quad_W"][layer])),
                                 "probe_accuracy": accuracy})
    return rows


# -- measure ---------------------------------------------------------------------------------------
def check_config(cfg: dict[str, Any]) -> None:
    """The trajectories probed must include CE's, the reference every ratio is read along."""
    if "ce" not in cfg["trajectories"] or not set(cfg["trajectories"]) <= set(LOSSES):
        raise ValueError(f"trajectories={cfg['trajectories']!r}: expected a list of losses from {list(LOSSES)} that "
                         "includes 'ce' (the reference trajectory). Fix: --set 'trajectories=[\"ce\", \"quad\"]'.")


def measure(cfg: dict[str, Any]) -> Records:
    """Train the network once per loss from the same start (Recorder rows, probes along the chosen
    trajectories, test accuracy), check the closed forms on the CE-trained net, and sweep (L, m)."""
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
    return Records(rows + _sweep(cfg, x, y, probe_set))


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
    res |= {key: np.array([r[key] for r in z]) for key in ("J_norm", "Je_norm", "h_norm", "p_y", "correct")}
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
         **_training_numbers(rows), **_sweep_numbers(rows, cfg)}
    last_step = traj["ce"][-1][0]
    sentences = [_bound_sentence(h), _ce_trajectory_sentence(h, last_step)]
    if "quad" in traj:
        sentences.append(_quad_trajectory_sentence(h))
    sentences.append(_layers_sentence(h, _weight_ratios(traj["ce"])[:-1], cfg))
    sentences.append(f"Test accuracy after {cfg['epochs']} epochs of SGD (lr {cfg['lr']}) from the same start: "
                     f"CE {h['test accuracy ce']:.1%}, quad {h['test accuracy quad']:.1%}, "
                     f"MSE-sigmoid {h['test accuracy mse']:.1%}.")
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
    return {
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
    layer_spread = np.nanmax(w_ratio, axis=0) / np.nanmin(w_ratio, axis=0)  # per sample: max/min over layers
    head["per sample: max/min ratio over layers, median"] = float(np.nanmedian(layer_spread))
    head["per sample: max/min ratio over layers, max"] = float(np.nanmax(layer_spread))
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


def _training_numbers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each loss's own training: the batch ‖∇L‖ late against early and against its largest, test accuracy."""
    accuracy = {r["loss"]: r["test_accuracy"] for r in rows if r["part"] == "test"}
    head: dict[str, Any] = {}
    for name in LOSSES:
        _, total = _series(rows, name, "grad_norm", parameter="", layer="")
        k = max(1, len(total) // 10)  # means over tenths of the recorded steps smooth the mini-batch noise
        tenths = np.array([np.mean(total[i : i + k]) for i in range(0, len(total) - k + 1, k)])
        head[f"own training {name}: ‖∇L‖ last/first tenth"] = float(tenths[-1] / tenths[0])
        head[f"own training {name}: ‖∇L‖ last/largest tenth"] = float(tenths[-1] / tenths.max())
        head[f"test accuracy {name}"] = accuracy[name]
    return head


def _sweep_numbers(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    """Over the (L, m) sweep: how far the median ratio differs across the layers of one net."""
    sweep = [r for r in rows if r["part"] == "sweep"]
    head: dict[str, Any] = {}
    for stage in ("init", "trained"):
        worst, first_vs_out = 1.0, []
        for depth in cfg["sweep_depths"]:
            for width in cfg["sweep_widths"]:
                vals = np.array([r["median_ratio"] for r in sweep if r["stage"] == stage and r["depth"] == depth
                                 and r["width"] == width])
                worst = max(worst, float(np.max(vals) / np.min(vals)))
                first_vs_out.append(float(vals[0] / vals[-1]))
        head[f"sweep {stage}: max over (L, m) of max/min layer ratio"] = worst
        head[f"sweep {stage}: first-layer / output-layer ratio, range"] = (
            f"{min(first_vs_out):.3g} … {max(first_vs_out):.3g}")
    head["sweep trained: max over (L, m) of max/min layer ratio of batch-gradient norms"] = max(
        max(r["batch_ratio"] for r in sweep if (r["stage"], r["depth"], r["width"]) == key)
        / min(r["batch_ratio"] for r in sweep if (r["stage"], r["depth"], r["width"]) == key)
        for key in {(r["stage"], r["depth"], r["width"]) for r in sweep if r["stage"] == "trained"})
    head["sweep: first-layer median ratio quad/CE, max"] = float(max(r["median_ratio"] for r in sweep
                                                                    if r["layer"] == 1))
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


def _ce_trajectory_sentence(h: dict[str, Any], last_step: int) -> str:
    out_start, out_end = h["output W: median ratio at step 0"], h[f"output W: median ratio at step {last_step}"]
    peak_step = h["CE trajectory: step of the peak"]
    sure = h["end, correct with p_y > 0.9: samples"]
    return (
        "Along the CE trajectory the median per-sample ratio quad/CE of the output weights goes from "
        f"{out_start:.3f} at step 0 (1/C = 0.1 at uniform p)"
        + (f", up to {h['CE trajectory: peak output median ratio']:.3f} at step {peak_step} (p leaving uniform, "
           "J growing)," if 0 < peak_step < last_step else "")
        + f" to {out_end:.4f} at step {last_step}: "
        f"‖∂ℓ_CE/∂W_out‖ fell to {h['CE trajectory: median ‖∂ℓ_CE/∂W_out‖ end / start']:.3g}× its start and "
        f"‖∂ℓ_quad/∂W_out‖ to {h['CE trajectory: median ‖∂ℓ_quad/∂W_out‖ end / start']:.3g}×, so the quadratic "
        f"gradient vanishes {'faster' if out_end < out_start else 'no faster'} as p saturates"
        + (f" (for the {sure} probe samples with p_y > 0.9 at the end the ratio lies in "
           f"[{h['end, p_y > 0.9: min ratio/(1 − p_y) (first order: C/(C−1))']:.2f}, "
           f"{h['end, p_y > 0.9: max ratio/(1 − p_y) (first order: 2)']:.2f}] × (1 − p_y); first-order theory: "
           f"[{10 / 9:.2f}, 2])" if sure else "") + ".")


def _quad_trajectory_sentence(h: dict[str, Any]) -> str:
    qs, qe = h["quad trajectory: output median ratio start"], h["quad trajectory: output median ratio end"]
    own = {name: h[f"own training {name}: ‖∇L‖ last/first tenth"] for name in LOSSES}
    top = {name: h[f"own training {name}: ‖∇L‖ last/largest tenth"] for name in LOSSES}
    return (
        f"Along the quad-trained trajectory the ratio goes from {qs:.3f} to {qe:.3f} (median ‖J(p)‖₂ "
        f"{h['median ‖J(p)‖₂ at init']:.3f} → {h['quad trajectory: median ‖J(p)‖₂ end']:.3f}"
        + (": the quadratic loss does not drive p to the vertices, where J vanishes); " if qe > qs else "); ")
        + "in each loss's own training the batch ‖∇L‖ averaged over the last tenth of the steps is "
        f"{own['quad']:.2f}× the first tenth's and {top['quad']:.2f}× the largest tenth's for quad "
        f"(CE {own['ce']:.2f}× and {top['ce']:.2f}×, MSE-sigmoid {own['mse']:.2f}× and {top['mse']:.2f}×)"
        + (": the quadratic gradient starts small (J ≈ I/C at uniform p) and grows before it shrinks."
           if own["quad"] > 1 > top["quad"] else "."))


def _layers_sentence(h: dict[str, Any], hidden: np.ndarray, cfg: dict[str, Any]) -> str:
    spreads = {stage: h[f"sweep {stage}: max over (L, m) of max/min layer ratio"] for stage in ("init", "trained")}
    uniform = spreads["trained"] < 1.5 and spreads["init"] < 1.5
    return (
        f"Earlier layers: the per-sample ratio of the hidden weights ranged over [{np.nanmin(hidden):.3g}, "
        f"{np.nanmax(hidden):.3g}] ({h['hidden layers: fraction of per-sample ratios ≤ ½']:.1%} ≤ ½, though no ½ "
        "bound is guaranteed there), and for one sample the ratios of its layers differ by a median factor "
        f"{h['per sample: max/min ratio over layers, median']:.3f} "
        f"(max {h['per sample: max/min ratio over layers, max']:.2f}). Sweep over L ∈ {cfg['sweep_depths']}, "
        f"m ∈ {cfg['sweep_widths']}: the median ratio differs across layers by at most a factor "
        f"{spreads['init']:.3f} at init and {spreads['trained']:.3f} after CE training (first-layer/output-layer "
        f"ratio {h['sweep trained: first-layer / output-layer ratio, range']}; the norms of the probe batch's mean "
        f"gradients, where per-sample directions partly cancel, differ across layers by at most a factor "
        f"{h['sweep trained: max over (L, m) of max/min layer ratio of batch-gradient norms']:.2f}), "
        + ("so the loss rescales the backpropagated signal nearly uniformly: it changes the earlier layers' "
           "gradients by the same factor as the output layer's, not only the output layer's."
           if uniform else
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
        "bound": Figure(_bound_figure(traj, n_layers),
                        "Left: the logit-gradient ratio against the softmax Jacobian's spectral norm (every point "
                        "lies under the diagonal ‖J‖₂ and under ½). Right: median per-sample ratio quad/CE per layer "
                        "over training, along the CE and the quad trajectories."),
        "sweep": Figure(_sweep_figure([r for r in rows if r["part"] == "sweep"], cfg),
                        "Median per-sample ratio quad/CE in each layer of ReLU nets of depth L and width m, at the "
                        "same weights: at initialization and after CE training."),
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
    fig.tight_layout()
    return fig


def _bound_figure(traj: dict[str, Probes], n_layers: int) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    every = [r for probes in traj.values() for _, r in probes]
    jn = np.concatenate([r["J_norm"] for r in every])
    axes[0].scatter(jn, _ratio(np.concatenate([r["quad_dz"] for r in every]),
                               np.concatenate([r["ce_dz"] for r in every])), s=4, alpha=0.5)
    axes[0].plot([0, 0.5], [0, 0.5], "k--", lw=1, label="ratio = ‖J‖₂ (sharpened bound)")
    axes[0].axhline(0.5, color="r", lw=1, label="½ (bound)")
    axes[0].set(xlabel="‖J_softmax(pₙ)‖₂", ylabel="‖∂ℓ_quad/∂zₙ‖ / ‖∂ℓ_CE/∂zₙ‖",
                title="logit gradients, every sample and probe")
    axes[0].legend(fontsize=8)
    for name, probes in traj.items():
        probe_steps = [step for step, _ in probes]
        for layer in range(n_layers):
            med = [_median_ratio(r, layer) for _, r in probes]
            axes[1].semilogy(probe_steps, med, ls="-" if name == "ce" else "--", marker="os^v<>"[layer % 6], ms=4,
                             label=f"W{layer + 1}{' (out)' if layer == n_layers - 1 else ''}, {name} trajectory")
    axes[1].set(xlabel="step", ylabel="median per-sample ratio quad/CE", title="ratio at the same weights")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _sweep_figure(sweep: list[dict[str, Any]], cfg: dict[str, Any]) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, stage in zip(axes, ("init", "trained"), strict=True):
        for depth in cfg["sweep_depths"]:
            for width in cfg["sweep_widths"]:
                cell = [r for r in sweep if r["stage"] == stage and r["depth"] == depth and r["width"] == width]
                pos = np.array([r["layer"] for r in cell]) / (depth + 1)
                ax.semilogy(pos, [r["median_ratio"] for r in cell], marker="o", label=f"L={depth}, m={width}")
        ax.set(title=f"sweep, {stage}" + (f" ({cfg['sweep_epochs']} epochs CE)" if stage == "trained" else ""),
               xlabel="layer l / (L + 1)  (1 = output layer)", ylabel="median per-sample ratio quad/CE")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


STUDY = register(Study(
    name="loss-gradients",
    question="How are ‖∂L/∂W‖ under cross-entropy and under the quadratic loss on softmax related, does the "
             "quadratic one vanish in training, and does the loss change the earlier layers' gradients?",
    notes="Source notes 000 (norms of the gradients of the quadratic and the cross-entropy loss) and 002 "
          "(does cross-entropy change the training of earlier layers?).",
    measure=measure,
    verdict=verdict,
    figures=figures,
    checks={"record_every": POSITIVE, "probe_every": POSITIVE, "probe_size": POSITIVE,
            "trajectories": Check(choices=LOSSES), "sweep_depths": POSITIVE, "sweep_widths": POSITIVE},
    validate=check_config,
    quick={"seed": 0, "depth": 2, "width": 64, "epochs": 10, "batch_size": 32, "lr": 0.1, "record_every": 5,
           "probe_every": 40, "probe_size": 128, "trajectories": ["ce", "quad"], "sweep_depths": [1, 4],
           "sweep_widths": [16, 64], "sweep_epochs": 5},
    full={"seed": 0, "depth": 2, "width": 64, "epochs": 40, "batch_size": 32, "lr": 0.1, "record_every": 10,
          "probe_every": 80, "probe_size": 200, "trajectories": ["ce", "quad"], "sweep_depths": [1, 2, 4, 8],
          "sweep_widths": [16, 64, 256], "sweep_epochs": 15},
))
