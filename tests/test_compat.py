"""Tests of fastnn.compat against the course conventions and a slow reference.

The reference below is written independently of the package: explicit loops
over examples (columns) and units, Python scalars and ``math`` functions. It is
slow and obviously follows the course's formulas, so agreement with it checks
the vectorised code; the course's conventions (seeds, RNG state, cache layout,
printed text, types) are pinned by separate tests.
"""

import copy
import importlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn.compat import dnn, planar
from fastnn_suite import layered_rtol, libm_rtol, same_ops_rtol



# --------------------------------------------------------------- tolerances

def assert_loop_close(actual, expected, n_terms, depth=1):
    """Compare vectorised results with the scalar-loop reference.

    Both sides evaluate the same formulas; they differ only in the order of
    floating-point sums (BLAS blocks and pairwise sums versus left-to-right)
    and in exp/log implementations (numpy vs math, within an ulp or so). The
    classical bound for an n-term sum of products is |err| <= n*eps*sum|terms|.
    We bound sum|terms| by the array's largest magnitude (entries created by
    cancellation can be far smaller than their terms, hence an absolute part
    scaled by the array rather than a pure rtol), multiply by the number of
    layers the error travels through, and allow a factor 64 for the remaining
    constants (exp/log ulps, the 1/m scaling, sigmoid's s*(1-s)).
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    tol = layered_rtol(n_terms, depth)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


# Same operations in the same order on both sides (conftest's SAME_OPS_ULPS).
SAME_OPS_RTOL = same_ops_rtol()


# ------------------------------------------------- scalar-loop reference (W4)

def _sig(z):
    return 1.0 / (1.0 + math.exp(-z))


def ref_forward(X, params):
    """Per-example, per-unit forward pass; returns AL and caches like the course."""
    L = len(params) // 2
    m = X.shape[1]
    Ws = [params["W%d" % l] for l in range(1, L + 1)]
    bs = [params["b%d" % l] for l in range(1, L + 1)]
    A_prevs = [np.zeros((W.shape[1], m)) for W in Ws]
    Zs = [np.zeros((W.shape[0], m)) for W in Ws]
    AL = np.zeros((Ws[-1].shape[0], m))
    for j in range(m):
        a = [float(X[k, j]) for k in range(X.shape[0])]
        for l in range(L):
            W, b = Ws[l], bs[l]
            for k, ak in enumerate(a):
                A_prevs[l][k, j] = ak
            z = []
            for i in range(W.shape[0]):
                acc = float(b[i, 0])
                for k in range(W.shape[1]):
                    acc += float(W[i, k]) * a[k]
                z.append(acc)
                Zs[l][i, j] = acc
            if l == L - 1:
                a = [_sig(zi) for zi in z]
            else:
                a = [zi if zi > 0 else 0.0 for zi in z]
        for i, ai in enumerate(a):
            AL[i, j] = ai
    caches = [((A_prevs[l], Ws[l], bs[l]), Zs[l]) for l in range(L)]
    return AL, caches


def ref_cost(AL, Y):
    m = AL.shape[1]
    total = 0.0
    for j in range(m):
        y = float(Y[0, j])
        a = float(AL[0, j])
        total += y * math.log(a) + (1.0 - y) * math.log(1.0 - a)
    return -total / m


def ref_backward(AL, Y, caches):
    """Per-example backward pass reading every value from ``caches``."""
    L = len(caches)
    m = AL.shape[1]
    Y = np.asarray(Y, dtype=np.float64).reshape(AL.shape)
    shapes = [(c[0][1].shape[0], c[0][1].shape[1]) for c in caches]
    dW = [np.zeros(s) for s in shapes]
    db = [np.zeros((s[0], 1)) for s in shapes]
    dA = [np.zeros((s[1], m)) for s in shapes]  # dA[l] = grad of layer l+1 input
    for j in range(m):
        da = [-(Y[i, j] / AL[i, j] - (1.0 - Y[i, j]) / (1.0 - AL[i, j]))
              for i in range(AL.shape[0])]
        for l in reversed(range(L)):
            (A_prev, W, _), Z = caches[l]
            dz = []
            for i in range(W.shape[0]):
                z = float(Z[i, j])
                if l == L - 1:
                    s = _sig(z)
                    dz.append(da[i] * s * (1.0 - s))
                else:
                    dz.append(da[i] if z > 0 else 0.0)
            for i in range(W.shape[0]):
                db[l][i, 0] += dz[i]
                for k in range(W.shape[1]):
                    dW[l][i, k] += dz[i] * float(A_prev[k, j])
            da = [sum(float(W[i, k]) * dz[i] for i in range(W.shape[0]))
                  for k in range(W.shape[1])]
            for k in range(W.shape[1]):
                dA[l][k, j] = da[k]
    grads = {}
    for l in range(L):
        grads["dA%d" % l] = dA[l]
        grads["dW%d" % (l + 1)] = dW[l] / m
        grads["db%d" % (l + 1)] = db[l] / m
    return grads


# ------------------------------------------------- scalar-loop reference (W3)

def ref_planar_forward(X, p):
    n_h, m = p["W1"].shape[0], X.shape[1]
    n_y = p["W2"].shape[0]
    A1 = np.zeros((n_h, m))
    A2 = np.zeros((n_y, m))
    for j in range(m):
        for i in range(n_h):
            z = float(p["b1"][i, 0]) + sum(float(p["W1"][i, k]) * float(X[k, j])
                                           for k in range(X.shape[0]))
            A1[i, j] = math.tanh(z)
        for i in range(n_y):
            z = float(p["b2"][i, 0]) + sum(float(p["W2"][i, k]) * A1[k, j]
                                           for k in range(n_h))
            A2[i, j] = _sig(z)
    return A1, A2


def ref_planar_backward(p, A1, A2, X, Y):
    n_h, n_x = p["W1"].shape
    n_y, m = A2.shape
    g = {"dW1": np.zeros((n_h, n_x)), "db1": np.zeros((n_h, 1)),
         "dW2": np.zeros((n_y, n_h)), "db2": np.zeros((n_y, 1))}
    for j in range(m):
        dz2 = [float(A2[i, j]) - float(Y[i, j]) for i in range(n_y)]
        for i in range(n_y):
            g["db2"][i, 0] += dz2[i]
            for k in range(n_h):
                g["dW2"][i, k] += dz2[i] * float(A1[k, j])
        for k in range(n_h):
            dz1 = sum(float(p["W2"][i, k]) * dz2[i] for i in range(n_y))
            dz1 *= 1.0 - float(A1[k, j]) ** 2
            g["db1"][k, 0] += dz1
            for q in range(n_x):
                g["dW1"][k, q] += dz1 * float(X[q, j])
    return {k: v / m for k, v in g.items()}


# ------------------------------------------------ plain vectorised model loops

def ref_L_layer_model(X, Y, dims, learning_rate, num_iterations):
    """The course's L-layer training loop, written out flat (same operations)."""
    Y = np.asarray(Y, dtype=np.float64)
    np.random.seed(1)
    L = len(dims) - 1
    W, b = {}, {}
    for l in range(1, L + 1):
        W[l] = np.random.randn(dims[l], dims[l - 1]) / np.sqrt(dims[l - 1])
        b[l] = np.zeros((dims[l], 1))
    m = X.shape[1]
    costs = []
    for i in range(num_iterations):
        A, Z = {0: X}, {}
        for l in range(1, L + 1):
            Z[l] = W[l].dot(A[l - 1]) + b[l]
            A[l] = 1 / (1 + np.exp(-Z[l])) if l == L else np.maximum(0, Z[l])
        AL = A[L]
        cost = -(1 / m) * (np.dot(Y, np.log(AL).T) + np.dot(1 - Y, np.log(1 - AL).T))
        dA = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
        dW, db = {}, {}
        for l in range(L, 0, -1):
            if l == L:
                s = 1 / (1 + np.exp(-Z[l]))
                dZ = dA * s * (1 - s)
            else:
                dZ = np.where(Z[l] <= 0, 0.0, dA)
            dW[l] = (1 / m) * np.dot(dZ, A[l - 1].T)
            db[l] = (1 / m) * np.sum(dZ, axis=1, keepdims=True)
            dA = np.dot(W[l].T, dZ)
        for l in range(1, L + 1):
            W[l] = W[l] - learning_rate * dW[l]
            b[l] = b[l] - learning_rate * db[l]
        if i % 100 == 0:
            costs.append(float(np.squeeze(cost)))
    params = {}
    for l in range(1, L + 1):
        params["W%d" % l] = W[l]
        params["b%d" % l] = b[l]
    return params, costs


def ref_nn_model(X, Y, n_h, num_iterations):
    Y = np.asarray(Y, dtype=np.float64)
    np.random.seed(3)
    n_x, n_y, m = X.shape[0], Y.shape[0], X.shape[1]
    W1 = np.random.randn(n_h, n_x) * 0.01
    b1 = np.zeros((n_h, 1))
    W2 = np.random.randn(n_y, n_h) * 0.01
    b2 = np.zeros((n_y, 1))
    costs = []
    for i in range(num_iterations):
        A1 = np.tanh(np.dot(W1, X) + b1)
        A2 = 1 / (1 + np.exp(-(np.dot(W2, A1) + b2)))
        costs.append(float(np.squeeze(
            -(1 / m) * (np.dot(Y, np.log(A2).T) + np.dot(1 - Y, np.log(1 - A2).T)))))
        dZ2 = A2 - Y
        dW2 = (1 / m) * np.dot(dZ2, A1.T)
        db2 = (1 / m) * np.sum(dZ2, axis=1, keepdims=True)
        dZ1 = np.dot(W2.T, dZ2) * (1 - np.power(A1, 2))
        dW1 = (1 / m) * np.dot(dZ1, X.T)
        db1 = (1 / m) * np.sum(dZ1, axis=1, keepdims=True)
        W1, b1 = W1 - 1.2 * dW1, b1 - 1.2 * db1
        W2, b2 = W2 - 1.2 * dW2, b2 - 1.2 * db2
    return {"W1": W1, "b1": b1, "W2": W2, "b2": b2}, costs


# ------------------------------------------------------------------ fixtures

def make_params(dims, rng, scale=0.5):
    p = {}
    for l in range(1, len(dims)):
        p["W%d" % l] = rng.standard_normal((dims[l], dims[l - 1])) * scale
        p["b%d" % l] = rng.standard_normal((dims[l], 1)) * scale
    return p


def make_data(n_x, m, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_x, m))
    Y = (rng.random((1, m)) > 0.5).astype(np.int64)
    return X, Y


def next_draw_after(seed, *shapes_and_scales):
    """The next ``rand()`` the course would see after seeding and drawing shapes."""
    np.random.seed(seed)
    for shape in shapes_and_scales:
        np.random.randn(*shape)
    return np.random.rand()


def snapshot(obj):
    return copy.deepcopy(obj)


def assert_same_tree(a, b):
    """Deep equality of nested dict/list/tuple/ndarray structures."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            assert_same_tree(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_tree(x, y)
    else:
        np.testing.assert_array_equal(a, b)


WEEK4_NAMES = {
    "sigmoid", "relu", "relu_backward", "sigmoid_backward",
    "initialize_parameters", "initialize_parameters_deep",
    "linear_forward", "linear_activation_forward", "L_model_forward",
    "compute_cost", "linear_backward", "linear_activation_backward",
    "L_model_backward", "update_parameters", "two_layer_model",
    "L_layer_model", "predict",
}
WEEK3_IN_DNN = {"layer_sizes", "forward_propagation", "backward_propagation", "nn_model"}
WEEK3_NAMES = {
    "layer_sizes", "initialize_parameters", "forward_propagation", "compute_cost",
    "backward_propagation", "update_parameters", "nn_model", "predict", "sigmoid",
}


# ------------------------------------------------------------------- imports

def test_star_import_exposes_required_names():
    ns = {}
    exec("from fastnn.compat.dnn import *", ns)
    missing = (WEEK4_NAMES | WEEK3_IN_DNN) - ns.keys()
    assert not missing
    # The clashing names are the Week-4 ones, the Week-3 extras the planar ones.
    A, cache = ns["sigmoid"](np.zeros((1, 1)))
    assert A[0, 0] == 0.5 and cache.shape == (1, 1)
    assert ns["nn_model"] is planar.nn_model
    assert ns["forward_propagation"] is planar.forward_propagation


def test_planar_exposes_week3_set():
    ns = {}
    exec("from fastnn.compat.planar import *", ns)
    assert not WEEK3_NAMES - ns.keys()
    assert isinstance(ns["sigmoid"](np.zeros(3)), np.ndarray)


#: What a Week 4 notebook calls after the star import (the course API).
WEEK4_NAMES = {"initialize_parameters_deep", "L_model_forward", "compute_cost", "L_model_backward",
               "update_parameters", "L_layer_model", "two_layer_model", "predict", "sigmoid", "relu"}


def test_compat_package_docstring_star_imports_work():
    """Every ``from fastnn.compat... import *`` the package docstring tells a learner to
    write runs, brings exactly its module's ``__all__``, all defined, and the Week 4 names."""
    import fastnn.compat as pkg
    lines = [ln.strip().strip("`") for ln in pkg.__doc__.splitlines()
             if ln.strip().strip("`").startswith("from fastnn.compat")]
    assert lines, "the docstring shows no import"
    seen = set()
    for line in lines:
        statement = line.split("``")[0].split("#")[0].strip()
        namespace = {}
        exec(statement, namespace)  # noqa: S102 - the documented line itself
        module = importlib.import_module(statement.split()[1])
        names = set(namespace) - {"__builtins__"}
        assert names == set(module.__all__), statement
        assert all(namespace[n] is getattr(module, n) for n in names)
        seen |= names
    assert WEEK4_NAMES <= seen, WEEK4_NAMES - seen


# --------------------------------------------------------------- activations

def test_sigmoid_and_relu_values_and_cache():
    Z = np.array([[-3.0, -0.0, 0.0, 0.5], [2.0, -1e-3, 7.0, -40.0]])
    A, cache = dnn.sigmoid(Z)
    assert cache is Z
    expected = np.array([[_sig(z) for z in row] for row in Z])
    # exp itself: numpy and math agree within an ulp or two.
    np.testing.assert_allclose(A, expected, rtol=libm_rtol())
    np.testing.assert_array_equal(planar.sigmoid(Z), A)
    R, rcache = dnn.relu(Z)
    assert rcache is Z
    np.testing.assert_array_equal(R, [[0, 0, 0, 0.5], [2, 0, 7, 0]])


def test_relu_backward_zero_included_and_copy():
    Z = np.array([[-1.0, 0.0, 1e-300, 2.0]])
    dA = np.array([[5.0, 6.0, 7.0, 8.0]])
    dA_before = dA.copy()
    dZ = dnn.relu_backward(dA, Z)
    np.testing.assert_array_equal(dZ, [[0.0, 0.0, 7.0, 8.0]])
    np.testing.assert_array_equal(dA, dA_before)
    assert dZ is not dA


def test_sigmoid_backward_formula():
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((3, 4))
    dA = rng.standard_normal((3, 4))
    dZ = dnn.sigmoid_backward(dA, Z)
    expected = np.array([[dA[i, j] * _sig(Z[i, j]) * (1 - _sig(Z[i, j]))
                          for j in range(4)] for i in range(3)])
    np.testing.assert_allclose(dZ, expected, rtol=libm_rtol(operations=2))


# ------------------------------------------------------------ initialisation

def test_initialize_parameters_seed1_and_rng_state():
    np.random.seed(1)
    W1 = np.random.randn(4, 3) * 0.01
    W2 = np.random.randn(2, 4) * 0.01
    expected_next = np.random.rand()
    np.random.seed(12345)  # the function must reseed itself
    p = dnn.initialize_parameters(3, 4, 2)
    assert list(p) == ["W1", "b1", "W2", "b2"]
    np.testing.assert_array_equal(p["W1"], W1)
    np.testing.assert_array_equal(p["W2"], W2)
    np.testing.assert_array_equal(p["b1"], np.zeros((4, 1)))
    np.testing.assert_array_equal(p["b2"], np.zeros((2, 1)))
    assert all(v.dtype == np.float64 for v in p.values())
    assert np.random.rand() == expected_next


@pytest.mark.parametrize("dims", [[5, 4, 3], (6, 1), (4, 3, 3, 2, 1)])
def test_initialize_parameters_deep_step_variant(dims):
    np.random.seed(3)
    Ws = [np.random.randn(dims[l], dims[l - 1]) * 0.01 for l in range(1, len(dims))]
    expected_next = np.random.rand()
    np.random.seed(0)
    p = dnn.initialize_parameters_deep(dims)
    assert list(p) == [k for l in range(1, len(dims)) for k in ("W%d" % l, "b%d" % l)]
    for l, W in enumerate(Ws, start=1):
        np.testing.assert_array_equal(p["W%d" % l], W)
        np.testing.assert_array_equal(p["b%d" % l], np.zeros((dims[l], 1)))
    assert np.random.rand() == expected_next


@pytest.mark.parametrize("dims", [[30, 20, 7, 5, 1], (5, 4, 1)])
def test_initialize_parameters_deep_app_variant(dims):
    np.random.seed(1)
    Ws = [np.random.randn(dims[l], dims[l - 1]) / np.sqrt(dims[l - 1])
          for l in range(1, len(dims))]
    expected_next = np.random.rand()
    np.random.seed(0)
    p = dnn.initialize_parameters_deep(dims, variant="app")
    for l, W in enumerate(Ws, start=1):
        np.testing.assert_array_equal(p["W%d" % l], W)
        np.testing.assert_array_equal(p["b%d" % l], np.zeros((dims[l], 1)))
    assert np.random.rand() == expected_next


def test_initialize_parameters_deep_variant_is_keyword_only():
    with pytest.raises(TypeError):
        dnn.initialize_parameters_deep([3, 2, 1], "app")
    with pytest.raises(ValueError):
        dnn.initialize_parameters_deep([3, 2, 1], variant="bogus")


def test_planar_initialize_parameters_uses_caller_rng():
    np.random.seed(2)
    W1 = np.random.randn(4, 2) * 0.01
    W2 = np.random.randn(1, 4) * 0.01
    expected_next = np.random.rand()
    np.random.seed(2)
    p = planar.initialize_parameters(2, 4, 1)
    np.testing.assert_array_equal(p["W1"], W1)
    np.testing.assert_array_equal(p["W2"], W2)
    np.testing.assert_array_equal(p["b1"], np.zeros((4, 1)))
    np.testing.assert_array_equal(p["b2"], np.zeros((1, 1)))
    assert np.random.rand() == expected_next


# ------------------------------------------------------------------- forward

def test_linear_forward_cache_and_value():
    rng = np.random.default_rng(1)
    A, W, b = rng.standard_normal((3, 2)), rng.standard_normal((1, 3)), rng.standard_normal((1, 1))
    Z, cache = dnn.linear_forward(A, W, b)
    assert type(cache) is tuple and len(cache) == 3
    assert cache[0] is A and cache[1] is W and cache[2] is b
    expected = [[b[0, 0] + sum(W[0, k] * A[k, j] for k in range(3)) for j in range(2)]]
    assert_loop_close(Z, expected, n_terms=4)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_linear_activation_forward_cache_layout(activation):
    rng = np.random.default_rng(2)
    A_prev, W, b = rng.standard_normal((3, 5)), rng.standard_normal((4, 3)), rng.standard_normal((4, 1))
    A, cache = dnn.linear_activation_forward(A_prev, W, b, activation=activation)
    assert type(cache) is tuple and len(cache) == 2
    (cA, cW, cb), Z = cache
    assert cA is A_prev and cW is W and cb is b
    Zref = np.array([[b[i, 0] + sum(W[i, k] * A_prev[k, j] for k in range(3))
                      for j in range(5)] for i in range(4)])
    assert_loop_close(Z, Zref, n_terms=4)
    f = _sig if activation == "sigmoid" else (lambda z: max(z, 0.0))
    assert_loop_close(A, [[f(z) for z in row] for row in Zref], n_terms=4)
    with pytest.raises(ValueError):
        dnn.linear_activation_forward(A_prev, W, b, activation="tanh")


def test_L_model_forward_matches_loop_and_cache_layout():
    rng = np.random.default_rng(3)
    dims = [5, 4, 3, 1]
    X = rng.standard_normal((5, 7))
    p = make_params(dims, rng)
    X0, p0 = X.copy(), snapshot(p)
    AL, caches = dnn.L_model_forward(X, p)
    AL_ref, caches_ref = ref_forward(X, p)
    assert type(caches) is list and len(caches) == 3
    assert caches[0][0][0] is X
    for l, (cache, cref) in enumerate(zip(caches, caches_ref), start=1):
        assert type(cache) is tuple and type(cache[0]) is tuple
        (A_prev, W, b), Z = cache
        assert W is p["W%d" % l] and b is p["b%d" % l]
        assert_loop_close(A_prev, cref[0][0], n_terms=6, depth=l)
        assert_loop_close(Z, cref[1], n_terms=6, depth=l)
    assert AL.shape == (1, 7) and AL.dtype == np.float64
    assert_loop_close(AL, AL_ref, n_terms=6, depth=len(dims))
    np.testing.assert_array_equal(X, X0)
    assert_same_tree(p, p0)


# ---------------------------------------------------------------------- cost

def test_compute_cost_is_0d_array_with_loop_value():
    AL = np.array([[0.8, 0.9, 0.4]])
    Y = np.array([[1, 1, 0]])
    cost = dnn.compute_cost(AL, Y)
    assert type(cost) is np.ndarray and cost.shape == () and cost.dtype == np.float64
    expected = -(math.log(0.8) + math.log(0.9) + math.log(0.6)) / 3
    assert_loop_close(cost, expected, n_terms=3)


@pytest.mark.parametrize("dtype", [np.int64, np.float64, bool, np.uint8])
def test_compute_cost_accepts_label_dtypes(dtype):
    rng = np.random.default_rng(4)
    AL = rng.uniform(0.05, 0.95, (1, 9))
    Yb = rng.random((1, 9)) > 0.5
    Y = Yb.astype(dtype)
    Y0 = Y.copy()
    cost = dnn.compute_cost(AL, Y)
    assert cost.shape == ()
    assert_loop_close(cost, ref_cost(AL, Yb.astype(float)), n_terms=9)
    np.testing.assert_array_equal(Y, Y0)
    pc = planar.compute_cost(AL, Y)
    assert type(pc) is float
    assert pc == pytest.approx(float(cost), rel=SAME_OPS_RTOL)


# ------------------------------------------------------------------ backward

def test_linear_backward_matches_loop():
    rng = np.random.default_rng(5)
    dZ = rng.standard_normal((3, 4))
    A_prev, W, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 5)), rng.standard_normal((3, 1))
    cache = (A_prev, W, b)
    dA_prev, dW, db = dnn.linear_backward(dZ, cache)
    m = 4
    dW_ref = [[sum(dZ[i, j] * A_prev[k, j] for j in range(m)) / m for k in range(5)] for i in range(3)]
    db_ref = [[sum(dZ[i, j] for j in range(m)) / m] for i in range(3)]
    dA_ref = [[sum(W[i, k] * dZ[i, j] for i in range(3)) for j in range(m)] for k in range(5)]
    assert dW.shape == W.shape and db.shape == b.shape and dA_prev.shape == A_prev.shape
    assert_loop_close(dW, dW_ref, n_terms=m)
    assert_loop_close(db, db_ref, n_terms=m)
    assert_loop_close(dA_prev, dA_ref, n_terms=3)
    # A list cache behaves like the tuple.
    for got, want in zip(dnn.linear_backward(dZ, list(cache)), (dA_prev, dW, db)):
        np.testing.assert_array_equal(got, want)


def ref_backward_single(dA, cache, activation):
    (A_prev, W, _), Z = cache
    n, m = Z.shape
    dZ = np.zeros_like(Z)
    for i in range(n):
        for j in range(m):
            if activation == "sigmoid":
                s = _sig(Z[i, j])
                dZ[i, j] = dA[i, j] * s * (1 - s)
            else:
                dZ[i, j] = dA[i, j] if Z[i, j] > 0 else 0.0
    dW = np.array([[sum(dZ[i, j] * A_prev[k, j] for j in range(m)) / m
                    for k in range(W.shape[1])] for i in range(n)])
    db = np.array([[sum(dZ[i, j] for j in range(m)) / m] for i in range(n)])
    dA_prev = np.array([[sum(W[i, k] * dZ[i, j] for i in range(n)) for j in range(m)]
                        for k in range(W.shape[1])])
    return dA_prev, dW, db


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_linear_activation_backward_uses_cached_Z(activation):
    rng = np.random.default_rng(6)
    dA = rng.standard_normal((1, 2))
    A_prev, W, b = rng.standard_normal((3, 2)), rng.standard_normal((1, 3)), rng.standard_normal((1, 1))
    Z = rng.standard_normal((1, 2))  # deliberately unrelated to W @ A_prev + b
    cache = ((A_prev, W, b), Z)
    dA_prev, dW, db = dnn.linear_activation_backward(dA, cache, activation=activation)
    ref = ref_backward_single(dA, cache, activation)
    assert_loop_close(dA_prev, ref[0], n_terms=2)
    assert_loop_close(dW, ref[1], n_terms=2)
    assert_loop_close(db, ref[2], n_terms=2)


def grads_keys(L):
    return ({"dA%d" % l for l in range(L)} | {"dW%d" % l for l in range(1, L + 1)}
            | {"db%d" % l for l in range(1, L + 1)})


def test_L_model_backward_matches_loop_on_consistent_caches():
    rng = np.random.default_rng(7)
    dims = [4, 5, 3, 1]
    X = rng.standard_normal((4, 6))
    Y = (rng.random((1, 6)) > 0.5).astype(np.int64)
    p = make_params(dims, rng)
    AL, caches = dnn.L_model_forward(X, p)
    caches0, AL0, Y0 = snapshot(caches), AL.copy(), Y.copy()
    grads = dnn.L_model_backward(AL, Y, caches)
    assert set(grads) == grads_keys(3)
    ref = ref_backward(AL, Y, caches)
    for k in ref:
        assert grads[k].shape == ref[k].shape
        assert_loop_close(grads[k], ref[k], n_terms=6, depth=len(dims))
    assert_same_tree(caches, caches0)
    np.testing.assert_array_equal(AL, AL0)
    np.testing.assert_array_equal(Y, Y0)


def _hand_built_caches(outer, inner):
    """The course's L_model_backward test: random AL, Z and A_prev, unrelated."""
    np.random.seed(3)
    AL = np.random.randn(1, 2)
    Y = np.array([[1, 0]])
    A1, W1, b1 = np.random.randn(4, 2), np.random.randn(3, 4), np.random.randn(3, 1)
    Z1 = np.random.randn(3, 2)
    A2, W2, b2 = np.random.randn(3, 2), np.random.randn(1, 3), np.random.randn(1, 1)
    Z2 = np.random.randn(1, 2)
    caches = outer([inner([inner([A1, W1, b1]), Z1]), inner([inner([A2, W2, b2]), Z2])])
    return AL, Y, caches


@pytest.mark.parametrize("outer,inner", [(tuple, tuple), (list, tuple), (tuple, list), (list, list)])
def test_L_model_backward_hand_built_inconsistent_caches(outer, inner):
    AL, Y, caches = _hand_built_caches(outer, inner)
    caches0 = snapshot(caches)
    grads = dnn.L_model_backward(AL, Y, caches)
    assert set(grads) == grads_keys(2)
    ref = ref_backward(AL, Y, caches)
    for k in ref:
        assert_loop_close(grads[k], ref[k], n_terms=4, depth=2)
    # The dZ = AL - Y shortcut would give a different dW2: pin that we did not take it.
    A2 = caches[1][0][0]
    shortcut_dW2 = (AL - Y) @ A2.T / 2
    assert not np.allclose(grads["dW2"], shortcut_dW2)
    assert_same_tree(caches, caches0)


@pytest.mark.parametrize("make_y", [
    lambda y: y.astype(np.int64), lambda y: y.astype(np.float64),
    lambda y: y.astype(bool), lambda y: y.astype(np.float64).ravel(),
])
def test_L_model_backward_label_forms(make_y):
    AL, Y, caches = _hand_built_caches(list, tuple)
    expected = ref_backward(AL, Y, caches)
    grads = dnn.L_model_backward(AL, make_y(Y), caches)
    for k in expected:
        assert_loop_close(grads[k], expected[k], n_terms=4, depth=2)


# -------------------------------------------------------------------- update

def _update_case():
    rng = np.random.default_rng(8)
    p = make_params([3, 4, 1], rng)
    g = {"dW1": rng.standard_normal((4, 3)), "db1": rng.standard_normal((4, 1)),
         "dW2": rng.standard_normal((1, 4)), "db2": rng.standard_normal((1, 1)),
         "dA0": rng.standard_normal((3, 5)), "dA1": rng.standard_normal((4, 5))}
    return p, g


def test_update_parameters_values_and_no_mutation():
    p, g = _update_case()
    p0, g0 = snapshot(p), snapshot(g)
    lr = 0.1
    new = dnn.update_parameters(p, g, lr)
    assert set(new) == {"W1", "b1", "W2", "b2"}
    for k in new:
        np.testing.assert_array_equal(new[k], p0[k] - lr * g0["d" + k])
        assert new[k] is not p[k]
    assert new is not p
    assert_same_tree(p, p0)
    assert_same_tree(g, g0)


def test_update_parameters_accepts_both_first_argument_names():
    p, g = _update_case()
    expected = dnn.update_parameters(p, g, 0.3)
    for call in (lambda: dnn.update_parameters(params=p, grads=g, learning_rate=0.3),
                 lambda: dnn.update_parameters(parameters=p, grads=g, learning_rate=0.3),
                 lambda: dnn.update_parameters(p, g, learning_rate=0.3),
                 lambda: dnn.update_parameters(p, grads=g, learning_rate=0.3)):
        assert_same_tree(call(), expected)
    with pytest.raises(TypeError):
        dnn.update_parameters(p, g, 0.3, params=p)
    with pytest.raises(TypeError):
        dnn.update_parameters(grads=g, learning_rate=0.3)


def test_planar_update_parameters_default_rate():
    p, g = _update_case()
    p0 = snapshot(p)
    new = planar.update_parameters(p, g)
    for k in ("W1", "b1", "W2", "b2"):
        np.testing.assert_array_equal(new[k], p0[k] - 1.2 * g["d" + k])
    assert_same_tree(p, p0)


# -------------------------------------------------------------------- models

def test_L_layer_model_matches_plain_loop_on_cat_shaped_data(capsys):
    # A small stand-in for catvnoncat: pixel-like features in [0, 1],
    # one example per column, int labels.
    rng = np.random.default_rng(9)
    X = rng.random((50, 20))
    Y = (rng.random((1, 20)) > 0.6).astype(np.int64)
    X0, Y0 = X.copy(), Y.copy()
    dims = (50, 8, 4, 1)
    params, costs = dnn.L_layer_model(X, Y, dims, num_iterations=300)
    draw = np.random.rand()
    ref_params, ref_costs = ref_L_layer_model(X, Y, dims, 0.0075, 300)
    ref_draw = np.random.rand()  # both started from seed(1) then drew the weights
    assert draw == ref_draw
    assert len(costs) == 3
    assert all(type(c) is np.ndarray and c.shape == () for c in costs)
    np.testing.assert_allclose([float(c) for c in costs], ref_costs, rtol=SAME_OPS_RTOL)
    assert set(params) == set(ref_params)
    for k in ref_params:
        np.testing.assert_allclose(params[k], ref_params[k], rtol=SAME_OPS_RTOL, atol=0)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)
    assert capsys.readouterr().out == ""  # print_cost=False prints nothing
    # And the first cost agrees with the scalar-loop forward pass.
    np.random.seed(1)
    p_init = dnn.initialize_parameters_deep(list(dims), variant="app")
    AL_ref, _ = ref_forward(X, p_init)
    assert_loop_close(costs[0], ref_cost(AL_ref, Y), n_terms=50, depth=len(dims))


def test_L_layer_model_print_cost_lines(capsys):
    X, Y = make_data(6, 12, seed=10)
    _, ref_costs_all = ref_L_layer_model(X, Y, [6, 5, 1], 0.05, 150)
    params, costs = dnn.L_layer_model(X, Y, [6, 5, 1], learning_rate=0.05,
                                      num_iterations=150, print_cost=True)
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(":")[0] for ln in lines] == [
        "Cost after iteration 0", "Cost after iteration 100", "Cost after iteration 149"]
    # The text is str() of the 0-d cost; the first two are the recorded costs.
    assert lines[0] == "Cost after iteration 0: {}".format(np.squeeze(costs[0]))
    assert lines[1] == "Cost after iteration 100: {}".format(np.squeeze(costs[1]))
    assert float(lines[0].split(": ")[1]) == pytest.approx(ref_costs_all[0], rel=SAME_OPS_RTOL)
    assert float(lines[1].split(": ")[1]) == pytest.approx(ref_costs_all[1], rel=SAME_OPS_RTOL)


def test_two_layer_model_matches_plain_loop(capsys):
    X, Y = make_data(7, 15, seed=11)
    X0, Y0 = X.copy(), Y.copy()
    params, costs = dnn.two_layer_model(X, Y, (7, 5, 1), learning_rate=0.05,
                                        num_iterations=201, print_cost=True)
    draw = np.random.rand()
    # Same network as the L-layer loop but initialised by randn * 0.01.
    ref_p, ref_costs = ref_two_layer(X, Y, (7, 5, 1), 0.05, 201)
    assert draw == next_draw_after(1, (5, 7), (1, 5))
    np.testing.assert_allclose([float(c) for c in costs], ref_costs, rtol=SAME_OPS_RTOL)
    for k in ref_p:
        np.testing.assert_allclose(params[k], ref_p[k], rtol=SAME_OPS_RTOL, atol=0)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["Cost after iteration %d: %s" % (i, np.squeeze(c))
                     for i, c in zip((0, 100, 200), costs)]
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)


def ref_two_layer(X, Y, dims, lr, iters):
    Y = np.asarray(Y, dtype=np.float64)
    n_x, n_h, n_y = dims
    np.random.seed(1)
    W1 = np.random.randn(n_h, n_x) * 0.01
    b1 = np.zeros((n_h, 1))
    W2 = np.random.randn(n_y, n_h) * 0.01
    b2 = np.zeros((n_y, 1))
    m = X.shape[1]
    costs = []
    for i in range(iters):
        Z1 = W1.dot(X) + b1
        A1 = np.maximum(0, Z1)
        Z2 = W2.dot(A1) + b2
        A2 = 1 / (1 + np.exp(-Z2))
        cost = -(1 / m) * (np.dot(Y, np.log(A2).T) + np.dot(1 - Y, np.log(1 - A2).T))
        dA2 = -(np.divide(Y, A2) - np.divide(1 - Y, 1 - A2))
        s = 1 / (1 + np.exp(-Z2))
        dZ2 = dA2 * s * (1 - s)
        dW2 = (1 / m) * np.dot(dZ2, A1.T)
        db2 = (1 / m) * np.sum(dZ2, axis=1, keepdims=True)
        dA1 = np.dot(W2.T, dZ2)
        dZ1 = np.where(Z1 <= 0, 0.0, dA1)
        dW1 = (1 / m) * np.dot(dZ1, X.T)
        db1 = (1 / m) * np.sum(dZ1, axis=1, keepdims=True)
        W1, b1 = W1 - lr * dW1, b1 - lr * db1
        W2, b2 = W2 - lr * dW2, b2 - lr * db2
        if i % 100 == 0:
            costs.append(float(np.squeeze(cost)))
    return {"W1": W1, "b1": b1, "W2": W2, "b2": b2}, costs


# ------------------------------------------------------------------- predict

def test_predict_week4_prints_accuracy_and_is_strict(capsys):
    rng = np.random.default_rng(12)
    dims = [4, 3, 1]
    X = rng.standard_normal((4, 9))
    p = make_params(dims, rng)
    # Column 0 is all zeros and the output bias is set so that AL is exactly 0.5
    # there; strict `> 0.5` must predict 0.
    X[:, 0] = 0.0
    p["b1"][:] = -1.0
    p["b2"][:] = 0.0
    y = (rng.random((1, 9)) > 0.5).astype(np.int64)
    AL_ref, _ = ref_forward(X, p)
    assert AL_ref[0, 0] == 0.5
    pred = dnn.predict(X, y, p)
    assert pred.dtype == np.float64 and pred.shape == (1, 9)
    expected = np.array([[1.0 if a > 0.5 else 0.0 for a in AL_ref[0]]])
    np.testing.assert_array_equal(pred, expected)
    assert pred[0, 0] == 0.0
    out = capsys.readouterr().out
    assert out == "Accuracy: " + str(np.sum((expected == y) / 9)) + "\n"


def test_predict_week3_form_returns_bool():
    rng = np.random.default_rng(13)
    X = rng.standard_normal((2, 11))
    p = make_params([2, 4, 1], rng)
    _, A2 = ref_planar_forward(X, p)
    for fn in (dnn.predict, planar.predict):
        got = fn(p, X)
        assert got.dtype == bool and got.shape == (1, 11)
        np.testing.assert_array_equal(got, A2 > 0.5)


# -------------------------------------------------------------------- week 3

def test_layer_sizes():
    assert dnn.layer_sizes(np.zeros((5, 3)), np.zeros((2, 3))) == (5, 4, 2)
    assert type(planar.layer_sizes(np.zeros((5, 3)), np.zeros((2, 3)))) is tuple


def test_planar_forward_and_backward_match_loop():
    rng = np.random.default_rng(14)
    X = rng.standard_normal((3, 8))
    Y = (rng.random((1, 8)) > 0.5).astype(np.uint8)
    p = make_params([3, 4, 1], rng)
    p0 = snapshot(p)
    A2, cache = planar.forward_propagation(X, p)
    assert set(cache) == {"Z1", "A1", "Z2", "A2"} and cache["A2"] is A2
    A1_ref, A2_ref = ref_planar_forward(X, p)
    assert_loop_close(cache["A1"], A1_ref, n_terms=4)
    assert_loop_close(A2, A2_ref, n_terms=5, depth=2)
    grads = planar.backward_propagation(p, cache, X, Y)
    assert set(grads) == {"dW1", "db1", "dW2", "db2"}
    ref = ref_planar_backward(p, cache["A1"], cache["A2"], X, Y)
    for k in ref:
        assert_loop_close(grads[k], ref[k], n_terms=8, depth=2)
    # A1 and A2 come from the cache: a hand-built cache changes the result.
    fake = {"Z1": None, "A1": rng.uniform(-1, 1, (4, 8)), "Z2": None,
            "A2": rng.uniform(0, 1, (1, 8))}
    grads = planar.backward_propagation(p, fake, X, Y.astype(bool))
    ref = ref_planar_backward(p, fake["A1"], fake["A2"], X, Y)
    for k in ref:
        assert_loop_close(grads[k], ref[k], n_terms=8, depth=2)
    assert_same_tree(p, p0)


def test_nn_model_matches_plain_loop_and_prints(capsys):
    rng = np.random.default_rng(15)
    X = rng.standard_normal((2, 30))
    Y = (X[0:1] * X[1:2] > 0).astype(np.uint8)
    X0, Y0 = X.copy(), Y.copy()
    params = dnn.nn_model(X, Y, 4, num_iterations=1001, print_cost=True)
    draw = np.random.rand()
    ref_p, ref_costs = ref_nn_model(X, Y, 4, 1001)
    assert draw == next_draw_after(3, (4, 2), (1, 4))
    assert list(params) == ["W1", "b1", "W2", "b2"]
    for k in ref_p:
        np.testing.assert_allclose(params[k], ref_p[k], rtol=SAME_OPS_RTOL, atol=0)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["Cost after iteration %i: %f" % (i, ref_costs[i]) for i in (0, 1000)]
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)


# ------------------------------------------------------------- property test

@settings(max_examples=25, deadline=None)
@given(
    dims=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    n_x=st.integers(1, 4),
    m=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_forward_backward_match_loop_for_random_shapes(dims, n_x, m, seed):
    rng = np.random.default_rng(seed)
    layer_dims = [n_x] + dims + [1]
    p = make_params(layer_dims, rng)
    X = rng.standard_normal((n_x, m))
    Y = (rng.random((1, m)) > 0.5).astype(np.int64)
    AL, caches = dnn.L_model_forward(X, p)
    AL_ref, _ = ref_forward(X, p)
    depth = len(layer_dims)
    n_terms = max(layer_dims + [m]) + 1
    assert_loop_close(AL, AL_ref, n_terms=n_terms, depth=depth)
    grads = dnn.L_model_backward(AL, Y, caches)
    ref = ref_backward(AL, Y, caches)
    assert set(grads) == set(ref) == grads_keys(depth - 1)
    for k in ref:
        assert_loop_close(grads[k], ref[k], n_terms=n_terms, depth=depth)
