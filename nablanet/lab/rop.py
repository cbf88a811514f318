"""The R-operator of Pearlmutter (1994): notation, dispatch, and the helpers every second-order rule uses.

Notation. Every quantity is a function of the parameters θ (and of the input x). Move θ along a
direction v, θ(ε) = θ + εv; a dot is the derivative d/dε at ε = 0 (the R-operator): θ̇ = v, ẋ, ẏ,
dẏ = (dy)˙, … Index letters: n batch, i in, o out, c class.

Two rules per layer type and one per loss; each layer's sit beside it in ``nablanet/lab/rules/``
(``rules/linear.py`` for ``layers/linear.py``, …), registered in ``nablanet.lab.registry``:

* ``jvp`` (forward R-pass), the Jacobian-vector product of the forward:
      ẏ = ∂y/∂x · ẋ + Σ_θ ∂y/∂θ · θ̇
  e.g. Linear ẏ = ẋ Wᵀ + x Ẇᵀ + ḃ;  elementwise ẏ = f′(x) ⊙ ẋ.
* ``vjp_rop`` (backward R-pass), the tangent of the layer's VJP. The VJP maps (x, θ, dy) to
  (dx, dθ); its tangent is
      (dx)˙ = VJP(dẏ) + [∂(dx)/∂x] ẋ + [∂(dx)/∂θ] θ̇        (likewise for each dθ)
  e.g. Linear: dx = dy W → (dx)˙ = dẏ W + dy Ẇ;  dW = dyᵀ x → (dW)˙ = dẏᵀ x + dyᵀ ẋ;  (db)˙ = Σₙ dẏₙ.
  Elementwise: dx = dy ⊙ f′(x) → (dx)˙ = dẏ ⊙ f′(x) + dy ⊙ f″(x) ⊙ ẋ, with f″ from ``d2f``.
* ``loss_hvp``, per loss: the tangent of ∂L/∂y, i.e. the loss Hessian times ẏ, (∂L/∂y)˙ = ∇²_y L · ẏ.

Running ``jvp`` forward through a chain (ẋ = 0 at the input), ``loss_hvp`` at the output and
``vjp_rop`` backward gives the exact Hessian-vector product H v = (∇_θ L)˙ (forward-over-reverse),
see ``nablanet.lab.curvature``. A zero tangent is passed as ``None`` (the model input's ẋ, and
anything computed from it alone), so no work is spent on zeros. Tangents carry no vector axes: one
direction per pass. A parameter missing from θ̇ has a zero tangent.

Containers (Sequential, Residual, Parallel, MultiheadAttention, …) have the same two rules and
compose their children's along their own data flow: θ̇ and the returned (dθ)˙ are keyed by the
container's state_dict names (``"0.weight"``, ``"out_proj.bias"``), a child gets its own slice
through ``child_tangents`` and hands its result back through ``prefixed``. A ``vjp_rop`` rule
returns (dθ)˙ for every parameter of its layer. Tangents of a tuple-valued input (``Pair`` into
``Bilinear``) are tuples whose parts may be None. A container's vjp_rop recomputes what it needs
(its children's ẋ by their jvp rules, their primal dy by their VJPs), so every rule keeps the one
signature above and a new container or layer gets curvature by writing its two rules. Within one
product (``one_direction``), each layer's ẏ is computed once and a leaf's primal dy is read from the
tape (``primal_dy``) instead.

An unknown layer, activation or loss fails loudly with a NotImplementedError naming its type, the
missing rule, and the module where such a rule is registered.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import numpy as np

from nablanet.lab.registry import d2f_rules, jvp_rules, loss_hvp_rules, vjp_rop_rules
from nablanet.layers.activations import Elementwise
from nablanet.layers.base import NO_DX, Layer
from nablanet.layers.contract import LeafCache
from nablanet.losses.base import Loss, LossCache
from nablanet.parameter import Parameter

Tangents = Mapping[str, np.ndarray]
"""Parameter tangents θ̇ of one layer, by local name (``"weight"``, ``"bias"``)."""

RopResult = tuple[np.ndarray, dict[str, np.ndarray]]
"""What a ``vjp_rop`` rule returns: ((dx)˙ or NO_DX, {local name: (dθ)˙})."""

L = TypeVar("L", bound=Layer)


# -- dispatch ----------------------------------------------------------------------------------------
def jvp(layer: Layer, cache: Any, xdot: Any, thetadot: Tangents) -> Any:
    """ẏ = ∂y/∂x ẋ + Σ ∂y/∂θ θ̇ for one layer at the point its forward cached (None: ẏ = 0).

    With ẋ = 0 and no parameter tangent the answer is ẏ = 0 (None) whatever the layer; that case
    returns before any rule is looked up, so a layer before every moving parameter costs nothing.
    """
    if xdot is None and not thetadot:
        return None
    memo = _MEMO.get()
    key = (id(layer), id(cache), id(xdot))
    if memo is not None and key in memo:
        return memo[key][-1]
    inner = cache.cache if type(cache) is LeafCache else cache  # a layer of the user's: its rules take its own
    ydot = jvp_rules[layer](layer, inner, xdot, thetadot)
    if memo is not None:
        memo[key] = (layer, cache, xdot, ydot)  # holding the key's objects keeps their ids from being reused
    return ydot


_MEMO: ContextVar[dict[tuple[int, int, int], tuple[Any, ...]] | None] = ContextVar("rop_memo", default=None)
_PRIMAL_DYS: ContextVar[Mapping[int, Any] | None] = ContextVar("rop_primal_dys", default=None)


@contextmanager
def one_direction(primal_dys: Mapping[int, Any] | None = None) -> Iterator[None]:
    """Within one product, where θ̇ is fixed, each (layer, cache, ẋ) gets its ẏ computed once, and
    ``primal_dy`` reads the backward pass's dy of a leaf from ``primal_dys`` ({id(cache): dy}, the tape's).

    A container's vjp_rop needs its children's input tangents, which its jvp computed already, and their
    primal dy, which backward computed already; nested containers would otherwise redo both once per
    level. The curvature lab wraps each product in this; outside it every call computes.
    """
    token, token_dys = _MEMO.set({}), _PRIMAL_DYS.set(primal_dys)
    try:
        yield
    finally:
        _MEMO.reset(token)
        _PRIMAL_DYS.reset(token_dys)


def primal_dy(cache: Any) -> Any:
    """dy = ∂L/∂(output) of the leaf whose forward returned ``cache``, as backward computed it, where the
    curvature lab handed the tape in (``one_direction``); None otherwise (the caller computes it)."""
    dys = _PRIMAL_DYS.get()
    if dys is None:
        return None
    return dys.get(id(cache.cache if type(cache) is LeafCache else cache))


def vjp_rop(
    layer: Layer,
    cache: Any,
    dy: np.ndarray,
    dydot: np.ndarray,
    xdot: np.ndarray | None,
    thetadot: Tangents,
    *,
    need_dx: bool = True,
) -> RopResult:
    """The tangent of ``layer.vjp(cache, dy)``: ((dx)˙, {name: (dθ)˙}). With need_dx=False (dx)˙ is NO_DX."""
    if type(cache) is LeafCache:
        cache = cache.cache
    return vjp_rop_rules[layer](layer, cache, dy, dydot, xdot, thetadot, need_dx)


def d2f(layer: Elementwise, x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """f″(x) of an elementwise activation (y = f(x) is passed too), or None where f″ ≡ 0."""
    return d2f_rules[layer](layer, x, y)


def loss_rule(loss: Loss) -> Callable[[Loss, LossCache, np.ndarray], np.ndarray]:
    """The ``loss_hvp`` rule for ``type(loss)``, or a NotImplementedError naming the type."""
    return loss_hvp_rules[loss]


def loss_hvp(loss: Loss, cache: LossCache, ydot: np.ndarray) -> np.ndarray:
    """∇²_y L · ẏ: the tangent of ``loss.vjp(cache)`` when the loss input moves along ẏ."""
    if loss.reduction == "none":
        raise ValueError(f"loss_hvp needs a scalar loss; {loss!r} has reduction='none'. Use 'mean' or 'sum'.")
    return np.asarray(loss_rule(loss)(loss, cache, ydot), dtype=cache.dtype)


# -- helpers of the rules ------------------------------------------------------------------------------
def add(a: Any, b: Any) -> Any:
    """a + b where None stands for a zero array; tuples (a pair of inputs) add elementwise."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, tuple):
        return tuple(add(p, q) for p, q in zip(a, b, strict=True))
    return a + b


def child_tangents(thetadot: Tangents, prefix: str) -> dict[str, np.ndarray]:
    """The tangents of one child of a container: θ̇ is keyed by the container's state_dict names
    (``"0.weight"``, ``"out_proj.bias"``); the child's rule wants its own (``"weight"``)."""
    head = prefix + "."
    return {name[len(head):]: t for name, t in thetadot.items() if name.startswith(head)}


def prefixed(prefix: str, grads: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A child's (dθ)˙ renamed into its container's state_dict names (the inverse of child_tangents)."""
    return {f"{prefix}.{name}": g for name, g in grads.items()}


def substitute(layer: L, **params: np.ndarray | None) -> L:
    """A shallow copy of ``layer`` whose named parameters are replaced (None removes one, e.g. the bias).

    The copy has its own parameter table, so ``layer`` is never touched (forward stays reentrant);
    used to evaluate a bilinear layer at a tangent, e.g. conv(x, Ẇ) = the layer with W := Ẇ, b := None.
    """
    clone = copy.copy(layer)
    object.__setattr__(clone, "_parameters", dict(layer._parameters))
    for name, arr in params.items():
        setattr(clone, name, None if arr is None else Parameter(arr))
    return clone


def no_params(layer: Layer, thetadot: Tangents) -> None:
    """Parameter-free layers accept no parameter tangents."""
    if thetadot:
        raise ValueError(
            f"{type(layer).__name__} has no parameters but got tangents for {sorted(thetadot)}; pass {{}} for it."
        )


# -- two rules shared by layers of several files ------------------------------------------------------
def jvp_linear_map(layer: Layer, cache: Any, xdot: np.ndarray | None, thetadot: Tangents) -> np.ndarray | None:
    """A linear layer y = A x (identity, reshape, averaging) is its own JVP: ẏ = A ẋ = layer(ẋ)."""
    no_params(layer, thetadot)
    return None if xdot is None else layer.forward(xdot)[0]


def vjp_rop_fixed_jacobian(
    layer: Layer, cache: Any, dy: np.ndarray, dydot: np.ndarray, xdot: np.ndarray | None, thetadot: Tangents,
    need_dx: bool,
) -> RopResult:
    """Layers whose Jacobian J is fixed by the cache (linear maps; max-pool given its argmax; dropout
    and RReLU given their mask/slopes): dx = Jᵀ dy has no x-dependence, so (dx)˙ = Jᵀ dẏ."""
    no_params(layer, thetadot)
    if not need_dx:
        return NO_DX, {}
    return layer.vjp(cache, dydot)[0], {}
