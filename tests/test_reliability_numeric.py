"""Numeric edge cases (issue 7, part 2), on every backend, float32 and float64.

Saturated outputs (|logit| up to 1e4), all-equal inputs, a single example, a
single class in a batch, extreme learning rates, huge fan-in.  The fused
output route keeps the cost and every gradient finite and equal to the
per-example reference (tests/naive.py) within THE tolerance of conftest; the
course's chain route raises SaturationError naming the cure.  Each case is
listed in docs/reliability.md.
"""

import numpy as np
import pytest

import fastnn
import naive
from fastnn_suite import BACKEND_PARAMS, DTYPES, assert_close, assert_grads_close, make_problem, tol

DT = [pytest.param(np.dtype(d), id=np.dtype(d).name) for d in DTYPES]


def _against_naive(params, X, Y, hidden, output, backend, dtype, scaling="deferred", l2=0.0):
    """gradients() finite and equal to naive within tol; returns (J, grads)."""
    J, grads = fastnn.gradients(params, X, Y, hidden=hidden, output=output, scaling=scaling, l2=l2,
                                backend=backend)
    assert np.isfinite(J) and all(np.isfinite(g).all() for g in grads.values())
    J_ref, g_ref = naive.gradients(params, X, Y, hidden, output, scaling, l2)
    J_mag, g_mag = naive.gradient_magnitudes(params, X, Y, hidden, output, scaling, l2)
    n = max([X.shape[1]] + [W.shape[1] for k, W in params.items() if k.startswith("W")])
    assert_grads_close(grads, g_ref, dtype, n, g_mag, err_msg=f"{backend} {hidden}/{output}")
    assert_close(J, J_ref, dtype, n, J_mag, err_msg="cost")
    return J, grads


def _saturating(output, dtype, logit, seed=0):
    """A [3, 4, n_L] relu net whose largest |output logit| is ``logit``, labels half wrong."""
    n_L = 3 if output == "softmax" else 2
    params, X, Y = make_problem([3, 4, n_L], 6, output, np.float64, seed=seed)
    ZL = fastnn.forward(params, X, output="identity", backend="numpy")[0]
    s = logit / np.max(np.abs(ZL))
    params["W2"] = params["W2"] * s
    params["b2"] = params["b2"] * s
    return {k: v.astype(dtype) for k, v in params.items()}, X.astype(dtype), Y.astype(dtype)


# ------------------------------------------------------------------ saturation


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", DT)
@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
@pytest.mark.parametrize("logit", [30.0, 1e2, 1e4])
def test_saturated_outputs_fused_finite_chain_raises(backend, dtype, output, logit):
    params, X, Y = _saturating(output, dtype, logit)
    AL, cache = fastnn.forward(params, X, output=output, backend=backend)
    saturated = bool(np.any((AL == 0) | (AL == 1)))
    assert saturated or (dtype == np.float64 and logit == 30.0), "premise: the output saturates"
    _against_naive(params, X, Y, "relu", output, backend, dtype)
    for scaling in ("absorbed", "sum"):
        _against_naive(params, X, Y, "relu", output, backend, dtype, scaling=scaling, l2=0.3)
    # The chain route divides by A (and 1 - A for sigmoid): an output of exactly 0 (or 1)
    # must raise; a tiny non-zero output may still give a finite (inaccurate) dZ.
    hard = bool(np.any(AL == 0) or (output == "sigmoid" and np.any(AL == 1)))
    try:
        _, g = fastnn.gradients(params, X, Y, output=output, output_grad="chain", backend=backend)
        assert not hard, "the chain route divided by a saturated output without raising"
        assert all(np.isfinite(v).all() for v in g.values())
    except fastnn.SaturationError as exc:
        assert "output_grad='fused'" in str(exc)
        with pytest.raises(fastnn.SaturationError):
            fastnn.backward(params, cache, Y, output_grad="chain")
    assert hard or logit < 1e4, "premise: |logit| 1e4 saturates to exactly 0/1"
    # the cost from the logits stays finite whatever the saturation
    assert np.isfinite(fastnn.cost(AL, Y, output=output, logits=np.asarray(cache.ZL)))


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", DT)
def test_fit_saturated_fused_trains_chain_raises_naming_the_step(backend, dtype):
    params, X, Y = _saturating("sigmoid", dtype, 1e4)
    model = fastnn.Model([3, 4, 2], "relu", "sigmoid", dtype=dtype)
    model.params = {k: v.copy() for k, v in params.items()}
    h = model.fit(X, Y, epochs=3, lr=1e-6, backend=backend, progress=False)
    assert np.isfinite(h.cost).all() and all(np.isfinite(v).all() for v in model.params.values())
    model.params = {k: v.copy() for k, v in params.items()}
    with pytest.raises(fastnn.SaturationError, match=r"epoch 1, step 1: .*output_grad='fused'"):
        model.fit(X, Y, epochs=3, lr=1e-6, output_grad="chain", backend=backend, progress=False)
    for k in params:  # nothing was applied
        np.testing.assert_array_equal(model.params[k], params[k])


# -------------------------------------------------------- degenerate data


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", DT)
@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity"])
def test_all_equal_inputs(backend, dtype, output):
    """Every column of X the same, and every entry of X the same."""
    n_L = 3 if output == "softmax" else 2
    params, X, Y = make_problem([4, 5, n_L], 7, output, dtype, seed=3)
    for Xe in (np.repeat(X[:, :1], 7, axis=1), np.full_like(X, 0.5), np.zeros_like(X)):
        for hidden in ("relu", "tanh", "sigmoid"):
            _against_naive(params, Xe, Y, hidden, output, backend, dtype)
    model = fastnn.Model([4, 5, n_L], "tanh", output, dtype=dtype, seed=0)
    h = model.fit(np.full_like(X, 0.5), Y, epochs=3, batch_size=3, backend=backend, progress=False)
    assert np.isfinite(h.cost).all()


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", DT)
@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity"])
def test_single_example(backend, dtype, output):
    n_L = 3 if output == "softmax" else 1
    params, X, Y = make_problem([3, 4, n_L], 1, output, dtype, seed=4)
    for hidden in ("relu", "leaky_relu", "tanh"):
        for scaling in ("deferred", "absorbed", "sum"):
            _against_naive(params, X, Y, hidden, output, backend, dtype, scaling=scaling, l2=0.5)
    for batch_size in (None, 1):
        for optimizer in ("sgd", "adam"):
            model = fastnn.Model([3, 4, n_L], "relu", output, dtype=dtype, seed=0)
            h = model.fit(X, Y, epochs=4, batch_size=batch_size, optimizer=optimizer, backend=backend,
                          progress=False)
            assert len(h.cost) == 4 and np.isfinite(h.cost).all()
            assert model.predict(X).shape[-1] == 1


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", DT)
def test_single_class_in_a_batch(backend, dtype):
    """softmax labels all class 2 of 3; sigmoid labels all 1 or all 0."""
    params, X, _ = make_problem([3, 4, 3], 6, "softmax", dtype, seed=5)
    _against_naive(params, X, np.full(6, 2), "relu", "softmax", backend, dtype)
    _against_naive(params, X, np.eye(3, dtype=dtype)[:, [2] * 6], "relu", "softmax", backend, dtype)
    p1, X1, _ = make_problem([3, 4, 1], 6, "sigmoid", dtype, seed=5)
    for label in (0, 1):
        _against_naive(p1, X1, np.full((1, 6), label, dtype), "tanh", "sigmoid", backend, dtype)
    # minibatches sorted by class: every batch holds a single class
    Y = np.repeat([0, 1, 2], 4)
    X12 = make_problem([3, 4, 3], 12, "softmax", dtype, seed=6)[1]
    model = fastnn.Model([3, 4, 3], "relu", "softmax", dtype=dtype, seed=0)
    h = model.fit(X12, Y, epochs=3, batch_size=4, backend=backend, shuffle_seed=0, progress=False)
    assert np.isfinite(h.cost).all()


# ------------------------------------------------------------ learning rates


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", DT)
@pytest.mark.parametrize("batch_size", [None, 2], ids=["full-batch", "minibatch"])
def test_extremely_small_learning_rate(backend, dtype, batch_size):
    """lr just above the dtype's smallest subnormal: finite, nothing moves, cost constant;
    an lr that rounds to 0 (or inf) in the dtype is refused by name."""
    tiny = float(np.finfo(dtype).smallest_subnormal) * 2
    params, X, Y = make_problem([3, 4, 1], 6, "sigmoid", dtype, seed=7)
    model = fastnn.Model([3, 4, 1], dtype=dtype)
    model.params = {k: v.copy() for k, v in params.items()}
    h = model.fit(X, Y, epochs=3, lr=tiny, batch_size=batch_size, backend=backend, shuffle_seed=0,
                  progress=False)
    assert np.isfinite(h.cost).all()
    for k in params:
        np.testing.assert_array_equal(model.params[k], params[k])
    if batch_size is None:
        assert h.cost[0] == h.cost[-1]
    for lr in (tiny / 8, float(np.finfo(dtype).max) * 4 if dtype == np.float32 else 1e309):
        with pytest.raises(fastnn.FastnnValueError, match="lr"):
            model.fit(X, Y, epochs=1, lr=lr, backend=backend, progress=False)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", DT)
@pytest.mark.parametrize("batch_size", [None, 2], ids=["full-batch", "minibatch"])
def test_extremely_large_learning_rate(backend, dtype, batch_size):
    """lr = 1e30 (float32) / 1e300 (float64): every recorded cost is finite, the run stops
    with DivergenceError naming epoch and step, and the params stay finite."""
    lr = 1e30 if dtype == np.float32 else 1e300
    params, X, Y = make_problem([3, 4, 1], 8, "identity", dtype, seed=8)
    model = fastnn.Model([3, 4, 1], "relu", "identity", dtype=dtype, seed=0)
    history = []
    with pytest.raises(fastnn.DivergenceError, match=r"epoch \d+, step \d+: .*lr=1e\+"):
        model.fit(X * 10, Y, epochs=20, lr=lr, batch_size=batch_size, backend=backend, shuffle_seed=0,
                  progress=False, callback=lambda e, m, h: history.append(list(h.cost)))
    assert all(np.isfinite(c).all() for c in history)
    assert all(np.isfinite(v).all() for v in model.params.values())


# ------------------------------------------------------------------ fan-in


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", DT)
def test_huge_fan_in_against_naive(backend, dtype):
    """n_0 = 16384 inputs of size up to ~4e4: finite, and within tol(dtype, n_0) of naive."""
    params, X, Y = make_problem([16384, 3, 2], 3, "softmax", np.float64, seed=9)
    X = (X * 1e4).astype(dtype)
    params = {k: v.astype(dtype) for k, v in params.items()}
    _against_naive(params, X, Y.astype(dtype), "relu", "softmax", backend, dtype)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", DT)
def test_huge_fan_in_million_inputs(backend, dtype):
    """n_0 = 2**20 (one layer of 1 x 2**20 weights): cost and gradients finite, the
    backend equal to the NumPy backend within tol(dtype, 2**20); a fit step stays finite."""
    n0 = 2 ** 20
    rng = np.random.default_rng(10)
    params = {"W1": (rng.standard_normal((1, n0)) * np.sqrt(2 / n0)).astype(dtype),
              "b1": np.zeros((1, 1), dtype)}
    X = (rng.standard_normal((n0, 2)) * 100).astype(dtype)
    Y = np.array([[0, 1]])
    J, g = fastnn.gradients(params, X, Y, hidden="relu", output="sigmoid", backend=backend)
    J_ref, g_ref = fastnn.gradients(params, X, Y, hidden="relu", output="sigmoid", backend="numpy")
    assert np.isfinite(J) and all(np.isfinite(v).all() for v in g.values())
    # |terms| of dW1[i, j] = |A - Y| |x_j| / m and of z: sum_j |w_j x_j| (no cancellation bound needed)
    AL = fastnn.forward(params, X, output="sigmoid", backend="numpy")[0].astype(np.float64)
    mag_dW = (np.abs(AL) + np.abs(Y)) @ np.abs(X.astype(np.float64)).T / 2
    assert_close(g["dW1"], g_ref["dW1"], dtype, n0, mag_dW, err_msg="dW1")
    zmag = np.abs(params["W1"].astype(np.float64)) @ np.abs(X.astype(np.float64))
    assert abs(J - J_ref) <= tol(dtype, n0)[0] * (zmag.sum() + 2)
    model = fastnn.Model([n0, 1], "relu", "sigmoid", dtype=dtype)
    model.params = {k: v.copy() for k, v in params.items()}
    h = model.fit(X, Y, epochs=2, lr=1e-3, backend=backend, progress=False)
    assert np.isfinite(h.cost).all() and all(np.isfinite(v).all() for v in model.params.values())
