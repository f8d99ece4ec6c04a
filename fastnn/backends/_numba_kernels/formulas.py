"""The output layer's formulas as scalar functions compiled twice: by ``numba.njit``
for the Numba backends (:mod:`.output`, :mod:`.loop`) and by
``numba.cuda.jit(device=True)`` for the CUDA backend (as ``fastnn._dropout``'s
Philox is).

Their one source is :func:`fastnn.backends.numpy_backend._loss_terms` (and the
softmax of :mod:`fastnn.activations`); these are its compiled twins, held equal
to it by ``tests/test_formula_twins.py`` and ``tests/cuda/test_cuda_formula_twins.py``.
Each function is self-contained: a twin may call only what its own compiler
compiled.

Precision is the caller's.  ``loss_term`` takes scalars the caller has read;
the column functions multiply each entry by ``one``, 1 in the working
precision (exact): the CUDA kernels pass a float64 1.0 and compute in float64,
the Numba kernels pass 1 of the array's dtype, so float32 entries stay float32
there as they always have (Numba's ``float(x)`` of a float32 is a float32);
sums start from a float64 0.0 in both.
"""

import math

IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, SOFTMAX = range(6)

#: Activation name -> the integer code the compiled kernels branch on (Numba and CUDA).
CODES = {"identity": IDENTITY, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU,
         "leaky_relu": LEAKY_RELU, "softmax": SOFTMAX}


def loss_term(z, a, y, code):
    """One entry's loss from its logit z, output a and label y (``_loss_terms``): for
    sigmoid the cross-entropy softplus(z) - y z (finite for any logit), otherwise
    1/2 (a - y)^2."""
    if code == SIGMOID:
        return max(z, 0.0) - y * z + math.log1p(math.exp(-abs(z)))
    d = a - y
    return 0.5 * d * d


def column_max(Z, j, one):
    """max_i Z[i, j] * one: the softmax's shift (``activations._softmax``)."""
    zmax = Z[0, j] * one
    for i in range(1, Z.shape[0]):
        zmax = max(zmax, Z[i, j] * one)
    return zmax


def column_exp_sum(Z, j, zmax, one):
    """sum_i exp(Z[i, j] one - zmax), rows in order, into a float64: the softmax's denominator."""
    s = 0.0
    for i in range(Z.shape[0]):
        s += math.exp(Z[i, j] * one - zmax)
    return s


def xent_column(Z, Y, j, lse, one):
    """sum_i Y[i, j] (lse - Z[i, j]), entries times one, into a float64: column j's
    categorical cross-entropy given its log-sum-exp ``zmax + log(column_exp_sum)``."""
    s = 0.0
    for i in range(Z.shape[0]):
        s += (Y[i, j] * one) * (lse - Z[i, j] * one)
    return s
