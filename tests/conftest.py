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

import importlib.util
import math
import os
import sys

# scikit-learn's array-API estimator check runs only when SciPy's array-API
# mode is on, which must be set before SciPy is first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest
from hypothesis import settings as _hypothesis_settings

# CI runs the same examples every time (a failure there is reproducible, never a
# draw's luck); elsewhere hypothesis explores new examples on every run.
_hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci")

# Thread counts by problem size alone, not by the machine's load at the moment
# (fastnn/threads.py): results of large products stay the same from run to run.
# tests/test_threads.py tests the load rule itself.
os.environ.setdefault("FASTNN_THREAD_POLICY", "size")

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
#: Step of the tests' own central differences (float64): near eps^(1/3), where
#: truncation (h^2 |F'''| / 6) and rounding (eps |F| / h) errors are both ~1e-10.
FD_STEP = 1e-5
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


#: Comparisons that are not one reduction, each in units of the dtype's eps
#: (the ``*_rtol`` helpers below turn them into relative tolerances):
#:
#: SAME_OPS_ULPS -- the same operations in the same order on both sides (the
#: course's helpers against fastnn's on the same call): bitwise equal, but a
#: BLAS may pick another kernel for the same call (other blocking), a few ulp
#: per product; 4096 ulp (9e-13 in float64) leaves room for that and nothing
#: else: a real difference (a wrong 1/m, order or seed) is O(1e-3) or more.
SAME_OPS_ULPS = 4096
#: TRAJECTORY_ULPS -- two training runs that differ only in rounding (another
#: summation order in a GEMM or reduction; fastnn vs scikit-learn, numpy vs
#: numba) over a few dozen optimizer steps, relative to the largest value
#: compared.  Measured at most ~3 eps over 3-10 epochs of 2-7 steps; 100 leaves
#: a margin of ~30, while a real difference in the math is O(1e-3) or more.
TRAJECTORY_ULPS = 100
#: LIBM_ULPS -- an elementwise formula of exp/log evaluated by NumPy and by
#: Python's math (each within 1 ulp of exact) with up to three more rounded
#: operations (sigmoid: exp, add, divide): at most ~4 ulp apart; 8 for margin.
LIBM_ULPS = 8
#: LAYERED_C -- vectorised results against a scalar-loop reference through
#: ``depth`` layers of n-term sums: |err| <= n eps sum|terms| per layer (the
#: classical worst case), sum|terms| bounded by the largest entry, and a factor
#: 64 for exp/log ulps, the 1/m scaling and sigmoid's s (1 - s).
LAYERED_C = 64


def same_ops_rtol(dtype=np.float64):
    """Relative tolerance for the same operations in the same order (SAME_OPS_ULPS)."""
    return SAME_OPS_ULPS * float(np.finfo(dtype).eps)


def trajectory_rtol(dtype=np.float64):
    """Relative tolerance between two training runs differing in rounding only (TRAJECTORY_ULPS)."""
    return TRAJECTORY_ULPS * float(np.finfo(dtype).eps)


def libm_rtol(dtype=np.float64, operations=1):
    """Relative tolerance for ``operations`` chained exp/log formulas, NumPy against math (LIBM_ULPS)."""
    return LIBM_ULPS * operations * float(np.finfo(dtype).eps)


def layered_rtol(n_terms, depth=1, dtype=np.float64):
    """Worst-case tolerance through ``depth`` layers of ``n_terms``-term sums (LAYERED_C)."""
    return LAYERED_C * float(np.finfo(dtype).eps) * max(int(n_terms), 1) * depth


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


# --------------------------------------------------------------------------
# The gate: which backends must load, and which skips are allowed.
# --------------------------------------------------------------------------

#: Every backend's status here (fastnn.backends.BackendStatus).
BACKEND_STATUS = fastnn.available_backends()


def _required_backends():
    """Backends whose failure to load fails the run instead of skipping.

    ``FASTNN_REQUIRE_BACKENDS`` (comma-separated names) when set; otherwise
    ``numpy``, plus ``numba`` and ``numba-parallel`` wherever Numba is
    installed: an installed backend that does not load is a bug, never a skip.
    """
    env = os.environ.get("FASTNN_REQUIRE_BACKENDS", "").strip()
    if env:
        names = {n.strip() for n in env.split(",") if n.strip()}
        unknown = names - set(REGISTRY)
        if unknown:
            raise pytest.UsageError(f"FASTNN_REQUIRE_BACKENDS names unknown backends {sorted(unknown)}")
        return frozenset(names)
    names = {"numpy"}
    if importlib.util.find_spec("numba") is not None:
        names |= {"numba", "numba-parallel"}
    return frozenset(names)


REQUIRED_BACKENDS = _required_backends()

#: The only skip reasons the suite allows: a run in which any other test is
#: skipped fails (``pytest_sessionfinish`` below).  CUDA without a GPU (and
#: without the simulator), and the optional checks on the course's data in the
#: shared data folder beside the repository when that folder is absent (the
#: suite must pass without it; CI has it).
ALLOWED_SKIP_PREFIXES = ("CUDA hardware:", "shared data absent:")


def skip_reason(name):
    """Why backend ``name`` is skipped here, or None when its tests must run.

    A required backend never skips (its tests fail if it does not load); the
    CUDA backend without a device or without numba-cuda skips with a reason
    on the allow-list; any other unavailable backend skips with a reason that
    is not, so the run fails at its end.
    """
    status = BACKEND_STATUS[name]
    if status.available or name in REQUIRED_BACKENDS:
        return None
    if name == "cuda":
        return f"CUDA hardware: backend 'cuda' {status}"
    return f"backend {name!r} {status}"


def backend_param(name):
    """``name`` as a pytest param, skipped only as :func:`skip_reason` says."""
    reason = skip_reason(name)
    return pytest.param(name, id=name, marks=[pytest.mark.skip(reason=reason)] if reason else [])


def backend_params(names=None):
    """:func:`backend_param` for each of ``names`` (default: every registered backend)."""
    return [backend_param(n) for n in (REGISTRY if names is None else names)]


def requires_backends(*names):
    """Marker: run the test only where these backends run (see :func:`skip_reason`)."""
    reasons = [r for r in map(skip_reason, names) if r]
    return pytest.mark.skipif(bool(reasons), reason="; ".join(reasons) or "unused")


_disallowed_skips = []


def _skip_text(report):
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text[len("Skipped: "):] if text.startswith("Skipped: ") else text


def pytest_runtest_logreport(report):
    """Record every skip whose reason is not on ALLOWED_SKIP_PREFIXES."""
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_text(report)
        if not reason.startswith(ALLOWED_SKIP_PREFIXES):
            _disallowed_skips.append((report.nodeid, reason))


def pytest_sessionfinish(session, exitstatus):
    """Fail a run that skipped a test for a reason not on the allow-list."""
    if _disallowed_skips and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _disallowed_skips:
        tr = terminalreporter
        tr.section("skips not on the allow-list (the run fails)", red=True)
        for nodeid, reason in _disallowed_skips[:50]:
            tr.line(f"{nodeid}: {reason}")
        if len(_disallowed_skips) > 50:
            tr.line(f"... and {len(_disallowed_skips) - 50} more")
        tr.line(f"allowed skip reasons start with one of {ALLOWED_SKIP_PREFIXES}")


def pytest_report_header(config):
    return (f"fastnn backends: " + ", ".join(f"{n} {s.state}" for n, s in BACKEND_STATUS.items())
            + f"; required: {', '.join(sorted(REQUIRED_BACKENDS))}")


#: Backend names in REGISTRY, as pytest params (see :func:`skip_reason`).
BACKEND_PARAMS = backend_params()


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


# --------------------------------------------------------------------------- stability references and recipes
#: One double-double add/mul/div (QD's accurate algorithms): relative error a few 2^-104;
#: 2^-100 leaves a factor 16.
STAB_DD_OP_REL = 2.0 ** -100
#: Double-double gradients of a 2-layer net on 16 examples: a few hundred operations of
#: 2^-104 = 4.9e-32 each (exp/tanh about 2^10 of that) stay below 1e-28.
STAB_DD_GRAD_REL = 1e-28
#: Long double (2^-64 = 5.4e-20 per operation) vs double-double judging the same float64
#: gradients: their error figures differ by the long double reference's own error, a few
#: 2^-64 relative to the gradient over log2(m) pairwise levels: below 1e-18.
STAB_LD_VS_DD = 1e-18
#: float16 gradient recipes that round the final value once to float16 after float32
#: accumulation: one float16 rounding (u = 2^-11) plus the float32 sum and scale (~1e-7)
#: and the hidden layers' float16 storage, norm-wise: below 3 u.
STAB_FP16_ONE_ROUNDING = 3 * 2.0 ** -11


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
SKLEARN_TRACKING_EPS = TRAJECTORY_ULPS  # the same budget as two training runs above


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
