"""NumPy backend: the reference implementation of every kernel.

It is the fallback when Numba is missing and the oracle the compiled backends
are tested against.  Reductions over the ``m`` examples run along the
contiguous axis of C-ordered ``(n, m)`` arrays, where NumPy sums pairwise
(error growing like ``log2(m) * eps`` instead of ``m * eps``).
"""

import functools
import math

import numpy as np

from .. import _dropout
from ..activations import ACTIVATIONS, DERIVATIVES
from ..errors import SaturationError
from . import _interface

__all__ = [*_interface.CONSTANTS, *_interface.KERNELS, *_interface.MINIBATCH_KERNELS]

NAME = "numpy"
DTYPES = (np.float16, np.float32, np.float64)


def to_device(x):
    """Return ``x`` as a C-contiguous ndarray (no copy when it already is one)."""
    return np.ascontiguousarray(x)


def to_host(x):
    """Return ``x`` as a NumPy array."""
    return np.asarray(x)


def gather_columns(XR, idx):
    """Minibatch ``X[:, idx]`` from the row-major copy ``XR = X.T``, without a transposed copy.

    Parameters
    ----------
    XR : ndarray, shape (N, n_x), C-contiguous
        The examples as rows.
    idx : ndarray of int, shape (b,), or slice
        The batch's examples.

    Returns
    -------
    ndarray, shape (n_x, b)
        An F-ordered view of the gathered rows (a view of ``XR`` itself for a
        slice): one contiguous read per example, and the matmuls of the first
        layer take it as a transposed operand.
    """
    if isinstance(idx, slice):
        return XR[idx].T
    return np.take(XR, idx, axis=0).T


def zeros_like(x):
    """Zeros with the shape and dtype of ``x``."""
    return np.zeros_like(x)


def all_finite(x):
    """True when every entry of ``x`` is finite."""
    return bool(np.isfinite(x).all())


def _affine(W, A_prev, b):
    Z = W @ A_prev
    Z += b
    return Z


def forward_hidden(W, A_prev, b, activation):
    """A = g(W @ A_prev + b), computed in one buffer; A is (n_l, m)."""
    Z = _affine(W, A_prev, b)
    return ACTIVATIONS[activation](Z, Z)


def forward_hidden_offset(W, A_prev, b, Z0, activation):
    """A = g(W @ A_prev + Z0 + b), (n_l, m); Z0 is (n_l, m) (the dual first layer's fixed part)."""
    Z = W @ A_prev
    Z += Z0
    Z += b
    return ACTIVATIONS[activation](Z, Z)


def forward_output(W, A_prev, b, output):
    """(Z, A) of the output layer; Z (the logits) is kept for a stable loss."""
    Z = _affine(W, A_prev, b)
    return Z, ACTIVATIONS[output](Z, np.empty_like(Z))


def _loss_terms(Z, A, Y, output):
    if output == "sigmoid":
        # -[y log a + (1-y) log(1-a)] written from the logit: softplus(z) - y z.
        return np.maximum(Z, 0) - Y * Z + np.log1p(np.exp(-np.abs(Z)))
    if output == "softmax":
        zmax = Z.max(axis=0, keepdims=True)
        lse = zmax + np.log(np.exp(Z - zmax).sum(axis=0, keepdims=True))
        return Y * (lse - Z)
    D = A - Y
    return D * D * Z.dtype.type(0.5)


def sum_terms(terms):
    """``sum(terms)`` as a float; float16 terms are summed in float64.

    A float16 sum over m examples overflows at 65504: a true cost of 0.72 at
    m = 120000 would read as inf.  float32 and float64 sum in their own dtype.
    """
    return float(np.sum(terms, dtype=np.float64 if terms.dtype == np.float16 else None))


def output_loss(Z, A, Y, output):
    """Sum over all examples of the per-example loss, from the logits Z (float)."""
    return sum_terms(_loss_terms(Z, A, Y, output))


def _scaled_row_sum(dZ, scale):
    db = dZ.sum(axis=1, keepdims=True)
    if scale != 1:
        db *= scale
    return db


def output_delta(Z, A, Y, output, dz_scale, db_scale):
    """Fused output layer: dZ = dz_scale * (A - Y), db, and the summed loss."""
    dZ = A - Y
    if dz_scale != 1:
        dZ *= dz_scale
    return dZ, _scaled_row_sum(dZ, db_scale), output_loss(Z, A, Y, output)


def chain_delta(A, Y, output, dz_scale):
    """The course's route, unchecked: dA[L] from the loss, then dZ[L] = dA[L] * g'(Z[L]).

    May hold inf/NaN where an output rounded to 0 or 1 (the one source of the
    formula; :func:`output_delta_chain` checks it, the stability sweep counts it).
    """
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
            # Softmax couples the rows: dZ = A * (dA - sum_k A_k dA_k).
            return A * (dA - (A * dA).sum(axis=0, keepdims=True))
        dA = A - Y
        if dz_scale != 1:
            dA *= dz_scale
        return dA


def output_delta_chain(Z, A, Y, output, dz_scale, db_scale):
    """The course's route (:func:`chain_delta`), refused where it is not finite.

    Raises SaturationError when an output that rounded to 0 or 1 made the
    division by A or 1 - A non-finite.
    """
    dZ = chain_delta(A, Y, output, dz_scale)
    if not np.isfinite(dZ).all():
        raise SaturationError(
            f"output_grad='chain': the {output} output saturated (A rounded to 0 or 1 in "
            f"{A.dtype}), so dA[L] = -(Y/A - (1-Y)/(1-A)) is not finite; "
            "use output_grad='fused' (dZ[L] = A - Y), which has no division")
    return dZ, _scaled_row_sum(dZ, db_scale), output_loss(Z, A, Y, output)


def backward_hidden(dA, A, activation, db_scale):
    """Fused hidden-layer backward: dZ = dA * g'(Z) (from A), db = db_scale * sum(dZ, axis=1)."""
    dZ = DERIVATIVES[activation](A, dA)
    return dZ, _scaled_row_sum(dZ, db_scale)


def dropout_forward(A, keep, key):
    """Inverted dropout of a hidden layer's activations (a new array).

    Parameters
    ----------
    A : ndarray, shape (n_l, m)
    keep : float in (0, 1]
    key : tuple
        :func:`fastnn._dropout.step_key` of the layer and step.

    Returns
    -------
    ndarray, shape (n_l, m), dtype of A
        ``A / keep`` where the unit is kept (:func:`fastnn._dropout.keep_mask`), 0 elsewhere.
    """
    out = A / A.dtype.type(keep)
    out[~_dropout.keep_mask(A.shape, keep, key)] = 0
    return out


def dropout_backward(dA, keep, key):
    """``dA * mask / keep`` in place (the mask of :func:`dropout_forward` with the same key); returns dA."""
    dA /= dA.dtype.type(keep)
    dA[~_dropout.keep_mask(dA.shape, keep, key)] = 0
    return dA


def weight_grad(dZ, A_prev, W, scale, l2_scale):
    """dW = scale * (dZ @ A_prev.T) + l2_scale * W, shape of W."""
    dW = dZ @ A_prev.T
    if scale != 1:
        dW *= scale
    if l2_scale:
        dW += l2_scale * W
    return dW


def weight_step(W, dZ, A_prev, alpha, beta):
    """``W = beta * W + alpha * (dZ @ A_prev.T)``, in place.

    Parameters
    ----------
    W : ndarray, shape (n_l, n_{l-1})
    dZ : ndarray, shape (n_l, m)
    A_prev : ndarray, shape (n_{l-1}, m)
    alpha, beta : scalars of W's dtype
        An SGD step with deferred 1/m and L2 is ``alpha = -lr/m``,
        ``beta = 1 - lr * l2/m``.
    """
    if beta != 1:
        W *= beta
    W += alpha * (dZ @ A_prev.T)


def max_abs(x):
    """Largest ``|x|`` as a float: inf or NaN when an entry is not finite (0.0 when empty)."""
    if not x.size:
        return 0.0
    hi, lo = float(x.max()), float(x.min())  # both NaN when any entry is
    return max(hi, -lo) if hi == hi else hi


def input_grad(W, dZ):
    """dA_prev = W.T @ dZ, shape (n_{l-1}, m)."""
    return W.T @ dZ


def sgd_update(P, G, lr):
    """P -= lr * G, in place."""
    P -= lr * G


def momentum_update(P, G, V, lr, beta):
    """V = beta V + (1 - beta) G; P -= lr V, in place."""
    V *= beta
    V += (1 - beta) * G
    P -= lr * V


@functools.lru_cache(maxsize=16)  # one step updates every parameter with the same scalars
def adam_coefficients(lr, beta1, beta2, eps, t, dtype):
    """``(step, eps_t)`` of Adam step ``t`` in the form every backend computes.

    The bias-corrected step ``lr * (M / bc1) / (sqrt(V / bc2) + eps)``, with
    ``bc = 1 - beta**t``, equals ``step * M / (sqrt(V) + eps_t)`` with
    ``step = lr sqrt(bc2) / bc1`` and ``eps_t = eps sqrt(bc2)`` (Kingma & Ba's
    efficient form, and scikit-learn's): one division and one square root per
    entry instead of three divisions and a root, which made the update
    division-bound.  The two scalars are formed in float64 from the caller's
    values and rounded once to ``dtype``.
    """
    root_bc2 = math.sqrt(1.0 - float(beta2) ** t)
    dtype = np.dtype(dtype).type
    return (dtype(float(lr) * root_bc2 / (1.0 - float(beta1) ** t)),
            dtype(float(eps) * root_bc2))


def adam_update(P, G, M, V, lr, beta1, beta2, eps, t, g_scale=1, l2=0):
    """Bias-corrected Adam step t (t >= 1), in place (see :func:`adam_coefficients`).

    The gradient is ``g_scale * G + l2 * P``: with ``G`` the unscaled
    ``dZ @ A_prev.T`` this is :func:`weight_grad`'s epilogue, rounded the same
    way, folded into the update (one pass over memory less).
    """
    if g_scale != 1 or l2:
        c = P.dtype.type
        G = G * c(g_scale) + c(l2) * P
    M *= beta1
    M += (1 - beta1) * G
    V *= beta2
    V += (1 - beta2) * (G * G)
    step, eps_t = adam_coefficients(lr, beta1, beta2, eps, t, P.dtype)
    P -= step * M / (np.sqrt(V) + eps_t)


# ------------------------------------------------------------ minibatch kernels
# The kernels above, written into preallocated arrays (_interface.MINIBATCH_KERNELS):
# the same operations in the same order, so the results are bitwise theirs.

def gather_rows_into(XR, idx, out):
    """``out = XR[idx]``: rows of the row-major ``(N, n_x)`` examples into ``(b, n_x)``."""
    np.take(XR, idx, axis=0, out=out)


def gather_targets_into(YR, idx, out):
    """``out = YR[idx].T``: rows of the row-major ``(N, n_y)`` targets, as columns of ``out``."""
    out[...] = np.take(YR, idx, axis=0).T


def forward_hidden_into(W, A_prev, b, activation, out):
    """out = g(W @ A_prev + b), ``(n_l, m)`` (as :func:`forward_hidden`)."""
    np.matmul(W, A_prev, out=out)
    out += b
    ACTIVATIONS[activation](out, out)


def forward_output_into(W, A_prev, b, output, Z, A):
    """The logits into Z and the output into A, both ``(n_L, m)`` (as :func:`forward_output`)."""
    np.matmul(W, A_prev, out=Z)
    Z += b
    ACTIVATIONS[output](Z, A)


def _scaled_row_sum_into(dZ, scale, db):
    np.sum(dZ, axis=1, keepdims=True, out=db)
    if scale != 1:
        db *= scale


def output_delta_into(Z, A, Y, output, dz_scale, db_scale, dZ, db):
    """dZ = dz_scale * (A - Y) and db written in place; returns the summed loss
    (as :func:`output_delta`)."""
    np.subtract(A, Y, out=dZ)
    if dz_scale != 1:
        dZ *= dz_scale
    _scaled_row_sum_into(dZ, db_scale, db)
    return output_loss(Z, A, Y, output)


def backward_hidden_into(dA, A, activation, db_scale, db):
    """dZ = dA * g'(Z) into dA, db written in place (as :func:`backward_hidden`)."""
    dZ = DERIVATIVES[activation](A, dA)
    if dZ is not dA:
        dA[...] = dZ
    _scaled_row_sum_into(dA, db_scale, db)


def weight_grad_into(dZ, A_prev, W, scale, l2_scale, dW):
    """dW = scale * (dZ @ A_prev.T) + l2_scale * W, written in place (as :func:`weight_grad`)."""
    np.matmul(dZ, A_prev.T, out=dW)
    if scale != 1:
        dW *= scale
    if l2_scale:
        dW += l2_scale * W


def input_grad_into(W, dZ, out):
    """out = W.T @ dZ, ``(n_{l-1}, m)``."""
    np.matmul(W.T, dZ, out=out)
