"""The model linearized at one point (θ, x, target): one forward and backward pass, reused by every
curvature product (``nablanet.lab.curvature`` builds one per call).

Two ways through the model, one answer:
* a chain (a leaf layer, or Sequentials of leaf layers nested to any depth) runs its R-passes along
  the tape, reading each leaf's cache and dy there: the fast path;
* any other model (skip connections, parallel branches, attention, containers of your own with
  their rules) is one node: ẏ = jvp(model, ẋ = 0, θ̇), (∂L/∂y)˙ = ∇²_y L ẏ, and
  (∇_θ L)˙ = vjp_rop(model, dy, (∂L/∂y)˙, 0, θ̇). Each container's rules compose its children's
  along its own data flow (``nablanet/lab/rules/sequential.py``, ``graph.py``, ``attention.py``).
``params`` restricts θ to a block S: tangents vanish outside S and the products are (H v)_S, so the
dense matrix is H_SS and its spectrum that block's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from nablanet._random import RNGLike
from nablanet.lab import rop
from nablanet.lab._params import selected_shapes
from nablanet.lab._per_layer import verify_user_rules
from nablanet.lab._tape import run_tape
from nablanet.lab.rules import lacks, require  # importing the package registers every layer's and loss's rules
from nablanet.lab.rules.recurrent import refuse_truncated
from nablanet.layers import kernels
from nablanet.layers.activations import Elementwise
from nablanet.layers.base import Layer
from nablanet.layers.recurrent import recurrent_layers
from nablanet.layers.sequential import Sequential
from nablanet.losses.base import Loss


def check_types(who: str, model: Any, loss: Any) -> None:
    if not isinstance(model, Layer):
        raise TypeError(f"{who} got model={type(model).__name__}; expected a nablanet Layer such as a Sequential.")
    if not isinstance(loss, Loss):
        raise TypeError(
            f"{who} got loss={type(loss).__name__}; expected a nablanet loss instance such as CrossEntropyLoss()."
        )


def split_flat(who: str, vec: Any, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Views of ``vec`` reshaped per parameter."""
    v = np.asarray(vec)
    total = sum(math.prod(s) for s in shapes.values())
    if v.ndim != 1 or v.size != total:
        raise ValueError(
            f"{who} got a vector of shape {v.shape}; expected ({total},), one entry per parameter in "
            "model.named_parameters() order (of the params= block if one is given). Build one with "
            "flatten_params(d, model)."
        )
    out: dict[str, np.ndarray] = {}
    start = 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        out[name] = v[start : start + size].reshape(shape)
        start += size
    return out


def check_vector(
    who: str, v: Any, shapes: Mapping[str, tuple[int, ...]], dtype: np.dtype[Any] | None
) -> dict[str, np.ndarray]:
    """``v`` as ``{name: array}`` with exactly the names and shapes of ``shapes``, in that order."""
    if not isinstance(v, Mapping):
        raise TypeError(
            f"{who} got v of type {type(v).__name__}; expected a dict {{parameter name: array}} like the gradients "
            "of value_and_grad. For a flat vector use unflatten_params(vec, model)."
        )
    missing = [k for k in shapes if k not in v]
    unexpected = [k for k in v if k not in shapes]
    if missing or unexpected:
        raise KeyError(
            f"{who}: v has missing keys {missing} and unexpected keys {unexpected}; expected exactly the "
            f"parameter names {list(shapes)} (the model's, or the params= block's). Use a zero array for "
            "parameters that do not move."
        )
    out: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        a = np.asarray(v[name])
        if a.shape != shape:
            raise ValueError(
                f"{who}: v[{name!r}] has shape {a.shape} but the parameter has shape {shape}; pass an array of the "
                "parameter's shape."
            )
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{who}: v[{name!r}] has non-numeric dtype {a.dtype}; expected floats.")
        out[name] = a if dtype is None else a.astype(dtype, copy=False)
        if not np.all(np.isfinite(out[name])):
            raise ValueError(f"{who}: v[{name!r}] contains NaN or inf; expected finite numbers.")
    return out


def chain_leaves(layer: Layer) -> list[Layer] | None:
    """The leaf layers of a chain (a leaf, or Sequentials nested to any depth) in forward order; None
    for any other model, whose data flow only its containers' rules know."""
    if isinstance(layer, Sequential):
        leaves: list[Layer] = []
        for child in layer:
            inner = chain_leaves(child)
            if inner is None:
                return None
            leaves += inner
        return leaves
    return None if any(True for _ in layer.children()) else [layer]


def _rop_needs(layer: Layer) -> list[str]:
    """What H v needs of a layer beyond its jvp: vjp_rop, and f″ of an elementwise activation."""
    return ["vjp_rop", "d2f"] if isinstance(layer, Elementwise) else ["vjp_rop"]


class Point:
    """One forward and backward pass at (θ, x, target), reused by every curvature product.

    Holds the tape (each leaf's cache and dy = ∂L/∂(its output)), the model's own cache, the loss
    cache and the gradient g of the selected parameters. On a chain, ``first`` is the index of the
    first tape entry with a selected parameter: everything before it has zero tangents (ẋ = 0 at the
    input), so the R-passes start and stop there.
    """

    def __init__(self, who: str, model: Layer, loss: Loss, x: Any, target: Any, train: bool, rng: RNGLike,
                 params: Any = None) -> None:
        check_types(who, model, loss)
        self.who, self.model, self.loss = who, model, loss
        all_shapes = {name: p.shape for name, p in model.named_parameters()}
        self.shapes = selected_shapes(model, params, who)
        self.size = sum(math.prod(s) for s in self.shapes.values())
        for layer in recurrent_layers(model):  # before any work: truncated BPTT's gradient has no Hessian
            refuse_truncated(layer)
        leaves = chain_leaves(model)
        run = run_tape(model, loss, x, target, train=train, rng=rng)
        self.value, self.loss_cache, self.tape, self.cache = run.value, run.loss_cache, run.tape, run.cache
        params_ = list(model.parameters())
        self.dtype: np.dtype[Any] = params_[0].dtype if params_ else run.output.dtype
        # full parameter names of each tape entry, by local name
        self.owned = [{local: (f"{e.name}.{local}" if e.name else local) for local in e.grads} for e in self.tape]
        on_tape = {full: e.grads[local] for e, names in zip(self.tape, self.owned, strict=True)
                   for local, full in names.items()}
        if sorted(on_tape) != sorted(all_shapes):
            raise ValueError(f"{who}: the backward pass produced gradients for {sorted(on_tape)} but the model has "
                             f"parameters {list(all_shapes)}; every parameter must be on the tape, under its "
                             "state_dict name.")
        self.grad = {name: on_tape[name] for name in self.shapes}
        self.chain = leaves is not None and [id(e.layer) for e in self.tape] == [id(la) for la in leaves]
        self.first = next((i for i, own in enumerate(self.owned) if set(own.values()) & self.shapes.keys()),
                          len(self.tape))
        layers = ([e.layer for e in self.tape[self.first:]] if self.chain
                  else [la for _, la in model._walk()])
        self._require(layers)
        for e in self.tape[self.first if self.chain else 0:]:
            verify_user_rules(who, e)
        self._loss_hvp = rop.loss_rule(loss)

    def _require(self, layers: list[Layer]) -> None:
        """Every rule a product needs, looked up now: all the gaps show in one error, before any work
        (G v needs the forward R-op only; H v the backward one too, refused when it is first asked for)."""
        self._rop_needs = [(la, _rop_needs(la)) for la in layers]
        rop_gaps = [la for la, qs in self._rop_needs if lacks(la, qs)]
        # when a rule every product needs is missing, name the backward ones missing too: all gaps in one error
        first_order = any(lacks(la, ["jvp"]) for la in layers) or bool(lacks(self.loss, ["loss_hvp"]))
        shown = rop_gaps if first_order else []
        require(self.who, [*[(la, ["jvp", *(qs if la in shown else [])]) for la, qs in self._rop_needs],
                           (self.loss, ["loss_hvp"])],
                "the R-op rules of every layer that carries a tangent (jvp for J v; vjp_rop, and f″ of an "
                "elementwise activation, for H v) and the loss's Hessian rule (loss_hvp)")
        self._rop_gaps = bool(rop_gaps)

    # -- flat helpers
    def split(self, vec: np.ndarray) -> dict[str, np.ndarray]:
        return split_flat(self.who, np.asarray(vec, dtype=self.dtype), self.shapes)

    def flat(self, d: Mapping[str, np.ndarray]) -> np.ndarray:
        if not d:
            return np.zeros(0)
        return np.concatenate([np.asarray(d[name], dtype=np.float64).reshape(-1) for name in self.shapes])

    def check(self, v: Any) -> dict[str, np.ndarray]:
        return check_vector(self.who, v, self.shapes, self.dtype)

    # -- the passes
    def _output_hvp(self, ydot: Any) -> np.ndarray:
        if ydot is None:  # no selected parameter moves the output
            ydot = np.zeros(self.loss_cache.input_shape, dtype=self.loss_cache.dtype)
        return np.asarray(self._loss_hvp(self.loss, self.loss_cache, ydot), dtype=self.loss_cache.dtype)

    def _forward_r(self, v: Mapping[str, np.ndarray]) -> tuple[list[Any], Any]:
        """On a chain: ẋ at every tape entry's input (None: zero) and ẏ = J v at the model output."""
        xdots: list[Any] = [None] * len(self.tape)
        xdot: Any = None
        for i in range(self.first, len(self.tape)):
            e = self.tape[i]
            xdots[i] = xdot
            xdot = rop.jvp(e.layer, e.cache, xdot, self._tangents(i, v))
            if xdot is not None and np.shape(xdot) != e.dy.shape:  # ẏ has y's shape, which dy has
                raise ValueError(f"{self.who}: the jvp rule of layer {e.name!r} ({type(e.layer).__name__}) returned "
                                 f"ẏ of shape {np.shape(xdot)}; the layer's output has shape {e.dy.shape}.")
        return xdots, xdot

    def _tangents(self, i: int, v: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {local: v[full] for local, full in self.owned[i].items() if full in v}

    def _collect(self, name: str, layer: Layer, grads: Mapping[str, np.ndarray], rule: str,
                 pairs: Mapping[str, str]) -> dict[str, np.ndarray]:
        out = {}
        for local, full in pairs.items():
            if full not in self.shapes:
                continue
            got = grads.get(local)
            if got is None or np.shape(got) != self.shapes[full]:
                raise ValueError(f"{self.who}: the {rule} rule of layer {name!r} ({type(layer).__name__}) returned "
                                 f"(d{local})˙ of shape {None if got is None else np.shape(got)}; the parameter "
                                 f"has shape {self.shapes[full]}.")
            out[full] = got
        return out

    def hvp(self, v: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """H v by forward-over-reverse (``v`` already checked), restricted to the selected block."""
        if self._rop_gaps:
            require(self.who, self._rop_needs, "the backward R-op (vjp_rop, and f″ of an elementwise activation) of "
                    "every layer for H v")
        if not self.shapes:
            return {}
        if not self.chain:
            dy = self.loss.vjp(self.loss_cache)
            with rop.one_direction({id(e.cache): e.dy for e in self.tape}):
                dydot = self._output_hvp(rop.jvp(self.model, self.cache, None, v))
                _, grads = rop.vjp_rop(self.model, self.cache, dy, dydot, None, v, need_dx=False)
            return self._collect("", self.model, grads, "vjp_rop", {n: n for n in self.shapes})
        xdots, ydot = self._forward_r(v)
        dydot = self._output_hvp(ydot)
        out: dict[str, np.ndarray] = {}
        for i in range(len(self.tape) - 1, self.first - 1, -1):
            e = self.tape[i]
            dydot, grads = rop.vjp_rop(e.layer, e.cache, e.dy, dydot, xdots[i], self._tangents(i, v),
                                       need_dx=i > self.first)
            out.update(self._collect(e.name, e.layer, grads, "vjp_rop", self.owned[i]))
        return {name: out[name] for name in self.shapes}

    def ggn_vp(self, v: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """G v = Jᵀ H_L J v (``v`` already checked), restricted to the selected block."""
        if not self.shapes:
            return {}
        if not self.chain:
            u = self._output_hvp(rop.jvp(self.model, self.cache, None, v))
            _, grads = kernels.vjp(self.model, self.cache, u, per_sample=False, need_dx=False)
            return {name: grads[name] for name in self.shapes}
        _, ydot = self._forward_r(v)
        u = self._output_hvp(ydot)
        out: dict[str, np.ndarray] = {}
        for i in range(len(self.tape) - 1, self.first - 1, -1):
            e = self.tape[i]
            u, grads = kernels.vjp(e.layer, e.cache, u, per_sample=False, need_dx=i > self.first,
                                   prefix=f"{e.name}.", vector_axes=0)
            out.update({full: grads[local] for local, full in self.owned[i].items() if full in self.shapes})
        return {name: out[name] for name in self.shapes}

    def operator(self, matrix: str) -> Callable[[np.ndarray], np.ndarray]:
        """The flat product vec (P,) → H vec or G vec (P,), in float64."""
        product = self.hvp if matrix == "hessian" else self.ggn_vp
        return lambda vec: self.flat(product(self.split(vec)))

    def dense(self, matrix: str, max_params: int) -> np.ndarray:
        """The (P, P) matrix, column k = product with the k-th basis vector."""
        p = self.size
        if p > max_params:
            mib = p * p * 8 / 2**20
            raise ValueError(
                f"{self.who}: the model has P = {p} parameters; a dense ({p}, {p}) matrix takes {mib:.0f} MiB and "
                f"{p} products, above max_params={max_params}. Fix: pass a larger max_params, a block with params=, "
                "or use hvp, hessian_eigenvalues or hutchinson_trace, which never build the matrix."
            )
        op = self.operator(matrix)
        out = np.empty((p, p))
        e = np.zeros(p)
        for k in range(p):
            e[k] = 1.0
            out[:, k] = op(e)
            e[k] = 0.0
        return out.astype(self.dtype, copy=False)
