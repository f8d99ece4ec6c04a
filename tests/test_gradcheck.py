"""gradcheck accepts every correct configuration and catches planted mistakes.

The network module calls kernels through the backend *module* the registry
returns, so a planted bug is a monkeypatched attribute of
``fastnn.backends.numpy_backend``.  gradcheck's numerical side only uses the
forward kernels and ``output_loss``, which the plants leave alone.
"""

import numpy as np
import pytest

import fastnn
import naive
from fastnn_suite import GRADCHECK_TOL, PLANTED_MIN, make_problem, n_out_for
from fastnn.activations import HIDDEN_ACTIVATIONS, OUTPUT_ACTIVATIONS
from fastnn.backends import numpy_backend
from fastnn.network import OUTPUT_GRADS, SCALINGS

M = 5
#: Central differences with step 1e-6 misjudge a ReLU kink only if a
#: pre-activation is within ~1e-5 of 0; require a wide margin.
KINK_MARGIN = 1e-3


def _check_no_kink(params, X, hidden):
    """Test premise: no hidden pre-activation near a kink of relu/leaky_relu."""
    if hidden not in ("relu", "leaky_relu"):
        return
    Ws, bs = naive._unpack(params)
    for i in range(X.shape[1]):
        zs, _ = naive.example_forward(Ws, bs, naive._column(X, i), hidden, "identity")
        closest = min(abs(z) for layer in zs[:-1] for z in layer)
        assert closest > KINK_MARGIN, f"premise: pre-activation {closest} too close to the kink"


@pytest.mark.parametrize("output_grad", OUTPUT_GRADS)
@pytest.mark.parametrize("l2", [0.0, 0.5])
@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("output", OUTPUT_ACTIVATIONS)
@pytest.mark.parametrize("hidden", HIDDEN_ACTIVATIONS)
def test_gradcheck_passes(backend_name, hidden, output, scaling, l2, output_grad):
    params, X, Y = make_problem([3, 4, 3, n_out_for(output)], M, output, np.float64, seed=21)
    _check_no_kink(params, X, hidden)
    err = fastnn.gradcheck(params, X, Y, hidden=hidden, output=output, scaling=scaling,
                           output_grad=output_grad, l2=l2, backend=backend_name)
    assert err < GRADCHECK_TOL


def test_gradcheck_float32_params_are_checked_in_float64():
    params, X, Y = make_problem([3, 4, 2], M, "sigmoid", np.float32, seed=22)
    assert fastnn.gradcheck(params, X, Y, hidden="tanh") < GRADCHECK_TOL


# ------------------------------------------------------------- planted bugs

PLANT_CASES = [(h, o) for h in ("tanh", "sigmoid", "relu") for o in OUTPUT_ACTIVATIONS] + \
    [("identity", "sigmoid"), ("leaky_relu", "softmax")]
#: Square hidden layers (n_1 = n_2 = n_L = 4) so W @ dZ has the shape of W.T @ dZ.
SQUARE_DIMS = [3, 4, 4, 4]


def _problem(hidden, output, dims=None):
    dims = dims or [3, 4, 3, n_out_for(output)]
    params, X, Y = make_problem(dims, M, output, np.float64, seed=23)
    _check_no_kink(params, X, hidden)
    return params, X, Y


def _err(params, X, Y, hidden, output, scaling, **kw):
    return fastnn.gradcheck(params, X, Y, hidden=hidden, output=output, scaling=scaling,
                            backend="numpy", **kw)


def _counting(monkeypatch, name, replacement):
    """Patch numpy_backend.<name> with ``replacement(original, *args)``; count calls."""
    original = getattr(numpy_backend, name)
    calls = []

    def patched(*args):
        calls.append(1)
        return replacement(original, *args)

    monkeypatch.setattr(numpy_backend, name, patched)
    assert fastnn.get_backend("numpy").__dict__[name] is patched
    return calls


@pytest.mark.parametrize("hidden, output", PLANT_CASES)
def test_gradcheck_catches_missing_one_over_m(monkeypatch, hidden, output):
    """(a) dW without its 1/m under deferred: weight_grad ignores ``scale``."""
    params, X, Y = _problem(hidden, output)
    assert _err(params, X, Y, hidden, output, "deferred") < GRADCHECK_TOL
    calls = _counting(monkeypatch, "weight_grad",
                      lambda f, dZ, A, W, scale, l2s: f(dZ, A, W, type(scale)(1), l2s))
    assert _err(params, X, Y, hidden, output, "deferred") > PLANTED_MIN
    assert calls


@pytest.mark.parametrize("hidden, output", PLANT_CASES)
def test_gradcheck_catches_doubled_one_over_m(monkeypatch, hidden, output):
    """(b) 1/m applied twice to dW under deferred."""
    params, X, Y = _problem(hidden, output)
    calls = _counting(monkeypatch, "weight_grad",
                      lambda f, dZ, A, W, scale, l2s: f(dZ, A, W, scale * scale, l2s))
    assert _err(params, X, Y, hidden, output, "deferred") > PLANTED_MIN
    assert calls


@pytest.mark.parametrize("hidden, output", PLANT_CASES)
def test_gradcheck_catches_doubled_one_over_m_in_output_delta(monkeypatch, hidden, output):
    """(b') 1/m applied twice to dZ[L] under absorbed."""
    params, X, Y = _problem(hidden, output)
    calls = _counting(monkeypatch, "output_delta",
                      lambda f, Z, A, Y_, o, dzs, dbs: f(Z, A, Y_, o, dzs * dzs, dbs))
    assert _err(params, X, Y, hidden, output, "absorbed") > PLANTED_MIN
    assert calls


@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("hidden, output", PLANT_CASES)
def test_gradcheck_catches_missing_transpose(monkeypatch, hidden, output, scaling):
    """(c) dA[l-1] = W[l] @ dZ[l] instead of W[l].T @ dZ[l] (square layers)."""
    params, X, Y = _problem(hidden, output, SQUARE_DIMS)
    assert _err(params, X, Y, hidden, output, scaling) < GRADCHECK_TOL
    calls = _counting(monkeypatch, "input_grad", lambda f, W, dZ: f(np.ascontiguousarray(W.T), dZ))
    assert _err(params, X, Y, hidden, output, scaling) > PLANTED_MIN
    assert calls


@pytest.mark.parametrize("hidden, output", PLANT_CASES)
def test_gradcheck_catches_one_over_m_in_every_layer(monkeypatch, hidden, output):
    """(d) under absorbed, 1/m put into every hidden layer's dZ too (applied L times)."""
    params, X, Y = _problem(hidden, output)
    assert _err(params, X, Y, hidden, output, "absorbed") < GRADCHECK_TOL

    def every_layer(f, dA, A, activation, db_scale):
        m = dA.shape[1]
        return f(dA * dA.dtype.type(1.0 / m), A, activation, db_scale)

    calls = _counting(monkeypatch, "backward_hidden", every_layer)
    assert _err(params, X, Y, hidden, output, "absorbed") > PLANTED_MIN
    assert calls


@pytest.mark.parametrize("hidden", [h for h in HIDDEN_ACTIVATIONS if h != "identity"])
def test_gradcheck_catches_wrong_activation_derivative(monkeypatch, hidden):
    """A hidden layer that skips g'(Z) is caught for every non-identity activation."""
    params, X, Y = _problem(hidden, "sigmoid")
    _counting(monkeypatch, "backward_hidden",
              lambda f, dA, A, activation, db_scale: f(dA, A, "identity", db_scale))
    assert _err(params, X, Y, hidden, "sigmoid", "deferred") > PLANTED_MIN


def test_gradcheck_catches_missing_l2_term(monkeypatch):
    params, X, Y = _problem("tanh", "sigmoid")
    _counting(monkeypatch, "weight_grad", lambda f, dZ, A, W, scale, l2s: f(dZ, A, W, scale, 0 * l2s))
    assert _err(params, X, Y, "tanh", "sigmoid", "deferred", l2=0.5) > PLANTED_MIN


def test_monkeypatch_is_undone():
    """The plants above must not leak: the registry's module is the pristine one again."""
    params, X, Y = _problem("tanh", "softmax", SQUARE_DIMS)
    for scaling in SCALINGS:
        assert _err(params, X, Y, "tanh", "softmax", scaling) < GRADCHECK_TOL
