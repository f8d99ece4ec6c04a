"""Numba kernels of the emulated backend (:mod:`fastnn.backends.emulated`):
rounding float64 values to a narrower binary format (float16, bfloat16).

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

Imported lazily (it compiles with Numba) by :mod:`fastnn.backends.emulated`;
the stability sweep's emulated sums (:mod:`fastnn.stability._kernels`) round with
:func:`_rnd` too.
"""

import math

import numpy as np

from ._numba_config import jit

__all__ = ["round_array"]


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
def round_array(x, out, p, qmin, xmax, ovf):
    """out[i] = x[i] rounded to the format (p, qmin, xmax); 1-D float64 arrays."""
    fb = np.empty(1)
    ib = fb.view(np.int64)
    cb = np.empty(1)
    icb = cb.view(np.int64)
    for i in range(x.size):
        out[i] = _rnd(x[i], p, qmin, xmax, ovf, fb, ib, cb, icb)
