"""Training: the fit loop, callbacks, history, checkpoints."""

from nablanet.train import callbacks
from nablanet.train.checkpoint import Checkpoint, load, load_checkpoint, save
from nablanet.train.history import History
from nablanet.train.loop import evaluate, fit, predict

__all__ = [
    "Checkpoint", "History", "callbacks", "evaluate", "fit", "load", "load_checkpoint", "predict",
    "save",
]
