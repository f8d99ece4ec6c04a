"""The fused hidden-layer backward kernel: dZ = dA * g'(Z) and the db partial
sums in one pass over memory (the row block is summed while still in cache)."""

from numba import prange

from .activation import dact_slice, sum_slice
from .reduce import row_block


def backward_fused(dA, A, code, one, slope, partial):
    """dA[i, j] <- dA[i, j] * g'(Z[i, j]) (from A); partial[i, k] = float64 sum of row i, block k."""
    n, m = dA.shape
    nb = partial.shape[1]
    for t in prange(n * nb):
        i, k, j0, j1 = row_block(t, nb, m)
        d = dA[i, j0:j1]
        dact_slice(d, A[i, j0:j1], code, one, slope)
        partial[i, k] = sum_slice(d)
