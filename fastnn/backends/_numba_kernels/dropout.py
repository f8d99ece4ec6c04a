"""The fused dropout kernel: Philox word, compare and scale in one pass.

The hash is :func:`fastnn._dropout.philox4x32` itself, compiled here, so the
masks are bitwise those of the NumPy backend's vectorised call of the same
source.  Forward and backward are the same kernel (``out`` a new array, or
``A`` itself for the in-place backward).
"""

import numpy as np
from numba import prange

from ..._dropout import philox4x32
from .._numba_config import BLOCK, jit

_philox = jit(inline="always")(philox4x32)


def mask_scale(A, out, keep, zero, threshold, c2, c3, k0, k1):
    """out[i, j] = A[i, j] / keep where word 0 of Philox((j, i, c2, c3), (k0, k1)) < threshold, else 0."""
    n, m = A.shape
    nb = (m + BLOCK - 1) // BLOCK
    for t in prange(n * nb):
        i = t // nb
        j0 = (t - i * nb) * BLOCK
        ci = np.uint64(i)
        for j in range(j0, min(j0 + BLOCK, m)):
            word = _philox(np.uint64(j), ci, c2, c3, k0, k1)[0]
            if word < threshold:
                out[i, j] = A[i, j] / keep
            else:
                out[i, j] = zero
