"""Activation codes and the row-slice activation loops of the compiled kernels.

Numba promotes ``float32 * <int or float literal>`` to float64, so every
constant reaches these helpers as an argument of the array's dtype (``one``,
``slope``): float32 kernels then stay float32 and vectorise.  Helpers take 1-D slices and index from 0: with a computed
start index Numba keeps its negative-index wraparound check, which stops
LLVM from vectorising (measured 3.5x slower).  ReLU masks are
written as ``x * (a > 0)`` rather than a conditional: a data-dependent branch
does not vectorise and mispredicts on random signs (measured 6x slower).
"""

from .._numba_config import jit
# The activation codes (one table for the Numba and CUDA kernels), re-exported.
from .formulas import CODES, IDENTITY, LEAKY_RELU, RELU, SIGMOID, SOFTMAX, TANH  # noqa: F401
from .lanes import run_sum128

#: Activations whose forward pass the kernels compute; the others (exp, tanh)
#: go through NumPy's vectorised ufuncs, several times faster than Numba's
#: scalar libm calls on machines without SVML.
CHEAP_FORWARD = (IDENTITY, RELU, LEAKY_RELU)


@jit
def bias_act_slice(z, bias, code, slope):
    """z = g(z + bias) on a 1-D slice (identity, relu, leaky relu)."""
    if code == RELU:
        for j in range(z.size):
            v = z[j] + bias
            z[j] = v * (v > 0)
    elif code == LEAKY_RELU:
        for j in range(z.size):
            v = z[j] + bias
            z[j] = v * (v > 0) + (v * slope) * (v <= 0)
    else:
        for j in range(z.size):
            z[j] += bias


@jit
def dact_slice(d, a, code, one, slope):
    """d *= g'(z) on 1-D slices, with g' written through a = g(z); relu'(0) = 0."""
    if code == RELU:
        for j in range(d.size):
            d[j] = d[j] * (a[j] > 0)
    elif code == LEAKY_RELU:
        for j in range(d.size):
            x = d[j]
            d[j] = x * (a[j] > 0) + (x * slope) * (a[j] <= 0)
    elif code == SIGMOID:
        for j in range(d.size):
            d[j] = d[j] * a[j] * (one - a[j])
    elif code == TANH:
        for j in range(d.size):
            d[j] = d[j] * (one - a[j] * a[j])


@jit
def sum_slice(r):
    """float64 sum of a 1-D slice: NumPy's pairwise base case, then compensated.

    Each run of 128 values is summed in eight interleaved accumulators of r's
    dtype (as NumPy's pairwise sum does; one SIMD vector, :mod:`.lanes`), and
    the run totals are added in float64 with Neumaier compensation.  Fixed
    order throughout.
    """
    total = 0.0
    comp = 0.0
    n = r.size
    j = 0
    while j + 128 <= n:
        x = float(run_sum128(r, j))  # one <8 x dtype> vector: see lanes.py
        t = total + x
        if abs(total) >= abs(x):
            comp += (total - t) + x
        else:
            comp += (x - t) + total
        total = t
        j += 128
    tail = 0.0
    while j < n:
        tail += r[j]
        j += 1
    return (total + tail) + comp
