"""Number formats of the stability sweep and the summations of the ``m``
per-example terms of ``dW``, ``db`` in a given format and order.

The formats, exact rounding to them and the emulated backend of the narrow
formats live in :mod:`fastnn.backends.emulated`; they are named here as the
sweep uses them.

Shapes are the course's: ``X`` ``(n_0, m)``, ``W[l]`` ``(n_l, n_{l-1})``,
``b[l]`` ``(n_l, 1)``, ``A[l]``, ``dZ[l]`` ``(n_l, m)``.
"""

import numpy as np

from ..backends import numpy_backend as _npb
from ..backends.emulated import FORMAT_NAMES as DTYPES  # noqa: F401
from ..backends.emulated import FORMATS, EmulatedBackend, round_to_format  # noqa: F401
from ..backends.emulated import format_of as _format
from ..backends.emulated import round_fast as _round_fast
from ..errors import FastnnValueError

SUMMATIONS = ("backend", "naive", "pairwise", "fp64acc")


def chain_unchecked(bk, fmt, A, Y, output, dz_scale):
    """The course's chain-route ``dZ[L]`` without the finiteness check of
    ``output_delta_chain`` (a saturated output gives inf/NaN entries): the
    emulation's own for a narrow format, :func:`fastnn.backends.numpy_backend.chain_delta`
    for float32/float64."""
    if not fmt.native:
        return bk.chain_delta(A, Y, output, dz_scale)
    return _npb.chain_delta(A, Y, output, dz_scale)


# --------------------------------------------------------------------------- summations

def _kernels():
    from . import _kernels as k
    return k


def weighted_sums(P, Q, method, dtype):
    """``S[j, k] = sum_i P[j, i] * Q[k, i]`` in a given format and summation order.

    With ``Q = ones((1, m))`` this is the row sum ``sum(P, axis=1)`` (``db``);
    with ``P = dZ`` and ``Q = A_prev`` it is ``dZ @ A_prev.T`` (``dW``).

    Parameters
    ----------
    P : numpy.ndarray, shape (n, m)
    Q : numpy.ndarray, shape (nk, m)
        Values of ``dtype`` (for bfloat16: float64 arrays on its grid).
    method : {"naive", "pairwise", "fp64acc"}
        ``"naive"``: left to right, every product and addition rounded to
        ``dtype`` (error bound ``(m-1) u sum|terms|``); ``"pairwise"``: a balanced
        tree, every operation rounded to ``dtype`` (bound ``ceil(log2 m) u sum|terms|``);
        ``"fp64acc"``: products and sums in float64 (BLAS), one rounding to
        ``dtype`` at the end (for float64 this is just the BLAS product).
    dtype : {"float16", "bfloat16", "float32", "float64"}

    Returns
    -------
    numpy.ndarray, shape (n, nk), of the format's storage dtype
    """
    fmt = _format(dtype)
    if method == "fp64acc":
        S = np.asarray(P, np.float64) @ np.asarray(Q, np.float64).T
        return fmt.array(S)
    code = {"naive": 0, "pairwise": 1}.get(method)
    if code is None:
        raise FastnnValueError(f"summation: unknown method {method!r}; expected one of {SUMMATIONS}")
    k = _kernels()
    if fmt.name in ("float32", "float64"):
        P = np.ascontiguousarray(P, dtype=fmt.storage)
        Q = np.ascontiguousarray(Q, dtype=fmt.storage)
        out = np.empty((P.shape[0], Q.shape[0]), dtype=fmt.storage)
        k.dot_rows_native(P, Q, out, code)
        return out
    P = np.ascontiguousarray(P, dtype=np.float64)
    Q = np.ascontiguousarray(Q, dtype=np.float64)
    out = np.empty((P.shape[0], Q.shape[0]))
    k.dot_rows_emulated(P, Q, out, code, fmt.p, fmt.qmin, fmt.xmax, 2.0 ** (fmt.emax + 1))
    return out.astype(fmt.storage) if fmt.native else out


def _mul(fmt, X, s):
    """X * s in the format (no-op when s == 1)."""
    if s == 1:
        return X
    if fmt.native:
        return X * s
    return _round_fast(X * s, fmt)
