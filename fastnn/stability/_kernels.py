"""Numba kernels of the stability sweep: the naive and pairwise sums over the
``m`` examples, natively (float32/float64) or emulating a narrower binary
format (float16, bfloat16) by rounding after every operation.

Emulation works on float64 values that lie on the narrow format's grid.  Each
operation is done once in float64 (correctly rounded, IEEE 754) and the result
rounded once more to the narrow format.  For float16 operands the products
(22 significant bits) and sums (exponent span <= 40 bits) are exact in float64,
so there is a single rounding.  For bfloat16 the products (16 bits) are exact
and for sums and quotients the double rounding is innocuous because float64
has p' = 53 >= 2p + 2 = 18 bits (Figueroa, "When is double rounding
innocuous?", SIGNUM Newsl. 30(3), 1995) and, with its far wider exponent
range, never underflows where bfloat16 does not.  So the emulated result is
exactly the narrow format's correctly rounded one (round to nearest even,
gradual underflow, overflow to inf).

Imported lazily (it compiles with Numba) by :mod:`fastnn.stability.formats`.
"""

import math

import numpy as np

from ..backends._numba_config import jit

#: Summation methods by code.
NAIVE, PAIRWISE = 0, 1


@jit(inline="always")
def _rnd(x, p, qmin, xmax, ovf, fb, ib, cb, icb):
    """x rounded to nearest-even on a binary format with p significand bits,
    smallest exponent of an ulp qmin and largest finite value xmax.

    ``fb``/``ib`` and ``cb``/``icb`` are one-element float64/int64 views of the
    same buffers, used to read the exponent of x and to build the constant
    ``C = 1.5 * 2**(52 + q)``: ``(x + C) - C`` rounds x to a multiple of ``2**q``,
    ties to even, in two exact-or-correctly-rounded float64 additions.
    """
    ax = abs(x)
    if ax == 0.0 or ax != ax:
        return x
    if ax >= ovf:
        return math.copysign(math.inf, x)
    fb[0] = x
    e = ((ib[0] >> 52) & 0x7FF) - 1023          # x in [2^e, 2^(e+1))
    q = max(e - p + 1, qmin)                     # exponent of the ulp there
    icb[0] = ((52 + q + 1023) << 52) | (1 << 51)
    c = cb[0]
    r = (x + c) - c
    if abs(r) > xmax:
        return math.copysign(math.inf, x)
    return r


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


@jit
def round_array(x, out, p, qmin, xmax, ovf):
    """out[i] = x[i] rounded to the format (p, qmin, xmax); 1-D float64 arrays."""
    fb = np.empty(1)
    ib = fb.view(np.int64)
    cb = np.empty(1)
    icb = cb.view(np.int64)
    for i in range(x.size):
        out[i] = _rnd(x[i], p, qmin, xmax, ovf, fb, ib, cb, icb)
