"""Numba kernels of the stability sweep: the naive and pairwise sums over the
``m`` examples, natively (float32/float64) or emulating a narrower binary
format (float16, bfloat16) by rounding after every operation, with the
emulated backend's rounding (:func:`fastnn.backends._emulated_kernels._rnd`,
whose docstring says why the emulated result is the narrow format's correctly
rounded one).

Imported lazily (it compiles with Numba) by :mod:`fastnn.stability.formats`.
"""

import numpy as np

from ..backends._emulated_kernels import _rnd
from ..backends._numba_config import jit

#: Summation methods by code.
NAIVE, PAIRWISE = 0, 1


@jit
def dot_rows_emulated(P, Q, out, method, p, qmin, xmax, ovf):
    """out[j, k] = sum_i P[j, i] * Q[k, i], every product and every addition
    rounded to the format (p, qmin, xmax); P (n, m), Q (nk, m), out (n, nk), float64.

    method NAIVE: left to right; PAIRWISE: a balanced tree (adjacent pairs at
    stride 1, 2, 4, ...), so every term passes through at most ceil(log2 m) additions.
    """
    n, m = P.shape
    nk = Q.shape[0]
    fb = np.empty(1)
    ib = fb.view(np.int64)
    cb = np.empty(1)
    icb = cb.view(np.int64)
    buf = np.empty(max(m, 1))
    for j in range(n):
        for k in range(nk):
            if m == 0:
                out[j, k] = 0.0
            elif method == NAIVE:
                acc = 0.0
                for i in range(m):
                    acc = _rnd(acc + _rnd(P[j, i] * Q[k, i], p, qmin, xmax, ovf, fb, ib, cb, icb),
                               p, qmin, xmax, ovf, fb, ib, cb, icb)
                out[j, k] = acc
            else:
                for i in range(m):
                    buf[i] = _rnd(P[j, i] * Q[k, i], p, qmin, xmax, ovf, fb, ib, cb, icb)
                s = 1
                while s < m:
                    for i in range(0, m - s, 2 * s):
                        buf[i] = _rnd(buf[i] + buf[i + s], p, qmin, xmax, ovf, fb, ib, cb, icb)
                    s *= 2
                out[j, k] = buf[0]


@jit
def dot_rows_native(P, Q, out, method):
    """As :func:`dot_rows_emulated` in the arrays' own dtype (float32 or float64):
    products and additions rounded by the hardware, no fused multiply-add
    (Numba does not contract without ``fastmath``)."""
    n, m = P.shape
    nk = Q.shape[0]
    buf = np.empty(max(m, 1), dtype=out.dtype)
    for j in range(n):
        for k in range(nk):
            out[j, k] = 0
            if m == 0:
                continue
            if method == NAIVE:
                acc = out[j, k]
                for i in range(m):
                    acc = acc + P[j, i] * Q[k, i]
                out[j, k] = acc
            else:
                for i in range(m):
                    buf[i] = P[j, i] * Q[k, i]
                s = 1
                while s < m:
                    for i in range(0, m - s, 2 * s):
                        buf[i] = buf[i] + buf[i + s]
                    s *= 2
                out[j, k] = buf[0]
