"""fastnn.finite_differences.central_differences: the one central-difference loop."""

import numpy as np
import pytest

from fastnn.finite_differences import central_differences

from conftest import FD_STEP, GRADCHECK_TOL


def _rel(a, b):
    return np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b))


@pytest.mark.parametrize("shape", [(3,), (2, 4), (2, 3, 2)])
def test_gradient_of_a_quadratic_and_array_restored(shape):
    rng = np.random.default_rng(0)
    V = rng.standard_normal(shape)
    before = V.copy()
    G = central_differences(V, lambda: 0.5 * float(np.sum(V ** 2)) + float(np.sum(V)), FD_STEP)
    assert G.shape == V.shape and G.dtype == V.dtype
    assert np.array_equal(V, before)  # restored bit for bit
    assert _rel(G, before + 1.0) <= GRADCHECK_TOL


def test_one_entry_moves_at_a_time_by_plus_minus_h():
    V = np.zeros((2, 2))
    seen = []
    central_differences(V, lambda: seen.append(V.copy()) or 0.0, 0.5)
    assert len(seen) == 2 * V.size
    for k, A in enumerate(seen):
        j, sign = divmod(k, 2)
        expected = np.zeros(V.size)
        expected[j] = 0.5 if sign == 0 else -0.5
        assert np.array_equal(A.ravel(), expected)


def test_dtype_follows_V():
    V = np.ones(3, dtype=np.float32)
    G = central_differences(V, lambda: float(np.sum(V.astype(np.float64))), np.float32(0.25))
    assert G.dtype == np.float32
    assert np.array_equal(G, np.ones(3, dtype=np.float32))  # a linear f: (2h) / (2h) exactly
