"""Layers: each a forward and an explicit vector-Jacobian product."""

from nablanet.layers.activations import Identity, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh
from nablanet.layers.base import IncompatibleKeys, Layer
from nablanet.layers.linear import Linear
from nablanet.layers.sequential import Sequential, Tape, TapeEntry
from nablanet.layers.shape import Flatten
from nablanet.layers.softmax import LogSoftmax, Softmax

__all__ = [
    "Flatten",
    "Identity",
    "IncompatibleKeys",
    "Layer",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "Tape",
    "TapeEntry",
]
