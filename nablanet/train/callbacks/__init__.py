"""Keras-like callbacks: a handful of hooks, a ``logs`` dict, and a ``stop_training`` flag.

Hooks (all optional): ``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``,
``on_batch_end(step, logs, tape)``, ``on_epoch_end(epoch, logs)``, ``on_epoch_complete(epoch, logs)``,
``on_train_end(logs)``. ``on_batch_end`` receives the step's backward tape (see
``nablanet.layers.TapeEntry``), so instruments can read gradients without a second backward pass;
``step`` is ``epoch * batches_per_epoch + batch``, so it continues across a resumed run.
``on_epoch_complete`` runs once every callback's ``on_epoch_end`` has run and the record is in the
history: the state there is the epoch boundary a run can be resumed from. ``on_train_end``'s logs
hold ``interrupted`` (True after Ctrl-C) and ``stop_reason``. A callback sees the run through
``self.context`` (model, loss, optimizer, history, callbacks) and stops it with
``self.context.stop(reason)``. Batch logs hold ``loss`` (this batch), ``lr``, ``epoch``, ``batch``,
``size``, ``output`` (the model's output on the batch, in training mode, before the step) and ``target``
(the batch's targets), read-only; epoch logs are the epoch's History record, which callbacks may extend.

State (for resuming): ``state_dict()`` gives a dict of JSON values and NumPy arrays (nested in
dicts and lists), ``load_state_dict(state)`` puts it back; ``nablanet.save(..., callbacks=[...])``
stores them. A callback that a fresh ``fit`` would reset in ``on_train_begin`` (EarlyStopping,
CSVLogger) keeps a loaded state through the next ``on_train_begin``. Files are written with
``nablanet._io`` (atomically: Ctrl-C during a write leaves the previous file as it was).

Where they live: ``base`` (the protocol, ``CallbackList``, ``LambdaCallback``), ``stopping``
(EarlyStopping, TerminateOnNaN, and the notes' tolerances that ``fit(tol_loss=..., tol_weights=...)``
adds), ``plateau`` (ReduceLROnPlateau), ``files`` (CSVLogger, ModelCheckpoint), ``display``
(ProgressBar, and the table ``fit(verbose=True)`` prints).
"""

from nablanet.train.callbacks.base import Callback, CallbackList, LambdaCallback, TrainingContext
from nablanet.train.callbacks.display import EpochTable, ProgressBar
from nablanet.train.callbacks.files import CSVLogger, ModelCheckpoint
from nablanet.train.callbacks.plateau import ReduceLROnPlateau
from nablanet.train.callbacks.stopping import EarlyStopping, LossTolerance, TerminateOnNaN, WeightTolerance

__all__ = [
    "CSVLogger", "Callback", "CallbackList", "EarlyStopping", "EpochTable", "LambdaCallback", "LossTolerance",
    "ModelCheckpoint", "ProgressBar", "ReduceLROnPlateau", "TerminateOnNaN", "TrainingContext", "WeightTolerance",
]
