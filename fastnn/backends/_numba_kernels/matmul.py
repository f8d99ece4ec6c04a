"""Matrix products for the compiled training loop.

Tiny products (the course's ``[2, 4, 1]`` net) are dominated by the BLAS call
overhead, so below ``SMALL_FLOPS`` multiply-adds they run as plain loops that
vectorise along the contiguous ``m`` axis; above it they call ``np.dot``.
"""

import numpy as np

from .._numba_config import jit

#: Multiply-adds below which a compiled loop beats a BLAS call (measured on the
#: reference machine: a BLAS call costs about 2 us; a loop runs ~2 flops/ns).
SMALL_FLOPS = 1 << 14


@jit
def mm(A, B, C):
    """C = A @ B; A (n, k), B (k, m), C (n, m); B and C C-contiguous, A C- or F-ordered."""
    n, k = A.shape
    m = B.shape[1]
    if n * k * m >= SMALL_FLOPS:
        np.dot(A, B, C)
        return
    for i in range(n):
        c = C[i]
        a0 = A[i, 0]
        b = B[0]
        for j in range(m):
            c[j] = a0 * b[j]
        for p in range(1, k):
            a = A[i, p]
            b = B[p]
            for j in range(m):
                c[j] += a * b[j]


@jit
def mm_nt(A, B, C):
    """C = A @ B.T; A (n, m), B (k, m), C (n, k): the dW product dZ @ A_prev.T."""
    n, m = A.shape
    k = B.shape[0]
    if n * k * m >= SMALL_FLOPS:
        np.dot(A, B.T, C)
        return
    for i in range(n):
        a = A[i]
        for p in range(k):
            b = B[p]
            s0 = a[0] - a[0]
            s1 = s0
            s2 = s0
            s3 = s0
            j = 0
            while j + 4 <= m:
                s0 += a[j] * b[j]
                s1 += a[j + 1] * b[j + 1]
                s2 += a[j + 2] * b[j + 2]
                s3 += a[j + 3] * b[j + 3]
                j += 4
            while j < m:
                s0 += a[j] * b[j]
                j += 1
            C[i, p] = (s0 + s1) + (s2 + s3)


@jit
def mm_tn(A, B, C):
    """C = A.T @ B; A (k, n), B (k, m), C (n, m): the dA product W.T @ dZ (:func:`mm` of
    the transposed view: the same loops and products)."""
    mm(A.T, B, C)
