"""The minibatch workspace (fastnn.engine.MinibatchWorkspace) against the kernel-by-kernel path.

The workspace runs the same kernels' twins on preallocated arrays and updates
every parameter through one flat array; its results must be bitwise those of
the kernel-by-kernel path (the backend's allocating kernels, one optimizer
call per parameter), which stays the path of a backend without the minibatch
kernels (CUDA) and is what the workspace is switched off to here.
"""

import importlib

import numpy as np
import pytest

import fastnn
from fastnn import engine
from fastnn.backends import REGISTRY, _interface, get_backend
from fastnn.activations import HIDDEN_ACTIVATIONS

from conftest import backend_params

HOST = backend_params([n for n in REGISTRY if n != "cuda"])
model_module = importlib.import_module("fastnn.model")


def _without_workspace(monkeypatch):
    monkeypatch.setattr(model_module.MinibatchWorkspace, "supports",
                        staticmethod(lambda bk, output: False))


def _spy_steps(monkeypatch):
    """Count the workspace's Python steps (its compiled steps switched off: they are
    held to these in tests/test_minibatch_steps.py)."""
    monkeypatch.setattr(engine.MinibatchWorkspace, "run_steps", lambda self, *a, **k: None)
    calls = []
    real = engine.MinibatchWorkspace.step

    def step(self, *args, **kwargs):
        idx = args[2]
        calls.append(idx.stop - idx.start if isinstance(idx, slice) else idx.shape[0])
        return real(self, *args, **kwargs)
    monkeypatch.setattr(engine.MinibatchWorkspace, "step", step)
    return calls


def _fit(backend, dtype, optimizer, l2, output, **options):
    rng = np.random.default_rng(3)
    dims = [12, 9, 7, 4 if output == "softmax" else 1]
    m = 203  # 64-example batches: the last one has 11
    X = rng.standard_normal((dims[0], m)).astype(dtype)
    y = rng.integers(0, dims[-1] if output == "softmax" else 2, m)
    Y = y if output == "softmax" else y.reshape(1, -1).astype(dtype)
    model = fastnn.Model(dims, options.pop("hidden", "relu"), output, dtype=dtype, seed=1)
    history = model.fit(X, Y, epochs=3, batch_size=64, optimizer=optimizer, lr=0.01, l2=l2,
                        backend=backend, shuffle_seed=5, progress=False, **options)
    return model.params, history.cost


CASES = [("adam", 0.0, "softmax", {}), ("adam", 0.3, "softmax", {}),
         ("momentum", 0.1, "sigmoid", {"beta": 0.8}), ("sgd", 0.0, "identity", {}),
         ("sgd", 0.2, "softmax", {"hidden": "tanh"})]


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer, l2, output, options", CASES)
def test_fit_on_the_workspace_is_bitwise_the_kernel_by_kernel_fit(
        backend, dtype, optimizer, l2, output, options, monkeypatch):
    steps = _spy_steps(monkeypatch)
    params, costs = _fit(backend, dtype, optimizer, l2, output, **dict(options))
    assert steps[:4] == [64, 64, 64, 11]  # it ran, last batch short
    monkeypatch.undo()
    _without_workspace(monkeypatch)
    steps = _spy_steps(monkeypatch)
    ref_params, ref_costs = _fit(backend, dtype, optimizer, l2, output, **dict(options))
    assert steps == []
    assert costs == ref_costs
    for k in ref_params:
        assert params[k].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(params[k], ref_params[k], err_msg=k)


@pytest.mark.parametrize("backend", HOST)
def test_skipped_steps_on_the_workspace_match_the_kernel_by_kernel_fit(backend, monkeypatch):
    """on_divergence="skip" restores params and optimizer state; the workspace adopts them."""
    runs = []
    for use in (True, False):
        if not use:
            _without_workspace(monkeypatch)
        rng = np.random.default_rng(0)
        X = (rng.standard_normal((6, 150)) * 1e3).astype(np.float32)
        y = rng.integers(0, 3, 150)
        model = fastnn.Model([6, 5, 3], "relu", "softmax", dtype=np.float32, seed=0)
        h = model.fit(X, y, epochs=2, batch_size=32, optimizer="momentum", lr=1e30,
                      on_divergence="skip", backend=backend, shuffle_seed=0, progress=False)
        runs.append((model.params, h.lr_changes, h.cost))
    (p, changes, cost), (p_ref, changes_ref, cost_ref) = runs
    assert changes and repr(changes) == repr(changes_ref)  # repr: the costs may be nan
    np.testing.assert_array_equal(cost, cost_ref)
    for k in p_ref:
        np.testing.assert_array_equal(p[k], p_ref[k], err_msg=k)


def _kernel_problem(dtype, n_prev=7, n=5, m=19, seed=0):
    rng = np.random.default_rng(seed)
    c = lambda *s: np.ascontiguousarray(rng.standard_normal(s).astype(dtype))  # noqa: E731
    return c(n, n_prev), c(m, n_prev), c(n, 1), c(n, m), rng


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
def test_each_minibatch_kernel_is_bitwise_its_allocating_twin(backend, dtype, activation):
    bk = get_backend(backend)
    W, XR, b, dZ, rng = _kernel_problem(dtype)
    idx = rng.permutation(XR.shape[0])[:11]
    out = np.empty((idx.size, XR.shape[1]), dtype)
    bk.gather_rows_into(XR, idx, out)
    Ab = out.T                                     # the first layer's transposed view
    np.testing.assert_array_equal(Ab, bk.gather_columns(XR, idx))
    YR = XR[:, :3].copy()
    Yb = np.empty((3, idx.size), dtype)
    bk.gather_targets_into(YR, idx, Yb)
    np.testing.assert_array_equal(Yb, YR[idx].T)

    A = np.empty((W.shape[0], idx.size), dtype)
    bk.forward_hidden_into(W, Ab, b, activation, A)
    np.testing.assert_array_equal(A, bk.forward_hidden(W, Ab, b, activation))
    for output in ("softmax", "sigmoid", "identity"):
        Z, AL = np.empty_like(A), np.empty_like(A)
        bk.forward_output_into(W, Ab, b, output, Z, AL)
        Z_ref, AL_ref = bk.forward_output(W, Ab, b, output)
        np.testing.assert_array_equal(Z, Z_ref)
        np.testing.assert_array_equal(AL, AL_ref)
        Y = np.abs(dZ[:, :idx.size]) / 3
        s, t = dtype(0.25), dtype(0.5)
        dZL, dbL = np.empty_like(A), np.empty((A.shape[0], 1), dtype)
        loss = bk.output_delta_into(Z, AL, Y, output, s, t, dZL, dbL)
        dZ_ref, db_ref, loss_ref = bk.output_delta(Z, AL, Y, output, s, t)
        np.testing.assert_array_equal(dZL, dZ_ref)
        np.testing.assert_array_equal(dbL, db_ref)
        assert loss == loss_ref

    dA = dZ[:, :idx.size].copy()
    db = np.empty((A.shape[0], 1), dtype)
    dZ_ref, db_ref = bk.backward_hidden(dA.copy(), A, activation, dtype(0.5))
    bk.backward_hidden_into(dA, A, activation, dtype(0.5), db)
    np.testing.assert_array_equal(dA, dZ_ref)
    np.testing.assert_array_equal(db, db_ref)

    for scale, l2_scale in ((dtype(1), dtype(0)), (dtype(0.1), dtype(0)), (dtype(0.1), dtype(0.3))):
        flat = np.zeros(W.size + 4, dtype)
        dW = flat[2:2 + W.size].reshape(W.shape)  # a view into a flat array, as the workspace's
        bk.weight_grad_into(dA, Ab, W, scale, l2_scale, dW)
        np.testing.assert_array_equal(dW, bk.weight_grad(dA, Ab, W, scale, l2_scale))
    dprev = np.empty((W.shape[1], idx.size), dtype)
    bk.input_grad_into(W, dA, dprev)
    np.testing.assert_array_equal(dprev, bk.input_grad(W, dA))


def test_the_minibatch_kernels_are_optional_and_listed():
    assert set(_interface.MINIBATCH_KERNELS) <= set(_interface.OPTIONAL_KERNELS)
    assert not set(_interface.MINIBATCH_KERNELS) & set(_interface.KERNELS)
    for name in ("numpy", "numba", "numba-parallel"):
        if name in REGISTRY and fastnn.available_backends()[name] == "available":
            assert engine.MinibatchWorkspace.supports(get_backend(name), "softmax")
            assert not engine.MinibatchWorkspace.supports(get_backend(name), "exp")


def test_the_workspace_views_share_the_flat_arrays():
    bk = get_backend("numpy")
    ws = engine.MinibatchWorkspace(bk, [4, 3, 2], np.float32)
    assert [v.shape for v in ws.params] == [(3, 4), (3, 1), (2, 3), (2, 1)]
    ws.params[2][...] = 7
    ws.params[1][...] = 5
    # weights first (W1, W2), then biases (b1, b2)
    np.testing.assert_array_equal(ws.P_flat, [0] * 12 + [7] * 6 + [5] * 3 + [0] * 2)
    assert all(np.shares_memory(v, ws.G_flat) for v in ws.grads)


stochastic = importlib.import_module("fastnn.sklearn._stochastic")

SK_CASES = [
    ("classifier", dict(solver="adam", alpha=0.01)),
    ("classifier", dict(solver="sgd", momentum=0.9, nesterovs_momentum=True, shuffle=False)),
    ("classifier", dict(solver="sgd", momentum=0.5, nesterovs_momentum=False,
                        learning_rate="invscaling", early_stopping=True)),
    ("regressor", dict(solver="adam", alpha=0.0, activation="tanh")),
    ("regressor", dict(solver="sgd", momentum=0.0, alpha=0.1)),
]


def _sk_fit(kind, backend, dtype, options, sample_weight=None):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((203, 8)).astype(dtype)
    y = rng.integers(0, 3, 203) if kind == "classifier" else rng.standard_normal((203, 2))
    cls = fastnn.MLPClassifier if kind == "classifier" else fastnn.MLPRegressor
    est = cls(hidden_layer_sizes=(9, 5), batch_size=64, max_iter=3, random_state=0,
              learning_rate_init=0.01, backend=backend, **options)
    with pytest.warns(Warning):  # ConvergenceWarning after max_iter=3
        est.fit(X, y, sample_weight=sample_weight)
    if not options.get("early_stopping"):
        est.partial_fit(X, y, sample_weight=sample_weight)
    return est


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind, options", SK_CASES)
def test_estimator_epochs_on_the_workspace_are_bitwise_the_kernel_by_kernel_ones(
        backend, dtype, kind, options, monkeypatch):
    steps = _spy_steps(monkeypatch)
    est = _sk_fit(kind, backend, dtype, options)
    assert 11 in steps[:4] or options.get("early_stopping")  # it ran, last batch short
    assert steps
    monkeypatch.undo()
    monkeypatch.setattr(stochastic.MinibatchWorkspace, "supports",
                        staticmethod(lambda bk, output: False))
    steps = _spy_steps(monkeypatch)
    ref = _sk_fit(kind, backend, dtype, options)
    assert steps == []
    assert est.loss_curve_ == ref.loss_curve_
    assert est.n_iter_ == ref.n_iter_
    for a, b in zip(est.coefs_ + est.intercepts_, ref.coefs_ + ref.intercepts_):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", HOST)
def test_weighted_epochs_run_kernel_by_kernel(backend, monkeypatch):
    """Sample weights scale the output delta on the host (engine._host_output_delta),
    which the workspace has no twin of: a weighted fit keeps the kernel-by-kernel epoch."""
    steps = _spy_steps(monkeypatch)
    _sk_fit("classifier", backend, np.float32, dict(solver="adam"),
            sample_weight=np.linspace(0.5, 2, 203))
    assert steps == []
