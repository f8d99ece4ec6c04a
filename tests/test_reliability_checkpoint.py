"""Checkpoints and resume (issue 7, part 4).

``fit(..., checkpoint=PATH, checkpoint_every=N)`` writes, atomically, the
parameters, the optimizer state, the shuffle generator's state, the counters,
the fit options and the history; ``fit(..., resume=PATH)`` continues the run.

* In-process: resuming gives parameters and history BIT-IDENTICAL to the
  uninterrupted run, on every backend, both dtypes and both fit paths; bad
  checkpoint files (truncated, bit-flipped, wrong format or version, edited
  arrays, other model/data/options) are refused with FastnnValueError.
* Subprocesses killed with SIGKILL: in the middle of training, just before the
  rename of a checkpoint write (test-only hook), and at random moments over
  several restarts.  The checkpoint on disk is always complete and loadable,
  and the resumed run ends bit for bit where the uninterrupted one does.
"""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import checkpoint as ckpt
from fastnn_suite import BACKEND_PARAMS

import _faults

CPU = [p for p in BACKEND_PARAMS if p.values[0] != "cuda"]
DT = [pytest.param("float32", id="float32"), pytest.param("float64", id="float64")]
PATHS = [pytest.param(None, "sgd", id="whole-loop"), pytest.param(16, "adam", id="minibatch-adam"),
         pytest.param(16, "momentum", id="minibatch-momentum"), pytest.param(None, "adam", id="full-batch-adam")]

#: Builds (X, Y, model) from a config; run by the tests and, as source, by the child processes.
SETUP = r'''
import numpy as np
import fastnn

def setup(cfg):
    rng = np.random.default_rng(cfg["data_seed"])
    X = rng.standard_normal((cfg["dims"][0], cfg["m"])).astype(cfg["dtype"])
    Y = rng.integers(0, cfg["dims"][-1], cfg["m"])
    model = fastnn.Model(cfg["dims"], "tanh", "softmax", dtype=cfg["dtype"], seed=cfg["seed"])
    fit = {k: cfg[k] for k in ("epochs", "batch_size", "optimizer", "lr", "shuffle_seed", "backend")}
    fit["progress"] = False
    return X, Y, model, fit
'''

CHILD = _faults.INSTALL + SETUP + r'''
import json, os, sys, time
cfg = json.loads(sys.argv[1])
X, Y, model, fit = setup(cfg)
path = cfg["ckpt"]
resume = path if os.path.exists(path) else None
callback = (lambda e, m, h: time.sleep(cfg["sleep"])) if cfg["sleep"] else None
model.fit(X, Y, checkpoint=path, checkpoint_every=cfg["every"], resume=resume, callback=callback, **fit)
np.savez(cfg["out"], **model.params)
print("DONE", flush=True)
'''

_ns = {}
exec(SETUP, _ns)
setup = _ns["setup"]


def config(tmp_path, backend="numpy", dtype="float64", batch_size=16, optimizer="adam", epochs=8, **kw):
    cfg = {"data_seed": 1, "dims": [5, 7, 3], "m": 60, "dtype": dtype, "seed": 2, "epochs": epochs,
           "batch_size": batch_size, "optimizer": optimizer, "lr": 0.05, "shuffle_seed": 3,
           "backend": backend, "ckpt": str(tmp_path / "run.ckpt.npz"), "out": str(tmp_path / "out.npz"),
           "every": 1, "sleep": 0.0}
    cfg.update(kw)
    return cfg


def uninterrupted(cfg):
    X, Y, model, fit = setup(cfg)
    history = model.fit(X, Y, **fit)
    return model.params, history


def assert_same_params(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


class Stop(Exception):
    pass


# ------------------------------------------------------------ in-process resume


@pytest.mark.parametrize("backend", CPU)
@pytest.mark.parametrize("dtype", DT)
@pytest.mark.parametrize("batch_size, optimizer", PATHS)
def test_resume_is_bit_identical(tmp_path, backend, dtype, batch_size, optimizer):
    cfg = config(tmp_path, backend, dtype, batch_size, optimizer, epochs=7)
    ref_params, ref_history = uninterrupted(cfg)
    # Interrupt at epoch 5 with checkpoints every 2 epochs: the file holds epoch 4.
    X, Y, model, fit = setup(cfg)

    def stop_at_5(epoch, model, history):
        if epoch == 5:
            raise Stop

    with pytest.raises(Stop):
        model.fit(X, Y, checkpoint=cfg["ckpt"], checkpoint_every=2, callback=stop_at_5, **fit)
    assert ckpt.read_checkpoint(cfg["ckpt"])[0]["state"]["epoch"] == 4
    X, Y, fresh, fit = setup(dict(cfg, seed=99))  # other initial weights: all come from the file
    history = fresh.fit(X, Y, resume=cfg["ckpt"], checkpoint=cfg["ckpt"], checkpoint_every=2, **fit)
    assert_same_params(fresh.params, ref_params)
    assert history.cost == ref_history.cost and len(history.time) == 7
    meta, _ = ckpt.read_checkpoint(cfg["ckpt"])
    assert meta["state"]["epoch"] == 7  # the last epoch is always written


def test_checkpoint_contents(tmp_path):
    cfg = config(tmp_path, epochs=3, optimizer="adam")
    X, Y, model, fit = setup(cfg)
    model.fit(X, Y, checkpoint=cfg["ckpt"], **fit)
    meta, arrays = ckpt.read_checkpoint(cfg["ckpt"])
    assert meta["format"] == ckpt.FORMAT and meta["format_version"] == ckpt.VERSION
    assert meta["model"] == {"layer_dims": [5, 7, 3], "hidden": "tanh", "output": "softmax", "dtype": "float64"}
    assert meta["state"]["epoch"] == 3 and meta["state"]["steps"] == 3 * 4
    assert meta["state"]["optimizer_t"] == 12 and meta["state"]["optimizer_slots"] == ["m", "v"]
    assert meta["state"]["rng"]["bit_generator"] == "PCG64"
    assert meta["fit"]["optimizer_options"] == {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    assert len(meta["history"]["cost"]) == 3
    assert sorted(arrays) == sorted(["W1", "b1", "W2", "b2"] + [f"opt.{s}.{i}" for s in "mv" for i in range(4)])
    for k, v in model.params.items():
        np.testing.assert_array_equal(arrays[k], v)
    # the shuffle generator continues exactly where the run's left off
    rng = np.random.default_rng(3)
    for _ in range(3):
        rng.permutation(60)
    assert ckpt.rng_from_state(meta["state"]["rng"]).bit_generator.state == rng.bit_generator.state
    loaded = fastnn.Model.from_checkpoint(cfg["ckpt"])
    assert_same_params(loaded.params, model.params)
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]


def test_resume_other_generators_and_skip_mode_state(tmp_path):
    """A Generator with another bit generator (MT19937, whose state holds an array) and a
    skip-mode run whose lr was halved: both resume bit for bit."""
    rng_x = np.random.default_rng(3)
    X = rng_x.standard_normal((2, 32)).astype(np.float32)
    Y = (X.sum(axis=0, keepdims=True) * 0.5).astype(np.float32)
    X[0, 5] = 1e20  # an outlier: its minibatch is skipped every epoch, lr halves

    def run(epochs, **kw):
        model = fastnn.Model([2, 1], "relu", "identity", dtype=np.float32, seed=0)
        gen = np.random.Generator(np.random.MT19937(7))
        h = model.fit(X, Y, lr=0.1, epochs=epochs, batch_size=8, backend="numpy", shuffle_seed=gen,
                      progress=False, on_divergence="skip", **kw)
        return model, h

    ref, ref_h = run(5)
    path = tmp_path / "skip"
    run(2, checkpoint=path)
    model, h = run(5, resume=path)
    assert_same_params(model.params, ref.params)
    assert h.lr_changes == ref_h.lr_changes and len(h.lr_changes) == 5
    assert h.cost == ref_h.cost


def test_resume_details(tmp_path):
    cfg = config(tmp_path, backend="numba" if fastnn.available_backends()["numba"] else "numpy",
                 epochs=4)
    X, Y, model, fit = setup(cfg)
    model.fit(X, Y, checkpoint=cfg["ckpt"][:-4], **fit)  # ".npz" appended, as np.savez does
    assert os.path.exists(cfg["ckpt"])
    # nothing left to do: the checkpoint's params and history come back as they are
    X, Y, again, fit = setup(cfg)
    h = again.fit(X, Y, resume=cfg["ckpt"][:-4], **fit)
    assert_same_params(again.params, model.params) and len(h.cost) == 4
    # backend=None: the one the checkpoint was written on; a longer run continues it
    X, Y, longer, fit = setup(cfg)
    h = longer.fit(X, Y, resume=cfg["ckpt"], **dict(fit, backend=None, epochs=6))
    assert h.backend == cfg["backend"] and len(h.cost) == 6
    ref, _ = uninterrupted(dict(cfg, epochs=6))
    assert_same_params(longer.params, ref)
    # a stale temporary file of a killed writer is removed (one named after a
    # process of this host that has ended; an unknown one older than STALE_AGE)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".run.ckpt.npz.tmp-{dead}-{ckpt._host_tag()}-{'0' * 16}.npz"
    stale.write_bytes(b"half a checkpoint")
    old = tmp_path / ".run.ckpt.npz.tmp-unknown.npz"
    old.write_bytes(b"half a checkpoint")
    os.utime(old, (time.time() - ckpt.STALE_AGE - 10,) * 2)
    X, Y, m2, fit = setup(cfg)
    m2.fit(X, Y, resume=cfg["ckpt"], **fit)
    assert not stale.exists() and not old.exists()
    with pytest.raises(FileNotFoundError):
        m2.fit(X, Y, resume=tmp_path / "missing", **fit)


# ------------------------------------------------------- refused checkpoint files


def _rewrite(path, edit):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["__meta__"]))
    arrays, meta = edit(arrays, meta)
    if meta is not None:
        arrays["__meta__"] = np.array(json.dumps(meta))
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _meta_edit(f):
    def edit(arrays, meta):
        f(meta)
        return arrays, meta
    return edit


def _flip(data, where):
    i = int(len(data) * where)
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]


BAD_BYTES = {
    "empty": lambda d: b"",
    "truncated-10": lambda d: d[:len(d) // 10],
    "truncated-half": lambda d: d[:len(d) // 2],
    "truncated-last-byte": lambda d: d[:-1],
    "bit-flip-25": lambda d: _flip(d, 0.25),
    "bit-flip-50": lambda d: _flip(d, 0.5),
    "bit-flip-75": lambda d: _flip(d, 0.75),
    "garbage": lambda d: b"\x00garbage" * 50,
    "npy-not-npz": lambda d: b"\x93NUMPY" + d[6:200],
}

BAD_EDITS = {
    "wrong-format": _meta_edit(lambda m: m.update(format="fastnn.Model")),
    "wrong-version": _meta_edit(lambda m: m.update(format_version=99)),
    "no-meta": lambda a, m: ({k: v for k, v in a.items() if k != "__meta__"}, None),
    "meta-not-json": lambda a, m: ({**a, "__meta__": np.array("{not json")}, None),
    "meta-a-list": lambda a, m: ({**a, "__meta__": np.array("[1, 2]")}, None),
    "W-shape": lambda a, m: ({**a, "W1": np.zeros((7, 6))}, m),
    "W-dtype": lambda a, m: ({**a, "W1": a["W1"].astype(np.float32)}, m),
    "W-nan": lambda a, m: ({**a, "W1": np.full_like(a["W1"], np.nan)}, m),
    "opt-slot-shape": lambda a, m: ({**a, "opt.m.0": np.zeros(3)}, m),
    "opt-slot-missing": lambda a, m: ({k: v for k, v in a.items() if k != "opt.v.3"}, m),
    "extra-array": lambda a, m: ({**a, "W3": np.zeros((1, 1))}, m),
    "other-model": _meta_edit(lambda m: m["model"].update(layer_dims=[5, 8, 3])),
    "other-hidden": _meta_edit(lambda m: m["model"].update(hidden="relu")),
    "other-data": _meta_edit(lambda m: m["data"]["X"].__setitem__(2, 12345)),
    "other-lr": _meta_edit(lambda m: m["fit"].update(lr=0.5)),
    "other-batch-size": _meta_edit(lambda m: m["fit"].update(batch_size=8)),
    "other-optimizer": _meta_edit(lambda m: m["fit"].update(optimizer="momentum")),
    "epoch-negative": _meta_edit(lambda m: m["state"].update(epoch=-1)),
    "epoch-a-string": _meta_edit(lambda m: m["state"].update(epoch="2")),
    "history-too-short": _meta_edit(lambda m: m["history"].update(cost=[1.0])),
    "lr-zero": _meta_edit(lambda m: m["state"].update(lr=0.0)),
    "rng-garbage": _meta_edit(lambda m: m["state"].update(rng={"bit_generator": "os", "state": 1})),
    "rng-bad-state": _meta_edit(lambda m: m["state"]["rng"].update(state={"state": "x", "inc": 1})),
    "no-state": _meta_edit(lambda m: m.pop("state")),
}


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ckpt")
    cfg = config(tmp, epochs=2, optimizer="adam")
    X, Y, model, fit = setup(cfg)
    model.fit(X, Y, checkpoint=cfg["ckpt"], **fit)
    return cfg, Path(cfg["ckpt"]).read_bytes()


@pytest.mark.parametrize("name", sorted(BAD_BYTES) + sorted(BAD_EDITS))
def test_bad_checkpoints_are_refused(tmp_path, good_checkpoint, name):
    cfg, data = good_checkpoint
    path = tmp_path / "bad.npz"
    if name in BAD_BYTES:
        path.write_bytes(BAD_BYTES[name](data))
    else:
        path.write_bytes(data)
        _rewrite(path, BAD_EDITS[name])
    X, Y, model, fit = setup(dict(cfg, epochs=4))
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(fastnn.FastnnValueError, match="resume") as info:
        model.fit(X, Y, resume=path, **fit)
    assert str(path) in str(info.value) or "this call" in str(info.value) or "this model" in str(info.value)
    assert_same_params(model.params, before)  # nothing was changed
    if name in BAD_BYTES or name in ("wrong-format", "wrong-version", "no-meta", "meta-not-json",
                                     "meta-a-list", "W-shape", "W-dtype", "W-nan"):
        with pytest.raises(fastnn.FastnnValueError, match="path"):
            fastnn.Model.from_checkpoint(path)


def test_bit_flips_anywhere_are_caught(tmp_path, good_checkpoint):
    """Every 97th byte flipped in turn: each file is refused (CRC-32 of every member,
    JSON and field checks) or, where the flip hit bytes nothing reads (zip padding,
    header comments), resumes to exactly the uncorrupted result."""
    cfg, data = good_checkpoint
    X, Y, model, fit = setup(dict(cfg, epochs=3))
    model.fit(X, Y, resume=cfg["ckpt"], **fit)
    good = model.params
    path = tmp_path / "flip.npz"
    refused = 0
    for i in range(0, len(data), 97):
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1:])
        X, Y, model, fit = setup(dict(cfg, epochs=3))
        try:
            model.fit(X, Y, resume=path, **fit)
        except fastnn.FastnnValueError:
            refused += 1
            continue
        assert_same_params(model.params, good)
    # the rest hit bytes no reader uses (zip timestamps, version-made-by, ...)
    assert refused >= 0.8 * len(range(0, len(data), 97))


# ------------------------------------------------------------------ SIGKILL


def _child(cfg, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _checkpoint_epoch(path):
    """The epoch of the checkpoint on disk; it must always be complete and loadable."""
    if not os.path.exists(path):
        return 0
    meta, arrays = ckpt.read_checkpoint(path)
    model = fastnn.Model.from_checkpoint(path)
    assert all(np.isfinite(v).all() for v in model.params.values())
    assert len(meta["history"]["cost"]) == meta["state"]["epoch"]
    return meta["state"]["epoch"]


def _kill_when(proc, path, min_epoch, delay=0.0, timeout=120):
    """SIGKILL the child ``delay`` seconds after its checkpoint reached ``min_epoch``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"child ended early: {proc.communicate()}")
        if _checkpoint_epoch(path) >= min_epoch:
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.communicate()  # reaps the child and closes its pipes
            return
        time.sleep(0.02)
    proc.kill()
    proc.communicate()
    raise AssertionError("child made no progress")


def _finish(cfg):
    proc = _child(cfg)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0 and "DONE" in out, err
    with np.load(cfg["out"]) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("backend, batch_size, optimizer", [
    pytest.param("numba", 16, "adam", id="numba-minibatch-adam"),
    pytest.param("numpy", None, "sgd", id="numpy-whole-loop")])
def test_sigkill_mid_training_then_resume(tmp_path, backend, batch_size, optimizer):
    cfg = config(tmp_path, backend, "float32", batch_size, optimizer, epochs=40, sleep=0.02)
    proc = _child(cfg)
    _kill_when(proc, cfg["ckpt"], 3)
    assert proc.returncode == -signal.SIGKILL
    killed_at = _checkpoint_epoch(cfg["ckpt"])
    assert 3 <= killed_at < 40
    params = _finish(dict(cfg, sleep=0.0))  # resumes from the checkpoint, in a new process
    ref, ref_h = uninterrupted(cfg)
    assert_same_params(params, ref)
    assert ckpt.read_checkpoint(cfg["ckpt"])[0]["history"]["cost"] == ref_h.cost


def test_sigkill_during_a_checkpoint_write(tmp_path):
    """The fault hook (tests/_faults.py) kills the child after its 3rd checkpoint is written to the
    temporary file and fsynced, just before the rename: the checkpoint on disk is the
    2nd, complete; the resumed run is bit-identical; the stale temp file is cleaned up."""
    cfg = config(tmp_path, "numba" if fastnn.available_backends()["numba"] else "numpy",
                 "float64", 16, "momentum", epochs=6)
    proc = _child(cfg, {_faults.KILL_AT: "3"})
    proc.communicate(timeout=240)
    assert proc.returncode == -signal.SIGKILL
    assert _checkpoint_epoch(cfg["ckpt"]) == 2
    stale = [f for f in os.listdir(tmp_path) if f.startswith(".run.ckpt.npz.tmp-")]
    assert len(stale) == 1
    with zipfile.ZipFile(tmp_path / stale[0]) as z:  # the temp file itself was complete
        assert z.testzip() is None
    params = _finish(cfg)
    assert_same_params(params, uninterrupted(cfg)[0])
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]


SAVE_CHILD = _faults.INSTALL + r'''
import sys, fastnn
model = fastnn.Model([3, 4, 1], seed=0)
model.save(sys.argv[1])
model.params["W1"] = model.params["W1"] * 2
model.save(sys.argv[1])  # killed before the rename by the hook
'''


def test_sigkill_during_model_save_keeps_the_old_file(tmp_path):
    path = str(tmp_path / "model.npz")
    env = dict(os.environ, **{_faults.KILL_AT: "2"})
    proc = subprocess.run([sys.executable, "-c", SAVE_CHILD, path], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert_same_params(fastnn.Model.load(path).params, fastnn.Model([3, 4, 1], seed=0).params)


def test_random_sigkills_over_restarts(tmp_path):
    """Start, SIGKILL at a random moment once the run has moved on, restart (resuming),
    three times; then let it finish.  Every checkpoint seen on disk is loadable, and the
    end result is bit-identical to the uninterrupted run."""
    backend = "numba-parallel" if fastnn.available_backends()["numba-parallel"] else "numpy"
    cfg = config(tmp_path, backend, "float64", 8, "adam", epochs=60, sleep=0.01)
    rng = np.random.default_rng(12345)
    epochs_seen = []
    for _ in range(3):
        proc = _child(cfg)
        start = _checkpoint_epoch(cfg["ckpt"])
        _kill_when(proc, cfg["ckpt"], start + 1, delay=float(rng.uniform(0, 0.05)))
        epochs_seen.append(_checkpoint_epoch(cfg["ckpt"]))
    assert epochs_seen == sorted(epochs_seen) and epochs_seen[-1] < 60
    params = _finish(dict(cfg, sleep=0.0))
    assert_same_params(params, uninterrupted(cfg)[0])
