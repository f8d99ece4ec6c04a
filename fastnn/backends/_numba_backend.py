"""The Python side of the Numba backends: compiles the kernel sources of
:mod:`._numba_kernels` (serially or with ``parallel=True``, :func:`compile_kernels`)
and wraps them in the kernel interface of :mod:`._interface`.

Every wrapper listed in :data:`VARIANT_KERNELS` is a module-level function
whose first argument ``k`` is the compiled variant (:func:`compile_kernels`'
namespace); :func:`interface` binds it (``functools.partial``) and adds the
kernels that need no variant, and ``numba_serial`` and ``numba_parallel``
export the result under the interface's names.

Matrix products go to NumPy's BLAS (``@``): Numba's ``np.dot`` calls SciPy's
BLAS, which measured about 2x slower for float32 GEMM on the reference
machine.  Exp/tanh-based forward activations go to NumPy's vectorised ufuncs
for the same reason (no SVML for Numba's scalar calls).  Everything else -- the
fused bias+activation, the fused backward with its reduction, the output delta,
the dW epilogue and the optimizer updates -- runs in compiled kernels.
"""

import functools
import types

import numpy as np

from ..activations import ACTIVATIONS, LEAKY_SLOPE
from . import _blas, _interface
from . import numpy_backend as _np_backend
# Re-exported: kernels that need no compiled variant (numba_serial, numba_parallel bind them).
from .numpy_backend import (gather_columns, input_grad, max_abs, to_device, to_host,  # noqa: F401
                            zeros_like)
from ._numba_config import BLOCK, compile_variant
from .. import _dropout
from ._numba_kernels import backward, dropout, forward, gather, loop, output, reduce, update
from ._numba_kernels.activation import CHEAP_FORWARD, CODES

DTYPES = (np.float32, np.float64)

#: Above this many multiply-adds per step (m * sum of W sizes), ``sgd_loop``
#: runs kernel by kernel instead of as one compiled loop.  Measured: the
#: compiled loop wins by 2-3x on the course's [2, 4, 1] net (~5e3), and loses
#: by 1.3-1.5x on [12288, 20, 7, 5, 1] with m = 209 (5e7), where the GEMMs
#: dominate and njit's np.dot goes through SciPy's slower BLAS.
LOOP_MAX_MULTIPLY_ADDS = 1 << 20


def compile_kernels(parallel):
    """The compiled kernels of one variant, as a namespace ``k`` for the wrappers below."""
    def c(func):
        return compile_variant(func, parallel)

    return types.SimpleNamespace(
        bias_act=c(forward.bias_act), bias_add=c(forward.bias_add),
        bias_softmax=c(forward.bias_softmax), backward=c(backward.backward_fused),
        delta=c(output.output_delta), loss=c(output.loss_elementwise),
        loss_softmax=c(output.loss_softmax), finish=reduce.finish_rows, total=reduce.total,
        scale_add=c(update.scale_add), scale=c(update.scale), sgd=c(update.sgd),
        momentum=c(update.momentum), adam=c(update.adam), finite=c(update.all_finite),
        adam_folded=c(update.adam_folded), dropout=c(dropout.mask_scale),
        rows=c(gather.permuted_rows), columns=gather.permuted_columns)


def variant(func, k):
    """Wrapper ``func`` with the compiled variant ``k`` bound: ``func(k, *args)`` as ``f(*args)``."""
    return functools.update_wrapper(functools.partial(func, k), func)


def interface(k):
    """Every kernel of :mod:`._interface` (and ``compiled_loop``) for the compiled
    variant ``k``, as a dict name -> function: the wrappers of :data:`VARIANT_KERNELS`
    with ``k`` bound, the others as they are."""
    kernels = {name: globals()[name] for name in _interface.KERNELS + _interface.OPTIONAL_KERNELS}
    kernels.update({name: variant(kernels[name], k) for name in VARIANT_KERNELS})
    return kernels


def _partials(n, m):
    return np.empty((n, (m + BLOCK - 1) // BLOCK), dtype=np.float64)


def _affine_act(k, W, A_prev, b, name, Z0=None):
    Z = W @ A_prev
    if Z0 is not None:
        Z += Z0
    _act_into(k, Z, b, name)
    return Z


def _act_into(k, Z, b, name):
    """Z = g(Z + b) in place (the epilogue of _affine_act)."""
    code = CODES[name]
    if code in CHEAP_FORWARD:
        k.bias_act(Z, b, code, Z.dtype.type(LEAKY_SLOPE))
    else:
        k.bias_add(Z, b)
        ACTIVATIONS[name](Z, Z)


def forward_hidden(k, W, A_prev, b, activation):
    """A = g(W @ A_prev + b), (n_l, m), in one buffer."""
    return _affine_act(k, W, A_prev, b, activation)


def forward_hidden_offset(k, W, A_prev, b, Z0, activation):
    """A = g(W @ A_prev + Z0 + b), (n_l, m), in one buffer."""
    return _affine_act(k, W, A_prev, b, activation, Z0)


def forward_output(k, W, A_prev, b, output_name):
    """(Z, A) of the output layer, both (n_L, m)."""
    Z = W @ A_prev
    A = np.empty_like(Z)
    _output_into(k, Z, b, output_name, A)
    return Z, A


def _output_into(k, Z, b, output_name, A):
    if output_name == "softmax":
        k.bias_softmax(Z, b, A)
    else:
        k.bias_add(Z, b)
        ACTIVATIONS[output_name](Z, A)


def output_loss(k, Z, A, Y, output_name):
    """Summed loss over all examples, from the logits (float)."""
    if output_name == "softmax":
        partial = _partials(1, Z.shape[1])
        k.loss_softmax(Z, Y, partial)
    else:
        partial = _partials(*Z.shape)
        k.loss(Z, A, Y, CODES[output_name], partial)
    return float(k.total(partial))


def output_delta(k, Z, A, Y, output_name, dz_scale, db_scale):
    """Fused: dZ = dz_scale (A - Y), db = db_scale * row sums, summed loss."""
    dZ = np.empty_like(A)
    db = np.empty((A.shape[0], 1), dtype=A.dtype)
    return dZ, db, output_delta_into(k, Z, A, Y, output_name, dz_scale, db_scale, dZ, db)


def output_delta_chain(Z, A, Y, output_name, dz_scale, db_scale):
    """The course's dA[L] route (not a hot path: the NumPy kernel, same arrays)."""
    return _np_backend.output_delta_chain(Z, A, Y, output_name, dz_scale, db_scale)


def backward_hidden(k, dA, A, activation, db_scale):
    """dZ = dA * g'(Z) written into dA, and db = db_scale * sum(dZ, axis=1), in one pass."""
    db = np.empty((dA.shape[0], 1), dtype=dA.dtype)
    backward_hidden_into(k, dA, A, activation, db_scale, db)
    return dA, db


def _dropout_into(k, A, out, keep, key):
    c = A.dtype.type
    k.dropout(A, out, c(keep), c(0), _dropout.threshold(keep), *key)
    return out


def dropout_forward(k, A, keep, key):
    """A * mask / keep as a new (n_l, m) array, the mask hashed in the same pass."""
    return _dropout_into(k, A, np.empty_like(A), keep, key)


def dropout_backward(k, dA, keep, key):
    """dA * mask / keep in place (the forward's mask, recomputed); returns dA."""
    return _dropout_into(k, dA, dA, keep, key)


def weight_grad(k, dZ, A_prev, W, scale, l2_scale):
    """dW = scale * (dZ @ A_prev.T) + l2_scale * W."""
    dW = dZ @ A_prev.T
    _weight_epilogue(k, dW, W, scale, l2_scale)
    return dW


def _weight_epilogue(k, dW, W, scale, l2_scale):
    if l2_scale:
        k.scale_add(dW.reshape(-1), scale, W.reshape(-1), l2_scale)
    elif scale != 1:
        k.scale(dW.reshape(-1), scale)


def weight_step(W, dZ, A_prev, alpha, beta):
    """W = beta W + alpha dZ @ A_prev.T in place: one GEMM of NumPy's own BLAS with
    its beta (see _blas), else the NumPy backend's two steps."""
    gemm = _blas.GEMM.get(W.dtype)
    if gemm is None or not A_prev.flags.c_contiguous:
        _np_backend.weight_step(W, dZ, A_prev, alpha, beta)
    else:
        gemm(W, dZ, A_prev, alpha, beta)


def sgd_update(k, P, G, lr):
    """P -= lr G, in place."""
    k.sgd(P.reshape(-1), G.reshape(-1), lr)


def momentum_update(k, P, G, V, lr, beta):
    """V = beta V + (1 - beta) G; P -= lr V, in place."""
    k.momentum(P.reshape(-1), G.reshape(-1), V.reshape(-1), lr, beta, P.dtype.type(1) - beta)


def adam_update(k, P, G, M, V, lr, beta1, beta2, eps, t, g_scale=1, l2=0):
    """Bias-corrected Adam step t on the gradient g_scale*G + l2*P, in place
    (numpy_backend.adam_update)."""
    one = P.dtype.type(1)
    step, eps_t = _np_backend.adam_coefficients(lr, beta1, beta2, eps, t, P.dtype)
    flat = (P.reshape(-1), G.reshape(-1), M.reshape(-1), V.reshape(-1),
            beta1, one - beta1, beta2, one - beta2, step, eps_t)
    if g_scale != 1 or l2:
        k.adam_folded(*flat, P.dtype.type(g_scale), P.dtype.type(l2))
    else:
        k.adam(*flat)


#: The wrappers that take the compiled variant ``k`` first (bound by :func:`interface`);
#: every other kernel of the interface runs the same code in both Numba backends.
VARIANT_KERNELS = ("forward_hidden", "forward_hidden_offset", "forward_output", "output_delta",
                   "output_loss", "backward_hidden", "weight_grad", "dropout_forward",
                   "dropout_backward", "sgd_update", "momentum_update", "adam_update",
                   "all_finite", "gather_rows_into", "gather_targets_into",
                   "forward_hidden_into", "forward_output_into", "output_delta_into",
                   "backward_hidden_into", "weight_grad_into")


def compiled_loop(Ws, bs, X, Y, hidden, output_name, dz_scale, w_scale, l2, lr, iterations):
    """Full-batch SGD for ``iterations`` steps in one compiled call; Ws, bs updated in place.

    Returns ``(costs, steps)`` as :func:`fastnn.engine.sgd_loop`, or None (nothing
    done) above :data:`LOOP_MAX_MULTIPLY_ADDS`: large products run faster with
    NumPy's BLAS from Python than with np.dot inside njit (SciPy's BLAS), and the
    per-call overhead no longer matters.  The loop kernel is compiled once,
    serially, for both Numba backends.
    """
    from numba.typed import List

    dtype = X.dtype
    m = X.shape[1]
    if m * sum(W.size for W in Ws) >= LOOP_MAX_MULTIPLY_ADDS:
        return None
    costs = np.full(iterations, np.nan)
    steps = loop.sgd_loop(List(Ws), List(bs), X, Y, CODES[hidden], CODES[output_name],
                          dz_scale, w_scale, dtype.type(l2 / m), float(l2), dtype.type(lr),
                          iterations, costs, dtype.type(1), dtype.type(LEAKY_SLOPE))
    return costs, steps


# ------------------------------------------------------------ minibatch kernels
# _interface.MINIBATCH_KERNELS: the kernels above, into preallocated arrays.

def gather_rows_into(k, XR, idx, out):
    """out = XR[idx], (b, n_x), in one compiled pass."""
    k.rows(XR, idx, out)


def gather_targets_into(k, YR, idx, out):
    """out = YR[idx].T, (n_y, b)."""
    k.columns(YR, idx, out)


def forward_hidden_into(k, W, A_prev, b, activation, out):
    """out = g(W @ A_prev + b), the product by NumPy's BLAS."""
    np.matmul(W, A_prev, out=out)
    _act_into(k, out, b, activation)


def forward_output_into(k, W, A_prev, b, output_name, Z, A):
    """The logits into Z, the output into A."""
    np.matmul(W, A_prev, out=Z)
    _output_into(k, Z, b, output_name, A)


def output_delta_into(k, Z, A, Y, output_name, dz_scale, db_scale, dZ, db):
    """Fused: dZ = dz_scale (A - Y) and db in place; returns the summed loss."""
    partial = _partials(*A.shape)
    k.delta(A, Y, dz_scale, dZ, partial)
    k.finish(partial, db_scale, db)
    return output_loss(k, Z, A, Y, output_name)


def backward_hidden_into(k, dA, A, activation, db_scale, db):
    """dZ = dA * g'(Z) written into dA, and db in place, in one pass."""
    partial = _partials(*dA.shape)
    one = dA.dtype.type(1)
    k.backward(dA, A, CODES[activation], one, dA.dtype.type(LEAKY_SLOPE), partial)
    k.finish(partial, db_scale, db)


def weight_grad_into(k, dZ, A_prev, W, scale, l2_scale, dW):
    """dW = scale * (dZ @ A_prev.T) + l2_scale * W, in place."""
    np.matmul(dZ, A_prev.T, out=dW)
    _weight_epilogue(k, dW, W, scale, l2_scale)


def input_grad_into(W, dZ, out):
    """out = W.T @ dZ."""
    np.matmul(W.T, dZ, out=out)


def all_finite(k, x):
    """True when every entry of x is finite."""
    return bool(k.finite(x.reshape(-1)))



# ------------------------------------------------------------ compiled minibatch steps

def minibatch_steps(XR, YR, order, starts, layers, bufs, hidden, output_name, scales, update,
                    check, squares_mode, losses, squares):
    """Minibatch steps of one batch size in one compiled call (``_numba_kernels/steps.py``);
    ``(steps run, status)``, or None (declined, nothing done): see ``_interface``.

    Declined where the call could not be bitwise the workspace's steps: no
    ``cblas_?gemm`` found in NumPy's BLAS, an output other than softmax, a hidden
    activation that NumPy's ufuncs compute (tanh, sigmoid), a layer or batch of
    one (NumPy's ``matmul`` may take a matrix-vector route there).  The kernel is
    compiled once, serially, for both Numba backends.
    """
    from ._numba_kernels import steps

    Ws, bs, dWs, dbs, P, G = layers
    Xb, Yb, As, Z, dZs = bufs
    blas = _blas.CBLAS.get(P.dtype)
    if (blas is None or output_name != "softmax" or CODES.get(hidden) not in CHEAP_FORWARD
            or min(Xb.shape) < 2 or min(W.shape[0] for W in Ws) < 2):
        return None
    rule, S1, S2, n_fold, consts, per_step = update
    t = P.dtype.type
    dz_scale, w_scale, scale, l2_scale = (t(v) for v in scales)
    return steps.minibatch_steps(
        blas[0], blas[1], XR, YR, order, starts, tuple(Ws), tuple(bs), tuple(dWs), tuple(dbs),
        Xb, Yb, tuple(As), Z, tuple(dZs), CODES[hidden], t(LEAKY_SLOPE),
        dz_scale, w_scale, scale, l2_scale, rule, P, G, S1, S2, n_fold, consts, per_step,
        bool(check), squares_mode, losses, squares)
