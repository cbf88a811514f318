"""Small models of every kind the library builds, for the tests that must hold on every model.

Each entry builds (model, loss, x, target) in float64 from a seed, small enough that the dense
Hessian (P parameters → P Hessian-vector products) costs well under a second: P ≤ ~60, N = 2–3.
``tests/test_curvature_every_model.py`` runs every curvature function on each entry, and checks
that together they cover every public layer class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import nablanet as nn


@dataclass(frozen=True)
class Zoo:
    """One model family: ``build(rng)`` returns (model, loss, x, target)."""

    id: str
    build: Callable[[np.random.Generator], tuple[nn.Layer, nn.Loss, Any, Any]]
    train: bool = False  # run the forward in train mode (dropout masks fixed by the seed)


def _x(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape)


def _labels(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    return rng.integers(0, c, size=n)


def _mlp(rng: np.random.Generator) -> tuple[nn.Layer, nn.Loss, Any, Any]:
    model = nn.Sequential(nn.Linear(3, 4, dtype=np.float64, rng=rng), nn.Tanh(),
                          nn.Linear(4, 3, dtype=np.float64, rng=rng))
    return model, nn.CrossEntropyLoss(), _x(rng, 3, 3), _labels(rng, 3, 3)


def _residual(rng: np.random.Generator) -> tuple[nn.Layer, nn.Loss, Any, Any]:
    model = nn.Sequential(
        nn.Linear(3, 4, dtype=np.float64, rng=rng),
        nn.Residual(nn.Linear(4, 4, dtype=np.float64, rng=rng), nn.Tanh(), nn.Linear(4, 4, dtype=np.float64, rng=rng)),
        nn.Linear(4, 2, dtype=np.float64, rng=rng))
    return model, nn.CrossEntropyLoss(), _x(rng, 3, 3), _labels(rng, 3, 2)


def _parallel(combine: str) -> Callable[[np.random.Generator], tuple[nn.Layer, nn.Loss, Any, Any]]:
    def build(rng: np.random.Generator) -> tuple[nn.Layer, nn.Loss, Any, Any]:
        width = 6 if combine == "concat" else 3
        model = nn.Sequential(
            nn.Parallel(nn.Sequential(nn.Linear(3, 3, dtype=np.float64, rng=rng), nn.Sigmoid()),
                        nn.Linear(3, 3, dtype=np.float64, rng=rng), combine=combine),
            nn.Tanh(), nn.Linear(width, 2, dtype=np.float64, rng=rng))
        return model, nn.MSELoss(), _x(rng, 3, 3), _x(rng, 3, 2)
    return build


def _multiply(rng: np.random.Generator) -> tuple[nn.Layer, nn.Loss, Any, Any]:
    model = nn.Sequential(
        nn.Multiply(nn.Sequential(nn.Linear(3, 3, dtype=np.float64, rng=rng), nn.Sigmoid()),
                    nn.Linear(3, 3, dtype=np.float64, rng=rng), nn.Tanh()),
        nn.Linear(3, 2, dtype=np.float64, rng=rng))
    return model, nn.CrossEntropyLoss(), _x(rng, 2, 3), _labels(rng, 2, 2)


def _nested(rng: np.random.Generator) -> tuple[nn.Layer, nn.Loss, Any, Any]:
    inner = nn.Sequential(nn.Residual(nn.Linear(3, 3, dtype=np.float64, rng=rng), nn.GELU()),
                          nn.Parallel(nn.Identity(), nn.Sequential(nn.Linear(3, 3, dtype=np.float64, rng=rng),
                                                                   nn.Softplus())))
    model = nn.Sequential(inner, nn.Sequential(nn.Tanh(), nn.Linear(3, 2, dtype=np.float64, rng=rng)))
    return model, nn.MSELoss(), _x(rng, 2, 3), _x(rng, 2, 2)


def _cnn2d(rng: np.random.Generator) -> tuple[nn.Layer, nn.Loss, Any, Any]:
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, dtype=np.float64, rng=rng), nn.BatchNorm2d(2, dtype=np.float64), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout2d(0.5), nn.AvgPool2d(2, stride=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(2, 3, dtype=np.float64, rng=rng))
    return model, nn.CrossEntropyLoss(), _x(rng, 2, 1, 6, 6), _labels(rng, 2, 3)


def _cnn1d(rng: np.random.Generator) -> tuple[nn.Layer, nn.Loss, Any, Any]:
    model = nn.Sequential(
        nn.Conv1d(2, 2, 2, dtype=np.float64, rng=rng), nn.BatchNorm1d(2, dtype=np.float64), nn.ELU(),
        nn.MaxPool1d(2), nn.AvgPool1d(2, stride=1), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
        nn.Linear(2, 3, dtype=np.float64, rng=rng), nn.LogSoftmax(dim=-1))
    return model, nn.NLLLoss(), _x(rng, 2, 2, 7), _labels(rng, 2, 3)


def _activations(rng: np.random.Generator) -> tuple[nn.Layer, nn.Loss, Any, Any]:
    model = nn.Sequential(
        nn.Linear(3, 4, dtype=np.float64, rng=rng), nn.LeakyReLU(0.1), nn.Hardtanh(), nn.SiLU(),
        nn.LayerNorm(4, dtype=np.float64), nn.Linear(4, 3, dtype=np.float64, rng=rng), nn.RReLU(), nn.Softplus(),
        nn.Identity(), nn.Softmax(dim=-1))
    return model, nn.MSELoss(), _x(rng, 2, 3), _x(rng, 2, 3)


def _dropout_train(rng: np.random.Generator) -> tuple[nn.Layer, nn.Loss, Any, Any]:
    model = nn.Sequential(nn.Linear(3, 4, dtype=np.float64, rng=rng), nn.Dropout(0.3), nn.Sigmoid(), nn.RReLU(),
                          nn.Linear(4, 2, dtype=np.float64, rng=rng))
    return model, nn.CrossEntropyLoss(), _x(rng, 3, 3), _labels(rng, 3, 2)


def _attention(rng: np.random.Generator) -> tuple[nn.Layer, nn.Loss, Any, Any]:
    model = nn.Sequential(nn.MultiheadAttention(2, 2, batch_first=True, dtype=np.float64, rng=rng), nn.Flatten(),
                          nn.Linear(6, 2, dtype=np.float64, rng=rng))
    return model, nn.CrossEntropyLoss(), _x(rng, 2, 3, 2), _labels(rng, 2, 2)


def _attention_block_train(rng: np.random.Generator) -> tuple[nn.Layer, nn.Loss, Any, Any]:
    """A residual attention block without biases, attention dropout on (its mask fixed by the seed)."""
    mha = nn.MultiheadAttention(2, 2, dropout=0.3, bias=False, batch_first=True, dtype=np.float64, rng=rng)
    model = nn.Sequential(nn.Residual(mha), nn.Flatten(), nn.Linear(6, 2, dtype=np.float64, rng=rng))
    return model, nn.MSELoss(), _x(rng, 2, 3, 2), _x(rng, 2, 2)


def _embedding_attention(rng: np.random.Generator) -> tuple[nn.Layer, nn.Loss, Any, Any]:
    """Token indices (never the padding index here: the rules freeze that row, which differences of
    the gradient along a v with v[padding_idx] ≠ 0 would not)."""
    model = nn.Sequential(nn.Embedding(5, 2, padding_idx=0, dtype=np.float64, rng=rng),
                          nn.MultiheadAttention(2, 2, batch_first=True, dtype=np.float64, rng=rng), nn.Flatten(),
                          nn.Linear(6, 2, dtype=np.float64, rng=rng))
    return model, nn.CrossEntropyLoss(), rng.integers(1, 5, size=(2, 3)), _labels(rng, 2, 2)


def _pair_bilinear(rng: np.random.Generator) -> tuple[nn.Layer, nn.Loss, Any, Any]:
    model = nn.Sequential(
        nn.Pair(nn.Linear(3, 2, dtype=np.float64, rng=rng),
                nn.Sequential(nn.Linear(3, 2, dtype=np.float64, rng=rng), nn.Tanh())),
        nn.Bilinear(2, 2, 2, dtype=np.float64, rng=rng))
    return model, nn.MSELoss(), _x(rng, 3, 3), _x(rng, 3, 2)


def _rnn_stack(rng: np.random.Generator) -> tuple[nn.Layer, nn.Loss, Any, Any]:
    """RNN(tanh), 2 layers × both directions, batch first: P = 56 + 5."""
    model = nn.Sequential(nn.RNN(2, 2, num_layers=2, bidirectional=True, batch_first=True, dtype=np.float64, rng=rng),
                          nn.LastStep(), nn.Linear(4, 1, dtype=np.float64, rng=rng))
    return model, nn.MSELoss(), _x(rng, 2, 3, 2), _x(rng, 2, 1)


def _gru_dropout_train(rng: np.random.Generator) -> tuple[nn.Layer, nn.Loss, Any, Any]:
    """GRU, 2 layers with dropout between them (train mode), no bias, time-major: P = 42 + 6."""
    model = nn.Sequential(nn.GRU(1, 2, num_layers=2, bias=False, dropout=0.5, dtype=np.float64, rng=rng),
                          nn.LastStep(dim=0), nn.Linear(2, 2, dtype=np.float64, rng=rng))
    return model, nn.CrossEntropyLoss(), _x(rng, 3, 2, 1), _labels(rng, 2, 2)


def _lstm(rng: np.random.Generator) -> tuple[nn.Layer, nn.Loss, Any, Any]:
    """LSTM, batch first: P = 40 + 6."""
    model = nn.Sequential(nn.LSTM(1, 2, batch_first=True, dtype=np.float64, rng=rng), nn.LastStep(),
                          nn.Linear(2, 2, dtype=np.float64, rng=rng))
    return model, nn.CrossEntropyLoss(), _x(rng, 2, 3, 1), _labels(rng, 2, 2)


MODELS: list[Zoo] = [
    Zoo("cnn2d", _cnn2d),
    Zoo("cnn1d", _cnn1d),
    Zoo("activations", _activations),
    Zoo("dropout-train", _dropout_train, train=True),
    Zoo("mlp", _mlp),
    Zoo("residual", _residual),
    Zoo("parallel-sum", _parallel("sum")),
    Zoo("parallel-concat", _parallel("concat")),
    Zoo("multiply-3", _multiply),
    Zoo("nested-containers", _nested),
    Zoo("attention", _attention),
    Zoo("attention-block-dropout-train", _attention_block_train, train=True),
    Zoo("embedding-attention", _embedding_attention),
    Zoo("pair-bilinear", _pair_bilinear),
    Zoo("rnn-2-layers-bidirectional", _rnn_stack),
    Zoo("gru-dropout-train", _gru_dropout_train, train=True),
    Zoo("lstm", _lstm),
]
