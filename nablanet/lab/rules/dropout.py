"""Lab rules for ``Dropout``, ``Dropout2d`` and ``RReLU`` (``layers/dropout.py``).

Each multiplies x by a factor m fixed by the forward (the dropout mask, RReLU's slopes; None at
inference), y = x ⊙ m, so ẏ = ẋ ⊙ m and, the Jacobian being fixed, (dx)˙ = m ⊙ dẏ
(``rop.vjp_rop_fixed_jacobian``).
"""

from __future__ import annotations

import numpy as np

from nablanet.lab.registry import jvp_rules, vjp_rop_rules
from nablanet.lab.rop import Tangents, no_params, vjp_rop_fixed_jacobian
from nablanet.layers.base import Layer
from nablanet.layers.dropout import Dropout, Dropout2d, RReLU, ScaleCache

vjp_rop_rules.register(Dropout, Dropout2d, RReLU)(vjp_rop_fixed_jacobian)


@jvp_rules.register(Dropout, Dropout2d, RReLU)
def _jvp_scale(layer: Layer, cache: ScaleCache, xdot: np.ndarray | None, thetadot: Tangents) -> np.ndarray | None:
    """y = x ⊙ m with the cached factor m (dropout mask, RReLU slopes):  ẏ = ẋ ⊙ m."""
    no_params(layer, thetadot)
    if xdot is None or cache.factor is None:
        return xdot
    return xdot * cache.factor
