"""The emulated backend: float16 and bfloat16 arithmetic on float64 arrays.

An :class:`EmulatedBackend` holds values that lie on a narrow binary format's
grid in float64 arrays and rounds the result of every operation to that
format, exactly (see :mod:`._emulated_kernels`).  It provides the kernels of
:mod:`fastnn.backends._interface` that the engine's forward pass, backward
pass and plain SGD step call (:data:`KERNELS`), so
:func:`fastnn.engine.forward` and the backward functions run on it unchanged;
the stability sweep (:mod:`fastnn.stability`) measures bfloat16 and float16
with it.  It is not in the registry: it is made per format, not selected by
name.

Also here: the binary formats (:data:`FORMATS`) and exact rounding to them
(:func:`round_to_format`, :func:`round_fast`).

Shapes are the course's: ``X`` ``(n_0, m)``, ``W[l]`` ``(n_l, n_{l-1})``,
``b[l]`` ``(n_l, 1)``, ``A[l]``, ``dZ[l]`` ``(n_l, m)``.
"""

from dataclasses import dataclass

import numpy as np

from ..activations import LEAKY_SLOPE
from ..errors import FastnnValueError, SaturationError
from . import numpy_backend as _npb

__all__ = ["FORMAT_NAMES", "FORMATS", "Format", "format_of", "round_to_format", "round_fast",
           "KERNELS", "EmulatedBackend"]

#: The formats, narrowest first.
FORMAT_NAMES = ("float16", "bfloat16", "float32", "float64")

#: The kernels of :data:`fastnn.backends._interface.KERNELS` an
#: :class:`EmulatedBackend` provides: those of the engine's forward and backward
#: passes and of a plain SGD step.
KERNELS = ("to_device", "to_host", "forward_hidden", "forward_output", "output_delta",
           "output_delta_chain", "output_loss", "backward_hidden", "weight_grad", "input_grad",
           "sgd_update", "all_finite")


@dataclass(frozen=True)
class Format:
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

    def array(self, x):
        """``x`` (float64) rounded to this format, as an array of ``storage``."""
        if self.native:
            with np.errstate(over="ignore"):
                return np.ascontiguousarray(np.asarray(x, dtype=np.float64).astype(self.storage))
        return round_fast(x, self)

    def scalar(self, x):
        """The scalar ``x`` rounded to this format (a ``storage`` scalar)."""
        if self.native:
            return self.storage(np.float64(x))
        return float(round_to_format(np.float64(x), self.name))


FORMATS = {
    # float16 is emulated too (float64 arrays on its grid): bitwise NumPy's float16
    # for every elementwise kernel, float32 accumulation for the products and sums
    # (as NumPy's float16 matmul), and 3-5x faster than NumPy's float16 loops.
    "float16": Format("float16", 11, -14, 15, np.float64, False),
    "bfloat16": Format("bfloat16", 8, -126, 127, np.float64, False),
    "float32": Format("float32", 24, -126, 127, np.float32, True),
    "float64": Format("float64", 53, -1022, 1023, np.float64, True),
}


def format_of(name):
    if name not in FORMATS:
        raise FastnnValueError(f"dtype: unknown format {name!r}; expected one of {FORMAT_NAMES}")
    return FORMATS[name]


def round_fast(x, fmt):
    """round_to_format through the compiled kernel (same results, one pass)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    try:
        from . import _emulated_kernels as kernels
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
    fmt = format_of(dtype)
    x = np.array(x, dtype=np.float64, copy=True)
    with np.errstate(over="ignore", invalid="ignore"):
        _, e = np.frexp(x)                  # |x| in [2^(e-1), 2^e): ulp 2^(e - p)
        q = np.maximum(e - fmt.p, fmt.qmin)
        r = np.ldexp(np.rint(np.ldexp(x, -q)), q)
        r = np.where(np.abs(r) > fmt.xmax, np.copysign(np.inf, x), r)
    return r



class EmulatedBackend:
    """The kernels of :data:`KERNELS` for a narrow format emulated on float64
    arrays (``EmulatedBackend("float16")``, ``EmulatedBackend("bfloat16")``): every elementwise operation is done in
    float64 and rounded to the format (exact: see :mod:`._kernels`).

    Semantics, mirroring NumPy's own float16: matrix products and row sums
    accumulate in float32 (BLAS ``sgemm``, NumPy's pairwise ``sum``; the
    products of two narrow values are exact in float32) and are rounded once to
    the format; sums over the short class axis (softmax) add row by row, each
    addition rounded.  exp/tanh are evaluated in float64 and rounded once.
    """

    def __init__(self, dtype):
        self.fmt = format_of(dtype)
        self.NAME = f"emulated-{dtype}"
        self.DTYPES = (np.float64,)

    def _r(self, x):
        return round_fast(x, self.fmt)

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

    def chain_delta(self, A, Y, output, dz_scale):
        """The course's chain-route ``dZ[L]``, unchecked (as
        :func:`fastnn.backends.numpy_backend.chain_delta`)."""
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
        dZ = self.chain_delta(A, Y, output, dz_scale)
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
