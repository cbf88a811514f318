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
# # Batch size and gradient noise
#
# Stochastic gradient descent steps along the gradient of a mini-batch of $B$ samples instead of the
# gradient of all $N$. The mini-batch gradient is a noisy estimate of the full one, and this tutorial
# measures how noisy: the error falls like $1/B$. Then it asks what that means for training online
# ($B = 1$), with mini-batches, and with the full batch, and meets the **gradient noise scale**, the batch
# size at which the noise is as large as the signal.
#
# The instruments are `nn.lab.batch_size_sweep`, which draws mini-batches and measures their error, and
# `nn.lab.gradient_stats`, which computes the per-sample gradients' mean, variance and noise scale.

# %%
import matplotlib.pyplot as plt
import numpy as np

import nablanet as nn
from nablanet.studies.base import OKABE_ITO  # the colour-blind-safe palette of Okabe and Ito

plt.rcParams["axes.prop_cycle"] = plt.cycler(color=OKABE_ITO)
plt.rcParams["figure.constrained_layout.use"] = True

digits = nn.data.load_digits(seed=0, dtype=np.float64)
x, y = digits.train
N = len(x)
loss = nn.CrossEntropyLoss()


def tanh_net(seed: int = 0) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(64, 32, dtype=np.float64, rng=rng), nn.Tanh(),
                         nn.Linear(32, 10, dtype=np.float64, rng=rng))


print(f"N = {N} training images")

# %% [markdown]
# ## The 1/B law
#
# Let $g_n = \partial \ell_n / \partial \theta$ be the gradient of sample $n$'s loss, $g = \frac{1}{N}\sum_n g_n$ the
# full-batch gradient, and $g_B$ the mean over a mini-batch of $B$ samples. With
# $\Sigma = \frac{1}{N-1}\sum_n (g_n - g)(g_n - g)^\top$ the covariance of the per-sample gradients, the expected
# squared error of the mini-batch gradient is
#
# $$m_B = \mathbb{E} \lVert g_B - g \rVert^2 = \frac{\mathrm{tr}(\Sigma)}{B} \cdot \frac{N-1}{N} \quad \text{(drawn with replacement)}, \qquad m_B = \frac{\mathrm{tr}(\Sigma)}{B} \cdot \frac{N-B}{N} \quad \text{(without)} .$$
#
# With replacement the $B$ draws are independent, so their variances add and the mean's variance is the
# per-sample variance over $B$. An epoch's shuffled batches are drawn *without* replacement, and the
# finite-population factor $(N - B)/N$ bends the curve down to $m_N = 0$: the full batch has no error
# about itself. `batch_size_sweep` measures $m_B$ by drawing mini-batches, and gives the exact prediction
# beside it.

# %%
model = tanh_net()
sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
sweeps = {replace: nn.lab.batch_size_sweep(model, loss, x, y, sizes, draws=24, seed=0, replace=replace)
          for replace in (True, False)}
trace = sweeps[True].trace_cov
print(f"tr(Σ) = {trace:.3f}")
for replace, sweep in sweeps.items():
    rows = sweep.to_records()
    worst = max(abs(r["measured"] / r["predicted"] - 1) for r in rows)
    print(f"{'with' if replace else 'without':7s} replacement: measured / predicted within {worst:.0%} "
          f"over B = 1 … 1024 ({sweep.draws} draws each)")


def exponent(bs: np.ndarray, m: np.ndarray) -> float:
    """k in m ≈ c·Bᵏ, least squares on the logs."""
    return float(np.polyfit(np.log(bs), np.log(m), 1)[0])


bs = np.array(sizes, dtype=float)
with_repl = np.array([r["measured"] for r in sweeps[True].to_records()])
without = np.array([r["measured"] for r in sweeps[False].to_records()])
k_with = exponent(bs, with_repl)
k_without_raw = exponent(bs, without)
k_without_corrected = exponent(bs, without * N / (N - bs))     # the factor (N − B)/N divided out
print(f"fitted exponent k in m_B ∝ Bᵏ: with replacement {k_with:.3f}; without replacement {k_without_raw:.3f} "
      f"raw, {k_without_corrected:.3f} with the finite-population factor divided out")

# %%
fig, ax = plt.subplots(figsize=(6.6, 4.2))
fine = np.geomspace(1, 1024, 200)
ax.errorbar(bs, with_repl, yerr=[r["stderr"] for r in sweeps[True].to_records()], fmt="o",
            color=OKABE_ITO[0], label="measured, with replacement")
ax.errorbar(bs * 1.08, without, yerr=[r["stderr"] for r in sweeps[False].to_records()], fmt="s",
            color=OKABE_ITO[1], label="measured, without replacement")
ax.loglog(fine, trace / fine * (N - 1) / N, color=OKABE_ITO[0], lw=1, label="tr(Σ)/B · (N − 1)/N")
ax.loglog(fine, trace / fine * (N - fine) / N, color=OKABE_ITO[1], lw=1, ls="--", label="tr(Σ)/B · (N − B)/N")
ax.set(xlabel="batch size B (samples)", ylabel="m_B = E‖g_B − g‖² (squared gradient error)",
       title="Does the mini-batch gradient's error fall as 1/B?")
ax.legend(fontsize=8);

# %% [markdown]
# The measurements sit on the predictions, with replacement on the straight line of slope −1, without
# replacement bending down as $B$ approaches $N$. Nothing about the network made this happen: a mean of $B$
# independent draws from any $N$ vectors has this variance. What depends on the network and on where
# training is, is the size of $\mathrm{tr}(\Sigma)$ next to the signal $\lVert g \rVert^2$.
#
# ## The noise scale
#
# The mini-batch gradient's noise, $\mathrm{tr}(\Sigma)/B$, equals the squared signal $\lVert g \rVert^2$ at
#
# $$B_{\mathrm{simple}} = \frac{\mathrm{tr}(\Sigma)}{\lVert g \rVert^2},$$
#
# the "simple" noise scale of McCandlish et al. (2018). On a locally quadratic loss, one step with the best
# step size at batch size $B$ makes a fraction $1/(1 + B_{\mathrm{simple}}/B)$ of the progress of a full-batch
# step. For $B \ll B_{\mathrm{simple}}$, progress per step grows in proportion to $B$, so per sample processed
# nothing is lost by taking small batches; for $B \gg B_{\mathrm{simple}}$ larger batches buy almost nothing. We
# measure $B_{\mathrm{simple}}$ on the whole training set with `gradient_stats` at initialisation and after each
# epoch of mini-batch training.

# %%
stats = nn.lab.gradient_stats(model, loss, x, y).total
print(f"at initialisation: tr(Σ) = {stats.trace_cov:.3f}, ‖g‖² = {stats.grad_sq_norm:.4f}, "
      f"B_simple = {stats.noise_scale:.0f}")

# %% [markdown]
# ## Online, mini-batch, full batch
#
# Now we train the same network from the same start three ways: online ($B = 1$, $N$ steps per epoch),
# with mini-batches of 32 ($\lceil N/32 \rceil = 40$ steps per epoch) and with the full batch (one step per
# epoch). Each gets the learning rate from a small grid that gives it the lowest training loss after
# 5 epochs. The training loss on all $N$ samples is measured after each of the first 5 steps and after every
# epoch, and for the mini-batches the noise scale after every epoch.

# %%
grid = {"online (B = 1)": (1, [0.03, 0.1, 0.3]),
        "mini-batch (B = 32)": (32, [0.1, 0.3, 1.0, 3.0]),
        "full batch (B = N)": (None, [0.3, 1.0, 3.0, 10.0])}
EPOCHS = 5


def train(batch_size: int | None, lr: float) -> dict[str, np.ndarray]:
    """Train a fresh network; the full training loss after each of the first EPOCHS steps and after each epoch,
    and for the mini-batches gradient_stats on all N samples after each epoch (index 0: before training)."""
    net = tanh_net()
    start = nn.evaluate(net, loss, x, y)["loss"]
    run = {"loss": [start], "first steps": [start], "stats": [stats]}

    def after_step(step: int, logs: dict, tape: nn.Tape) -> None:
        if step < EPOCHS:                           # steps count from 0: step + 1 steps are done
            run["first steps"].append(nn.evaluate(net, loss, x, y)["loss"])

    def after_epoch(epoch: int, logs: dict) -> None:
        run["loss"].append(nn.evaluate(net, loss, x, y)["loss"])
        if batch_size == 32:
            run["stats"].append(nn.lab.gradient_stats(net, loss, x, y).total)

    watch = nn.callbacks.LambdaCallback(on_batch_end=after_step, on_epoch_end=after_epoch)
    nn.fit(net, loss, nn.optim.SGD(net.parameters(), lr=lr), train=(x, y), epochs=EPOCHS, batch_size=batch_size,
           seed=0, callbacks=[watch])
    return {"lr": lr, "loss": np.array(run["loss"]), "first steps": np.array(run["first steps"]),
            "stats": run["stats"], "steps per epoch": -(-N // (batch_size or N))}


training = {}
for setting, (batch_size, rates) in grid.items():
    runs = [train(batch_size, lr) for lr in rates]
    training[setting] = min(runs, key=lambda run: run["loss"][-1] if np.isfinite(run["loss"][-1]) else np.inf)
    best = training[setting]
    print(f"{setting:20s} best lr {best['lr']:<5g} ({best['steps per epoch']:4d} steps per epoch): "
          f"training loss after {EPOCHS} epochs {best['loss'][-1]:.3f}")
minibatch_stats = training["mini-batch (B = 32)"]["stats"]
noise_scale = np.array([s.noise_scale for s in minibatch_stats])
trace_cov = np.array([s.trace_cov for s in minibatch_stats])
grad_sq = np.array([s.grad_sq_norm for s in minibatch_stats])
print("after each epoch of mini-batch training (epoch 0 = initialisation):")
print("  B_simple   ", " ".join(f"{v:8.0f}" for v in noise_scale))
print("  tr(Σ)      ", " ".join(f"{v:8.3f}" for v in trace_cov))
print("  ‖g‖²       ", " ".join(f"{v:8.4f}" for v in grad_sq))
print("training loss after 5 steps:", ", ".join(f"{k} {v['first steps'][EPOCHS]:.3f}" for k, v in training.items()))

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
for setting, run in training.items():
    epochs = np.arange(EPOCHS + 1)
    ax1.plot(epochs, run["loss"], marker="o", label=f"{setting}, lr {run['lr']:g}")
    steps = np.concatenate([np.arange(1, EPOCHS + 1), epochs[1:] * run["steps per epoch"]])
    values = np.concatenate([run["first steps"][1:], run["loss"][1:]])
    order = np.argsort(steps, kind="stable")
    ax2.semilogx(steps[order], values[order], marker="o", label=f"{setting}, lr {run['lr']:g}")
ax1.set(xlabel="epoch (passes over the N samples)", ylabel="training loss on all N samples (nats)",
        title="per epoch: the same number of samples")
ax2.set(xlabel="optimizer steps", ylabel="training loss on all N samples (nats)", title="per step")
ax1.legend(fontsize=8)
ax2.legend(fontsize=8)
fig.suptitle("Online, mini-batch or full batch: which learns fastest per epoch, and per step?");

# %% [markdown]
# Per epoch, every setting sees every sample once, but online takes 1,258 steps, mini-batches 40 and the
# full batch one. With $B_{\mathrm{simple}}$ in the tens to hundreds, a step at $B = 32$ makes a good
# fraction of a full step's progress at 1/40 of its cost, so per epoch the small batches are far ahead. Per
# step the order reverses: a full-batch step is worth more than a mini-batch step, and a mini-batch step
# more than an online one. (In wall time online is the slowest of the three in NumPy, where every step has a
# fixed overhead; that is a property of the implementation, not of the method.)
#
# The noise scale is not a constant of the network. It drops in the first epoch, while the network learns
# fast and the mean gradient is large, and then it jumps by an order of magnitude from one epoch to the
# next. Both of its parts move, but the squared signal $\lVert g \rVert^2$ swings far more than the noise
# $\mathrm{tr}(\Sigma)$: at this large rate each SGD step overshoots across the steepest directions of the
# loss (tutorial 6 measures them), and where it lands decides how large the full gradient is. A noise
# scale measured at one moment of training says little about the next.
#
# ## What we saw
#
# - The mini-batch gradient's squared error follows $\mathrm{tr}(\Sigma)/B$: the fitted exponent is −1 with
#   replacement, and also without replacement once the finite-population factor $(N - B)/N$ is divided out.
# - The noise scale $B_{\mathrm{simple}} = \mathrm{tr}(\Sigma)/\lVert g \rVert^2$ of this network is about 65 at
#   initialisation; in training it dips and then varies by more than a factor of 5 from epoch to epoch,
#   driven by the swings of $\lVert g \rVert^2$ rather than of $\mathrm{tr}(\Sigma)$.
# - Per epoch, online and mini-batch training reach a far lower training loss than full-batch gradient
#   descent, each at its best rate of the grid; per step, the full batch makes the most progress.

# %%
assert abs(k_with + 1) < 0.05 and abs(k_without_corrected + 1) < 0.05 and k_without_raw < k_without_corrected
assert all(abs(r["measured"] / r["predicted"] - 1) < 0.3 for s in sweeps.values() for r in s.to_records())
assert 30 < stats.noise_scale < 130 and noise_scale[1] < noise_scale[0]
assert noise_scale[1:].max() > 5 * noise_scale[1:].min()
assert grad_sq[1:].max() / grad_sq[1:].min() > 2 * trace_cov[1:].max() / trace_cov[1:].min()
final = {setting: run["loss"][-1] for setting, run in training.items()}
assert final["online (B = 1)"] < final["full batch (B = N)"] / 4
assert final["mini-batch (B = 32)"] < final["full batch (B = N)"] / 4
# per step: after the 5 steps the full batch took in all, the mini-batches are behind it and online further behind
after_5 = {setting: run["first steps"][EPOCHS] for setting, run in training.items()}
assert after_5["full batch (B = N)"] < after_5["mini-batch (B = 32)"] < after_5["online (B = 1)"]
