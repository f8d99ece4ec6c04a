"""The reliability suite on the cuda backend: hostile input, numeric edge cases, divergence.

tests/test_reliability_fuzz.py, tests/test_reliability_numeric.py and
tests/test_reliability_divergence.py are parametrised over every backend, but
in the main pytest process the cuda parametrisations are skipped: the
simulator has to be switched on (``NUMBA_ENABLE_CUDASIM=1``) before numba is
imported.  This file runs the same checks on ``backend="cuda"`` in the CUDA
process (``NUMBA_ENABLE_CUDASIM=1 python -m pytest -q -m cuda tests/cuda``):

* the fuzz tests' bodies (``test.hypothesis.inner_test``, hypothesis's handle
  on the undecorated function) with this file's example counts: the same
  strategies, mutations, ``kernel_guard`` (on cuda it checks the device
  arrays and fails on a host array reaching a kernel) and contract -- equal to
  the NumPy backend on the canonical arguments within THE tolerance of
  tests/conftest.py, or a fastnn error naming the argument, inputs unchanged;
* the fuzz module's regression tests, and the numeric edge-case and divergence
  tests, called with ``backend="cuda"``.

Budget.  The simulator runs one Python thread per CUDA thread: a
``gradients`` call on a 3-4-2 net costs ~0.5 s, a step of ``fit`` about the
same, so the whole file is kept to about 30 s on an idle 2-core machine
(timings under load in docs/reliability.md).  The fuzz runs
``fuzz_settings(n)`` (the fuzz module's settings: derandomized, so CI sees the
same cases) with small ``n``; the numeric and divergence grids run a cover --
both dtypes, both fit paths (whole-loop and step loop), every optimizer, both
outputs that saturate -- instead of the product, and three numeric tests run
their gradient checks with each input paired with one activation (of their
fits only the single-example one is kept; the model fuzz trains on cuda
too).  ``FASTNN_SOAK=1`` runs 20 times the fuzz examples with fresh seeds and
the full grids (about 8 minutes on an idle machine).
Never run here: the fan-in tests of 16384 and 2**20 inputs (10**4-10**6
simulated threads per layer, minutes per call; a fan-in of 128 runs instead)
and the 50-skips-in-a-row test (50 simulated steps of Model.fit bookkeeping
that is the same on every backend).  On a machine with a GPU the main pytest
process runs the full grids on cuda too (its ``BACKEND_PARAMS`` include cuda
there).

``TPB = 4`` and ``TILE = 4`` for the whole module (the ``launch`` fixture of
conftest.py): m = 5 or 8 spans two blocks, a width of 5 two tiles.
"""

import collections
import itertools
import json
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastnn
import test_reliability_divergence as divergence
import test_reliability_fuzz as fuzz
import test_reliability_numeric as numeric
from fastnn.backends import get_backend
from fastnn_suite import make_problem

pytestmark = [
    pytest.mark.cuda,
    # The simulator runs the kernels on NumPy scalars and arrays, which warn where a GPU
    # silently gives inf/NaN (rounding a stored value, overflow, 0/0); those values are
    # what the checks here are about.
    pytest.mark.filterwarnings("ignore::RuntimeWarning:fastnn.backends.cuda_backend"),
    # ... and the loss formulas it compiles from _numba_kernels/formulas.py.
    pytest.mark.filterwarnings("ignore::RuntimeWarning:fastnn.backends._numba_kernels.formulas"),
    pytest.mark.filterwarnings(r"ignore::RuntimeWarning:numba.*\.simulator\."),
]

CUDA = "cuda"
TPB, TILE = 4, 4
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
DTYPES = [F32, F64]
OUTPUTS = ["sigmoid", "softmax", "identity"]


def cases(cover, full):
    """The parameter sets run: a cover of the test's grid, or all of it with FASTNN_SOAK=1."""
    return list(full) if fuzz.SOAK else list(cover)


def product(*axes):
    return list(itertools.product(*axes))


def ids(value):
    return value.name if isinstance(value, np.dtype) else None


@pytest.fixture(scope="module", autouse=True)
def _small_launch(launch):
    with launch(TPB, TILE):
        yield


@pytest.fixture(scope="module", autouse=True)
def _dump_stats():
    """This module's outcome counts of the fuzz bodies (they tally into fuzz.STATS) to
    $FASTNN_FUZZ_STATS, as the fuzz module does for its own."""
    before = collections.Counter(fuzz.STATS)
    yield
    path = os.environ.get("FASTNN_FUZZ_STATS")
    if path:
        with open(path, "w") as fh:
            json.dump(dict(sorted((fuzz.STATS - before).items())), fh, indent=1)


def body(test):
    """The undecorated function of one of the fuzz module's hypothesis tests."""
    return test.hypothesis.inner_test


# ------------------------------------------------------------------ fuzz


@pytest.mark.parametrize("target", fuzz.TARGETS)
@fuzz.fuzz_settings(6)
@given(data=st.data())
def test_functional_api_fuzz(target, data):
    body(fuzz.test_functional_api_fuzz)(backend=CUDA, target=target, data=data)


@fuzz.fuzz_settings(15)
@given(data=st.data())
def test_backward_rejects_edited_caches(data):
    body(fuzz.test_backward_rejects_edited_caches)(backend=CUDA, data=data)


@fuzz.fuzz_settings(10)
@given(data=st.data())
def test_model_fuzz(data):
    body(fuzz.test_model_fuzz)(backend=CUDA, data=data)


@fuzz.fuzz_settings(10)
@given(data=st.data())
def test_compat_fast_path_fuzz(data):
    body(fuzz.test_compat_fast_path_fuzz)(backend=CUDA, data=data)


def test_kernel_guard_sees_device_arrays(cb):
    """The guard checks the device arrays the cuda kernels get, and refuses host arrays."""
    bk = get_backend(CUDA)
    W, A, b = (bk.to_device(np.ones(s)) for s in ((2, 3), (3, 4), (2, 1)))
    with fuzz.kernel_guard(bk):
        np.testing.assert_array_equal(bk.to_host(bk.forward_hidden(W, A, b, "relu")), np.full((2, 4), 4.0))
        with pytest.raises(AssertionError, match="host array"):
            bk.forward_hidden(W, np.ones((3, 4)), b, "relu")
        with pytest.raises(AssertionError, match="not C-contiguous"):
            bk.forward_hidden(W, bk.to_device(np.ones((3, 8)))[:, ::2], b, "relu")
        with pytest.raises(AssertionError, match="shapes"):
            bk.forward_hidden(W, bk.to_device(np.ones((4, 4))), b, "relu")
        with pytest.raises(AssertionError, match="mixed"):
            bk.sgd_update(W, bk.to_device(np.ones((2, 3), np.float32)), 0.1)


def test_regression_overflow_is_an_error_not_a_silent_inf(cb):
    fuzz.test_regression_overflow_is_an_error_not_a_silent_inf(CUDA)


def test_regression_fit_validates_model_params(cb):
    fuzz.test_regression_fit_validates_model_params(CUDA)


def test_regression_compat_fast_path_validates_rate_and_iterations(cb):
    fuzz.test_regression_compat_fast_path_validates_rate_and_iterations(CUDA)


# ------------------------------------------------------------------ numeric edge cases


@pytest.mark.parametrize("output, logit, dtype", cases(
    [("sigmoid", 1e4, F32), ("softmax", 1e2, F32), ("softmax", 1e4, F64)],
    product(["sigmoid", "softmax"], [30.0, 1e2, 1e4], DTYPES)), ids=ids)
def test_saturated_outputs_fused_finite_chain_raises(cb, output, logit, dtype):
    numeric.test_saturated_outputs_fused_finite_chain_raises(CUDA, dtype, output, logit)


@pytest.mark.parametrize("dtype", cases([F32], DTYPES), ids=ids)
def test_fit_saturated_fused_trains_chain_raises_naming_the_step(cb, dtype):
    numeric.test_fit_saturated_fused_trains_chain_raises_naming_the_step(CUDA, dtype)


@pytest.mark.parametrize("output, dtype", cases([("softmax", F32)], product(OUTPUTS, DTYPES)), ids=ids)
def test_all_equal_inputs(cb, output, dtype):
    """numeric.test_all_equal_inputs' gradients, each input paired with one hidden
    activation: identical columns, constant X, all-zero X (relu at its kink)."""
    if fuzz.SOAK:
        numeric.test_all_equal_inputs(CUDA, dtype, output)
        return
    params, X, Y = make_problem([4, 5, 3 if output == "softmax" else 2], 7, output, dtype, seed=3)
    inputs = (np.repeat(X[:, :1], 7, axis=1), np.full_like(X, 0.5), np.zeros_like(X))
    for Xe, hidden in zip(inputs, ("tanh", "sigmoid", "relu")):
        numeric._against_naive(params, Xe, Y, hidden, output, CUDA, dtype)


@pytest.mark.parametrize("output, dtype", cases([("softmax", F32)], product(OUTPUTS, DTYPES)), ids=ids)
def test_single_example(cb, output, dtype):
    """numeric.test_single_example (m = 1) with hidden x scaling as pairs, and a fit of
    batch_size 1 with adam."""
    if fuzz.SOAK:
        numeric.test_single_example(CUDA, dtype, output)
        return
    dims = [3, 4, 3 if output == "softmax" else 1]
    params, X, Y = make_problem(dims, 1, output, dtype, seed=4)
    for hidden, scaling in zip(("relu", "leaky_relu", "tanh"), ("deferred", "absorbed", "sum")):
        numeric._against_naive(params, X, Y, hidden, output, CUDA, dtype, scaling=scaling, l2=0.5)
    model = fastnn.Model(dims, "relu", output, dtype=dtype, seed=0)
    h = model.fit(X, Y, epochs=2, batch_size=1, optimizer="adam", backend=CUDA, progress=False)
    assert len(h.cost) == 2 and np.isfinite(h.cost).all()
    assert model.predict(X, backend=CUDA).shape[-1] == 1


@pytest.mark.parametrize("dtype", cases([F32], DTYPES), ids=ids)
def test_single_class_in_a_batch(cb, dtype):
    """numeric.test_single_class_in_a_batch's gradients: softmax labels all class 2 of 3,
    sigmoid labels all 0 or all 1."""
    if fuzz.SOAK:
        numeric.test_single_class_in_a_batch(CUDA, dtype)
        return
    params, X, _ = make_problem([3, 4, 3], 6, "softmax", dtype, seed=5)
    numeric._against_naive(params, X, np.full(6, 2), "relu", "softmax", CUDA, dtype)
    p1, X1, _ = make_problem([3, 4, 1], 6, "sigmoid", dtype, seed=5)
    for label in (0, 1):
        numeric._against_naive(p1, X1, np.full((1, 6), label, dtype), "tanh", "sigmoid", CUDA, dtype)


@pytest.mark.parametrize("dtype, batch_size", cases([(F32, None)], product(DTYPES, [None, 2])), ids=ids)
def test_extremely_small_learning_rate(cb, dtype, batch_size):
    numeric.test_extremely_small_learning_rate(CUDA, dtype, batch_size)


@pytest.mark.parametrize("dtype, batch_size", cases([(F32, 2), (F64, None)], product(DTYPES, [None, 2])),
                         ids=ids)
def test_extremely_large_learning_rate(cb, dtype, batch_size):
    numeric.test_extremely_large_learning_rate(CUDA, dtype, batch_size)


@pytest.mark.parametrize("dtype", cases([F32], DTYPES), ids=ids)
def test_large_fan_in_against_naive(cb, dtype):
    """numeric.test_huge_fan_in_against_naive at a size the simulator runs in seconds:
    n_0 = 128 (32 tiles of the reduction), |x| up to ~4e4, within tol(dtype, 128) of naive."""
    params, X, Y = make_problem([128, 3, 2], 3, "softmax", np.float64, seed=9)
    X = (X * 1e4).astype(dtype)
    params = {k: v.astype(dtype) for k, v in params.items()}
    numeric._against_naive(params, X, Y.astype(dtype), "relu", "softmax", CUDA, dtype)


# ------------------------------------------------------------------ divergence

PATHS = [p.values for p in divergence.PATHS]            # (batch_size, optimizer)
STEP_PATHS = [p.values for p in divergence.STEP_PATHS]


@pytest.mark.parametrize("batch_size, optimizer, dtype", cases(
    [(None, "sgd", F64), (4, "sgd", F32), (None, "adam", F32), (4, "momentum", F64)],
    [path + (dt,) for path in PATHS for dt in DTYPES]), ids=ids)
def test_overflowing_update_keeps_last_finite_params(cb, batch_size, optimizer, dtype, tmp_path):
    divergence.test_overflowing_update_keeps_last_finite_params(CUDA, dtype, batch_size, optimizer, tmp_path)


@pytest.mark.parametrize("batch_size, optimizer", cases([(4, "momentum")], PATHS), ids=ids)
def test_nonfinite_cost_stops_at_the_step_with_last_finite_params(cb, batch_size, optimizer):
    divergence.test_nonfinite_cost_stops_at_the_step_with_last_finite_params(CUDA, batch_size, optimizer)


@pytest.mark.parametrize("batch_size, optimizer, dtype, mode", cases(
    [(4, "momentum", F32, "raise")],
    [path + (dt, mode) for path in STEP_PATHS for dt in DTYPES for mode in ("raise", "skip")]), ids=ids)
def test_injected_update_fault(cb, batch_size, optimizer, dtype, mode):
    divergence.test_injected_update_fault(CUDA, dtype, batch_size, optimizer, mode)


def test_skip_steps_over_an_outlier_batch(cb):
    divergence.test_skip_steps_over_an_outlier_batch(CUDA)


@pytest.mark.parametrize("optimizer", cases(["adam"], ["sgd", "adam"]))
def test_skip_gives_up_at_once_when_a_full_batch_cost_is_not_finite(cb, optimizer):
    divergence.test_skip_gives_up_at_once_when_a_full_batch_cost_is_not_finite(CUDA, optimizer)
