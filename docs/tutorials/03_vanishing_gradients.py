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
# # Vanishing gradients
#
# In a deep network the early layers can learn far more slowly than the late ones. This tutorial
# measures by how much, layer by layer, and how it depends on the depth, the activation function and the
# initialisation of the weights.
#
# For a multilayer perceptron $z^l = W^l a^{l-1} + b^l$, $a^l = f(z^l)$, the error of layer $l$ is
# $\delta^l = \partial C / \partial z^l$, and backpropagation computes it from the layer above:
#
# $$\delta^l = f'(z^l) \odot (W^{l+1})^\top \delta^{l+1} .$$
#
# Each layer back multiplies the error by a weight matrix and by the activation's slope. Since
# $\partial C / \partial b^l = \delta^l$, the length of the bias gradient $\lVert \partial C / \partial b^l \rVert$, averaged over
# a batch, measures how fast layer $l$ learns: Nielsen calls it the **speed of learning** of the layer
# (chapter 5 of *Neural Networks and Deep Learning*). nablanet's study `vanishing` measures it on MNIST;
# here we use the 8×8 digits, so that everything runs in seconds.

# %%
import itertools

import matplotlib.pyplot as plt
import numpy as np

import nablanet as nn
from nablanet.studies.base import OKABE_ITO  # the colour-blind-safe palette of Okabe and Ito

plt.rcParams["axes.prop_cycle"] = plt.cycler(color=OKABE_ITO)
plt.rcParams["figure.constrained_layout.use"] = True

digits = nn.data.load_digits(seed=0, dtype=np.float64)
(x, y), (xv, yv) = digits.train, digits.validation
x_probe, y_probe = x[:500], y[:500]          # the batch the speeds are measured on

# %% [markdown]
# ## Networks to compare
#
# `depth` hidden layers of 30 units, an activation, and one of four initialisations ($n_{\mathrm{in}}$ is a
# layer's fan-in, $n_{\mathrm{out}}$ its fan-out):
#
# - **pytorch**: nablanet's and PyTorch's default for `Linear`, $W, b \sim U(\pm 1/\sqrt{n_{\mathrm{in}}})$;
# - **xavier**: Glorot and Bengio (2010), $W \sim U(\pm \sqrt{6/(n_{\mathrm{in}} + n_{\mathrm{out}})})$, $b = 0$, chosen so that
#   a layer with $f'(0) = 1$ (tanh) keeps the variance of the signal in both directions;
# - **kaiming**: He et al. (2015), $W \sim N(0, 2/n_{\mathrm{in}})$, $b = 0$: the factor 2 makes up for the half of
#   the ReLU units that are off;
# - **normal**: $W, b \sim N(0, 1)$, the initialisation of Nielsen's first chapter.

# %%
ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}
INITS = ("pytorch", "xavier", "kaiming", "normal")


def mlp(depth: int, activation: str, init: str, seed: int, width: int = 30) -> nn.Sequential:
    """64 inputs, `depth` hidden layers of `width` units, 10 logits. Hidden layer l is module 2(l − 1)."""
    rng = np.random.default_rng(seed)
    sizes = [64] + [width] * depth + [10]
    layers: list[nn.Layer] = []
    for k in range(depth + 1):
        linear = nn.Linear(sizes[k], sizes[k + 1], dtype=np.float64, rng=rng)   # "pytorch" as it comes
        if init == "xavier":
            nn.init.xavier_uniform_(linear.weight, rng=rng)
            nn.init.zeros_(linear.bias)
        elif init == "kaiming":
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu", rng=rng)
            nn.init.zeros_(linear.bias)
        elif init == "normal":
            nn.init.normal_(linear.weight, 0.0, 1.0, rng=rng)
            nn.init.normal_(linear.bias, 0.0, 1.0, rng=rng)
        layers.append(linear)
        if k < depth:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def speeds(model: nn.Sequential) -> np.ndarray:
    """‖∂C/∂bˡ‖ for the hidden layers l = 1..L, C the cross-entropy averaged over the probe batch."""
    _, grads = nn.value_and_grad(model, nn.CrossEntropyLoss(), x_probe, y_probe)
    depth = (len(model) - 1) // 2
    return np.array([np.linalg.norm(grads[f"{2 * k}.bias"]) for k in range(depth)])


# %% [markdown]
# ## Which layers learn fastest at initialisation?
#
# Six hidden layers, the default initialisation, each activation:

# %%
fig, ax = plt.subplots(figsize=(6.4, 4))
for activation in ACTIVATIONS:
    s = speeds(mlp(6, activation, "pytorch", seed=0))
    ax.semilogy(np.arange(1, 7), s, marker="o", label=activation)
    print(f"{activation:7s} speeds, layer 1 to 6: " + "  ".join(f"{v:.1e}" for v in s))
ax.set(xlabel="hidden layer l (1 = nearest the input)", ylabel="speed of learning ‖∂C/∂bˡ‖ (gradient norm)",
       title="Which layers learn fastest at initialisation? (6 sigmoid, tanh or ReLU layers)")
ax.legend();

# %% [markdown]
# With sigmoids, every layer back is several times slower than the one above it: the first hidden layer
# learns about ten thousand times more slowly than the sixth. Tanh and ReLU lose less per layer, but with
# this initialisation they lose too.
#
# ## By depth, activation and initialisation
#
# The ratio $\lVert \delta^L \rVert / \lVert \delta^1 \rVert$, last hidden layer over first, is 1 when every layer
# learns at the same speed, above 1 when the gradient vanishes on its way back, below 1 when it explodes.
# We take the median over three seeds for each depth, activation and initialisation.

# %%
DEPTHS = [2, 4, 6, 8, 10]
ratio = {}
for activation in ACTIVATIONS:
    for init in INITS:
        for depth in DEPTHS:
            per_seed = []
            for seed in range(3):
                s = speeds(mlp(depth, activation, init, seed))
                per_seed.append(s[-1] / s[0])
            ratio[activation, init, depth] = float(np.median(per_seed))

# the factor g by which each extra layer changes the ratio: ratio(L) ≈ c·g^(L − 1), fitted in log space
factor = {(a, i): float(np.exp(np.polyfit(DEPTHS, np.log([ratio[a, i, d] for d in DEPTHS]), 1)[0]))
          for a in ACTIVATIONS for i in INITS}
print("per-layer factor g (1 = no vanishing; > 1 vanishing; < 1 exploding)")
print("         " + "".join(f"{i:>10s}" for i in INITS))
for a in ACTIVATIONS:
    print(f"{a:8s} " + "".join(f"{factor[a, i]:10.2f}" for i in INITS))

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True)
for ax, activation in zip(axes, ACTIVATIONS, strict=True):
    for init in INITS:
        ax.semilogy(DEPTHS, [ratio[activation, init, d] for d in DEPTHS], marker="o", label=init)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(title=activation, xlabel="number of hidden layers L")
    ax.legend(title="initialisation", fontsize=8)
axes[0].set_ylabel("‖δᴸ‖ / ‖δ¹‖ (last over first hidden layer)")
fig.suptitle("How much faster does the last hidden layer learn than the first?");

# %% [markdown]
# Three regimes:
#
# - **Sigmoid vanishes with every initialisation**, from 1.5-fold per layer with $N(0, 1)$ weights to
#   7-fold with the default. Its slope is at most $\sigma'(0) = \frac{1}{4}$, and its outputs are all
#   positive, so none of these weight variances undoes the loss per layer.
# - **Tanh with Xavier and ReLU with Kaiming keep every layer at about the same speed**, at any depth:
#   these are the pairs each initialisation was derived for.
# - **$N(0, 1)$ weights** are far too large for 30 inputs: tanh saturates and ReLU's signal grows layer by
#   layer, and the gradient *explodes* on its way back (ratios below 1), by orders of magnitude for ReLU.
#
# ## During training
#
# Initialisation is the start. Does the gap persist once the weights move? A `nn.lab.Recorder` reads each
# layer's bias gradient from the backward pass of every 10th training step, with no extra computation.
# Four hidden layers; sigmoid with the default initialisation against tanh with Xavier and ReLU with Kaiming.

# %%
setups = {"sigmoid, pytorch": ("sigmoid", "pytorch", 0.5), "tanh, xavier": ("tanh", "xavier", 0.05),
          "relu, kaiming": ("relu", "kaiming", 0.05)}
training = {}
for label, (activation, init, lr) in setups.items():
    model = mlp(4, activation, init, seed=0)
    recorder = nn.lab.Recorder(every=10, quantities=["grad_norm"])
    history = nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=lr), train=(x, y),
                     validation=(xv, yv), epochs=10, batch_size=32, seed=0, callbacks=[recorder])
    steps = recorder.series("grad_norm", parameter="0.bias")[0]
    layer_speeds = np.array([recorder.series("grad_norm", parameter=f"{2 * k}.bias")[1] for k in range(4)])
    training[label] = {"steps": steps, "speeds": layer_speeds, "accuracy": history["val_accuracy"][-1]}
    ratio_t = layer_speeds[-1] / layer_speeds[0]
    print(f"{label:17s} lr {lr:<5g} validation accuracy {training[label]['accuracy']:.3f};  "
          f"‖δ⁴‖/‖δ¹‖ over training: median {np.median(ratio_t):.1f}, range {ratio_t.min():.1f} to {ratio_t.max():.1f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True)
for ax, (label, run) in zip(axes, training.items(), strict=True):
    for k in range(4):
        ax.semilogy(run["steps"], run["speeds"][k], lw=1, label=f"hidden layer {k + 1}")
    ax.set(title=f"{label} (validation accuracy {run['accuracy']:.2f})", xlabel="optimizer step")
    ax.legend(fontsize=8)
axes[0].set_ylabel("speed of learning ‖∂C/∂bˡ‖ (batch gradient norm)")
fig.suptitle("Does the gap between the layers' speeds persist during training?");

# %% [markdown]
# It does. In the sigmoid network the first hidden layer keeps learning tens to hundreds of times more
# slowly than the fourth throughout, and in ten epochs the network has not left chance accuracy (such a
# plateau is what momentum is meant to shorten; see nablanet's `momentum` study). With tanh and Xavier, or
# ReLU and Kaiming, the four layers learn at comparable speeds (the first even a little faster) and the
# network learns.
#
# ## What we saw
#
# - The speed of learning $\lVert \partial C / \partial b^l \rVert$ of a layer is its backpropagated error, and it
#   is multiplied per layer by the activation's slope and a weight matrix.
# - With sigmoid units it falls per layer whatever the initialisation, geometrically with depth: with the
#   default initialisation, six layers deep, the first learns about $10^4$ times more slowly than the last.
# - Tanh with Xavier and ReLU with Kaiming keep the last-to-first ratio within a factor of 3 at every depth
#   up to 10; weights drawn from $N(0, 1)$ make the gradient explode instead.
# - The gap persists during training: the sigmoid network's first layer stays more than 20 times slower
#   than its fourth at every recorded step, and the network stays at chance, while the ReLU network
#   learns.

# %%
assert ratio["sigmoid", "pytorch", 6] > 1e3 and all(factor["sigmoid", i] > 1.3 for i in INITS)
assert all(ratio["sigmoid", "pytorch", a] < ratio["sigmoid", "pytorch", b] for a, b in itertools.pairwise(DEPTHS))
assert all(1 / 3 < ratio["tanh", "xavier", d] < 3 and 1 / 3 < ratio["relu", "kaiming", d] < 3 for d in DEPTHS)
assert ratio["relu", "normal", 4] < 0.1 and ratio["tanh", "normal", 10] < 0.1
sigmoid_ratio = training["sigmoid, pytorch"]["speeds"][-1] / training["sigmoid, pytorch"]["speeds"][0]
assert sigmoid_ratio.min() > 20 and training["sigmoid, pytorch"]["accuracy"] < 0.3
assert training["relu, kaiming"]["accuracy"] > 0.85
