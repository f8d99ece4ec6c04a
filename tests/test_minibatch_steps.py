"""The compiled minibatch steps (the Numba backends' ``minibatch_steps`` kernel, driven by
``fastnn.engine.MinibatchWorkspace.run_steps``) against the workspace's Python steps.

A compiled call runs many steps with no Python between them; each step must be
bitwise the workspace's step followed by the optimizer's ``step_flat`` (the
Python path that stays for a last batch of one example, the "skip" divergence policy,
and the networks the kernel declines).  Fits are compared with the compiled
path switched off: parameters, optimizer state and every reported cost equal.
"""

import ctypes
import importlib

import numpy as np
import pytest

import fastnn
from fastnn import _workspace, engine
from fastnn.backends import REGISTRY, _blas, get_backend
from fastnn.backends._numba_kernels import steps as compiled
from fastnn.errors import DivergenceError

from conftest import backend_params

NUMBA = backend_params([n for n in REGISTRY if n.startswith("numba")])
stochastic = importlib.import_module("fastnn.sklearn._stochastic")


def _count_compiled(monkeypatch):
    """Spy on run_steps: the number of compiled steps of each call (None: declined)."""
    runs = []
    real = engine.MinibatchWorkspace.run_steps

    def run_steps(self, *args, **kwargs):
        done = real(self, *args, **kwargs)
        runs.append(done)
        return done
    monkeypatch.setattr(engine.MinibatchWorkspace, "run_steps", run_steps)
    return runs


def _python_steps_only(monkeypatch):
    monkeypatch.setattr(engine.MinibatchWorkspace, "run_steps", lambda self, *a, **k: None)


def _data(dtype, n_x=12, m=203, classes=4, seed=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_x, m)).astype(dtype), rng.integers(0, classes, m)


def _fit(backend, dtype, optimizer, l2, hidden="relu", epochs=3, **options):
    X, y = _data(dtype)
    model = fastnn.Model([12, 9, 7, 4], hidden, "softmax", dtype=dtype, seed=1)
    history = model.fit(X, y, epochs=epochs, batch_size=64, optimizer=optimizer, lr=0.01, l2=l2,
                        backend=backend, shuffle_seed=5, progress=False, **options)
    return model, history


def _same_fit(a, b):
    (ma, ha), (mb, hb) = a, b
    assert ha.cost == hb.cost
    for k in mb.params:
        assert ma.params[k].dtype == mb.params[k].dtype
        np.testing.assert_array_equal(ma.params[k], mb.params[k], err_msg=k)


CASES = [("adam", 0.0, "relu", {}), ("adam", 0.3, "leaky_relu", {"beta1": 0.8}),
         ("momentum", 0.1, "relu", {"beta": 0.8}), ("sgd", 0.0, "identity", {}),
         ("sgd", 0.2, "relu", {})]


@pytest.mark.parametrize("backend", NUMBA)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer, l2, hidden, options", CASES)
def test_compiled_steps_are_bitwise_the_python_steps(backend, dtype, optimizer, l2, hidden,
                                                     options, monkeypatch):
    runs = _count_compiled(monkeypatch)
    fast = _fit(backend, dtype, optimizer, l2, hidden, **options)
    # 203 = 3 x 64 + 11: three compiled steps an epoch, then the short one in a call of its own
    assert runs == [3, 1] * 3
    monkeypatch.undo()
    _python_steps_only(monkeypatch)
    _same_fit(fast, _fit(backend, dtype, optimizer, l2, hidden, **options))


@pytest.mark.parametrize("backend", NUMBA)
def test_chunked_calls_are_bitwise_one_call(backend, monkeypatch):
    """Calls of one compiled step after the first (CHUNK_SECONDS = 0) or whole epochs: the same fit."""
    X, y = _data(np.float32, m=1000)

    def fit():
        model = fastnn.Model([12, 9, 7, 4], "relu", "softmax", dtype=np.float32, seed=1)
        h = model.fit(X, y, epochs=2, batch_size=32, optimizer="adam", lr=0.01, l2=0.1,
                      backend=backend, shuffle_seed=5, progress=False)
        return model, h
    monkeypatch.setattr(_workspace, "CHUNK_SECONDS", 0.0)
    one_by_one = fit()
    monkeypatch.setattr(_workspace, "CHUNK_SECONDS", 1e9)
    _same_fit(one_by_one, fit())


@pytest.mark.parametrize("backend", NUMBA)
@pytest.mark.parametrize("hidden, output, dims, batch", [
    ("tanh", "softmax", [12, 9, 4], 64), ("relu", "sigmoid", [12, 9, 1], 64),
    ("relu", "softmax", [12, 1, 4], 64), ("relu", "softmax", [12, 9, 4], 1)])
def test_networks_the_kernel_declines_step_from_python(backend, hidden, output, dims, batch,
                                                       monkeypatch):
    """NumPy's ufuncs (tanh, sigmoid) and matrix-vector products (a layer or batch of one)
    have no bitwise compiled twin: those fits take the Python steps, unchanged."""
    runs = _count_compiled(monkeypatch)
    X, y = _data(np.float32, m=70)
    Y = y if output == "softmax" else (y % 2).reshape(1, -1).astype(np.float32)
    model = fastnn.Model(dims, hidden, output, dtype=np.float32, seed=1)
    model.fit(X, Y, epochs=1, batch_size=batch, optimizer="adam", lr=0.01, backend=backend,
              shuffle_seed=5, progress=False)
    assert runs == [None]
    assert all(np.isfinite(p).all() for p in model.params.values())


@pytest.mark.parametrize("backend", NUMBA)
@pytest.mark.parametrize("dtype, lr, l2", [(np.float32, 1e30, 0.0), (np.float64, 0.01, 1e306)])
def test_a_divergent_compiled_step_raises_as_the_python_step(backend, dtype, lr, l2, monkeypatch):
    """A step whose loss or gradient is not finite (lr 1e30), or whose cost the L2 term
    makes infinite while its loss is finite (l2 1e306, float64): the same
    DivergenceError (epoch, step, reason) and the same params as from the Python steps."""
    def fit():
        X, y = _data(dtype, m=640)
        model = fastnn.Model([12, 9, 7, 4], "relu", "softmax", dtype=dtype, seed=1)
        with pytest.raises(DivergenceError) as info:
            model.fit(X, y, epochs=3, batch_size=64, optimizer="sgd", lr=lr, l2=l2,
                      backend=backend, shuffle_seed=5, progress=False)
        return model, info.value
    runs = _count_compiled(monkeypatch)
    model, err = fit()
    assert runs and runs[0] is not None
    monkeypatch.undo()
    _python_steps_only(monkeypatch)
    ref_model, ref = fit()
    assert (err.epoch, err.step, err.reason) == (ref.epoch, ref.step, ref.reason)
    assert str(err) == str(ref)
    for k in ref_model.params:
        np.testing.assert_array_equal(model.params[k], ref_model.params[k], err_msg=k)


def _overflowing_model():
    """A float32 [4, 5, 3] model under which a feature of 3e38 in an example overflows dW1
    while every activation and the loss stay finite: zero weights from that feature,
    active hidden units, a wide second layer."""
    model = fastnn.Model([4, 5, 3], "relu", "softmax", dtype=np.float32, seed=1)
    params = dict(model.params)
    params["W1"] = np.full((5, 4), 0.01, np.float32)
    params["W1"][:, 0] = 0
    params["b1"] = np.full((5, 1), 0.1, np.float32)
    params["W2"] = np.full((3, 5), 100, np.float32) * [[1], [-1], [0.5]]
    model.params = {k: v.astype(np.float32) for k, v in params.items()}
    return model


@pytest.mark.parametrize("backend", NUMBA)
@pytest.mark.parametrize("scaling, l2", [("deferred", 0.0), ("deferred", 0.01), ("absorbed", 0.0)])
def test_a_gradient_that_overflows_under_a_finite_loss_stops_the_compiled_step(
        backend, scaling, l2, monkeypatch):
    """dW of the first layer overflows while every activation and the loss stay finite (a
    feature of 3e38 behind zero weights, a wide second layer): the compiled steps stop at
    the same step, for the same reason, with the same params as the Python steps, whether
    their gradient check is counted in the dW epilogue (1/m, L2) or is a pass of its own.
    The compiled call itself must stop there: the fit would locate the step anyway by
    replaying the epoch from Python, so only the call's step count shows a missed check."""
    def fit():
        X, y = _data(np.float32, n_x=4, m=128, classes=3)
        X[0] = 3e38
        model = _overflowing_model()
        with pytest.raises(DivergenceError) as info:
            model.fit(X, y, epochs=1, batch_size=32, optimizer="sgd", lr=0.1, l2=l2,
                      scaling=scaling, backend=backend, shuffle_seed=5, progress=False)
        return model, info.value
    runs = _count_compiled(monkeypatch)
    model, err = fit()
    assert runs == [0]     # the compiled call stopped at its first step, before the update
    monkeypatch.undo()
    _python_steps_only(monkeypatch)
    ref_model, ref = fit()
    assert (err.epoch, err.step, err.reason) == (ref.epoch, ref.step, ref.reason)
    assert err.reason == "cost" and err.step == 1 and np.isfinite(err.cost), str(err)
    for k in ref_model.params:
        np.testing.assert_array_equal(model.params[k], ref_model.params[k], err_msg=k)


@pytest.mark.parametrize("backend", NUMBA)
def test_a_short_last_batch_that_diverges_is_located_as_from_python(backend, monkeypatch):
    """The short last batch runs as a compiled call of its own size: when its gradient
    overflows (one example with a feature of 3e38 behind zero weights, shuffled into the
    last batch of 5), that call stops before its update, and the fit raises for step 5
    with the params of the Python steps."""
    m, b = 133, 32
    last = np.random.default_rng(5).permutation(m)[m - 2]  # the fit's first epoch order

    def fit():
        X, y = _data(np.float32, n_x=4, m=m, classes=3)
        X[0, last] = 3e38
        model = _overflowing_model()
        with pytest.raises(DivergenceError) as info:
            model.fit(X, y, epochs=1, batch_size=b, optimizer="sgd", lr=0.1, backend=backend,
                      shuffle_seed=5, progress=False)
        return model, info.value
    runs = _count_compiled(monkeypatch)
    model, err = fit()
    assert runs == [4, 0]  # four full steps, then the last batch's call stopped at once
    monkeypatch.undo()
    _python_steps_only(monkeypatch)
    ref_model, ref = fit()
    assert (err.epoch, err.step, err.reason) == (ref.epoch, ref.step, ref.reason) == (1, 5, "cost")
    for k in ref_model.params:
        np.testing.assert_array_equal(model.params[k], ref_model.params[k], err_msg=k)


@pytest.mark.parametrize("backend", NUMBA)
def test_a_last_batch_of_one_steps_from_python(backend, monkeypatch):
    """A last batch of one example, which the kernel declines (NumPy's ``matmul`` may take
    a matrix-vector route there): that step runs from Python, the fit is the same."""
    def fit():
        X, y = _data(np.float32, m=129)
        model = fastnn.Model([12, 9, 7, 4], "relu", "softmax", dtype=np.float32, seed=1)
        h = model.fit(X, y, epochs=2, batch_size=32, optimizer="adam", lr=0.01,
                      backend=backend, shuffle_seed=5, progress=False)
        return model, h
    runs = _count_compiled(monkeypatch)
    fast = fit()
    assert runs == [4, None] * 2
    monkeypatch.undo()
    _python_steps_only(monkeypatch)
    _same_fit(fast, fit())


@pytest.mark.parametrize("epilogue", ["scale", "scale_add", None])
@pytest.mark.parametrize("bad", [None, ("dW", np.inf), ("dW", np.nan), ("db", -np.inf),
                                 ("db", np.nan)])
def test_the_counted_gradient_check_is_all_finite(epilogue, bad):
    """The compiled steps' gradient check (a count from the dW epilogue's pass, then the
    db; or, with no epilogue, a pass over G) says what all_finite(G) says, for a bad
    entry in any layer's dW or db."""
    shapes = [(6, 5), (6, 1), (3, 6), (3, 1)]
    sizes = [a * b for a, b in shapes]
    for layer in range(2):
        G = np.random.default_rng(layer).standard_normal(sum(sizes)).astype(np.float32)
        views = [v.reshape(s) for v, s in zip(np.split(G, np.cumsum(sizes)[:-1]), shapes)]
        dWs, dbs = views[0::2], views[1::2]
        if bad is not None:
            which, value = bad
            target = (dWs if which == "dW" else dbs)[layer].reshape(-1)
            target[len(target) // 2] = value
        count = -1
        if epilogue == "scale":
            count = sum(compiled._scale(dW.reshape(-1), np.float32(0.5)) for dW in dWs)
        elif epilogue == "scale_add":
            count = sum(compiled._scale_add(dW.reshape(-1), np.float32(0.5), dW.reshape(-1).copy(),
                                            np.float32(0.1)) for dW in dWs)
        want = bool(np.isfinite(G).all())
        assert compiled._grads_finite(G, tuple(dbs), count) is want
        assert want is (bad is None)


SK_CASES = [
    dict(solver="adam", alpha=0.01),
    dict(solver="adam", alpha=0.0, activation="identity"),
    dict(solver="sgd", momentum=0.9, nesterovs_momentum=True, shuffle=False),
    dict(solver="sgd", momentum=0.5, nesterovs_momentum=False, learning_rate="invscaling",
         early_stopping=True),
    dict(solver="sgd", momentum=0.0, alpha=0.1),
]


def _sk_fit(backend, dtype, options):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((203, 8)).astype(dtype)
    y = rng.integers(0, 3, 203)
    est = fastnn.MLPClassifier(hidden_layer_sizes=(9, 5), batch_size=64, max_iter=3,
                               random_state=0, learning_rate_init=0.01, backend=backend,
                               **options)
    with pytest.warns(Warning):  # ConvergenceWarning after max_iter=3
        est.fit(X, y)
    if not options.get("early_stopping"):
        est.partial_fit(X, y)
    return est


@pytest.mark.parametrize("backend", NUMBA)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", SK_CASES)
def test_estimator_compiled_steps_are_bitwise_the_python_steps(backend, dtype, options,
                                                               monkeypatch):
    runs = _count_compiled(monkeypatch)
    est = _sk_fit(backend, dtype, options)
    # each epoch: the full batches (203 or, early stopping, 182 examples: 3 or 2 of 64),
    # then the short last one in a call of its own
    full = 2 if options.get("early_stopping") else 3
    assert runs and runs == [full, 1] * (len(runs) // 2)
    monkeypatch.undo()
    _python_steps_only(monkeypatch)
    ref = _sk_fit(backend, dtype, options)
    assert est.loss_curve_ == ref.loss_curve_
    assert est.n_iter_ == ref.n_iter_
    for a, b in zip(est.coefs_ + est.intercepts_, ref.coefs_ + ref.intercepts_):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, b)
    opt, ref_opt = est._optimizer, ref._optimizer
    assert getattr(opt, "t", None) == getattr(ref_opt, "t", None)
    assert opt.learning_rate == ref_opt.learning_rate


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_compiled_squares_are_engine_costs_formula(dtype):
    """steps.pairwise_squares restates engine.cost's np.sum(np.square(W, dtype=float64))
    (NumPy's pairwise order) for the compiled steps' L2 term: bitwise equal."""
    rng = np.random.default_rng(0)
    sizes = list(range(1, 270)) + [1023, 8191, 8193, 65536, 200704]
    for n in sizes:
        W = (rng.standard_normal(n) * 3).astype(dtype)
        assert compiled.pairwise_squares(W) == np.sum(np.square(W, dtype=np.float64)), n
    W = rng.standard_normal((256, 784)).astype(dtype)
    bk = get_backend("numpy")
    assert engine.cost(bk, 1.0, [W], 7, 0.5) == engine.cost_from_squares(
        1.0, [compiled.pairwise_squares(W.reshape(-1))], 7, 0.5)


def _python_typed_calls(monkeypatch):
    """Spy on Numba's Python-level typing of the compiled steps' arguments: the route a
    call takes when the dispatcher's C-level argument cache matches no compiled signature."""
    typed = []
    real = compiled.minibatch_steps._compile_for_args

    def spy(*args, **kwargs):
        typed.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(compiled.minibatch_steps, "_compile_for_args", spy)
    return typed


def _one_ctypes_class(cblas):
    """The BLAS functions of ``cblas`` rebound as instances of one ctypes class (how symbols
    read off a ``CDLL`` come), same addresses and signatures."""
    shared = ctypes.CDLL(None)._FuncPtr
    out = {}
    for dtype, fns in cblas.items():
        rebound = []
        for fn in fns:
            f = shared(ctypes.cast(fn, ctypes.c_void_p).value)
            f.argtypes, f.restype = fn.argtypes, fn.restype
            rebound.append(f)
        out[dtype] = tuple(rebound)
    return out


@pytest.mark.parametrize("backend", NUMBA)
def test_repeated_compiled_calls_are_typed_in_numbas_c_dispatcher(backend, monkeypatch):
    """After the first call of each dtype, calls of the compiled steps find their compiled
    signature in Numba's C-level cache (typing their 33 arguments in Python took 0.4 ms a
    call): ``?gemm`` and ``?dot`` are ctypes objects of distinct classes.  The control: the
    same functions as one class do fall back to Python typing, so the spy sees that route."""
    fits = (np.float32, np.float64, np.float32, np.float64)
    for dtype in fits[:2]:
        _fit(backend, dtype, "adam", 0.0, epochs=1)
    typed = _python_typed_calls(monkeypatch)
    for dtype in fits:
        _fit(backend, dtype, "adam", 0.0, epochs=2)
    assert typed == []
    monkeypatch.setattr(_blas, "CBLAS", _one_ctypes_class(_blas.CBLAS))
    _fit(backend, np.float32, "adam", 0.0, epochs=2)
    assert typed
