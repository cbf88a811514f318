"""Lab rules for ``Flatten`` (``layers/shape.py``): a reshape is a linear map that is its own JVP,
ẏ = reshape(ẋ), with (dx)˙ = reshape⁻¹(dẏ) (``rop.jvp_linear_map``, ``rop.vjp_rop_fixed_jacobian``)."""

from __future__ import annotations

from nablanet.lab.registry import jvp_rules, vjp_rop_rules
from nablanet.lab.rop import jvp_linear_map, vjp_rop_fixed_jacobian
from nablanet.layers.shape import Flatten

jvp_rules.register(Flatten)(jvp_linear_map)
vjp_rop_rules.register(Flatten)(vjp_rop_fixed_jacobian)
