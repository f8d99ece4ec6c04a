"""Compiled backends against the NumPy backend: kernels, whole steps, the
compiled loop, block boundaries, float32 reductions, thread-count independence."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import engine
from fastnn.backends import REGISTRY, get_backend
from fastnn.backends._numba_config import BLOCK

from conftest import assert_close, backend_params, make_problem, n_out_for, requires_backends, tol
import naive

COMPILED = backend_params([n for n in REGISTRY if n not in ("numpy", "cuda")])
HIDDEN = ("identity", "sigmoid", "tanh", "relu", "leaky_relu")
OUTPUTS = ("sigmoid", "softmax", "identity")
REF = get_backend("numpy")


def _lists(params):
    L = len(params) // 2
    return ([params[f"W{l}"].copy() for l in range(1, L + 1)],
            [params[f"b{l}"].copy() for l in range(1, L + 1)])


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("m", [1, 7, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 3])
def test_kernels_across_block_boundaries(name, dtype, m):
    """Every kernel with m on both sides of the reduction block size."""
    bk = get_backend(name)
    rng = np.random.default_rng(m)
    n = 5
    dA = rng.standard_normal((n, m)).astype(dtype)
    A = rng.standard_normal((n, m)).astype(dtype)
    scale = dtype.type(1.0 / m)
    rtol, atol = tol(dtype, m)
    for act in HIDDEN:
        a = np.tanh(A) if act == "tanh" else (1 / (1 + np.exp(-A)) if act == "sigmoid" else A)
        a = np.maximum(a, 0) if act == "relu" else a
        a = a.astype(dtype)
        dz_ref, db_ref = REF.backward_hidden(dA.copy(), a, act, scale)
        dz, db = bk.backward_hidden(dA.copy(), a, act, scale)
        assert dz.dtype == db.dtype == dtype
        assert_close(dz, dz_ref, dtype, 1, err_msg=f"dZ {act}")
        assert_close(db, db_ref, dtype, m, magnitude=np.abs(dz_ref).sum(axis=1, keepdims=True) * scale,
                     err_msg=f"db {act}")
    Y = (rng.random((n, m)) > 0.5).astype(dtype)
    P = (1 / (1 + np.exp(-A))).astype(dtype)
    for out in ("sigmoid", "identity"):
        ref = REF.output_delta(A, P, Y, out, scale, scale)
        got = bk.output_delta(A, P, Y, out, scale, scale)
        assert_close(got[0], ref[0], dtype, 1, err_msg="output dZ")
        assert_close(got[1], ref[1], dtype, m, magnitude=np.abs(ref[0]).sum(axis=1, keepdims=True) * scale)
        assert abs(got[2] - ref[2]) <= rtol * abs(ref[2]) + atol


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("m", [1, 7, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 3])
def test_softmax_output_across_block_boundaries(name, dtype, m):
    """The compiled bias + softmax against the NumPy backend and the per-example reference."""
    bk = get_backend(name)
    rng = np.random.default_rng(m)
    n, k = 10, 6
    W = (3 * rng.standard_normal((n, k))).astype(dtype)
    A0, b = rng.standard_normal((k, m)).astype(dtype), rng.standard_normal((n, 1)).astype(dtype)
    Z, A = bk.forward_output(W, A0, b, "softmax")
    Z_ref, A_ref = REF.forward_output(W, A0, b, "softmax")
    assert Z.dtype == A.dtype == dtype
    np.testing.assert_array_equal(Z, Z_ref)  # same BLAS product, same bias add
    # exp within an ulp of NumPy's, then n terms summed and one division
    assert_close(A, A_ref, dtype, n, magnitude=A_ref)
    Z64 = Z_ref.astype(np.float64)
    for j in sorted({0, m // 2, m - 1}):
        naive_col = naive.output_activation("softmax", list(Z64[:, j]))
        assert_close(A[:, j], np.array(naive_col), dtype, n, magnitude=np.array(naive_col))


@pytest.mark.parametrize("name", COMPILED)
def test_softmax_output_non_finite_like_numpy(name, dtype):
    """A NaN or an infinite logit makes its column NaN, as in the NumPy backend; huge
    finite logits do not overflow."""
    bk = get_backend(name)
    big = np.finfo(dtype).max
    Z0 = np.array([[np.nan, 1, np.inf, -np.inf, big, 0], [0, 0, 0, 0, -big, -np.inf]], dtype)
    W, b = np.eye(2, dtype=dtype), np.zeros((2, 1), dtype)
    with np.errstate(all="ignore"):
        for A0 in (Z0, Z0[::-1].copy()):
            _, A = bk.forward_output(W, np.ascontiguousarray(A0), b, "softmax")
            _, A_ref = REF.forward_output(W, np.ascontiguousarray(A0), b, "softmax")
            np.testing.assert_array_equal(np.isnan(A), np.isnan(A_ref))
            finite = ~np.isnan(A_ref)
            assert_close(A[finite], A_ref[finite], dtype, 2, magnitude=np.ones(finite.sum()))


@pytest.mark.parametrize("name", ["numpy"] + COMPILED)
def test_gather_columns_is_the_column_batch(name, dtype):
    """gather_columns(X.T, idx) has the values of X[:, idx], for index arrays and slices."""
    bk = get_backend(name)
    X = np.random.default_rng(4).standard_normal((7, 50)).astype(dtype)
    XR = np.ascontiguousarray(X.T)
    for idx in (np.array([3, 0, 49, 3]), np.arange(50)[::-1].copy(), np.array([12]),
                slice(10, 27), slice(49, 50)):
        got = np.asarray(bk.to_host(bk.gather_columns(XR, idx)))
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, X[:, idx])


@pytest.mark.parametrize("name", ["numpy"] + COMPILED)
@pytest.mark.parametrize("b", [1, 7, 8, 9, 16, 23])
def test_gather_rows_into_is_the_row_batch(name, dtype, b):
    """gather_rows_into(XR, idx, out) is XR[idx] for batches of whole groups of rows copied
    side by side, a short last group, and repeated indices, from row-major and column-major
    examples; rows of out past the batch untouched."""
    bk = get_backend(name)
    rng = np.random.default_rng(b)
    XR = rng.standard_normal((40, 13)).astype(dtype)
    for src in (XR, np.asfortranarray(XR)):         # rows contiguous, rows strided
        for idx in (rng.permutation(40)[:b], rng.integers(0, 40, b)):
            out = np.full((b + 2, 13), 7, dtype)
            bk.gather_rows_into(src, idx, out[:b])
            np.testing.assert_array_equal(out[:b], XR[idx])
            assert (out[b:] == 7).all()


@pytest.mark.parametrize("name", ["numpy"] + COMPILED)
@pytest.mark.parametrize("output", ["softmax", "identity"])
def test_step_on_gathered_batch(name, dtype, output):
    """A gathered (possibly transposed-view) batch as the first layer's input gives the
    gradients of the same batch as a C-contiguous array, also for a one-layer net."""
    bk = get_backend(name)
    for dims in ([9, 8, 6, n_out_for(output)], [9, n_out_for(output)]):
        params, X, Y = make_problem(dims, 40, output, dtype, seed=6)
        XR = np.ascontiguousarray(X.T)
        idx = np.random.default_rng(1).permutation(40)[:17]
        Yb = np.ascontiguousarray(Y[:, idx])
        out = []
        for Xb in (bk.gather_columns(XR, idx), bk.to_device(np.ascontiguousarray(X[:, idx]))):
            Ws, bs = _lists(params)
            As, ZL = engine.forward(bk, Ws, bs, Xb, "relu", output)
            out.append(engine.backward(bk, Ws, As, ZL, bk.to_device(Yb), "relu", output,
                                         "deferred", "fused", 0.1))
        (dWs, dbs, loss), (dWs_ref, dbs_ref, loss_ref) = out
        for a, e in zip(dWs + dbs, dWs_ref + dbs_ref):
            a, e = np.asarray(bk.to_host(a)), np.asarray(bk.to_host(e))
            assert a.dtype == dtype
            assert_close(a, e, dtype, 40, magnitude=np.abs(e) + np.abs(e).max())
        assert abs(loss - loss_ref) <= tol(dtype, 40)[0] * abs(loss_ref)


def _lane_sum_reference(r):
    """sum_slice's order written out in NumPy: runs of 128 summed as 16 vector adds of
    8 lanes in r's dtype, lanes combined pairwise, run totals added with Neumaier."""
    total, comp, j = 0.0, 0.0, 0
    while j + 128 <= r.size:
        acc = r[j:j + 8].copy()
        for q in range(1, 16):
            acc = acc + r[j + 8 * q:j + 8 * q + 8]
        x = float(((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])))
        t = total + x
        comp += (total - t) + x if abs(total) >= abs(x) else (x - t) + total
        total, j = t, j + 128
    tail = 0.0
    for v in r[j:]:
        tail += float(v)
    return (total + tail) + comp


def test_sum_slice_is_its_lane_order_bitwise(dtype):
    """The SIMD base case (lanes.run_sum128) adds the same values in the same order as
    the written-out reference: bitwise equal, for any length and any start offset."""
    from fastnn.backends._numba_kernels.activation import sum_slice
    rng = np.random.default_rng(5)
    big = (rng.standard_normal(3000) * 10.0 ** rng.uniform(-6, 6, 3000)).astype(dtype)
    for n in (0, 1, 127, 128, 129, 255, 256, 1000, 1024, 2051):
        for offset in (0, 1, 5):
            r = big[offset:offset + n]
            assert sum_slice(r) == _lane_sum_reference(r), (n, offset)


@pytest.mark.parametrize("name", COMPILED)
def test_optimizer_updates_are_bitwise_numpy(name, dtype):
    """Same operations in the same order: the updates agree exactly."""
    bk = get_backend(name)
    rng = np.random.default_rng(0)
    P0, G = rng.standard_normal((2, 37, 29)).astype(dtype)
    c = dtype.type
    results = {}
    for b in (REF, bk):
        P, V, M, S = P0.copy(), np.zeros_like(P0), np.zeros_like(P0), np.zeros_like(P0)
        b.sgd_update(P, G, c(0.1))
        b.momentum_update(P, G, V, c(0.1), c(0.9))
        for t in (1, 2, 3):
            b.adam_update(P, G, M, S, c(0.01), c(0.9), c(0.999), c(1e-8), t)
        results[b.NAME] = (P, V, M, S)
    for x, y in zip(results["numpy"], results[bk.NAME]):
        assert x.dtype == y.dtype == dtype
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", ["numpy"] + COMPILED)
@pytest.mark.parametrize("scaling", ["deferred", "absorbed"])
def test_adam_folds_the_weight_epilogue_bitwise(name, dtype, scaling):
    """adam_update(..., g_scale, l2) on the bare dZ @ A_prev.T is the same update, to the
    bit, as weight_grad's epilogue followed by a plain adam_update, and the same as the
    NumPy backend; each step is also checked against a float64 Adam on the full gradient."""
    bk = get_backend(name)
    rng = np.random.default_rng(2)
    m = 13
    W0 = rng.standard_normal((6, 5)).astype(dtype)
    c = dtype.type
    w_scale = engine.scales(scaling, m, np.dtype(dtype))[1]
    l2 = c(0.7 / m)
    batches = [(rng.standard_normal((6, m)).astype(dtype), rng.standard_normal((5, m)).astype(dtype))
               for _ in range(3)]
    runs = {}
    for route in ("epilogue", "folded", "numpy-folded"):
        b = REF if route == "numpy-folded" else bk
        W, M, V = W0.copy(), np.zeros_like(W0), np.zeros_like(W0)
        W64, M64, V64 = W0.astype(np.float64), np.zeros(W0.shape), np.zeros(W0.shape)
        for t, (dZ, A) in enumerate(batches, start=1):
            if route == "epilogue":
                G = b.weight_grad(dZ, A, W, w_scale, l2)
                b.adam_update(W, G, M, V, c(0.01), c(0.9), c(0.999), c(1e-8), t)
            else:
                G = b.weight_grad(dZ, A, W, c(1), c(0))
                b.adam_update(W, G, M, V, c(0.01), c(0.9), c(0.999), c(1e-8), t, w_scale, l2)
            # float64 Adam (textbook form) on the full gradient, one step from the same W
            g = float(w_scale) * (dZ.astype(np.float64) @ A.T.astype(np.float64)) \
                + float(l2) * W64
            M64 = 0.9 * M64 + 0.1 * g
            V64 = 0.999 * V64 + 0.001 * g * g
            W64 = W64 - 0.01 * (M64 / (1 - 0.9 ** t)) / (np.sqrt(V64 / (1 - 0.999 ** t)) + 1e-8)
            assert_close(W, W64, dtype, 2 * m, magnitude=np.abs(W64) + 0.01)
            W64 = W.astype(np.float64)  # next step from where the backend is
            M64, V64 = M.astype(np.float64), V.astype(np.float64)
        runs[route] = (W, M, V)
    for route in ("folded", "numpy-folded"):
        for x, y in zip(runs["epilogue"], runs[route]):
            assert x.dtype == y.dtype == dtype
            np.testing.assert_array_equal(x, y, err_msg=route)


@pytest.mark.parametrize("name", COMPILED)
def test_all_finite_finds_any_bad_entry(name, dtype):
    """One inf, -inf or NaN anywhere (first, last, either side of a block edge) is found."""
    bk = get_backend(name)
    n = 2 * BLOCK + 3
    x = np.random.default_rng(1).standard_normal(n).astype(dtype)
    big = np.finfo(dtype).max
    x[0], x[-1] = big, -big  # finite extremes: x - x is still 0
    assert bk.all_finite(x) and REF.all_finite(x)
    for pos in (0, 1, BLOCK - 1, BLOCK, BLOCK + 1, n - 1):
        for bad in (np.inf, -np.inf, np.nan):
            y = x.copy()
            y[pos] = bad
            assert not bk.all_finite(y), (pos, bad)
            assert bk.all_finite(y) == REF.all_finite(y)
            assert not bk.all_finite(y.reshape(1, n)), "2-D input"


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("scaling", ["deferred", "absorbed", "sum"])
def test_training_step_matches_numpy(name, dtype, hidden, output, scaling):
    """forward + backward + update through each backend, against the NumPy backend."""
    params, X, Y = make_problem([4, 6, 5, n_out_for(output)], 11, output, dtype, seed=3)
    grads = {}
    for b in ("numpy", name):
        bk = get_backend(b)
        Ws, bs = _lists(params)
        As, ZL = engine.forward(bk, Ws, bs, X, hidden, output)
        dWs, dbs, loss = engine.backward(bk, Ws, As, ZL, Y, hidden, output, scaling, "fused", 0.3)
        for P, G in zip(Ws + bs, dWs + dbs):
            bk.sgd_update(P, G, dtype.type(0.05))
        grads[b] = (Ws + bs, loss)
    for x, y in zip(grads["numpy"][0], grads[name][0]):
        # P - lr*G can cancel: judge the error against the size of the parameters.
        assert_close(y, x, dtype, 16, magnitude=np.abs(x) + np.max(np.abs(x)))
    assert abs(grads[name][1] - grads["numpy"][1]) <= tol(dtype, 64)[0] * abs(grads["numpy"][1])


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("hidden, output", [("tanh", "sigmoid"), ("relu", "softmax"),
                                            ("leaky_relu", "identity"), ("sigmoid", "sigmoid"),
                                            ("identity", "softmax")])
def test_compiled_loop_equals_step_by_step(name, dtype, hidden, output):
    """sgd_loop (one compiled call) and the kernel-by-kernel loop give the same run."""
    params, X, Y = make_problem([3, 5, 4, n_out_for(output)], 23, output, dtype, seed=1)
    runs = {}
    for label, fn in (("steps", lambda *a: engine.sgd_steps(REF, *a)),
                      ("loop", lambda *a: engine.sgd_loop(get_backend(name), *a))):
        Ws, bs = _lists(params)
        costs, steps = fn(Ws, bs, X, Y, hidden, output, "absorbed", 0.1, 0.1, 25)
        assert steps == 25
        runs[label] = (costs, Ws + bs)
    rtol, _ = tol(dtype, 23 * 25)
    np.testing.assert_allclose(runs["loop"][0], runs["steps"][0], rtol=rtol)
    for x, y in zip(runs["steps"][1], runs["loop"][1]):
        assert y.dtype == dtype
        assert_close(y, x, dtype, 23 * 25, magnitude=np.abs(x) + np.max(np.abs(x)))


@pytest.mark.parametrize("name", ["numpy"] + COMPILED)
@pytest.mark.parametrize("blas", ["numpy's gemm", "two steps"])
def test_weight_step_is_beta_w_plus_alpha_product(name, dtype, blas, monkeypatch):
    """weight_step(W, dZ, A, alpha, beta) updates W in place to beta W + alpha dZ @ A.T,
    against a float64 reference, with NumPy's own gemm and with the two-step fallback."""
    from fastnn.backends import _blas
    if blas == "two steps":
        monkeypatch.setattr(_blas, "GEMM", {})
    bk = get_backend(name)
    rng = np.random.default_rng(8)
    for n, k, m in [(1, 1, 1), (7, 5, 11), (33, 64, 1030)]:
        W = rng.standard_normal((n, k)).astype(dtype)
        dZ, A = rng.standard_normal((n, m)).astype(dtype), rng.standard_normal((k, m)).astype(dtype)
        for alpha, beta in [(-0.01, 1.0), (-0.5 / m, 0.97)]:
            W64, target = W.astype(np.float64), W.copy()
            ref = beta * W64 + alpha * (dZ.astype(np.float64) @ A.T.astype(np.float64))
            assert bk.weight_step(target, dZ, A, dtype.type(alpha), dtype.type(beta)) is None
            assert target.dtype == dtype
            mag = np.abs(W64) + abs(alpha) * (np.abs(dZ.astype(np.float64)) @ np.abs(A.T))
            assert_close(target, ref, dtype, m, magnitude=mag, err_msg=f"{(n, k, m)} {alpha}")


def test_numpy_gemm_is_found_where_numpy_ships_openblas():
    """The fused update uses the BLAS NumPy loaded; where NumPy ships its own OpenBLAS
    (the PyPI wheels on Linux) the symbols must be found, else the speed-up is silently lost."""
    import glob
    from fastnn.backends import _blas
    bundled = glob.glob(os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs",
                                     "*openblas*"))
    if not bundled or _blas._loaded_libraries() is None:
        pytest.skip("NumPy does not ship its own OpenBLAS here (or no /proc/self/maps)")
    assert _blas.LIBRARY is not None and set(_blas.GEMM) == {np.dtype(np.float32),
                                                            np.dtype(np.float64)}


@pytest.mark.parametrize("name", ["numpy"] + COMPILED)
def test_max_abs(name, dtype):
    bk = get_backend(name)
    x = np.random.default_rng(3).standard_normal((5, 2 * BLOCK + 3)).astype(dtype)
    assert bk.max_abs(x) == float(np.abs(x).max())
    x[2, 7] = -40.0
    assert bk.max_abs(x) == 40.0
    assert bk.max_abs(np.zeros((2, 0), dtype)) == 0.0
    for bad, want in [(np.inf, np.inf), (-np.inf, np.inf), (np.nan, None)]:
        y = x.copy()
        y[4, -1] = bad
        got = bk.max_abs(y)
        assert (np.isnan(got) or got == np.inf) if want is None else got == want, (bad, got)


def _plain_sgd_loop(bk, Ws, bs, X, Y, hidden, output, scaling, l2, lr, iterations):
    """The step-by-step reference for sgd_loop: every dW formed, checked, then applied."""
    costs, m = np.full(iterations, np.nan), X.shape[1]
    for it in range(iterations):
        As, ZL = engine.forward(bk, Ws, bs, X, hidden, output)
        dWs, dbs, loss = engine.backward(bk, Ws, As, ZL, Y, hidden, output, scaling, "fused", l2)
        costs[it] = engine.cost(bk, loss, Ws, m, l2)
        if not np.isfinite(costs[it]) or not all(bk.all_finite(g) for g in dWs + dbs):
            return costs, it
        for P, G in zip(Ws + bs, dWs + dbs):
            bk.sgd_update(P, G, X.dtype.type(lr))
    return costs, iterations


@pytest.mark.parametrize("name", ["numpy"] + COMPILED)
@pytest.mark.parametrize("route", ["weight_step", "near overflow: dW formed"])
@pytest.mark.parametrize("scaling, l2", [("deferred", 0.3), ("absorbed", 0.0)])
def test_sgd_loop_equals_plain_steps(name, dtype, route, scaling, l2, monkeypatch):
    """The kernel-by-kernel sgd_loop (each W updated by one weight_step GEMM, or, when
    the bound on dW fails, dW formed and checked) runs as the plain step loop."""
    if route != "weight_step":
        monkeypatch.setattr(engine, "_weight_grad_bounded", lambda *a: False)
    bk = get_backend(name)
    params, X, Y = make_problem([6, 9, 5, 3], 37, "softmax", dtype, seed=12)
    runs = {}
    for label, fn in (("plain", _plain_sgd_loop),
                      ("sgd_loop", lambda *a: engine.sgd_steps(*a, dual=False))):
        Ws, bs = _lists(params)
        costs, steps = fn(bk, Ws, bs, X, Y, "tanh", "softmax", scaling, l2, 0.2, 15)
        assert steps == 15
        runs[label] = (costs, Ws + bs)
    n = 37 * 15
    np.testing.assert_allclose(runs["sgd_loop"][0], runs["plain"][0], rtol=tol(dtype, n)[0])
    for x, y in zip(runs["plain"][1], runs["sgd_loop"][1]):
        assert y.dtype == dtype
        assert_close(y, x, dtype, n, magnitude=np.abs(x) + np.max(np.abs(x)))


#: The divergence tests drive weights to overflow on purpose: NumPy's warnings
#: for it are expected there (and only there).
DIVERGENCE_WARNINGS = [pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
                       pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")]


@DIVERGENCE_WARNINGS[0]
@DIVERGENCE_WARNINGS[1]
@pytest.mark.parametrize("name", ["numpy"] + COMPILED)
def test_sgd_loop_fused_update_stops_where_plain_steps_stop(name):
    """Divergence through the weight_step route: the loop stops at the same step as the
    plain loop, without applying the failing step."""
    params, X, Y = make_problem([3, 8, 1], 20, "identity", np.float64, seed=2)
    X = X * 1e3
    runs = {}
    for label, fn in (("plain", _plain_sgd_loop),
                      ("sgd_loop", lambda *a: engine.sgd_steps(*a, dual=False))):
        Ws, bs = _lists(params)
        costs, steps = fn(get_backend(name), Ws, bs, X, Y, "relu", "identity", "deferred", 0.0,
                          1e6, 50)
        runs[label] = steps
        assert steps < 50 and np.isfinite(costs[:steps]).all()
        assert all(np.isfinite(w).all() for w in Ws + bs)
    assert runs["sgd_loop"] == runs["plain"]


@DIVERGENCE_WARNINGS[0]
@DIVERGENCE_WARNINGS[1]
@pytest.mark.parametrize("name", COMPILED)
def test_compiled_loop_stops_at_divergence(name):
    params, X, Y = make_problem([3, 8, 1], 20, "identity", np.float64, seed=2)
    X = X * 1e3
    Ws, bs = _lists(params)
    costs, steps = engine.sgd_loop(get_backend(name), Ws, bs, X, Y, "relu", "identity",
                                   "deferred", 0.0, 1e6, 50)
    assert steps < 50
    assert np.isfinite(costs[:steps]).all()
    # The step that produced a non-finite cost or gradient was not applied.
    assert all(np.isfinite(w).all() for w in Ws)
    ref_Ws, ref_bs = _lists(params)
    ref_costs, ref_steps = engine.sgd_steps(REF, ref_Ws, ref_bs, X, Y, "relu", "identity",
                                             "deferred", 0.0, 1e6, 50)
    assert ref_steps == steps


@pytest.mark.parametrize("name", COMPILED)
@settings(max_examples=15, deadline=None)
@given(dims=st.lists(st.integers(1, 7), min_size=2, max_size=5),
       m=st.sampled_from([1, 2, 3, 5, 17, 129, BLOCK + 5]),
       hidden=st.sampled_from(HIDDEN), output=st.sampled_from(OUTPUTS),
       f32=st.booleans())
def test_gradients_match_numpy_any_shape(name, dims, m, hidden, output, f32):
    dtype = np.dtype(np.float32 if f32 else np.float64)
    if output == "softmax":
        dims[-1] = max(dims[-1], 2)
    params, X, Y = make_problem(dims, m, output, dtype, seed=len(dims) * 100 + m)
    c_ref, g_ref = fastnn.gradients(params, X, Y, hidden=hidden, output=output, backend="numpy")
    c, g = fastnn.gradients(params, X, Y, hidden=hidden, output=output, backend=name)
    n = max(m, max(dims))
    # Each entry against the sum of |terms| it is made of (conftest's model): the two
    # backends round differently (the float32 softmax loss cancels log-sum-exp against
    # z_y), and a small entry made of large terms may differ by many ulp of itself.
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    J_mag, mags = naive.gradient_magnitudes(p64, X.astype(np.float64), Y.astype(np.float64),
                                            hidden, output)
    for k in g_ref:
        assert g[k].dtype == dtype
        assert_close(g[k], g_ref[k], dtype, n, magnitude=mags[k],
                     err_msg=k)
    assert_close(c, c_ref, dtype, n, magnitude=J_mag, err_msg="cost")


@pytest.mark.parametrize("name", COMPILED)
def test_model_fit_matches_numpy(name, dtype):
    params, X, Y = make_problem([6, 9, 3], 150, "softmax", dtype, seed=5)
    out = {}
    for b in ("numpy", name):
        model = fastnn.Model([6, 9, 3], "tanh", "softmax", dtype=dtype, seed=0)
        h = model.fit(X, Y, epochs=3, batch_size=32, optimizer="adam", lr=0.01, backend=b,
                      shuffle_seed=1, progress=False)
        out[b] = (model.params, h.cost)
    rtol, _ = tol(dtype, 150 * 15)
    np.testing.assert_allclose(out[name][1], out["numpy"][1], rtol=rtol)
    for k in out["numpy"][0]:
        assert out[name][0][k].dtype == dtype
        ref = out["numpy"][0][k]
        assert_close(out[name][0][k], ref, dtype, 150 * 15, magnitude=np.abs(ref) + np.max(np.abs(ref)))


@pytest.mark.parametrize("name", COMPILED)
def test_float32_db_over_a_million_examples(name):
    """The compiled db sum in float32 is no worse than 2x NumPy's (pairwise) error."""
    m = 10 ** 6
    rng = np.random.default_rng(0)
    dA = (rng.standard_normal((2, m)) + 0.3).astype(np.float32)
    A = np.full((2, m), 0.5, np.float32)
    exact = (dA.astype(np.float64) * 0.25).sum(axis=1)  # sigmoid': a(1-a) = 0.25, exact in float32
    _, db_np = REF.backward_hidden(dA.copy(), A, "sigmoid", np.float32(1))
    _, db = get_backend(name).backward_hidden(dA.copy(), A, "sigmoid", np.float32(1))
    err_np = np.max(np.abs(db_np[:, 0] - exact) / np.abs(exact))
    err = np.max(np.abs(db[:, 0] - exact) / np.abs(exact))
    # Either error can be at the float32 rounding floor (eps/2 of the result).
    assert err <= max(2 * err_np, np.finfo(np.float32).eps)


_CHILD = """
import json, numpy as np, fastnn
from fastnn.backends import get_backend
rng = np.random.default_rng(0)
p = fastnn.init_params([30, 40, 3], seed=0, dtype=np.float32)
X = rng.standard_normal((30, 3000)).astype(np.float32)
Y = rng.integers(0, 3, 3000)
c, g = fastnn.gradients(p, X, Y, output="softmax", backend="numba-parallel")
print(json.dumps({k: v.tobytes().hex() for k, v in g.items()}))
"""


@requires_backends("numba-parallel")
def test_parallel_results_do_not_depend_on_thread_count():
    outs = []
    for threads in ("1", "2"):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        res = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                             text=True, check=True)
        outs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    assert outs[0] == outs[1]


@requires_backends("numba", "numba-parallel")
def test_serial_and_parallel_are_bitwise_equal(dtype):
    params, X, Y = make_problem([8, 16, 12, 4], 3001, "softmax", dtype, seed=9)
    g1 = fastnn.gradients(params, X, Y, hidden="leaky_relu", output="softmax", backend="numba")[1]
    g2 = fastnn.gradients(params, X, Y, hidden="leaky_relu", output="softmax",
                          backend="numba-parallel")[1]
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])


@requires_backends("numba", "numba-parallel")
def test_auto_picks_a_compiled_backend_by_work():
    from fastnn.backends import AUTO_PARALLEL_MIN
    assert get_backend("auto", 10).NAME == "numba"
    assert get_backend("auto", AUTO_PARALLEL_MIN).NAME == "numba-parallel"


@pytest.mark.parametrize("name", COMPILED)
def test_large_nets_run_the_loop_kernel_by_kernel(name, dtype, monkeypatch):
    """Above LOOP_MAX_MULTIPLY_ADDS, sgd_loop delegates to the step loop: same run."""
    from fastnn.backends import _numba_backend
    monkeypatch.setattr(_numba_backend, "LOOP_MAX_MULTIPLY_ADDS", 0)
    params, X, Y = make_problem([3, 5, 4, 1], 23, "sigmoid", dtype, seed=4)
    runs = {}
    for label, fn in (("numpy", lambda *a: engine.sgd_steps(REF, *a)),
                      (name, lambda *a: engine.sgd_loop(get_backend(name), *a))):
        Ws, bs = _lists(params)
        costs, steps = fn(Ws, bs, X, Y, "relu", "sigmoid", "deferred", 0.0, 0.1, 10)
        runs[label] = (costs, Ws + bs)
    rtol, _ = tol(dtype, 23 * 10)
    np.testing.assert_allclose(runs[name][0], runs["numpy"][0], rtol=rtol)
    for x, y in zip(runs["numpy"][1], runs[name][1]):
        assert_close(y, x, dtype, 23 * 10, magnitude=np.abs(x) + np.max(np.abs(x)))


# --------------------------------------------------------------------------- emulated formats

@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_emulated_backend_provides_every_kernel_it_claims(fmt):
    """The emulated backend claims the interface's kernels of the engine's forward
    and backward passes and of a plain SGD step, and has each of them."""
    from fastnn.backends import _interface, emulated
    bk = emulated.EmulatedBackend(fmt)
    assert set(emulated.KERNELS) <= set(_interface.KERNELS)
    assert len(set(emulated.KERNELS)) == len(emulated.KERNELS)
    missing = [k for k in emulated.KERNELS if not callable(getattr(bk, k, None))]
    assert not missing, f"EmulatedBackend lacks {missing}"
    needed = {"forward_hidden", "forward_output", "output_delta", "output_delta_chain",
              "backward_hidden", "weight_grad", "input_grad", "sgd_update"}
    assert needed <= set(emulated.KERNELS)
    assert all(np.dtype(t).kind == "f" for t in bk.DTYPES)


@pytest.mark.parametrize("hidden", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_engine_on_the_emulated_float16_backend_is_numpy_float16(hidden, output):
    """The engine's passes on the emulated float16 backend (float64 arrays on the
    float16 grid) give NumPy's float16 run bit for bit (summed loss: the scales
    are then exactly 1 in both)."""
    from fastnn.backends import numpy_backend as nb
    from fastnn.backends.emulated import EmulatedBackend
    emu = EmulatedBackend("float16")
    params, X, Y = make_problem([5, 6, 4, 3], 300, output, np.float16, seed=9)
    Ws = [params[f"W{l}"] for l in range(1, 4)]
    bs = [params[f"b{l}"] for l in range(1, 4)]
    runs = []
    for bk, cast in ((nb, lambda a: a.copy()), (emu, lambda a: a.astype(np.float64))):
        Wd, bd = [cast(W) for W in Ws], [cast(b) for b in bs]
        As, ZL = engine.forward(bk, Wd, bd, cast(X), hidden, output)
        dWs, dbs, _ = engine.backward(bk, Wd, As, ZL, cast(Y), hidden, output, "sum", "fused", 0.0)
        runs.append([np.asarray(a, np.float64) for a in As[1:] + dWs + dbs])
    for got, want in zip(runs[1], runs[0]):
        assert np.array_equal(got, want)


def test_numba_variant_table_names_exactly_the_wrappers_that_take_the_variant():
    """_numba_backend.VARIANT_KERNELS is what interface(k) binds k into: every kernel
    whose wrapper takes the compiled variant first, and no other."""
    import inspect

    from fastnn.backends import _interface, _numba_backend
    names = _interface.KERNELS + _interface.OPTIONAL_KERNELS
    takes_k = {n for n in names
               if next(iter(inspect.signature(getattr(_numba_backend, n)).parameters)) == "k"}
    assert takes_k == set(_numba_backend.VARIANT_KERNELS)
    assert set(_numba_backend.interface(object())) == set(names)
