"""The public engine (fastnn.engine): its per-layer hook, its three backward
functions and the backward pass from a given output delta."""

import numpy as np
import pytest

from fastnn import engine
from fastnn.backends import get_backend

from conftest import backend_params, make_problem

NUMBA = ["numba", "numba-parallel"]
DIMS = [4, 6, 5, 3]


def _problem(bk, output="softmax", dtype=np.float64, m=11):
    params, X, Y = make_problem(DIMS, m, output, dtype, seed=4)
    L = len(DIMS) - 1
    Ws = [bk.to_device(params[f"W{l}"].copy()) for l in range(1, L + 1)]
    bs = [bk.to_device(params[f"b{l}"].copy()) for l in range(1, L + 1)]
    return Ws, bs, bk.to_device(X), bk.to_device(Y)


def _recorder():
    calls = []

    def hook(l, arrays):
        calls.append((l, {k: np.array(v, copy=True) for k, v in arrays.items()}))
    return calls, hook


@pytest.mark.parametrize("name", backend_params(["numpy", *NUMBA]))
def test_hook_sees_every_layer_in_order_and_changes_nothing(name):
    bk = get_backend(name)
    Ws, bs, X, Y = _problem(bk)
    args = ("tanh", "softmax", "deferred", "fused", 0.2)
    As0, ZL0 = engine.forward(bk, Ws, bs, X, "tanh", "softmax")
    ref = engine.backward(bk, Ws, As0, ZL0, Y, *args[:2], *args[2:])
    calls, hook = _recorder()
    As, ZL = engine.forward(bk, Ws, bs, X, "tanh", "softmax", hook=hook)
    dWs, dbs, loss = engine.backward(bk, Ws, As, ZL, Y, *args[:2], *args[2:], hook=hook)
    L, m = len(Ws), X.shape[1]
    assert [l for l, _ in calls] == [1, 2, 3, 3, 2, 1]
    for l, arrays in calls[:L - 1]:
        assert set(arrays) == {"A"} and np.array_equal(arrays["A"], As[l])
    assert set(calls[L - 1][1]) == {"Z", "A"} and np.array_equal(calls[L - 1][1]["Z"], ZL)
    for l, arrays in calls[L:]:
        assert set(arrays) == ({"dZ", "db", "dW", "dA_prev"} if l > 1 else {"dZ", "db", "dW"})
        assert arrays["dZ"].shape == (DIMS[l], m)
        if l > 1:
            assert np.array_equal(arrays["dA_prev"], bk.input_grad(Ws[l - 1], arrays["dZ"]))
        assert np.array_equal(arrays["dW"], dWs[l - 1]) and np.array_equal(arrays["db"], dbs[l - 1])
    # The hook observes: the results are bitwise those of the run without it.
    assert loss == ref[2]
    for a, b in zip(dWs + dbs, ref[0] + ref[1]):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("name", backend_params(["numpy", *NUMBA]))
@pytest.mark.parametrize("scaling", ["deferred", "absorbed", "sum"])
def test_backward_products_and_deltas_say_what_they_return(name, scaling):
    """backward_products: dZ @ A_prev.T (no scale, no L2); backward_deltas: each dZ;
    both with backward's db and loss."""
    bk = get_backend(name)
    Ws, bs, X, Y = _problem(bk, "sigmoid")
    As, ZL = engine.forward(bk, Ws, bs, X, "relu", "sigmoid")
    args = (bk, Ws, As, ZL, Y, "relu", "sigmoid", scaling, "fused", 0.3)
    full = engine.backward(*args)
    calls, hook = _recorder()
    products = engine.backward_products(*args)
    deltas = engine.backward_deltas(*args, hook=hook)
    assert [set(a) - {"dA_prev"} for _, a in calls] == [{"dZ", "db"}] * len(Ws)
    for l, (P, dZ) in enumerate(zip(products[0], deltas[0])):
        assert dZ.shape == (DIMS[l + 1], X.shape[1])
        assert np.array_equal(bk.weight_grad(dZ, As[l], Ws[l], Ws[l].dtype.type(1),
                                             Ws[l].dtype.type(0)), P)
    _, w_scale = engine.scales(scaling, X.shape[1], X.dtype)
    l2_m = X.dtype.type(0.3 / X.shape[1])
    for l, (P, dW) in enumerate(zip(products[0], full[0])):
        assert np.array_equal(bk.weight_grad(deltas[0][l], As[l], Ws[l], w_scale, l2_m), dW)
    for run in (products, deltas):
        assert run[2] == full[2]
        assert all(np.array_equal(a, b) for a, b in zip(run[1], full[1]))


@pytest.mark.parametrize("name", backend_params(["numpy", *NUMBA]))
@pytest.mark.parametrize("scaling", ["deferred", "absorbed", "sum"])
def test_backward_from_delta_is_the_rest_of_the_pass(name, scaling):
    """Started from backward_deltas' own dZ[L], db[L], backward_from_delta returns
    the same dZ[l], db[l] and calls the hook with the same arrays, L down to 1."""
    bk = get_backend(name)
    Ws, bs, X, Y = _problem(bk, "softmax")
    As, ZL = engine.forward(bk, Ws, bs, X, "tanh", "softmax")
    calls_ref, hook_ref = _recorder()
    dZs, dbs, _ = engine.backward_deltas(bk, Ws, As, ZL, Y, "tanh", "softmax", scaling, "fused",
                                         0.0, hook=hook_ref)
    _, w_scale = engine.scales(scaling, X.shape[1], X.dtype)
    calls, hook = _recorder()
    got_dZs, got_dbs = engine.backward_from_delta(bk, Ws, As, np.array(dZs[-1]),
                                                  np.array(dbs[-1]), "tanh", w_scale, hook=hook)
    assert [l for l, _ in calls] == [l for l, _ in calls_ref] == [3, 2, 1]
    for (_, a), (_, b) in zip(calls, calls_ref):
        assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    for a, b in zip(got_dZs + got_dbs, dZs + dbs):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("name", backend_params(NUMBA))
def test_sgd_loop_with_a_hook_runs_step_by_step(name, monkeypatch):
    """A hook cannot run inside the compiled loop: engine.sgd_loop then runs
    sgd_steps (same run as the compiled loop within its rounding: here bitwise
    sgd_steps), calling the hook 2L times a step."""
    bk = get_backend(name)
    runs = {}
    for label in ("steps", "hooked"):
        Ws, bs, X, Y = _problem(bk, "sigmoid")
        if label == "steps":
            costs, steps = engine.sgd_steps(bk, Ws, bs, X, Y, "relu", "sigmoid", "deferred",
                                            0.1, 0.05, 4)
        else:
            calls, hook = _recorder()
            monkeypatch.setattr(bk, "compiled_loop", None)  # would fail if called
            costs, steps = engine.sgd_loop(bk, Ws, bs, X, Y, "relu", "sigmoid", "deferred",
                                           0.1, 0.05, 4, hook=hook)
            assert len(calls) == 4 * 2 * len(Ws)
        runs[label] = (costs, steps, Ws + bs)
    assert runs["hooked"][1] == runs["steps"][1] == 4
    assert np.array_equal(runs["hooked"][0], runs["steps"][0])
    assert all(np.array_equal(a, b) for a, b in zip(runs["hooked"][2], runs["steps"][2]))


@pytest.mark.parametrize("name", backend_params(NUMBA))
def test_sgd_loop_drives_the_compiled_loop(name, monkeypatch):
    """Without a hook, engine.sgd_loop hands the whole loop to compiled_loop; when it
    declines (None), the kernel-by-kernel loop runs."""
    bk = get_backend(name)
    seen = []
    real = bk.compiled_loop
    monkeypatch.setattr(bk, "compiled_loop", lambda *a: seen.append("run") or real(*a))
    Ws, bs, X, Y = _problem(bk, "identity")
    engine.sgd_loop(bk, Ws, bs, X, Y, "tanh", "identity", "sum", 0.0, 0.01, 3)
    assert seen == ["run"]
    monkeypatch.setattr(bk, "compiled_loop", lambda *a: seen.append("declined"))
    runs = []
    for loop in (lambda *a: engine.sgd_loop(bk, *a), lambda *a: engine.sgd_steps(bk, *a)):
        Ws, bs, X, Y = _problem(bk, "identity")
        costs, steps = loop(Ws, bs, X, Y, "tanh", "identity", "sum", 0.0, 0.01, 3)
        runs.append((costs, steps, Ws + bs))
    assert seen == ["run", "declined"]
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][2], runs[1][2]))


def test_the_dual_loop_refuses_a_hook():
    bk = get_backend("numpy")
    Ws, bs, X, Y = _problem(bk, "sigmoid")
    with pytest.raises(ValueError, match="hook"):
        engine.sgd_steps(bk, Ws, bs, X, Y, "relu", "sigmoid", "deferred", 0.0, 0.1, 2,
                         dual=True, hook=lambda l, a: None)
