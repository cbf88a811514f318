"""The command line: ``nablanet train``, ``nablanet study`` and ``nablanet sweep``.

Every flag is documented in ``nablanet train --help``; a bad flag or value prints one line, not a
traceback, and exits with status 2.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "softplus")
LOSSES = ("ce", "mse", "quadratic")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
SCHEDULES = ("constant", "step", "exponential", "inverse_time", "cosine")


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _hidden(text: str) -> list[int]:
    if text.strip() in ("", "none"):
        return []
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden {text!r}: expected comma-separated ints such as 256,128") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"--hidden {text!r}: layer sizes must be positive")
    return sizes


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number")
    return v


def _batch_size(text: str) -> int | None:
    if text in ("full", "none", "None"):
        return None
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch-size {text!r}: expected a positive int or 'full'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"--batch-size {text!r}: expected a positive int or 'full'")
    return v


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="nablanet", description="Neural networks with explicit backprop, and a gradient lab.")
    sub = parser.add_subparsers(dest="command", parser_class=_OneLineParser)
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
    st = sub.add_parser(
        "study",
        help="answer a question from the source notes by measurement: figures and an HTML report",
        description="Run a study (nablanet study --list shows them) and write records.csv, PNG figures, "
                    "result.json and a self-contained index.html into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    st.add_argument("name", nargs="?", default=None, help="the study to run")
    st.add_argument("--list", action="store_true", help="list the studies, one line each")
    st.add_argument("--quick", action="store_true", help="the small configuration (under 2 minutes on 2 cores)")
    st.add_argument("--out", type=Path, default=None, help="output folder (default: studies/NAME)")
    st.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                    help="override a setting of the study's configuration (VALUE is JSON, e.g. --set seed=3)")
    st.add_argument("--json", action="store_true", help="print the result (verdict, numbers, files) as JSON")
    st.add_argument("--seeds", type=_positive_int, default=None, metavar="K",
                    help="run the configuration for seeds 0..K-1 as a sweep (cells in OUT/seeds) and report the "
                         "median and range of each headline number over the seeds (OUT/summary.csv)")
    _sweep_flags(st, "with --seeds: ")
    sw = sub.add_parser(
        "sweep",
        help="run a study over a grid of settings x seeds, in parallel or on a Dask cluster",
        description="Run the sweep described by a TOML file (study, quick, seeds, out, retries, figures, [set], "
                    "[grid]; see nablanet.studies.sweep). Finished cells are kept under OUT/cells/<hash> and "
                    "skipped by a rerun; OUT/summary.csv has one row per cell, OUT/medians.csv the medians over "
                    "seeds.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sw.add_argument("config", type=Path, help="the sweep's TOML file")
    sw.add_argument("--out", type=Path, default=None, help="output folder; unset: the config's out")
    _sweep_flags(sw, "")
    sw.add_argument("--json", action="store_true", help="print the summary rows as JSON")
    return parser


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an int") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive int")
    return v


def _sweep_flags(p: argparse.ArgumentParser, prefix: str) -> None:
    p.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                   help=prefix + "worker processes; unset: all CPUs")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help=prefix + "run the cells on this Dask scheduler, e.g. tcp://127.0.0.1:8786; unset: joblib "
                        "processes on this machine")
    p.add_argument("--quiet", action="store_true", help=prefix + "no progress bar or progress lines")


def _overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set seed=3")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def study_command(args: argparse.Namespace) -> dict[str, Any]:
    from nablanet import studies

    if args.list or args.name is None:
        width = max(len(n) for n in studies.REGISTRY)
        for name, study in sorted(studies.REGISTRY.items()):
            print(f"{name:<{width}}  {study.question}")
        return {}
    if args.name not in studies.REGISTRY:
        raise ValueError(f"no study {args.name!r}; the studies are {sorted(studies.REGISTRY)} (nablanet study --list)")
    out = args.out if args.out is not None else Path("studies") / args.name
    if args.seeds is not None:
        from nablanet.studies.sweep import run_seeds

        medians = run_seeds(args.name, args.seeds, out, quick=args.quick, overrides=_overrides(args.overrides),
                            n_jobs=args.jobs, scheduler=args.scheduler, quiet=args.quiet)
        return {"study": args.name, "seeds": args.seeds, "medians": medians, "summary": str(out / "summary.csv"),
                "per_seed": str(out / "seeds" / "summary.csv")}
    result, folder = studies.run_study(studies.REGISTRY[args.name], out, quick=args.quick,
                                       overrides=_overrides(args.overrides))
    return {"study": args.name, "verdict": result.verdict, "headline": result.headline, "out": str(folder),
            "report": str(folder / "index.html")}


def _medians_table(result: dict[str, Any]) -> str:
    """The text ``nablanet study NAME --seeds K`` prints: median [min, max] of each headline number."""
    rows = result["medians"]
    width = max((len(r["quantity"]) for r in rows), default=0)
    lines = [f"{result['study']}, seeds 0..{result['seeds'] - 1}: median [min, max] of each headline number"]
    for r in rows:
        missing = f"  ({r['n']} of {r['of']} seeds gave a number)" if r["n"] < r["of"] else ""
        lines.append(f"  {r['quantity']:<{width}}  {r['median']:>9.4g}  [{r['min']:.4g}, {r['max']:.4g}]{missing}")
    lines.append(f"summary: {result['summary']}  (per seed: {result['per_seed']})")
    return "\n".join(lines)


def sweep_command(args: argparse.Namespace) -> dict[str, Any]:
    import dataclasses

    from nablanet.studies.sweep import load_config, run_sweep  # importing nablanet.studies registers them

    config = load_config(args.config)
    if args.out is not None:
        config = dataclasses.replace(config, out=args.out)
    rows = run_sweep(config, n_jobs=args.jobs, scheduler=args.scheduler, quiet=args.quiet)
    medians = config.out / "medians.csv"
    return {"study": config.study, "cells": len(rows), "summary": str(config.out / "summary.csv"),
            "medians": str(medians) if medians.exists() else None, "rows": rows}


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "study":
            result = study_command(args)
            if result and args.json:
                print(json.dumps(result, default=str))
            elif result:
                print(_medians_table(result) if "medians" in result else
                      f"{result['verdict']}\nreport: {result['report']}")
            return 0
        if args.command == "sweep":
            result = sweep_command(args)
            print(json.dumps(result["rows"], default=str) if args.json else
                  f"{result['study']}: {result['cells']} cells in {result['summary']}"
                  + (f", medians over seeds in {result['medians']}" if result["medians"] else ""))
            return 0
        result = train_command(args)
    except (ValueError, TypeError, OSError, ImportError, KeyError) as exc:
        print(f"nablanet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        from nablanet.studies.sweep import SweepError

        if not isinstance(exc, SweepError):  # cells still failing after their retries: exit status 1
            raise
        print(f"nablanet {args.command}: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        print(f"test accuracy {result['test_accuracy']:.4f}  test loss {result['test_loss']:.4f}  "
              f"({result['epochs']} epochs, {result['seconds']:.1f} s)")
        if args.out is not None:
            print(f"wrote {args.out}/model.npz, history.csv" + (", curves.png" if result.get("plot") else ""))
    return 0
