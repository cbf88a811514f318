"""Training: the fit loop, callbacks, history, checkpoints, Ctrl-C handling."""

from nablanet.train import callbacks
from nablanet.train._architecture import register_layer
from nablanet.train.checkpoint import Checkpoint, load, load_checkpoint, save
from nablanet.train.history import History
from nablanet.train.interrupts import TrainingInterrupted, propagate_interrupts
from nablanet.train.loop import evaluate, fit, predict

__all__ = [
    "Checkpoint", "History", "TrainingInterrupted", "callbacks", "evaluate", "fit", "load", "load_checkpoint",
    "predict", "propagate_interrupts", "register_layer", "save",
]
