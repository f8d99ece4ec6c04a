"""Higher-precision references of the stability sweep's gradients.

float64 for float16, bfloat16 and float32 runs; for float64 runs an extended
precision chosen by :func:`reference_kind`: ``np.longdouble`` where it is
wider than float64 (x87 80-bit on x86-64), double-double arithmetic
(:mod:`._dd`) everywhere else.
"""

import numpy as np

import os

from .. import engine
from ..backends import numpy_backend as _npb
from ..errors import FastnnValueError

#: Extended references for float64 runs, in order of preference.
REFERENCE_KINDS = ("longdouble", "double-double")
#: Environment variable that forces one of :data:`REFERENCE_KINDS`.
REFERENCE_ENV = "FASTNN_STABILITY_REFERENCE"


def longdouble_is_extended():
    """True where ``np.longdouble`` has more significand bits than float64."""
    return np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant


def reference_kind():
    """The reference used for float64 runs here: ``"longdouble"`` where it is
    extended (x87 80-bit: 64 bits), else ``"double-double"`` (106 bits, any
    platform); ``$FASTNN_STABILITY_REFERENCE`` forces one (recorded with every
    result as ``metrics["ref"]``)."""
    forced = os.environ.get(REFERENCE_ENV, "").strip()
    if forced:
        if forced not in REFERENCE_KINDS:
            raise FastnnValueError(f"{REFERENCE_ENV}: unknown {forced!r}; expected one of {REFERENCE_KINDS}")
        if forced == "longdouble" and not longdouble_is_extended():
            raise FastnnValueError(f"{REFERENCE_ENV}=longdouble: np.longdouble is float64 here")
        return forced
    return "longdouble" if longdouble_is_extended() else "double-double"

# --------------------------------------------------------------------------- reference

def _ref_weight_sums(dZ, A):
    """dZ @ A.T in the reference precision; long double by products and NumPy's
    pairwise row sums (matmul would add the m terms left to right)."""
    if dZ.dtype == np.float64:
        return dZ @ A.T
    n, m = dZ.shape
    nk = A.shape[0]
    out = np.empty((n, nk), dtype=dZ.dtype)
    chunk = max(1, min(nk, (1 << 22) // max(m, 1)))
    for j in range(n):
        for k0 in range(0, nk, chunk):
            out[j, k0:k0 + chunk] = np.sum(dZ[j] * A[k0:k0 + chunk], axis=1)
    return out


def reference_gradients(Ws, bs, X, Y, hidden, output, dtype=np.longdouble):
    """Gradients of the summed loss ``sum_i L_i`` in higher precision.

    Parameters
    ----------
    Ws, bs : lists of arrays, shapes ``(n_l, n_{l-1})`` and ``(n_l, 1)``
    X : array, shape (n_0, m)
    Y : array, shape (n_L, m)
    hidden, output : str
        Activations (see :mod:`fastnn.activations`).
    dtype : numpy dtype or "double-double"
        float64, long double or double-double (:mod:`._dd`: 106 bits, lists
        of ``DD`` come back, ``loss_sum`` is None).  Long double (x87 80-bit on x86-64, eps 1.08e-19)
        products and NumPy's pairwise sums: the sums over m have error at most
        ``~ceil(log2 m) * eps/2 * sum|terms|``; the forward pass and ``W.T @ dZ``
        (short sums over layer widths) add a few eps per layer.

    Returns
    -------
    GW, Gb : lists of arrays of ``dtype``, shapes of ``W[l]``, ``b[l]``
        ``d(sum_i L_i)/dW[l]`` and ``/db[l]``; divide by m for ``dJ/dW``.
    dZ_nonzero : list of bool arrays, shape (n_l, m)
        Where the reference ``dZ[l]`` is non-zero.
    loss_sum : float
    """
    if isinstance(dtype, str) and dtype == "double-double":
        from . import _dd
        GW, Gb, nz = _dd.gradients(Ws, bs, np.asarray(X, np.float64), np.asarray(Y, np.float64),
                                   hidden, output)
        return GW, Gb, nz, None
    P = np.dtype(dtype)
    Ws = [np.asarray(W, dtype=P) for W in Ws]
    bs = [np.asarray(b, dtype=P) for b in bs]
    X = np.ascontiguousarray(X, dtype=P)
    Y = np.ascontiguousarray(Y, dtype=P)
    As, ZL = engine.forward(_npb, Ws, bs, X, hidden, output)
    loss_sum = _npb.output_loss(ZL, As[-1], Y, output)
    dZ = As[-1] - Y
    L = len(Ws)
    GW, Gb, nz = [None] * L, [None] * L, [None] * L

    def hook(layer, arrays):
        l, dZ = layer - 1, arrays["dZ"]
        GW[l] = _ref_weight_sums(dZ, As[l])
        Gb[l] = arrays["db"]
        nz[l] = dZ != 0

    # The engine's backward pass on the NumPy kernels in precision P: each
    # db[l] = sum(dZ[l], axis=1) (scale 1), dZ[l] = g'(Z[l]) * (W[l+1].T @ dZ[l+1]).
    engine.backward_from_delta(_npb, Ws, As, dZ, dZ.sum(axis=1, keepdims=True), hidden,
                               P.type(1), hook=hook)
    return GW, Gb, nz, loss_sum


def _ref_cost(Ws, bs, X, Y, hidden, output, dtype):
    P = np.dtype(dtype)
    As, ZL = engine.forward(_npb, [np.asarray(W, P) for W in Ws], [np.asarray(b, P) for b in bs],
                              np.ascontiguousarray(X, P), hidden, output)
    return np.sum(_loss_terms(ZL, As[-1], np.ascontiguousarray(Y, P), output)) / P.type(X.shape[1])


def _loss_terms(Z, A, Y, output):
    """Per-entry losses from the logits, in Z's precision (the numpy backend's formulas)."""
    if output == "sigmoid":
        return np.maximum(Z, 0) - Y * Z + np.log1p(np.exp(-np.abs(Z)))
    if output == "softmax":
        zmax = Z.max(axis=0, keepdims=True)
        return Y * (zmax + np.log(np.exp(Z - zmax).sum(axis=0, keepdims=True)) - Z)
    D = A - Y
    return D * D / 2
