"""What the instruments report as a layer: each leaf layer's call, and the parts of a layer that is
several layers in one.

``leaves(forward_trace(model, x))`` lists, in forward order, the leaf layers wherever they sit
(inside Residual, Parallel, MultiheadAttention, …), named by their state_dict prefix, and splits a
layer that has a ``parts_rules`` entry into its parts:

* a recurrent stack (RNN, GRU, LSTM): one part per layer k and direction, named by the suffix of
  PyTorch's parameter names, ``"l0"``, ``"l0_reverse"``, ``"l1"``, … (``"0.l1_reverse"`` inside a
  model; it owns ``0.weight_ih_l1_reverse`` and the other parameters ending in ``_l1_reverse``). Its
  input is layer k's input x⁽ᵏ⁾ (the data for k = 0, else both directions of layer k − 1 side by side,
  after the dropout between layers), its output that direction's hidden states h₁ … h_L, both batch
  first: x⁽ᵏ⁾ (N, L, I_k), h (N, L, H). Its VJP is that direction's backpropagation through time
  (the layer's own ``_bptt``) followed by dx = daˣ W_ih, so its Jacobian is ∂(h₁ … h_L)/∂(x⁽ᵏ⁾₁ … x⁽ᵏ⁾_L),
  (N, L·H, L·I_k) per sample;
* MultiheadAttention: its in-projection and attention, x (N, L, E) → O (N, L, E) (the heads joined,
  before ``out_proj``; batch first whatever the layout), named like the layer, as on the tape. Its
  child ``out_proj`` is a leaf of its own (``"<name>.out_proj"``).

A container with no named layer called inside it (a layer of the user's that calls its children
directly, not through ``nablanet.layers.kernels.forward``) is reported as one layer.

A ``Part`` carries the layer, x, y, the cache its activation rule reads (a recurrent part's
``_DirCache``, the attention's ``AttentionCache``: a layer's ``activation_rules`` entry is called
once per part) and ``vjp(dy) -> dx`` for one leading vector axis, dy (V, *y.shape) → dx (V, *x.shape).

``parameter_part_rules`` says which part owns a parameter, so that per-layer gradient quantities
(``nablanet.lab.per_sample.layer_of``) group parameters by the same parts.

Recurrent activation quantities (over every step t, sample n and hidden unit h of the part), read off
the cached gate activations: GRU and LSTM ``saturation_fraction_<gate>`` = mean [|f′(a)| < eps] per
gate (r, z, n; i, f, g, o), with σ′ = s(1 − s) and tanh′ = 1 − g², from the gate's value itself; an
Elman tanh RNN ``saturation_fraction`` of hₜ; a ReLU RNN ``zero_fraction`` and ``dead_fraction`` (the
hidden units that are 0 at every step for every sample); the rule is in ``nablanet/lab/rules/recurrent.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from nablanet.lab._tape import Trace
from nablanet.lab.registry import parameter_part_rules, parts_rules
from nablanet.layers import Sequential, kernels
from nablanet.layers.attention import AttentionCache, MultiheadAttention, MultiheadAttentionCache
from nablanet.layers.base import Layer, TapeEntry
from nablanet.layers.recurrent import RecurrentCache, RNNBase, _DirCache


class Part(NamedTuple):
    """One layer as the instruments report it: a leaf layer's call, or one part of a layer's call."""

    name: str
    layer: Layer
    x: Any
    y: Any
    cache: Any
    vjp: Callable[[np.ndarray], Any]
    """dy (V, *y.shape) → dx (V, *x.shape): the transposed Jacobian of y by x, applied to V vectors."""


def leaves(traces: list[Trace]) -> list[Part]:
    """The leaf layers of a forward trace, in forward order, each layer with parts split into them
    (parts named ``"<layer name>.<part>"``, or the layer's own name for a part named ``""``)."""
    out: list[Part] = []
    for t in traces:
        rule = parts_rules.find(t.layer)
        if rule is not None:
            out += [p._replace(name=_joined(t.name, p.name)) for p in rule(t.layer, t.x, t.y, t.cache)]
        elif t.inside == 0 and not isinstance(t.layer, Sequential):
            out.append(Part(t.name, t.layer, t.x, t.y, t.cache, partial(layer_vjp, t.layer, t.cache)))
    return out


def entry_parts(entry: TapeEntry) -> list[Part]:
    """The parts of a tape entry's leaf layer, from its cache (a recurrent stack's, per layer and
    direction), named as in ``leaves``; [] for a layer without parts. (A container's entries on the
    tape are its parts already: MultiheadAttention's own and its ``out_proj``.)"""
    rule = parts_rules.find(entry.layer)
    if rule is None or next(entry.layer.children(), None) is not None:
        return []
    return [p._replace(name=_joined(entry.name, p.name)) for p in rule(entry.layer, entry.x, entry.y, entry.cache)]


def _joined(name: str, part: str) -> str:
    return f"{name}.{part}" if name and part else name or part


def layer_vjp(layer: Layer, cache: Any, dy: np.ndarray) -> Any:
    """dx for dy with one leading vector axis, through the dispatch (the VJP that backward runs)."""
    return kernels.vjp(layer, cache, dy, per_sample=False, need_dx=True, vector_axes=1)[0]


# -- recurrent stacks: one part per (layer k, direction) ----------------------------------------------------
@parts_rules.register(RNNBase)
def _recurrent_parts(layer: RNNBase, x: Any, y: Any, cache: RecurrentCache) -> list[Part]:
    parts = []
    for j, dc in enumerate(cache.dirs):
        k, d = divmod(j, layer.num_directions)
        hs = dc.hs[1:][::-1] if dc.reverse else dc.hs[1:]  # time order
        parts.append(Part(_part_name(layer, k, d), layer, dc.x.swapaxes(0, 1), hs.swapaxes(0, 1), dc,
                          partial(_direction_vjp, layer, k, d, dc)))
    return parts


def _part_name(layer: RNNBase, k: int, d: int) -> str:
    """"l1_reverse": the suffix of layer k, direction d's parameter names ("weight_ih_l1_reverse")."""
    return layer._param_name("weight", k, d).removeprefix("weight_")


def _direction_vjp(layer: RNNBase, k: int, d: int, dc: _DirCache, dy: np.ndarray) -> np.ndarray:
    """dy (V, N, L, H) on one direction's hidden states → dx (V, N, L, I_k) on its layer's input:
    BPTT in scan order, then dxₜ = daˣₜ W_ih (as ``RNNBase._vjp_stack`` does for one direction)."""
    w_ih, w_hh, _, _ = layer._weights(k, d)
    dys = np.moveaxis(dy, -2, 0)  # (L, V, N, H), time order
    dai, _, _, _ = layer._bptt(dc, dys[::-1] if dc.reverse else dys, None, None, w_hh, False)
    return np.moveaxis((dai[::-1] if dc.reverse else dai) @ w_ih, 0, -2)


@parameter_part_rules.register(RNNBase)
def _recurrent_parameter_part(layer: RNNBase, local: str) -> str:
    """"weight_ih_l1_reverse" → "l1_reverse": the part of the layer and direction that owns it."""
    for k in range(layer.num_layers):
        for d in range(layer.num_directions):
            if local in layer._param_names(k, d):
                return _part_name(layer, k, d)
    return ""


# -- attention: the in-projection and attention, apart from out_proj ------------------------------------------
@parts_rules.register(MultiheadAttention)
def _attention_parts(layer: MultiheadAttention, x: Any, y: Any, cache: MultiheadAttentionCache) -> list[Part]:
    return [Part("", layer, cache.attn.q, cache.out.x, cache.attn, partial(_attention_vjp, layer, cache.attn))]


def _attention_vjp(layer: MultiheadAttention, cache: AttentionCache, dO: np.ndarray) -> np.ndarray:
    """dO (V, N, L, E) → dx (V, N, L, E): the layer's VJP at its tape entry's cache, made batch first."""
    dx = kernels.vjp(layer, cache, dO, per_sample=False, need_dx=True, vector_axes=1)[0]
    return dx if layer.batch_first else np.swapaxes(dx, -2, -3)
