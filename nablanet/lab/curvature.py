"""Exact curvature of a model's loss: Hessian- and Gauss-Newton-vector products, the dense Hessian,
its top eigenvalues, its trace, and what they say about step sizes.

Parameters are dicts ``{state_dict name: array}`` like ``value_and_grad``'s gradients. Flattened,
the parameter vector θ (length P) lists the arrays in ``model.named_parameters()`` order, each in
C order (``flatten_params`` / ``unflatten_params``); dense matrices and eigenvectors use that order.

Hessian-vector product, forward-over-reverse (Pearlmutter 1994). Let v be a direction in
parameter space and a dot the derivative d/dε at ε = 0 of θ + εv. Backprop maps θ to ∇L(θ), so
its tangent is (∇L)˙ = H v. It is computed exactly, with no finite differences, by:

  1. the forward R-pass: ẏ through the layers, starting from ẋ = 0 at the model input, with each
     layer's parameters moving along their slice of v (``rop.jvp``: ẏ = ∂y/∂x ẋ + ∂y/∂θ θ̇);
  2. the loss's second-order rule at the output: (∂L/∂y)˙ = ∇²_y L · ẏ (``rop.loss_hvp``);
  3. the backward R-pass: each layer's VJP differentiated along the tangents, in reverse
     (``rop.vjp_rop``); the parameter slots of its result are H v.

Gauss-Newton-vector product: with J = ∂(model output)/∂θ and H_L = ∇²_y L,
    G v = Jᵀ H_L J v:  J v is step 1 above, H_L J v step 2, and Jᵀ(·) the ordinary backward pass.
G drops the terms of H that involve the layers' second derivatives; it is positive semi-definite
for convex losses (MSE, cross-entropy), and G = H when the model is linear in θ.

Step sizes (the notes' convergence analysis). Near θ the loss is the quadratic model
    L(θ + s) ≈ L(θ) + gᵀs + ½ sᵀ H s,       g = ∇L(θ).
* Scalar case, L(w) = ½ a w² + …: the step w ← w − L′(w)/a lands on the minimum in one step, so
  the optimal step size is η = 1/a, the inverse second derivative. Gradient descent with step η
  multiplies the distance to the minimum by (1 − η a) each step: it converges monotonically for
  η < 1/a, oscillates but converges for 1/a < η < 2/a, and diverges for η > 2/a.
* Multivariate: in the eigenbasis H uᵢ = λᵢ uᵢ the error along each uᵢ is multiplied by
  (1 − η λᵢ), so gradient descent converges iff η < 2/λ_max (the stability bound), and
  η = 1/λ_max is the optimal step along the top eigenvector u_max. The other directions then move
  with factor 1 − λᵢ/λ_max, slow when the condition number λ_max/λ_min is large.
* Newton's method removes that: s = −H⁻¹ g minimizes the quadratic model exactly ("the optimum
  step size is the inverse Hessian"), so on a quadratic loss one Newton step reaches the minimum.
  With damping δ, s = −(H + δI)⁻¹ g, a Levenberg-style step that trusts the model less.

Any model: a chain of layers runs its R-passes along the tape; any other model (skip connections,
parallel branches, attention, recurrent layers through time) is one node whose rules compose its
children's (``nablanet.lab._point``), so every function here works on every model nablanet builds.
A block of the Hessian: every function takes ``params=`` (state_dict names or the Parameters
themselves; default all) and then works on H_SS for that set S, e.g. the spectrum of the last layer's
block of a large model. ``v`` and the returned dicts then hold exactly S's names, and flat vectors
S's entries in ``named_parameters()`` order (``flatten_params(d, model, block=S)``).

All randomness (Lanczos and power starting vectors, Hutchinson probes) comes from
``numpy.random.default_rng(seed)``. The model and the loss are evaluated once per call (forward and
backward); every product reuses that point. Layers without rules in ``nablanet/lab/rules/`` (and batch
norm with batch statistics) raise a clear error naming the layer, the rule and where it belongs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, overload

import numpy as np

from nablanet._random import RNGLike
from nablanet.lab._params import selected_shapes
from nablanet.lab._point import Point, check_vector, split_flat
from nablanet.layers.base import Layer
from nablanet.losses.base import Loss

_WHICH = ("LA", "SA", "LM")
_METHODS = ("lanczos", "power")
_DISTRIBUTIONS = ("rademacher", "gaussian")
_MATRICES = ("hessian", "ggn")
_NEWTON_METHODS = ("cg", "direct")


# -- argument checks ---------------------------------------------------------------------------------------
def _check_choice(who: str, arg: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{who}({arg}={value!r}): expected one of {list(choices)}; pass e.g. {arg}={choices[0]!r}.")
    return str(value)


def _check_int(who: str, arg: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{who}({arg}={value!r}): expected an int ≥ {minimum}, e.g. {arg}={max(minimum, 10)}.")
    return int(value)


def _check_positive(who: str, arg: str, value: Any, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{who}({arg}={value!r}): expected a finite number {bound}, e.g. {arg}=1e-8.")
    return float(value)


# -- flat parameter vectors ---------------------------------------------------------------------------------
def flatten_params(params: Mapping[str, Any], model: Layer | None = None, *, block: Any = None) -> np.ndarray:
    """Concatenate ``{name: array}`` into one vector (P,), each array in C order.

    With ``model`` the order is ``model.named_parameters()`` (the order of every dense matrix and
    eigenvector in this module) and the names and shapes are checked against the model (against the
    parameters ``block`` selects, names or Parameters, when given: the ``params=`` of the other
    functions); without it, the dict's own order is used.
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"flatten_params got {type(params).__name__}; expected a dict {{name: array}}.")
    if model is None:
        arrays = [np.asarray(a) for a in params.values()]
    else:
        shapes = selected_shapes(model, block, "flatten_params")
        arrays = list(check_vector("flatten_params", params, shapes, None).values())
    if not arrays:
        return np.zeros(0)
    return np.concatenate([a.reshape(-1) for a in arrays])


def unflatten_params(vec: Any, model: Layer, *, block: Any = None) -> dict[str, np.ndarray]:
    """Split a vector (P,) into ``{name: array}`` in ``model.named_parameters()`` order (copies); with
    ``block`` (names or Parameters, the ``params=`` of the other functions) into that block's arrays."""
    shapes = selected_shapes(model, block, "unflatten_params")
    return {k: np.array(v) for k, v in split_flat("unflatten_params", vec, shapes).items()}


# -- products ----------------------------------------------------------------------------------------------
def hvp(
    model: Layer, loss: Loss, x: Any, target: Any, v: Mapping[str, Any], *, train: bool = False, rng: RNGLike = None,
    params: Any = None,
) -> dict[str, np.ndarray]:
    """Exact Hessian-vector product H v = (∇_θ L)˙ by forward-over-reverse, keyed like ``v``.

    H = ∇²_θ L(model(x), target) over all parameters; ``v`` is ``{state_dict name: array}`` with
    every parameter (zeros for those that do not move). One forward R-pass (ẏ through the layers,
    ẋ = 0 at the input), the loss's second-order rule, and one backward R-pass; no finite
    differences, so the result is exact to rounding (see the module docstring).
    ``train``/``rng`` select the forward's mode: dropout masks are then held fixed; batch norm
    must use running statistics (eval mode).
    """
    point = Point("hvp", model, loss, x, target, train, rng, params)
    return point.hvp(point.check(v))


def ggn_vp(
    model: Layer, loss: Loss, x: Any, target: Any, v: Mapping[str, Any], *, train: bool = False, rng: RNGLike = None,
    params: Any = None,
) -> dict[str, np.ndarray]:
    """Generalized Gauss-Newton-vector product G v = Jᵀ H_L J v, keyed like ``v``.

    J = ∂y/∂θ (y the model output, (N, *out) flattened), H_L = ∇²_y L. J v is the forward R-pass,
    H_L(J v) the loss's second-order rule, and Jᵀ(·) the layers' ordinary VJPs. G is H without the
    terms that carry the layers' own second derivatives: G = H for a model linear in θ.
    """
    point = Point("ggn_vp", model, loss, x, target, train, rng, params)
    return point.ggn_vp(point.check(v))


def hessian(
    model: Layer, loss: Loss, x: Any, target: Any, *, train: bool = False, rng: RNGLike = None, max_params: int = 5000,
    params: Any = None,
) -> np.ndarray:
    """The dense Hessian H (P, P) = ∂²L/∂θ∂θ over the flattened parameter vector θ.

    Order: the arrays of ``model.named_parameters()``, each in C order (``flatten_params``), so
    H[a, b] = ∂²L/∂θₐ∂θ_b. Column k is H eₖ, one exact HVP per parameter (P products after one
    forward and backward pass). Refuses models with P > ``max_params`` (P² entries).
    """
    _check_int("hessian", "max_params", max_params, 1)
    return Point("hessian", model, loss, x, target, train, rng, params).dense("hessian", max_params)


def ggn(
    model: Layer, loss: Loss, x: Any, target: Any, *, train: bool = False, rng: RNGLike = None, max_params: int = 5000,
    params: Any = None,
) -> np.ndarray:
    """The dense generalized Gauss-Newton matrix G = Jᵀ H_L J (P, P), in ``hessian``'s order."""
    _check_int("ggn", "max_params", max_params, 1)
    return Point("ggn", model, loss, x, target, train, rng, params).dense("ggn", max_params)


# -- spectrum ----------------------------------------------------------------------------------------------
def _pick(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices of the k wanted values: LA largest first, SA smallest first, LM largest |θ| first."""
    if which == "LA":
        order = np.argsort(-theta, kind="stable")
    elif which == "SA":
        order = np.argsort(theta, kind="stable")
    else:
        order = np.argsort(-np.abs(theta), kind="stable")
    return order[:k]


def _unit(rng: np.random.Generator, n: int, basis: np.ndarray | None = None) -> np.ndarray | None:
    """A random unit vector, orthogonal to the rows of ``basis``; None if nothing is left."""
    q = rng.standard_normal(n)
    if basis is not None and len(basis):
        for _ in range(2):
            q -= basis.T @ (basis @ q)
    norm = float(np.linalg.norm(q))
    return q / norm if norm > 1e-8 * math.sqrt(n) else None


def _tridiagonal(alpha: list[float], beta: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of the symmetric tridiagonal T with diagonal α and off-diagonal β."""
    t = np.diag(alpha)
    if beta:
        t += np.diag(beta, 1) + np.diag(beta, -1)
    return np.linalg.eigh(t)


def _lanczos(
    op: Callable[[np.ndarray], np.ndarray], n: int, k: int, which: str, iters: int, tol: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Lanczos with full reorthogonalization, restarted on breakdown. Returns (values (k,), vectors (n, k)).

    A block of Lanczos steps from a unit vector q₁ builds an orthonormal Q (m, n) with Qᵀ H Q = T
    tridiagonal; the Ritz pairs (θᵢ, Q sᵢ) of T sᵢ = θᵢ sᵢ have residual ‖H Q sᵢ − θᵢ Q sᵢ‖ = |β_m sᵢ[m]|.
    A Krylov space holds one vector per distinct eigenvalue, so an eigenvalue of multiplicity > 1
    appears once per block. When β_m ≈ 0 (breakdown: the block spans an invariant subspace, its
    Ritz values are exact) the next block starts from a random vector orthogonal to all earlier
    ones, i.e. it explores the complement, where further copies live. Stopping rule, with residuals
    measured against tol·max|θ| over all candidates:
      * the wanted Ritz values of the current block have converged, and, once a block has been
        completed, so has the current block's best unwanted one (by interlacing it bounds every
        eigenvalue left in the complement);
      * or a block breaks down without contributing a wanted value (the complement holds none);
      * or the whole space is explored (exact). Otherwise after ``iters`` steps a RuntimeError.
    """
    m_max = min(iters, n)
    q_rows = np.zeros((m_max + 1, n))
    first = _unit(rng, n)
    if first is None:  # pragma: no cover - a zero draw
        raise RuntimeError("Lanczos: could not draw a starting vector")
    q_rows[0] = first
    done_vals: list[np.ndarray] = []  # exact eigenpairs of completed blocks
    done_vecs: list[np.ndarray] = []
    b0 = 0  # first row of the current block
    alpha: list[float] = []
    beta: list[float] = []
    anorm = 0.0
    for j in range(m_max):
        a, w = _lanczos_step(op, q_rows, j, beta[-1] if alpha else None)
        b = float(np.linalg.norm(w))
        alpha.append(a)
        anorm = max(anorm, abs(a), b)
        m = j + 1
        breakdown = b <= 1e-10 * anorm
        size = m - b0
        if not (breakdown or m == m_max or size <= 60 or size % 10 == 0):
            beta.append(b)
            q_rows[m] = w / b
            continue
        theta, s = _tridiagonal(alpha, beta)
        cand = np.concatenate([*done_vals, theta])
        n_done = cand.size - theta.size
        resid = np.concatenate([np.zeros(n_done), np.abs(b * s[-1])])
        order = _pick(cand, cand.size, which)  # stable: completed blocks win ties
        sel = order[:k]
        scale = max(float(np.max(np.abs(cand))), np.finfo(float).tiny)
        current = order[order >= n_done]  # the current block's Ritz values, most wanted first
        n_sel_here = int(np.sum(sel >= n_done))
        if breakdown:
            done_vals.append(theta)
            done_vecs.append(q_rows[b0:m].T @ s)
            if cand.size >= k and n_sel_here == 0:
                break
            nxt = _unit(rng, n, q_rows[:m])
            if nxt is None:  # the whole space is explored: every eigenvalue is known exactly
                break
            q_rows[m] = nxt
            b0, alpha, beta = m, [], []
            continue
        need = current[: n_sel_here + (1 if done_vals else 0)]
        if cand.size >= k and np.all(resid[need] <= tol * scale):
            vecs = np.concatenate([*done_vecs, q_rows[b0:m].T @ s], axis=1)
            return cand[sel], vecs[:, sel]
        if m == m_max:
            raise RuntimeError(
                f"hessian_eigenvalues(method='lanczos'): the {k} wanted Ritz values did not converge in iters={iters} "
                f"steps (largest relative residual {float(np.max(resid[need])) / scale:.3e}, tol={tol}). Fix: raise "
                f"iters (at most P = {n}, which is exact) or tol."
            )
        beta.append(b)
        q_rows[m] = w / b
    return _pick_pairs(done_vals, done_vecs, k, which)


def _lanczos_step(
    op: Callable[[np.ndarray], np.ndarray], q_rows: np.ndarray, j: int, beta_prev: float | None
) -> tuple[float, np.ndarray]:
    """One Lanczos step from row j: αⱼ = qⱼᵀ H qⱼ and w = H qⱼ − αⱼ qⱼ − βⱼ₋₁ qⱼ₋₁ (no βⱼ₋₁ term at a
    block's first row), reorthogonalized against every row so far."""
    w = op(q_rows[j])
    a = float(q_rows[j] @ w)
    w -= a * q_rows[j]
    if beta_prev is not None:
        w -= beta_prev * q_rows[j - 1]
    for _ in range(2):  # full reorthogonalization against every block; twice is enough
        w -= q_rows[: j + 1].T @ (q_rows[: j + 1] @ w)
    return a, w


def _pick_pairs(
    vals_blocks: list[np.ndarray], vecs_blocks: list[np.ndarray], k: int, which: str
) -> tuple[np.ndarray, np.ndarray]:
    """The k wanted eigenpairs among the exact ones of completed Lanczos blocks."""
    vals = np.concatenate(vals_blocks)
    vecs = np.concatenate(vecs_blocks, axis=1)
    sel = _pick(vals, k, which)
    if sel.size < k:  # pragma: no cover - k ≤ n is checked by the caller
        raise RuntimeError(f"Lanczos found only {sel.size} eigenvalues")
    return vals[sel], vecs[:, sel]


def _power(
    op: Callable[[np.ndarray], np.ndarray], n: int, k: int, which: str, iters: int, tol: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Power iteration with Hotelling deflation on B = σ₁ H + σ₀ I, chosen so that B's dominant
    eigenvalues are the wanted ones:  LM  B = H;  LA  B = H + |λ_d| I;  SA  B = |λ_d| I − H,
    with λ_d H's dominant (largest-|λ|) eigenvalue, found first (B is then positive semi-definite and
    keeps H's order). Eigenpair i iterates q ← B_i q/‖B_i q‖ with B_i = B − Σ_{j<i} μ_j u_j u_jᵀ until
    ‖B_i q − μ q‖ ≤ tol·|μ|, μ = qᵀ B_i q the Rayleigh quotient.
    """

    def dominant(apply: Callable[[np.ndarray], np.ndarray], found: list[np.ndarray]) -> tuple[float, np.ndarray]:
        basis = np.array(found) if found else None
        q = _unit(rng, n, basis)
        if q is None:
            raise ValueError(f"hessian_eigenvalues(k={k}): k exceeds the number of parameters {n}.")
        mu = 0.0
        for _ in range(iters):
            w = apply(q)
            if basis is not None:  # keep q out of the deflated directions (rounding creeps back)
                w -= basis.T @ (basis @ w)
            mu = float(q @ w)
            res = float(np.linalg.norm(w - mu * q))
            norm = float(np.linalg.norm(w))
            if res <= tol * max(abs(mu), np.finfo(float).tiny) or norm == 0.0:
                return mu, q
            q = w / norm
        raise RuntimeError(
            f"hessian_eigenvalues(method='power'): eigenvalue {len(found) + 1} did not converge in iters={iters} "
            f"(residual {res:.3e}, Rayleigh quotient {mu:.6g}, tol={tol}). Power iteration is slow when the top "
            "eigenvalues are close; use method='lanczos', or raise iters or tol."
        )

    lam_d, q_d = dominant(op, [])
    if which == "LM" or (which == "LA" and k == 1 and lam_d >= 0) or (which == "SA" and k == 1 and lam_d <= 0):
        sign, shift = 1.0, 0.0
    elif which == "LA":
        sign, shift = 1.0, abs(lam_d)
    else:
        sign, shift = -1.0, abs(lam_d)

    def b_op(q: np.ndarray) -> np.ndarray:
        return sign * op(q) + shift * q

    vals: list[float] = []
    vecs: list[np.ndarray] = []
    for i in range(k):
        if i == 0 and shift == 0.0:
            mu, q = sign * lam_d, q_d
        else:
            def deflated(q: np.ndarray) -> np.ndarray:
                w = b_op(q)
                for m_j, u_j in zip(vals, vecs, strict=True):
                    w -= m_j * (u_j @ q) * u_j
                return w

            mu, q = dominant(deflated, vecs)
        vals.append(mu)
        vecs.append(q)
    lams = (np.array(vals) - shift) * sign
    return lams, np.array(vecs).T


@overload
def hessian_eigenvalues(
    model: Layer, loss: Loss, x: Any, target: Any, k: int = 1, *, method: str = ..., which: str = ...,
    iters: int | None = ..., tol: float = ..., seed: int = ..., matrix: str = ...,
    return_eigenvectors: Literal[False] = ..., train: bool = ..., rng: RNGLike = ...,
    params: Any = ...,
) -> np.ndarray: ...
@overload
def hessian_eigenvalues(
    model: Layer, loss: Loss, x: Any, target: Any, k: int = 1, *, method: str = ..., which: str = ...,
    iters: int | None = ..., tol: float = ..., seed: int = ..., matrix: str = ...,
    return_eigenvectors: Literal[True], train: bool = ..., rng: RNGLike = ...,
    params: Any = ...,
) -> tuple[np.ndarray, np.ndarray]: ...
def hessian_eigenvalues(
    model: Layer,
    loss: Loss,
    x: Any,
    target: Any,
    k: int = 1,
    *,
    method: str = "lanczos",
    which: str = "LA",
    iters: int | None = None,
    tol: float = 1e-10,
    seed: int = 0,
    matrix: str = "hessian",
    return_eigenvectors: bool = False,
    train: bool = False,
    rng: RNGLike = None,
    params: Any = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The k extreme eigenvalues of the Hessian (or, with ``matrix="ggn"``, of the Gauss-Newton matrix).

    which:  "LA" largest algebraic first (λ_max, the default), "SA" smallest algebraic first,
            "LM" largest magnitude first.
    method: "lanczos" (default): Lanczos on HVPs with full reorthogonalization; T = QᵀHQ is
            tridiagonal and its eigenvalues (Ritz values) converge to the extreme eigenvalues of H
            first. Converged when the k wanted Ritz pairs have residual ‖Hu − θu‖ ≤ tol·max|θ|;
            at most ``iters`` steps (default min(P, 300), a RuntimeError if not converged by then;
            iters = P is exact). A Krylov space holds one copy of a repeated eigenvalue; when it
            becomes invariant (exact multiplicities, e.g. a linear output layer under MSE, or a
            rank-deficient GGN) Lanczos restarts in the orthogonal complement and so finds the
            further copies. Eigenvalues that are merely very close are not told apart that way.
            "power": power iteration with deflation (default iters 2000 per eigenvalue), stopping at
            residual ≤ tol·|λ|; finds repeated eigenvalues one copy at a time, is slow when
            eigenvalues are close, and raises a RuntimeError if it has not converged.
    The starting vectors come from ``numpy.random.default_rng(seed)``. Returns the eigenvalues (k,)
    in the order of ``which``; with ``return_eigenvectors=True`` also the unit eigenvectors
    (P, k) as columns, in ``hessian``'s parameter order (``unflatten_params(vecs[:, i], model)``
    turns one into a parameter dict).
    """
    who = "hessian_eigenvalues"
    method = _check_choice(who, "method", method, _METHODS)
    which = _check_choice(who, "which", which, _WHICH)
    matrix = _check_choice(who, "matrix", matrix, _MATRICES)
    k = _check_int(who, "k", k, 1)
    seed = _check_int(who, "seed", seed, 0)
    tol = _check_positive(who, "tol", tol)
    point = Point(who, model, loss, x, target, train, rng, params)
    n = point.size
    if k > n:
        raise ValueError(f"{who}(k={k}): the model has only P = {n} parameters, so at most {n} eigenvalues exist.")
    default_iters = min(n, 300) if method == "lanczos" else 2000
    iters = default_iters if iters is None else _check_int(who, "iters", iters, 1)
    if method == "lanczos" and iters < k:
        raise ValueError(f"{who}(iters={iters}, k={k}): Lanczos needs at least k steps; pass iters ≥ {k}.")
    gen = np.random.default_rng(seed)
    solver = _lanczos if method == "lanczos" else _power
    vals, vecs = solver(point.operator(matrix), n, k, which, iters, tol, gen)
    if return_eigenvectors:
        return vals, vecs
    return vals


def hutchinson_trace(
    model: Layer,
    loss: Loss,
    x: Any,
    target: Any,
    n_samples: int = 100,
    *,
    seed: int = 0,
    distribution: str = "rademacher",
    matrix: str = "hessian",
    train: bool = False,
    rng: RNGLike = None,
    params: Any = None,
) -> tuple[float, float]:
    """Hutchinson's estimate of tr(H) (or tr(G) with ``matrix="ggn"``) and its standard error.

    For probes z with E[z zᵀ] = I, E[zᵀ H z] = tr(H E[z zᵀ]) = tr(H). With n probes:
        estimate = (1/n) Σⱼ zⱼᵀ H zⱼ,      stderr = std(zⱼᵀ H zⱼ, ddof=1)/√n.
    "rademacher" probes (entries ±1 with probability ½, the default) have the smallest variance,
    2 Σ_{a≠b} H²ₐ_b; "gaussian" (standard normal entries) adds 2 Σₐ H²ₐₐ. One HVP per probe, drawn from
    ``numpy.random.default_rng(seed)``.
    """
    who = "hutchinson_trace"
    n_samples = _check_int(who, "n_samples", n_samples, 2)
    distribution = _check_choice(who, "distribution", distribution, _DISTRIBUTIONS)
    matrix = _check_choice(who, "matrix", matrix, _MATRICES)
    seed = _check_int(who, "seed", seed, 0)
    point = Point(who, model, loss, x, target, train, rng, params)
    op = point.operator(matrix)
    gen = np.random.default_rng(seed)
    samples = np.empty(n_samples)
    for j in range(n_samples):
        if distribution == "rademacher":
            z = gen.integers(0, 2, point.size).astype(np.float64) * 2 - 1
        else:
            z = gen.standard_normal(point.size)
        samples[j] = z @ op(z)
    return float(samples.mean()), float(samples.std(ddof=1) / math.sqrt(n_samples))


# -- step sizes --------------------------------------------------------------------------------------------
def step_size_report(
    model: Layer,
    loss: Loss,
    x: Any,
    target: Any,
    *,
    iters: int | None = None,
    tol: float = 1e-10,
    seed: int = 0,
    train: bool = False,
    rng: RNGLike = None,
    params: Any = None,
) -> dict[str, float]:
    """What the local quadratic model L(θ + s) ≈ L + gᵀs + ½ sᵀHs says about step sizes.

    Keys (λ from Lanczos on exact HVPs, see ``hessian_eigenvalues``):
      loss                 L(θ)
      lambda_max           largest Hessian eigenvalue λ_max (the sharpness)
      lambda_min           smallest eigenvalue (negative: θ is not at a local minimum's bowl)
      lr_stability_bound   2/λ_max: gradient descent on the quadratic model converges iff η < 2/λ_max
                           (the error along uᵢ is multiplied by 1 − ηλᵢ per step); inf if λ_max ≤ 0
      lr_optimal_top       1/λ_max: the step that reaches the minimum along the top eigenvector in one
                           step (the notes' optimal step 1/a of the scalar quadratic ½ a w²)
      grad_norm            ‖g‖
      grad_curvature       gᵀHg/‖g‖², the curvature along the gradient direction
      lr_optimal_grad      ‖g‖²/gᵀHg: the exact line-search step along −g on the quadratic model
                           (Cauchy step); inf if gᵀHg ≤ 0
      condition_number     λ_max/λ_min if λ_min > 0, else inf
    """
    who = "step_size_report"
    seed = _check_int(who, "seed", seed, 0)
    tol = _check_positive(who, "tol", tol)
    point = Point(who, model, loss, x, target, train, rng, params)
    n = point.size
    if n == 0:
        raise ValueError(f"{who}: the model has no parameters, so there is no curvature to report.")
    iters = min(n, 300) if iters is None else _check_int(who, "iters", iters, 1)
    op = point.operator("hessian")
    lam_max = float(_lanczos(op, n, 1, "LA", iters, tol, np.random.default_rng(seed))[0][0])
    lam_min = float(_lanczos(op, n, 1, "SA", iters, tol, np.random.default_rng(seed))[0][0])
    g = point.flat(point.grad)
    gnorm2 = float(g @ g)
    ghg = float(g @ op(g)) if gnorm2 > 0 else 0.0
    inf = math.inf
    return {
        "loss": point.value,
        "lambda_max": lam_max,
        "lambda_min": lam_min,
        "lr_stability_bound": 2.0 / lam_max if lam_max > 0 else inf,
        "lr_optimal_top": 1.0 / lam_max if lam_max > 0 else inf,
        "grad_norm": math.sqrt(gnorm2),
        "grad_curvature": ghg / gnorm2 if gnorm2 > 0 else 0.0,
        "lr_optimal_grad": gnorm2 / ghg if ghg > 0 else inf,
        "condition_number": lam_max / lam_min if lam_min > 0 else inf,
    }


def newton_step(
    model: Layer,
    loss: Loss,
    x: Any,
    target: Any,
    damping: float = 0.0,
    *,
    method: str = "cg",
    tol: float = 1e-10,
    maxiter: int | None = None,
    max_params: int = 5000,
    train: bool = False,
    rng: RNGLike = None,
    params: Any = None,
) -> dict[str, np.ndarray]:
    """The (damped) Newton step s = −(H + δI)⁻¹ g, keyed by parameter name; apply it as θ ← θ + s.

    s minimizes the quadratic model L + gᵀs + ½ sᵀ(H + δI)s (see the module docstring: the optimal
    step is the inverse Hessian, so on a quadratic loss with δ = 0 one step lands on the minimum).
    method "cg" (default): conjugate gradients on exact HVPs, never forming H; stops when
        ‖(H + δI)s + g‖ ≤ tol·‖g‖ (exact in at most P steps in exact arithmetic; default maxiter 2P + 20).
        CG needs H + δI positive definite: meeting a direction p with pᵀ(H + δI)p ≤ 0 raises a
        ValueError (θ is near a saddle or maximum; raise ``damping``).
    method "direct": builds the dense Hessian (P ≤ max_params) and solves with LAPACK; this also gives
        the Newton step of an indefinite H (a step toward the saddle point of the quadratic model).
    """
    who = "newton_step"
    method = _check_choice(who, "method", method, _NEWTON_METHODS)
    delta = _check_positive(who, "damping", damping, allow_zero=True)
    tol = _check_positive(who, "tol", tol)
    point = Point(who, model, loss, x, target, train, rng, params)
    n = point.size
    g = point.flat(point.grad)
    if method == "direct":
        h = point.dense("hessian", _check_int(who, "max_params", max_params, 1)).astype(np.float64)
        try:
            s = np.linalg.solve(h + delta * np.eye(n), -g)
        except np.linalg.LinAlgError as exc:
            raise ValueError(
                f"{who}: H + δI is singular (δ = {delta}), so the Newton step is not defined. Fix: pass damping > 0, "
                "e.g. damping=1e-4 · hessian_eigenvalues(...)[0]."
            ) from exc
        return point.split(s.astype(point.dtype))
    maxiter = 2 * n + 20 if maxiter is None else _check_int(who, "maxiter", maxiter, 1)
    op = point.operator("hessian")
    s = np.zeros(n)
    r = -g  # residual b − A s with b = −g, s = 0
    gnorm = float(np.linalg.norm(g))
    if gnorm == 0.0:
        return point.split(s.astype(point.dtype))
    p = r.copy()
    rr = float(r @ r)
    for _ in range(maxiter):
        ap = op(p) + delta * p
        pap = float(p @ ap)
        if pap <= 0:
            raise ValueError(
                f"{who}: H + δI is not positive definite (δ = {damping}): along a CG direction p, "
                f"pᵀ(H + δI)p/‖p‖² = {pap / float(p @ p):.3e} ≤ 0, so the quadratic model has no minimum. Fix: "
                "raise damping above −λ_min (see hessian_eigenvalues(..., which='SA')), or use method='direct' "
                "for the stationary point of the quadratic model."
            )
        a = rr / pap
        s += a * p
        r -= a * ap
        rr_new = float(r @ r)
        if math.sqrt(rr_new) <= tol * gnorm:
            return point.split(s.astype(point.dtype))
        p = r + (rr_new / rr) * p
        rr = rr_new
    raise RuntimeError(
        f"{who}: conjugate gradients did not reach ‖(H + δI)s + g‖ ≤ {tol}·‖g‖ in maxiter={maxiter} steps "
        f"(relative residual {math.sqrt(rr) / gnorm:.3e}). Fix: raise maxiter or tol, add damping (better "
        "conditioning), or use method='direct' for a small model."
    )
