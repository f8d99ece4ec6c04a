"""Dropout on the CUDA backend: the fused kernel's masks bitwise those of the
NumPy reference (several blocks per launch), gradients and a training run
against the NumPy backend (tests/test_dropout.py holds the other backends)."""

import numpy as np
import pytest

import fastnn
from fastnn import _dropout
from fastnn.backends import numpy_backend as nb
from fastnn.model import Model

pytestmark = pytest.mark.cuda

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, keep", [((3, 37), 0.7), ((1, 1), 0.3), ((5, 9), 1.0)])
def test_dropout_kernel_bitwise_the_numpy_mask(cb, small_launch, dtype, shape, keep):
    rng = np.random.default_rng(0)
    A = rng.standard_normal(shape).astype(dtype)
    A.flat[::4] = -0.0
    key = _dropout.step_key((1 << 64) - 3, 2, (1 << 32) + 11)
    kd = np.dtype(dtype).type(keep)
    expected = np.where(_dropout.keep_mask(shape, keep, key), A / kd, np.dtype(dtype).type(0))
    out = cb.to_host(cb.dropout_forward(cb.to_device(A), keep, key))
    assert out.dtype == dtype and np.array_equal(out.view(np.uint8), expected.view(np.uint8))
    dA = cb.to_device(A)
    cb.dropout_backward(dA, keep, key)
    assert np.array_equal(cb.to_host(dA).view(np.uint8), expected.view(np.uint8))


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_gradients_match_the_numpy_backend(cb, tols, small_launch, dtype):
    from fastnn.engine import backward as _backward, forward_dropout as _forward_dropout
    rng = np.random.default_rng(2)
    dims, m = [4, 6, 5, 2], 9
    params = {}
    for l in range(1, len(dims)):
        params[f"W{l}"] = rng.standard_normal((dims[l], dims[l - 1])).astype(dtype)
        params[f"b{l}"] = rng.standard_normal((dims[l], 1)).astype(dtype)
    X = rng.standard_normal((dims[0], m)).astype(dtype)
    Y = rng.integers(0, 2, (dims[-1], m)).astype(dtype)
    drop = _dropout.DropoutStep((0.75, 0.5), 31, 4)

    def grads(bk, cast):
        Ws = [bk.to_device(cast(params[f"W{l}"])) for l in range(1, 4)]
        bs = [bk.to_device(cast(params[f"b{l}"])) for l in range(1, 4)]
        As, Gs, ZL = _forward_dropout(bk, Ws, bs, bk.to_device(cast(X)), "tanh", "sigmoid", drop)
        dWs, dbs, _ = _backward(bk, Ws, As, ZL, bk.to_device(cast(Y)), "tanh", "sigmoid",
                                "deferred", "fused", 0.0, drop=drop, Gs=Gs)
        return [bk.to_host(g) for g in dWs + dbs]

    expected = grads(nb, lambda a: a.astype(np.float64))
    for got, ref in zip(grads(cb, lambda a: a), expected):
        assert got.dtype == dtype
        # Magnitude: |ref| plus its largest entry (a gradient of a 5-unit net, m = 9).
        tols.assert_close(got, ref, dtype, 16, magnitude=np.abs(ref) + np.max(np.abs(ref)))


def test_dropout_fit_matches_the_numpy_backend(cb, tols, registered, small_launch):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((4, 24))
    Y = (X[:1] > 0).astype(np.float64)
    out = {}
    for b in ("numpy", "cuda"):
        model = Model([4, 6, 1], "tanh", seed=0, dropout=0.6)
        h = model.fit(X, Y, epochs=3, batch_size=8, lr=0.1, shuffle_seed=1, backend=b,
                      progress=False)
        out[b] = (model.params, h.cost)
    rtol, _ = tols.tol(np.float64, 24 * 15)
    np.testing.assert_allclose(out["cuda"][1], out["numpy"][1], rtol=rtol)
    for k, ref in out["numpy"][0].items():
        tols.assert_close(out["cuda"][0][k], ref, np.float64, 24 * 15,
                          magnitude=np.abs(ref) + np.max(np.abs(ref)))
