"""Vectorisable exp, tanh, sigmoid and log1p for the compiled loop.

Numba lowers ``math.exp``/``math.tanh`` to scalar libm calls, which LLVM cannot
vectorise without SVML (measured 4-20x slower than NumPy's SIMD ufuncs on the
reference machine).  These are written with +, *, / and selects only (and inlined into the loops that call
them: a call LLVM does not inline stops vectorisation), in
float64 (float32 inputs are widened and the result rounded once), so loops of
them vectorise.  Accuracy, tested against NumPy: a few float64 ulp.
"""

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .._numba_config import jit

_LN2_HI = 0.6931471803691238       # ln 2 split so k * _LN2_HI is exact for |k| < 2^11
_LN2_LO = 1.9082149292705877e-10
_INV_LN2 = 1.4426950408889634
# Adding 1.5 * 2^52 rounds a float64 of magnitude < 2^51 to an integer k that
# then sits in the low bits of the sum's bit pattern: k without a float-to-int
# conversion (AVX2 has no vector float64 -> int64 conversion; LLVM emits it as
# four scalar ones).
_SHIFTER = 6755399441055744.0
_SHIFTER_BITS = 0x4338000000000000

#: Taylor coefficients after the leading one, highest degree first (see :func:`_horner`).
#: exp(r) = sum r^k / k!, k = 12 .. 0 (the leading 1/13! is passed as the start value).
_EXP_TAYLOR = (1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0,
               1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0,
               0.5, 1.0, 1.0)
#: tanh(a) = a (1 + s P(s)), s = a^2: P's coefficients after its s^8 term.
_TANH_TAYLOR = (6404582.0 / 10854718875.0, -929569.0 / 638512875.0, 21844.0 / 6081075.0,
                -1382.0 / 155925.0, 62.0 / 2835.0, -17.0 / 315.0, 2.0 / 15.0, -1.0 / 3.0)
#: atanh(s) = s (1 + q P(q)), q = s^2: P's coefficients 1/33, 1/31, ..., 1/3 after the
#: leading 1/35, in two runs of 8 (a run of 16 did not unroll, :func:`_horner`).
_ATANH_HIGH = tuple(1.0 / k for k in range(33, 18, -2))
_ATANH_LOW = tuple(1.0 / k for k in range(17, 2, -2))

@intrinsic
def _bits(typingctx, x):
    """The IEEE bit pattern of a float64 as an int64 (a bitcast)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _from_bits(typingctx, x):
    """The float64 with the given int64 bit pattern (a bitcast)."""
    if x != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@jit(inline="always")
def _horner(x, p, coefficients):
    """p x^n + coefficients[0] x^(n-1) + ... + coefficients[n-1]: Horner's rule
    (p = p x + c for each c), continued from p.

    ``coefficients`` is a module-level tuple (a compile-time constant) of up to
    13 values: the loop unrolls into the same multiply-adds as written out, and
    loops calling it still vectorise (measured as fast, bitwise the same).  A
    tuple of 16 values, and a loop over ``range(len(coefficients))``, did not
    unroll (20-30x slower).
    """
    for c in coefficients:
        p = p * x + c
    return p


@jit(inline="always")
def exp_nonpos(y):
    """exp(y) for y <= 0 (float64); results below 2^-1022 (y < -708) are flushed to 0.

    y = k ln2 + r with |r| <= ln2/2; exp(r) by its Taylor series; 2^k written
    straight into the exponent bits (k >= -1021 after the clamp, so 2^k is a
    normal number).  Measured 2.6x faster than forming 2^k from ten selects on
    the bits of k, with bitwise the same results.
    """
    small = y < -708.0
    y = max(y, -708.0)
    t = y * _INV_LN2 + _SHIFTER
    k = t - _SHIFTER  # round(y / ln2), exact
    r = (y - k * _LN2_HI) - k * _LN2_LO
    # Taylor series of exp(r) to degree 13: truncation < 1e-17 for |r| <= ln2/2.
    p = _horner(r, 1.0 / 6227020800.0, _EXP_TAYLOR)
    two_k = _from_bits((_bits(t) - _SHIFTER_BITS + 1023) << 52)
    return 0.0 if small else p * two_k


@jit(inline="always")
def tanh(x):
    """tanh(x) in float64."""
    a = min(abs(x), 20.0)  # tanh(20) rounds to 1 in float64
    # Both branches are computed and one selected: a data-dependent branch
    # would stop LLVM from vectorising the loop.
    # Small |x|: odd Taylor series x (1 + s P(s)), s = x^2; at s <= 0.029 the
    # s^8 term is 1e-16 and the next 1e-18.
    s = a * a
    p = _horner(s, -443861162.0 / 1856156927625.0, _TANH_TAYLOR)
    series = a + a * (s * p)
    e = exp_nonpos(-2.0 * a)
    t = series if a < 0.17 else (1.0 - e) / (1.0 + e)
    return t if x >= 0 else -t


@jit(inline="always")
def sigmoid(z):
    """1 / (1 + exp(-z)) in float64, never overflowing."""
    e = exp_nonpos(-abs(z))
    return (1.0 if z >= 0 else e) / (1.0 + e)


@jit(inline="always")
def log1p_unit(e):
    """log(1 + e) for 0 <= e <= 1, as 2 atanh(e / (2 + e)) (no cancellation)."""
    s = e / (2.0 + e)
    q = s * s
    # atanh(s) = s (1 + q/3 + q^2/5 + ...); s <= 1/3 so q <= 1/9: 17 terms < 1e-17.
    p = _horner(q, _horner(q, 1.0 / 35.0, _ATANH_HIGH), _ATANH_LOW)
    return 2.0 * (s + s * (q * p))
