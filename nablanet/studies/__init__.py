"""Studies: questions from the source notes answered by measurement (``nablanet study NAME``).

``REGISTRY`` maps each study's name to its ``Study``; ``run_study`` writes records.csv, figures,
result.json and a self-contained index.html.
"""

from nablanet.studies import (
    batch_size,
    coding,
    convexity,
    label_smoothing,
    loss_gradients,
    momentum,
    newton,
    saturation,
    simplex,
    vanishing,
)
from nablanet.studies.base import REGISTRY, Answer, Figure, Records, Study, StudyResult, Verdict, config_hash, run_study

__all__ = [
    "REGISTRY",
    "Answer",
    "Figure",
    "Records",
    "Study",
    "StudyResult",
    "Verdict",
    "batch_size",
    "coding",
    "config_hash",
    "convexity",
    "label_smoothing",
    "loss_gradients",
    "momentum",
    "newton",
    "run_study",
    "saturation",
    "simplex",
    "vanishing",
]
