"""Shared test tools: central differences for a layer's VJP, relative errors."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

import nablanet as nn


def sigint_as_in_a_terminal() -> None:
    """``preexec_fn`` for a child process that a test sends SIGINT: the signal's default action there.

    A test run started with ``&`` from a script inherits SIGINT ignored, and so would the child; its
    Python would then never raise KeyboardInterrupt, and the test would see no Ctrl-C at all.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ctrl_c_when(proc: subprocess.Popen[str], ready: Callable[[], bool], timeout: float = 60) -> tuple[str, str]:
    """Send ``proc`` a SIGINT once ``ready()`` holds (polled); return its (stdout, stderr) once it ends.

    Fails if the process ends first or ``ready`` does not hold within ``timeout`` seconds; the
    process is killed if anything goes wrong, so no test leaves one behind.
    """
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"not ready to be interrupted within {timeout} s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max |a − b| / max(max |a|, max |b|): the error in units of the largest entry."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0))
    err = float(np.max(np.abs(a - b), initial=0.0))
    return err / scale if scale > 0 else err


def numeric_grad(f: Callable[[], float], arr: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() with respect to every entry of ``arr`` (in place)."""
    g = np.zeros(arr.shape)
    flat = arr.reshape(-1)
    gflat = g.reshape(-1)
    for k in range(flat.size):
        orig = flat[k]
        flat[k] = orig + eps
        up = f()
        flat[k] = orig - eps
        down = f()
        flat[k] = orig
        gflat[k] = (up - down) / (2 * eps)
    return g


def check_layer_fd(layer: nn.Layer, x: np.ndarray, seed: int = 0, train: bool = False) -> float:
    """Worst relative error of the VJP against central differences of L = ⟨dy, layer(x)⟩.

    Checks the input and every parameter. float64 throughout.
    """
    rng = np.random.default_rng(seed)
    y, cache = layer.forward(x, train=train, rng=np.random.default_rng(seed))
    dy = rng.standard_normal(y.shape)
    dx, grads = layer.vjp(cache, dy)

    def f() -> float:
        out, _ = layer.forward(x, train=train, rng=np.random.default_rng(seed))
        return float(np.sum(out * dy))

    worst = rel_err(dx, numeric_grad(f, x))
    for name, p in layer.named_parameters():
        worst = max(worst, rel_err(grads[name], numeric_grad(f, p.data)))
    return worst


def load_benchmark(name: str) -> ModuleType:
    """A script of benchmarks/ as a module (the reference runs live there so they print their figures)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
