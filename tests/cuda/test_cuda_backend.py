"""The CUDA backend against the NumPy backend (the oracle), kernel by kernel and
through the whole network.

Tolerances
----------
Every comparison goes through the suite's ``assert_close`` (fixture ``tols``;
derivation in tests/conftest.py): a result within ``rtol * magnitude`` of the
exact value, ``rtol = C * eps(dtype) * sqrt(n_terms)`` with ``n_terms`` the
longest reduction involved and ``magnitude`` the sum of |terms| of each entry
(so entries whose terms cancel are judged by the size of the terms).  Here
both sides are computed: the CUDA kernels accumulate in float64 and round once
per stored value, NumPy rounds every operation in the array dtype.  Each is
within ``rtol * magnitude`` of the exact value, so their difference is within
``2 * rtol * magnitude``: :func:`close` passes ``4 * n_terms``, which doubles
``rtol`` (``sqrt(4 n) = 2 sqrt(n)``).  Magnitudes of single kernels are written
out below (``_mag_*``); whole networks use tests/naive.py's.

Shapes are tiny because the simulator runs one Python thread per CUDA thread;
``small_launch`` / ``launch(...)`` shrink ``TPB`` and ``TILE`` so that these
tiny shapes still cover several blocks, partial tiles and the second
reduction pass.
"""

import contextlib
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import engine
from fastnn.activations import DERIVATIVES, HIDDEN_ACTIVATIONS, OUTPUT_ACTIVATIONS
from fastnn.backends import numpy_backend as nb
from fastnn.errors import SaturationError
from fastnn.model import Model

pytestmark = pytest.mark.cuda

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]
#: (n_out, n_in, m): 1x1, m = 1, odd sizes, sizes that are not multiples of TILE=2 / TPB=4.
SHAPES = [(1, 1, 1), (1, 3, 1), (5, 3, 7), (2, 6, 9)]
SCALINGS = ("deferred", "absorbed", "sum")
FEW = settings(max_examples=10, deadline=None)


def close(tols, actual, expected, dtype, n_terms, magnitude, err_msg=""):
    """Two computed results agree within twice the suite's bound (module docstring)."""
    tols.assert_close(actual, expected, dtype, 4 * max(int(n_terms), 1), magnitude=magnitude,
                      err_msg=err_msg)


@contextlib.contextmanager
def _quiet():
    """Silence RuntimeWarnings: the simulator divides NumPy scalars by zero in the chain route."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _labels(rng, output, n, m, dtype):
    if output == "softmax":
        return np.eye(n, dtype=dtype)[:, rng.integers(0, n, size=m)]
    if output == "sigmoid":
        return (rng.random((n, m)) < 0.5).astype(dtype)
    return _rand(rng, (n, m), dtype)


def _host(cb, x, dtype):
    """to_host, checking that the result kept the dtype."""
    h = cb.to_host(x)
    assert isinstance(h, np.ndarray) and h.dtype == np.dtype(dtype)
    return h


def _f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


# ------------------------------------------------------------------ magnitudes (sum of |terms|)

def _mag_affine(W, A0, b):
    """|W| |A0| + |b|: the terms of Z = W A0 + b."""
    W, A0, b = _f64(W, A0, b)
    return np.abs(W) @ np.abs(A0) + np.abs(b)


def _g_prime(name, A):
    """|g'(Z)| from A = g(Z), in float64 (the package's derivative table)."""
    A = np.asarray(A, dtype=np.float64)
    return np.abs(DERIVATIVES[name](A, np.ones_like(A)))


def _mag_activation(name, A, zmag):
    """|A| plus the error of Z (~ eps zmag) carried through g' (softmax couples the column)."""
    A = np.asarray(A, dtype=np.float64)
    if name == "softmax":
        return np.abs(A) + A * (zmag + zmag.max(axis=0, keepdims=True))
    return np.abs(A) + _g_prime(name, A) * zmag


def _mag_delta(output, route, A, Y, dz_scale):
    """Terms of dZ[L]: |A| + |Y| fused; the chain's dA[L] * g' terms otherwise."""
    A, Y = _f64(A, Y)
    s = abs(float(dz_scale))
    if route == "fused" or output == "identity":
        return (np.abs(A) + np.abs(Y)) * s
    if output == "sigmoid":  # (|Y|/A + |1-Y|/(1-A)) * A(1-A)
        return (np.abs(Y) * (1 - A) + np.abs(1 - Y) * A) * s
    # softmax: A_i (|dA_i| + sum_k A_k |dA_k|) with |dA_k| = |Y_k| / A_k
    return (np.abs(Y) + A * np.abs(Y).sum(axis=0, keepdims=True)) * s


def _mag_loss(output, Z, A, Y):
    """Terms of the summed loss (tests/naive.py's example_loss_magnitude with exact Z)."""
    Z, A, Y = _f64(Z, A, Y)
    if output == "sigmoid":
        return float(np.sum(np.abs(Z) * (1 + np.abs(Y)) + 1))
    if output == "softmax":
        zmax = np.abs(Z).max(axis=0, keepdims=True)
        return float(np.sum(np.abs(Y) * (np.abs(Z) + zmax + np.log(Z.shape[0]) + 1)))
    return float(np.sum(0.5 * (np.abs(A) + np.abs(Y)) ** 2))


def _mag_row_sum(dz_mag, db_scale):
    return abs(float(db_scale)) * dz_mag.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------ interface


def test_exports_the_whole_interface(cb):
    from fastnn.backends._interface import CONSTANTS, KERNELS

    missing = [name for name in KERNELS + CONSTANTS if not hasattr(cb, name)]
    assert not missing
    assert cb.NAME == "cuda" and cb.DTYPES == (np.float32, np.float64)


# ------------------------------------------------------------------ moving data


@pytest.mark.parametrize("dtype", DTYPES)
def test_roundtrip_and_dtype(cb, dtype):
    rng = np.random.default_rng(0)
    x = _rand(rng, (3, 5), dtype)
    d = cb.to_device(x)
    assert not isinstance(d, np.ndarray)
    assert d.dtype == np.dtype(dtype) and d.shape == (3, 5)
    assert cb.to_device(d) is d  # already on the device: no copy
    np.testing.assert_array_equal(_host(cb, d, dtype), x)
    # A non-contiguous view is copied as a C-contiguous array with the same values.
    view = np.asfortranarray(_rand(rng, (4, 6), dtype))[:, ::2]
    np.testing.assert_array_equal(_host(cb, cb.to_device(view), dtype), view)
    np.testing.assert_array_equal(cb.to_host(x), x)  # a host array passes through


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_columns(cb, dtype):
    """A batch of columns from the host's row-major copy lands on the device as X[:, idx]."""
    X = _rand(np.random.default_rng(3), (5, 30), dtype)
    XR = np.ascontiguousarray(X.T)
    for idx in (np.array([4, 0, 29, 4]), slice(3, 11)):
        d = cb.gather_columns(XR, idx)
        assert not isinstance(d, np.ndarray) and d.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(_host(cb, d, dtype), X[:, idx])


@pytest.mark.parametrize("dtype", DTYPES)
def test_zeros_like(cb, small_launch, dtype):
    z = cb.zeros_like(cb.to_device(np.ones((3, 5), dtype)))
    np.testing.assert_array_equal(_host(cb, z, dtype), np.zeros((3, 5), dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_finite(cb, small_launch, dtype):
    x = np.ones((3, 7), dtype)
    assert cb.all_finite(cb.to_device(x)) is True
    for bad in (np.inf, -np.inf, np.nan):
        for where in ((0, 0), (2, 6), (1, 3)):  # first, last, and a middle block
            y = x.copy()
            y[where] = bad
            assert cb.all_finite(cb.to_device(y)) is False, (bad, where)


# ------------------------------------------------------------------ forward


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("offset", [False, True], ids=["plain", "offset"])
def test_forward_hidden(cb, tols, small_launch, activation, dtype, offset):
    """g(W @ A + b), and with ``offset`` g(W @ A + Z0 + b) (the dual first layer's forward):
    bias, offset and activation fused into the matmul epilogue."""
    rng = np.random.default_rng(7 if offset else 1)
    for n, k, m in SHAPES:
        W, A0, b = _rand(rng, (n, k), dtype), _rand(rng, (k, m), dtype), _rand(rng, (n, 1), dtype)
        mag = _mag_affine(W, A0, b)
        if offset:
            Z0 = _rand(rng, (n, m), dtype)
            got = cb.forward_hidden_offset(cb.to_device(W), cb.to_device(A0), cb.to_device(b),
                                           cb.to_device(Z0), activation)
            ref = nb.forward_hidden_offset(W, A0, b, Z0, activation)
            mag = mag + np.abs(Z0)
        else:
            got = cb.forward_hidden(cb.to_device(W), cb.to_device(A0), cb.to_device(b), activation)
            ref = nb.forward_hidden(W, A0, b, activation)
        close(tols, _host(cb, got, dtype), ref, dtype, k, _mag_activation(activation, ref, mag),
              f"{activation} {(n, k, m)}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", OUTPUT_ACTIVATIONS)
def test_forward_output(cb, tols, small_launch, output, dtype):
    rng = np.random.default_rng(2)
    for n, k, m in SHAPES:
        W, A0, b = _rand(rng, (n, k), dtype), _rand(rng, (k, m), dtype), _rand(rng, (n, 1), dtype)
        Z, A = cb.forward_output(cb.to_device(W), cb.to_device(A0), cb.to_device(b), output)
        Ze, Ae = nb.forward_output(W, A0, b, output)
        zmag = _mag_affine(W, A0, b)
        close(tols, _host(cb, Z, dtype), Ze, dtype, k, zmag, f"Z {(n, k, m)}")
        close(tols, _host(cb, A, dtype), Ae, dtype, max(k, n), _mag_activation(output, Ae, zmag),
              f"A {(n, k, m)}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_large_logits(cb, small_launch, dtype):
    """The column max is subtracted before exp: logits near the overflow limit stay finite."""
    big = 80.0 if dtype == np.float32 else 700.0  # exp(big) overflows only without the shift
    W = np.array([[1.0], [1.0], [-1.0]], dtype)
    A0 = np.array([[big, -big, 0.0]], dtype)
    b = np.zeros((3, 1), dtype)
    _, A = cb.forward_output(cb.to_device(W), cb.to_device(A0), cb.to_device(b), "softmax")
    A = _host(cb, A, dtype)
    assert np.isfinite(A).all()
    np.testing.assert_allclose(A.sum(axis=0), 1.0, rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_extreme_logits(cb, small_launch, dtype):
    """exp(-|z|) form: no overflow for large |z|; the same values as NumPy's."""
    z = np.array([[-800.0, -30.0, 0.0, 30.0, 800.0]]).astype(dtype)
    one, zero = np.ones((1, 1), dtype), np.zeros((1, 1), dtype)
    got = _host(cb, cb.forward_hidden(cb.to_device(one), cb.to_device(z), cb.to_device(zero),
                                      "sigmoid"), dtype)
    ref = nb.forward_hidden(one, z, zero, "sigmoid")
    assert got[0, 2] == 0.5 and got[0, 0] == 0 and got[0, 4] == 1
    np.testing.assert_allclose(got, ref, rtol=2 * np.finfo(dtype).eps, atol=0)


# ------------------------------------------------------------------ output layer


def _output_case(rng, output, n, m, dtype):
    k = 3
    W, A0, b = _rand(rng, (n, k), dtype), _rand(rng, (k, m), dtype), _rand(rng, (n, 1), dtype)
    Z, A = nb.forward_output(W, A0, b, output)
    return Z, A, _labels(rng, output, n, m, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("route", ["fused", "chain"])
@pytest.mark.parametrize("output", OUTPUT_ACTIVATIONS)
def test_output_delta(cb, tols, small_launch, output, route, dtype):
    rng = np.random.default_rng(3)
    ref = nb.output_delta if route == "fused" else nb.output_delta_chain
    fn = cb.output_delta if route == "fused" else cb.output_delta_chain
    for n, m in ((1, 1), (2, 1), (3, 7), (4, 9)):
        if output == "softmax" and n == 1:
            continue
        Z, A, Y = _output_case(rng, output, n, m, dtype)
        for dz_scale, db_scale in ((1.0, 1.0 / m), (1.0 / m, 1.0), (1.0, 1.0)):
            args = (output, dtype(dz_scale), dtype(db_scale))
            dZe, dbe, Le = ref(Z, A, Y, *args)
            dZ, db, L = fn(cb.to_device(Z), cb.to_device(A), cb.to_device(Y), *args)
            msg = f"{output} {route} {(n, m)} scales {(dz_scale, db_scale)}"
            assert isinstance(L, float) and db.shape == (n, 1)
            dz_mag = _mag_delta(output, route, A, Y, dz_scale)
            close(tols, _host(cb, dZ, dtype), dZe, dtype, n, dz_mag, "dZ " + msg)
            close(tols, _host(cb, db, dtype), dbe, dtype, m, _mag_row_sum(dz_mag, db_scale),
                  "db " + msg)
            close(tols, L, Le, dtype, n * m, _mag_loss(output, Z, A, Y), "loss " + msg)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", OUTPUT_ACTIVATIONS)
def test_output_loss(cb, tols, small_launch, output, dtype):
    rng = np.random.default_rng(4)
    for n, m in ((2, 1), (3, 7), (2, 13)):
        Z, A, Y = _output_case(rng, output, n, m, dtype)
        L = cb.output_loss(cb.to_device(Z), cb.to_device(A), cb.to_device(Y), output)
        assert isinstance(L, float)
        close(tols, L, nb.output_loss(Z, A, Y, output), dtype, n * m, _mag_loss(output, Z, A, Y))


@pytest.mark.parametrize("output", ["sigmoid", "sigmoid-overflow", "softmax"])
def test_chain_route_raises_on_saturation(cb, small_launch, output):
    """float32 outputs rounded to 0 or 1: the course's dA[L] is inf or NaN."""
    dtype = np.float32
    if output == "sigmoid":
        Z = np.array([[40.0, -1.0, 0.5, 2.0, -3.0]], dtype)  # sigmoid(40) rounds to 1.0: 0/0, NaN
        Y = np.array([[0.0, 1.0, 0.0, 1.0, 1.0]], dtype)
    elif output == "sigmoid-overflow":
        # sigmoid(-103) is the subnormal 1.4e-45: Y/A overflows to inf, and
        # dZ = dA A (1 - A) stays -inf (not NaN).
        output = "sigmoid"
        Z = np.array([[0.5, -1.0, 1.0, -2.0, -103.0]], dtype)
        Y = np.array([[0.0, 1.0, 0.0, 1.0, 1.0]], dtype)
    else:
        Z = np.array([[0.0, 0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 120.0, 0.0, 0.0]], dtype)
        Y = np.array([[0.0, 1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0, 0.0]], dtype)
    A = nb.forward_output(np.eye(Z.shape[0], dtype=dtype), Z, np.zeros((Z.shape[0], 1), dtype),
                          output)[1]
    assert ((A < np.finfo(dtype).tiny) | (A == 1)).any()
    args = (cb.to_device(Z), cb.to_device(A), cb.to_device(Y), output, dtype(1), dtype(1))
    with pytest.raises(SaturationError), np.errstate(all="ignore"):
        nb.output_delta_chain(Z, A, Y, output, dtype(1), dtype(1))
    with pytest.raises(SaturationError, match="output_grad='fused'"), _quiet():
        cb.output_delta_chain(*args)
    # The fused route has no division: finite, and the loss from the logits too.
    dZ, db, L = cb.output_delta(*args)
    assert cb.all_finite(dZ) and cb.all_finite(db) and np.isfinite(L)


def test_chain_route_raises_through_gradients(cb, registered, net_launch):
    params = {"W1": np.array([[100.0]], np.float32), "b1": np.zeros((1, 1), np.float32)}
    X, Y = np.array([[1.0, 1.0]], np.float32), np.array([[0.0, 1.0]], np.float32)
    with pytest.raises(SaturationError), _quiet():
        fastnn.gradients(params, X, Y, hidden="relu", output="sigmoid", output_grad="chain",
                         backend="cuda")
    J, g = fastnn.gradients(params, X, Y, hidden="relu", output="sigmoid", backend="cuda")
    assert np.isfinite(J) and all(np.isfinite(v).all() for v in g.values())


# ------------------------------------------------------------------ backward


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
def test_backward_hidden(cb, tols, small_launch, activation, dtype):
    rng = np.random.default_rng(5)
    for n, m in ((1, 1), (1, 5), (3, 7), (4, 9)):
        A = nb.forward_hidden(np.eye(n, dtype=dtype), _rand(rng, (n, m), dtype),
                              np.zeros((n, 1), dtype), activation)
        A[0, 0] = 0  # relu'(0) is taken as 0: the boundary case
        dA = _rand(rng, (n, m), dtype)
        dZe, dbe = nb.backward_hidden(dA.copy(), A, activation, dtype(1.0 / m))
        dZ, db = cb.backward_hidden(cb.to_device(dA), cb.to_device(A), activation, dtype(1.0 / m))
        # g' is evaluated from A (1 - A^2, A (1 - A)): its rounding is ~eps (|g'| + A^2).
        A64, dA64 = _f64(A, dA)
        dz_mag = np.abs(dA64) * (_g_prime(activation, A64) + A64 * A64)
        close(tols, _host(cb, dZ, dtype), dZe, dtype, 1, dz_mag, f"dZ {(n, m)}")
        close(tols, _host(cb, db, dtype), dbe, dtype, m, _mag_row_sum(dz_mag, 1.0 / m),
              f"db {(n, m)}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_grad(cb, tols, small_launch, dtype):
    rng = np.random.default_rng(6)
    for n, k, m in SHAPES:
        dZ, A0, W = _rand(rng, (n, m), dtype), _rand(rng, (k, m), dtype), _rand(rng, (n, k), dtype)
        for scale, l2 in ((1.0, 0.0), (1.0 / m, 0.0), (1.0 / m, 0.3)):
            got = cb.weight_grad(cb.to_device(dZ), cb.to_device(A0), cb.to_device(W),
                                 dtype(scale), dtype(l2))
            ref = nb.weight_grad(dZ, A0, W, dtype(scale), dtype(l2))
            dZ64, A064, W64 = _f64(dZ, A0, W)
            mag = scale * np.abs(dZ64) @ np.abs(A064).T + l2 * np.abs(W64)
            close(tols, _host(cb, got, dtype), ref, dtype, m, mag, f"{(n, k, m)} {scale} {l2}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_step(cb, tols, small_launch, dtype):
    """W = beta W + alpha dZ @ A.T in place (the matmul's epilogue reads and writes W)."""
    rng = np.random.default_rng(9)
    for n, k, m in SHAPES:
        W, dZ, A0 = _rand(rng, (n, k), dtype), _rand(rng, (n, m), dtype), _rand(rng, (k, m), dtype)
        Wd = cb.to_device(W)
        cb.weight_step(Wd, cb.to_device(dZ), cb.to_device(A0), -0.3, 0.9)
        We = W.copy()
        nb.weight_step(We, dZ, A0, np.dtype(dtype).type(-0.3), np.dtype(dtype).type(0.9))
        mag = np.abs(W.astype(np.float64)) + 0.3 * (np.abs(dZ.astype(np.float64)) @ np.abs(A0.T))
        close(tols, _host(cb, Wd, dtype), We, dtype, m, mag, f"{(n, k, m)}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_abs(cb, small_launch, dtype):
    """Block maxima folded until one is left: every size, and inf for inf or NaN."""
    rng = np.random.default_rng(4)
    for size in (1, 3, 4, 5, 17, 70):
        x = _rand(rng, (size,), dtype)
        assert cb.max_abs(cb.to_device(x)) == float(np.abs(x).max())
        for bad in (np.inf, -np.inf, np.nan):
            y = x.copy()
            y[size // 2] = bad
            assert cb.max_abs(cb.to_device(y)) == np.inf
    assert cb.max_abs(cb.to_device(np.zeros((2, 0), dtype))) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_input_grad(cb, tols, small_launch, dtype):
    rng = np.random.default_rng(7)
    for n, k, m in SHAPES:
        W, dZ = _rand(rng, (n, k), dtype), _rand(rng, (n, m), dtype)
        got = cb.input_grad(cb.to_device(W), cb.to_device(dZ))
        W64, dZ64 = _f64(W, dZ)
        close(tols, _host(cb, got, dtype), nb.input_grad(W, dZ), dtype, n,
              np.abs(W64).T @ np.abs(dZ64), f"{(n, k, m)}")


def test_default_launch_constants(cb, tols):
    """The module's own TILE (16) and TPB (128), across their boundaries (17, 130)."""
    dtype = np.float32
    rng = np.random.default_rng(8)
    n, k, m = 17, 2, 3
    W, A0, b = _rand(rng, (n, k), dtype), _rand(rng, (k, m), dtype), _rand(rng, (n, 1), dtype)
    D = cb.to_device
    W64, A064, b64 = _f64(W, A0, b)
    ref = nb.forward_hidden(W, A0, b, "tanh")
    close(tols, _host(cb, cb.forward_hidden(D(W), D(A0), D(b), "tanh"), dtype), ref, dtype, k,
          _mag_activation("tanh", ref, _mag_affine(W, A0, b)))
    dZ = _rand(rng, (n, m), dtype)
    dZ64 = _f64(dZ)[0]
    close(tols, _host(cb, cb.input_grad(D(W), D(dZ)), dtype), nb.input_grad(W, dZ), dtype, n,
          np.abs(W64).T @ np.abs(dZ64))
    dA, A = _rand(rng, (1, 130), dtype), _rand(rng, (1, 130), dtype)
    _, db = cb.backward_hidden(D(dA), D(A), "relu", dtype(1.0 / 130))
    close(tols, _host(cb, db, dtype), nb.backward_hidden(dA.copy(), A, "relu", dtype(1.0 / 130))[1],
          dtype, 130, _mag_row_sum(np.abs(_f64(dA)[0]), 1.0 / 130))


@FEW
@given(n=st.integers(1, 7), k=st.integers(1, 7), m=st.integers(1, 9), tile=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1), f32=st.booleans())
def test_matmul_variants_any_tile(cb, tols, launch, n, k, m, tile, seed, f32):
    """A@B (+ bias), A@B.T and A.T@B for any shapes and any TILE (3 is not a power of two)."""
    dtype = np.float32 if f32 else np.float64
    rng = np.random.default_rng(seed)
    W, A0, b = _rand(rng, (n, k), dtype), _rand(rng, (k, m), dtype), _rand(rng, (n, 1), dtype)
    dZ = _rand(rng, (n, m), dtype)
    D = cb.to_device
    with launch(4, tile):
        fh = cb.forward_hidden(D(W), D(A0), D(b), "identity")
        wg = cb.weight_grad(D(dZ), D(A0), D(W), dtype(1.0), dtype(0.0))
        ig = cb.input_grad(D(W), D(dZ))
    W64, A064, b64, dZ64 = _f64(W, A0, b, dZ)
    aW, aA, adZ = np.abs(W64), np.abs(A064), np.abs(dZ64)
    close(tols, _host(cb, fh, dtype), W64 @ A064 + b64, dtype, k, aW @ aA + np.abs(b64))
    close(tols, _host(cb, wg, dtype), dZ64 @ A064.T, dtype, m, adZ @ aA.T)
    close(tols, _host(cb, ig, dtype), W64.T @ dZ64, dtype, n, aW.T @ adZ)


@FEW
@given(n=st.integers(1, 4), m=st.integers(1, 24), tpb=st.integers(1, 8),
       seed=st.integers(0, 2**32 - 1), f32=st.booleans())
def test_row_sums_any_tpb(cb, tols, launch, n, m, tpb, seed, f32):
    """The two-pass tree reductions (db, loss, all_finite) for any TPB, powers of two or not."""
    dtype = np.float32 if f32 else np.float64
    rng = np.random.default_rng(seed)
    dA, A, Y = _rand(rng, (n, m), dtype), _rand(rng, (n, m), dtype), _rand(rng, (n, m), dtype)
    with launch(tpb, 2):
        _, db = cb.backward_hidden(cb.to_device(dA), cb.to_device(A), "identity", dtype(1.0))
        _, db2, L = cb.output_delta(cb.to_device(A), cb.to_device(A), cb.to_device(Y),
                                    "identity", dtype(1.0), dtype(1.0))
        ok = cb.all_finite(cb.to_device(dA))
    dA64, A64, Y64 = _f64(dA, A, Y)
    close(tols, _host(cb, db, dtype), dA64.sum(axis=1, keepdims=True), dtype, m,
          np.abs(dA64).sum(axis=1, keepdims=True))
    close(tols, _host(cb, db2, dtype), (A64 - Y64).sum(axis=1, keepdims=True), dtype, m,
          (np.abs(A64) + np.abs(Y64)).sum(axis=1, keepdims=True))
    close(tols, L, float(np.sum(0.5 * (A64 - Y64) ** 2)), dtype, n * m,
          _mag_loss("identity", A, A, Y))
    assert ok


def test_reductions_deterministic(cb, launch):
    """No atomics: the same inputs give bitwise the same sums, launch after launch."""
    rng = np.random.default_rng(9)
    Z, A, Y = _output_case(rng, "softmax", 3, 11, np.float32)
    D = cb.to_device
    with launch(4, 2):
        runs = [cb.output_delta(D(Z), D(A), D(Y), "softmax", np.float32(1), np.float32(1 / 11))
                for _ in range(3)]
    for _, db, L in runs[1:]:
        np.testing.assert_array_equal(cb.to_host(db), cb.to_host(runs[0][1]))
        assert L == runs[0][2]


def test_launches_are_configured_without_the_low_occupancy_warning(cb, monkeypatch):
    """Every kernel is launched through _QuietLaunch, which turns numba-cuda's
    low-occupancy check off while the launch is configured and restores it."""
    seen = []

    class Kernel:
        def __getitem__(self, launch):
            seen.append((launch, cb._cuda_config.CUDA_LOW_OCCUPANCY_WARNINGS))
            return "configured"

    monkeypatch.setattr(cb._cuda_config, "CUDA_LOW_OCCUPANCY_WARNINGS", 1, raising=False)
    assert cb._QuietLaunch(Kernel())[1, 32, 0, 8] == "configured"
    assert seen == [((1, 32, 0, 8), 0)]
    assert cb._cuda_config.CUDA_LOW_OCCUPANCY_WARNINGS == 1  # restored
    x = cb.to_device(np.ones((2, 5)))
    with warnings.catch_warnings():  # one-block grids: on a GPU numba-cuda would warn
        warnings.simplefilter("error")
        cb.backward_hidden(x, x, "relu", 1.0)
        cb.input_grad(x, x)
        assert cb.all_finite(x)
    assert cb._CACHE and all(isinstance(k, cb._QuietLaunch) for k in cb._CACHE.values())


def test_quiet_launches_from_several_threads_put_the_setting_back(cb, monkeypatch):
    """Launches configured from many threads at once leave the user's setting as it was."""
    import threading
    import time

    class Kernel:
        def __getitem__(self, launch):
            time.sleep(0)  # hand the GIL over mid-configuration
            return launch

    monkeypatch.setattr(cb._cuda_config, "CUDA_LOW_OCCUPANCY_WARNINGS", 1, raising=False)
    quiet = cb._QuietLaunch(Kernel())

    def launches():
        for i in range(300):
            assert quiet[i, 32] == (i, 32)

    threads = [threading.Thread(target=launches) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cb._cuda_config.CUDA_LOW_OCCUPANCY_WARNINGS == 1


@pytest.mark.parametrize("quiet", [None, "1"])
def test_the_first_kernel_of_a_process_says_it_compiles(cb, monkeypatch, caplog, quiet):
    """One WARNING on fastnn.compile when the first kernel is built (on a GPU it compiles
    then, for seconds, with no disk cache); none for later kernels, none when quiet."""
    monkeypatch.setattr(cb, "_COMPILES", True)  # under the simulator nothing compiles
    monkeypatch.setattr(cb, "_said_compiling", [False])
    monkeypatch.setattr(cb, "_CACHE", {})
    if quiet is None:
        monkeypatch.delenv("FASTNN_QUIET", raising=False)
    else:
        monkeypatch.setenv("FASTNN_QUIET", quiet)
    x = cb.to_device(np.ones((2, 5)))
    with caplog.at_level("WARNING", logger="fastnn.compile"):
        cb.input_grad(x, x)
        cb.all_finite(x)
        cb.input_grad(x, x)
    said = [r.getMessage() for r in caplog.records if r.name == "fastnn.compile"]
    expected = [f"compiling CUDA kernels, first use in this process, about "
                f"{cb.CUDA_COMPILE_SECONDS} s"]
    assert said == ([] if quiet else expected)
    assert len(cb._CACHE) >= 2


def test_launch_constants_take_effect(cb, launch):
    """Kernels are built per shared-memory size: changing TPB/TILE builds new ones."""
    x = cb.to_device(np.ones((2, 5)))
    with launch(3, 3):
        cb.backward_hidden(cb.to_device(np.ones((2, 5))), x, "identity", 1.0)
        cb.input_grad(x, x)
    assert ("backward", "float64", 3) in cb._CACHE
    assert any(key[:3] == ("matmul", "float64", 3) for key in cb._CACHE)


# ------------------------------------------------------------------ optimizers


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adam-folded"])
def test_updates(cb, tols, small_launch, optimizer, dtype):
    """Three in-place steps on a (3, 5) parameter, state included, against NumPy
    (adam-folded: the gradient is g_scale * G + l2 * P, weight_grad's epilogue)."""
    rng = np.random.default_rng(10)
    P = _rand(rng, (3, 5), dtype)
    Gs = [_rand(rng, (3, 5), dtype) for _ in range(3)]
    t = np.dtype(dtype).type
    lr, beta, beta1, beta2, eps = 0.1, 0.9, 0.9, 0.999, 1e-8
    Pd, Pe = cb.to_device(P), P.copy()
    Md, Vd = cb.zeros_like(Pd), cb.zeros_like(Pd)
    Me, Ve = np.zeros_like(P), np.zeros_like(P)
    # Magnitudes: |P| plus the size of every step taken, and the state's terms in |.|.
    P_mag, M_mag = np.abs(P.astype(np.float64)), np.zeros(P.shape)
    for step, G in enumerate(Gs, start=1):
        Gd, before, G64 = cb.to_device(G), Pe.astype(np.float64), G.astype(np.float64)
        if optimizer == "sgd":
            cb.sgd_update(Pd, Gd, t(lr))
            nb.sgd_update(Pe, G, t(lr))
        elif optimizer == "momentum":
            cb.momentum_update(Pd, Gd, Vd, t(lr), t(beta))
            nb.momentum_update(Pe, G, Ve, t(lr), t(beta))
            M_mag = beta * M_mag + (1 - beta) * np.abs(G64)
        elif optimizer == "adam":
            cb.adam_update(Pd, Gd, Md, Vd, t(lr), t(beta1), t(beta2), t(eps), step)
            nb.adam_update(Pe, G, Me, Ve, t(lr), t(beta1), t(beta2), t(eps), step)
            M_mag = beta1 * M_mag + (1 - beta1) * np.abs(G64)
        else:
            g_scale, l2 = t(0.25), t(0.3)
            cb.adam_update(Pd, Gd, Md, Vd, t(lr), t(beta1), t(beta2), t(eps), step, g_scale, l2)
            nb.adam_update(Pe, G, Me, Ve, t(lr), t(beta1), t(beta2), t(eps), step, g_scale, l2)
            M_mag = beta1 * M_mag + (1 - beta1) * (0.25 * np.abs(G64) + 0.3 * np.abs(before))
        P_mag += np.abs(Pe - before)
    n = len(Gs)
    close(tols, _host(cb, Pd, dtype), Pe, dtype, n, P_mag, "P")
    if optimizer == "momentum":
        close(tols, _host(cb, Vd, dtype), Ve, dtype, n, M_mag, "V")
    if optimizer.startswith("adam"):
        close(tols, _host(cb, Md, dtype), Me, dtype, n, M_mag, "M")
        close(tols, _host(cb, Vd, dtype), Ve, dtype, n, Ve, "V")


# ------------------------------------------------------------------ whole network

DIMS = [3, 5, 4, 2]
M_EXAMPLES = 7
EPOCHS = 2
N_TERMS = max(max(DIMS), M_EXAMPLES)


@pytest.fixture
def net_launch(cb, monkeypatch):
    """TPB = 4, TILE = 4: m = 7 spans two blocks, a width of 5 two tiles; cheaper than TILE = 2."""
    monkeypatch.setattr(cb, "TPB", 4)
    monkeypatch.setattr(cb, "TILE", 4)


def _grid():
    """Every hidden x output x scaling in float32; in float64 a cover of each value."""
    cases = [(h, o, s, np.float32) for h in HIDDEN_ACTIVATIONS for o in OUTPUT_ACTIVATIONS
             for s in SCALINGS]
    cases += [(h, OUTPUT_ACTIVATIONS[i % 3], SCALINGS[i % 3], np.float64)
              for i, h in enumerate(HIDDEN_ACTIVATIONS)]
    return [pytest.param(*c, id=f"{c[0]}-{c[1]}-{c[2]}-{np.dtype(c[3]).name}") for c in cases]


def _problem(output, dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = fastnn.init_params(DIMS, init="xavier", dtype=dtype, seed=seed)
    for l in range(1, len(DIMS)):  # nonzero biases, so db and the bias add are tested
        params[f"b{l}"] = _rand(rng, params[f"b{l}"].shape, dtype, 0.5)
    X = _rand(rng, (DIMS[0], M_EXAMPLES), dtype)
    return params, X, _labels(rng, output, DIMS[-1], M_EXAMPLES, dtype)


@pytest.mark.parametrize("hidden,output,scaling,dtype", _grid())
def test_gradients_parity(cb, tols, naive, registered, net_launch, hidden, output, scaling, dtype):
    params, X, Y = _problem(output, dtype)
    kw = dict(hidden=hidden, output=output, scaling=scaling, l2=0.1)
    J, g = fastnn.gradients(params, X, Y, backend="cuda", **kw)
    Je, ge = fastnn.gradients(params, X, Y, backend="numpy", **kw)
    J_mag, g_mag = naive.gradient_magnitudes(params, X, Y, hidden, output, scaling, 0.1)
    close(tols, J, Je, dtype, N_TERMS, J_mag, "cost")
    assert set(g) == set(ge)
    for key in ge:
        assert g[key].dtype == np.dtype(dtype)
        close(tols, g[key], ge[key], dtype, N_TERMS, g_mag[key], key)


@pytest.mark.parametrize("output", OUTPUT_ACTIVATIONS)
def test_gradients_parity_chain_route(cb, tols, naive, registered, net_launch, output):
    dtype = np.float64
    params, X, Y = _problem(output, dtype)
    kw = dict(hidden="tanh", output=output, output_grad="chain")
    _, g = fastnn.gradients(params, X, Y, backend="cuda", **kw)
    _, ge = fastnn.gradients(params, X, Y, backend="numpy", **kw)
    _, g_mag = naive.gradient_magnitudes(params, X, Y, "tanh", output)
    for key in ge:
        close(tols, g[key], ge[key], dtype, N_TERMS, g_mag[key], key)


def test_forward_backward_keep_device_arrays(cb, tols, naive, registered, net_launch):
    """forward() keeps backend arrays in its cache; backward() consumes them."""
    dtype = np.float32
    params, X, Y = _problem("sigmoid", dtype)
    AL, cache = fastnn.forward(params, X, hidden="relu", output="sigmoid", backend="cuda")
    assert isinstance(AL, np.ndarray) and AL.dtype == dtype
    assert not isinstance(cache.As[-1], np.ndarray)
    g = fastnn.backward(params, cache, Y)
    ALe, cache_e = fastnn.forward(params, X, hidden="relu", output="sigmoid", backend="numpy")
    ge = fastnn.backward(params, cache_e, Y)
    close(tols, AL, ALe, dtype, N_TERMS, naive.forward_magnitudes(params, X, "relu", "sigmoid")[0])
    _, g_mag = naive.gradient_magnitudes(params, X, Y, "relu", "sigmoid")
    for key in ge:
        close(tols, g[key], ge[key], dtype, N_TERMS, g_mag[key], key)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer,output,options", [
    ("sgd", "sigmoid", dict(lr=0.1, batch_size=None)),
    ("momentum", "softmax", dict(lr=0.1, batch_size=4, l2=0.05)),
    ("adam", "identity", dict(lr=0.01, batch_size=4, scaling="absorbed")),
])
def test_fit_parity(cb, tols, registered, net_launch, optimizer, output, options, dtype):
    """A few epochs of Model.fit: the same costs and parameters as on NumPy."""
    _, X, Y = _problem(output, dtype, seed=1)
    runs = {}
    for backend in ("cuda", "numpy"):
        model = Model(DIMS, hidden="tanh", output=output, dtype=dtype, seed=3)
        P0 = {k: v.astype(np.float64) for k, v in model.params.items()}
        moved = {k: np.zeros(v.shape) for k, v in P0.items()}
        last = dict(P0)

        def track(epoch, model, history, moved=moved, last=last):
            for k, v in model.params.items():
                moved[k] += np.abs(v - last[k])
                last[k] = v.astype(np.float64)

        history = model.fit(X, Y, epochs=EPOCHS, optimizer=optimizer, backend=backend,
                            shuffle_seed=5, progress=False, callback=track, **options)
        runs[backend] = (model, history, P0, moved)
    (mc, hc, _, _), (mn, hn, P0, moved) = runs["cuda"], runs["numpy"]
    assert hc.backend == "cuda" and len(hc) == EPOCHS
    # Each step rounds |P| and errs in its gradient by ~rtol * |step|, and the
    # errors of earlier steps pass through later gradients (a Lipschitz factor
    # ~1 at these learning rates): the magnitude is |P0| plus the distance
    # travelled, and the reduction length is the steps times N_TERMS.
    steps = EPOCHS * -(-M_EXAMPLES // (options["batch_size"] or M_EXAMPLES))
    for key in mn.params:
        assert isinstance(mc.params[key], np.ndarray) and mc.params[key].dtype == np.dtype(dtype)
        close(tols, mc.params[key], mn.params[key], dtype, steps * N_TERMS,
              np.abs(P0[key]) + moved[key], key)
    close(tols, np.array(hc.cost), np.array(hn.cost), dtype, steps * N_TERMS, np.array(hn.cost),
          "cost")


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer. Maximum iterations:sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_mlp_classifier_parity(cb, tols, registered, net_launch, solver, dtype):
    """fastnn.MLPClassifier on cuda (gathered batches, adam with the L2 epilogue folded
    into the update) against the NumPy backend: same parameters and losses."""
    from fastnn import MLPClassifier

    rng = np.random.default_rng(7)
    X = _rand(rng, (21, 5), dtype)
    y = rng.integers(0, 3, 21)
    fits = {}
    for backend in ("cuda", "numpy"):
        fits[backend] = MLPClassifier((6,), solver=solver, alpha=0.3, batch_size=8, max_iter=2,
                                      learning_rate_init=0.01, random_state=0,
                                      backend=backend).fit(X, y)
    a, e = fits["cuda"], fits["numpy"]
    steps = 2 * 3
    for x, ref in zip(a.coefs_ + a.intercepts_, e.coefs_ + e.intercepts_):
        assert x.dtype == np.dtype(dtype)
        # |P| plus what the steps moved it (about lr each), over steps x batch terms
        close(tols, x, ref, dtype, steps * 8, np.abs(ref) + steps * 0.01)
    close(tols, np.array(a.loss_curve_), np.array(e.loss_curve_), dtype, steps * 8,
          np.array(e.loss_curve_))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_loop(cb, tols, net_launch, dtype):
    """The whole-loop kernel: same costs and parameters as NumPy's, and the stop on divergence."""
    params, X, Y = _problem("sigmoid", dtype)
    L = len(DIMS) - 1

    def run(bk, lr, iterations):
        Ws = [bk.to_device(params[f"W{l}"]) for l in range(1, L + 1)]
        bs = [bk.to_device(params[f"b{l}"]) for l in range(1, L + 1)]
        costs, steps = engine.sgd_loop(bk, Ws, bs, bk.to_device(X), bk.to_device(Y), "tanh",
                                       "sigmoid", "deferred", 0.1, lr, iterations)
        return costs, steps, [bk.to_host(W) for W in Ws]

    costs, steps, Ws = run(cb, 0.5, 2)
    costs_e, steps_e, Ws_e = run(nb, 0.5, 2)
    assert steps == steps_e == 2
    # 2 steps: the magnitude is |W| plus the distance travelled (see test_fit_parity).
    for W, We, l in zip(Ws, Ws_e, range(1, L + 1)):
        W0 = params[f"W{l}"].astype(np.float64)
        close(tols, W, We, dtype, 2 * N_TERMS, np.abs(W0) + np.abs(We - W0), f"W{l}")
    close(tols, costs, costs_e, dtype, 2 * N_TERMS, costs_e, "costs")
    # A learning rate near the dtype's max overflows the weights within a
    # step or two: both loops stop at the same step, before its update.
    huge = float(np.finfo(dtype).max) / 10
    with _quiet(), np.errstate(all="ignore"):
        costs, steps, _ = run(cb, huge, 3)
        costs_e, steps_e, _ = run(nb, huge, 3)
    assert steps == steps_e < 3
    assert np.isfinite(costs[:steps]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_loop_dual_first_layer(cb, tols, net_launch, dtype):
    """The dual first layer (fastnn.engine.sgd_steps) on the device: NumPy's primal run."""
    from fastnn import engine
    rng = np.random.default_rng(3)
    dims, m, steps = [9, 5, 1], 4, 3
    params = {}
    for l in range(1, len(dims)):
        params[f"W{l}"] = _rand(rng, (dims[l], dims[l - 1]), dtype)
        params[f"b{l}"] = _rand(rng, (dims[l], 1), dtype)
    X = _rand(rng, (dims[0], m), dtype)
    Y = (rng.random((1, m)) > 0.5).astype(dtype)
    out = {}
    for bk, dual in ((cb, True), (nb, False)):
        Ws = [bk.to_device(params[f"W{l}"]) for l in range(1, len(dims))]
        bs = [bk.to_device(params[f"b{l}"]) for l in range(1, len(dims))]
        costs, done = engine.sgd_steps(bk, Ws, bs, bk.to_device(X), bk.to_device(Y), "tanh",
                                        "sigmoid", "deferred", 0.0, 0.5, steps, dual=dual)
        out[bk] = (costs, done, [bk.to_host(P) for P in Ws + bs])
    (costs, done, P), (costs_e, done_e, P_e) = out[cb], out[nb]
    assert done == done_e == steps
    P0 = [params[f"W{l}"] for l in range(1, len(dims))] + [params[f"b{l}"] for l in range(1, len(dims))]
    for got, want, start in zip(P, P_e, P0):
        close(tols, got, want, dtype, steps * dims[0], np.abs(start) + np.abs(want - start), "param")
    close(tols, costs, costs_e, dtype, steps * dims[0], costs_e + np.max(costs_e), "costs")
