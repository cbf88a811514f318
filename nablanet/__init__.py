"""nablanet: neural networks with backpropagation written out as explicit vector-Jacobian products.

Public API re-exports only; the math lives in the modules.
"""

from nablanet import data, init, lab, optim
from nablanet._dtype import get_default_dtype, set_default_dtype
from nablanet._random import manual_seed
from nablanet.autodiff import value_and_grad
from nablanet.lab import GradcheckError, GradcheckReport, gradcheck, jacobian
from nablanet.layers import (
    Flatten,
    Identity,
    IncompatibleKeys,
    Layer,
    LeakyReLU,
    Linear,
    LogSoftmax,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
    Tape,
    TapeEntry,
)
from nablanet.losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    KLDivLoss,
    Loss,
    LossCache,
    MSELoss,
    NLLLoss,
    QuadraticLoss,
)
from nablanet.parameter import Parameter
from nablanet.train import History, callbacks, evaluate, fit, load, load_checkpoint, predict, save

__version__ = "0.1.0"

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "Flatten",
    "GradcheckError",
    "GradcheckReport",
    "History",
    "Identity",
    "IncompatibleKeys",
    "KLDivLoss",
    "Layer",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "Loss",
    "LossCache",
    "MSELoss",
    "NLLLoss",
    "Parameter",
    "QuadraticLoss",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "Tape",
    "TapeEntry",
    "callbacks",
    "data",
    "evaluate",
    "fit",
    "get_default_dtype",
    "gradcheck",
    "init",
    "jacobian",
    "lab",
    "load",
    "load_checkpoint",
    "manual_seed",
    "optim",
    "predict",
    "save",
    "set_default_dtype",
    "value_and_grad",
]
