"""``nablanet train``: build a model for a built-in data set, fit it, report test accuracy.

With ``--out DIR`` the run lives in a folder (see ``_run_folder``): checkpointed after every
epoch, never overwritten by accident, continued bit for bit by ``--resume``. Ctrl-C stops
training after the current step, saves what there is and exits with status 130.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from nablanet.cli import _run_folder as folder
from nablanet.cli._args import (
    Interrupted,
    _batch_size,
    _decay_factor,
    _HelpFormatter,
    _int_list,
    _momentum,
    _nonnegative_float,
    _patience,
    _positive_float,
    _positive_int,
    _seed,
    track_explicit,
)
from nablanet.cli._train_model import build, input_shape, targets
from nablanet.data._cache import CACHE_ENV, get_cache_dir
from nablanet.train.interrupts import sigint_deferred

ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "softplus")
LOSSES = ("ce", "mse", "quadratic")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
SCHEDULES = ("constant", "step", "exponential", "inverse_time", "cosine")
MOMENTUM_OPTIMIZERS = ("sgd", "rmsprop")


def add_parser(sub: Any) -> None:
    t = sub.add_parser(
        "train",
        help="train a model on a built-in data set and report test accuracy",
        description="Train an MLP (or, with --model cnn, a convolutional net) on a built-in data set; print a "
                    "table per epoch and the test accuracy. With --out DIR the run is saved, checkpointed after "
                    "every epoch, and can be continued with --resume; Ctrl-C stops it after the current step and "
                    "saves what it has.",
        formatter_class=_HelpFormatter,
    )
    track_explicit(t)
    t.add_argument("--data", choices=("digits", "mnist1d", "mnist"), default="digits",
                   help="data set: scikit-learn's 8x8 digits, MNIST-1D (generated offline into the cache folder), "
                        "or MNIST (IDX files; see --download)")
    t.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                   help="--data mnist: the folder with the MNIST IDX files (default: CACHE/mnist, where CACHE is "
                        f"${CACHE_ENV} or ~/.cache/nablanet; here: {get_cache_dir() / 'mnist'})")
    t.add_argument("--download", action="store_true",
                   help="--data mnist: download the missing MNIST files (11 MB; the t10k pair alone 1.7 MB; "
                        "checksums verified, interrupted downloads resumed) into --data-root or the default "
                        "folder; $NABLANET_MNIST_MIRRORS (comma-separated base URLs) replaces the mirror list")
    t.add_argument("--mnist-subset", choices=("standard", "t10k"), default="standard",
                   help="--data mnist: 'standard' trains on the official 60,000 training images (10%% held out "
                        "for validation) and tests on the official 10,000; 't10k' splits the 10,000 test images "
                        "alone into train/validation/test (needs only the two t10k files; its accuracy is not "
                        "comparable with published MNIST figures) (default: standard)")
    t.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                   help="mlp: fully connected; cnn: convolutions on the images (digits 8x8, MNIST 28x28: "
                        "conv-ReLU-maxpool blocks) or sequences (MNIST-1D: the MNIST-1D paper's Conv1d stack)")
    t.add_argument("--hidden", type=_int_list, default=None,
                   help="hidden layer sizes, comma-separated ('none': linear); default 128 for mlp, none after "
                        "the convolutions for cnn")
    t.add_argument("--channels", type=_int_list, default=None,
                   help="cnn: channels per conv block (default: 25,25,25 for mnist1d, 16,32 for digits, "
                        "32,64 for mnist)")
    t.add_argument("--activation", choices=ACTIVATIONS, default="relu", help="hidden-layer activation")
    t.add_argument("--loss", choices=LOSSES, default="ce",
                   help="ce: softmax cross-entropy; mse: sigmoid outputs + MSE on one-hot; quadratic: softmax "
                        "outputs + ½‖p − onehot‖²")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="update rule")
    t.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: 0.1 for sgd, 0.001 for adam/adamw, 0.01 otherwise)")
    t.add_argument("--momentum", type=_momentum, default=0.9,
                   help="momentum of sgd and rmsprop (the other optimizers refuse it)")
    t.add_argument("--nesterov", action="store_true", help="Nesterov momentum (sgd only)")
    t.add_argument("--sutskever", type=_momentum, default=None, metavar="MU_MAX",
                   help="use the Sutskever et al. momentum schedule capped at MU_MAX instead of --momentum (sgd only)")
    t.add_argument("--weight-decay", type=_nonnegative_float, default=1e-4,
                   help="L2 weight decay (adamw: decoupled weight decay)")
    t.add_argument("--schedule", choices=SCHEDULES, default="constant", help="learning-rate schedule")
    t.add_argument("--schedule-steps", type=_positive_int, default=1000,
                   help="step size (step), tau (inverse_time) or total steps (cosine), in optimizer steps")
    t.add_argument("--gamma", type=_decay_factor, default=0.1,
                   help="decay factor for step / exponential schedules (exponential: reached after --schedule-steps)")
    t.add_argument("--batch-size", type=_batch_size, default=32, help="mini-batch size; 1 = online SGD, 'full' = batch")
    t.add_argument("--epochs", type=_positive_int, default=100, help="maximum number of epochs")
    t.add_argument("--early-stopping", type=_patience, default=0, metavar="PATIENCE",
                   help="stop when the validation 0-1 error has not improved for PATIENCE epochs and restore "
                        "the best weights (0: off)")
    t.add_argument("--reduce-lr", type=_patience, default=0, metavar="PATIENCE",
                   help="divide the learning rate by 10 when the validation loss stalls for PATIENCE epochs (0: off)")
    t.add_argument("--seed", type=_seed, default=0, help="seed for the split, the initialization and the batch order")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="parameter dtype")
    t.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="folder for model.npz, history.csv, curves.png (loss and accuracy per epoch) and "
                        "checkpoint.npz (written after every epoch); a folder that holds a run is refused "
                        "unless --resume or --overwrite is given")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from the end of its last finished epoch, bit for bit as if it "
                        "had not stopped; flags left out are taken from the run, --epochs may be raised")
    t.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    t.add_argument("--json", action="store_true", help="print one JSON object with the results instead of the table")


def _check_combinations(args: argparse.Namespace) -> None:
    """Refuse flags that the chosen data set or optimizer would silently ignore."""
    given = args.explicit
    if args.data != "mnist":
        for name in ("data_root", "download", "mnist_subset"):
            if name in given:
                raise ValueError(f"{folder.flag(name)} is for --data mnist; --data {args.data} comes "
                                 + ("with scikit-learn" if args.data == "digits" else
                                    f"from the mnist1d package, generated into the cache folder (${CACHE_ENV})")
                                 + f". Fix: leave out {folder.flag(name)}, or pass --data mnist")
    if args.data_root is not None and args.data_root.exists() and not args.data_root.is_dir():
        raise ValueError(f"--data-root {args.data_root} is a file; expected the folder that holds (or, with "
                         "--download, will hold) the MNIST IDX files")
    if args.optimizer not in MOMENTUM_OPTIMIZERS and "momentum" in given:
        raise ValueError(f"--momentum is for --optimizer sgd or rmsprop; {args.optimizer} has no momentum "
                         "setting (Adam's moments are built in). Fix: leave out --momentum, or pass "
                         "--optimizer sgd")
    for name in ("nesterov", "sutskever"):
        if args.optimizer != "sgd" and name in given:
            raise ValueError(f"{folder.flag(name)} is for --optimizer sgd; {args.optimizer} has no such "
                             f"setting. Fix: leave out {folder.flag(name)}, or pass --optimizer sgd")


def _load_data(args: argparse.Namespace) -> Any:
    from nablanet import data

    if args.data == "digits":
        return data.load_digits(seed=args.seed, dtype=args.dtype)
    if args.data == "mnist1d":
        return data.load_mnist1d(seed=args.seed, dtype=args.dtype)
    return data.load_mnist(args.data_root, subset=args.mnist_subset, download=args.download, seed=args.seed,
                           dtype=args.dtype)


def _plot(history: Any, path: Path) -> bool:
    """curves.png: loss and accuracy per epoch; False when matplotlib is missing or nothing finished."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if not history.records:
        return False
    from nablanet._io import atomic_savefig

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    first = history.records[0]
    a1.plot(history["epoch"], history["loss"], label="train")
    if first.get("val_loss") is not None:
        a1.plot(history["epoch"], history["val_loss"], label="validation")
    a1.set(xlabel="epoch", ylabel="loss", title="loss")
    a1.legend()
    if first.get("accuracy") is not None:
        a2.plot(history["epoch"], history["accuracy"], label="train")
    if first.get("val_accuracy") is not None:
        a2.plot(history["epoch"], history["val_accuracy"], label="validation")
    a2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    a2.legend()
    fig.tight_layout()
    atomic_savefig(path, fig, what="the curves", dpi=100)
    plt.close(fig)
    return True


def train_command(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``nablanet train``; return the result dict. Raises ``Interrupted`` after saving on Ctrl-C."""
    import nablanet as nn
    from nablanet.train import callbacks as cbs

    resume = folder.prepare(args)  # refuses a bad --out before any work; completes args from the run
    _check_combinations(args)
    t0 = time.perf_counter()
    splits = _load_data(args)
    xtr, ytr = splits.train
    xva, yva = splits.validation
    xte, yte = splits.test
    n_in = int(np.prod(splits.input_shape))
    model, loss, opt = build(args, n_in, splits.n_classes)
    shape = input_shape(args, n_in)
    stateful: list[cbs.Callback] = []
    if args.early_stopping > 0:
        stateful.append(cbs.EarlyStopping(patience=args.early_stopping, restore_best_weights=True))
    if args.reduce_lr > 0:
        stateful.append(cbs.ReduceLROnPlateau(patience=args.reduce_lr))
    initial_epoch, history = 0, None
    out: Path | None = args.out
    if out is not None:
        stateful.append(cbs.CSVLogger(out / "history.csv"))
    if resume is not None:
        initial_epoch, history = folder.restore(resume, model, opt, stateful, repr(splits))
    callbacks: list[cbs.Callback] = list(stateful)
    checkpoint = None
    if out is not None:
        folder.make_out(out)
        if args.overwrite:
            folder.remove_run(out)
        checkpoint = folder.EpochCheckpoint(out / folder.CHECKPOINT, folder.run_args(args), args.epochs, stateful,
                                            repr(splits))
        callbacks.append(checkpoint)
    callbacks.append(cbs.ProgressBar())
    if not args.json:
        if resume is not None:
            print(f"resuming {out} after epoch {initial_epoch - 1} of {args.epochs}", flush=True)
        print(f"data: {splits!r}\nmodel: {model!r}\nloss: {loss!r}  optimizer: {type(opt).__name__}", flush=True)
    history = nn.fit(
        model, loss, opt,
        train=(xtr.reshape(len(xtr), *shape), targets(ytr, splits.n_classes, args.loss, args.dtype)),
        validation=(xva.reshape(len(xva), *shape), targets(yva, splits.n_classes, args.loss, args.dtype)),
        epochs=args.epochs - initial_epoch, initial_epoch=initial_epoch, history=history, batch_size=args.batch_size,
        seed=args.seed, callbacks=callbacks, verbose=not args.json,
    )
    with sigint_deferred():  # a Ctrl-C now would cost the files that record the run
        if history.interrupted:
            raise Interrupted(_save_interrupted(args, model, opt, history, checkpoint))
        scores = nn.evaluate(model, loss, xte.reshape(len(xte), *shape),
                             targets(yte, splits.n_classes, args.loss, args.dtype))
        result: dict[str, Any] = {
            "data": args.data, "test_accuracy": scores["accuracy"], "test_loss": scores["loss"],
            "epochs": len(history), "seconds": round(time.perf_counter() - t0, 3),
            "best_val_error": min((e for e in history["val_error"] if e is not None), default=None),
            "stop_reason": history.stop_reason, "n_train": len(xtr), "n_test": len(xte),
            "model": args.model, "hidden": args.hidden, "activation": args.activation, "loss": args.loss,
            "optimizer": args.optimizer, "seed": args.seed,
        }
        if out is not None:
            nn.save(model, out / "model.npz", optimizer=opt, extra={"result": result})
            result["plot"] = _plot(history, out / "curves.png")
            result["out"] = str(out)
    return result


def _save_interrupted(args: argparse.Namespace, model: Any, opt: Any, history: Any,
                      checkpoint: folder.EpochCheckpoint | None) -> str:
    """Save the interrupted run's weights and curves; return the one line that says what happened."""
    import nablanet as nn

    at, stop_reason = history.interrupted_at, history.stop_reason
    if checkpoint is not None and checkpoint.epochs_done == at["epoch"] + 1:
        # Ctrl-C came after the epoch's checkpoint (the save defers it to its end): the epoch is finished,
        # so the run stands at the start of the next one, as the checkpoint and history.csv say
        at = {"epoch": at["epoch"] + 1, "batch": 0, "batches": at["batches"]}
        stop_reason = (f"interrupted (KeyboardInterrupt) after epoch {at['epoch'] - 1} was complete and "
                       "checkpointed; the weights are those at its end")
    where = f"in epoch {at['epoch']} after {at['batch']} of {at['batches']} batches"
    if args.out is None:
        return f"interrupted (Ctrl-C) {where}; nothing was saved (pass --out DIR to keep a run)"
    nn.save(model, args.out / "model.npz", optimizer=opt,
            extra={"interrupted": {**at, "stop_reason": stop_reason}})
    plotted = _plot(history, args.out / "curves.png")
    saved = "model.npz (the weights after the last completed step)" + (", history.csv" if history.records else "")
    saved += ", curves.png" if plotted else ""
    if not (args.out / folder.CHECKPOINT).exists():
        return f"interrupted (Ctrl-C) {where}; saved {saved} in {args.out}; no epoch had finished, so there is " \
               "nothing to resume (rerun with --overwrite)"
    return (f"interrupted (Ctrl-C) {where}; saved {saved} in {args.out}. To continue from the end of epoch "
            f"{len(history) - 1}: nablanet train --out {args.out} --resume")


def run(args: argparse.Namespace) -> int:
    result = train_command(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"test accuracy {result['test_accuracy']:.4f}  test loss {result['test_loss']:.4f}  "
              f"({result['epochs']} epochs, {result['seconds']:.1f} s)")
        if args.out is not None:
            files = ["model.npz", "history.csv", *(["curves.png"] if result.get("plot") else []), folder.CHECKPOINT]
            print(f"wrote {', '.join(files)} in {args.out}")
    return 0
