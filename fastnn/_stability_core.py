"""Numerics of the stability sweep (:mod:`fastnn.stability`).

- number formats (float16, bfloat16, float32, float64) and exact rounding to them;
- an exact bfloat16 emulation of the kernel interface (:class:`_Emulated`);
- the three summations of the ``m`` per-example terms of ``dW``, ``db``;
- the higher-precision reference of the same computation;
- the evaluation of one sweep point (:func:`evaluate_point`).

Shapes are the course's: ``X`` ``(n_0, m)``, ``W[l]`` ``(n_l, n_{l-1})``,
``b[l]`` ``(n_l, 1)``, ``A[l]``, ``dZ[l]`` ``(n_l, m)``.
"""

import functools
import hashlib
import math
import time
from dataclasses import dataclass

import numpy as np

from . import _passes
from .activations import DERIVATIVES, LEAKY_SLOPE, check_hidden, check_output
from .backends import get_backend
from .backends import numpy_backend as _npb
from .errors import FastnnValueError, SaturationError
from .network import SCALINGS, OUTPUT_GRADS, init_params

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
        return round_to_format(x, self.name)

    def scalar(self, x):
        """The scalar ``x`` rounded to this format (a ``storage`` scalar)."""
        if self.native:
            return self.storage(np.float64(x))
        return float(round_to_format(np.float64(x), self.name))


FORMATS = {
    "float16": _Format("float16", 11, -14, 15, np.float16, True),
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
    float64 and rounded to the format (exact: see :mod:`._stability_kernels`).

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


# --------------------------------------------------------------------------- summations

def _kernels():
    from . import _stability_kernels
    return _stability_kernels


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


# --------------------------------------------------------------------------- problem

#: Parameters of one sweep point and their defaults.
BASE = {
    "scaling": "deferred", "dtype": "float32", "m": 1000, "depth": 3, "width": 8, "n_in": 8,
    "hidden": "relu", "output": "sigmoid", "output_grad": "fused", "summation": "backend",
    "backend": "numpy", "seed": 0, "steps": 20, "lr": 0.3,
}

#: Parameters the reference depends on (the scaling, route, summation and backend do not).
_REF_KEYS = ("dtype", "m", "depth", "width", "n_in", "hidden", "output", "seed", "steps", "lr")


def _problem(pt):
    """Parameters and data of a point, in float64, before rounding to the format.

    Weights: He (ReLU family) or Glorot normal, from ``seed``; biases zero.
    ``X`` ``(n_in, m)`` standard normal; labels from a random linear teacher
    with noise: sigmoid -> ``(1, m)`` in {0, 1}; softmax -> one-hot ``(4, m)``;
    identity -> ``(1, m)`` real.
    """
    depth, width, n_in, m = int(pt["depth"]), int(pt["width"]), int(pt["n_in"]), int(pt["m"])
    output = check_output(pt["output"])
    hidden = check_hidden(pt["hidden"])
    if depth < 1 or width < 1 or n_in < 1 or m < 1:
        raise FastnnValueError(f"depth, width, n_in, m must be >= 1, got {depth}, {width}, {n_in}, {m}")
    n_out = 4 if output == "softmax" else 1
    dims = [n_in] + [width] * (depth - 1) + [n_out]
    init = "he" if hidden in ("relu", "leaky_relu") else "xavier"
    params = init_params(dims, init=init, dtype=np.float64, seed=int(pt["seed"]))
    rng = np.random.default_rng([int(pt["seed"]), m, n_in, 20240611])
    X = rng.standard_normal((n_in, m))
    T = rng.standard_normal((n_out, n_in)) / math.sqrt(n_in)
    S = T @ X + 0.5 * rng.standard_normal((n_out, m))
    if output == "sigmoid":
        Y = (S > 0).astype(np.float64)
    elif output == "softmax":
        Y = np.zeros_like(S)
        Y[S.argmax(axis=0), np.arange(m)] = 1.0
    else:
        Y = S
    Ws = [params[f"W{l}"] for l in range(1, depth + 1)]
    bs = [params[f"b{l}"] for l in range(1, depth + 1)]
    return Ws, bs, X, Y


def _gprime_nonzero(A, hidden):
    """Where g'(Z) is non-zero, judged from the computed A (float64 tests)."""
    A = np.asarray(A, dtype=np.float64)
    if hidden == "relu":
        return A > 0
    if hidden == "tanh":
        return np.abs(A) < 1
    if hidden == "sigmoid":
        return (A > 0) & (A < 1)
    return np.ones(A.shape, dtype=bool)


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
    dtype : numpy dtype
        float64 or long double.  Long double (x87 80-bit on x86-64, eps 1.08e-19)
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
    P = np.dtype(dtype)
    Ws = [np.asarray(W, dtype=P) for W in Ws]
    bs = [np.asarray(b, dtype=P) for b in bs]
    X = np.ascontiguousarray(X, dtype=P)
    Y = np.ascontiguousarray(Y, dtype=P)
    As, ZL = _passes._forward(_npb, Ws, bs, X, hidden, output)
    loss_sum = _npb.output_loss(ZL, As[-1], Y, output)
    dZ = As[-1] - Y
    L = len(Ws)
    GW, Gb, nz = [None] * L, [None] * L, [None] * L
    for l in range(L - 1, -1, -1):
        GW[l] = _ref_weight_sums(dZ, As[l])
        Gb[l] = dZ.sum(axis=1, keepdims=True)
        nz[l] = dZ != 0
        if l:
            dZ = DERIVATIVES[hidden](As[l], Ws[l].T @ dZ)
    return GW, Gb, nz, loss_sum


def _ref_cost(Ws, bs, X, Y, hidden, output, dtype):
    P = np.dtype(dtype)
    As, ZL = _passes._forward(_npb, [np.asarray(W, P) for W in Ws], [np.asarray(b, P) for b in bs],
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


@dataclass
class _Reference:
    GW: list
    Gb: list
    dz_nonzero: list        # packed bits per layer
    shapes: list
    trajectory: np.ndarray  # (steps + 1, n_params) in the reference dtype
    cost_final: object      # reference-dtype scalar


def _flat(Ws, bs, dtype):
    return np.concatenate([np.asarray(a, dtype=dtype).ravel() for a in list(Ws) + list(bs)])


@functools.lru_cache(maxsize=6)
def _reference(ref_key):
    """The reference of a point, shared by every scaling, route, summation, backend."""
    pt = dict(ref_key)
    fmt = _format(pt["dtype"])
    P = fmt.ref
    Ws, bs, X, Y = (_round_all(v, fmt) for v in _problem(pt))
    Ws = [np.asarray(W, P) for W in Ws]
    bs = [np.asarray(b, P) for b in bs]
    X, Y = np.asarray(X, P), np.asarray(Y, P)
    hidden, output = pt["hidden"], pt["output"]
    GW, Gb, nz, _ = reference_gradients(Ws, bs, X, Y, hidden, output, P)
    m = X.shape[1]
    steps, lr = int(pt["steps"]), P(pt["lr"])
    traj = [_flat(Ws, bs, P)]
    Wt, bt = [W.copy() for W in Ws], [b.copy() for b in bs]
    for _ in range(steps):
        gW, gb, _, _ = reference_gradients(Wt, bt, X, Y, hidden, output, P)
        for W, G in zip(Wt, gW):
            W -= lr * (G / m)
        for b, G in zip(bt, gb):
            b -= lr * (G / m)
        traj.append(_flat(Wt, bt, P))
    cost = _ref_cost(Wt, bt, X, Y, hidden, output, P) if steps else math.nan
    return _Reference(GW, Gb, [np.packbits(z.ravel()) for z in nz], [z.shape for z in nz],
                      np.array(traj), cost)


def _round_all(v, fmt):
    if isinstance(v, list):
        return [np.asarray(fmt.array(a), dtype=np.float64) for a in v]
    return np.asarray(fmt.array(v), dtype=np.float64)


# --------------------------------------------------------------------------- the run

def _backend(pt, fmt):
    if not fmt.native:
        if pt["backend"] != "numpy":
            raise FastnnValueError(f"backend: {fmt.name} is emulated on the numpy backend only, "
                                   f"got {pt['backend']!r}")
        return _Emulated(fmt.name)
    bk = get_backend(pt["backend"])
    if fmt.storage not in bk.DTYPES:
        raise FastnnValueError(f"backend {bk.NAME!r} does not support {fmt.name}")
    return bk


def _chain_native(A, Y, output, dz_scale):
    """numpy_backend.output_delta_chain's formula without its finiteness check."""
    one = A.dtype.type(1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if output == "sigmoid":
            dA = -(Y / A - (one - Y) / (one - A))
            if dz_scale != 1:
                dA *= dz_scale
            return dA * A * (one - A)
        if output == "softmax":
            dA = -(Y / A)
            if dz_scale != 1:
                dA *= dz_scale
            return A * (dA - (A * dA).sum(axis=0, keepdims=True))
        dA = A - Y
        if dz_scale != 1:
            dA *= dz_scale
        return dA


def _run_gradients(bk, fmt, Ws, bs, X, Y, pt, ref_nz=None):
    """dW, db of one point's configuration; with ``ref_nz`` also dZ underflow counts.

    Returns ``(dWs, dbs, info)``; info has ``saturated`` and, when ``ref_nz``
    is given, per-layer ``(dz_underflow, dz_counted, dz_nonfinite, dz_total)``.
    """
    hidden, output = pt["hidden"], pt["output"]
    scaling, route, summation = pt["scaling"], pt["output_grad"], pt["summation"]
    if scaling not in SCALINGS:
        raise FastnnValueError(f"scaling: unknown {scaling!r}; expected one of {SCALINGS}")
    if route not in OUTPUT_GRADS:
        raise FastnnValueError(f"output_grad: unknown {route!r}; expected one of {OUTPUT_GRADS}")
    if summation not in SUMMATIONS:
        raise FastnnValueError(f"summation: unknown {summation!r}; expected one of {SUMMATIONS}")
    m = X.shape[1]
    one, inv_m = fmt.scalar(1.0), fmt.scalar(1.0 / m)
    dz_scale, w_scale = {"deferred": (one, inv_m), "absorbed": (inv_m, one), "sum": (one, one)}[scaling]
    As, ZL = _passes._forward(bk, Ws, bs, X, hidden, output)
    info = {"saturated": False, "dz": []}
    if route == "chain":
        try:
            dZ, db, _ = bk.output_delta_chain(ZL, As[-1], Y, output, dz_scale, w_scale)
        except SaturationError:
            info["saturated"] = True
            dZ = bk._chain(As[-1], Y, output, dz_scale) if not fmt.native else \
                _chain_native(As[-1], Y, output, dz_scale)
            db = None
    else:
        dZ, db, _ = bk.output_delta(ZL, As[-1], Y, output, dz_scale, w_scale)
    L = len(Ws)
    dWs, dbs = [None] * L, [None] * L
    ones = None
    for l in range(L - 1, -1, -1):
        if ref_nz is not None:
            gmask = None if l == L - 1 else _gprime_nonzero(As[l + 1], hidden)
            rz = ref_nz[l]
            with np.errstate(invalid="ignore"):
                under = (dZ == 0) & rz
            counted = rz if gmask is None else rz & gmask
            info["dz"].append((int((under & counted).sum()), int(counted.sum()),
                               int((~np.isfinite(dZ)).sum()), int(dZ.size)))
        if summation == "backend" and db is not None:
            dWs[l] = bk.weight_grad(dZ, As[l], Ws[l], w_scale, 0)
            dbs[l] = db
        else:
            method = "pairwise" if summation == "backend" else summation
            if ones is None:
                ones = np.ones((1, m), dtype=np.float64 if not fmt.native else fmt.storage)
            with np.errstate(all="ignore"):
                dWs[l] = _mul(fmt, weighted_sums(dZ, As[l], method, fmt.name), w_scale)
                dbs[l] = _mul(fmt, weighted_sums(dZ, ones, method, fmt.name), w_scale)
        if l:
            with np.errstate(all="ignore"):
                dA = bk.input_grad(Ws[l], dZ)
                dZ, db = bk.backward_hidden(dA, As[l], hidden, w_scale)
    info["dz"].reverse()
    return dWs, dbs, info


def _errors(g, r):
    """(norm-wise, max-norm, entrywise max) relative errors of g against r."""
    P = r.dtype
    g = np.asarray(g)
    if not np.isfinite(g).all():
        return math.inf, math.inf, math.inf
    d = np.abs(g.astype(P) - r)
    rn = np.sqrt(np.sum(r * r))
    dn = np.sqrt(np.sum(d * d))
    if rn == 0:
        return (0.0, 0.0, 0.0) if dn == 0 else (math.inf, math.inf, math.inf)
    ra = np.abs(r)
    nzm = ra > 0
    elem = float(np.max(d[nzm] / ra[nzm])) if nzm.any() else 0.0
    if (d[~nzm] > 0).any():
        elem = math.inf
    return float(dn / rn), float(d.max() / ra.max()), elem


def relative_errors(g, r):
    """Relative errors of a computed array against its reference.

    Parameters
    ----------
    g : numpy.ndarray, any shape
        Computed values (any floating dtype).
    r : numpy.ndarray, shape of ``g``
        Reference values, in a precision at least that of ``g``.

    Returns
    -------
    dict
        ``"norm"``: ``||g - r||_2 / ||r||_2``; ``"max"``: ``max|g - r| / max|r|``;
        ``"elem"``: ``max_i |g_i - r_i| / |r_i|`` over ``r_i != 0`` (``inf`` when an
        entry with ``r_i == 0`` is not zero).  All ``inf`` when ``g`` has inf/NaN.
    """
    r = np.asarray(r)
    if r.dtype not in (np.float64, np.longdouble):
        r = r.astype(np.float64)
    n, mx, el = _errors(g, r)
    return {"norm": n, "max": mx, "elem": el}


def evaluate_point(point):
    """Measure one sweep point against its higher-precision reference.

    Parameters
    ----------
    point : dict
        The keys of :data:`BASE` (missing ones take its defaults).

    Returns
    -------
    dict
        ``err_dW``/``err_db``: per-layer norm-wise relative errors (layer 1
        first), ``err_dW_max``/``err_db_max``: per-layer ``max|g-r|/max|r|``,
        ``err_dW_elem``/``err_db_elem``: per-layer entrywise maxima;
        ``underflow``: fraction of ``dW``, ``db`` entries that are 0 where the
        reference is non-zero; ``subnormal``: fraction below the smallest normal;
        ``overflow``: fraction that is inf/NaN (the reference is always finite);
        ``dz_underflow``/``dz_overflow``: the same for the ``dZ[l]`` entries
        (zeros from ``g'(Z) = 0`` excluded); ``saturated``: the chain route's
        output saturated; training: ``drift_max``, ``drift_final`` (relative
        parameter distance to the reference trajectory), ``cost_drift``
        (relative difference of the final cost, both evaluated in the
        reference precision), ``steps_done``; ``ref``: the reference dtype.
    """
    with np.errstate(all="ignore"):
        return _evaluate(point)


def _evaluate(point):
    t0 = time.perf_counter()
    pt = {**BASE, **point}
    fmt = _format(pt["dtype"])
    if fmt.ref is np.longdouble and np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:
        raise FastnnValueError("dtype: float64 runs need a reference in extended precision, but "
                               "np.longdouble is float64 on this platform")
    bk = _backend(pt, fmt)
    ref = _reference(tuple((k, pt[k]) for k in _REF_KEYS))
    m = int(pt["m"])
    P = fmt.ref
    Ws, bs, X, Y = (_round_all(v, fmt) for v in _problem(pt))
    dev = (lambda a: bk.to_device(a.astype(fmt.storage))) if fmt.native else (lambda a: a.copy())
    Wd, bd, Xd, Yd = [dev(W) for W in Ws], [dev(b) for b in bs], dev(X), dev(Y)
    nz = [np.unpackbits(p, count=int(np.prod(s))).reshape(s).astype(bool)
          for p, s in zip(ref.dz_nonzero, ref.shapes)]
    dWs, dbs, info = _run_gradients(bk, fmt, Wd, bd, Xd, Yd, pt, nz)
    div = P(1 if pt["scaling"] == "sum" else m)
    out = {k: [] for k in ("err_dW", "err_db", "err_dW_max", "err_db_max", "err_dW_elem", "err_db_elem")}
    under = counted = sub = nonfinite = total = 0
    for g_list, r_list, name in ((dWs, ref.GW, "dW"), (dbs, ref.Gb, "db")):
        for g, rG in zip(g_list, r_list):
            g = bk.to_host(g)
            r = rG / div
            n, mx, el = _errors(g, r)
            out[f"err_{name}"].append(n)
            out[f"err_{name}_max"].append(mx)
            out[f"err_{name}_elem"].append(el)
            rnz = r != 0
            gf = np.asarray(g, dtype=np.float64)
            under += int(((gf == 0) & rnz).sum())
            sub += int(((gf != 0) & (np.abs(gf) < fmt.tiny) & rnz).sum())
            counted += int(rnz.sum())
            nonfinite += int((~np.isfinite(gf)).sum())
            total += gf.size
    out["underflow"] = under / counted if counted else 0.0
    out["subnormal"] = sub / counted if counted else 0.0
    out["overflow"] = nonfinite / total
    dz = info["dz"]
    out["dz_underflow_layers"] = [u / c if c else 0.0 for u, c, _, _ in dz]
    out["dz_underflow"] = sum(u for u, _, _, _ in dz) / max(1, sum(c for _, c, _, _ in dz))
    out["dz_overflow"] = sum(f for _, _, f, _ in dz) / max(1, sum(t for _, _, _, t in dz))
    out["saturated"] = info["saturated"]
    digest = hashlib.sha256()
    for g in dWs + dbs:
        digest.update(np.ascontiguousarray(bk.to_host(g)).tobytes())
    out["grad_sha"] = digest.hexdigest()[:16]
    out.update(_train(bk, fmt, Wd, bd, Xd, Yd, pt, ref))
    out["ref"] = "longdouble" if P is np.longdouble else "float64"
    out["elapsed_s"] = round(time.perf_counter() - t0, 4)
    return out


def _train(bk, fmt, Ws, bs, X, Y, pt, ref):
    """N steps of full-batch gradient descent in the point's format and configuration."""
    steps = int(pt["steps"])
    if steps <= 0:
        return {"drift_max": None, "drift_final": None, "cost_drift": None, "steps_done": 0}
    P = fmt.ref
    m = X.shape[1]
    lr = fmt.scalar(pt["lr"] / m if pt["scaling"] == "sum" else pt["lr"])
    Ws = [W.copy() for W in Ws]
    bs = [b.copy() for b in bs]
    drift = []
    done = 0
    for t in range(steps):
        with np.errstate(all="ignore"):
            dWs, dbs, _ = _run_gradients(bk, fmt, Ws, bs, X, Y, pt)
        grads = dWs + dbs
        if not all(np.isfinite(bk.to_host(g)).all() for g in grads):
            break
        for Pm, G in zip(Ws + bs, grads):
            with np.errstate(all="ignore"):
                bk.sgd_update(Pm, G, lr)
        done = t + 1
        th = _flat([bk.to_host(W) for W in Ws], [bk.to_host(b) for b in bs], P)
        rt = ref.trajectory[t + 1]
        if not np.isfinite(th).all():
            drift.append(math.inf)
            break
        drift.append(float(np.linalg.norm(th - rt) / np.linalg.norm(rt)))
    if done < steps:
        return {"drift_max": math.inf, "drift_final": math.inf, "cost_drift": math.inf, "steps_done": done}
    Xh, Yh = np.asarray(bk.to_host(X), np.float64), np.asarray(bk.to_host(Y), np.float64)
    cost = _ref_cost([bk.to_host(W) for W in Ws], [bk.to_host(b) for b in bs], Xh, Yh,
                     pt["hidden"], pt["output"], P)
    return {"drift_max": max(drift), "drift_final": drift[-1],
            "cost_drift": float(abs(cost - ref.cost_final) / abs(ref.cost_final)) if ref.cost_final else math.nan,
            "steps_done": done}
