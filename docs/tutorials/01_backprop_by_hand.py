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
# # Backprop by hand
#
# Backpropagation is the chain rule applied from the loss backwards, one layer at a time. Each layer
# receives $dy = \partial L / \partial y$, the gradient of the loss with respect to its output, and
# hands back the gradient with respect to its input and its parameters. That map is a
# **vector-Jacobian product** (VJP): $dx = J^\top dy$ with $J = \partial y / \partial x$, computed without
# ever building $J$.
#
# In this tutorial we write every VJP of a two-layer network out by hand in NumPy, with the shape of
# every array, and check them three ways: against each of nablanet's layers, against
# `nn.value_and_grad` (the whole backward pass), and against central finite differences, which know
# nothing about backpropagation. Then we look at the softmax Jacobian and see why softmax followed by
# cross-entropy has the famously simple gradient $p - y$.
#
# Index letters, as in nablanet's docstrings: $n$ indexes the $N$ samples of the batch, $i$ the inputs,
# $o$ the outputs of a linear layer, $c$ the classes.

# %%
import matplotlib.pyplot as plt
import numpy as np

import nablanet as nn
from nablanet.studies.base import OKABE_ITO  # the colour-blind-safe palette of Okabe and Ito

plt.rcParams["axes.prop_cycle"] = plt.cycler(color=OKABE_ITO)
plt.rcParams["figure.constrained_layout.use"] = True
rng = np.random.default_rng(0)

# %% [markdown]
# ## The network and a batch
#
# A batch of $N = 16$ handwritten digits (8×8 pixels, so $i = 64$ inputs), a hidden layer of $o = 32$
# tanh units and $c = 10$ classes:
#
# $$z^{(1)} = x W_1^\top + b_1, \quad a = \tanh(z^{(1)}), \quad z^{(2)} = a W_2^\top + b_2, \quad p = \mathrm{softmax}(z^{(2)})$$
#
# $$L = -\frac{1}{N} \sum_{n} \log p_{n y_n}$$
#
# with shapes $x$ (N, i), $W_1$ (o, i), $b_1$ (o), $z^{(1)}$ and $a$ (N, o), $W_2$ (c, o), $b_2$ (c),
# $z^{(2)}$ and $p$ (N, c). We work in float64 so that the checks below can be tight.

# %%
digits = nn.data.load_digits(seed=0, dtype=np.float64)
x, y = digits.train[0][:16], digits.train[1][:16]
N, i, o, c = len(x), x.shape[1], 32, 10

model = nn.Sequential(nn.Linear(i, o, dtype=np.float64, rng=rng), nn.Tanh(), nn.Linear(o, c, dtype=np.float64, rng=rng))
loss = nn.CrossEntropyLoss()
W1, b1 = model[0].weight.data, model[0].bias.data
W2, b2 = model[2].weight.data, model[2].bias.data
print("x", x.shape, " W1", W1.shape, " b1", b1.shape, " W2", W2.shape, " b2", b2.shape)

# %% [markdown]
# The forward pass by hand. The softmax subtracts each row's maximum first: softmax is unchanged by a
# shift of its input, and the shift keeps `exp` from overflowing.

# %%
def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


z1 = x @ W1.T + b1                      # (N, o)
a = np.tanh(z1)                         # (N, o)
z2 = a @ W2.T + b2                      # (N, c)
p = softmax(z2)                         # (N, c)
L = -np.mean(np.log(p[np.arange(N), y]))
Y = np.eye(c)[y]                        # one-hot targets (N, c)

value, grads = nn.value_and_grad(model, loss, x, y)
print(f"loss by hand {L:.12f}, nablanet {value:.12f}")
assert abs(L - value) < 1e-12 and np.allclose(model(x), z2, rtol=1e-12, atol=1e-14)

# %% [markdown]
# ## The backward pass, one VJP at a time
#
# **Loss.** With the mean over the batch, $\partial L / \partial z^{(2)}_{nc} = (p_{nc} - Y_{nc})/N$, where
# $Y$ is the one-hot matrix of the targets (the last section derives it). Shape (N, c).
#
# **Second linear layer**, $z^{(2)} = a W_2^\top + b_2$, receives $dz^{(2)}$ (N, c):
#
# $$dW_2 = (dz^{(2)})^\top a \;\; (c, o), \qquad db_2 = \sum_n dz^{(2)}_n \;\; (c), \qquad da = dz^{(2)} W_2 \;\; (N, o)$$
#
# The weight gradient sums over the batch: each sample contributes the outer product of its output
# gradient and its input, $dW_2 = \sum_n dz^{(2)}_n a_n^\top$.
#
# **Tanh**, elementwise, so its Jacobian is diagonal and the VJP is a product: with
# $\tanh' = 1 - \tanh^2$,
#
# $$dz^{(1)} = da \odot (1 - a^2) \;\; (N, o)$$
#
# **First linear layer**, the same three formulas one layer down:
#
# $$dW_1 = (dz^{(1)})^\top x \;\; (o, i), \qquad db_1 = \sum_n dz^{(1)}_n \;\; (o), \qquad dx = dz^{(1)} W_1 \;\; (N, i)$$

# %%
dz2 = (p - Y) / N                       # (N, c)  the loss's VJP
dW2 = dz2.T @ a                         # (c, o)
db2 = dz2.sum(axis=0)                   # (c,)
da = dz2 @ W2                           # (N, o)
dz1 = da * (1 - a**2)                   # (N, o)  tanh's VJP
dW1 = dz1.T @ x                         # (o, i)
db1 = dz1.sum(axis=0)                   # (o,)
dx = dz1 @ W1                           # (N, i)
by_hand = {"0.weight": dW1, "0.bias": db1, "2.weight": dW2, "2.bias": db2}
for name, g in by_hand.items():
    print(f"{name:9s} {g.shape!s:9s} = nablanet's {grads[name].shape}")

# %% [markdown]
# ## Check 1: each layer's own VJP
#
# Every nablanet layer has the two functions we just wrote: `forward(x) -> (y, cache)` and
# `vjp(cache, dy) -> (dx, grads)`. `Sequential.backward` calls the VJPs in reverse order and returns
# the **tape**: for each layer, the $dy$ it received and the parameter gradients it produced. So we can
# compare each hand-written line with the layer that computes it.

# %%
out, caches = model.forward(x, train=True)
value_, lcache = loss.forward(out, y)
tape = model.backward(caches, loss.vjp(lcache))
seen = {entry.name: entry for entry in tape}

def rel_err(a_: np.ndarray, b_: np.ndarray) -> float:
    """max |a − b| / max |b|: the error in units of the array's largest entry."""
    return float(np.max(np.abs(a_ - b_)) / np.max(np.abs(b_)))

checks = {
    "dy of layer 2 = dz2": rel_err(dz2, seen["2"].dy),
    "dy of layer 1 (tanh) = da": rel_err(da, seen["1"].dy),
    "dy of layer 0 = dz1": rel_err(dz1, seen["0"].dy),
    "layer 0's dx": rel_err(dx, model[0].vjp(caches[0], dz1)[0]),
}
for what, err in checks.items():
    print(f"{what:28s} relative error {err:.1e}")
assert max(checks.values()) < 1e-12

# %% [markdown]
# ## Check 2: `nn.value_and_grad`, and check 3: finite differences
#
# `nn.value_and_grad(model, loss, x, y)` runs the same forward and backward and returns the gradients
# by parameter name. Finite differences need no backward pass at all: nudge one parameter entry
# $\theta_k$ by $\pm\varepsilon$ and
#
# $$\frac{\partial L}{\partial \theta_k} \approx \frac{L(\theta + \varepsilon e_k) - L(\theta - \varepsilon e_k)}{2 \varepsilon}$$
#
# with an error of order $\varepsilon^2$ from the Taylor series and of order $10^{-16}/\varepsilon$ from
# rounding; $\varepsilon = 10^{-6}$ balances the two in float64. We difference our own NumPy forward pass,
# entry by entry, for all 2,410 parameters.

# %%
def loss_of(params: dict[str, np.ndarray]) -> float:
    hidden = np.tanh(x @ params["0.weight"].T + params["0.bias"])
    probs = softmax(hidden @ params["2.weight"].T + params["2.bias"])
    return float(-np.mean(np.log(probs[np.arange(N), y])))

eps = 1e-6
params = {name: p_.data.copy() for name, p_ in model.named_parameters()}
numeric = {}
for name, theta in params.items():
    g = np.zeros_like(theta)
    for k in np.ndindex(theta.shape):
        saved = theta[k]
        theta[k] = saved + eps
        up = loss_of(params)
        theta[k] = saved - eps
        down = loss_of(params)
        theta[k] = saved
        g[k] = (up - down) / (2 * eps)
    numeric[name] = g

errors = {name: (rel_err(by_hand[name], grads[name]), rel_err(by_hand[name], numeric[name])) for name in params}
for name, (vs_backprop, vs_fd) in errors.items():
    print(f"{name:9s} hand vs value_and_grad {vs_backprop:.1e}   hand vs finite differences {vs_fd:.1e}")

# %% [markdown]
# nablanet has this check built in: `nn.gradcheck` differences the model in float64, parameter by
# parameter and layer by layer, and names the layer to blame when one disagrees.

# %%
report = nn.gradcheck(model, loss, x, y)
print("gradcheck passed:", report.passed, f"(largest relative error {report.max_rel_error:.1e})")

# %%
fig, ax = plt.subplots(figsize=(8, 3.8))
names = list(errors)
pos = np.arange(len(names))
ax.bar(pos - 0.2, [max(errors[n_][0], 1e-18) for n_ in names], width=0.4, label="hand vs nablanet's backprop")
ax.bar(pos + 0.2, [errors[n_][1] for n_ in names], width=0.4, label="hand vs central differences (ε = 1e-6)")
ax.set_yscale("log")
ax.set_xticks(pos, names)
ax.set_ylim(1e-18, 1e-3)
ax.set_xlabel("parameter")
ax.set_ylabel("max relative error (dimensionless)")
ax.set_title("Do hand-written gradients match backprop and finite differences?")
ax.legend(loc="upper left");

# %% [markdown]
# The hand-written gradients and nablanet's agree to the last bits of float64, about $10^{-16}$: they are
# the same arithmetic. Finite differences agree to about $10^{-8}$, the accuracy central differences can
# reach.
#
# ## The softmax Jacobian, and why softmax + cross-entropy gives $p - y$
#
# Softmax couples the classes: every $p_j$ depends on every logit $z_k$. Differentiating
# $p_j = e^{z_j} / \sum_m e^{z_m}$ gives $\partial p_j / \partial z_k = p_j (\delta_{jk} - p_k)$, per sample the
# $c \times c$ matrix
#
# $$J(p) = \mathrm{diag}(p) - p p^\top$$
#
# It is symmetric, its rows sum to zero ($J \mathbf{1} = p - p (p^\top \mathbf{1}) = 0$: adding a constant to
# every logit changes nothing), and it is positive semi-definite. `nn.jacobian` builds the Jacobian of
# any layer by pushing the basis vectors through its VJP; for `nn.Softmax` it must be this matrix.

# %%
J = p[:, :, None] * np.eye(c) - p[:, :, None] * p[:, None, :]      # (N, c, c), one matrix per sample
J_nablanet = nn.jacobian(nn.Softmax(dim=-1), z2)                    # (N, out, in)
print("J(p) vs nn.jacobian, relative error", f"{rel_err(J, J_nablanet):.1e}")
print("largest |row sum|", f"{np.abs(J.sum(axis=2)).max():.1e}",
      "  smallest eigenvalue", f"{np.linalg.eigvalsh(J).min():.1e}",
      "  largest eigenvalue", f"{np.linalg.eigvalsh(J).max():.3f}")

# %% [markdown]
# Cross-entropy on the probabilities, $\ell = -\log p_y$, has the gradient $\partial \ell / \partial p = -Y / p$:
# zero except $-1/p_y$ at the target. The softmax's VJP multiplies it by $J^\top = J$:
#
# $$\frac{\partial \ell}{\partial z} = J(p) \left(-\frac{Y}{p}\right) = -\mathrm{diag}(p) \frac{Y}{p} + p \, p^\top \frac{Y}{p} = -Y + p \cdot 1 = p - Y$$
#
# since $p^\top (Y/p) = p_y / p_y = 1$. The $c \times c$ matrix cancels into a subtraction. This is why
# `nn.CrossEntropyLoss` takes logits: it applies softmax and cross-entropy as one step, whose gradient is
# $p - Y$, never forms $J$, and never divides by a $p_y$ that may have underflowed to zero. We check the
# cancellation with nablanet's softmax layer, feeding its VJP the gradient $-Y/p$.

# %%
softmax_layer = nn.Softmax(dim=-1)
p_layer, s_cache = softmax_layer.forward(z2)
dz_chain, _ = softmax_layer.vjp(s_cache, -Y / p_layer)
print("softmax VJP of -Y/p vs p - Y, relative error", f"{rel_err(dz_chain, p - Y):.1e}")

# %% [markdown]
# At initialisation the network's probabilities are nearly uniform, $p \approx \mathbf{1}/c$, and $J$ is close
# to $\frac{1}{c}(I - \mathbf{1}\mathbf{1}^\top / c)$. A confident prediction looks different; we draw both.

# %%
confident = np.zeros((1, c))
confident[0, 3], confident[0, 5] = 4.0, 2.5                       # sure of class 3, hesitating with 5
p_sure = softmax(confident)
J_sure = nn.jacobian(nn.Softmax(dim=-1), confident)[0]
fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
sure_title = f"a confident prediction (p₃ = {p_sure[0, 3]:.2f}, p₅ = {p_sure[0, 5]:.2f})"
for ax, (jac, title) in zip(axes, ((J[0], "this network's first digit (p nearly uniform)"), (J_sure, sure_title)),
                            strict=True):
    lim = np.abs(jac).max()
    im = ax.imshow(jac, cmap="PuOr", vmin=-lim, vmax=lim)
    ax.set(xticks=range(c), yticks=range(c), xlabel="logit z_k (class k)", ylabel="probability p_j (class j)",
           title=title)
    fig.colorbar(im, ax=ax, label="∂p_j/∂z_k (probability per unit logit)")
fig.suptitle("How does each probability respond to each logit?");

# %% [markdown]
# The diagonal, $p_j(1 - p_j)$, is positive: raising a class's own logit raises its probability. Every
# off-diagonal entry, $-p_j p_k$, is negative: the probabilities must still sum to one, so the other
# classes pay for it. For the confident prediction almost all of the Jacobian sits in the block of the two
# classes in play, and the entries of a class the network rules out are nearly zero: its logit hardly
# matters any more.
#
# ## What we saw
#
# - Each VJP of the network fits in one line of NumPy, and the shapes say what to transpose: a weight
#   gradient is (output gradient)ᵀ times (input), summed over the batch; an input gradient is the
#   output gradient times the weight; an elementwise activation multiplies by its derivative.
# - The hand-written backward pass equals nablanet's layer by layer and `nn.value_and_grad` to a
#   relative error below $10^{-12}$, and central finite differences to below $10^{-6}$;
#   `nn.gradcheck` passes.
# - The softmax Jacobian $\mathrm{diag}(p) - p p^\top$ is symmetric with rows summing to zero, and its
#   product with cross-entropy's gradient $-Y/p$ is exactly $p - Y$.

# %%
assert all(vs_backprop < 1e-12 for vs_backprop, _ in errors.values())
assert all(vs_fd < 1e-6 for _, vs_fd in errors.values())
assert report.passed
assert rel_err(J, J_nablanet) < 1e-12 and np.allclose(J, np.swapaxes(J, 1, 2))
assert np.abs(J.sum(axis=2)).max() < 1e-15 and np.linalg.eigvalsh(J).min() > -1e-15
assert rel_err(dz_chain, p - Y) < 1e-12
