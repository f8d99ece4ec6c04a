"""Forward kernel: bias + activation over Z = W @ A_prev, in place."""

from numba import prange

from .._numba_config import BLOCK
from .activation import act


def bias_act(Z, b, code, slope):
    """Z[i, j] = g(Z[i, j] + b[i]) for identity, relu and leaky relu; tasks are (row, block)."""
    n, m = Z.shape
    nb = (m + BLOCK - 1) // BLOCK
    for t in prange(n * nb):
        i = t // nb
        j0 = (t - i * nb) * BLOCK
        j1 = min(j0 + BLOCK, m)
        bi = b[i, 0]
        for j in range(j0, j1):
            Z[i, j] = act(Z[i, j] + bi, code, slope)


def bias_add(Z, b):
    """Z[i, j] += b[i]; tasks are (row, block)."""
    n, m = Z.shape
    nb = (m + BLOCK - 1) // BLOCK
    for t in prange(n * nb):
        i = t // nb
        j0 = (t - i * nb) * BLOCK
        j1 = min(j0 + BLOCK, m)
        bi = b[i, 0]
        for j in range(j0, j1):
            Z[i, j] += bi
