"""The gradient lab: instruments that read what backward computed."""

from nablanet.lab.gradcheck import GradcheckError, GradcheckReport, gradcheck
from nablanet.lab.jacobian import jacobian

__all__ = ["GradcheckError", "GradcheckReport", "gradcheck", "jacobian"]
