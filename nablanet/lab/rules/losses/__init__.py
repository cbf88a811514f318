"""Second-order rules of the losses, mirroring ``nablanet/losses/`` file by file (``rules/losses/binary.py``
for ``losses/binary.py``, …): one ``loss_hvp`` rule per loss, ∇²_y L · ẏ, the tangent of ∂L/∂y.

Notation: s = ∂L/∂termₖ, the reduction's scale (``loss._scale(cache)``: 1/Z under "mean", 1 under
"sum"); ẏ the tangent of the loss input.
"""

from nablanet.lab.rules.losses import binary, cross_entropy, kl, quadratic

__all__ = ["binary", "cross_entropy", "kl", "quadratic"]
