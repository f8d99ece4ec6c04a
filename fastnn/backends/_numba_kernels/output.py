"""Output-layer kernels: dZ[L] = scale (A - Y) with the db partials, and the
per-example loss computed from the logits."""

import math

import numpy as np
from numba import prange

from .._numba_config import BLOCK, jit
from . import formulas
from .activation import sum_slice
from .forward import max_into
from .reduce import row_block
from .vmath import exp_nonpos

# The compiled twins of numpy_backend._loss_terms (formulas.py).
_loss_term = jit(inline="always")(formulas.loss_term)
_column_max = jit(inline="always")(formulas.column_max)
_column_exp_sum = jit(inline="always")(formulas.column_exp_sum)
_xent_column = jit(inline="always")(formulas.xent_column)


def output_delta(A, Y, dz_scale, dZ, partial):
    """dZ = dz_scale * (A - Y); partial[i, k] = float64 sum of row i, block k of dZ."""
    n, m = A.shape
    nb = partial.shape[1]
    for t in prange(n * nb):
        i, k, j0, j1 = row_block(t, nb, m)
        d, a, y = dZ[i, j0:j1], A[i, j0:j1], Y[i, j0:j1]
        for j in range(d.size):
            d[j] = (a[j] - y[j]) * dz_scale
        partial[i, k] = sum_slice(d)


def loss_elementwise(Z, A, Y, code, partial):
    """Block partial sums (float64) of the sigmoid cross-entropy from logits, or of 1/2 (a - y)^2."""
    n, m = Z.shape
    nb = partial.shape[1]
    for t in prange(n * nb):
        i, k, j0, j1 = row_block(t, nb, m)
        s = 0.0
        for j in range(j0, j1):
            s += _loss_term(float(Z[i, j]), float(A[i, j]), float(Y[i, j]), code)
        partial[i, k] = s


@jit
def softmax_ce_column(Z, Y, j, one):
    """Categorical cross-entropy of column j from the logits (log-sum-exp; ``one`` of
    Z's dtype, :mod:`.formulas`); the compiled loop's per-column form."""
    zmax = _column_max(Z, j, one)
    return _xent_column(Z, Y, j, zmax + math.log(_column_exp_sum(Z, j, zmax, one)), one)


@jit
def _widen_into(z, out):
    """out = float64(z) on 1-D slices."""
    for j in range(z.size):
        out[j] = z[j]


@jit
def _sum_exp_into(z, mx, s):
    """s += exp(z - mx) in float64 on 1-D slices (NaN passes through)."""
    for j in range(z.size):
        d = float(z[j]) - mx[j]
        e = exp_nonpos(d)
        s[j] += e if d == d else d


@jit
def _xent_into(z, y, lse, acc):
    """acc += y (lse - z) in float64 on 1-D slices: each term >= 0, no cancellation."""
    for j in range(z.size):
        acc[j] += float(y[j]) * (lse[j] - float(z[j]))


def loss_softmax(Z, Y, partial):
    """Block partial sums (float64) of the categorical cross-entropy from logits
    (log-sum-exp); tasks are column blocks, each swept row by row so the exp vectorises."""
    n, m = Z.shape
    nb = partial.shape[1]
    for k in prange(nb):
        j0 = k * BLOCK
        j1 = min(j0 + BLOCK, m)
        mx = Z[0, j0:j1].copy()
        for i in range(1, n):
            max_into(Z[i, j0:j1], mx)  # exact in the dtype, then widened
        lse = np.empty(j1 - j0)
        _widen_into(mx, lse)
        s = np.zeros_like(lse)
        for i in range(n):
            _sum_exp_into(Z[i, j0:j1], lse, s)
        for j in range(lse.size):
            lse[j] += math.log(s[j])
        acc = np.zeros_like(lse)
        for i in range(n):
            _xent_into(Z[i, j0:j1], Y[i, j0:j1], lse, acc)
        partial[0, k] = sum_slice(acc)
