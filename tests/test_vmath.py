"""The compiled loop's vectorisable exp, tanh, sigmoid and log1p against NumPy,
in ulps, over their whole ranges and at their edges."""

import numpy as np
import pytest

from fastnn.backends._numba_config import jit
from fastnn.backends._numba_kernels import vmath

from conftest import VMATH_ULP


@jit(cache=False)  # always the current vmath: a cached copy would not see its edits
def _apply(code, x, out):
    for j in range(x.size):
        if code == 0:
            out[j] = vmath.exp_nonpos(x[j])
        elif code == 1:
            out[j] = vmath.tanh(x[j])
        elif code == 2:
            out[j] = vmath.sigmoid(x[j])
        else:
            out[j] = vmath.log1p_unit(x[j])


def _sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0, e) / (1.0 + e)


rng = np.random.default_rng(20261123)
EDGES = [0.0, -0.0, 1e-300, 5e-324, 0.17, 0.1699999, 0.1700001, 1.0, 19.99, 20.0, 20.01, 40.0,
         700.0, 708.0, 708.4, 745.0, 1e300]
CASES = {  # name: (code, arguments, reference)
    "exp": (0, np.concatenate([-rng.exponential(50.0, 100_000), -rng.random(10_000),
                               -np.array(EDGES[:-4])]), np.exp),
    "tanh": (1, np.concatenate([rng.standard_normal(100_000) * 5, rng.standard_normal(10_000) * 0.2,
                                EDGES, np.negative(EDGES)]), np.tanh),
    "sigmoid": (2, np.concatenate([rng.standard_normal(100_000) * 20, EDGES, np.negative(EDGES)]),
                _sigmoid),
    "log1p": (3, np.concatenate([rng.random(100_000), [0.0, 5e-324, 1e-300, 1e-8, 0.5, 1.0]]),
              np.log1p),
}


def _run(code, x):
    out = np.empty_like(x)
    _apply(code, x, out)
    return out


@pytest.mark.parametrize("name", CASES)
def test_within_a_few_ulp_of_numpy_in_float64(name):
    code, x, ref = CASES[name]
    got, want = _run(code, x), ref(x)
    # Documented flush: exp results below 2^-1022 (and sigmoids built on them) become 0.
    tiny = np.abs(want) < np.finfo(np.float64).tiny
    assert np.all(np.abs(got[tiny]) <= np.finfo(np.float64).tiny)
    got, want = got[~tiny], want[~tiny]
    ulps = np.abs(got - want) / np.spacing(np.abs(want))
    assert ulps.max() <= VMATH_ULP, f"{name}: {ulps.max()} ulp at x = {x[np.argmax(ulps)]!r}"


@pytest.mark.parametrize("name", CASES)
def test_float32_results_within_one_ulp(name):
    """float32 inputs are widened, computed in float64 and rounded once."""
    code, x, ref = CASES[name]
    x32 = np.clip(x, -3e38, 3e38).astype(np.float32).astype(np.float64)
    got = _run(code, x32).astype(np.float32)
    want = ref(x32).astype(np.float32)
    if name == "exp":
        keep = x32 >= -708.0
        got, want = got[keep], want[keep]
    ulps = np.abs(got.astype(np.float64) - want) / np.spacing(np.abs(want))
    assert ulps.max() <= 1


def test_infinities_and_nan():
    inf, nan = np.inf, np.nan
    x = np.array([inf, -inf, nan])
    np.testing.assert_array_equal(_run(1, x)[:2], [1.0, -1.0])
    np.testing.assert_array_equal(_run(2, x)[:2], [1.0, 0.0])
    assert _run(0, np.array([-inf]))[0] == 0.0
    assert np.isnan(_run(1, x)[2]) and np.isnan(_run(2, x)[2]) and np.isnan(_run(0, x[2:])[0])
