"""nn.save / nn.load: npz + JSON, no pickle, atomic, resumable bit for bit."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import numpy as np
import pytest

import nablanet as nn


def _model() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(4, 8, rng=0), nn.LeakyReLU(0.2), nn.Sequential(nn.Linear(8, 8, rng=1), nn.Softplus(beta=2.0)),
        nn.Flatten(), nn.Linear(8, 3, bias=False, rng=2), nn.LogSoftmax(dim=-1),
    )


def test_round_trip_architecture_and_weights(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = _model()
    path = nn.save(model, tmp_path / "m.npz")
    loaded = nn.load(path)
    assert repr(loaded) == repr(model)
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))
    assert loaded[0].weight.dtype == np.float32
    with zipfile.ZipFile(path) as z:  # plain arrays only: no pickled entries
        assert all(name.endswith(".npy") for name in z.namelist())


def test_float64_model_keeps_dtype(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = _model().double()
    loaded = nn.load(nn.save(model, tmp_path / "m.npz"))
    assert all(p.dtype == np.float64 for p in loaded.parameters())


def test_file_with_a_pickled_object_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "evil.npz"
    meta = json.dumps({"format": "nablanet-model", "version": 1, "model": {"class": "Sequential", "layers": []}})
    evil = np.array([pickle.dumps(print)], dtype=object)  # an object array is stored with pickle
    np.savez(path, __meta__=np.frombuffer(meta.encode(), dtype=np.uint8), **{"model/x": evil})
    with pytest.raises(ValueError, match="pickled objects, which are refused"):
        nn.load(path)


def test_truncated_file_gives_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = nn.save(_model(), tmp_path / "m.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable nablanet model file"):
        nn.load(path)


def test_npz_without_meta_and_unknown_layer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a nablanet model file"):
        nn.load(tmp_path / "plain.npz")
    meta = json.dumps({"format": "nablanet-model", "version": 1, "model": {"class": "os.system", "config": {}}})
    np.savez(tmp_path / "odd.npz", __meta__=np.frombuffer(meta.encode(), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"layer class 'os\.system' that nablanet does not have"):
        nn.load(tmp_path / "odd.npz")


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = nn.save(_model(), tmp_path / "m.npz")
    before = path.read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        nn.save(nn.Sequential(nn.Linear(2, 2)), path)
    assert path.read_bytes() == before  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_resume_from_checkpoint_is_bit_identical(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 4))
    y = rng.integers(0, 3, 96)
    loss = nn.CrossEntropyLoss()

    def make_opt(model: nn.Layer) -> nn.optim.Optimizer:
        return nn.optim.SGD(model.parameters(), lr=0.05, momentum=nn.optim.schedules.sutskever_momentum(0.9, period=5))

    full = _model()
    nn.fit(full, loss, make_opt(full), train=(x, y), epochs=4, batch_size=16, seed=7)

    first = _model()
    opt = make_opt(first)
    nn.fit(first, loss, opt, train=(x, y), epochs=2, batch_size=16, seed=7)
    nn.save(first, tmp_path / "ckpt.npz", optimizer=opt, extra={"epoch": 2})

    ckpt = nn.load_checkpoint(tmp_path / "ckpt.npz")
    assert ckpt.optimizer_class == "SGD" and ckpt.extra == {"epoch": 2}
    resumed = ckpt.model
    opt2 = make_opt(resumed)
    opt2.load_state_dict(ckpt.optimizer_state)
    nn.fit(resumed, loss, opt2, train=(x, y), epochs=2, batch_size=16, seed=7, initial_epoch=2)
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=k)


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="no model file at"):
        nn.load("/nonexistent/model.npz")


def test_save_rejects_unserializable_extra(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="JSON-serializable"):
        nn.save(_model(), tmp_path / "m.npz", extra={"f": io.StringIO()})


class _Counter(nn.callbacks.Callback):
    """A callback with array and JSON state, nested, as H3a's callbacks keep it."""

    def __init__(self) -> None:
        self.best = 0.25
        self.weights = {"0.weight": np.arange(6.0).reshape(2, 3), "a/b": np.ones(2, np.float32)}
        self.seen = [1, 2, np.int64(3)]

    def state_dict(self) -> dict[str, object]:
        return {"best": self.best, "weights": self.weights, "seen": self.seen, "rng": np.random.default_rng(5)
                .bit_generator.state, "none": None}


def test_callback_states_and_history_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    history = nn.History()
    history.append({"epoch": 0, "loss": np.float32(1.5), "val_loss": float("nan")})
    history.append({"epoch": 1, "loss": 1.25, "val_loss": 1.0})
    history.stop_reason = "EarlyStopping: val_loss did not improve"
    cbs = [_Counter(), nn.callbacks.LambdaCallback()]  # the second has no state of its own
    nn.save(_model(), tmp_path / "m.npz", callbacks=cbs, history=history)
    ckpt = nn.load_checkpoint(tmp_path / "m.npz")
    assert ckpt.callback_classes == ["_Counter", "LambdaCallback"]
    assert ckpt.callback_states is not None and ckpt.callback_states[1] == {}
    state = ckpt.callback_states[0]
    assert state["best"] == 0.25 and state["seen"] == [1, 2, 3] and state["none"] is None
    np.testing.assert_array_equal(state["weights"]["0.weight"], np.arange(6.0).reshape(2, 3))
    assert state["weights"]["a/b"].dtype == np.float32
    rng = np.random.default_rng(0)
    rng.bit_generator.state = state["rng"]  # a generator's state survives exactly
    assert rng.integers(1 << 62) == np.random.default_rng(5).integers(1 << 62)
    assert isinstance(ckpt.history, nn.History) and len(ckpt.history) == 2
    assert ckpt.history.stop_reason == "EarlyStopping: val_loss did not improve"
    assert ckpt.history["loss"] == [1.5, 1.25] and np.isnan(ckpt.history["val_loss"][0])
    with zipfile.ZipFile(tmp_path / "m.npz") as z:
        assert "callbacks/0/weights/0.weight.npy" in z.namelist()


def test_checkpoint_without_callbacks_or_history(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ckpt = nn.load_checkpoint(nn.save(_model(), tmp_path / "m.npz"))
    assert ckpt.callback_states is None and ckpt.callback_classes is None and ckpt.history is None


def test_saved_file_gets_the_umask(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    old = os.umask(0o027)
    try:
        path = nn.save(_model(), tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


def test_stale_part_of_a_dead_writer_is_removed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    stale = tmp_path / f".model.npz.{int(dead.stdout)}-abcd.part"
    live = tmp_path / f".model.npz.{os.getppid()}-abcd.part"  # our parent runs: its part may be in use
    stale.write_bytes(b"half a model")
    live.write_bytes(b"being written")
    nn.save(_model(), tmp_path / "model.npz")
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "model.npz"]


@pytest.mark.parametrize(("entry", "value", "match"), [
    ("history", {"records": "x"}, "the history entry is damaged"),
    ("callbacks", {"class": "EarlyStopping"}, "the callbacks entry is damaged"),
    ("callbacks", [{"class": "C", "state": {"w": {"__array__": "callbacks/0/w"}}}], "does not hold"),
    ("optimizer", {"class": "SGD", "state_keys": {"0": ["momentum_buffer"]}}, "lacks the arrays"),
    ("extra", [1], "the extra entry is a list"),
])
def test_damaged_entries_name_the_file(tmp_path, entry, value, match) -> None:  # type: ignore[no-untyped-def]
    path = nn.save(_model(), tmp_path / "m.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    meta[entry] = value
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match) as info:
        nn.load_checkpoint(path)
    assert str(path) in str(info.value)


def test_a_save_killed_with_sigkill_leaves_the_old_file_and_the_next_save_cleans_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "model.npz"
    nn.save(_model(), path)
    old = nn.load(path).state_dict()
    # A writer that gets half-way through its .part and hangs there until it is killed.
    script = ("import sys, time, pathlib\nfrom nablanet._io import atomic_write\n"
              "def write(f):\n    f.write(b'half a model'); f.flush()\n"
              "    pathlib.Path(sys.argv[2]).touch()\n    time.sleep(600)\n"
              "atomic_write(sys.argv[1], write)\n")
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", script, str(path), str(ready)])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    parts = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert len(parts) == 1 and parts[0].name.startswith(f".model.npz.{proc.pid}-")
    assert all(np.array_equal(nn.load(path).state_dict()[k], v) for k, v in old.items())  # the old file is whole
    nn.save(_model(), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "ready"]
