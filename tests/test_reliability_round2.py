"""Reliability, second round: state a user can assign, concurrent checkpoint writers,
fork after numba-parallel, crafted files, hyperparameters that round in the
model's dtype, masked arrays, float16 at large m, and a few unclear errors.

Every class runs on every backend where it applies (``backend_name``); the
cuda parametrisations run under the simulator from
tests/cuda/test_cuda_reliability_round2.py.
"""

import contextlib
import glob
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn import FastnnTypeError, FastnnValueError
from fastnn import checkpoint as ckpt
from fastnn.backends import _interface, get_backend
from fastnn_suite import assert_close, requires_backends

import _faults

ERRORS = (FastnnValueError, FastnnTypeError)
HERE = os.path.dirname(os.path.abspath(__file__))


def _problem(dtype=np.float64, m=24, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((3, m)).astype(dtype)
    Y = (rng.random((1, m)) > 0.5).astype(dtype)
    return X, Y


@contextlib.contextmanager
def kernel_calls(backend):
    """Count the calls of every kernel of ``backend`` (the list it yields grows)."""
    bk = get_backend(backend)
    names = [n for n in _interface.KERNELS if n not in ("to_device", "to_host")]
    originals = {n: getattr(bk, n) for n in names}
    calls = []

    def wrap(name, fn):
        def counted(*args, **kwargs):
            calls.append(name)
            return fn(*args, **kwargs)
        return counted

    for n, fn in originals.items():
        setattr(bk, n, wrap(n, fn))
    try:
        yield calls
    finally:
        for n, fn in originals.items():
            setattr(bk, n, fn)


# ------------------------------------------------------------ 1. assignable state

def _set(key, value):
    return lambda m: m.params.__setitem__(key, value(m) if callable(value) else value)


#: edit of a [3, 4, 1] float64 sigmoid model -> the attribute its error must name.
STATE_EDITS = {
    "W1-shape": (_set("W1", np.zeros((4, 2))), "model.params['W1']"),
    "b1-short": (_set("b1", np.zeros((3, 1))), "model.params['b1']"),
    "b1-long": (_set("b1", np.zeros((9, 1))), "model.params['b1']"),
    "b1-1d": (_set("b1", np.zeros(4)), "model.params['b1']"),
    "W2-float32": (_set("W2", lambda m: m.params["W2"].astype(np.float32)), "model.params['W2']"),
    "all-float32": (lambda m: m.params.update({k: v.astype(np.float32) for k, v in m.params.items()}),
                    "model.dtype"),
    "b2-nan": (_set("b2", np.full((1, 1), np.nan)), "model.params['b2']"),
    "W1-inf": (_set("W1", lambda m: np.where(m.params["W1"] > 0, np.inf, m.params["W1"])),
               "model.params['W1']"),
    "W1-int": (_set("W1", np.ones((4, 3), dtype=np.int64)), "model.params['W1']"),
    "W1-object": (_set("W1", np.full((4, 3), None)), "model.params['W1']"),
    "missing-b2": (lambda m: m.params.pop("b2"), "model.params"),
    "extra-W3": (_set("W3", np.zeros((1, 1))), "model.params"),
    "params-None": (lambda m: setattr(m, "params", None), "model.params"),
    "params-list": (lambda m: setattr(m, "params", list(m.params.values())), "model.params"),
    "hidden-bogus": (lambda m: setattr(m, "hidden", "bogus"), "model.hidden"),
    "hidden-None": (lambda m: setattr(m, "hidden", None), "model.hidden"),
    "hidden-list": (lambda m: setattr(m, "hidden", ["relu"]), "model.hidden"),
    "output-tanh": (lambda m: setattr(m, "output", "tanh"), "model.output"),
    "output-softmax-1-unit": (lambda m: setattr(m, "output", "softmax"), "model.output"),
    "layer_dims-other": (lambda m: setattr(m, "layer_dims", [3, 5, 1]), "model.params['W1']"),
    "layer_dims-deeper": (lambda m: setattr(m, "layer_dims", [3, 4, 1, 1]), "model.params"),
    "layer_dims-inf": (lambda m: setattr(m, "layer_dims", [3, float("inf"), 1]), "model.layer_dims"),
    "layer_dims-str": (lambda m: setattr(m, "layer_dims", "341"), "model.layer_dims"),
    "layer_dims-zero": (lambda m: setattr(m, "layer_dims", [3, 0, 1]), "model.layer_dims"),
    "dtype-int": (lambda m: setattr(m, "dtype", np.int32), "model.dtype"),
    "dtype-str": (lambda m: setattr(m, "dtype", "float33"), "model.dtype"),
    "dtype-float32": (lambda m: setattr(m, "dtype", np.dtype(np.float32)), "model.dtype"),
}

CALLS = {
    "fit": lambda m, X, Y, bk, tmp: m.fit(X, Y, epochs=2, progress=False, backend=bk),
    "fit-minibatch": lambda m, X, Y, bk, tmp: m.fit(X, Y, epochs=2, batch_size=8, optimizer="adam",
                                                    progress=False, backend=bk),
    "predict": lambda m, X, Y, bk, tmp: m.predict(X, backend=bk),
    "predict_proba": lambda m, X, Y, bk, tmp: m.predict_proba(X, backend=bk),
    "score": lambda m, X, Y, bk, tmp: m.score(X, Y, backend=bk),
    "save": lambda m, X, Y, bk, tmp: m.save(tmp / "model.npz"),
}


def _snapshot(obj):
    if isinstance(obj, dict):
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in obj.items()}
    return obj


@pytest.mark.parametrize("edit", sorted(STATE_EDITS))
def test_edited_model_state_is_refused_before_any_kernel(backend_name, edit, tmp_path):
    """Was: a raw KeyError (hidden), a short b1 read out of bounds by the compiled bias
    kernels, training with an output that Model.load then refused."""
    X, Y = _problem()
    apply, attribute = STATE_EDITS[edit]
    for call, run in CALLS.items():
        model = fastnn.Model([3, 4, 1], "relu", "sigmoid", seed=0)
        apply(model)
        before = _snapshot(model.params)
        with kernel_calls(backend_name) as calls:
            with pytest.raises(ERRORS) as info:
                run(model, X, Y, backend_name, tmp_path)
        assert attribute in str(info.value), f"{call}: {info.value}"
        assert calls == [], f"{call}: kernels ran before the refusal: {calls}"
        assert not (tmp_path / "model.npz").exists()
        if isinstance(before, dict):
            assert model.params.keys() == before.keys()
            for k, v in before.items():
                np.testing.assert_array_equal(model.params[k], v)


def test_valid_state_edits_are_used(backend_name, tmp_path):
    """Consistent edits of the attributes are taken as a new model would take them."""
    X, Y = _problem()
    other = fastnn.Model([3, 5, 1], "tanh", "sigmoid", seed=3)
    model = fastnn.Model([3, 4, 1], "relu", "sigmoid", seed=0)
    model.layer_dims, model.hidden = (3, 5, 1), "tanh"
    model.params = {k: v.copy() for k, v in other.params.items()}
    np.testing.assert_array_equal(model.predict_proba(X, backend=backend_name),
                                  other.predict_proba(X, backend=backend_name))
    assert model.layer_dims == [3, 5, 1]  # normalised when used
    model.fit(X, Y, epochs=2, progress=False, backend=backend_name)
    other.fit(X, Y, epochs=2, progress=False, backend=backend_name)
    for k in other.params:
        np.testing.assert_array_equal(model.params[k], other.params[k])
    # dtype and params changed together
    model.dtype = "float32"
    model.params = {k: v.astype(np.float32) for k, v in model.params.items()}
    out = model.predict_proba(X.astype(np.float32), backend=backend_name)
    assert out.dtype == np.float32 and model.dtype == np.dtype(np.float32)
    loaded = fastnn.Model.load(model.save(tmp_path / "m.npz"))
    assert (loaded.layer_dims, loaded.hidden, loaded.dtype) == ([3, 5, 1], "tanh", np.dtype(np.float32))


# ------------------------------------------------------------ 2. concurrent checkpoint writers

WRITER = _faults.INSTALL + r'''
import json, sys, numpy as np, fastnn
cfg = json.loads(sys.argv[1])
rng = np.random.default_rng(1)
X = rng.standard_normal((5, 60)); Y = rng.integers(0, 3, 60)
model = fastnn.Model([5, 7, 3], "tanh", "softmax", seed=2)
model.fit(X, Y, epochs=cfg["epochs"], batch_size=16, optimizer="adam", lr=0.05, shuffle_seed=3,
          backend="numpy", progress=False, checkpoint=cfg["ckpt"], resume=cfg["resume"])
print("DONE", flush=True)
'''


def _writer(path, epochs, resume, env=None):
    cfg = {"ckpt": str(path), "epochs": epochs, "resume": str(path) if resume else None}
    return subprocess.Popen([sys.executable, "-c", WRITER, json.dumps(cfg)],
                            env=dict(os.environ, **(env or {})), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_second_process_never_deletes_a_live_writers_temporary_file(tmp_path):
    """Was: a second ``fit(resume=PATH, checkpoint=PATH)`` removed the first process's
    in-flight temporary file as stale; the first died with FileNotFoundError."""
    path = tmp_path / "run.ckpt.npz"
    first = _writer(path, 4, False, {_faults.STOP_AT: "2"})  # stops inside its 2nd write
    _, status = os.waitpid(first.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), first.communicate()
    temps = glob.glob(str(tmp_path / ".run.ckpt.npz.tmp-*.npz"))
    assert len(temps) == 1 and f"-{first.pid}-" in os.path.basename(temps[0])
    try:
        second = _writer(path, 6, True)  # resumes the first one's checkpoint, writes the same path
        out, err = second.communicate(timeout=240)
        assert second.returncode == 0 and "DONE" in out, err
        assert os.path.exists(temps[0]), "the live writer's temporary file was deleted"
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=240)
    assert first.returncode == 0 and "DONE" in out, err
    assert glob.glob(str(tmp_path / ".run.ckpt.npz.tmp-*")) == []
    assert ckpt.read_checkpoint(path)[0]["state"]["epoch"] == 4  # the last writer's


def test_stale_temporary_files_are_removed_only_when_their_writer_is_gone(tmp_path):
    target = tmp_path / "run.ckpt.npz"
    prefix = ".run.ckpt.npz.tmp-"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    files = {
        "this-process": f"{os.getpid()}-{ckpt._host_tag()}-{'1' * 16}.npz",
        "parent-process": f"{os.getppid()}-{ckpt._host_tag()}-{'2' * 16}.npz",
        "dead-process": f"{dead}-{ckpt._host_tag()}-{'3' * 16}.npz",
        "other-host-new": f"{dead}-{'0' * 8}-{'4' * 16}.npz",
        "other-host-old": f"{dead}-{'0' * 8}-{'5' * 16}.npz",
        "other-host-old-locked": f"{dead}-{'0' * 8}-{'6' * 16}.npz",
        "unknown-old": "abc.npz",
    }
    for key, name in files.items():
        (tmp_path / (prefix + name)).write_bytes(b"partial")
        if key.endswith(("-old", "-old-locked")):
            os.utime(tmp_path / (prefix + name), (time.time() - ckpt.STALE_AGE - 5,) * 2)
    import fcntl
    fd = os.open(tmp_path / (prefix + files["other-host-old-locked"]), os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a live writer on another host holds it
    try:
        ckpt.remove_stale_temps(target)
    finally:
        os.close(fd)
    left = {key for key, name in files.items() if (tmp_path / (prefix + name)).exists()}
    assert left == {"this-process", "parent-process", "other-host-new", "other-host-old-locked"}


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_are_created_with_the_umasks_mode(tmp_path, umask):
    """Was: 0600 whatever the umask (mkstemp); np.savez gives 0666 less the umask."""
    old = os.umask(umask)
    try:
        path = fastnn.Model([3, 2, 1], seed=0).save(tmp_path / "m.npz")
        np.savez(tmp_path / "ref.npz", a=np.zeros(1))
    finally:
        os.umask(old)
    mode = os.stat(path).st_mode & 0o777
    assert mode == 0o666 & ~umask == os.stat(tmp_path / "ref.npz").st_mode & 0o777


# ------------------------------------------------------------ 3. fork after numba-parallel

FORK_CHILD = r'''
import multiprocessing as mp, sys, numpy as np, numba, fastnn
from fastnn.backends import numba_parallel

rng = np.random.default_rng(0)
X = rng.standard_normal((6, 300)); Y = (rng.random((1, 300)) > 0.5).astype(float)

def train(seed, backend="numba-parallel"):
    m = fastnn.Model([6, 16, 1], seed=seed)
    m.fit(X, Y, epochs=3, batch_size=64, optimizer="adam", shuffle_seed=seed, progress=False,
          backend=backend)
    return m.params, numba_parallel.SERIAL_AFTER_FORK

def train_auto(seed):  # "auto" picks numba-parallel for this much work
    return train(seed, None)

if __name__ == "__main__":
    parent = [train(s)[0] for s in (0, 1)]
    layer = numba.threading_layer()
    with mp.get_context("fork").Pool(2) as pool:
        children = pool.map_async(train, [0, 1]).get(timeout=120)
        auto = pool.map_async(train_auto, [0]).get(timeout=120)
    assert fastnn.get_backend(None, 1 << 20).NAME == "numba-parallel"
    for (params, serial), ref in zip(children + auto, parent):
        assert serial == (layer == "omp"), (layer, serial)
        for k in ref:
            assert np.array_equal(params[k], ref[k]), k
    print("OK", layer, flush=True)
'''


@pytest.mark.parametrize("layer", ["default", "workqueue"])
@requires_backends("numba-parallel")
def test_fork_pool_after_numba_parallel_fit(tmp_path, layer):
    """Was: "fork() called from a process already using GNU OpenMP" killed each child,
    and the pool hung.  The children now train, bitwise as the parent did."""
    script = tmp_path / "fork_child.py"
    script.write_text(FORK_CHILD)
    env = dict(os.environ)
    if layer != "default":
        env["NUMBA_THREADING_LAYER"] = layer
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr
    if layer == "workqueue":
        assert "OK workqueue" in proc.stdout


# ------------------------------------------------------------ 4. crafted files

def _npy_header(shape, dtype="<f8"):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                               "shape": tuple(shape)})
    return buf.getvalue()


def _zip(path, members, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _meta_member(meta):
    buf = io.BytesIO()
    np.save(buf, np.array(json.dumps(meta)))
    return buf.getvalue()


def _model_meta(layer_dims):
    return {"format": "fastnn.Model", "format_version": 1, "layer_dims": layer_dims,
            "hidden": "relu", "output": "sigmoid", "dtype": "float64"}


def _bounded(call, name):
    """Run ``call``; it must raise a fastnn error naming ``name``, fast and without a big allocation."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(FastnnValueError, match=name) as info:
            call()
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5, f"took {elapsed:.2f} s"
    assert peak < 16 << 20, f"allocated {peak / 2**20:.0f} MiB"
    return str(info.value)


def test_header_only_model_claiming_a_huge_layer_is_refused_fast(tmp_path):
    """Was: an 800-byte file claiming layer_dims [20000, 20000] took 23 s and 3 GB,
    then MemoryError."""
    path = _zip(tmp_path / "big.npz", {"__meta__.npy": _meta_member(_model_meta([20000, 20000])),
                                       "W1.npy": _npy_header((20000, 20000)),
                                       "b1.npy": _npy_header((20000, 1))}, zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < 1000
    msg = _bounded(lambda: fastnn.Model.load(path), "path")
    assert "W1" in msg
    # the same claim with no arrays at all
    path = _zip(tmp_path / "meta.npz", {"__meta__.npy": _meta_member(_model_meta([20000, 20000]))})
    _bounded(lambda: fastnn.Model.load(path), "path")


def test_array_declaring_2_to_the_40_entries_is_refused_fast(tmp_path):
    """Was: a 2 kB npz declaring a 2**40-entry array raised MemoryError."""
    path = _zip(tmp_path / "huge.npz", {
        "__meta__.npy": _meta_member(_model_meta([2 ** 20, 2 ** 20])),
        "W1.npy": _npy_header((2 ** 20, 2 ** 20)) + b"\0" * 512,
        "b1.npy": _npy_header((2 ** 20, 1)) + b"\0" * 64})
    assert os.path.getsize(path) < 2048
    _bounded(lambda: fastnn.Model.load(path), "path")


def _patch_declared_size(data, member, size):
    """The zip with the uncompressed size of ``member`` in its central directory set to ``size``."""
    at = data.index(b"PK\x01\x02")
    while True:
        name_len = int.from_bytes(data[at + 28:at + 30], "little")
        if data[at + 46:at + 46 + name_len] == member.encode():
            return data[:at + 24] + size.to_bytes(4, "little") + data[at + 28:]
        at = data.index(b"PK\x01\x02", at + 4)


def test_member_whose_directory_lies_about_its_size_is_refused(tmp_path):
    """A stored member whose zip directory declares 3.75 GiB (and an .npy header to match)
    in 200 bytes: refused from the directory, before NumPy allocates it."""
    good = fastnn.Model([3, 2, 1], seed=0).save(tmp_path / "good.npz")
    n = (0xF0000000 - 128) // 8
    with zipfile.ZipFile(good) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members["W1.npy"] = _npy_header((n,)) + b"\0" * 64
    assert len(_npy_header((n,))) == 128
    path = tmp_path / "lie.npz"
    path.write_bytes(_patch_declared_size(_zip(tmp_path / "tmp.npz", members).read_bytes(),
                                          "W1.npy", 0xF0000000))
    msg = _bounded(lambda: fastnn.Model.load(path), "path")
    assert "W1" in msg


def test_unexpected_member_is_never_inflated(tmp_path, monkeypatch):
    """Was: an extra compressed member (400 MB of zeros) was inflated before the names
    were checked.  Here 40 MB: the member must not even be opened."""
    good = fastnn.Model([3, 2, 1], seed=0).save(tmp_path / "good.npz")
    with zipfile.ZipFile(good) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members["evil.npy"] = _npy_header((5 << 20,)) + bytes(40 << 20)
    path = _zip(tmp_path / "evil.npz", members, zipfile.ZIP_DEFLATED)
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open",
                        lambda self, name, *a, **k: opened.append(getattr(name, "filename", name))
                        or real_open(self, name, *a, **k))
    msg = _bounded(lambda: fastnn.Model.load(path), "path")
    assert "evil" in msg and set(opened) == {"__meta__.npy"}


@pytest.mark.parametrize("depth", [ckpt.MAX_META_DEPTH + 1, 100_000])
def test_deeply_nested_metadata_is_refused(tmp_path, depth):
    """Was: 100,000-deep JSON metadata raised RecursionError."""
    meta = _model_meta([3, 2, 1])
    text = json.dumps(meta)[:-1] + ', "x": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"
    good = fastnn.Model([3, 2, 1], seed=0).save(tmp_path / "good.npz")
    with zipfile.ZipFile(good) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    buf = io.BytesIO()
    np.save(buf, np.array(text))
    members["__meta__.npy"] = buf.getvalue()
    path = _zip(tmp_path / "deep.npz", members)
    assert "nested deeper" in _bounded(lambda: fastnn.Model.load(path), "path")
    # one level less is read
    ok = json.dumps(meta)[:-1] + ', "x": ' + "[" * (ckpt.MAX_META_DEPTH - 2) + \
        "]" * (ckpt.MAX_META_DEPTH - 2) + "}"
    buf = io.BytesIO()
    np.save(buf, np.array(ok))
    members["__meta__.npy"] = buf.getvalue()
    fastnn.Model.load(_zip(tmp_path / "ok.npz", members))


@pytest.fixture
def checkpoint_file(tmp_path):
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((5, 40)), rng.integers(0, 3, 40)
    model = fastnn.Model([5, 7, 3], "tanh", "softmax", seed=2)
    path = tmp_path / "run.ckpt.npz"
    fit = dict(batch_size=16, optimizer="adam", shuffle_seed=3, progress=False, backend="numpy")
    model.fit(X, Y, epochs=2, checkpoint=path, **fit)
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    return X, Y, fit, path, members


@pytest.mark.parametrize("craft", ["W1-huge", "opt-huge", "extra-member", "deep-meta"])
def test_crafted_checkpoints_are_refused_fast(tmp_path, checkpoint_file, craft):
    """The same bounds on resume and Model.from_checkpoint."""
    X, Y, fit, path, members = checkpoint_file
    members = dict(members)
    if craft == "W1-huge":
        members["W1.npy"] = _npy_header((2 ** 20, 2 ** 20))
    elif craft == "opt-huge":
        members["opt.m.0.npy"] = _npy_header((2 ** 40,))
    elif craft == "extra-member":
        members["extra.npy"] = _npy_header((10,)) + bytes(80)
    else:
        meta = json.loads(np.load(io.BytesIO(members["__meta__.npy"])).item())
        meta["history"]["lr_changes"] = "DEEP"
        buf = io.BytesIO()
        np.save(buf, np.array(json.dumps(meta).replace('"DEEP"', "[" * 50_000 + "]" * 50_000)))
        members["__meta__.npy"] = buf.getvalue()
    bad = _zip(tmp_path / "bad.npz", members)
    model = fastnn.Model([5, 7, 3], "tanh", "softmax", seed=2)
    before = {k: v.copy() for k, v in model.params.items()}
    _bounded(lambda: model.fit(X, Y, epochs=3, resume=bad, **fit), "resume")
    for k in before:
        np.testing.assert_array_equal(model.params[k], before[k])
    _bounded(lambda: fastnn.Model.from_checkpoint(bad), "path")


# ------------------------------------------------------------ 5. hyperparameters in the dtype

def _rounding_cases(dtype):
    dt = np.dtype(dtype)
    one_minus = float(np.nextafter(dt.type(1), dt.type(0)))
    halfway = (one_minus + 1.0) / 2 + 1e-12  # below 1, rounds up to 1 in dt
    tiny = float(np.finfo(dt).tiny)
    return {
        "momentum-beta": ("momentum", {"beta": halfway}, "beta"),
        "adam-beta1": ("adam", {"beta1": halfway}, "beta1"),
        "adam-beta2": ("adam", {"beta2": halfway}, "beta2"),
        "adam-eps-zero": ("adam", {"eps": tiny / 2 ** 40}, "eps"),
        "adam-eps-subnormal": ("adam", {"eps": tiny / 4}, "eps"),
    }, one_minus, tiny


ROUNDING_DTYPES = [pytest.param("float16", id="float16"), pytest.param("float32", id="float32"),
                   pytest.param("float64", id="float64")]


@pytest.mark.parametrize("dtype", ROUNDING_DTYPES)
def test_hyperparameters_that_round_in_the_dtype_are_refused(backend_name, dtype):
    """Was: momentum beta=0.99999999 moved nothing in float32; Adam beta1 that rounds to 1
    raised ZeroDivisionError; beta2/eps rounding to 1/0 a DivergenceError blaming lr."""
    cases, one_minus, tiny = _rounding_cases(dtype)
    X, Y = _problem(dtype)
    if dtype == "float16" and backend_name != "numpy":   # float16 is the NumPy backend's only
        with pytest.raises(FastnnTypeError, match=f"float16 is not supported by backend '{backend_name}'"):
            fastnn.Model([3, 4, 1], dtype=dtype, seed=0).fit(X, Y, epochs=1, progress=False,
                                                             backend=backend_name)
        return
    for case, (optimizer, options, name) in cases.items():
        if dtype == "float64" and name.startswith("beta"):
            continue  # a float64 beta that rounds to 1 is 1.0, refused as >= 1
        model = fastnn.Model([3, 4, 1], dtype=dtype, seed=0)
        before = {k: v.copy() for k, v in model.params.items()}
        with kernel_calls(backend_name) as calls:
            with pytest.raises(FastnnValueError, match=f"^{name}: ") as info:
                model.fit(X, Y, epochs=2, batch_size=8, optimizer=optimizer, progress=False,
                          backend=backend_name, **options)
        assert dtype in str(info.value) and calls == [], case
        for k in before:
            np.testing.assert_array_equal(model.params[k], before[k])
    # the nearest values that stay usable train, and every parameter moves (momentum's
    # first steps are (1 - beta) = one ulp of 1 times lr * G: a large lr makes them visible)
    for optimizer, lr, options in (("momentum", 1e3, {"beta": one_minus}),
                                   ("adam", 0.01, {"beta1": one_minus, "beta2": one_minus, "eps": tiny})):
        model = fastnn.Model([3, 4, 1], dtype=dtype, seed=0)
        before = {k: v.copy() for k, v in model.params.items()}
        model.fit(X, Y, epochs=2, batch_size=8, optimizer=optimizer, lr=lr, progress=False,
                  backend=backend_name, on_divergence="skip", **options)
        for k in before:
            assert np.isfinite(model.params[k]).all() and not np.array_equal(model.params[k], before[k]), k


def test_float32_beta_is_fine_in_float64(backend_name):
    """0.99999999 is a valid beta in float64: accepted, and the parameters move."""
    X, Y = _problem()
    model = fastnn.Model([3, 4, 1], seed=0)
    before = model.params["W1"].copy()
    model.fit(X, Y, epochs=2, batch_size=8, optimizer="momentum", beta=0.99999999, progress=False,
              backend=backend_name)
    assert not np.array_equal(model.params["W1"], before)


# ------------------------------------------------------------ 6. masked arrays

def _masked(a, where=(0, 0), value=None):
    out = np.ma.masked_array(np.array(a, copy=True), mask=np.zeros(np.shape(a), bool))
    if value is not None:
        out.data[where] = value
    out.mask[where] = True
    return out


def test_masked_arrays_are_refused_everywhere(backend_name):
    """Was: a masked label -1 was used as class 2; a NaN under a mask passed the
    finiteness check and was later blamed on overflow."""
    X, Y = _problem()
    labels = np.random.default_rng(0).integers(0, 3, X.shape[1])
    soft = fastnn.Model([3, 4, 3], "relu", "softmax", seed=0)
    sig = fastnn.Model([3, 4, 1], seed=0)
    params = {k: v.copy() for k, v in sig.params.items()}
    cases = {
        "X": lambda: sig.fit(_masked(X, value=np.nan), Y, epochs=1, progress=False, backend=backend_name),
        "Y": lambda: sig.fit(X, _masked(Y, value=np.nan), epochs=1, progress=False, backend=backend_name),
        "Y ": lambda: soft.fit(X, _masked(labels, where=0, value=-1), epochs=1, progress=False,
                               backend=backend_name),
        "X  ": lambda: sig.predict(_masked(X), backend=backend_name),
        "X   ": lambda: sig.score(_masked(X), Y, backend=backend_name),
        "Y  ": lambda: sig.score(X, _masked(Y), backend=backend_name),
        "params['W1']": lambda: fastnn.forward({**params, "W1": _masked(params["W1"])}, X,
                                               backend=backend_name),
        "X    ": lambda: fastnn.gradients(params, _masked(X), Y, backend=backend_name),
        "AL": lambda: fastnn.cost(_masked(np.full((1, 4), 0.5)), np.ones((1, 4))),
    }
    for name, call in cases.items():
        with pytest.raises(FastnnTypeError, match=rf"^{re.escape(name.strip())}: masked arrays \(numpy.ma\)"):
            call()
    # filled explicitly, they are plain arrays
    sig.fit(_masked(X).filled(0.0), Y, epochs=1, progress=False, backend=backend_name)


# ------------------------------------------------------------ 7. float16 at large m

def test_float16_cost_at_large_m_is_not_refused_as_overflow():
    """Was: a true cost of 0.72 at m = 120000 read as inf (the loss was summed in float16)."""
    rng = np.random.default_rng(0)
    m = 120_000
    X = rng.standard_normal((2, m)).astype(np.float16)
    Y = (rng.random((1, m)) > 0.5).astype(np.float16)
    model = fastnn.Model([2, 3, 1], "tanh", dtype=np.float16, seed=0)
    params64 = {k: v.astype(np.float64) for k, v in model.params.items()}
    AL64 = fastnn.forward(params64, X.astype(np.float64), hidden="tanh", backend="numpy")[0]
    J64 = fastnn.cost(AL64, Y.astype(np.float64))
    assert J64 * m > float(np.finfo(np.float16).max)  # a float16 sum would overflow
    AL16 = fastnn.forward(model.params, X, hidden="tanh", backend="numpy")[0]
    assert_close(fastnn.cost(AL16, Y), J64, np.float16)
    J16 = fastnn.gradients(model.params, X, Y, hidden="tanh", backend="numpy")[0]
    assert_close(J16, J64, np.float16)
    history = model.fit(X, Y, epochs=1, progress=False, backend="numpy", lr=0.01)
    assert_close(history.cost[0], J64, np.float16)


# ------------------------------------------------------------ 8. unclear errors

@pytest.mark.parametrize("dims", [[3, float("inf"), 1], [3, float("-inf"), 1], [float("inf"), 2]])
def test_layer_dims_with_inf_name_layer_dims(dims):
    """Was: OverflowError (int(inf))."""
    with pytest.raises(FastnnValueError, match="^layer_dims: "):
        fastnn.Model(dims)
    with pytest.raises(FastnnValueError, match="^layer_dims: "):
        fastnn.init_params(dims)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("batch_size", [None, 8], ids=["whole-loop", "minibatch"])
def test_huge_epochs_start_without_allocating_per_epoch(backend_name, batch_size, monkeypatch):
    """Was: MemoryError for epochs=10**12 (the whole-loop path allocated one cost per
    epoch of a chunk of epochs // 100 up front).  The run starts at once; the
    whole-loop path's chunks (timed as fast here) double up to MAX_LOOP_CHUNK and
    stay there; stopped after its 8th chunk (the minibatch path: its first epoch)."""
    import fastnn.model as fm
    monkeypatch.setattr(fm, "MAX_LOOP_CHUNK", 64)
    monkeypatch.setattr(fm, "LOOP_CHUNK_SECONDS", float("inf"))
    chunks = []

    def end_epochs(self, n):
        chunks.append(n)
        if batch_size is not None or len(chunks) == 8:
            raise _Stop

    monkeypatch.setattr(fm._Trainer, "_end_epochs", end_epochs)
    X, Y = _problem()
    model = fastnn.Model([3, 4, 1], seed=0)
    tracemalloc.start()
    try:
        with pytest.raises(_Stop):
            model.fit(X, Y, epochs=10 ** 12, batch_size=batch_size, progress=False, backend=backend_name)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert chunks == ([1, 2, 4, 8, 16, 32, 64, 64] if batch_size is None else [1])
    assert peak < 16 << 20


@pytest.mark.parametrize("batch_size", [None, 8], ids=["whole-loop", "minibatch"])
def test_read_only_memory_mapped_inputs_train(backend_name, batch_size, tmp_path):
    """np.load(mmap_mode="r") arrays (what joblib hands out) train and predict as the same
    values in ordinary arrays do."""
    X, Y = _problem(m=40)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", Y)
    Xr, Yr = np.load(tmp_path / "X.npy", mmap_mode="r"), np.load(tmp_path / "Y.npy", mmap_mode="r")
    assert not Xr.flags.writeable
    a, b = fastnn.Model([3, 4, 1], seed=0), fastnn.Model([3, 4, 1], seed=0)
    opts = dict(epochs=3, batch_size=batch_size, shuffle_seed=1, progress=False, backend=backend_name)
    a.fit(Xr, Yr, **opts)
    b.fit(X, Y, **opts)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    np.testing.assert_array_equal(a.predict(Xr, backend=backend_name), b.predict(X, backend=backend_name))
    np.testing.assert_array_equal(Xr, X)


# ---------------------------------------- 5b. the estimators' Adam in the dtype

@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("option, value", [("beta_1", 0.99999999), ("beta_2", 0.99999999),
                                           ("epsilon", 1e-50)])
def test_estimator_adam_options_that_round_in_float32(backend_name, option, value):
    """Was: MLPClassifier(beta_1=0.99999999) on float32 data raised ZeroDivisionError
    (beta_2, epsilon: "non-finite parameter weights").  float32: refused by name before
    training; float64, where the value is representable: fits as scikit-learn's does."""
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier

    from fastnn import MLPClassifier
    from fastnn_suite import assert_losses_track
    rng = np.random.RandomState(0)
    X, y = rng.rand(50, 3), rng.randint(0, 2, 50)
    kw = {option: value, "max_iter": 3, "random_state": 0}
    with pytest.raises(FastnnValueError, match=f"^{option}: .*float32"):
        MLPClassifier((4,), backend=backend_name, **kw).fit(X.astype(np.float32), y)
    ours = MLPClassifier((4,), backend=backend_name, **kw).fit(X, y)
    theirs = SkMLPClassifier((4,), **kw).fit(X, y)
    assert_losses_track(ours.loss_curve_, theirs.loss_curve_)
