"""``nablanet train``: build a model for a built-in data set, fit it, report test accuracy."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from nablanet.cli._args import _batch_size, _hidden, _positive_float

ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "softplus")
LOSSES = ("ce", "mse", "quadratic")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
SCHEDULES = ("constant", "step", "exponential", "inverse_time", "cosine")


def add_parser(sub: Any) -> None:
    t = sub.add_parser(
        "train",
        help="train a model on a built-in data set and report test accuracy",
        description="Train an MLP on a built-in data set; print a table per epoch and the test accuracy.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    t.add_argument("--data", choices=("digits", "mnist1d", "mnist"), default="digits",
                   help="data set: scikit-learn's 8x8 digits, MNIST-1D (generated offline), or MNIST IDX files")
    t.add_argument("--data-root", default=None,
                   help="folder with MNIST IDX files (for --data mnist); only the t10k files are needed")
    t.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                   help="mlp: fully connected; cnn: convolutions on the images (digits 8x8, MNIST 28x28: "
                        "conv-ReLU-maxpool blocks) or sequences (MNIST-1D: the MNIST-1D paper's Conv1d stack)")
    t.add_argument("--hidden", type=_hidden, default=None,
                   help="hidden layer sizes, comma-separated ('none': linear); default 128 for mlp, none after "
                        "the convolutions for cnn")
    t.add_argument("--channels", type=_hidden, default=None,
                   help="cnn: channels per conv block (default: 25,25,25 for mnist1d, 16,32 for digits, "
                        "32,64 for mnist)")
    t.add_argument("--activation", choices=ACTIVATIONS, default="relu", help="hidden-layer activation")
    t.add_argument("--loss", choices=LOSSES, default="ce",
                   help="ce: cross-entropy on logits; mse: sigmoid outputs + MSE on one-hot targets; "
                        "quadratic: softmax outputs + 1/2||y - d||^2 on one-hot targets")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="update rule")
    t.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: 0.1 for sgd, 0.001 for adam/adamw, 0.01 otherwise)")
    t.add_argument("--momentum", type=float, default=0.9, help="SGD/RMSprop momentum")
    t.add_argument("--nesterov", action="store_true", help="Nesterov momentum (sgd)")
    t.add_argument("--sutskever", type=float, default=None, metavar="MU_MAX",
                   help="use the Sutskever et al. momentum schedule capped at MU_MAX instead of --momentum (sgd)")
    t.add_argument("--weight-decay", type=float, default=1e-4, help="L2 weight decay")
    t.add_argument("--schedule", choices=SCHEDULES, default="constant", help="learning-rate schedule")
    t.add_argument("--schedule-steps", type=int, default=1000,
                   help="step size (step), tau (inverse_time) or total steps (cosine), in optimizer steps")
    t.add_argument("--gamma", type=float, default=0.1, help="decay factor for step / exponential schedules")
    t.add_argument("--batch-size", type=_batch_size, default=32, help="mini-batch size; 1 = online SGD, 'full' = batch")
    t.add_argument("--epochs", type=int, default=100, help="maximum number of epochs")
    t.add_argument("--early-stopping", type=int, default=0, metavar="PATIENCE",
                   help="stop when the validation 0-1 error has not improved for PATIENCE epochs and restore "
                        "the best weights (0: off)")
    t.add_argument("--reduce-lr", type=int, default=0, metavar="PATIENCE",
                   help="divide the learning rate by 10 when the validation loss stalls for PATIENCE epochs (0: off)")
    t.add_argument("--seed", type=int, default=0, help="seed for the split, the initialization and the batch order")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="parameter dtype")
    t.add_argument("--out", type=Path, default=None,
                   help="folder for model.npz, history.csv and curves.png (loss and accuracy per epoch)")
    t.add_argument("--json", action="store_true", help="print one JSON object with the results instead of the table")


def _load_data(args: argparse.Namespace) -> Any:
    from nablanet import data

    if args.data == "digits":
        return data.load_digits(seed=args.seed, dtype=args.dtype)
    if args.data == "mnist1d":
        return data.load_mnist1d(seed=args.seed, dtype=args.dtype)
    return data.load_mnist(args.data_root, subset="t10k", seed=args.seed, dtype=args.dtype)


def _input_shape(args: argparse.Namespace, n_in: int) -> tuple[int, ...]:
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


def _build(args: argparse.Namespace, n_in: int, n_classes: int) -> tuple[Any, Any, Any]:
    import nablanet as nn
    from nablanet import optim
    from nablanet.optim import schedules

    rng = np.random.default_rng(args.seed)
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU,
           "softplus": nn.Softplus}[args.activation]
    layers: list[nn.Layer] = []
    if args.model == "cnn":
        layers, n_in = _conv_stack(args, _input_shape(args, n_in), act, rng)
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
        opt = optim.AdamW(params, lr=lr, weight_decay=args.weight_decay or 1e-2)
    elif args.optimizer == "rmsprop":
        opt = optim.RMSprop(params, lr=lr, momentum=args.momentum, weight_decay=args.weight_decay)
    else:
        opt = optim.Adagrad(params, lr=lr, weight_decay=args.weight_decay)
    return model, loss, opt


def _targets(y: np.ndarray, n_classes: int, loss_name: str, dtype: str) -> np.ndarray:
    return y if loss_name == "ce" else np.eye(n_classes, dtype=dtype)[y]


def _plot(history: Any, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(history["epoch"], history["loss"], label="train")
    if history.records and history.records[0].get("val_loss") is not None:
        a1.plot(history["epoch"], history["val_loss"], label="validation")
    a1.set(xlabel="epoch", ylabel="loss", title="loss")
    a1.legend()
    if history.records and history.records[0].get("accuracy") is not None:
        a2.plot(history["epoch"], history["accuracy"], label="train")
    if history.records and history.records[0].get("val_accuracy") is not None:
        a2.plot(history["epoch"], history["val_accuracy"], label="validation")
    a2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    a2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def train_command(args: argparse.Namespace) -> dict[str, Any]:
    import nablanet as nn
    from nablanet.train import callbacks as cbs

    if args.epochs < 1:
        raise ValueError(f"--epochs {args.epochs}: expected a positive int")
    t0 = time.perf_counter()
    splits = _load_data(args)
    xtr, ytr = splits.train
    xva, yva = splits.validation
    xte, yte = splits.test
    n_in = int(np.prod(splits.input_shape))
    model, loss, opt = _build(args, n_in, splits.n_classes)
    shape = _input_shape(args, n_in)
    callbacks: list[cbs.Callback] = []
    if args.early_stopping > 0:
        callbacks.append(cbs.EarlyStopping(patience=args.early_stopping, restore_best_weights=True))
    if args.reduce_lr > 0:
        callbacks.append(cbs.ReduceLROnPlateau(patience=args.reduce_lr))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        callbacks.append(cbs.CSVLogger(args.out / "history.csv"))
    callbacks.append(cbs.ProgressBar())
    if not args.json:
        print(f"data: {splits!r}\nmodel: {model!r}\nloss: {loss!r}  optimizer: {type(opt).__name__}", flush=True)
    history = nn.fit(
        model, loss, opt,
        train=(xtr.reshape(len(xtr), *shape), _targets(ytr, splits.n_classes, args.loss, args.dtype)),
        validation=(xva.reshape(len(xva), *shape), _targets(yva, splits.n_classes, args.loss, args.dtype)),
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, callbacks=callbacks, verbose=not args.json,
    )
    scores = nn.evaluate(model, loss, xte.reshape(len(xte), *shape),
                         _targets(yte, splits.n_classes, args.loss, args.dtype))
    result: dict[str, Any] = {
        "data": args.data, "test_accuracy": scores["accuracy"], "test_loss": scores["loss"],
        "epochs": len(history), "seconds": round(time.perf_counter() - t0, 3),
        "best_val_error": min((e for e in history["val_error"] if e is not None), default=None),
        "stop_reason": history.stop_reason, "n_train": len(xtr), "n_test": len(xte),
        "model": args.model, "hidden": args.hidden, "activation": args.activation, "loss": args.loss,
        "optimizer": args.optimizer, "seed": args.seed,
    }
    if args.out is not None:
        nn.save(model, args.out / "model.npz", optimizer=opt, extra={"result": result})
        result["plot"] = _plot(history, args.out / "curves.png")
        result["out"] = str(args.out)
    return result


def run(args: argparse.Namespace) -> int:
    result = train_command(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"test accuracy {result['test_accuracy']:.4f}  test loss {result['test_loss']:.4f}  "
              f"({result['epochs']} epochs, {result['seconds']:.1f} s)")
        if args.out is not None:
            print(f"wrote {args.out}/model.npz, history.csv" + (", curves.png" if result.get("plot") else ""))
    return 0
