"""Output-layer kernels: dZ[L] = scale (A - Y) with the db partials, and the
per-example loss computed from the logits."""

import math

from numba import prange

from .._numba_config import BLOCK
from .activation import SIGMOID


def output_delta(A, Y, dz_scale, dZ, partial):
    """dZ = dz_scale * (A - Y); partial[i, k] = float64 sum of row i, block k of dZ."""
    n, m = A.shape
    nb = partial.shape[1]
    for t in prange(n * nb):
        i = t // nb
        k = t - i * nb
        j0 = k * BLOCK
        j1 = min(j0 + BLOCK, m)
        s0 = 0.0
        s1 = 0.0
        j = j0
        while j + 2 <= j1:
            d0 = (A[i, j] - Y[i, j]) * dz_scale
            d1 = (A[i, j + 1] - Y[i, j + 1]) * dz_scale
            dZ[i, j] = d0
            dZ[i, j + 1] = d1
            s0 += d0
            s1 += d1
            j += 2
        if j < j1:
            d0 = (A[i, j] - Y[i, j]) * dz_scale
            dZ[i, j] = d0
            s0 += d0
        partial[i, k] = s0 + s1


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


def loss_softmax(Z, Y, partial):
    """Block partial sums (float64) of the categorical cross-entropy from logits (log-sum-exp)."""
    n, m = Z.shape
    nb = partial.shape[1]
    for k in prange(nb):
        s = 0.0
        for j in range(k * BLOCK, min(k * BLOCK + BLOCK, m)):
            zmax = float(Z[0, j])
            for i in range(1, n):
                zmax = max(zmax, float(Z[i, j]))
            acc = 0.0
            for i in range(n):
                acc += math.exp(float(Z[i, j]) - zmax)
            lse = zmax + math.log(acc)
            for i in range(n):
                s += float(Y[i, j]) * (lse - float(Z[i, j]))
        partial[0, k] = s
