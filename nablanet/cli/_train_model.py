"""The model, loss and optimizer that ``nablanet train``'s flags describe."""

from __future__ import annotations

import argparse
import itertools
import math
from typing import Any

import numpy as np


def input_shape(args: argparse.Namespace, n_in: int) -> tuple[int, ...]:
    """The shape one sample is fed to the model in: flat for an MLP, (1, L) or (1, H, W) for a CNN."""
    if args.model == "mlp":
        return (n_in,)
    if args.data == "mnist1d":
        return (1, n_in)
    side = math.isqrt(n_in)
    return (1, side, side)


def _conv_stack(args: argparse.Namespace, shape: tuple[int, ...], act: Any, rng: Any) -> tuple[list[Any], int]:
    """Conv blocks for ``--model cnn`` and the number of features they hand to the dense layers."""
    import nablanet as nn

    layers: list[nn.Layer] = []
    if len(shape) == 2:  # MNIST-1D paper: Conv1d(k=5 then 3, stride 2, padding 1) blocks
        channels = args.channels or [25, 25, 25]
        c, length = 1, shape[1]
        for i, out in enumerate(channels):
            k = 5 if i == 0 else 3
            layers += [nn.Conv1d(c, out, k, stride=2, padding=1, dtype=args.dtype, rng=rng), act()]
            c, length = out, (length + 2 - k) // 2 + 1
        return [*layers, nn.Flatten()], c * length
    channels = args.channels or ([32, 64] if shape[1] >= 28 else [16, 32])
    k = 5 if shape[1] >= 28 else 3
    c, side = 1, shape[1]
    for out in channels:
        if side < 2:
            raise ValueError(f"--channels {channels}: too many conv blocks for {shape[1]}x{shape[2]} images")
        layers += [nn.Conv2d(c, out, k, padding=k // 2, dtype=args.dtype, rng=rng), act(), nn.MaxPool2d(2)]
        c, side = out, side // 2
    return [*layers, nn.Flatten()], c * side * side


def build(args: argparse.Namespace, n_in: int, n_classes: int) -> tuple[Any, Any, Any]:
    import nablanet as nn
    from nablanet import optim
    from nablanet.optim import schedules

    rng = np.random.default_rng(args.seed)
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU,
           "softplus": nn.Softplus}[args.activation]
    layers: list[nn.Layer] = []
    if args.model == "cnn":
        layers, n_in = _conv_stack(args, input_shape(args, n_in), act, rng)
        hidden = args.hidden or []
    else:
        hidden = [128] if args.hidden is None else args.hidden
    sizes = [n_in, *hidden]
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b, dtype=args.dtype, rng=rng), act()]
    layers.append(nn.Linear(sizes[-1], n_classes, dtype=args.dtype, rng=rng))
    loss: Any
    if args.loss == "ce":
        loss = nn.CrossEntropyLoss()
    elif args.loss == "mse":
        layers.append(nn.Sigmoid())
        loss = nn.MSELoss()
    else:
        layers.append(nn.Softmax(dim=-1))
        loss = nn.QuadraticLoss()
    model = nn.Sequential(*layers)

    lr0 = args.lr if args.lr is not None else {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3}.get(args.optimizer, 0.01)
    lr: Any = {
        "constant": lambda: lr0,
        "step": lambda: schedules.step_decay(lr0, args.schedule_steps, args.gamma),
        "exponential": lambda: schedules.exponential(lr0, args.gamma ** (1 / max(args.schedule_steps, 1))),
        "inverse_time": lambda: schedules.inverse_time(lr0, args.schedule_steps),
        "cosine": lambda: schedules.cosine(lr0, args.schedule_steps),
    }[args.schedule]()
    params = model.parameters()
    opt: Any
    if args.optimizer == "sgd":
        mom: Any = schedules.sutskever_momentum(args.sutskever) if args.sutskever is not None else args.momentum
        opt = optim.SGD(params, lr=lr, momentum=mom, nesterov=args.nesterov, weight_decay=args.weight_decay)
    elif args.optimizer == "adam":
        opt = optim.Adam(params, lr=lr, weight_decay=args.weight_decay)
    elif args.optimizer == "adamw":
        opt = optim.AdamW(params, lr=lr, weight_decay=args.weight_decay)
    elif args.optimizer == "rmsprop":
        opt = optim.RMSprop(params, lr=lr, momentum=args.momentum, weight_decay=args.weight_decay)
    else:
        opt = optim.Adagrad(params, lr=lr, weight_decay=args.weight_decay)
    return model, loss, opt


def targets(y: np.ndarray, n_classes: int, loss_name: str, dtype: str) -> np.ndarray:
    return y if loss_name == "ce" else np.eye(n_classes, dtype=dtype)[y]
