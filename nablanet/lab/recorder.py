"""``Recorder``: the gradient lab as a training callback, reading each step's tape.

Every ``every`` optimizer steps, the Recorder computes the chosen quantities from the tape that
``fit`` hands to ``on_batch_end`` (the layers' caches and dy = ∂L/∂y): first-order quantities
need no second backward pass. It keeps tidy records, one row per measurement:

    step, epoch, layer, parameter, quantity, value

``layer`` is the layer's state_dict prefix ("0", "2.1", "1.0" inside a Residual, "3.out_proj"), a
recurrent stack's per layer and direction ("0.l1_reverse" holds "0.weight_ih_l1_reverse" …; see
``nablanet.lab.parts``), ``parameter`` the full parameter name ("0.weight") or "" for layer- and
model-level values (model-level rows have layer ""). Export
with ``to_csv`` (atomic write) or ``to_pandas``; ``nablanet.lab.plots`` draws them.

Quantities (``Recorder.QUANTITIES``):
  loss                   the batch loss
  lr                     the learning rate used by the step
  grad_norm              ‖∂L/∂θ‖ per parameter, per layer, and over the model
  weight_norm            ‖θ‖ per parameter after the step
  update_ratio           ‖Δθ‖/‖θ‖ per parameter (the step's relative size)
  dy_norm                ‖∂L/∂y‖ at each layer's output (the notes' "speed of learning" δˡ; a
                         recurrent stack's at its whole output, layer "0")
  per_sample_grad_norm   mean, std and max over the batch of ‖∂ℓₙ/∂θ‖ per parameter (closed forms:
                         no per-sample gradient is materialized for Linear and Conv layers)
  grad_variance          tr(Σ) of the per-sample gradients per parameter and over the model, and
                         the gradient noise scale B = tr(Σ)/‖G‖² (model level)
  activations            mean and std of each activation layer's output (and of every layer of your
                         own, and of each layer and direction of a recurrent stack), and per type the
                         zero and dead fractions (ReLU) or the saturated fraction |f′| < eps
                         (Sigmoid, Tanh, …, and per gate of a GRU or LSTM; see ``nablanet.lab.activations``)
  simplex                the batch's cloud in the softmax simplex (``nablanet.lab.simplex``), read from the
                         model's output on the batch as the step computed it (training mode, before the
                         update; ``logs["output"]``) and the batch's class-index targets: model-level rows
                         (layer "", parameter "") simplex_inside (the fraction of the batch inside its
                         label's region P_y), simplex_margin_mean and simplex_margin_min (the signed margin
                         (p_y − max_{j≠y} p_j)/√2), and per true class c in the batch simplex_inside_c,
                         simplex_margin_mean_c, the class's mean point simplex_p_c_j (j = 0 … C − 1) and, for
                         C ≤ 3, its place in the picture simplex_x_c, simplex_y_c (``simplex_coords``);
                         samples whose target is outside [0, C) (ignore_index) are left out

Per-sample quantities are gradients of each sample's own loss ℓₙ (see ``Loss.per_sample``): under
``reduction="mean"`` the batch gradient is their mean.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nablanet._io import atomic_write_text
from nablanet.lab._tape import batch_size_of, per_sample_factor, tape_parameters
from nablanet.lab.parts import entry_parts
from nablanet.lab.per_sample import TOTAL, layer_norms, layer_of, per_sample_grad_norms_from_tape
from nablanet.lab.registry import activation_rules
from nablanet.lab.simplex import batch_rows
from nablanet.lab.variance import noise_scale_from_tape
from nablanet.layers.activations import ElementwiseCache
from nablanet.layers.base import Tape
from nablanet.train.callbacks import Callback

COLUMNS = ("step", "epoch", "layer", "parameter", "quantity", "value")
Row = tuple[str, str, str, float]  # layer, parameter, quantity, value
QuantityFn = Callable[["Recorder", Tape, dict[str, Any]], Iterable[Row]]


class Recorder(Callback):
    """Record gradient-lab quantities during ``fit``; see the module docstring for the list.

    every:       record at optimizer steps 0, every, 2·every, … (steps count from 0 across epochs)
    quantities:  names from ``Recorder.QUANTITIES``; default ("loss", "grad_norm")
    eps:         the |f′| threshold below which a sigmoid/tanh unit counts as saturated
    """

    QUANTITIES: ClassVar[dict[str, QuantityFn]] = {}

    def __init__(self, every: int = 1, quantities: Iterable[str] = ("loss", "grad_norm"), *, eps: float = 1e-2) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"Recorder(every={every!r}): expected a positive int, e.g. every=10")
        names = [quantities] if isinstance(quantities, str) else list(quantities)
        unknown = [q for q in names if q not in self.QUANTITIES]
        if unknown or not names:
            raise ValueError(
                f"Recorder(quantities={names!r}): unknown {unknown or 'empty list'}; choose from "
                f"{sorted(self.QUANTITIES)}"
            )
        self.every = every
        self.eps = float(eps)
        self.quantities = names
        self.records: list[dict[str, Any]] = []
        self._before: dict[str, np.ndarray] = {}

    # -- callback hooks ---------------------------------------------------------------------------
    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self._snapshot()

    def on_batch_end(self, step: int, logs: dict[str, Any], tape: Tape) -> None:
        if step % self.every == 0:
            self._memo: dict[str, Any] = {}
            for q in self.quantities:
                epoch = logs.get("epoch")
                self.records.extend(
                    {"step": step, "epoch": epoch, "layer": layer, "parameter": parameter, "quantity": quantity,
                     "value": float(value)}
                    for layer, parameter, quantity, value in self.QUANTITIES[q](self, tape, logs))
        if (step + 1) % self.every == 0:
            self._snapshot()  # the weights before the next recorded step, for update_ratio

    def layers_of(self, tape: Tape) -> dict[str, str]:
        """This step's layer of every parameter on the tape (``layer_of``), computed once per recorded step."""
        if "layers" not in self._memo:
            self._memo["layers"] = {name: layer_of(name, entry.layer) for name, entry, _ in tape_parameters(tape)}
        return self._memo["layers"]

    def per_sample_norms(self, tape: Tape) -> dict[str, np.ndarray]:
        """This step's ‖∂ℓₙ/∂θ‖ per parameter, computed once per recorded step (closed forms)."""
        if "norms" not in self._memo:
            factor = per_sample_factor(self.context.loss, batch_size_of(tape))
            self._memo["norms"] = per_sample_grad_norms_from_tape(tape, factor)
        return dict(self._memo["norms"])

    def _snapshot(self) -> None:
        """Keep the weights (fit calls on_batch_end after the update) when update_ratio is asked for."""
        if "update_ratio" in self.quantities and hasattr(self, "context"):
            self._before = {name: p.data.copy() for name, p in self.context.model.named_parameters()}

    # -- export -----------------------------------------------------------------------------------
    def to_records(self) -> list[dict[str, Any]]:
        """The rows as dicts with the keys ``COLUMNS`` (copies)."""
        return [dict(r) for r in self.records]

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (needs ``pip install pandas``)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError("Recorder.to_pandas needs pandas: pip install pandas (or use to_records/to_csv)") from exc
        return pd.DataFrame(self.records, columns=list(COLUMNS))

    def to_csv(self, path: str | Path) -> Path:
        """Write the rows to ``path`` as CSV (temporary file + rename)."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.records)
        target = Path(path)
        atomic_write_text(target, buf.getvalue())
        return target

    def series(self, quantity: str, parameter: str | None = None, layer: str | None = None) -> tuple[
            np.ndarray, np.ndarray]:
        """(steps, values) of one quantity, filtered by parameter and/or layer name."""
        rows = [r for r in self.records if r["quantity"] == quantity
                and (parameter is None or r["parameter"] == parameter) and (layer is None or r["layer"] == layer)]
        return np.array([r["step"] for r in rows]), np.array([r["value"] for r in rows])


def quantity(name: str) -> Callable[[QuantityFn], QuantityFn]:
    """Register a Recorder quantity: a function (recorder, tape, logs) -> rows."""

    def deco(fn: QuantityFn) -> QuantityFn:
        Recorder.QUANTITIES[name] = fn
        return fn

    return deco


@quantity("loss")
def _loss(rec: Recorder, tape: Tape, logs: dict[str, Any]) -> Iterable[Row]:
    yield "", "", "loss", logs["loss"]


@quantity("lr")
def _lr(rec: Recorder, tape: Tape, logs: dict[str, Any]) -> Iterable[Row]:
    yield "", "", "lr", logs["lr"]


@quantity("grad_norm")
def _grad_norm(rec: Recorder, tape: Tape, logs: dict[str, Any]) -> Iterable[Row]:
    per_layer: dict[str, float] = {}
    total = 0.0
    layers = rec.layers_of(tape)
    for name, entry, local in tape_parameters(tape):
        g = entry.grads[local].ravel()
        sq = float(g @ g)
        layer = layers[name]
        per_layer[layer] = per_layer.get(layer, 0.0) + sq
        total += sq
        yield layer, name, "grad_norm", math.sqrt(sq)
    for layer, sq in per_layer.items():
        yield layer, "", "grad_norm", math.sqrt(sq)
    yield "", "", "grad_norm", math.sqrt(total)


@quantity("weight_norm")
def _weight_norm(rec: Recorder, tape: Tape, logs: dict[str, Any]) -> Iterable[Row]:
    layers = rec.layers_of(tape)
    for name, entry, local in tape_parameters(tape):
        w = entry.layer._parameters[local].data
        yield layers[name], name, "weight_norm", float(np.sqrt(np.vdot(w, w)))


@quantity("update_ratio")
def _update_ratio(rec: Recorder, tape: Tape, logs: dict[str, Any]) -> Iterable[Row]:
    layers = rec.layers_of(tape)
    for name, entry, local in tape_parameters(tape):
        w = entry.layer._parameters[local].data
        before = rec._before.get(name)
        if before is not None:
            delta = float(np.linalg.norm((w - before).ravel()))
            yield layers[name], name, "update_ratio", delta / max(float(np.linalg.norm(before.ravel())), 1e-300)


@quantity("dy_norm")
def _dy_norm(rec: Recorder, tape: Tape, logs: dict[str, Any]) -> Iterable[Row]:
    for entry in tape:
        yield entry.name, "", "dy_norm", float(np.sqrt(np.vdot(entry.dy, entry.dy)))


@quantity("activations")
def _activations(rec: Recorder, tape: Tape, logs: dict[str, Any]) -> Iterable[Row]:
    # Elementwise activations keep their input and output in the cache: the statistics of
    # nablanet.lab.activations come from the tape at no extra forward pass.
    # A layer of the user's has its input and output on the tape: nablanet cannot tell an activation of
    # the user's from other layers, so each gets its rows.
    # A recurrent stack's entry holds each (layer, direction)'s states and gates in its cache: a row set per part.
    for entry in tape:
        seen: list[tuple[str, Any, Any, Any]]
        if isinstance(entry.cache, ElementwiseCache):
            seen = [(entry.name, entry.cache.x, entry.cache.y, entry.cache)]
        elif isinstance(entry.y, np.ndarray):
            seen = [(entry.name, entry.x, entry.y, entry.cache)]
        else:
            seen = [(p.name, p.x, p.y, p.cache) for p in entry_parts(entry)]
        rule = activation_rules.find(entry.layer)
        for layer, x, y, cache in seen:
            yield layer, "", "activation_mean", float(np.mean(y))
            yield layer, "", "activation_std", float(np.std(y))
            if rule is not None:
                for name, value in rule(entry.layer, x, y, cache, rec.eps).items():
                    yield layer, "", name, value


@quantity("per_sample_grad_norm")
def _per_sample_grad_norm(rec: Recorder, tape: Tape, logs: dict[str, Any]) -> Iterable[Row]:
    norms = rec.per_sample_norms(tape)
    layers = rec.layers_of(tape)
    combined = layer_norms(norms, layers)  # per layer ("0") and over the model (TOTAL)
    keys = [(layers[name], name) for name in norms] + [(layer if layer != TOTAL else "", "") for layer in combined]
    table = np.stack([*norms.values(), *combined.values()]).astype(np.float64, copy=False)  # (rows, N)
    # three reductions over the whole table instead of three per row: tiny arrays make calls the cost
    stats = zip(table.mean(axis=1).tolist(), table.std(axis=1).tolist(), table.max(axis=1).tolist(), strict=True)
    for (layer, parameter), (mean, std, top) in zip(keys, stats, strict=True):
        yield layer, parameter, "per_sample_grad_norm_mean", mean
        yield layer, parameter, "per_sample_grad_norm_std", std
        yield layer, parameter, "per_sample_grad_norm_max", top


@quantity("grad_variance")
def _grad_variance(rec: Recorder, tape: Tape, logs: dict[str, Any]) -> Iterable[Row]:
    n = batch_size_of(tape)
    if n < 2:  # a last batch of one sample has no variance to measure
        return
    factor = per_sample_factor(rec.context.loss, n)
    scales = noise_scale_from_tape(tape, factor, norms=rec.per_sample_norms(tape))
    layers = rec.layers_of(tape)
    for name, ns in scales.items():
        if name == TOTAL:
            yield "", "", "grad_variance_trace", ns.trace_cov
            yield "", "", "noise_scale", ns.noise_scale
        else:
            yield layers[name], name, "grad_variance_trace", ns.trace_cov


@quantity("simplex")
def _simplex(rec: Recorder, tape: Tape, logs: dict[str, Any]) -> Iterable[Row]:
    # fit hands the batch's output and targets in logs: the cloud as the step saw it, with no second forward pass
    if "output" not in logs or "target" not in logs:
        raise ValueError("Recorder quantity 'simplex' needs the batch's output and targets, which nn.fit passes to "
                         "on_batch_end as logs['output'] and logs['target']; a loop of your own must pass them too")
    for name, value in batch_rows(logs["output"], logs["target"], rec.context.model):
        yield "", "", name, value
