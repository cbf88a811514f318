# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Why cross-entropy?
#
# A classifier can be trained on the quadratic loss $\frac{1}{2}\lVert p - y \rVert^2$ between its
# output probabilities and the one-hot target, or on the cross-entropy $-\log p_y$. Both are zero when
# the network is right and sure. Their gradients are not the same, and this tutorial follows where they
# differ, in four questions:
#
# 1. Does an output that starts at the wrong end learn slowly, and does cross-entropy fix it?
# 2. How large can the quadratic loss's gradient be next to cross-entropy's? (Never more than half.)
# 3. Does the quadratic gradient die out as training fits the data? (Yes, like $(1 - p_y)^2$.)
# 4. Does the choice of loss change how the *earlier* layers learn, or only the output layer?
#
# The same questions are the subject of two of nablanet's studies, `saturation` and `loss-gradients`
# (`nablanet study saturation --quick`); here each is a small experiment you can change and rerun.

# %%
import matplotlib.pyplot as plt
import numpy as np

import nablanet as nn
from nablanet.studies.base import OKABE_ITO  # the colour-blind-safe palette of Okabe and Ito

plt.rcParams["axes.prop_cycle"] = plt.cycler(color=OKABE_ITO)
plt.rcParams["figure.constrained_layout.use"] = True
BLUE, ORANGE, GREEN, VERMILION = OKABE_ITO[:4]

# %% [markdown]
# ## 1. One sigmoid neuron stuck at the wrong end
#
# A single neuron $a = \sigma(w \cdot 1 + b)$ should output 0. Under the quadratic cost
# $C = \frac{1}{2} a^2$ the gradient with respect to its pre-activation $z$ carries the sigmoid's slope,
#
# $$\frac{\partial C}{\partial z} = a \, \sigma'(z) = a^2 (1 - a),$$
#
# and $\sigma'(z) = a(1 - a)$ is almost zero when $a$ is near 1, the wrong end. Under cross-entropy,
# $C = -\log(1 - a)$, the slope cancels: $\partial C / \partial z = a$, the error itself. We train the
# neuron from two starts with plain gradient descent, $\eta = 0.15$, as in chapter 3 of Nielsen's
# *Neural Networks and Deep Learning*.

# %%
def train_neuron(w0: float, b0: float, loss: nn.Loss, steps: int = 300, lr: float = 0.15) -> np.ndarray:
    """The neuron's output a after each gradient step (input 1, target 0)."""
    neuron = nn.Sequential(nn.Linear(1, 1, dtype=np.float64), nn.Sigmoid())
    neuron.load_state_dict({"0.weight": [[w0]], "0.bias": [b0]})
    opt = nn.optim.SGD(neuron.parameters(), lr=lr)
    x1, target = np.ones((1, 1)), np.zeros((1, 1))
    outputs = [float(neuron(x1)[0, 0])]
    for _ in range(steps):
        _, grads = nn.value_and_grad(neuron, loss, x1, target)
        for name, p in neuron.named_parameters():
            p.grad = grads[name]
        opt.step()
        outputs.append(float(neuron(x1)[0, 0]))
    return np.array(outputs)


starts = {"w = 0.6, b = 0.9": (0.6, 0.9), "w = 2, b = 2": (2.0, 2.0)}
neuron_runs = {(start, name): train_neuron(*wb, loss)
               for start, wb in starts.items()
               for name, loss in (("quadratic", nn.QuadraticLoss()), ("cross-entropy", nn.BCELoss()))}

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
for ax, start in zip(axes, starts, strict=True):
    for colour, name in ((BLUE, "quadratic"), (ORANGE, "cross-entropy")):
        ax.plot(neuron_runs[start, name], color=colour, label=name)
    ax.set(title=f"start {start}", xlabel="gradient step", ylabel="output a (target 0)")
    ax.legend()
fig.suptitle("Does a sigmoid neuron stuck at the wrong end learn under each cost?");

# %%
stuck_quad = neuron_runs["w = 2, b = 2", "quadratic"]
stuck_ce = neuron_runs["w = 2, b = 2", "cross-entropy"]
print(f"from (2, 2): quadratic {stuck_quad[0]:.3f} -> {stuck_quad[150]:.3f} after 150 steps, "
      f"cross-entropy {stuck_ce[0]:.3f} -> {stuck_ce[150]:.3f}")

# %% [markdown]
# From the good start both costs learn, cross-entropy faster. From the saturated start the quadratic
# cost barely moves for 150 steps, while cross-entropy goes straight down: its gradient is the error,
# whatever $\sigma'$ is.
#
# ## 2. Softmax outputs: the quadratic gradient is at most half of cross-entropy's
#
# With $C$ classes, logits $z$, $p = \mathrm{softmax}(z)$ and one-hot target $q$, write
# $e = p - q$. Tutorial 1 showed that cross-entropy's gradient at the logits is $e$. The quadratic loss
# $\frac{1}{2}\lVert p - q \rVert^2$ has gradient $e$ with respect to $p$, which the softmax's VJP turns into
#
# $$\frac{\partial \ell_{\mathrm{quad}}}{\partial z} = J(p) \, e, \qquad J(p) = \mathrm{diag}(p) - p p^\top .$$
#
# $J(p)$ is symmetric and positive semi-definite, and by Gershgorin's theorem each eigenvalue is at most
# $\max_j 2 p_j (1 - p_j) \le \frac{1}{2}$. So for every sample, at the same weights,
#
# $$\lVert J(p) e \rVert \le \lVert J(p) \rVert_2 \lVert e \rVert \le \frac{1}{2} \lVert e \rVert .$$
#
# We test it on 4,000 random logit vectors, from nearly uniform ($z$ of scale 0.1) to nearly one-hot
# (scale 20), pushing both losses' gradients through nablanet's own layers.

# %%
rng = np.random.default_rng(0)
C, M = 10, 4000
z = rng.standard_normal((M, C)) * np.geomspace(0.1, 20, M)[:, None]
labels = rng.integers(0, C, M)
onehot = np.eye(C)[labels]

ce = nn.CrossEntropyLoss(reduction="sum")          # sum: each row of the gradient is one sample's
_, ce_cache = ce.forward(z, labels)
grad_ce = ce.vjp(ce_cache)                          # p − q, (M, C)

softmax, quad = nn.Softmax(dim=-1), nn.QuadraticLoss(reduction="sum")
p, s_cache = softmax.forward(z)
_, q_cache = quad.forward(p, onehot)
grad_quad, _ = softmax.vjp(s_cache, quad.vjp(q_cache))   # J(p)(p − q), (M, C)

ratio = np.linalg.norm(grad_quad, axis=1) / np.linalg.norm(grad_ce, axis=1)
J = p[:, :, None] * np.eye(C) - p[:, :, None] * p[:, None, :]
J_norm = np.linalg.eigvalsh(J)[:, -1]               # ‖J(p)‖₂, the largest eigenvalue
print(f"largest ratio ‖∂ℓ_quad/∂z‖ / ‖∂ℓ_CE/∂z‖ over {M} samples: {ratio.max():.4f}")
print(f"largest ‖J(p)‖₂: {J_norm.max():.4f};  ratio ≤ ‖J(p)‖₂ on every sample: {bool(np.all(ratio <= J_norm + 1e-12))}")

# %%
fig, ax = plt.subplots(figsize=(6, 4))
ax.scatter(J_norm, ratio, s=4, alpha=0.4, color=BLUE, label="one random logit vector")
ax.plot([0, 0.5], [0, 0.5], color=VERMILION, label="ratio = ‖J(p)‖₂")
ax.axhline(0.5, color="grey", ls="--", label="the bound ½")
ax.set(xlabel="‖J(p)‖₂, the softmax Jacobian's largest eigenvalue",
       ylabel="‖∂ℓ_quad/∂z‖ / ‖∂ℓ_CE/∂z‖ (ratio)",
       title="Is the quadratic gradient ever more than half of cross-entropy's?")
ax.legend();

# %% [markdown]
# Every point lies under the diagonal and under ½, and the bound is tight: a sample split evenly between
# two classes, one of them the target, has $J(p)e = \frac{1}{2} e$. For nearly uniform $p$, at the start
# of training, $J(p)$ acts on $e$ (whose entries sum to zero) as $1/C$: the quadratic gradient starts ten
# times smaller than cross-entropy's.
#
# ## 3. Training with each loss
#
# We train the same two-hidden-layer ReLU network on the digits from the same initial weights and batch
# order, with cross-entropy and with the quadratic loss (a `Softmax` layer appended to the same layer
# objects, so the two models share their parameter names). A `nn.lab.Recorder` reads the first layer's
# gradient norm from each step's backward pass.

# %%
digits = nn.data.load_digits(seed=0, dtype=np.float64)
(x, y), (xv, yv) = digits.train, digits.validation


def relu_net(seed: int = 0) -> nn.Sequential:
    r = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(64, 64, dtype=np.float64, rng=r), nn.ReLU(),
                         nn.Linear(64, 64, dtype=np.float64, rng=r), nn.ReLU(),
                         nn.Linear(64, 10, dtype=np.float64, rng=r))


def with_head(body: nn.Sequential, loss_name: str) -> tuple[nn.Sequential, nn.Loss, np.ndarray, np.ndarray]:
    """The model, loss and training / validation targets for "ce" (logits) or "quad" (softmax + ½‖p − q‖²)."""
    if loss_name == "ce":
        return body, nn.CrossEntropyLoss(), y, yv
    return nn.Sequential(*body, nn.Softmax(dim=-1)), nn.QuadraticLoss(), np.eye(10)[y], np.eye(10)[yv]


runs = {}
for loss_name, lr in (("ce", 0.1), ("quad", 0.1), ("quad", 1.0), ("quad", 10.0)):
    body = relu_net(seed=0)
    model, loss, target, target_v = with_head(body, loss_name)
    recorder = nn.lab.Recorder(every=5, quantities=["grad_norm"])
    history = nn.fit(model, loss, nn.optim.SGD(model.parameters(), lr=lr), train=(x, target),
                     validation=(xv, target_v), epochs=20, batch_size=32, seed=0, callbacks=[recorder])
    runs[loss_name, lr] = {"body": body, "history": history, "recorder": recorder}
    print(f"{loss_name:4s} lr {lr:4g}: validation accuracy after 20 epochs {history['val_accuracy'][-1]:.3f}")

# %%
labels_of = {("ce", 0.1): "cross-entropy, lr 0.1", ("quad", 0.1): "quadratic, lr 0.1",
             ("quad", 1.0): "quadratic, lr 1", ("quad", 10.0): "quadratic, lr 10"}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
for colour, (key, run) in zip(OKABE_ITO, runs.items(), strict=False):
    steps, norms = run["recorder"].series("grad_norm", parameter="0.weight")
    ax1.semilogy(steps, norms, color=colour, lw=0.8, label=labels_of[key])
    ax2.plot(np.arange(1, 21), run["history"]["val_accuracy"], color=colour, marker=".", label=labels_of[key])
ax1.set(xlabel="optimizer step", ylabel="‖∂L/∂W₁‖ (batch gradient norm)", title="first layer's gradient")
ax2.set(xlabel="epoch", ylabel="validation accuracy (fraction)", title="what the network learns")
ax2.axhline(0.1, color="grey", lw=0.8)
ax1.legend(fontsize=8)
ax2.legend(fontsize=8)
fig.suptitle("How do the two losses train the same network from the same start?");

# %%
g_first = {key: run["recorder"].series("grad_norm", parameter="0.weight")[1][0] for key, run in runs.items()}
print(f"first step: ‖∂L/∂W₁‖ quadratic / cross-entropy = {g_first['quad', 0.1] / g_first['ce', 0.1]:.3f}")

# %% [markdown]
# At one shared learning rate the quadratic loss learns far less in 20 epochs. That gap is a step size:
# its gradient starts about $1/C = 0.1$ of cross-entropy's (the ratio above), and at ten times the rate
# the quadratic loss does as well as cross-entropy or better. At a hundred times the rate something else
# happens, which section 4 explains.
#
# ## 4. Does the quadratic gradient die out?
#
# Write $\delta = 1 - p_y$ for how far a sample is from fitted. For $p_y \ge \frac{1}{2}$,
# $\delta \le \lVert e \rVert \le \sqrt{2}\,\delta$, and every eigenvalue of $J(p)$ is at most
# $2\delta$, so
#
# $$\lVert \partial \ell_{\mathrm{CE}} / \partial z \rVert \sim \delta, \qquad \lVert \partial \ell_{\mathrm{quad}} / \partial z \rVert \le 2 \sqrt{2} \, \delta^2 .$$
#
# Both vanish as a sample is fitted, the quadratic one quadratically: on a log-log plot against $\delta$
# the slopes should be 1 and 2. We measure both losses' per-sample logit gradients on the training set of
# the network trained with the quadratic loss at lr 1.

# %%
def logit_gradients(body: nn.Sequential) -> dict[str, np.ndarray]:
    """Per training sample: ‖∂ℓ_CE/∂z‖ = ‖e‖, ‖∂ℓ_quad/∂z‖ = ‖J(p)e‖, the cosine between J(p)e and e,
    δ = 1 − p_y, p_max and whether the sample is classified correctly."""
    logits = body(x)
    probs = nn.Softmax(dim=-1)(logits)
    e = probs - np.eye(10)[y]
    jac = probs[:, :, None] * np.eye(10) - probs[:, :, None] * probs[:, None, :]
    je = np.einsum("nij,nj->ni", jac, e)
    ce_norm, quad_norm = np.linalg.norm(e, axis=1), np.linalg.norm(je, axis=1)
    return {"ce": ce_norm, "quad": quad_norm, "cos": np.sum(je * e, axis=1) / np.maximum(ce_norm * quad_norm, 1e-300),
            "delta": 1 - probs[np.arange(len(y)), y], "p_max": probs.max(axis=1),
            "correct": logits.argmax(axis=1) == y}


g = logit_gradients(runs["quad", 1.0]["body"])
fit_set = g["correct"] & (g["delta"] < 0.1) & (g["delta"] > 1e-8)
slope_quad = np.polyfit(np.log(g["delta"][fit_set]), np.log(g["quad"][fit_set]), 1)[0]
slope_ce = np.polyfit(np.log(g["delta"][fit_set]), np.log(g["ce"][fit_set]), 1)[0]
bound_used = np.max(g["quad"][g["delta"] <= 0.5] / g["delta"][g["delta"] <= 0.5] ** 2)
print(f"log-log slopes over {fit_set.sum()} fitted samples (δ < 0.1): quadratic {slope_quad:.2f}, "
      f"cross-entropy {slope_ce:.2f}")
print(f"largest ‖∂ℓ_quad/∂z‖ / δ² where p_y ≥ ½: {bound_used:.3f} (bound 2√2 = {2 * np.sqrt(2):.3f})")

# %%
fig, ax = plt.subplots(figsize=(6.4, 4.2))
ax.loglog(g["delta"], g["ce"], ".", ms=3, color=ORANGE, label="cross-entropy: ‖p − q‖")
ax.loglog(g["delta"], g["quad"], ".", ms=3, color=BLUE, label="quadratic: ‖J(p)(p − q)‖")
d_line = np.geomspace(1e-6, 0.5)
ax.loglog(d_line, 2 * np.sqrt(2) * d_line**2, color="grey", ls="--", label="2√2 δ², the bound")
ax.set(xlabel="δ = 1 − p_y (distance from fitted)", ylabel="per-sample ‖∂ℓ/∂z‖ (logit gradient norm)",
       title="How fast do the two gradients vanish as a sample is fitted?")
ax.legend(fontsize=8);

# %% [markdown]
# The slopes are 2 and 1: the quadratic loss stops pushing on a fitted sample much sooner, which is
# harmless. The harmful case is the other vertex. A sample saturated at a **wrong** class, $p_{\max}$ near
# 1 on a class that is not $y$, has $J(p) \to 0$ as well, so its quadratic gradient vanishes too, while
# cross-entropy's stays near $\sqrt{2}$. That is what happened at lr 10: the large first steps drove the
# outputs into a wrong corner, and the quadratic loss has no gradient to get out.

# %%
stuck = logit_gradients(runs["quad", 10.0]["body"])
print(f"quadratic loss at lr 10: training accuracy {stuck['correct'].mean():.3f}, "
      f"median p_max {np.median(stuck['p_max']):.6f}")
print(f"median per-sample logit gradient there: quadratic {np.median(stuck['quad']):.1e}, "
      f"cross-entropy {np.median(stuck['ce']):.2f}")

# %% [markdown]
# ## 5. The earlier layers
#
# Backpropagation from the logits to layer $l$ is one linear map per sample, $A^l_n$: a product of
# weights and ReLU masks that does not depend on the loss. Layer $l$'s per-sample error is
# $A^l_n \, \partial \ell / \partial z_n$, so the quadratic-to-cross-entropy ratio of its per-sample gradient
# norms is $\lVert A^l_n J e_n \rVert / \lVert A^l_n e_n \rVert$. When $J e_n$ is parallel to $e_n$, this is the
# output layer's ratio $\lVert J e_n \rVert / \lVert e_n \rVert$ in every layer. That holds exactly at uniform
# $p$ (where $J e = e / C$) and to first order in $\delta$ near the correct vertex. `nn.lab.per_sample_grad_norms`
# gives each sample's gradient norm in every layer, under each loss, at the same weights.

# %%
def layer_ratios(body: nn.Sequential) -> dict[str, np.ndarray]:
    """Per sample and weight matrix: ‖∂ℓ_quad/∂W‖ / ‖∂ℓ_CE/∂W‖ at the current weights (samples whose
    cross-entropy gradient is exactly zero in some layer, fitted to the last bit, are left out)."""
    quad_model = nn.Sequential(*body, nn.Softmax(dim=-1))
    norms_ce = nn.lab.per_sample_grad_norms(body, nn.CrossEntropyLoss(), x, y)
    norms_quad = nn.lab.per_sample_grad_norms(quad_model, nn.QuadraticLoss(), x, np.eye(10)[y])
    weights = ("0.weight", "2.weight", "4.weight")
    keep = np.all([norms_ce[name] > 0 for name in weights], axis=0)
    return {name: norms_quad[name][keep] / norms_ce[name][keep] for name in weights}


at_init = layer_ratios(relu_net(seed=0))
trained = layer_ratios(runs["ce", 0.1]["body"])
for stage, r in (("initialisation", at_init), ("after CE training", trained)):
    medians = ", ".join(f"{name} {np.median(v):.4f}" for name, v in r.items())
    spread = np.max(np.stack(list(r.values())), axis=0) / np.min(np.stack(list(r.values())), axis=0)
    print(f"{stage:18s} median ratio per layer: {medians};  per sample, largest / smallest layer ratio: "
          f"median {np.median(spread):.3f}")
cos_trained = logit_gradients(runs["ce", 0.1]["body"])["cos"]
print(f"after CE training, cosine between J(p)e and e: median {np.median(cos_trained):.4f}, "
      f"{np.mean(cos_trained > 0.99):.0%} of the samples above 0.99")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True, sharey=True)
for ax, (stage, r) in zip(axes, (("at initialisation", at_init), ("after 20 epochs of cross-entropy", trained)),
                          strict=True):
    ax.loglog(r["4.weight"], r["0.weight"], ".", ms=3, color=BLUE, label="one training sample")
    ax.loglog([1e-4, 0.5], [1e-4, 0.5], color=VERMILION, lw=1, label="same ratio in both layers")
    ax.set(xlabel="output layer: ‖∂ℓ_quad/∂W₃‖ / ‖∂ℓ_CE/∂W₃‖", ylabel="first layer: ‖∂ℓ_quad/∂W₁‖ / ‖∂ℓ_CE/∂W₁‖",
           title=stage)
    ax.legend(fontsize=8)
fig.suptitle("Does the loss rescale the first layer's gradient as much as the output layer's?");

# %% [markdown]
# ## What we saw
#
# - A sigmoid output stuck at the wrong end barely moves under the quadratic cost (its gradient carries
#   $\sigma' \approx 0$); cross-entropy's gradient is the error itself and moves it at once.
# - On softmax outputs the quadratic loss's logit gradient is $J(p)e$, never more than half of
#   cross-entropy's $e$ (the largest ratio measured is just under ½), and about $1/C$ of it at the start.
# - Trained at one shared rate the quadratic loss learns less; at ten times the rate it catches up. Near a
#   fitted sample its gradient vanishes like $(1 - p_y)^2$ against cross-entropy's $(1 - p_y)$ (slopes 2 and
#   1), and at a wrong vertex it vanishes too: at lr 10 the network got stuck near chance with a
#   quadratic gradient many orders of magnitude below cross-entropy's.
# - The earlier layers are not spared: for each sample the loss rescales every layer's gradient by the same
#   factor as the output layer's (to within a few percent), because backpropagation below the logits is the
#   same linear map for both losses.

# %%
assert stuck_quad[0] - stuck_quad[150] < 0.1 and stuck_ce[150] < 0.1        # stalled vs escaped
assert ratio.max() <= 0.5 and ratio.max() > 0.49 and np.all(ratio <= J_norm + 1e-12)
assert 0.08 < g_first["quad", 0.1] / g_first["ce", 0.1] < 0.12                 # about 1/C at the start
assert runs["quad", 0.1]["history"]["val_accuracy"][-1] < runs["ce", 0.1]["history"]["val_accuracy"][-1] - 0.2
assert runs["quad", 1.0]["history"]["val_accuracy"][-1] >= runs["ce", 0.1]["history"]["val_accuracy"][-1] - 0.02
assert 1.8 < slope_quad < 2.2 and 0.9 < slope_ce < 1.1 and bound_used <= 2 * np.sqrt(2) * (1 + 1e-9)
assert stuck["correct"].mean() < 0.2 and np.median(stuck["quad"]) < 1e-6 * np.median(stuck["ce"])
for r in (at_init, trained):
    per_sample_spread = np.max(np.stack(list(r.values())), axis=0) / np.min(np.stack(list(r.values())), axis=0)
    assert np.median(per_sample_spread) < 1.05
