"""The ``backend=`` fast path of the course's model functions equals the course loop."""

import numpy as np
import pytest

import fastnn
from fastnn.compat import dnn, planar

from conftest import assert_close, backend_params, tol

FAST_BACKENDS = backend_params([name for name in fastnn.backends.REGISTRY if name != "cuda"])


def _cat_like(seed=0, n_x=40, m=30):
    rng = np.random.RandomState(seed)
    X = rng.rand(n_x, m)
    Y = (rng.rand(1, m) > 0.5).astype(float)
    return X, Y


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(a))))


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("model, dims", [(dnn.L_layer_model, [40, 7, 5, 1]),
                                         (dnn.two_layer_model, (40, 7, 1))])
def test_fast_path_equals_course_loop(backend, model, dims, capsys):
    X, Y = _cat_like()
    X0, Y0 = X.copy(), Y.copy()
    p_ref, c_ref = model(X, Y, dims, num_iterations=201, print_cost=True)
    after_ref = np.random.rand()
    out_ref = capsys.readouterr().out
    p_fast, c_fast = model(X, Y, dims, num_iterations=201, print_cost=True, backend=backend)
    after_fast = np.random.rand()
    out_fast = capsys.readouterr().out
    # 201 steps of a small net: each step's rounding differs by a few ulp
    # (cost from logits, dZ = A - Y); growth over the steps stays far below
    # the float64 tolerance for reductions of length m * steps.
    rtol, _ = tol(np.float64, X.shape[1] * 201)
    assert len(c_fast) == len(c_ref) == 3
    for a, b in zip(c_ref, c_fast):
        assert isinstance(b, np.ndarray) and b.shape == ()
        assert abs(float(a) - float(b)) <= rtol * abs(float(a))
    for k in p_ref:
        assert p_fast[k].dtype == np.float64 and p_fast[k].shape == p_ref[k].shape
        assert _rel(p_ref[k], p_fast[k]) <= rtol
    assert after_fast == after_ref  # same global RNG state afterwards
    assert [l.split(":")[0] for l in out_fast.splitlines()] == \
        [l.split(":")[0] for l in out_ref.splitlines()]
    assert np.array_equal(X, X0) and np.array_equal(Y, Y0)


def _planar_magnitudes(X, Y, n_h, iterations, lr=1.2):
    """Per parameter entry, the sum of |terms| it is made of after ``iterations`` of the
    course's planar loop: |initial value| + lr * the sum over steps of each gradient's
    |terms| (|dZ| propagated with |W|, |A|), the magnitude conftest's tolerances scale.
    An entry whose updates cancel (b2 here) is judged against the size of its terms."""
    np.random.seed(3)                               # as nn_model
    p = planar.initialize_parameters(X.shape[0], n_h, Y.shape[0])
    mag = {k: np.abs(v) for k, v in p.items()}
    m = X.shape[1]
    for _ in range(iterations):
        A2, cache = planar.forward_propagation(X, p)
        A1 = cache["A1"]
        dZ2 = np.abs(A2 - Y)
        dZ1 = (np.abs(p["W2"]).T @ dZ2) * (1 - A1 ** 2)
        terms = {"W2": dZ2 @ np.abs(A1).T, "b2": dZ2.sum(axis=1, keepdims=True),
                 "W1": dZ1 @ np.abs(X).T, "b1": dZ1.sum(axis=1, keepdims=True)}
        for k in mag:
            mag[k] = mag[k] + (lr / m) * terms[k]
        p = planar.update_parameters(p, planar.backward_propagation(p, cache, X, Y), lr)
    return mag


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_planar_fast_path_equals_course_loop(backend, capsys):
    rng = np.random.RandomState(1)
    X = rng.randn(2, 60)
    Y = (X[0:1] * X[1:2] > 0).astype(float)
    # Few steps: at learning rate 1.2 the course's planar training amplifies
    # rounding differences chaotically after a few hundred steps.
    p_ref = planar.nn_model(X, Y, 4, num_iterations=50)
    p_fast = planar.nn_model(X, Y, 4, num_iterations=50, backend=backend)
    mags = _planar_magnitudes(X, Y, 4, 50)
    for k in p_ref:
        assert_close(p_fast[k], p_ref[k], np.float64, X.shape[1] * 50, magnitude=mags[k], err_msg=k)


def test_fast_path_rejects_unknown_backend():
    X, Y = _cat_like()
    with pytest.raises(ValueError, match="backend"):
        dnn.L_layer_model(X, Y, [40, 3, 1], num_iterations=2, backend="nope")
