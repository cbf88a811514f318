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
# # Curvature and step size
#
# How large may a gradient step be? Near a point $\theta$ the loss is, to second order,
#
# $$L(\theta + s) \approx L(\theta) + g^\top s + \frac{1}{2} s^\top H s,$$
#
# with $g$ the gradient and $H$ the Hessian. In the eigenbasis of $H$, $H u_i = \lambda_i u_i$, a gradient step
# $\theta \leftarrow \theta - \eta g$ multiplies the error along $u_i$ by $1 - \eta \lambda_i$. It shrinks only if
# $\lvert 1 - \eta\lambda_i \rvert < 1$, so for every direction at once
#
# $$\eta < \frac{2}{\lambda_{\max}} .$$
#
# The curvature sets the step size. This tutorial measures the Hessian of a small network with nablanet's
# curvature instruments, all built on exact Hessian-vector products (forward-over-reverse, no finite
# differences), watches gradient descent below and above $2/\lambda_{\max}$, and takes Newton's step, which
# uses all of $H$.

# %%
import itertools

import matplotlib.pyplot as plt
import numpy as np

import nablanet as nn
from nablanet.studies.base import OKABE_ITO  # the colour-blind-safe palette of Okabe and Ito

plt.rcParams["axes.prop_cycle"] = plt.cycler(color=OKABE_ITO)
plt.rcParams["figure.constrained_layout.use"] = True


def flat(model: nn.Layer) -> np.ndarray:
    """The model's parameters as one vector θ, in the order of the curvature instruments."""
    return nn.lab.flatten_params(model.state_dict(), model)


def set_flat(model: nn.Layer, theta: np.ndarray) -> None:
    model.load_state_dict(nn.lab.unflatten_params(theta, model))


# %% [markdown]
# ## A small network and its Hessian-vector products
#
# A 64-8-10 tanh network (610 parameters) trained for 30 epochs on 300 digits. `nn.lab.hvp(model, loss, x, y, v)`
# returns $Hv$ for a direction $v$ given as a dict of arrays, like the gradients. We check it against a
# central difference of gradients, $Hv \approx (g(\theta + \varepsilon v) - g(\theta - \varepsilon v)) / 2\varepsilon$.

# %%
digits = nn.data.load_digits(seed=0, dtype=np.float64)
x, y = digits.train[0][:300], digits.train[1][:300]
loss = nn.CrossEntropyLoss()


def tanh_net() -> nn.Sequential:
    rng = np.random.default_rng(0)
    return nn.Sequential(nn.Linear(64, 8, dtype=np.float64, rng=rng), nn.Tanh(),
                         nn.Linear(8, 10, dtype=np.float64, rng=rng))


model = tanh_net()
nn.fit(model, loss, nn.optim.SGD(model.parameters(), lr=0.3), train=(x, y), epochs=30, batch_size=32, seed=0)
theta0 = flat(model)
print(f"P = {theta0.size} parameters; training loss {nn.evaluate(model, loss, x, y)['loss']:.4f}")

rng = np.random.default_rng(1)
v = {name: rng.standard_normal(p.shape) for name, p in model.named_parameters()}
hv = nn.lab.flatten_params(nn.lab.hvp(model, loss, x, y, v), model)
eps, v_flat = 1e-5, nn.lab.flatten_params(v, model)
grads_at = []
for sign in (1, -1):
    set_flat(model, theta0 + sign * eps * v_flat)
    grads_at.append(nn.lab.flatten_params(nn.value_and_grad(model, loss, x, y)[1], model))
set_flat(model, theta0)
hv_fd = (grads_at[0] - grads_at[1]) / (2 * eps)
hvp_error = np.linalg.norm(hv - hv_fd) / np.linalg.norm(hv)
print(f"‖Hv − central difference‖ / ‖Hv‖ = {hvp_error:.1e}")

# %% [markdown]
# ## The spectrum
#
# With 610 parameters the whole Hessian fits in memory: `nn.lab.hessian` builds it column by column from
# 610 HVPs, and NumPy gives all its eigenvalues. For a large model one uses the matrix-free instruments
# instead, and we check them against the dense answer: `hessian_eigenvalues` (Lanczos on HVPs, for the
# extreme eigenvalues) and `hutchinson_trace` (the average of $z^\top H z$ over random sign vectors $z$, for
# the trace).

# %%
H = nn.lab.hessian(model, loss, x, y)
spectrum = np.linalg.eigvalsh(H)                                  # ascending
top3 = nn.lab.hessian_eigenvalues(model, loss, x, y, k=3)         # largest first
trace, trace_se = nn.lab.hutchinson_trace(model, loss, x, y, n_samples=200, seed=0)
print(f"largest eigenvalues, dense: {spectrum[::-1][:3].round(6)};  Lanczos: {top3.round(6)}")
print(f"trace: exact {spectrum.sum():.3f}, Hutchinson {trace:.3f} ± {trace_se:.3f} (200 probes)")
print(f"smallest eigenvalue {spectrum[0]:.4f}; {np.sum(spectrum < -1e-8)} negative, "
      f"{np.mean(np.abs(spectrum) < 0.01 * spectrum[-1]):.0%} within 1% of λ_max from zero")

# %%
fig, ax = plt.subplots(figsize=(7, 3.8))
ax.hist(spectrum, bins=120, color=OKABE_ITO[0], label="all 610 eigenvalues (dense Hessian)")
for value in top3:
    ax.axvline(value, color=OKABE_ITO[3], ls="--", lw=1)
ax.plot([], [], color=OKABE_ITO[3], ls="--", label="top 3 by Lanczos")
ax.set_yscale("log")
ax.set(xlabel="Hessian eigenvalue λ (curvature, loss per squared parameter unit)", ylabel="number of eigenvalues",
       title="What does the curvature of a trained network look like?")
ax.legend();

# %% [markdown]
# The spectrum is a bulk of near-zero eigenvalues (flat directions, some slightly negative: the network is
# not at an exact minimum, and its loss is not convex) and a few outliers. The largest, $\lambda_{\max}$, is
# what limits the step size.
#
# ## Below and above 2/λ_max
#
# `nn.lab.step_size_report` reads off what the quadratic model says about step sizes: $\lambda_{\max}$, the
# bound $2/\lambda_{\max}$, the step $1/\lambda_{\max}$ that solves the top direction in one step, and the exact
# line-search step along $-g$.

# %%
report = nn.lab.step_size_report(model, loss, x, y)
for key in ("lambda_max", "lambda_min", "lr_stability_bound", "lr_optimal_top", "lr_optimal_grad"):
    print(f"{key:20s} {report[key]:.5f}")

# %% [markdown]
# Now full-batch gradient descent from this point at $\eta = c \cdot 2/\lambda_{\max}$ for four values of $c$,
# measuring the loss at every step and the sharpness $\lambda_{\max}$ every 10 steps.

# %%
def descend(eta: float, steps: int = 200) -> dict[str, np.ndarray]:
    net = tanh_net()
    set_flat(net, theta0)
    losses, sharpness = [], []
    for t in range(steps + 1):
        if t % 10 == 0:
            sharpness.append(float(nn.lab.hessian_eigenvalues(net, loss, x, y, k=1)[0]))
        value, grads = nn.value_and_grad(net, loss, x, y)
        losses.append(value)
        set_flat(net, flat(net) - eta * nn.lab.flatten_params(grads, net))
    return {"loss": np.array(losses), "sharpness": np.array(sharpness)}


bound = report["lr_stability_bound"]
runs = {c: descend(c * bound) for c in (0.5, 0.95, 1.5, 3.0)}
for c, run in runs.items():
    print(f"η = {c:4} × 2/λ_max: loss {run['loss'][0]:.3f} -> max {run['loss'].max():.3f} -> {run['loss'][-1]:.3f}; "
          f"λ_max at the end {run['sharpness'][-1]:.3f} (2/η = {2 / (c * bound):.3f})")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.5, 4))
for colour, (c, run) in zip(OKABE_ITO, runs.items(), strict=False):
    ax1.semilogy(run["loss"], color=colour, label=f"η = {c} × 2/λ_max")
    ax2.plot(np.arange(len(run["sharpness"])) * 10, run["sharpness"], color=colour, marker=".",
             label=f"λ_max, η = {c} × 2/λ_max")
    ax2.axhline(2 / (c * bound), color=colour, ls=":", lw=1)
ax1.set(xlabel="gradient descent step", ylabel="training loss (nats)", title="loss")
ax2.set(xlabel="gradient descent step", ylabel="sharpness λ_max (dotted: 2/η)", title="sharpness")
ax1.legend(fontsize=8)
ax2.legend(fontsize=8)
fig.suptitle("What happens to gradient descent above the step-size bound 2/λ_max?");

# %% [markdown]
# Below the bound the loss falls at every step. Above it the point cannot stay where it is: along the top
# eigenvector each step multiplies the error by $\lvert 1 - \eta\lambda_{\max} \rvert > 1$. At 1.5 times the
# bound the loss jumps by an order of magnitude, and then the network settles in a *flatter* region, where
# $\lambda_{\max}$ has fallen below $2/\eta$ and the step is stable again (the "catapult" or "edge of
# stability" behaviour of networks; Lewkowycz et al. 2020, Cohen et al. 2021). At 3 times the bound it finds
# no such region in 200 steps and ends near the loss of guessing, $\ln 10 \approx 2.3$. The bound $2/\lambda_{\max}$
# is local: it says which steps are stable *here*.
#
# ## Newton's step
#
# Gradient descent uses one step size for every direction, so the flattest direction converges at the rate
# $1 - \lambda_{\min}/\lambda_{\max} = 1 - 1/\kappa$. Newton's method minimises the quadratic model exactly,
# rescaling every direction by its own curvature:
#
# $$s = -(H + \delta I)^{-1} g .$$
#
# `nn.lab.newton_step` solves for $s$ by conjugate gradients on HVPs, never forming $H$ ($\delta$ is an optional
# damping for indefinite $H$). On a convex problem with a finite minimum it converges quadratically: near
# the minimum the number of correct digits doubles with every step. We take logistic regression on
# synthetic data whose 10 features have scales from 1 to 30, so the Hessian is ill-conditioned, and the
# classes overlap, so the minimum is finite. Gradient descent runs at $1/\lambda_{\max}$ of the starting point
# (where the logistic loss is most curved, so the step is stable everywhere).

# %%
gen = np.random.default_rng(0)
features = np.geomspace(1, 30, 10)
X = gen.standard_normal((500, 10)) * features
w_true = gen.standard_normal(10) / features
t = (gen.random(500) < 1 / (1 + np.exp(-(X @ w_true + 0.5)))).astype(np.float64)[:, None]
logistic, bce = nn.Sequential(nn.Linear(10, 1, dtype=np.float64)), nn.BCEWithLogitsLoss()
set_flat(logistic, np.zeros(11))
start = nn.lab.step_size_report(logistic, bce, X, t)
print(f"at θ = 0: λ_max = {start['lambda_max']:.2f}, λ_min = {start['lambda_min']:.4f}, "
      f"κ = {start['condition_number']:.0f}")


def grad_norm(model: nn.Layer, loss_: nn.Loss, inputs: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    g = nn.lab.flatten_params(nn.value_and_grad(model, loss_, inputs, target)[1], model)
    return float(np.linalg.norm(g)), g


newton_norms = [grad_norm(logistic, bce, X, t)[0]]
while newton_norms[-1] > 1e-12 and len(newton_norms) < 20:
    step = nn.lab.newton_step(logistic, bce, X, t)
    set_flat(logistic, flat(logistic) + nn.lab.flatten_params(step, logistic))
    newton_norms.append(grad_norm(logistic, bce, X, t)[0])

set_flat(logistic, np.zeros(11))
gd_norms = []
for _ in range(2000):
    norm, g = grad_norm(logistic, bce, X, t)
    gd_norms.append(norm)
    set_flat(logistic, flat(logistic) - g / start["lambda_max"])
print("Newton, ‖∇L‖ per iteration:", " ".join(f"{g:.1e}" for g in newton_norms))
print(f"gradient descent at 1/λ_max: ‖∇L‖ = {gd_norms[-1]:.1e} after {len(gd_norms)} iterations")

# %%
fig, ax = plt.subplots(figsize=(6.4, 4))
ax.semilogy(np.arange(1, len(gd_norms) + 1), gd_norms, label="gradient descent, η = 1/λ_max(θ₀)")
ax.semilogy(np.arange(1, len(newton_norms) + 1), newton_norms, marker="o", label="Newton (CG on HVPs)")
ax.set_xscale("log")
ax.set(xlabel="iteration", ylabel="gradient norm ‖∇L‖",
       title="How many iterations do Newton and gradient descent need?")
ax.legend();

# %% [markdown]
# Newton reaches machine precision in a handful of iterations, the last ones squaring the error; gradient
# descent after 2,000 iterations is still far away, held back by the directions of smallest curvature. Each
# Newton iteration costs more (a conjugate-gradient solve, up to $P$ HVPs), which is why it is used on
# small or well-structured problems, and why methods that approximate $H$ cheaply exist. On an exactly
# quadratic loss, such as least squares with the same features, the quadratic model is the loss, and one
# Newton step lands on the minimum:

# %%
least_squares = nn.Sequential(nn.Linear(10, 1, dtype=np.float64, rng=np.random.default_rng(0)))
quad = nn.QuadraticLoss()
before = grad_norm(least_squares, quad, X, t)[0]
step = nn.lab.newton_step(least_squares, quad, X, t)
set_flat(least_squares, flat(least_squares) + nn.lab.flatten_params(step, least_squares))
after = grad_norm(least_squares, quad, X, t)[0]
print(f"least squares: ‖∇L‖ {before:.2e} before one Newton step, {after:.2e} after")

# %% [markdown]
# ## What we saw
#
# - nablanet's Hessian-vector products agree with differences of gradients (to about $10^{-9}$ here), and the
#   matrix-free instruments agree with the dense Hessian: Lanczos finds the top eigenvalues to many digits,
#   Hutchinson's estimate of the trace is within two standard errors.
# - A trained network's Hessian is a bulk of near-zero eigenvalues, a few of them negative, and a few large
#   outliers; $\lambda_{\max}$ sets the step-size bound $2/\lambda_{\max}$.
# - Below the bound gradient descent lowers the loss at every step. Above it the loss jumps and training
#   either moves to a flatter region, where $\lambda_{\max} < 2/\eta$, or fails.
# - Newton's method converges quadratically on logistic regression, to a gradient norm below $10^{-12}$ in
#   under ten iterations where gradient descent has not reached $10^{-2}$ in 2,000, and solves a quadratic
#   in one step.

# %%
assert hvp_error < 1e-6
assert np.allclose(top3, spectrum[::-1][:3], rtol=1e-8) and abs(trace - spectrum.sum()) < 2 * trace_se
assert spectrum[0] < 0 and np.sum(spectrum > 0.1 * spectrum[-1]) < 20
for c in (0.5, 0.95):
    assert np.all(np.diff(runs[c]["loss"]) < 0)                          # the loss falls at every step
assert runs[1.5]["loss"].max() > 10 * runs[1.5]["loss"][0] and runs[1.5]["loss"][-1] < runs[1.5]["loss"][0]
assert runs[1.5]["sharpness"][-1] < 2 / (1.5 * bound)                    # it found a flatter region
assert runs[3.0]["loss"][-1] > 2.0                                       # and here it did not
assert newton_norms[-1] < 1e-12 and len(newton_norms) <= 10 and gd_norms[-1] > 1e-2
pairs = [(a, b) for a, b in itertools.pairwise(newton_norms) if a < 1e-2 and b > 1e-13]   # above rounding
assert len(pairs) >= 2 and all(b < a**1.5 for a, b in pairs)             # the error (at least) squares
assert after < 1e-8 * before
