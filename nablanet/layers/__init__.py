"""Layers: each a forward and an explicit vector-Jacobian product."""

# kernels first: its variant modules import the layer modules, which import base.py, which imports
# kernels; loaded in this order, every layer module is complete when a variant imports it
from nablanet.layers import kernels  # noqa: F401
from nablanet.layers.activations import ELU, GELU, Hardtanh, Identity, LeakyReLU, ReLU, Sigmoid, SiLU, Softplus, Tanh
from nablanet.layers.attention import MultiheadAttention
from nablanet.layers.base import Container, IncompatibleKeys, Layer, Tape, TapeEntry
from nablanet.layers.bilinear import Bilinear
from nablanet.layers.conv import Conv1d, Conv2d
from nablanet.layers.dropout import Dropout, Dropout2d, RReLU
from nablanet.layers.embedding import Embedding
from nablanet.layers.graph import Multiply, Pair, Parallel, Residual
from nablanet.layers.linear import Linear
from nablanet.layers.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from nablanet.layers.pooling import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)
from nablanet.layers.recurrent import GRU, LSTM, RNN, LastStep
from nablanet.layers.sequential import Sequential
from nablanet.layers.shape import Flatten
from nablanet.layers.softmax import LogSoftmax, Softmax

__all__ = [
    "ELU",
    "GELU",
    "GRU",
    "LSTM",
    "RNN",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Bilinear",
    "Container",
    "Conv1d",
    "Conv2d",
    "Dropout",
    "Dropout2d",
    "Embedding",
    "Flatten",
    "Hardtanh",
    "Identity",
    "IncompatibleKeys",
    "LastStep",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MaxPool1d",
    "MaxPool2d",
    "MultiheadAttention",
    "Multiply",
    "Pair",
    "Parallel",
    "RReLU",
    "ReLU",
    "Residual",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "Tape",
    "TapeEntry",
]
