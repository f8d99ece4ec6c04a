"""Shared fixtures and THE tolerance table for the fastnn test suite.

Every numerical comparison in the suite goes through :func:`tol` /
:func:`assert_close`, so the tolerances are derived in one place.

Tolerance derivation
--------------------
A dot product of length ``n`` computed in floating point with unit roundoff
``u = eps/2`` satisfies ``|fl(x.y) - x.y| <= gamma_n * sum_i |x_i y_i|`` with
``gamma_n = n u / (1 - n u)`` (Higham, *Accuracy and Stability of Numerical
Algorithms*, 2nd ed., eq. 3.5): worst case linear in ``n``.  That bound is
attained only by adversarial data; for random data the rounding errors are
roughly independent and add like a random walk, ``~ sqrt(n) * u * sum|terms|``
(Higham sec. 2.8; NumPy's pairwise summation along contiguous axes is even
``log2(n)``-like, a naive Numba loop is the random walk).  So

    |computed - exact| <= rtol * magnitude + atol,
    rtol = C * eps * sqrt(n_terms),   atol = tiny(dtype),

where ``n_terms`` is the longest reduction in the problem (largest layer width
or number of examples ``m``) and ``magnitude`` is ``sum|terms|`` of the
quantity: :func:`naive.gradient_magnitudes` / :func:`naive.forward_magnitudes`
carry the absolute values of all terms through the same per-example
computation (forward and backward, including the error a computed ``z``
passes on through ``g'``), so an entry whose terms cancel is judged against
the size of its terms, not against its own (possibly tiny) value.  ``atol`` is
the smallest normal number: below it rounding is absolute (gradual underflow).

``C = 16``.  Measured on ~5,000 random nets (widths 1..11, depth 1..4, m 1..39,
every activation/output/scaling/route, float32 and float64, numpy and numba
backends), the largest ``|computed - exact| / (eps * sqrt(n) * magnitude)``
was 0.76 (with the cruder scale ``|expected| + max|expected|`` instead of the
magnitude it was 167: cancellation is real, hence the magnitudes).  ``C = 16``
leaves a margin of ~20 over that for unlucky draws; a backend whose sums hit
the worst-case linear growth (``n u = (sqrt(n)/2) * sqrt(n) eps``, a factor
``sqrt(33)/2 ~ 3`` over the random-walk model at the suite's largest n = 33)
still fits with a margin of ~7.  Any real mistake (a wrong 1/m, transpose,
derivative) is an O(1) relative error: ~10^5 times rtol in float32 and ~10^13
in float64.

For float32 results the reference is the float64 naive computation on the
same (float32-representable) inputs, so the error measured is float32's own.
"""

import math
import sys

import numpy as np
import pytest

import fastnn
from fastnn.backends import REGISTRY

#: Test modules import this file's helpers as ``from fastnn_suite import ...``:
#: the plain module name ``conftest`` is ambiguous (tests/cuda/conftest.py is
#: also imported as ``conftest`` and replaces this one in sys.modules).
_THIS = sys.modules["fastnn_suite"] = sys.modules[__name__]


def pytest_plugin_registered(plugin, manager):
    """After pytest imports a sub-folder's conftest.py under the same module
    name ``conftest``, point the name back at this file, so that a test module's
    ``from conftest import tol`` still gets the suite's helpers."""
    path = getattr(plugin, "__file__", None)
    if plugin is not _THIS and path and path.endswith("conftest.py") and \
            sys.modules.get("conftest") is plugin:
        sys.modules["conftest"] = _THIS

#: Bound on gradcheck's relative error for a correct float64 gradient.
GRADCHECK_TOL = 1e-7
#: A planted bug (wrong 1/m, missing transpose) must push gradcheck above this.
PLANTED_MIN = 1e-3

#: Safety constant of the tolerance model (see module docstring).
TOL_C = 16.0

#: Elementwise functions (the compiled loop's exp, tanh, sigmoid, log1p) in
#: units in the last place of the float64 result, against NumPy's.  Their
#: series are truncated below 1e-17 relative, so what is left is the rounding
#: of a dozen float64 operations (measured at most 3 ulp over 4 x 10^5 random
#: arguments) plus NumPy's own error (libm, under 1 ulp); float32 results are
#: rounded once from float64 and must be within 1 float32 ulp.
VMATH_ULP = 4

#: Dtypes the numerical tests run in.
DTYPES = (np.float32, np.float64)

#: Problem size the fixed table below is computed for (the suite's small nets:
#: widths and m <= 16).
DEFAULT_N_TERMS = 16


def tol(dtype, n_terms=DEFAULT_N_TERMS):
    """(rtol, atol) for results of ``dtype`` built from reductions of length ``n_terms``.

    ``rtol = TOL_C * eps * sqrt(n_terms)`` multiplies the *magnitude* (sum of
    |terms|) of the quantity; ``atol = tiny(dtype)`` (module docstring).
    """
    info = np.finfo(dtype)
    return TOL_C * float(info.eps) * math.sqrt(max(int(n_terms), 1)), float(info.tiny)


#: THE tolerance table: dtype -> (rtol, atol) for the default problem size.
TOLERANCES = {np.dtype(dt): tol(dt) for dt in DTYPES}


def assert_close(actual, expected, dtype, n_terms=DEFAULT_N_TERMS, magnitude=None, err_msg=""):
    """``|actual - expected| <= rtol * magnitude + atol`` elementwise.

    ``magnitude`` is the sum of |terms| of each entry (from naive's
    ``*_magnitudes``); it defaults to ``|expected|``, right only for
    quantities computed without cancellation.
    """
    rtol, atol = tol(dtype, n_terms)
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    assert actual.shape == expected.shape, f"{err_msg}: shape {actual.shape} != {expected.shape}"
    mag = np.abs(expected) if magnitude is None else np.asarray(magnitude, dtype=np.float64)
    bound = rtol * mag + atol
    err = np.abs(actual - expected)
    bad = ~(err <= bound)
    if bad.any():
        ratio = np.where(bad, err / bound, 0)
        idx = np.unravel_index(np.argmax(ratio), err.shape)
        raise AssertionError(
            f"{err_msg}: {int(bad.sum())} of {err.size} entries differ beyond tolerance "
            f"(dtype {np.dtype(dtype).name}: rtol {rtol:.3g} x magnitude + atol {atol:.3g}); "
            f"worst at {tuple(int(i) for i in idx)}: actual {float(actual[idx])!r}, expected "
            f"{float(expected[idx])!r}, magnitude {float(np.broadcast_to(mag, err.shape)[idx])!r}, "
            f"error/bound {float(ratio[idx]):.3g}")


def assert_grads_close(actual, expected, dtype, n_terms=DEFAULT_N_TERMS, magnitudes=None, err_msg=""):
    """assert_close for every entry of two gradient dicts with the same keys."""
    assert set(actual) == set(expected), f"{err_msg}: keys {sorted(actual)} != {sorted(expected)}"
    for key in sorted(expected):
        assert_close(actual[key], expected[key], dtype, n_terms,
                     None if magnitudes is None else magnitudes[key], err_msg=f"{err_msg} [{key}]")


def _backend_params():
    status = fastnn.available_backends()
    params = []
    for name in REGISTRY:
        reason = status.get(name)
        marks = [pytest.mark.skip(reason=f"backend {name!r} unavailable: {reason}")] if reason else []
        params.append(pytest.param(name, id=name, marks=marks))
    return params


#: Backend names in REGISTRY, as pytest params (unavailable ones skipped with the reason).
BACKEND_PARAMS = _backend_params()


@pytest.fixture(params=BACKEND_PARAMS)
def backend_name(request):
    """Every backend in fastnn.backends.REGISTRY that works here."""
    return request.param


@pytest.fixture(params=[pytest.param(dt, id=np.dtype(dt).name) for dt in DTYPES])
def dtype(request):
    """float32 and float64."""
    return np.dtype(request.param)


def make_problem(layer_dims, m, output, dtype=np.float64, seed=0, bias_scale=0.5):
    """Random (params, X, Y) for a net with ``layer_dims`` and ``m`` examples.

    Weights are He-scaled normals (activations stay O(1) at any depth), biases
    ``bias_scale * normal`` (non-zero, so a dropped bias shows), X standard
    normal.  Y: 0/1 labels (sigmoid), one-hot columns (softmax), normal
    targets (identity).  Everything is drawn in float64 and cast to ``dtype``,
    so the float64 reference sees exactly the values fastnn sees.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for l in range(1, len(layer_dims)):
        n_in, n_out = layer_dims[l - 1], layer_dims[l]
        params[f"W{l}"] = (rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)).astype(dtype)
        params[f"b{l}"] = (bias_scale * rng.standard_normal((n_out, 1))).astype(dtype)
    X = rng.standard_normal((layer_dims[0], m)).astype(dtype)
    n_L = layer_dims[-1]
    if output == "sigmoid":
        Y = rng.integers(0, 2, size=(n_L, m)).astype(dtype)
    elif output == "softmax":
        Y = np.zeros((n_L, m), dtype=dtype)
        Y[rng.integers(0, n_L, size=m), np.arange(m)] = 1
    else:
        Y = rng.standard_normal((n_L, m)).astype(dtype)
    return params, X, Y


def n_out_for(output):
    """Output width used for each output layer in the small test nets."""
    return {"sigmoid": 2, "softmax": 3, "identity": 2}[output]


# ------------------------------------------------- scikit-learn drop-in tracking

#: Tolerance, in units of eps(dtype) times the largest |entry| of all the
#: parameters, for a fastnn estimator and scikit-learn's (or two fastnn
#: backends) fitted on the same data with the same seed, where only rounding
#: differs (GEMM and reduction order, the loss from logits instead of clipped
#: probabilities).  The scale is global because every optimizer step mixes the
#: whole gradient vector: a rounding error of the step is relative to the
#: whole vector, so a small array (an output intercept) gets errors the size
#: of the others.  The objective itself (loss, gradient at the same point)
#: agrees to at most 5 eps.  Measured after a fit: stochastic solvers with
#: sample weights, sparse X or the Poisson loss, 3-8 epochs: at most ~3 eps;
#: L-BFGS, 6 iterations on the tests' problems: at most 25 eps (L-BFGS-B's line
#: search amplifies rounding through its curvature pairs; two ill-conditioned
#: problems, identity units on multilabel data and logistic units on the
#: one-output regression, amplify it past 190 eps and are compared through
#: their objective only).  100 leaves a margin of 4; a real difference in the
#: math (a weight applied twice or not at all, a missing 1/sum(w), another
#: loss) is O(1e-3) relative or more.  Losses are compared to
#: ``SKLEARN_TRACKING_EPS * eps * max(1, |loss|)`` absolute: the loss's
#: rounding is eps times its terms (log-sum-exp of O(1) logits), not its value.
SKLEARN_TRACKING_EPS = 100


def assert_estimators_track(a, b, dtype=np.float64, err_msg=""):
    """coefs_, intercepts_ of ``a``, ``b`` within SKLEARN_TRACKING_EPS * eps * max|entry of b|."""
    eps = float(np.finfo(dtype).eps)
    pa, pb = list(a.coefs_) + list(a.intercepts_), list(b.coefs_) + list(b.intercepts_)
    assert len(pa) == len(pb), err_msg
    scale = max(max(float(np.max(np.abs(y))) for y in pb), float(np.finfo(dtype).tiny))
    for i, (x, y) in enumerate(zip(pa, pb)):
        assert np.shape(x) == np.shape(y), err_msg
        np.testing.assert_allclose(x, y, rtol=0, atol=SKLEARN_TRACKING_EPS * eps * scale,
                                   err_msg=f"{err_msg} [param {i}]")


def assert_losses_track(a, b, dtype=np.float64, err_msg=""):
    """Loss values (scalars or curves) within SKLEARN_TRACKING_EPS * eps * max(1, |loss|)."""
    eps = float(np.finfo(dtype).eps)
    a, b = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
    assert a.shape == b.shape, err_msg
    np.testing.assert_allclose(a, b, rtol=0,
                               atol=SKLEARN_TRACKING_EPS * eps * max(1.0, float(np.max(np.abs(b)))),
                               err_msg=err_msg)
