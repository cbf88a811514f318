"""Lab rules for the pooling layers (``layers/pooling.py``).

Average and adaptive average pooling are linear maps, y = A x, so ẏ = A ẋ and (dx)˙ = Aᵀ dẏ
(``rop.jvp_linear_map``, ``rop.vjp_rop_fixed_jacobian``). Max pooling is linear once the cached
argmax is fixed (ties go to the first maximum), so the same (dx)˙ holds and ẏ picks ẋ at the argmax.
"""

from __future__ import annotations

from itertools import product

import numpy as np

from nablanet.lab.registry import jvp_rules, vjp_rop_rules
from nablanet.lab.rop import Tangents, jvp_linear_map, no_params, vjp_rop_fixed_jacobian
from nablanet.layers._windows import ix, pad_channels_last, tap_slices
from nablanet.layers.pooling import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxCache,
    MaxPool1d,
    MaxPool2d,
)

jvp_rules.register(AvgPool1d, AvgPool2d, AdaptiveAvgPool1d, AdaptiveAvgPool2d)(jvp_linear_map)
vjp_rop_rules.register(AvgPool1d, AvgPool2d, AdaptiveAvgPool1d, AdaptiveAvgPool2d, MaxPool1d, MaxPool2d)(
    vjp_rop_fixed_jacobian
)


@jvp_rules.register(MaxPool1d, MaxPool2d)
def _jvp_maxpool(
    layer: MaxPool1d | MaxPool2d, cache: MaxCache, xdot: np.ndarray | None, thetadot: Tangents
) -> np.ndarray | None:
    """Max pooling is linear once the argmax is fixed:  ẏ[n, c, p] = ẋ[n, c, argmax P(p)].

    One masked copy per kernel tap t: ẏ ← ẋ's tap-t view where the cached argmax equals t (ties go
    to the first maximum, as in the forward). Padding never wins a window, so it is padded with 0.
    """
    no_params(layer, thetadot)
    if xdot is None:
        return None
    kernel, stride, dilation = layer.kernel_size, layer.stride, layer.dilation
    pads = tuple((p, p) for p in layer.padding)
    xp = pad_channels_last(np.moveaxis(xdot, 1, -1), pads)  # (N, *Sₚ, C)
    ydot = np.zeros(cache.argmax.shape, dtype=xdot.dtype)  # (N, *S′, C)
    for t, taps in enumerate(product(*(range(k) for k in kernel))):
        view = xp[ix(Ellipsis, *tap_slices(taps, stride, dilation, cache.out_spatial), slice(None))]
        np.copyto(ydot, view, where=cache.argmax == t)
    return np.moveaxis(ydot, -1, 1)
