"""Forward kernels: bias + activation over Z = W @ A_prev, in place, and the
output layer's bias + softmax."""

import numpy as np
from numba import prange

from .._numba_config import BLOCK, jit
from .activation import IDENTITY, bias_act_slice
from .vmath import exp_nonpos


def bias_act(Z, b, code, slope):
    """Z[i, j] = g(Z[i, j] + b[i]) for identity, relu and leaky relu; tasks are (row, block)."""
    n, m = Z.shape
    nb = (m + BLOCK - 1) // BLOCK
    for t in prange(n * nb):
        i = t // nb
        j0 = (t - i * nb) * BLOCK
        bias_act_slice(Z[i, j0:min(j0 + BLOCK, m)], b[i, 0], code, slope)


def bias_add(Z, b):
    """Z[i, j] += b[i]; tasks are (row, block)."""
    n, m = Z.shape
    nb = (m + BLOCK - 1) // BLOCK
    for t in prange(n * nb):
        i = t // nb
        j0 = (t - i * nb) * BLOCK
        bias_act_slice(Z[i, j0:min(j0 + BLOCK, m)], b[i, 0], IDENTITY, b[i, 0])


@jit
def max_into(z, mx):
    """mx = max(mx, z) elementwise on 1-D slices (a NaN in z propagates)."""
    for j in range(z.size):
        v = z[j]
        mx[j] = v if (v > mx[j]) | (v != v) else mx[j]


@jit
def _exp_shifted(z, mx, a, s):
    """a = exp(z - mx) (the difference in the array dtype, as NumPy's softmax; exp in
    float64 and rounded once) and s += a, on 1-D slices."""
    for j in range(z.size):
        d = z[j] - mx[j]
        e = exp_nonpos(float(d))
        a[j] = e if d == d else d
        s[j] += a[j]


@jit
def _divide_into(a, s):
    """a /= s on 1-D slices."""
    for j in range(a.size):
        a[j] = a[j] / s[j]


def bias_softmax(Z, b, A):
    """Z[i, j] += b[i], then A = softmax of each column of Z; tasks are column blocks.

    Same steps and summation order as the NumPy backend's softmax (column max
    subtracted, rows of exp added one after another); only exp differs, by the
    rounding of a float64 value.
    """
    n, m = Z.shape
    nb = (m + BLOCK - 1) // BLOCK
    for k in prange(nb):
        j0 = k * BLOCK
        j1 = min(j0 + BLOCK, m)
        for i in range(n):
            bias_act_slice(Z[i, j0:j1], b[i, 0], IDENTITY, b[i, 0])
        mx = Z[0, j0:j1].copy()
        for i in range(1, n):
            max_into(Z[i, j0:j1], mx)
        s = np.zeros_like(mx)
        for i in range(n):
            _exp_shifted(Z[i, j0:j1], mx, A[i, j0:j1], s)
        for i in range(n):
            _divide_into(A[i, j0:j1], s)
