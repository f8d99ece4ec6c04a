"""The dual first layer of the full-batch loop (``engine.sgd_steps``): the same
run as the primal loop on every backend, chosen only when it pays, stopping
at the same step on divergence, and its ``forward_hidden_offset`` kernel."""

import numpy as np
import pytest

import fastnn
from fastnn import engine
from fastnn.backends import REGISTRY, get_backend

from conftest import assert_close, backend_params, make_problem, n_out_for

HOST = backend_params([n for n in REGISTRY if n != "cuda"])
REF = get_backend("numpy")
DIMS = [40, 5, 4]  # n0 = 40 > m = 7: the shape the dual form is for
M, ITERS = 7, 30


def _run(bk, params, X, Y, hidden, output, scaling, lr, iterations, dual):
    L = len(params) // 2
    Ws = [bk.to_device(params[f"W{l}"].copy()) for l in range(1, L + 1)]
    bs = [bk.to_device(params[f"b{l}"].copy()) for l in range(1, L + 1)]
    costs, steps = engine.sgd_steps(bk, Ws, bs, bk.to_device(X), bk.to_device(Y), hidden, output,
                                    scaling, 0.0, lr, iterations, dual=dual)
    return costs, steps, [bk.to_host(P) for P in Ws + bs]


@pytest.mark.parametrize("name", HOST)
@pytest.mark.parametrize("hidden", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity"])
@pytest.mark.parametrize("scaling", ["deferred", "absorbed", "sum"])
def test_dual_equals_primal(name, dtype, hidden, output, scaling):
    """Same iterates as NumPy's primal loop, within the table's tolerance for
    ITERS steps of reductions over n0 (errors of each step add up like the
    reductions of one longer one)."""
    params, X, Y = make_problem(DIMS + [n_out_for(output)], M, output, dtype, seed=3)
    lr = 0.05 if scaling == "sum" else 0.1
    costs_p, steps_p, P_p = _run(REF, params, X, Y, hidden, output, scaling, lr, ITERS, False)
    costs_d, steps_d, P_d = _run(get_backend(name), params, X, Y, hidden, output, scaling, lr,
                                 ITERS, True)
    assert steps_p == steps_d == ITERS
    n_terms = DIMS[0] * ITERS
    # Magnitudes as for the parameters: an entry's own size plus the largest
    # of the run, since training drives the cost down by cancellation while
    # the rounding errors stay at the scale of the terms it started from.
    assert_close(costs_d, costs_p, dtype, n_terms, magnitude=np.abs(costs_p) + np.max(costs_p),
                 err_msg="costs")
    for got, want in zip(P_d, P_p):
        assert got.dtype == dtype
        assert_close(got, want, dtype, n_terms, magnitude=np.abs(want) + np.max(np.abs(want)))


@pytest.mark.parametrize("name", HOST)
def test_dual_stops_where_the_primal_stops(name, dtype):
    """A learning rate that overflows: both forms stop at the same step and
    keep the parameters of the last finite one."""
    params, X, Y = make_problem(DIMS + [1], M, "identity", dtype, seed=5)
    huge = float(np.finfo(dtype).max) / 10
    with np.errstate(all="ignore"):
        costs_p, steps_p, P_p = _run(REF, params, X, Y, "relu", "identity", "deferred", huge, 4, False)
        costs_d, steps_d, P_d = _run(get_backend(name), params, X, Y, "relu", "identity",
                                     "deferred", huge, 4, True)
    assert steps_p == steps_d < 4
    for got, want in zip(P_d, P_p):
        assert np.isfinite(got).all()
        assert_close(got, want, dtype, DIMS[0] * 4, magnitude=np.abs(want) + np.max(np.abs(want)))


def test_dual_is_chosen_only_when_it_pays(monkeypatch):
    cat = dict(n1=20, n0=12288, m=209)
    assert engine.dual_pays(**cat, l2=0.0, iterations=100)
    assert not engine.dual_pays(**cat, l2=0.0, iterations=1)     # X.T @ X not amortised
    assert not engine.dual_pays(**cat, l2=0.7, iterations=100)   # L2 decays W1
    assert not engine.dual_pays(n1=20, n0=784, m=60000, l2=0.0, iterations=100)  # m > n0
    assert not engine.dual_pays(n1=20, n0=10 ** 6, m=engine.DUAL_MAX_M + 1, l2=0.0,
                                 iterations=10 ** 4)
    # sgd_loop follows dual_pays when not told.
    calls = []
    real = engine._sgd_loop_dual
    monkeypatch.setattr(engine, "_sgd_loop_dual", lambda *a: calls.append(1) or real(*a))
    params, X, Y = make_problem([300, 3, 1], 5, "sigmoid", np.float64, seed=0)
    for iterations, l2, expected in ((50, 0.0, 1), (50, 0.1, 0), (1, 0.0, 0)):
        calls.clear()
        L = len(params) // 2
        Ws = [params[f"W{l}"].copy() for l in range(1, L + 1)]
        bs = [params[f"b{l}"].copy() for l in range(1, L + 1)]
        engine.sgd_steps(REF, Ws, bs, X, Y, "relu", "sigmoid", "deferred", l2, 0.1, iterations)
        assert len(calls) == expected, (iterations, l2)
    with pytest.raises(ValueError, match="L2"):
        engine.sgd_steps(REF, Ws, bs, X, Y, "relu", "sigmoid", "deferred", 0.1, 0.1, 2, dual=True)


@pytest.mark.parametrize("name", HOST)
@pytest.mark.parametrize("activation", ["identity", "relu", "tanh", "sigmoid", "leaky_relu"])
def test_forward_hidden_offset(name, dtype, activation):
    rng = np.random.default_rng(2)
    W, A0, Z0 = (rng.standard_normal(s).astype(dtype) for s in ((6, 9), (9, 1030), (6, 1030)))
    b = rng.standard_normal((6, 1)).astype(dtype)
    got = get_backend(name).forward_hidden_offset(W, A0, b, Z0, activation)
    ref = REF.forward_hidden(W, A0, b, "identity")
    want = REF.forward_hidden(np.eye(6, dtype=dtype), ref + Z0, np.zeros_like(b), activation)
    assert got.dtype == dtype and got.shape == (6, 1030)
    magnitude = np.abs(W) @ np.abs(A0) + np.abs(Z0) + np.abs(b)
    assert_close(got, want, dtype, 9, magnitude=magnitude)
