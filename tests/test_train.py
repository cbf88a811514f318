"""fit, evaluate and the callbacks, used as a user would."""

from __future__ import annotations

import copy
import csv
import itertools
import math
from typing import Any

import numpy as np
import pytest

import nablanet as nn
from nablanet.train import callbacks as cbs


def _blobs(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    return centers[y] + rng.standard_normal((n, 2)) * 0.6, y


def _model(seed: int = 0) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(2, 16, rng=rng), nn.Tanh(), nn.Linear(16, 3, rng=rng))


def test_fit_learns_and_history_has_the_columns() -> None:
    x, y = _blobs()
    model = _model()
    opt = nn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    history = nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), validation_split=0.2, epochs=15, batch_size=16)
    assert len(history) == 15
    rec = history.to_records()[-1]
    assert set(rec) >= {"epoch", "loss", "accuracy", "val_loss", "val_error", "val_accuracy", "lr", "seconds"}
    assert history["loss"][-1] < history["loss"][0]
    assert rec["val_error"] <= 0.1 and rec["accuracy"] >= 0.9
    assert history.history["lr"] == [0.1] * 15
    assert model.training  # fit restores the mode it found


def test_fit_is_reproducible_from_the_seed() -> None:
    x, y = _blobs()
    runs = []
    for _ in range(2):
        model = _model()
        opt = nn.optim.SGD(model.parameters(), lr=0.05)
        nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=3, batch_size=10, seed=3)
        runs.append(model.state_dict())
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])


@pytest.mark.parametrize("batch_size,steps", [(1, 50), (None, 1), (16, 4)])
def test_online_full_and_mini_batch(batch_size: int | None, steps: int) -> None:
    x, y = _blobs(50)
    model = _model()
    opt = nn.optim.SGD(model.parameters(), lr=0.01)
    seen = []
    cb = cbs.LambdaCallback(on_batch_end=lambda step, logs, tape: seen.append(logs["size"]))
    nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=1, batch_size=batch_size, callbacks=[cb])
    assert len(seen) == steps and sum(seen) == 50
    assert opt.step_count == steps


def test_callbacks_receive_the_backward_tape() -> None:
    x, y = _blobs(40)
    model = _model()
    tapes = []
    cb = cbs.LambdaCallback(on_batch_end=lambda step, logs, tape: tapes.append(tape))
    nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.0), train=(x, y), epochs=1,
           batch_size=None, callbacks=[cb], shuffle=False)
    (tape,) = tapes
    assert [e.name for e in tape] == ["0", "1", "2"]
    _, grads = nn.value_and_grad(model, nn.CrossEntropyLoss(), x, y)
    np.testing.assert_allclose(tape[2].grads["weight"], grads["2.weight"], rtol=1e-6)


def test_early_stopping_restores_the_best_weights() -> None:
    x, y = _blobs()
    model = _model()
    opt = nn.optim.SGD(model.parameters(), lr=0.1)
    best: dict[str, object] = {}

    def remember(epoch: int, logs: dict) -> None:  # type: ignore[type-arg]
        if not best or logs["val_loss"] < best["val_loss"]:
            best.update(val_loss=logs["val_loss"], weights=model.state_dict())

    stopper = cbs.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    # after epoch 4 the lr jumps so the validation loss gets worse and training must stop
    jump = cbs.LambdaCallback(on_epoch_end=lambda e, logs: setattr(opt, "lr", 50.0) if e == 4 else None)
    history = nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), validation_split=0.25, epochs=40,
                     batch_size=20, callbacks=[cbs.LambdaCallback(on_epoch_end=remember), jump, stopper])
    assert len(history) < 40 and "early stopping" in (history.stop_reason or "")
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, best["weights"][k])  # type: ignore[index]


def test_early_stopping_needs_validation_data() -> None:
    x, y = _blobs(30)
    model = _model()
    with pytest.raises(ValueError, match=r"no 'val_error'.*Pass validation=\(x, y\) or validation_split"):
        nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), train=(x, y), epochs=2,
               callbacks=[cbs.EarlyStopping()])


def test_reduce_lr_on_plateau_divides_by_ten() -> None:
    x, y = _blobs(60)
    model = _model()
    opt = nn.optim.SGD(model.parameters(), lr=0.5)
    # loss on a fixed tiny step never improves by min_delta=10: every epoch is a plateau
    cb = cbs.ReduceLROnPlateau(monitor="loss", patience=1, min_delta=10.0, min_lr=0.004)
    history = nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=8, batch_size=None, callbacks=[cb])
    # the record holds the lr the epoch used; a reduction shows from the next epoch on
    np.testing.assert_allclose(history["lr"], [0.5, 0.5, 0.05, 0.005, 0.004, 0.004, 0.004, 0.004])


def test_diverging_loss_stops_and_keeps_last_good_weights() -> None:
    x, y = _blobs(64)
    model = nn.Sequential(nn.Linear(2, 8, rng=0), nn.ReLU(), nn.Linear(8, 3, rng=1))
    opt = nn.optim.SGD(model.parameters(), lr=1e6)
    finite: list[dict[str, np.ndarray]] = []
    snap = cbs.LambdaCallback(on_epoch_begin=lambda e, logs: finite.append(model.state_dict()))
    history = nn.fit(model, nn.MSELoss(), opt, train=(x, np.eye(3)[y] * 1e3), epochs=50, batch_size=8,
                     callbacks=[snap, cbs.TerminateOnNaN()])
    assert history.stop_reason is not None and "restored the last weights" in history.stop_reason
    assert all(np.isfinite(p.data).all() for p in model.parameters())
    out = model(x[:8])
    assert np.isfinite(nn.MSELoss()(out, np.eye(3)[y[:8]] * 1e3))


class _DuckSGD:
    """An optimizer that is not a nablanet Optimizer: fit's guard works the same for it."""

    def __init__(self, params: list[nn.Parameter], lr: float) -> None:
        self.params, self.lr = params, lr

    def current(self, name: str = "lr") -> float:
        return self.lr

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.data -= self.lr * p.grad


def _growing(t: int) -> float:
    """An lr that makes the adaptive rules (whose steps are about lr in size) overflow in a few steps."""
    return 10.0 ** (20 * t)


@pytest.mark.parametrize("make_opt", [
    lambda ps: nn.optim.SGD(ps, lr=3e5, momentum=0.9),
    lambda ps: nn.optim.Adam(ps, lr=_growing),
    lambda ps: nn.optim.AdamW(ps, lr=_growing, weight_decay=0.1),
    lambda ps: nn.optim.RMSprop(ps, lr=_growing),
    lambda ps: nn.optim.Adagrad(ps, lr=_growing),
    lambda ps: _DuckSGD(list(ps), lr=1e6),
], ids=["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "duck-typed"])
def test_divergence_restores_exactly_the_weights_of_the_last_finite_loss(make_opt) -> None:  # type: ignore[no-untyped-def]
    x, y = _blobs(64)
    model = nn.Sequential(nn.Linear(2, 8, rng=0), nn.ReLU(), nn.Linear(8, 3, rng=1))
    arrays = [p.data for p in model.parameters()]
    after_step: list[list[np.ndarray]] = [[p.data.copy() for p in model.parameters()]]  # w_0, w_1, ...
    rec = cbs.LambdaCallback(on_batch_end=lambda s, logs, tape: after_step.append(
        [p.data.copy() for p in model.parameters()]))
    history = nn.fit(model, nn.MSELoss(), make_opt(model.parameters()), train=(x, np.eye(3)[y] * 1e3),
                     epochs=200, batch_size=8, callbacks=[rec])
    assert history.stop_reason is not None and "restored the last weights" in history.stop_reason
    # the step whose loss was non-finite ran at after_step[-1]; the weights before it are kept
    assert len(after_step) >= 2
    for p, want in zip(model.parameters(), after_step[-2], strict=True):
        np.testing.assert_array_equal(p.data, want)
    assert all(p.data is a for p, a in zip(model.parameters(), arrays, strict=True)), "fit keeps the arrays"


def test_fit_keeps_each_parameter_array_and_its_values_match_in_place_steps() -> None:
    x, y = _blobs(50)
    runs = []
    for keep in (True, False):
        model = _model()
        arrays = [p.data for p in model.parameters()]
        opt = nn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        if keep:
            nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=3, batch_size=7)
            assert all(p.data is a for p, a in zip(model.parameters(), arrays, strict=True))
        else:  # the same epochs by hand, every step in place
            loss = nn.CrossEntropyLoss()
            for epoch in range(3):
                for xb, yb in nn.data.batches(x, y, 7, rng=np.random.default_rng([0, epoch])):
                    out, caches = model.forward(xb, train=True, rng=np.random.default_rng([0, epoch, 1]))
                    _, lc = loss.forward(out, yb)
                    opt.zero_grad()
                    model.backward(caches, loss.vjp(lc))
                    opt.step()
        runs.append([p.data.copy() for p in model.parameters()])
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_fit_gives_back_the_arrays_when_a_callback_raises() -> None:
    x, y = _blobs(40)
    model = _model()
    arrays = [p.data for p in model.parameters()]

    def boom(step: int, logs: dict, tape: object) -> None:  # type: ignore[type-arg]
        if step == 2:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), train=(x, y), epochs=1,
               batch_size=4, callbacks=[cbs.LambdaCallback(on_batch_end=boom)])
    assert all(p.data is a for p, a in zip(model.parameters(), arrays, strict=True))


def test_a_first_loss_that_is_not_finite_leaves_the_weights_as_they_were() -> None:
    x, y = _blobs(40)
    model = _model()
    model[2].weight.data[...] = 3e38  # type: ignore[attr-defined]  # finite, but the outputs overflow
    start = {k: v.copy() for k, v in model.state_dict().items()}
    h = nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), train=(x, y), epochs=2)
    assert len(h) == 0 and "at epoch 0, batch 0" in (h.stop_reason or "")
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, start[k])


def test_verbose_prints_a_row_per_epoch_and_why_training_stopped(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _blobs(40)
    model = _model()
    h = nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=1e-9), train=(x, y), epochs=10,
               tol_loss=1e-3, shuffle=False, batch_size=None, verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["epoch", "loss", "accuracy", "val_loss", "val_error", "lr", "seconds"]
    assert [row.split()[0] for row in lines[1:3]] == ["0", "1"]
    assert lines[1].split()[3:5] == ["-", "-"]  # no validation data
    assert lines[3] == f"stopped: {h.stop_reason}" and len(lines) == 4


def test_the_callbacks_fit_adds_run_after_the_users_and_are_not_theirs() -> None:
    x, y = _blobs(40)
    model = _model()
    seen: list[Any] = []

    class Stop(cbs.Callback):
        def on_train_begin(self, logs: dict[str, Any]) -> None:
            seen.append(list(self.context.callbacks))

        def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
            self.context.stop("mine")

    mine = Stop()
    h = nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=1e-9), train=(x, y), epochs=10,
               tol_weights=1e3, tol_loss=1e3, callbacks=[mine])
    assert h.stop_reason == "mine" and len(h) == 1  # the user's reason comes first
    assert seen == [[mine]]  # the checkpointed callbacks are the user's only


def test_truncated_bptt_sets_every_recurrent_layer_and_restores_each() -> None:
    from nablanet.layers.recurrent import recurrent_layers, truncated_bptt

    gru, lstm = nn.GRU(2, 3, bptt_truncate=4), nn.LSTM(3, 3)
    model = nn.Sequential(nn.Sequential(gru), nn.Sequential(nn.Sequential(lstm)), nn.LastStep())
    assert recurrent_layers(model) == [gru, lstm] and recurrent_layers(lstm) == [lstm]
    with truncated_bptt(model, 2):
        assert (gru.bptt_truncate, lstm.bptt_truncate) == (2, 2)
    assert (gru.bptt_truncate, lstm.bptt_truncate) == (4, None)
    with pytest.raises(RuntimeError, match="inside"), truncated_bptt(model, 1):
        raise RuntimeError("inside")
    assert (gru.bptt_truncate, lstm.bptt_truncate) == (4, None)
    with pytest.raises(ValueError, match="positive int"), truncated_bptt(model, 0):
        pass
    assert (gru.bptt_truncate, lstm.bptt_truncate) == (4, None)
    with pytest.raises(ValueError, match=r"^truncated_bptt\(bptt_truncate=3\): the model has no recurrent layer"):
        truncated_bptt(nn.Sequential(nn.Linear(2, 2)), 3)


def test_stopping_rules_on_weight_step_and_loss_change() -> None:
    x, y = _blobs(40)
    model = _model()
    h = nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=1e-9), train=(x, y), epochs=10,
               tol_weights=1e-3)
    assert len(h) == 1 and "tol_weights" in (h.stop_reason or "")
    model = _model()
    h = nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=1e-9), train=(x, y), epochs=10,
               tol_loss=1e-3, shuffle=False, batch_size=None)
    assert len(h) == 2 and "tol_loss" in (h.stop_reason or "")


def test_csv_logger_writes_one_row_per_epoch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    x, y = _blobs(40)
    model = _model()
    path = tmp_path / "log" / "history.csv"
    nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), train=(x, y), epochs=3,
           validation=(x, y), callbacks=[cbs.CSVLogger(path)])
    rows = list(csv.DictReader(path.open()))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"] and "val_error" in rows[0]


def test_model_checkpoint_saves_best_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    x, y = _blobs(60)
    model = _model()
    cb = cbs.ModelCheckpoint(tmp_path / "m-{epoch}.npz", monitor="val_loss", save_best_only=True)
    nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), train=(x, y),
           validation=(x, y), epochs=4, callbacks=[cb])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "m-0.npz" in files and all(f.startswith("m-") for f in files)
    assert nn.load_checkpoint(tmp_path / files[-1]).extra["epoch"] >= 0


def test_history_to_pandas() -> None:
    pytest.importorskip("pandas")
    x, y = _blobs(30)
    model = _model()
    h = nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), train=(x, y), epochs=2)
    df = h.to_pandas()
    assert list(df["epoch"]) == [0, 1]


def test_fit_rejects_bad_data() -> None:
    model = _model()
    opt = nn.optim.SGD(model.parameters(), lr=0.1)
    x, y = _blobs(10)
    with pytest.raises(ValueError, match="x has 10 samples but y has 9"):
        nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y[:9]))
    bad = x.copy()
    bad[3, 1] = math.nan
    with pytest.raises(ValueError, match=r"train x contains 1 NaN/inf"):
        nn.fit(model, nn.CrossEntropyLoss(), opt, train=(bad, y))
    with pytest.raises(ValueError, match=r"validation_split=1\.5"):
        nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), validation_split=1.5)
    with pytest.raises(ValueError, match="batch_size=0"):
        nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), batch_size=0)


# -- reference results (accuracy, not time) ---------------------------------------------------------
def _mlp(sizes: list[int], seed: int = 0) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    layers: list[nn.Layer] = []
    for a, b in itertools.pairwise(sizes[:-1]):
        layers += [nn.Linear(a, b, rng=rng), nn.ReLU()]
    layers.append(nn.Linear(sizes[-2], sizes[-1], rng=rng))
    return nn.Sequential(*layers)


def test_digits_mlp_reaches_97_percent() -> None:
    pytest.importorskip("sklearn")
    d = nn.data.load_digits(seed=0)
    model = _mlp([64, 128, 10])
    opt = nn.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    nn.fit(model, nn.CrossEntropyLoss(), opt, train=d.train, validation=d.validation, epochs=100, seed=0)
    assert nn.evaluate(model, nn.CrossEntropyLoss(), *d.test)["accuracy"] >= 0.97


@pytest.fixture(scope="module")
def mnist1d(tmp_path_factory: pytest.TempPathFactory) -> nn.data.Splits:
    pytest.importorskip("mnist1d")
    return nn.data.load_mnist1d(seed=0, cache_dir=tmp_path_factory.mktemp("cache"))


def test_mnist1d_logistic_regression_about_32_percent(mnist1d: nn.data.Splits) -> None:
    model = _mlp([40, 10])
    opt = nn.optim.Adam(model.parameters(), lr=1e-2)
    nn.fit(model, nn.CrossEntropyLoss(), opt, train=mnist1d.train, epochs=60, batch_size=100, seed=0)
    acc = nn.evaluate(model, nn.CrossEntropyLoss(), *mnist1d.test)["accuracy"]
    assert 0.27 <= acc <= 0.37  # the paper: 32%


def test_mnist1d_mlp_reaches_60_percent(mnist1d: nn.data.Splits) -> None:
    model = _mlp([40, 100, 100, 10])
    opt = nn.optim.Adam(model.parameters(), lr=1e-2)
    nn.fit(model, nn.CrossEntropyLoss(), opt, train=mnist1d.train, epochs=170, batch_size=100, seed=0)
    assert nn.evaluate(model, nn.CrossEntropyLoss(), *mnist1d.test)["accuracy"] >= 0.60  # the paper: 68%


# -- resuming from an epoch boundary, bit for bit ------------------------------------------------------

def _resume_callbacks(tmp: Any, tag: str) -> list[cbs.Callback]:
    return [
        cbs.ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5, min_delta=0.02),
        cbs.EarlyStopping(monitor="val_loss", patience=3, min_delta=0.01, restore_best_weights=True),
        cbs.CSVLogger(tmp / f"{tag}.csv"),
        cbs.ModelCheckpoint(tmp / f"{tag}-best.npz", monitor="val_loss", save_best_only=True),
    ]


def _resume_fit(model: nn.Sequential, opt: Any, callbacks: list[cbs.Callback], **kwargs: Any) -> nn.History:
    x, y = _blobs(96)
    return nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), validation_split=0.25, batch_size=16, seed=3,
                  callbacks=callbacks, **kwargs)


_OPTIMIZERS = {
    "sgd_momentum": lambda m: nn.optim.SGD(m.parameters(), lr=0.3, momentum=0.9),
    "adam": lambda m: nn.optim.Adam(m.parameters(), lr=0.05),
}


def _without_seconds(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def _csv_rows(path: Any) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


class _Snapshot(cbs.Callback):
    """Keeps what resuming needs at the boundary after epoch ``epoch``, in memory or in a file.

    At that point the run has not ended: EarlyStopping(restore_best_weights=True) has not put its
    best weights back yet, which it does when a run ends."""

    def __init__(self, epoch: int, path: Any = None) -> None:
        self.epoch, self.path = epoch, path
        self.saved: tuple[Any, ...] = ()

    def on_epoch_complete(self, epoch: int, logs: dict[str, Any]) -> None:
        if epoch != self.epoch:
            return
        c = self.context
        if self.path is not None:
            nn.save(c.model, self.path, optimizer=c.optimizer, callbacks=c.callbacks, history=c.history)
        else:
            self.saved = (copy.deepcopy(c.model.state_dict()), copy.deepcopy(c.optimizer.state_dict()),
                          copy.deepcopy([cb.state_dict() for cb in c.callbacks]), c.history.to_records(),
                          c.history.stop_reason)


@pytest.mark.parametrize("via", ["memory", "file"])
@pytest.mark.parametrize("opt_name", sorted(_OPTIMIZERS))
def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path, opt_name: str, via: str) -> None:  # type: ignore[no-untyped-def]
    make_opt, n_epochs, k = _OPTIMIZERS[opt_name], 12, 4
    model = _model()
    opt = make_opt(model)
    full = _resume_fit(model, opt, [*_resume_callbacks(tmp_path, "full"), cbs.Callback()], epochs=n_epochs)
    assert len(set(full["lr"])) > 1  # ReduceLROnPlateau acted, so its state and lr_scale matter
    assert full.records[-1]["epoch"] > k  # EarlyStopping did not end the run before the resume point

    first = _model()
    snapshot = _Snapshot(k - 1, None if via == "memory" else tmp_path / "resume.npz")
    _resume_fit(first, make_opt(first), [*_resume_callbacks(tmp_path, "part"), snapshot], epochs=k)
    del first
    if via == "memory":
        weights, opt_state, states, records, stop_reason = snapshot.saved
        second = _model(seed=99)
        second.load_state_dict(weights)
        history = nn.History.from_records(records, stop_reason=stop_reason)
    else:
        ck = nn.load_checkpoint(tmp_path / "resume.npz")
        second, opt_state, states, history = ck.model, ck.optimizer_state, ck.callback_states, ck.history
        assert states is not None and history is not None
    assert [r["epoch"] for r in history.records] == list(range(k))
    opt2 = make_opt(second)
    opt2.load_state_dict(opt_state)
    callbacks2 = [*_resume_callbacks(tmp_path, "part"), cbs.Callback()]
    for cb, state in zip(callbacks2, states, strict=True):
        cb.load_state_dict(state)
    resumed = _resume_fit(second, opt2, callbacks2, epochs=n_epochs - k, initial_epoch=k, history=history)

    assert _without_seconds(resumed.to_records()) == _without_seconds(full.to_records())
    assert resumed.stop_reason == full.stop_reason
    for name, value in model.state_dict().items():
        assert np.array_equal(second.state_dict()[name], value), name
    assert _csv_rows(tmp_path / "part.csv") == _csv_rows(tmp_path / "full.csv")  # every epoch, once
    best_full, best_part = (nn.load(tmp_path / f"{t}-best.npz").state_dict() for t in ("full", "part"))
    for name, value in best_full.items():
        assert np.array_equal(best_part[name], value), name


def test_early_stopping_resumes_its_count_and_best_weights(tmp_path) -> None:  # type: ignore[no-untyped-def]
    def stopper() -> cbs.EarlyStopping:
        return cbs.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)

    # after epoch 3 the lr jumps, so the validation loss gets worse and training stops
    def jump(opt: Any) -> cbs.LambdaCallback:
        return cbs.LambdaCallback(on_epoch_end=lambda e, logs: setattr(opt, "lr", 20.0) if e == 3 else None)

    model = _model()
    opt = nn.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    full = _resume_fit(model, opt, [jump(opt), stopper(), cbs.Callback()], epochs=30)
    assert "early stopping" in (full.stop_reason or "") and len(full) < 30
    stop_epoch = len(full) - 1

    first = _model()
    opt1 = nn.optim.SGD(first.parameters(), lr=0.3, momentum=0.9)
    es1 = stopper()
    # saved one epoch short of the stop, with the count at 1 and the best weights held
    _resume_fit(first, opt1, [jump(opt1), es1, _Snapshot(stop_epoch - 1, tmp_path / "ck.npz")], epochs=stop_epoch)
    ck = nn.load_checkpoint(tmp_path / "ck.npz")
    assert ck.callback_states is not None and ck.callback_states[0] == {}
    assert ck.callback_states[1]["wait"] == 1 and ck.callback_states[1]["best_weights"] is not None
    opt2 = nn.optim.SGD(ck.model.parameters(), lr=0.3, momentum=0.9)
    opt2.load_state_dict(ck.optimizer_state)  # type: ignore[arg-type]
    callbacks2 = [jump(opt2), stopper(), cbs.Callback()]
    for cb, state in zip(callbacks2, ck.callback_states, strict=True):
        cb.load_state_dict(state)
    resumed = _resume_fit(ck.model, opt2, callbacks2, epochs=30 - stop_epoch, initial_epoch=stop_epoch,
                          history=ck.history)
    assert resumed.stop_reason == full.stop_reason and len(resumed) == len(full)
    for name, value in model.state_dict().items():  # the best epoch's weights, restored at the end
        assert np.array_equal(ck.model.state_dict()[name], value), name


def test_model_checkpoint_with_training_state_is_a_point_to_resume_from(tmp_path) -> None:  # type: ignore[no-untyped-def]
    def callbacks() -> list[cbs.Callback]:
        return [cbs.ModelCheckpoint(tmp_path / "ck-{epoch}.npz", save_training_state=True),
                cbs.ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5, min_delta=0.02),
                cbs.EarlyStopping(monitor="val_loss", patience=50)]

    model = _model()
    opt = nn.optim.Adam(model.parameters(), lr=0.05)
    full = _resume_fit(model, opt, callbacks(), epochs=8)
    ck = nn.load_checkpoint(tmp_path / "ck-3.npz")
    assert ck.extra == {"epoch": 3, "next_epoch": 4}
    assert ck.history is not None and [r["epoch"] for r in ck.history.records] == [0, 1, 2, 3]
    assert ck.callback_states is not None and ck.callback_states[2]["best"] is not None
    opt2 = nn.optim.Adam(ck.model.parameters(), lr=0.05)
    opt2.load_state_dict(ck.optimizer_state)  # type: ignore[arg-type]
    callbacks2 = callbacks()
    for cb, state in zip(callbacks2, ck.callback_states, strict=True):
        cb.load_state_dict(state)
    resumed = _resume_fit(ck.model, opt2, callbacks2, epochs=4, initial_epoch=ck.extra["next_epoch"],
                          history=ck.history)
    assert _without_seconds(resumed.to_records()) == _without_seconds(full.to_records())
    for name, value in model.state_dict().items():
        assert np.array_equal(ck.model.state_dict()[name], value), name


def test_fit_continues_a_history_only_from_the_epoch_after_its_last() -> None:
    x, y = _blobs(40)
    model = _model()
    opt = nn.optim.SGD(model.parameters(), lr=0.1)
    h = nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=2, tol_loss=1e-12)
    more = nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=1, initial_epoch=2, history=h)
    assert [r["epoch"] for r in more.records] == [0, 1, 2] and len(h) == 2  # the argument is not changed
    with pytest.raises(ValueError, match=r"initial_epoch=1\): the history ends with epoch 2, so the run it continues "
                                         r"goes on at epoch 3; pass that as initial_epoch"):
        nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), epochs=1, initial_epoch=1, history=more)
    with pytest.raises(TypeError, match=r"fit\(history=...\) received a list; expected the History"):
        nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), initial_epoch=3, history=more.to_records())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"initial_epoch=-1: expected an int >= 0"):
        nn.fit(model, nn.CrossEntropyLoss(), opt, train=(x, y), initial_epoch=-1)


def test_history_from_records_round_trip_and_refusals() -> None:
    h = nn.History([{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}], "early stopping: ...")
    back = nn.History.from_records(h.to_records(), stop_reason=h.stop_reason)
    assert back == h and not back.interrupted
    cut = nn.History.from_records([], stop_reason="interrupted", interrupted_at={"epoch": 0, "batch": 3, "batches": 9})
    assert cut.interrupted and cut.interrupted_at == {"epoch": 0, "batch": 3, "batches": 9}
    with pytest.raises(ValueError, match=r"record 1 has epoch='1'; expected a dict with an int 'epoch'"):
        nn.History.from_records([{"epoch": 0}, {"epoch": "1"}])
    with pytest.raises(TypeError, match=r"received a dict; expected a list of dicts"):
        nn.History.from_records({"epoch": [0, 1]})  # type: ignore[arg-type]


def test_callback_states_are_plain_and_refuse_another_callbacks_state() -> None:
    x, y = _blobs(60)
    model = _model()
    es = cbs.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)
    plateau = cbs.ReduceLROnPlateau(monitor="val_loss", patience=1)
    nn.fit(model, nn.CrossEntropyLoss(), nn.optim.SGD(model.parameters(), lr=0.1), train=(x, y), validation=(x, y),
           epochs=3, callbacks=[es, plateau])
    state = es.state_dict()
    assert set(state) == {"monitor", "best", "wait", "best_epoch", "best_weights"}
    assert isinstance(state["best"], float) and set(state["best_weights"]) == set(model.state_dict())
    assert cbs.ReduceLROnPlateau().state_dict() == {"monitor": "val_loss", "best": None, "wait": 0,
                                                    "cooldown_left": 0}
    assert cbs.TerminateOnNaN().state_dict() == {} and cbs.ProgressBar().state_dict() == {}
    with pytest.raises(ValueError, match=r"EarlyStopping.load_state_dict received keys \['best', 'cooldown_left', "
                                         r"'monitor', 'wait'\]; expected \['best', 'best_epoch', 'best_weights'"):
        cbs.EarlyStopping().load_state_dict(plateau.state_dict())
    with pytest.raises(ValueError, match=r"saved by a callback monitoring 'val_loss', this one monitors 'loss'"):
        cbs.ReduceLROnPlateau(monitor="loss").load_state_dict(plateau.state_dict())
    with pytest.raises(ValueError, match=r"TerminateOnNaN.load_state_dict received keys \['rows'\]; expected \[\]"):
        cbs.TerminateOnNaN().load_state_dict({"rows": []})
    with pytest.raises(TypeError, match=r"CSVLogger.load_state_dict received a list; expected the dict"):
        cbs.CSVLogger("h.csv").load_state_dict([])  # type: ignore[arg-type]
