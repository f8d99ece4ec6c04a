"""Sample inputs for the compiled twins of the loss formulas
(``fastnn/backends/_numba_kernels/formulas.py``) and what their one source,
:func:`fastnn.backends.numpy_backend._loss_terms`, makes of them.

Used by ``tests/test_formula_twins.py`` (the Numba twins) and
``tests/cuda/test_cuda_formula_twins.py`` (the CUDA twins): each evaluates its
compiled twins column by column with :func:`column_losses`' recipe and compares
with :func:`source_column_losses`.
"""

import numpy as np

from fastnn.activations import ACTIVATIONS
from fastnn.backends.numpy_backend import _loss_terms

#: Logits at the edges of the formulas: signed zeros, exp(-|z|) underflowing
#: (|z| > 745), sigmoid saturating in float32 (|z| > 17) and float64 (|z| > 37),
#: subnormal and huge magnitudes.
EDGE_LOGITS = (0.0, -0.0, 1e-300, -1e-300, 5e-324, 17.0, -17.0, 40.0, -40.0, 745.5, -745.5,
               800.0, -800.0, 1e30, -1e30)


def samples(output, dtype, n=4, m=48, seed=0, soft=False):
    """(Z, A, Y) of shape (n, m) and ``dtype`` for ``output``: random logits with
    :data:`EDGE_LOGITS` (those the dtype holds) in row 0 of the first columns and their
    negatives in the last row, A = g(Z) by the NumPy activations, labels of the
    output's kind (``soft``: softmax targets that are distributions, not one-hot)."""
    rng = np.random.default_rng(seed)
    Z = (4 * rng.standard_normal((n, m))).astype(dtype)
    edges = np.array([e for e in EDGE_LOGITS if abs(e) <= np.finfo(dtype).max], dtype=dtype)
    Z[0, :edges.size] = edges
    Z[-1, :edges.size] = -edges
    with np.errstate(over="ignore", under="ignore"):
        A = ACTIVATIONS[output](Z, np.empty_like(Z))
    if output == "softmax" and soft:
        Y = rng.dirichlet(np.ones(n), m).T.astype(dtype)
    elif output == "softmax":
        Y = np.zeros((n, m), dtype)
        Y[rng.integers(0, n, m), np.arange(m)] = 1
    elif output == "sigmoid":
        Y = (rng.uniform(size=(n, m)) < 0.5).astype(dtype)
    else:
        Y = rng.standard_normal((n, m)).astype(dtype)
    return Z, A, Y


def source_column_losses(Z, A, Y, output):
    """Per-column loss of the one source, ``numpy_backend._loss_terms`` summed over rows, and
    its magnitude (the column sums of |terms|), in float64."""
    with np.errstate(over="ignore", invalid="ignore"):
        terms = _loss_terms(*(x.astype(np.float64) for x in (Z, A, Y)), output)
    return terms.sum(axis=0), np.abs(terms).sum(axis=0)


def column_losses(Z, A, Y, code, softmax, loss_term, column_max, column_exp_sum, xent_column,
                  one, widen):
    """Per-column loss from the twins, as the kernels combine them (``widen``: how the
    caller reads an entry for ``loss_term``; ``one``: the column functions' precision)."""
    import math
    out = np.empty(Z.shape[1])
    for j in range(Z.shape[1]):
        if softmax:
            zmax = column_max(Z, j, one)
            out[j] = xent_column(Z, Y, j, zmax + math.log(column_exp_sum(Z, j, zmax, one)), one)
        else:
            out[j] = sum(loss_term(widen(Z[i, j]), widen(A[i, j]), widen(Y[i, j]), code)
                         for i in range(Z.shape[0]))
    return out
