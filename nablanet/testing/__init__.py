"""Check a layer the way nablanet checks its own: ``nn.testing.check_layer(layer, example_input)``.

Each check runs in float64 on a copy (the layer itself is not changed) and, when it fails, says in
plain words which check, which tensor, the largest error, and what to fix:

1. **forward**: it runs and returns a finite float64 array for float64 input and parameters.
2. **VJP shapes**: dx has the input's shape; one gradient per parameter, of the parameter's shape.
3. **finite differences**: backprop against central differences of a loss, over the input and
   every parameter (``nablanet.lab.gradcheck``).
4. **vector axes**: a stack of output gradients dy (V, *y.shape) through one VJP equals the VJPs
   of its rows one by one.
5. **per-sample gradients** (layers with parameters): ``vjp(per_sample=True)`` gives
   (N, *param.shape); they sum to the batch gradient; a batch equals its stacked singletons (eval
   mode); the lab's per-sample norm rule equals the norms of the materialized gradients. A layer
   that couples the samples (batch norm in training mode) may refuse with a ValueError.
6. **the lab's rules** (``nablanet/lab/rules/``): present; where present, the JVP rule agrees with
   finite differences of the forward, and the VJP-of-R-op rule with finite differences of the VJP.
7. **PyTorch parity** (when torch is installed and ``torch.nn`` has a class of the same name, in eval
   mode): forward, input gradient and parameter gradients, the same weights loaded via state_dict.
8. **save and load** (a registered class, or nablanet's): ``nn.save`` then ``nn.load`` gives the same
   output; an unregistered class is a skip that says how to register it.

Write your own layer (the contract: docs/your-own-layer.md): a forward that hands its VJP a cache, a
VJP that takes leading vector axes and ``per_sample``, and, for curvature, its two R-op rules::

    import numpy as np
    import nablanet as nn

    class Scale(nn.Layer):
        \"""y = x ⊙ a.  Shapes: x (N, i)  a (i,)  y (N, i).  VJP: dx = dy ⊙ a,  da = Σₙ dyₙ ⊙ xₙ.\"""

        def __init__(self, features: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(np.linspace(0.5, 1.5, features))

        def forward(self, x, *, train=False, rng=None):
            return x * self.weight.data, x

        def vjp(self, cache, dy, *, per_sample=False, need_dx=True):
            g = dy * cache  # (*V, N, i): sample n's own term of da
            return dy * self.weight.data, {"weight": g if per_sample else g.sum(axis=-2)}

    def _scale_jvp(layer, x, xdot, thetadot):  # ẏ = ẋ ⊙ a + x ⊙ ȧ
        ydot = np.zeros_like(x) if xdot is None else xdot * layer.weight.data
        return ydot + x * thetadot["weight"] if "weight" in thetadot else ydot

    def _scale_vjp_rop(layer, x, dy, dydot, xdot, thetadot, need_dx):  # (dx)˙ = dẏ ⊙ a + dy ⊙ ȧ
        dadot = (dydot * x if xdot is None else dydot * x + dy * xdot).sum(axis=0)  # (da)˙
        dxdot = dydot * layer.weight.data
        if "weight" in thetadot:
            dxdot = dxdot + dy * thetadot["weight"]
        return dxdot, {"weight": dadot}

    nn.lab.rules.register(Scale, jvp=_scale_jvp, vjp_rop=_scale_vjp_rop)
    nn.testing.check_layer(Scale(3), np.random.default_rng(0).standard_normal((4, 3)))

It raises ``LayerCheckError`` (an AssertionError) listing what failed, or returns the report.

**Exercises** (docs/exercises.md): a student writes the VJP of an existing layer as a function, and
nablanet says whether it is right, then trains with it:

* ``check_vjp(nn.Sigmoid, sigmoid_vjp)``: the function against central differences on a small float64
  example, with the likely mistake named (a sign, a transpose, a missing batch sum, dy passed
  through without σ′, a forgotten dy); ``VjpCheckError`` or the report;
* ``with replace_vjp(nn.Sigmoid, sigmoid_vjp): nn.fit(...)``: the function runs wherever nablanet
  runs the class's VJP, for the block; checked on entering and on each new layer configuration,
  or not at all with ``check=False`` (to watch what a wrong gradient does to training).

The function a student writes (``nablanet/testing/vjp_check.py`` has the details):

* a layer: ``vjp(layer, cache, dy) -> (dx, {parameter name: gradient})``, the short form of the
  layer contract (docs/your-own-layer.md) with the layer first, as a method's ``self``;
* a loss: ``vjp(loss, cache, dterms) -> dinput``, where ``cache`` is the loss's own (the softmax
  ``p`` and the target ``r`` of ``CrossEntropyLoss``) and dterms (N,) = ∂L/∂ℓₙ, 1/N under the mean;
* ``nn.LSTM``: one step of the cell, ``vjp(layer, step, dh, dc) -> (da, dc_prev)`` (see
  ``nablanet.layers.recurrent.lstm_cell_vjp``); nablanet runs the rest of backpropagation through time.
"""

from nablanet.testing.layer_check import Check, LayerCheckError, LayerCheckReport, check_layer
from nablanet.testing.replace import replace_vjp
from nablanet.testing.vjp_check import VjpCheckError, VjpCheckReport, check_vjp

__all__ = ["Check", "LayerCheckError", "LayerCheckReport", "VjpCheckError", "VjpCheckReport", "check_layer",
           "check_vjp", "replace_vjp"]
