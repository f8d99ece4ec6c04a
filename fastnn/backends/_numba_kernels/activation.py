"""Activation codes and scalar activation functions for the compiled kernels.

Numba promotes ``float32 * <int or float literal>`` to float64, so every
constant reaches these helpers as an argument of the array's dtype (``one``,
``slope``): float32 kernels then stay float32 and vectorise.
"""

import math

from .._numba_config import jit

IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, SOFTMAX = range(6)

#: Activation name -> integer code passed to the kernels.
CODES = {"identity": IDENTITY, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU,
         "leaky_relu": LEAKY_RELU, "softmax": SOFTMAX}

#: Activations whose forward pass the kernels compute; the others (exp, tanh)
#: go through NumPy's vectorised ufuncs, several times faster than Numba's
#: scalar libm calls on machines without SVML.
CHEAP_FORWARD = (IDENTITY, RELU, LEAKY_RELU)


@jit(inline="always")
def act(z, code, slope):
    """g(z) for the cheap activations (identity otherwise)."""
    if code == RELU:
        return z if z > 0 else z - z
    if code == LEAKY_RELU:
        return z if z > 0 else z * slope
    return z


@jit(inline="always")
def dact_mul(da, a, code, one, slope):
    """da * g'(z), with g'(z) written through a = g(z); relu'(0) = 0 as in the course."""
    if code == RELU:
        return da if a > 0 else da - da
    if code == LEAKY_RELU:
        return da if a > 0 else da * slope
    if code == SIGMOID:
        return da * a * (one - a)
    if code == TANH:
        return da * (one - a * a)
    return da


@jit(inline="always")
def sigmoid(z, one):
    """Logistic function that never overflows."""
    e = math.exp(-abs(z))
    return (one if z >= 0 else e) / (one + e)
