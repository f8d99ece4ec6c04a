"""Output-layer kernels: dZ[L] = scale (A - Y) with the db partials, and the
per-example loss computed from the logits."""

import math

from numba import prange

from .._numba_config import BLOCK, jit
from .activation import SIGMOID, sum_slice


def output_delta(A, Y, dz_scale, dZ, partial):
    """dZ = dz_scale * (A - Y); partial[i, k] = float64 sum of row i, block k of dZ."""
    n, m = A.shape
    nb = partial.shape[1]
    for t in prange(n * nb):
        i = t // nb
        k = t - i * nb
        j0 = k * BLOCK
        j1 = min(j0 + BLOCK, m)
        d, a, y = dZ[i, j0:j1], A[i, j0:j1], Y[i, j0:j1]
        for j in range(d.size):
            d[j] = (a[j] - y[j]) * dz_scale
        partial[i, k] = sum_slice(d)


def loss_elementwise(Z, A, Y, code, partial):
    """Block partial sums (float64) of the sigmoid cross-entropy from logits, or of 1/2 (a - y)^2."""
    n, m = Z.shape
    nb = partial.shape[1]
    for t in prange(n * nb):
        i = t // nb
        k = t - i * nb
        s = 0.0
        for j in range(k * BLOCK, min(k * BLOCK + BLOCK, m)):
            z = float(Z[i, j])
            y = float(Y[i, j])
            if code == SIGMOID:
                # softplus(z) - y z: finite for any logit.
                s += max(z, 0.0) - y * z + math.log1p(math.exp(-abs(z)))
            else:
                d = float(A[i, j]) - y
                s += 0.5 * d * d
        partial[i, k] = s


@jit
def softmax_ce_column(Z, Y, j):
    """Categorical cross-entropy of column j from the logits (log-sum-exp, float64)."""
    n = Z.shape[0]
    zmax = float(Z[0, j])
    for i in range(1, n):
        zmax = max(zmax, float(Z[i, j]))
    acc = 0.0
    for i in range(n):
        acc += math.exp(float(Z[i, j]) - zmax)
    lse = zmax + math.log(acc)
    s = 0.0
    for i in range(n):
        s += float(Y[i, j]) * (lse - float(Z[i, j]))
    return s


def loss_softmax(Z, Y, partial):
    """Block partial sums (float64) of the categorical cross-entropy from logits (log-sum-exp)."""
    m = Z.shape[1]
    nb = partial.shape[1]
    for k in prange(nb):
        s = 0.0
        for j in range(k * BLOCK, min(k * BLOCK + BLOCK, m)):
            s += softmax_ce_column(Z, Y, j)
        partial[0, k] = s
