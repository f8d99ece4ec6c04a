"""Number formats of the stability sweep: float16, bfloat16, float32, float64,
exact rounding to them, an exact emulation of the kernel interface for the
narrow formats (:class:`_Emulated`) and the summations of the ``m``
per-example terms of ``dW``, ``db`` in a given format and order.

Shapes are the course's: ``X`` ``(n_0, m)``, ``W[l]`` ``(n_l, n_{l-1})``,
``b[l]`` ``(n_l, 1)``, ``A[l]``, ``dZ[l]`` ``(n_l, m)``.
"""

from dataclasses import dataclass

import numpy as np

from ..activations import LEAKY_SLOPE
from ..backends import numpy_backend as _npb
from ..errors import FastnnValueError, SaturationError

SUMMATIONS = ("backend", "naive", "pairwise", "fp64acc")
DTYPES = ("float16", "bfloat16", "float32", "float64")

# --------------------------------------------------------------------------- formats

@dataclass(frozen=True)
class _Format:
    """A binary floating-point format: ``p`` significand bits (with the implicit
    one), normal exponents ``emin..emax``; ``storage`` is the NumPy dtype its
    arrays use (float64 holding on-grid values for the emulated bfloat16)."""
    name: str
    p: int
    emin: int
    emax: int
    storage: type
    native: bool

    @property
    def qmin(self):
        """Exponent of the smallest subnormal (the ulp below ``2**emin``)."""
        return self.emin - self.p + 1

    @property
    def xmax(self):
        return (2.0 - 2.0 ** (1 - self.p)) * 2.0 ** self.emax

    @property
    def tiny(self):
        """Smallest positive normal number."""
        return 2.0 ** self.emin

    @property
    def eps(self):
        return 2.0 ** (1 - self.p)

    @property
    def ref(self):
        """dtype of the reference: float64, or long double for float64 runs."""
        return np.longdouble if self.name == "float64" else np.float64

    def array(self, x):
        """``x`` (float64) rounded to this format, as an array of ``storage``."""
        if self.native:
            with np.errstate(over="ignore"):
                return np.ascontiguousarray(np.asarray(x, dtype=np.float64).astype(self.storage))
        return _round_fast(x, self)

    def scalar(self, x):
        """The scalar ``x`` rounded to this format (a ``storage`` scalar)."""
        if self.native:
            return self.storage(np.float64(x))
        return float(round_to_format(np.float64(x), self.name))


FORMATS = {
    # float16 is emulated too (float64 arrays on its grid): bitwise NumPy's float16
    # for every elementwise kernel, float32 accumulation for the products and sums
    # (as NumPy's float16 matmul), and 3-5x faster than NumPy's float16 loops.
    "float16": _Format("float16", 11, -14, 15, np.float64, False),
    "bfloat16": _Format("bfloat16", 8, -126, 127, np.float64, False),
    "float32": _Format("float32", 24, -126, 127, np.float32, True),
    "float64": _Format("float64", 53, -1022, 1023, np.float64, True),
}


def _format(name):
    if name not in FORMATS:
        raise FastnnValueError(f"dtype: unknown format {name!r}; expected one of {DTYPES}")
    return FORMATS[name]


def _round_fast(x, fmt):
    """round_to_format through the compiled kernel (same results, one pass)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    try:
        kernels = _kernels()
    except ImportError:                      # no Numba: the NumPy version, same results
        return round_to_format(x, fmt.name)
    out = np.empty_like(x)
    kernels.round_array(x.reshape(-1), out.reshape(-1), fmt.p, fmt.qmin, fmt.xmax,
                        2.0 ** (fmt.emax + 1))
    return out


def round_to_format(x, dtype):
    """Round to nearest (ties to even) onto a binary floating-point format.

    Parameters
    ----------
    x : array_like of float64, any shape
    dtype : {"float16", "bfloat16", "float32", "float64"}
        float16: 11 significand bits, normal exponents -14..15; bfloat16: 8 bits,
        -126..127 (float32's range).  Gradual underflow (subnormals down to
        ``2**(emin - p + 1)``) and overflow to ``inf`` as IEEE 754 prescribes.

    Returns
    -------
    numpy.ndarray of float64, shape of ``x``
        Every value exactly representable in ``dtype``.  Exact: ``x`` is scaled by
        a power of two (exact), rounded to an integer by :func:`numpy.rint`
        (ties to even) and scaled back.
    """
    fmt = _format(dtype)
    x = np.array(x, dtype=np.float64, copy=True)
    with np.errstate(over="ignore", invalid="ignore"):
        _, e = np.frexp(x)                  # |x| in [2^(e-1), 2^e): ulp 2^(e - p)
        q = np.maximum(e - fmt.p, fmt.qmin)
        r = np.ldexp(np.rint(np.ldexp(x, -q)), q)
        r = np.where(np.abs(r) > fmt.xmax, np.copysign(np.inf, x), r)
    return r


# --------------------------------------------------------------------------- emulated kernels

class _Emulated:
    """The kernel interface of :mod:`fastnn.backends._interface` for a narrow
    format emulated on float64 arrays: every elementwise operation is done in
    float64 and rounded to the format (exact: see :mod:`._kernels`).

    Semantics, mirroring NumPy's own float16: matrix products and row sums
    accumulate in float32 (BLAS ``sgemm``, NumPy's pairwise ``sum``; the
    products of two narrow values are exact in float32) and are rounded once to
    the format; sums over the short class axis (softmax) add row by row, each
    addition rounded.  exp/tanh are evaluated in float64 and rounded once.
    """

    def __init__(self, dtype):
        self.fmt = _format(dtype)
        self.NAME = f"emulated-{dtype}"
        self.DTYPES = (np.float64,)

    def _r(self, x):
        return _round_fast(x, self.fmt)

    def _mm(self, A, B):
        return self._r((A.astype(np.float32) @ B.astype(np.float32)).astype(np.float64))

    def _row_sum(self, X):
        return self._r(X.astype(np.float32).sum(axis=1, keepdims=True).astype(np.float64))

    def _col_sum(self, X):
        s = X[0:1].copy()
        for i in range(1, X.shape[0]):
            s = self._r(s + X[i:i + 1])
        return s

    # kernel interface -----------------------------------------------------
    def to_device(self, x):
        return self._r(x)

    def to_host(self, x):
        return np.asarray(x)

    def all_finite(self, x):
        return bool(np.isfinite(x).all())

    def _act(self, Z, name):
        r = self._r
        if name == "identity":
            return Z.copy()
        if name == "relu":
            return np.maximum(Z, 0.0)
        if name == "leaky_relu":
            return np.where(Z > 0, Z, r(Z * self.fmt.scalar(LEAKY_SLOPE)))
        if name == "tanh":
            return r(np.tanh(Z))
        if name == "sigmoid":
            e = r(np.exp(-np.abs(Z)))
            return r(np.where(Z >= 0, 1.0, e) / r(1.0 + e))
        if name == "softmax":
            D = r(Z - Z.max(axis=0, keepdims=True))
            E = r(np.exp(D))
            return r(E / self._col_sum(E))
        raise FastnnValueError(f"activation: unknown {name!r}")

    def _affine(self, W, A_prev, b):
        return self._r(self._mm(W, A_prev) + b)

    def forward_hidden(self, W, A_prev, b, activation):
        return self._act(self._affine(W, A_prev, b), activation)

    def forward_output(self, W, A_prev, b, output):
        Z = self._affine(W, A_prev, b)
        return Z, self._act(Z, output)

    def output_loss(self, Z, A, Y, output):
        return _npb.output_loss(Z, A, Y, output)

    def _scaled_row_sum(self, dZ, scale):
        db = self._row_sum(dZ)
        return db if scale == 1 else self._r(db * scale)

    def output_delta(self, Z, A, Y, output, dz_scale, db_scale):
        dZ = self._r(A - Y)
        if dz_scale != 1:
            dZ = self._r(dZ * dz_scale)
        return dZ, self._scaled_row_sum(dZ, db_scale), self.output_loss(Z, A, Y, output)

    def _chain(self, A, Y, output, dz_scale):
        r = self._r
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if output == "sigmoid":
                dA = -r(r(Y / A) - r(r(1.0 - Y) / r(1.0 - A)))
                if dz_scale != 1:
                    dA = r(dA * dz_scale)
                return r(r(dA * A) * r(1.0 - A))
            if output == "softmax":
                dA = -r(Y / A)
                if dz_scale != 1:
                    dA = r(dA * dz_scale)
                return r(A * r(dA - self._col_sum(r(A * dA))))
            dA = r(A - Y)
            return r(dA * dz_scale) if dz_scale != 1 else dA

    def output_delta_chain(self, Z, A, Y, output, dz_scale, db_scale):
        dZ = self._chain(A, Y, output, dz_scale)
        if not np.isfinite(dZ).all():
            raise SaturationError(f"output_grad='chain': the {output} output saturated in {self.fmt.name}")
        return dZ, self._scaled_row_sum(dZ, db_scale), self.output_loss(Z, A, Y, output)

    def _dact(self, A, dZ, name):
        r = self._r
        if name == "identity":
            return dZ
        if name == "sigmoid":
            return r(r(dZ * A) * r(1.0 - A))
        if name == "tanh":
            return r(dZ * r(1.0 - r(A * A)))
        if name == "relu":
            return np.where(A <= 0, 0.0, dZ)
        if name == "leaky_relu":
            return np.where(A <= 0, r(dZ * self.fmt.scalar(LEAKY_SLOPE)), dZ)
        raise FastnnValueError(f"hidden: unknown {name!r}")

    def backward_hidden(self, dA, A, activation, db_scale):
        dZ = self._dact(A, dA, activation)
        return dZ, self._scaled_row_sum(dZ, db_scale)

    def weight_grad(self, dZ, A_prev, W, scale, l2_scale):
        dW = self._mm(dZ, A_prev.T)
        if scale != 1:
            dW = self._r(dW * scale)
        if l2_scale:
            dW = self._r(dW + self._r(l2_scale * W))
        return dW

    def input_grad(self, W, dZ):
        return self._mm(W.T, dZ)

    def sgd_update(self, P, G, lr):
        P[...] = self._r(P - self._r(lr * G))


def chain_unchecked(bk, fmt, A, Y, output, dz_scale):
    """The course's chain-route ``dZ[L]`` without the finiteness check of
    ``output_delta_chain`` (a saturated output gives inf/NaN entries): the
    emulation's own for a narrow format, :func:`fastnn.backends.numpy_backend.chain_delta`
    for float32/float64."""
    if not fmt.native:
        return bk._chain(A, Y, output, dz_scale)
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
