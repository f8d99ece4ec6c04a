"""Forward kernel: bias + activation over Z = W @ A_prev, in place."""

from numba import prange

from .._numba_config import BLOCK
from .activation import IDENTITY, bias_act_slice


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
