"""Gradient clipping, in place on ``p.grad``, with PyTorch's semantics (``torch.nn.utils``).

Like the optimizers, these see parameters and their gradients only; a parameter whose ``grad`` is
``None`` is left out of the norm and left alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from nablanet._validation import a_type
from nablanet.parameter import Parameter


def _grads(parameters: Parameter | Iterable[Parameter], who: str) -> list[np.ndarray]:
    params = [parameters] if isinstance(parameters, Parameter) else list(parameters)
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(
                f"{who} received {a_type(p)} among the parameters; expected nablanet "
                "Parameter objects. Fix: pass model.parameters()."
            )
    for p in params:
        if p.grad is not None and not isinstance(p.grad, np.ndarray):
            # a VJP's scalar sum (dβ = Σ ...) is a NumPy scalar, which cannot be scaled in place
            p.grad = np.asarray(p.grad)
    return [p.grad for p in params if p.grad is not None]


def _vector_norm(x: np.ndarray, p: float) -> np.floating:
    """‖x‖ₚ of x flattened, in x's dtype: max |xᵢ| for p = ∞, (Σ |xᵢ|ᵖ)^(1/p) otherwise."""
    flat = x.reshape(-1)
    if p == math.inf:
        return np.max(np.abs(flat), initial=0.0)
    if p == 2:
        return np.sqrt(np.dot(flat, flat))  # one BLAS call, no |x|ᵖ temporary
    return np.sum(np.abs(flat) ** p) ** (1 / p)


def clip_grad_norm_(
    parameters: Parameter | Iterable[Parameter],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> float:
    """Scale all gradients together so their joint norm is at most ``max_norm``; return the norm.

        N = ‖(‖g₁‖ₚ, …, ‖g_K‖ₚ)‖ₚ          (the p-norm of all gradients as one vector)
        gₖ ← gₖ · min(max_norm / (N + 10⁻⁶), 1)

    The 10⁻⁶ keeps the division finite when N = 0 (PyTorch's choice; the clipped norm is then a
    hair below max_norm). ``norm_type`` is p > 0, or ``math.inf`` for max |gᵢ|. N is computed in
    the gradients' dtype and returned as a float (the norm before clipping). A NaN or infinite N
    makes every gradient NaN, as in PyTorch, unless ``error_if_nonfinite=True`` raises instead.
    """
    p = float(norm_type)
    if not p > 0:
        raise ValueError(
            f"clip_grad_norm_ received norm_type={norm_type!r}; expected p > 0 or math.inf. "
            "Fix: use 2.0 (Euclidean), 1.0, or math.inf (largest entry)."
        )
    if not max_norm >= 0:
        raise ValueError(
            f"clip_grad_norm_ received max_norm={max_norm!r}; expected a number >= 0. "
            "Fix: pass the largest gradient norm you allow, e.g. max_norm=1.0."
        )
    grads = _grads(parameters, "clip_grad_norm_")
    if not grads:
        return 0.0
    total = _vector_norm(np.array([_vector_norm(g, p) for g in grads]), p)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total {p:g}-norm of the gradients is {float(total)}; expected a "
            "finite norm. Fix: look for NaN/inf in the loss or gradients, or pass "
            "error_if_nonfinite=False to scale them by the non-finite norm anyway."
        )
    coef = max_norm / (total + 1e-6)
    if not coef >= 1:  # NaN falls through and poisons the gradients, as in PyTorch
        for g in grads:
            g *= coef
    return float(total)


def clip_grad_value_(parameters: Parameter | Iterable[Parameter], clip_value: float) -> None:
    """Clamp every gradient entry to [−c, c] in place (c = ``clip_value`` ≥ 0)."""
    if not clip_value >= 0:
        raise ValueError(
            f"clip_grad_value_ received clip_value={clip_value!r}; expected a number >= 0. "
            "Fix: pass the largest absolute gradient entry you allow, e.g. clip_value=1.0."
        )
    for g in _grads(parameters, "clip_grad_value_"):
        np.clip(g, -clip_value, clip_value, out=g)
