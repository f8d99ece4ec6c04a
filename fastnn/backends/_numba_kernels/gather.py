"""Minibatch gathers: the shuffled batch's examples copied into preallocated buffers."""

from numba import prange

from .._numba_config import jit


@jit
def _copy_row(src, dst):
    """dst = src on 1-D slices."""
    for j in range(dst.size):
        dst[j] = src[j]


def permuted_rows(XR, idx, out):
    """out[i, :] = XR[idx[i], :]: rows of the row-major (N, n_x) examples, into (b, n_x)."""
    for i in prange(idx.size):
        _copy_row(XR[idx[i]], out[i])


@jit
def permuted_columns(YR, idx, out):
    """out[:, i] = YR[idx[i], :]: rows of the row-major (N, n_y) targets, as columns of (n_y, b)
    (serial in both backends: n_y b entries, too few to split)."""
    n = out.shape[0]
    for i in range(idx.size):
        r = YR[idx[i]]
        for k in range(n):
            out[k, i] = r[k]
