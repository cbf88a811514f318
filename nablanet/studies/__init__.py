"""Studies: questions from the source notes answered by measurement (``nablanet study NAME``).

``REGISTRY`` maps each study's name to its ``Study``; ``run_study`` writes records.csv, figures,
result.json and a self-contained index.html.
"""

from nablanet.studies import label_smoothing, loss_gradients, momentum, saturation, vanishing
from nablanet.studies.base import REGISTRY, Study, StudyResult, config_hash, run_study

__all__ = [
    "REGISTRY",
    "Study",
    "StudyResult",
    "config_hash",
    "label_smoothing",
    "loss_gradients",
    "momentum",
    "run_study",
    "saturation",
    "vanishing",
]
