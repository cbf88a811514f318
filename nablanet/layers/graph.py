"""Model graphs beyond a chain: residual add, parallel branches (sum, product, concat, pair), keeping the tape.

Each is a ``Container`` (the container protocol, in base.py): its ``_backward`` runs each child's
``_backward`` on the child's share of dy, so ``Sequential.backward`` returns a flat tape with an
entry for every leaf layer wherever it sits in the graph, and the gradient lab reads it unchanged.

Names. Every combinator here names its children ``"0"``, ``"1"``, … in the order given, as
``torch.nn.Sequential``/``ModuleList`` do. In ``Sequential(Linear(4, 8), Residual(Linear(8, 8),
Tanh()), Multiply(Sequential(Linear(8, 8), Sigmoid()), Linear(8, 8)))`` the tape lists ``"0"``,
``"1.0"``, ``"1.1"``, ``"2.0.0"``, ``"2.0.1"``, ``"2.1"``, and the state_dict keys are those names
followed by ``.weight``/``.bias``.

Branch outputs in a pair (``Parallel(combine="tuple")``, ``Pair``) are passed on as a tuple, which a
two-input layer (``Bilinear``) takes as its x; its VJP returns the tuple (dx₁, dx₂) that the pair's
backward splits again. Index letters: n batch, k branch, v vector axis.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from nablanet._random import RNGLike, get_rng
from nablanet.layers import kernels
from nablanet.layers.base import NO_DX, Combinator, Container, Layer, Tape, backward_child
from nablanet.layers.sequential import Sequential

# Container and backward_child live in base.py; they were long imported from here, so they stay importable here
__all__ = [
    "COMBINES", "Container", "Multiply", "Pair", "Parallel", "ParallelCache", "Residual", "ResidualCache",
    "backward_child",
]


# -- residual ----------------------------------------------------------------------------------------
class ResidualCache(NamedTuple):
    caches: list[Any]  # the chain's caches, one per child


class Residual(Combinator):
    """Skip connection around a chain:  y = x + f(x),  f = fₖ ∘ … ∘ f₁ (the children, in order).

    Shapes:  x, f(x), y (N, *) — f must keep the shape.
    VJP:     dx = dy + J_fᵀ dy   (the identity path passes dy on unchanged; the chain adds its VJP)
             parameter gradients are the chain's: dθ = (∂f/∂θ)ᵀ dy.
    Vector axes and per-sample gradients pass through the chain's VJPs unchanged.
    Children are named "0", "1", … like a ``torch.nn.Sequential`` subclass whose forward returns
    ``x + super().forward(x)``, so its state_dict loads as is; tape names are ``"<prefix>.0"`` etc.
    """

    min_children = 1
    _f: Sequential

    def __init__(self, *layers: Layer) -> None:
        super().__init__(*layers)
        # f runs as a Sequential of the same children (its forward and chain-rule backward); kept off
        # _modules, so the children stay this layer's own ("0", not "f.0") in the state_dict and tape
        object.__setattr__(self, "_f", Sequential(*layers))

    def forward(self, x: np.ndarray, *, train: bool = False, rng: RNGLike = None) -> tuple[np.ndarray, ResidualCache]:
        h, caches = self._f.forward(x, train=train, rng=rng)
        if not isinstance(h, np.ndarray) or h.shape != x.shape:
            got = h.shape if isinstance(h, np.ndarray) else type(h).__name__
            raise ValueError(
                f"Residual: the branch maps x of shape {x.shape} to {got}; y = x + f(x) needs f to keep "
                "the shape. Make the last layer's output size equal the input's (e.g. Linear(d, d))."
            )
        return x + h, ResidualCache(caches)

    def _backward(
        self, cache: ResidualCache, dy: np.ndarray, per_sample: bool, prefix: str, tape: Tape, need_dx: bool = True
    ) -> np.ndarray:
        g = self._f._backward(cache.caches, dy, per_sample, prefix, tape, need_dx)
        return dy + g if need_dx else NO_DX


# -- parallel branches -------------------------------------------------------------------------------
COMBINES = ("sum", "mul", "concat", "tuple")


class ParallelCache(NamedTuple):
    caches: list[Any]  # one per branch
    outputs: list[np.ndarray] | None  # the branch outputs (kept for "mul" only: each VJP needs the others)
    sizes: list[int] | None  # the branch sizes along the concatenation axis ("concat")
    axis: int  # the concatenation axis as a negative index ("concat"), else 0
    ndim: int  # the rank of each branch output


class Parallel(Combinator):
    """Branches applied to the same input, their outputs combined:  yₖ = fₖ(x), k = 1 … K.

    combine="sum":     y = Σₖ yₖ              dyₖ = dy
    combine="mul":     y = ∏ₖ yₖ (elementwise) dyₖ = dy ⊙ ∏_{j≠k} yⱼ
                       (the notes' multiplicative layer: ∂Div/∂yₖ picks up the other factors)
    combine="concat":  y = [y₁, …, y_K] along ``dim``   dyₖ = the slice of dy that yₖ filled
    combine="tuple":   y = (y₁, …, y_K), passed on as a tuple (e.g. to ``Bilinear``); dy is a tuple too
    Input:             dx = Σₖ J_fₖᵀ dyₖ  (every branch saw x, so their input gradients add)

    Shapes: x (N, *in); branch outputs (N, *out), equal for "sum"/"mul", equal except along ``dim``
    for "concat". dy may carry leading vector axes (*V, N, *out); ``dim`` counts on the output
    without them. Parameter gradients are the branches' own, named "k.<name>"; with
    ``per_sample=True`` they keep the batch axis as the branches give it.
    """

    min_children = 1

    def __init__(self, *branches: Layer, combine: str = "sum", dim: int = -1) -> None:
        super().__init__(*branches)
        if combine not in COMBINES:
            raise ValueError(
                f"{type(self).__name__}(combine={combine!r}): expected one of {COMBINES} — 'sum' adds the "
                "branch outputs, 'mul' multiplies them elementwise, 'concat' joins them along dim, 'tuple' "
                "passes them on as a tuple."
            )
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer):
            raise TypeError(f"{type(self).__name__}(dim={dim!r}): dim must be an int axis, e.g. dim=-1")
        self.combine = combine
        self.dim = int(dim)

    def forward(self, x: Any, *, train: bool = False, rng: RNGLike = None) -> tuple[Any, ParallelCache]:
        gen = get_rng(rng) if train else rng
        outs: list[Any] = []
        caches: list[Any] = []
        for branch in self._modules.values():
            y, c = kernels.forward(branch, x, train=train, rng=gen)
            outs.append(y)
            caches.append(c)
        if self.combine == "tuple":
            return tuple(outs), ParallelCache(caches, None, None, 0, 0)
        self._check_outputs(outs)
        ndim = outs[0].ndim
        if self.combine == "sum":
            return _fold(np.add, outs), ParallelCache(caches, None, None, 0, ndim)
        if self.combine == "mul":
            return _fold(np.multiply, outs), ParallelCache(caches, outs, None, 0, ndim)
        axis = self._axis(ndim)
        return np.concatenate(outs, axis=axis), ParallelCache(caches, None, [y.shape[axis] for y in outs], axis, ndim)

    def _axis(self, ndim: int) -> int:
        if not -ndim <= self.dim < ndim:
            raise ValueError(
                f"{type(self).__name__}(combine='concat', dim={self.dim}): the branch outputs have {ndim} axes, "
                f"so dim must be in [{-ndim}, {ndim - 1}]"
            )
        return self.dim - ndim if self.dim >= 0 else self.dim  # negative: stays right under vector axes

    def _check_outputs(self, outs: list[Any]) -> None:
        who = type(self).__name__
        shapes = [getattr(y, "shape", type(y).__name__) for y in outs]
        if not all(isinstance(y, np.ndarray) for y in outs):
            raise TypeError(f"{who}(combine={self.combine!r}): every branch must output an array; got {shapes}")
        if self.combine == "concat":
            axis = self._axis(outs[0].ndim)
            rest = {tuple(s for i, s in enumerate(y.shape) if i != y.ndim + axis) for y in outs}
            if len({y.ndim for y in outs}) > 1 or len(rest) > 1:
                raise ValueError(
                    f"{who}(combine='concat', dim={self.dim}): branch output shapes {shapes} differ off the "
                    "concatenation axis; they must agree on every other axis."
                )
        elif len({y.shape for y in outs}) > 1:
            raise ValueError(
                f"{who}(combine={self.combine!r}): branch output shapes {shapes} differ; expected equal shapes "
                "(no broadcasting). Make every branch end in the same size, e.g. Linear(d, m) in each."
            )

    def _branch_dys(self, cache: ParallelCache, dy: Any) -> list[Any]:
        """dyₖ for every branch, from dy = ∂L/∂y."""
        k = len(cache.caches)
        if self.combine == "tuple":
            if not isinstance(dy, tuple | list) or len(dy) != k:
                raise ValueError(
                    f"{type(self).__name__}(combine='tuple').vjp expects dy as a tuple of {k} arrays (one per "
                    f"branch, as the next layer's VJP returns them); got {type(dy).__name__}"
                    + (f" of length {len(dy)}" if isinstance(dy, tuple | list) else "")
                )
            return list(dy)
        if not isinstance(dy, np.ndarray) or dy.ndim < cache.ndim:
            raise ValueError(
                f"{type(self).__name__}.vjp got dy with shape {getattr(dy, 'shape', None)}; expected the output's "
                f"{cache.ndim} axes, optionally with leading vector axes (*V, N, ...)."
            )
        if self.combine == "sum":
            return [dy] * k
        if self.combine == "mul":
            outs = cache.outputs
            if outs is None:  # pragma: no cover - forward always keeps them for "mul"
                raise RuntimeError("Parallel(combine='mul') cache lacks the branch outputs")
            # ∏_{j≠k} yⱼ = (y₁ ⋯ yₖ₋₁)(yₖ₊₁ ⋯ y_K) from running products, never dividing by yₖ
            left: list[np.ndarray | None] = [None]
            for y in outs[:-1]:
                left.append(y if left[-1] is None else left[-1] * y)
            right: list[np.ndarray | None] = [None]
            for y in outs[:0:-1]:
                right.append(y if right[-1] is None else right[-1] * y)
            right.reverse()
            dys: list[Any] = []
            for lo, hi in zip(left, right, strict=True):
                factors = [f for f in (lo, hi) if f is not None]
                dys.append(dy * (factors[0] * factors[1] if len(factors) == 2 else factors[0]) if factors else dy)
            return dys
        sizes = cache.sizes if cache.sizes is not None else []
        bounds = np.cumsum([0, *sizes])
        index: list[Any] = [slice(None)] * dy.ndim
        dys = []
        for j in range(k):
            index[cache.axis] = slice(int(bounds[j]), int(bounds[j + 1]))
            dys.append(dy[tuple(index)])
        return dys

    def _backward(
        self, cache: ParallelCache, dy: Any, per_sample: bool, prefix: str, tape: Tape, need_dx: bool = True
    ) -> Any:
        dys = self._branch_dys(cache, dy)
        dx: Any = None
        for (name, branch), c, g in zip(self._modules.items(), cache.caches, dys, strict=True):
            dxk = branch._backward(c, g, per_sample, f"{prefix}{name}.", tape, need_dx)
            if need_dx:
                dx = dxk if dx is None else _add(dx, dxk)
        return dx if need_dx else NO_DX

    def extra_repr(self) -> str:
        return f"combine={self.combine!r}" + (f", dim={self.dim}" if self.combine == "concat" else "")

    def get_config(self) -> dict[str, Any]:
        return {"combine": self.combine, "dim": self.dim}


def _fold(op: np.ufunc, outs: list[np.ndarray]) -> np.ndarray:
    """y₁ op y₂ op … op y_K into one new array (never one of the branch outputs)."""
    total = op(outs[0], outs[1]) if len(outs) > 1 else outs[0].copy()
    for y in outs[2:]:
        op(total, y, out=total)
    return total


def _add(a: Any, b: Any) -> Any:
    """a + b for arrays, elementwise for tuples of arrays (input gradients of a tuple-valued x)."""
    if isinstance(a, tuple):
        return tuple(_add(p, q) for p, q in zip(a, b, strict=True))
    return a + b


class Multiply(Parallel):
    """Elementwise product of branches (gating):  y = f₁(x) ⊙ f₂(x) ⊙ …

    ``Multiply(Sequential(Linear(d, m), Sigmoid()), Linear(d, m))`` is a gated linear unit.
    VJP (two branches): dy₁ = dy ⊙ y₂,  dy₂ = dy ⊙ y₁,  dx = J_f₁ᵀ dy₁ + J_f₂ᵀ dy₂ — the
    notes' multiplicative combination, where the derivative by one factor is the other factor.
    Same as ``Parallel(*branches, combine="mul")``; children "0", "1", ….
    """

    min_children = 2

    def __init__(self, *branches: Layer) -> None:
        super().__init__(*branches, combine="mul")

    def extra_repr(self) -> str:
        return ""

    def get_config(self) -> dict[str, Any]:
        return {}


class Pair(Parallel):
    """Two branches on the same input, passed on as a tuple:  y = (a(x), b(x)).

    For two-input layers: ``Sequential(Pair(f, g), Bilinear(m₁, m₂, o))`` computes Bilinear(f(x), g(x)).
    VJP: dy = (dy₁, dy₂) (as the next layer's VJP returns it);  dx = J_aᵀ dy₁ + J_bᵀ dy₂.
    Same as ``Parallel(a, b, combine="tuple")``; children "0" and "1".
    """

    def __init__(self, a: Layer, b: Layer) -> None:
        super().__init__(a, b, combine="tuple")

    def extra_repr(self) -> str:
        return ""

    def get_config(self) -> dict[str, Any]:
        return {}
