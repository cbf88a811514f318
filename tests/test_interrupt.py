"""Ctrl-C inside fit: a clean stop, the History so far, files left whole; and the same with a real SIGINT."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import ctrl_c_when, sigint_as_in_a_terminal

import nablanet as nn
from nablanet.train import callbacks as cbs


def _data(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 4)), rng.integers(0, 3, n)


def _model() -> nn.Sequential:
    rng = np.random.default_rng(1)
    return nn.Sequential(nn.Linear(4, 8, rng=rng), nn.Tanh(), nn.Linear(8, 3, rng=rng))


def _interrupt_at(epoch: int, batch: int) -> cbs.LambdaCallback:
    """Raises KeyboardInterrupt after the step of (epoch, batch), as a Ctrl-C would between steps."""

    def hit(step: int, logs: dict[str, Any], tape: Any) -> None:
        if (logs["epoch"], logs["batch"]) == (epoch, batch):
            raise KeyboardInterrupt

    return cbs.LambdaCallback(on_batch_end=hit)


def _weights(model: nn.Sequential) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in model.state_dict().items()}


class _StopAfter(cbs.Callback):
    def __init__(self, n_steps: int) -> None:
        self.n_steps = n_steps

    def on_batch_end(self, step: int, logs: dict[str, Any], tape: Any) -> None:
        if step + 1 == self.n_steps:
            self.context.stop(f"{self.n_steps} steps")


def _steps(n_steps: int, momentum: float = 0.9) -> dict[str, np.ndarray]:
    """The weights after exactly n_steps steps of the same run, uninterrupted (8 batches of 8 per epoch)."""
    x, y = _data()
    model = _model()
    opt = nn.optim.SGD(model.parameters(), lr=0.1, momentum=momentum)
    nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=5, batch_size=8, callbacks=[_StopAfter(n_steps)])
    assert opt.step_count == n_steps
    return _weights(model)


def test_keyboard_interrupt_returns_the_history_so_far_with_the_last_steps_weights(tmp_path: Path) -> None:
    x, y = _data()
    model = _model()
    opt = nn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ended: list[dict[str, Any]] = []
    log = cbs.CSVLogger(tmp_path / "history.csv")
    history = nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=5, batch_size=8,
                     callbacks=[log, _interrupt_at(2, 3), cbs.LambdaCallback(on_train_end=ended.append)])
    assert history.interrupted and history.interrupted_at == {"epoch": 2, "batch": 4, "batches": 8}
    assert history.stop_reason == ("interrupted (KeyboardInterrupt) in epoch 2 after 4 of 8 batches; "
                                   "the weights are those after the last completed step")
    assert [r["epoch"] for r in history.records] == [0, 1]  # completed epochs only
    assert ended == [{"interrupted": True, "stop_reason": history.stop_reason}]
    assert opt.step_count == 2 * 8 + 4
    expected = _steps(2 * 8 + 4)
    for k, v in _weights(model).items():
        np.testing.assert_array_equal(v, expected[k])
    with open(tmp_path / "history.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]
    assert model.training  # the mode fit found is restored


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """Python's own SIGINT handler, as in a terminal, even where the test run inherited SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_sigint_during_the_optimizer_step_is_held_until_the_step_is_done(ctrl_c_raises: None) -> None:
    x, y = _data()
    model = _model()

    class SignalledSGD(nn.optim.SGD):
        def _update(self, p: Any, g: Any, state: Any, h: Any) -> None:
            if self.step_count == 5 and p is self.param_groups[0]["params"][0]:
                os.kill(os.getpid(), signal.SIGINT)  # the handler runs here, between bytecodes
            super()._update(p, g, state, h)

    opt = SignalledSGD(model.parameters(), lr=0.1, momentum=0.9)
    before = signal.getsignal(signal.SIGINT)
    history = nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=3, batch_size=8)
    assert signal.getsignal(signal.SIGINT) is before
    assert history.interrupted_at == {"epoch": 0, "batch": 6, "batches": 8}
    assert opt.step_count == 6  # step 5 finished whole: every parameter and its momentum
    expected = _steps(6)
    for k, v in _weights(model).items():
        np.testing.assert_array_equal(v, expected[k])


class _Duck:
    """An optimizer that is not a nablanet Optimizer: fit's guard works the same for it."""

    def __init__(self, inner: nn.optim.SGD) -> None:
        self.inner = inner

    def zero_grad(self) -> None:
        self.inner.zero_grad()

    def current(self, name: str) -> float:
        return float(self.inner.current(name))

    def step(self) -> None:
        self.inner.step()


@pytest.mark.parametrize("kind", ["nablanet", "duck"])
def test_an_interrupt_raised_inside_the_step_undoes_it(kind: str) -> None:
    x, y = _data()
    model = _model()
    arrays = [p.data for p in model.parameters()]

    class RaisingSGD(nn.optim.SGD):
        def _update(self, p: Any, g: Any, state: Any, h: Any) -> None:
            if self.step_count == 5 and p is self.param_groups[0]["params"][2]:
                raise KeyboardInterrupt  # two of the four parameters have their new values
            super()._update(p, g, state, h)

    inner = RaisingSGD(model.parameters(), lr=0.1)
    opt: Any = _Duck(inner) if kind == "duck" else inner
    history = nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=3, batch_size=8)
    assert history.interrupted_at == {"epoch": 0, "batch": 5, "batches": 8}
    assert "the interrupted step was undone" in str(history.stop_reason)
    expected = _steps(5, momentum=0.0)
    for k, v in _weights(model).items():
        np.testing.assert_array_equal(v, expected[k])
    assert all(p.data is a for p, a in zip(model.parameters(), arrays, strict=True)), "each keeps its array"


def test_propagate_interrupts_reraises_after_the_clean_stop() -> None:
    x, y = _data()
    model = _model()
    opt = nn.optim.SGD(model.parameters(), lr=0.1)
    ended: list[dict[str, Any]] = []
    cells = []
    with pytest.raises(nn.train.TrainingInterrupted) as info, nn.train.propagate_interrupts():
        for cell in range(3):
            cells.append(cell)
            nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=2, batch_size=8,
                   callbacks=[_interrupt_at(1, 0) if cell == 1 else cbs.Callback(),
                              cbs.LambdaCallback(on_train_end=ended.append)])
    assert cells == [0, 1]  # the loop ended with the interrupted run
    assert isinstance(info.value, KeyboardInterrupt)
    assert info.value.history.interrupted_at == {"epoch": 1, "batch": 1, "batches": 8}
    assert str(info.value) == info.value.history.stop_reason
    assert [e["interrupted"] for e in ended] == [False, True]
    with nn.train.propagate_interrupts(), nn.train.propagate_interrupts(False):  # switched off inside
        assert nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=2, batch_size=8,
                      callbacks=[_interrupt_at(0, 0)]).interrupted
    assert not nn.train.interrupts.interrupts_propagate()


def test_an_interrupt_before_the_first_epoch_and_one_after_the_last_batch() -> None:
    x, y = _data()
    model = _model()
    start = _weights(model)
    opt = nn.optim.SGD(model.parameters(), lr=0.1)

    def begin(logs: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    h = nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=2, callbacks=[cbs.LambdaCallback(begin)])
    assert h.stop_reason == "interrupted (KeyboardInterrupt) before the first epoch began; the weights are unchanged"
    assert h.interrupted_at == {"epoch": 0, "batch": 0, "batches": 0} and len(h) == 0
    for k, v in _weights(model).items():
        np.testing.assert_array_equal(v, start[k])

    def epoch_end(epoch: int, logs: dict[str, Any]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    h = nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=3, batch_size=32,
               callbacks=[cbs.LambdaCallback(on_epoch_end=epoch_end)])
    assert h.interrupted_at == {"epoch": 1, "batch": 2, "batches": 2} and len(h) == 1
    assert "after its last batch (2 of 2), before the epoch's record was complete" in str(h.stop_reason)


def test_early_stopping_keeps_the_last_weights_when_interrupted() -> None:
    x, y = _data()
    model = _model()
    opt = nn.optim.SGD(model.parameters(), lr=0.5)
    es = cbs.EarlyStopping(monitor="loss", patience=10, restore_best_weights=True)
    snap: list[dict[str, np.ndarray]] = []
    keep = cbs.LambdaCallback(on_batch_end=lambda s, logs, t: snap.append(_weights(model)))
    nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=4, batch_size=8,
           callbacks=[es, keep, _interrupt_at(2, 5)])
    assert es.best_weights is not None
    for k, v in _weights(model).items():
        np.testing.assert_array_equal(v, snap[-1][k])


def test_an_interrupt_while_a_callback_writes_leaves_the_previous_file(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _data()
    model = _model()
    opt = nn.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "history.csv"
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if path.exists():  # the second write: Ctrl-C with the new file half on disk
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    h = nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=3, batch_size=16,
               callbacks=[cbs.CSVLogger(path)])
    monkeypatch.undo()
    assert h.interrupted and h.interrupted_at == {"epoch": 1, "batch": 4, "batches": 4}
    with open(path, newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]  # no .part left behind


_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import nablanet as nn
    from nablanet.train import callbacks as cbs

    out = sys.argv[1]
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 4)), rng.integers(0, 3, 64)
    model = nn.Sequential(nn.Linear(4, 8, rng=rng), nn.Tanh(), nn.Linear(8, 3, rng=rng))
    opt = nn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    slow = cbs.LambdaCallback(on_batch_end=lambda s, logs, t: time.sleep(0.005))
    history = nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), validation=(x, y), epochs=100000,
                     batch_size=8, callbacks=[cbs.ModelCheckpoint(out + "/model.npz"),
                                              cbs.CSVLogger(out + "/history.csv"), slow])
    nn.save(model, out + "/final.npz", optimizer=opt)
    print(json.dumps({"interrupted": history.interrupted, "at": history.interrupted_at,
                      "stop_reason": history.stop_reason, "epochs": len(history)}))
""")


def test_a_real_sigint_stops_a_training_script_cleanly(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=sigint_as_in_a_terminal)
    out, err = ctrl_c_when(proc, (tmp_path / "history.csv").exists)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["interrupted"] and result["stop_reason"].startswith("interrupted (KeyboardInterrupt) in epoch")
    assert result["epochs"] >= 1 and result["at"]["epoch"] == result["epochs"]
    ck = nn.load_checkpoint(tmp_path / "model.npz")
    assert ck.extra["epoch"] == result["epochs"] - 1 and ck.optimizer_state is not None
    with open(tmp_path / "history.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(result["epochs"]))
    nn.load(tmp_path / "final.npz")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
