"""Row sums from per-block partials, in a fixed order (serial: O(rows x blocks) work)."""

import numpy as np

from .._numba_config import BLOCK, jit


@jit(inline="always")
def row_block(t, nb, m):
    """Task t of a (row, block) split of an (n, m) array into nb blocks of BLOCK columns:
    (row i, block k, first column j0, end column j1)."""
    i = t // nb
    k = t - i * nb
    j0 = k * BLOCK
    return i, k, j0, min(j0 + BLOCK, m)


@jit
def pairwise(x):
    """Pairwise sum of a 1-D float64 array (error ~ log2(n) eps), without recursion."""
    n = x.size
    if n <= 8:
        # Short rows (one or a few blocks, the common case): a plain sum, no copy.
        s = 0.0
        for i in range(n):
            s += x[i]
        return s
    buf = x.copy()
    while n > 1:
        half = n // 2
        for i in range(half):
            buf[i] = buf[2 * i] + buf[2 * i + 1]
        if n % 2:
            buf[half] = buf[n - 1]
            n = half + 1
        else:
            n = half
    return buf[0]


@jit
def finish_rows(partial, scale, out):
    """out[i, 0] = scale * dtype(pairwise(partial[i, :])): db from its block partials."""
    for i in range(partial.shape[0]):
        out[i, 0] = pairwise(partial[i])
        out[i, 0] *= scale


@jit
def total(partial):
    """Sum of all block partials, row by row then pairwise."""
    n = partial.shape[0]
    rows = np.empty(n, np.float64)
    for i in range(n):
        rows[i] = pairwise(partial[i])
    return pairwise(rows)
