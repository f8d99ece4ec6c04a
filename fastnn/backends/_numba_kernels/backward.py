"""The fused hidden-layer backward kernel: dZ = dA * g'(Z) and the db partial
sums in one pass over memory."""

from numba import prange

from .._numba_config import BLOCK
from .activation import dact_mul


def backward_fused(dA, A, code, one, slope, partial):
    """dA[i, j] <- dA[i, j] * g'(Z[i, j]) (from A); partial[i, k] = float64 sum of row i, block k."""
    n, m = dA.shape
    nb = partial.shape[1]
    for t in prange(n * nb):
        i = t // nb
        k = t - i * nb
        j0 = k * BLOCK
        j1 = min(j0 + BLOCK, m)
        # Four float64 accumulators: independent add chains (no latency stall),
        # combined pairwise in a fixed order, so the result does not depend on threads.
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        j = j0
        while j + 4 <= j1:
            d0 = dact_mul(dA[i, j], A[i, j], code, one, slope)
            d1 = dact_mul(dA[i, j + 1], A[i, j + 1], code, one, slope)
            d2 = dact_mul(dA[i, j + 2], A[i, j + 2], code, one, slope)
            d3 = dact_mul(dA[i, j + 3], A[i, j + 3], code, one, slope)
            dA[i, j] = d0
            dA[i, j + 1] = d1
            dA[i, j + 2] = d2
            dA[i, j + 3] = d3
            s0 += d0
            s1 += d1
            s2 += d2
            s3 += d3
            j += 4
        while j < j1:
            d0 = dact_mul(dA[i, j], A[i, j], code, one, slope)
            dA[i, j] = d0
            s0 += d0
            j += 1
        partial[i, k] = (s0 + s1) + (s2 + s3)
