"""Double-double arithmetic on NumPy arrays: the extended-precision reference
for float64 runs where ``np.longdouble`` is just float64 (arm64, Windows).

A value is an unevaluated sum ``hi + lo`` of two float64 arrays with
``|lo| <= ulp(hi)/2``: 106 significand bits, unit roundoff about 2^-104
(1e-32), float64's exponent range.  The error-free transformations are
Knuth's two-sum and Dekker's two-product (no fused multiply-add needed); the
additions, products and quotients are those of Hida, Li and Bailey's QD
library ("accurate" addition, relative error a few 2^-104).  ``exp`` reduces by
``k ln 2`` and ``2^-10``, sums a Taylor series and squares back (relative
error about 2^10 * 2^-104 = 1e-29), which is 10^13 times finer than the
float64 gradients it judges.

Sums over the m examples are pairwise trees of double-double additions, so
the reference's own error grows like ``log2(m) * 2^-104``.
"""

from fractions import Fraction
import math

import numpy as np

from ..activations import LEAKY_SLOPE

_SPLIT = 134217729.0                      # 2^27 + 1
LN2 = (6.931471805599452862e-01, 2.319046813846299558e-17)


class DD:
    """An array of double-double values (``hi``, ``lo``: float64 arrays of one shape)."""

    __slots__ = ("hi", "lo")

    def __init__(self, hi, lo=None):
        self.hi = np.asarray(hi, dtype=np.float64)
        self.lo = np.zeros_like(self.hi) if lo is None else np.asarray(lo, dtype=np.float64)

    @property
    def shape(self):
        return self.hi.shape

    def __getitem__(self, idx):
        return DD(self.hi[idx], self.lo[idx])

    def copy(self):
        return DD(self.hi.copy(), self.lo.copy())

    def __add__(self, other):
        return add(self, _dd(other))

    def __sub__(self, other):
        o = _dd(other)
        return add(self, DD(-o.hi, -o.lo))

    def __neg__(self):
        return DD(-self.hi, -self.lo)

    def __mul__(self, other):
        return mul(self, _dd(other))

    def __truediv__(self, other):
        return div(self, _dd(other))

    @property
    def T(self):
        return DD(self.hi.T, self.lo.T)


def _dd(x):
    return x if isinstance(x, DD) else DD(x)


def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _quick_two_sum(a, b):
    s = a + b
    return s, b - (s - a)


def _split(a):
    c = _SPLIT * a
    hi = c - (c - a)
    return hi, a - hi


def _two_prod(a, b):
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def add(a, b):
    """a + b, QD's accurate ("IEEE") double-double addition."""
    s1, s2 = _two_sum(a.hi, b.hi)
    t1, t2 = _two_sum(a.lo, b.lo)
    s1, s2 = _quick_two_sum(s1, s2 + t1)
    s1, s2 = _quick_two_sum(s1, s2 + t2)
    return DD(s1, s2)


def mul(a, b):
    p1, p2 = _two_prod(a.hi, b.hi)
    p2 = p2 + (a.hi * b.lo + a.lo * b.hi)
    return DD(*_quick_two_sum(p1, p2))


def div(a, b):
    """a / b (QD's accurate division: three quotient digits)."""
    q1 = a.hi / b.hi
    r = a - b * q1
    q2 = r.hi / b.hi
    r = r - b * q2
    q3 = r.hi / b.hi
    q1, q2 = _quick_two_sum(q1, q2)
    return DD(q1, q2) + q3


def _const(f):
    hi = float(f)
    return DD(np.float64(hi), np.float64(float(f - Fraction(hi))))


_INV_FACT = [_const(Fraction(1, math.factorial(n))) for n in range(12)]


def exp(x):
    """exp of a double-double array (relative error about 1e-29 for |x| < 700)."""
    k = np.rint(x.hi / LN2[0])
    r = x - DD(k) * DD(np.float64(LN2[0]), np.float64(LN2[1]))
    r = DD(np.ldexp(r.hi, -10), np.ldexp(r.lo, -10))
    s = _INV_FACT[11]
    for n in range(10, -1, -1):                 # Horner: sum r^n / n!
        s = s * r + _INV_FACT[n]
    for _ in range(10):
        s = s * s
    ki = k.astype(np.int64)
    return DD(np.ldexp(s.hi, ki), np.ldexp(s.lo, ki))


def tanh(x):
    """tanh via exp(-2|x|): (1 - e) / (1 + e), with the sign of x; near 0 a series."""
    ax = DD(np.abs(x.hi), np.where(x.hi < 0, -x.lo, x.lo))
    e = exp(DD(-2 * ax.hi, -2 * ax.lo))
    one = DD(np.ones_like(x.hi))
    t = (one - e) / (one + e)
    small = ax.hi < 1e-9                         # tanh x = x - x^3/3 + ...: the cube is below 1e-27 x
    t = DD(np.where(small, ax.hi, t.hi), np.where(small, ax.lo, t.lo))
    neg = x.hi < 0
    return DD(np.where(neg, -t.hi, t.hi), np.where(neg, -t.lo, t.lo))


def where(mask, a, b):
    return DD(np.where(mask, a.hi, b.hi), np.where(mask, a.lo, b.lo))


def pairwise_sum(x):
    """Sum along the last axis by a balanced tree of double-double additions (keepdims)."""
    while x.shape[-1] > 1:
        n = x.shape[-1]
        if n % 2:
            pad = [(0, 0)] * (x.hi.ndim - 1) + [(0, 1)]
            x = DD(np.pad(x.hi, pad), np.pad(x.lo, pad))
        x = add(x[..., 0::2], x[..., 1::2])
    return x


def matmul_short(W, A):
    """W @ A with a short inner dimension (layer widths): a sum over columns of W."""
    acc = None
    for j in range(W.shape[1]):
        t = W[:, j:j + 1] * A[j:j + 1, :]
        acc = t if acc is None else acc + t
    return acc


def _act(Z, name):
    zero = DD(np.zeros_like(Z.hi))
    if name == "identity":
        return Z
    if name == "relu":
        return where(Z.hi > 0, Z, zero)
    if name == "leaky_relu":
        return where(Z.hi > 0, Z, Z * LEAKY_SLOPE)
    if name == "tanh":
        return tanh(Z)
    if name == "sigmoid":
        one = DD(np.ones_like(Z.hi))
        return one / (one + exp(-Z))
    if name == "softmax":
        E = exp(Z - Z.hi.max(axis=0, keepdims=True))
        S = E[0:1]
        for i in range(1, E.shape[0]):
            S = S + E[i:i + 1]
        return E / S
    raise ValueError(f"activation: unknown {name!r}")


def _dact(A, dA, name):
    one = DD(np.ones_like(A.hi))
    if name == "identity":
        return dA
    if name == "relu":
        return where(A.hi > 0, dA, DD(np.zeros_like(A.hi)))
    if name == "leaky_relu":
        return where(A.hi > 0, dA, dA * LEAKY_SLOPE)
    if name == "tanh":
        return dA * (one - A * A)
    if name == "sigmoid":
        return dA * A * (one - A)
    raise ValueError(f"hidden: unknown {name!r}")


class _Kernels:
    """The kernels :func:`fastnn.engine.forward` and
    :func:`fastnn.engine.backward_from_delta` call, in double-double (``DD``
    arrays, shapes as the kernel interface's).  ``backward_hidden``'s ``db`` is
    the pairwise sum of ``dZ`` (``db_scale`` must be 1: the reference is of the
    summed loss)."""

    @staticmethod
    def forward_hidden(W, A_prev, b, activation):
        return _act(matmul_short(W, A_prev) + b, activation)

    @staticmethod
    def forward_output(W, A_prev, b, output):
        Z = matmul_short(W, A_prev) + b
        return Z, _act(Z, output)

    @staticmethod
    def input_grad(W, dZ):
        return matmul_short(W.T, dZ)

    @staticmethod
    def backward_hidden(dA, A, activation, db_scale):
        dZ = _dact(A, dA, activation)
        return dZ, pairwise_sum(dZ)


def gradients(Ws, bs, X, Y, hidden, output):
    """Gradients of the summed loss in double-double (see
    :func:`fastnn.stability.reference.reference_gradients`).

    The engine's forward pass and its backward pass from ``dZ[L] = A[L] - Y``
    on the double-double kernels (:class:`_Kernels`); a per-layer hook sums
    each ``dW[l]`` pairwise over the examples.

    ``Ws``, ``bs``: lists of DD or float64 arrays; ``X``, ``Y`` float64 arrays.
    Returns ``(GW, Gb, dZ_nonzero)``: lists of DD and of bool arrays.
    """
    from .. import engine
    Ws = [_dd(W) for W in Ws]
    bs = [_dd(b) for b in bs]
    As, _ = engine.forward(_Kernels, Ws, bs, DD(X), hidden, output)
    dZ = As[-1] - DD(Y)
    L = len(Ws)
    GW, Gb, nz = [None] * L, [None] * L, [None] * L

    def hook(layer, arrays):
        l, dZ, A = layer - 1, arrays["dZ"], As[layer - 1]
        rows = [pairwise_sum(dZ[j:j + 1] * A) for j in range(dZ.shape[0])]   # (nk, 1) each
        GW[l] = DD(np.concatenate([r.hi.T for r in rows]), np.concatenate([r.lo.T for r in rows]))
        Gb[l] = arrays["db"]
        nz[l] = (dZ.hi != 0) | (dZ.lo != 0)

    engine.backward_from_delta(_Kernels, Ws, As, dZ, pairwise_sum(dZ), hidden, 1.0, hook=hook)
    return GW, Gb, nz
