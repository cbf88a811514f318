"""The gradient lab: instruments that read what backward computed.

On demand, from a model, a loss and a batch::

    nn.lab.per_sample_grad_norms(model, loss, x, y)   # {"0.weight": (N,), ...}, closed forms
    nn.lab.per_sample_grads(model, loss, x, y)        # {"0.weight": (N, 32, 64), ...}
    nn.lab.grad_norms(model, loss, x, y)              # batch gradient, per parameter / layer / total
    nn.lab.gradient_stats(model, loss, x, y)          # variance, SNR, noise scale B = tr(Σ)/‖G‖²
    nn.lab.batch_size_sweep(model, loss, x, y, [8, 16, 32])   # E‖g_B − g‖² and the 1/B law
    nn.lab.hvp(model, loss, x, y, v), nn.lab.hessian_eigenvalues(model, loss, x, y, k=3)
    nn.lab.layer_jacobians(model, x), nn.lab.jacobian_singular_values(model, x)
    nn.lab.activation_stats(model, x), nn.lab.interpolate(...), nn.lab.loss_surface_2d(...)
    nn.lab.simplex_points(model, x)                   # (N, C) softmax outputs: the points in the simplex
    nn.lab.simplex_records(p, y)                      # per sample: inside its region?, margin, 2-D coords

and during training, ``nn.lab.Recorder(every, quantities)`` as a ``fit`` callback reading each
step's tape. Per-sample gradients are gradients of each sample's own loss ℓₙ: under
``reduction="mean"`` the batch gradient is their mean.

What the instruments need per layer beyond forward and VJP (R-op rules for curvature, closed-form
per-sample norms, activation statistics) sits in ``nablanet/lab/rules/``, a tree mirroring
``nablanet/layers/`` file by file, looked up through the registries of ``nablanet.lab.registry``;
``nn.testing.check_layer`` checks a layer against all of it. A layer of your own registers its
rules with one call, ``nn.lab.rules.register(MyLayer, jvp=..., vjp_rop=...)``.
"""

from nablanet.lab import parts as _parts  # noqa: F401  (registers the parts rules: recurrent stacks, attention)
from nablanet.lab import plots, rules
from nablanet.lab.activations import ActivationStats, activation_stats, gradient_histograms, histogram
from nablanet.lab.curvature import (
    flatten_params,
    ggn,
    ggn_vp,
    hessian,
    hessian_eigenvalues,
    hutchinson_trace,
    hvp,
    newton_step,
    step_size_report,
    unflatten_params,
)
from nablanet.lab.grad_norms import grad_norms
from nablanet.lab.gradcheck import GradcheckError, GradcheckReport, gradcheck
from nablanet.lab.jacobian import jacobian, jacobian_singular_values, layer_jacobians
from nablanet.lab.landscape import interpolate, loss_surface_2d, random_directions
from nablanet.lab.per_sample import layer_norms, per_sample_grad_norms, per_sample_grads
from nablanet.lab.recorder import Recorder
from nablanet.lab.registry import Registry
from nablanet.lab.simplex import SimplexRecords, simplex_coords, simplex_points, simplex_records
from nablanet.lab.variance import batch_size_sweep, gradient_stats

__all__ = [
    "ActivationStats",
    "GradcheckError",
    "GradcheckReport",
    "Recorder",
    "Registry",
    "SimplexRecords",
    "activation_stats",
    "batch_size_sweep",
    "flatten_params",
    "ggn",
    "ggn_vp",
    "grad_norms",
    "gradcheck",
    "gradient_histograms",
    "gradient_stats",
    "hessian",
    "hessian_eigenvalues",
    "histogram",
    "hutchinson_trace",
    "hvp",
    "interpolate",
    "jacobian",
    "jacobian_singular_values",
    "layer_jacobians",
    "layer_norms",
    "loss_surface_2d",
    "newton_step",
    "per_sample_grad_norms",
    "per_sample_grads",
    "plots",
    "random_directions",
    "rules",
    "simplex_coords",
    "simplex_points",
    "simplex_records",
    "step_size_report",
    "unflatten_params",
]
