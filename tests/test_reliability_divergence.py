"""Divergence (issue 7, part 3): a step whose cost, gradient or updated parameters are
not finite is never applied.  With ``on_divergence="raise"`` (the default) fit stops
with DivergenceError naming the epoch and step and the likely cause, and
``Model.params`` hold the last finite values -- bit for bit those of a run that
stopped just before the step -- which can be saved.  With ``"skip"`` the step is
skipped, lr halved, and the change recorded in ``History.lr_changes``.

Both fit paths (the full-batch SGD whole-loop path through ``sgd_loop``, and the
step loop for minibatches and the other optimizers) on every backend.
"""

import contextlib

import numpy as np
import pytest

import fastnn
from fastnn import DivergenceError
from fastnn.backends import get_backend
from fastnn.engine import MinibatchWorkspace
from fastnn.model import MAX_CONSECUTIVE_SKIPS
from fastnn_suite import BACKEND_PARAMS

PATHS = [pytest.param(None, "sgd", id="whole-loop"), pytest.param(4, "sgd", id="minibatch-sgd"),
         pytest.param(None, "adam", id="full-batch-adam"), pytest.param(4, "momentum", id="minibatch-momentum")]
DT = [pytest.param(np.dtype(np.float32), id="float32"), pytest.param(np.dtype(np.float64), id="float64")]
#: Backends whose update kernels compute in float64 and round once per stored value
#: (cuda_backend's docstring), where _replay's NumPy lines round every operation.
UPDATES_IN_FLOAT64 = ("cuda",)


def _data(dtype, scale, seed=0, m=16):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((3, m)) * scale).astype(dtype)
    Y = rng.integers(0, 2, (1, m))
    return X, Y


def _set_first_to_inf(P):
    """``P[0, ..., 0] = inf`` in place, on the host or on a CUDA device.

    A device array's item assignment launches numba-cuda's own one-block copy
    kernel, whose low-occupancy warning the suite turns into an error; a copy
    through the host writes the same array.
    """
    if isinstance(P, np.ndarray):
        P[(0,) * P.ndim] = np.inf
        return
    host = P.copy_to_host()
    host[(0,) * P.ndim] = np.inf
    P.copy_to_device(host)


def _fit(model, X, Y, batch_size, optimizer, lr, backend, epochs=6, **kw):
    return model.fit(X, Y, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                     backend=backend, shuffle_seed=0, progress=False, **kw)


def _replay(params, X, Y, batch_size, lr, dtype, backend, hidden="identity", optimizer="sgd", stop=None,
            skip=None, epochs=None, update=None):
    """The parameters fit should hold, recomputed one step at a time with the functional API
    (same kernels, same permutations from the shuffle generator, the update written in
    NumPy -- bitwise the numpy and Numba update kernels, which compute in the array dtype --
    or made by ``update(optimizer, P, G, V, lr, beta)``): after every step before ``stop``
    (epoch, step), or after ``epochs`` epochs with the step ``skip`` left out and lr
    halved from then on."""
    P = {k: v.copy() for k, v in params.items()}
    V = {k: np.zeros_like(v) for k, v in P.items()}
    beta = dtype.type(0.9)
    rng = np.random.default_rng(0)
    m = X.shape[1]
    for e in range(1, (epochs or stop[0]) + 1):
        order = np.arange(m) if batch_size >= m else rng.permutation(m)  # fit does not shuffle a full batch
        for s, start in enumerate(range(0, m, batch_size), start=1):
            if (e, s) == stop:
                return P
            if (e, s) == skip:
                lr = lr / 2
                continue
            idx = order[start:start + batch_size]
            Xb, Yb = (X, Y) if batch_size >= m else (np.take(X, idx, axis=1), np.take(Y, idx, axis=1))
            _, g = fastnn.gradients(P, Xb, Yb, hidden=hidden, backend=backend)
            for k in P:
                if update is not None:
                    update(optimizer, P[k], g["d" + k], V[k], dtype.type(lr), beta)
                elif optimizer == "momentum":
                    V[k] *= beta
                    V[k] += (dtype.type(1) - beta) * g["d" + k]
                    P[k] -= dtype.type(lr) * V[k]
                else:
                    P[k] -= dtype.type(lr) * g["d" + k]
    assert stop is None, "the failing step was not reached"
    return P


@contextlib.contextmanager
def update_fault(backend, at_step, n_arrays):
    """Fault injection: the update of global step ``at_step`` writes an inf into W1 -- and
    so does any later update with exactly the same inputs, lr included (a deterministic
    fault, like a real overflow: replaying the step reproduces it, a halved lr does not).

    Yields ``update(optimizer, P, G, V, lr, beta)``: one update of the host arrays P (and V)
    in place by the backend's own kernels, without the fault (for :func:`_replay`)."""
    bk = get_backend(backend)
    names = ("sgd_update", "momentum_update")
    originals = {n: getattr(bk, n) for n in names}
    calls, faulty_inputs = [0], set()

    def wrap(fn):
        def faulty(P, G, *args):
            # to_host: the arrays may be device arrays (cuda); scalars pass through.
            key = hash(tuple(np.asarray(bk.to_host(a)).tobytes() for a in (P, G) + args))
            fn(P, G, *args)
            calls[0] += 1
            if calls[0] == (at_step - 1) * n_arrays + 1:
                faulty_inputs.add(key)
            if key in faulty_inputs:
                _set_first_to_inf(P)
        return faulty

    def clean_update(optimizer, P, G, V, lr, beta):
        Pd, Gd, Vd = bk.to_device(P), bk.to_device(G), bk.to_device(V)
        if optimizer == "momentum":
            originals["momentum_update"](Pd, Gd, Vd, lr, beta)
        else:
            originals["sgd_update"](Pd, Gd, lr)
        P[...] = bk.to_host(Pd)
        V[...] = bk.to_host(Vd)

    for n, fn in originals.items():
        setattr(bk, n, wrap(fn))
    try:
        yield clean_update
    finally:
        for n, fn in originals.items():
            setattr(bk, n, fn)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", DT)
@pytest.mark.parametrize("batch_size, optimizer", PATHS)
def test_overflowing_update_keeps_last_finite_params(backend, dtype, batch_size, optimizer, tmp_path):
    """lr so large that the update itself overflows: regression -- the params used to be
    left at inf (the check ran only on the gradients, before the update)."""
    X, Y = _data(dtype, 1e5 if dtype == np.float64 else 1e3)
    lr = 1e306 if dtype == np.float64 else 1e36
    model = fastnn.Model([3, 4, 1], "identity", "sigmoid", dtype=dtype, seed=0)
    start = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(DivergenceError) as info:
        _fit(model, X, Y, batch_size, optimizer, lr, backend)
    err = info.value
    assert f"epoch {err.epoch}, step {err.step}:" in str(err) and "lr=" in str(err)
    assert "too large" in str(err) and "last finite values" in str(err)
    assert all(np.isfinite(v).all() for v in model.params.values())
    if err.epoch == 1 and err.step == 1:  # nothing applied at all
        for k in start:
            np.testing.assert_array_equal(model.params[k], start[k])
    elif batch_size is None and optimizer == "sgd":
        # bit for bit the params of a run that stopped just before the failing epoch
        ref = fastnn.Model([3, 4, 1], "identity", "sigmoid", dtype=dtype, seed=0)
        _fit(ref, X, Y, batch_size, optimizer, lr, backend, epochs=err.epoch - 1)
        for k in ref.params:
            np.testing.assert_array_equal(model.params[k], ref.params[k])
    elif optimizer == "sgd" and backend == "numpy":
        ref = _replay(start, X, Y, batch_size, lr, dtype, "numpy", stop=(err.epoch, err.step))
        for k in ref:
            np.testing.assert_array_equal(model.params[k], ref[k])
    saved = model.save(tmp_path / "after")
    loaded = fastnn.Model.load(saved)
    for k in model.params:
        np.testing.assert_array_equal(loaded.params[k], model.params[k])


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("batch_size, optimizer", PATHS)
def test_nonfinite_cost_stops_at_the_step_with_last_finite_params(backend, batch_size, optimizer):
    """Updates that stay finite but blow the next forward pass up (float32 identity output):
    the failing step is reported as a non-finite cost or gradient; the params are those
    before it."""
    dtype = np.dtype(np.float32)
    X, Y = _data(dtype, 10.0, seed=1)
    model = fastnn.Model([3, 8, 1], "relu", "identity", dtype=dtype, seed=1)
    seen = []
    with pytest.raises(DivergenceError, match=r"epoch \d+, step \d+: the cost or a gradient is not finite") as info:
        _fit(model, X, Y, batch_size, optimizer, 3.0 if optimizer != "adam" else 1e30, backend, epochs=200,
             callback=lambda e, m, h: seen.append({k: v.copy() for k, v in m.params.items()}))
    err = info.value
    assert err.reason == "cost"
    assert all(np.isfinite(v).all() for v in model.params.values())
    if err.step == 1 and err.epoch > 1:  # the last finite params: those at the end of the previous epoch
        for k in model.params:
            np.testing.assert_array_equal(model.params[k], seen[-1][k])


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("batch_size, optimizer", [p for p in PATHS if p.values[0] is None])
def test_skip_gives_up_after_max_consecutive_skips(backend, batch_size, optimizer):
    """on_divergence="skip" with an lr whose updates overflow even after 50 halvings (full
    batch: the same step every epoch): each skipped step is undone exactly, lr halves, and
    after MAX_CONSECUTIVE_SKIPS skips in a row fit gives up with the params untouched."""
    dtype = np.dtype(np.float64)
    X, Y = _data(dtype, 1e150)  # gradients ~1e150: lr * G overflows even after 50 halvings
    model = fastnn.Model([3, 4, 1], "identity", "sigmoid", dtype=dtype, seed=0)
    start = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(DivergenceError, match=f"{MAX_CONSECUTIVE_SKIPS} steps in a row") as info:
        _fit(model, X, Y, batch_size, optimizer, 1e306, backend, epochs=200, on_divergence="skip")
    assert info.value.lr == 1e306 / 2 ** MAX_CONSECUTIVE_SKIPS
    for k in start:
        np.testing.assert_array_equal(model.params[k], start[k])


STEP_PATHS = [pytest.param(4, "sgd", id="minibatch-sgd"), pytest.param(4, "momentum", id="minibatch-momentum"),
              pytest.param(None, "momentum", id="full-batch-momentum")]


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", DT)
@pytest.mark.parametrize("batch_size, optimizer", STEP_PATHS)
@pytest.mark.parametrize("mode", ["raise", "skip"])
def test_injected_update_fault(backend, dtype, batch_size, optimizer, mode):
    """An update that writes inf (fault injected into the backend's update kernel at
    global step 7): "raise" reports that epoch and step with the params bit for bit
    those after step 6; "skip" undoes the step exactly (params and optimizer state),
    halves lr, records it, and ends bit for bit where a run without that step ends."""
    X, Y = _data(dtype, 1.0, seed=2)
    steps_per_epoch = 1 if batch_size is None else 4
    epoch, step = 1 + 6 // steps_per_epoch, 1 + 6 % steps_per_epoch
    model = fastnn.Model([3, 4, 1], "identity", "sigmoid", dtype=dtype, seed=0)
    start = {k: v.copy() for k, v in model.params.items()}
    # One update call per parameter array, or one per step over the minibatch workspace's
    # flat array (whose first entry is W1's, where the fault writes).
    flat = batch_size is not None and MinibatchWorkspace.supports(get_backend(backend), "sigmoid")
    with update_fault(backend, 7, 1 if flat else 4) as kernel_update:
        update = kernel_update if backend in UPDATES_IN_FLOAT64 else None
        if mode == "raise":
            with pytest.raises(DivergenceError, match=f"epoch {epoch}, step {step}: the update made") as info:
                _fit(model, X, Y, batch_size, optimizer, 0.5, backend, epochs=10)
            assert info.value.reason == "update"
            ref = _replay(start, X, Y, batch_size or 16, 0.5, dtype, backend, optimizer=optimizer,
                          stop=(epoch, step), update=update)
        else:
            h = _fit(model, X, Y, batch_size, optimizer, 0.5, backend, epochs=10, on_divergence="skip")
            assert [(c["epoch"], c["step"], c["lr"], c["reason"]) for c in h.lr_changes] == \
                [(epoch, step, 0.25, "update")]
            # A full batch has one step an epoch: the skipped epoch computed no cost (NaN).
            finite = np.ones(10, dtype=bool)
            if batch_size is None:
                finite[epoch - 1] = False
            assert len(h.cost) == 10
            np.testing.assert_array_equal(np.isfinite(h.cost), finite)
            ref = _replay(start, X, Y, batch_size or 16, 0.5, dtype, backend, optimizer=optimizer,
                          skip=(epoch, step), epochs=10, update=update)
    for k in ref:
        np.testing.assert_array_equal(model.params[k], ref[k], err_msg=k)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_skip_steps_over_an_outlier_batch(backend):
    """float32 regression data with one example at 1e30: every minibatch holding it has a
    non-finite gradient.  "raise" stops there; "skip" skips that batch each epoch (lr halves,
    recorded) and trains on the rest, like a run without the outlier's batches.

    The exact dW1 of that batch is ~ w * 1e30 * 1e30 / 8 ~ 1e58, beyond float32 however it
    is summed.  (An outlier of 1e20 gives an exact dW1 of 1.6e38, representable: only a
    float32 dZ @ X.T, which overflows before the 1/m, makes it inf; the cuda kernels sum in
    float64 and return the finite value.)"""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((2, 32)).astype(np.float32)
    Y = (X.sum(axis=0, keepdims=True) * 0.5).astype(np.float32)
    X[0, 5] = 1e30
    model = fastnn.Model([2, 1], "relu", "identity", dtype=np.float32, seed=0)
    with pytest.raises(DivergenceError, match="epoch 1, step"):
        model.fit(X, Y, lr=0.1, epochs=5, batch_size=8, backend=backend, shuffle_seed=0, progress=False)
    model = fastnn.Model([2, 1], "relu", "identity", dtype=np.float32, seed=0)
    h = model.fit(X, Y, lr=0.1, epochs=5, batch_size=8, backend=backend, shuffle_seed=0, progress=False,
                  on_divergence="skip")
    assert [c["epoch"] for c in h.lr_changes] == [1, 2, 3, 4, 5]
    assert all(c["reason"] == "cost" for c in h.lr_changes)
    assert h.lr_changes[-1]["lr"] == pytest.approx(0.1 / 32)
    assert np.isfinite(h.cost).all() and h.cost[-1] < h.cost[0]
    assert all(np.isfinite(v).all() for v in model.params.values())


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_skip_gives_up_at_once_when_a_full_batch_cost_is_not_finite(backend, optimizer):
    """Full batch: a non-finite cost at the current parameters does not depend on lr, so
    every later step would repeat it; skip mode says so instead of looping."""
    X, Y = _data(np.float32, 1.0)
    model = fastnn.Model([3, 4, 1], "relu", "identity", dtype=np.float32, seed=0)
    model.params["W1"] = model.params["W1"] * np.float32(1e19)
    model.params["W2"] = model.params["W2"] * np.float32(1e19)
    with pytest.raises(DivergenceError, match="Skipping cannot help") as info:
        model.fit(X, Y, epochs=5, optimizer=optimizer, backend=backend, progress=False, on_divergence="skip")
    assert info.value.epoch == 1 and info.value.reason == "cost"


def test_divergence_error_attributes_and_message():
    X, Y = _data(np.float64, 1e5)
    model = fastnn.Model([3, 4, 1], "identity", "sigmoid", seed=0)
    with pytest.raises(DivergenceError) as info:
        model.fit(X, Y, lr=1e306, epochs=3, progress=False, backend="numpy")
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert (err.epoch, err.step, err.reason, err.lr) == (1, 1, "update", 1e306)
    assert "on_divergence='skip'" in str(err)
