"""Model's dtype follows the data unless given; "auto" runs float16 on NumPy."""

import numpy as np
import pytest

import fastnn
import fastnn.errors
from fastnn.errors import FastnnTypeError
from fastnn_suite import requires_backends


def _data(dtype, m=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((3, m))
    Y = (X[:1] * X[1:2] > 0).astype(np.float64)
    return X.astype(dtype), Y.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_model_takes_the_dtype_of_its_first_X(dtype):
    X, Y = _data(dtype)
    model = fastnn.Model([3, 4, 1], "tanh", "sigmoid", seed=0)
    # Adam's default eps (1e-8) is below float16's smallest normal and is refused there
    eps = {"eps": 1e-4} if dtype == np.float16 else {}
    model.fit(X, Y, epochs=2, optimizer="adam", lr=0.01, progress=False, **eps)
    assert model.dtype == np.dtype(dtype)
    assert {p.dtype for p in model.params.values()} == {np.dtype(dtype)}
    assert model.predict_proba(X).dtype == np.dtype(dtype)
    assert model.fit(X.astype(np.float64), Y, epochs=1, progress=False) is not None
    assert model.dtype == np.dtype(dtype), "the dtype is fixed by the first fit"


def test_data_dtype_start_equals_a_model_built_in_that_dtype():
    X, Y = _data(np.float32)
    adopted = fastnn.Model([3, 4, 1], "tanh", "sigmoid", seed=3)
    given = fastnn.Model([3, 4, 1], "tanh", "sigmoid", seed=3, dtype=np.float32)
    h1 = adopted.fit(X, Y, epochs=3, lr=0.1, progress=False, backend="numpy")
    h2 = given.fit(X, Y, epochs=3, lr=0.1, progress=False, backend="numpy")
    assert h1.cost == h2.cost
    for k in given.params:
        np.testing.assert_array_equal(adopted.params[k], given.params[k])


def test_given_dtype_and_non_float_data_are_kept_or_float64():
    X, Y = _data(np.float32)
    model = fastnn.Model([3, 4, 1], "tanh", "sigmoid", seed=0, dtype=np.float64)
    model.fit(X, Y, epochs=1, progress=False)
    assert model.dtype == np.float64 and model.params["W1"].dtype == np.float64
    ints = fastnn.Model([3, 4, 1], "tanh", "sigmoid", seed=0)
    ints.fit(np.round(X * 3).astype(np.int64), Y, epochs=1, progress=False)
    assert ints.dtype == np.float64


@pytest.mark.parametrize("how", ["auto", "default", "env"])
def test_auto_runs_float16_on_numpy(how, monkeypatch):
    monkeypatch.delenv("FASTNN_BACKEND", raising=False)
    if how == "env":
        monkeypatch.setenv("FASTNN_BACKEND", "auto")
    X, Y = _data(np.float16)
    model = fastnn.Model([3, 4, 1], "tanh", "sigmoid", seed=0, dtype=np.float16)
    history = model.fit(X, Y, epochs=2, lr=0.01, progress=False, backend="auto" if how == "auto" else None)
    assert history.backend == "numpy"
    assert model.params["W1"].dtype == np.float16
    cost, grads = fastnn.gradients(model.params, X, Y, hidden="tanh", output="sigmoid",
                                   backend="auto" if how == "auto" else None)
    assert grads["dW1"].dtype == np.float16


@requires_backends("numba")
def test_a_named_backend_without_float16_is_refused_by_name():
    X, Y = _data(np.float16)
    with pytest.raises(FastnnTypeError, match=r"^dtype: float16 is not supported by backend 'numba'"):
        fastnn.Model([3, 4, 1], seed=0, dtype=np.float16).fit(X, Y, epochs=1, backend="numba", progress=False)
    with pytest.raises(FastnnTypeError, match=r"^params: float16 is not supported by backend 'numba'"):
        fastnn.gradients(fastnn.init_params([3, 4, 1], dtype=np.float16, seed=0), X, Y, backend="numba")
