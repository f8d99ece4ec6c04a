"""Minibatch gathers: the shuffled batch's examples copied into preallocated buffers."""

from numba import prange

from .._numba_config import jit

#: Rows :func:`permuted_rows` copies side by side (see :func:`_copy_rows8`).
ROWS_AT_ONCE = 8


@jit
def _copy_row(src, dst):
    """dst = src on 1-D slices."""
    for j in range(dst.size):
        dst[j] = src[j]


@jit
def _copy_rows8(XR, idx, out, i):
    """out[i + r, :] = XR[idx[i + r], :] for r < 8, the eight rows in one loop.

    Each shuffled row is a separate run of cache misses; copying eight at once keeps
    eight runs of loads in flight instead of one (1.6x the row-by-row loop at MNIST
    shape, 256 rows of 784 float32 from 60000: ``benchmarks/bench_kernels.py``; sixteen
    rows at once ran 2.5x slower than eight)."""
    s0, s1, s2, s3 = XR[idx[i]], XR[idx[i + 1]], XR[idx[i + 2]], XR[idx[i + 3]]
    s4, s5, s6, s7 = XR[idx[i + 4]], XR[idx[i + 5]], XR[idx[i + 6]], XR[idx[i + 7]]
    d0, d1, d2, d3 = out[i], out[i + 1], out[i + 2], out[i + 3]
    d4, d5, d6, d7 = out[i + 4], out[i + 5], out[i + 6], out[i + 7]
    for j in range(d0.size):
        d0[j] = s0[j]
        d1[j] = s1[j]
        d2[j] = s2[j]
        d3[j] = s3[j]
        d4[j] = s4[j]
        d5[j] = s5[j]
        d6[j] = s6[j]
        d7[j] = s7[j]


def permuted_rows(XR, idx, out):
    """out[i, :] = XR[idx[i], :]: rows of the row-major (N, n_x) examples, into (b, n_x);
    tasks are groups of ROWS_AT_ONCE rows, the last group row by row."""
    b = idx.size
    for g in prange((b + ROWS_AT_ONCE - 1) // ROWS_AT_ONCE):
        i = g * ROWS_AT_ONCE
        if i + ROWS_AT_ONCE <= b:
            _copy_rows8(XR, idx, out, i)
        else:
            for r in range(i, b):
                _copy_row(XR[idx[r]], out[r])


@jit
def permuted_columns(YR, idx, out):
    """out[:, i] = YR[idx[i], :]: rows of the row-major (N, n_y) targets, as columns of (n_y, b)
    (serial in both backends: n_y b entries, too few to split)."""
    n = out.shape[0]
    for i in range(idx.size):
        r = YR[idx[i]]
        for k in range(n):
            out[k, i] = r[k]
