"""Minibatch training steps compiled: gather, forward, backward and the
optimizer update of many steps in one call (the Numba backends' optional
``minibatch_steps`` kernel), with no Python between batches.

Each step runs the kernels of one step of the engine's minibatch workspace
(:meth:`fastnn.engine.MinibatchWorkspace.step` and the optimizers'
``step_flat``), in the same order, compiled serially here; the matrix products
are calls to the ``cblas_?gemm`` of the BLAS that NumPy itself loaded (passed
in as a ctypes function, :mod:`fastnn.backends._blas`) with the transposition
flags NumPy's ``matmul`` passes for the same operands.  So a step here is
bitwise a workspace step (``tests/test_minibatch_steps.py``).  The divergence
check after a step is the workspace's (the loss, then ``all_finite`` of the flat
gradients); where the dW epilogue (1/m, L2) runs, its pass counts the non-finite
dW entries on the way and only the db are read again (:func:`_grads_finite`).

The update rules (``RULE_*``) restate the optimizers' ``step_flat`` calls of
the elementwise update kernels:

- ``RULE_SGD``: ``sgd(P, G, lr)``;
- ``RULE_MOMENTUM``: ``momentum(P, G, S1, lr, beta, 1 - beta)`` (the course's);
- ``RULE_ADAM``: ``adam`` with the step's ``(step, eps_t)``, on the first
  ``n_fold`` entries ``adam_folded`` (scikit-learn's bare weight gradients);
- ``RULE_VELOCITY``: scikit-learn's velocity, ``S1 -= decay S1``,
  ``S1 -= lr G``, then ``P -= -mu S1`` and ``P -= lr G`` (Nesterov) or
  ``P -= -1 S1``.
"""

import numpy as np

from .._blas import CBLAS_NO_TRANS as _N, CBLAS_ROW_MAJOR as _ROW_MAJOR, CBLAS_TRANS as _T
from .._interface import (RULE_ADAM, RULE_MOMENTUM, RULE_SGD, SQUARES_DOT, SQUARES_PAIRWISE,
                          STEPS_DONE, STEPS_NOT_FINITE)
from .._numba_config import BLOCK, jit
from . import backward, forward, gather, output, reduce, update

# The kernel sources compiled serially (each the same function, and the same disk cache
# entry, as the numba backend's variant).
(_rows, _bias_act, _bias_softmax, _delta, _loss_softmax, _backward, _scale_add, _scale, _sgd,
 _momentum, _adam, _adam_folded, _finite) = map(jit, (
    gather.permuted_rows, forward.bias_act, forward.bias_softmax, output.output_delta,
    output.loss_softmax, backward.backward_fused, update.scale_add, update.scale, update.sgd,
    update.momentum, update.adam, update.adam_folded, update.all_finite))


@jit
def _gemm(gemm, ta, tb, M, N, K, A, lda, B, ldb, C, ldc):
    """C = op(A) @ op(B), row-major, through the BLAS function ``gemm``."""
    gemm(_ROW_MAJOR, ta, tb, M, N, K, C.dtype.type(1), A.ctypes, lda, B.ctypes, ldb,
         C.dtype.type(0), C.ctypes, ldc)


@jit
def _partials(n, m):
    return np.empty((n, (m + BLOCK - 1) // BLOCK), dtype=np.float64)


@jit
def _squares_block(x, i0, n):
    """NumPy's pairwise_sum of float64 squares on ``x[i0:i0+n]``, ``n <= 128`` (its leaf)."""
    if n < 8:
        res = 0.0
        for i in range(n):
            v = np.float64(x[i0 + i])
            res += v * v
        return res
    r = np.empty(8)
    for j in range(8):
        v = np.float64(x[i0 + j])
        r[j] = v * v
    i = 8
    while i < n - n % 8:
        for j in range(8):
            v = np.float64(x[i0 + i + j])
            r[j] += v * v
        i += 8
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    while i < n:
        v = np.float64(x[i0 + i])
        res += v * v
        i += 1
    return res


@jit
def pairwise_squares(x):
    """``np.sum(np.square(x, dtype=np.float64))`` for a 1-D ``x`` in NumPy's order: blocks
    of at most 128 split in halves (multiples of 8) and added up the tree, as
    NumPy's recursive pairwise_sum (the L2 term of :func:`fastnn.engine.cost`).
    Written with an explicit stack: a recursive function loaded from Numba's disk
    cache calls a null pointer."""
    n = x.size
    if n <= 128:
        return _squares_block(x, 0, n)
    lo, size, half = np.empty(64, np.int64), np.empty(64, np.int64), np.empty(64, np.int64)
    state, left = np.zeros(64, np.int64), np.empty(64)   # state 1: left half pending, 2: right
    top, lo[0], size[0] = 0, 0, n
    while True:
        if size[top] > 128:                # split: the left half first
            n2 = size[top] // 2
            half[top] = n2 - n2 % 8
            state[top] = 1
            lo[top + 1], size[top + 1], state[top + 1] = lo[top], half[top], 0
            top += 1
            continue
        v = _squares_block(x, lo[top], size[top])
        top -= 1
        while top >= 0 and state[top] == 2:   # both halves done: add them, go up
            v = left[top] + v
            top -= 1
        if top < 0:
            return v
        left[top], state[top] = v, 2          # the left half done: now the right one
        lo[top + 1], size[top + 1], state[top + 1] = lo[top] + half[top], size[top] - half[top], 0
        top += 1


@jit
def _forward(gemm, Ws, bs, Xb, As, Z, hidden, slope):
    """As[l] = g(W[l+1] @ A[l] + b) (the first from the gathered rows Xb), Z the logits and
    As[L-1] the softmax output."""
    L = len(Ws)
    b, n0 = Xb.shape
    for l in range(L):
        W = Ws[l]
        out = As[l] if l < L - 1 else Z
        if l == 0:
            _gemm(gemm, _N, _T, W.shape[0], b, n0, W, n0, Xb, n0, out, b)
        else:
            _gemm(gemm, _N, _N, W.shape[0], b, W.shape[1], W, W.shape[1], As[l - 1], b, out, b)
        if l < L - 1:
            _bias_act(out, bs[l], hidden, slope)
    _bias_softmax(Z, bs[L - 1], As[L - 1])


@jit
def _backward_pass(gemm, Ws, Xb, As, dZs, dWs, dbs, hidden, slope, w_scale, scale, l2_scale):
    """dW, db of every layer from dZs[L-1] (the output delta), as the workspace's step.
    Returns how many blocks of the dW hold inf or NaN when the dW epilogue (1/m, L2) ran,
    as a pass over every dW that counts them on the way, else -1 (not counted)."""
    L = len(Ws)
    b, n0 = Xb.shape
    one = Xb.dtype.type(1)
    bad = 0 if (l2_scale or scale != 1) else -1
    for l in range(L - 1, -1, -1):
        W, dZ, dW = Ws[l], dZs[l], dWs[l]
        n, n_prev = W.shape
        if l == 0:
            _gemm(gemm, _N, _N, n, n0, b, dZ, b, Xb, n0, dW, n0)
        else:
            _gemm(gemm, _N, _T, n, n_prev, b, dZ, b, As[l - 1], b, dW, n_prev)
        flat = dW.reshape(dW.size)
        if l2_scale:
            bad += _scale_add(flat, scale, W.reshape(W.size), l2_scale)
        elif scale != 1:
            bad += _scale(flat, scale)
        if l > 0:
            dA = dZs[l - 1]
            _gemm(gemm, _T, _N, n_prev, b, n, W, n_prev, dZ, b, dA, b)
            partial = _partials(n_prev, b)
            _backward(dA, As[l - 1], hidden, one, slope, partial)
            reduce.finish_rows(partial, w_scale, dbs[l - 1])
    return bad


@jit
def _grads_finite(G, dbs, bad_dW):
    """Whether every entry of the flat gradients G (every dW and db) is finite, given the
    dW epilogue's count ``bad_dW`` (-1: no epilogue ran, G is checked whole)."""
    if bad_dW < 0:
        return _finite(G)
    if bad_dW > 0:
        return False
    for l in range(len(dbs)):
        db = dbs[l]
        if not _finite(db.reshape(db.size)):
            return False
    return True


@jit
def _update(rule, P, G, S1, S2, n_fold, consts, lr, step, eps_t):
    """One optimizer step on the flat parameters (the RULE_* of the module docstring)."""
    if rule == RULE_SGD:
        _sgd(P, G, lr)
    elif rule == RULE_MOMENTUM:
        _momentum(P, G, S1, lr, consts[0], consts[1])
    elif rule == RULE_ADAM:
        if n_fold:
            _adam_folded(P[:n_fold], G[:n_fold], S1[:n_fold], S2[:n_fold], consts[0], consts[1],
                         consts[2], consts[3], step, eps_t, consts[4], consts[5])
            _adam(P[n_fold:], G[n_fold:], S1[n_fold:], S2[n_fold:], consts[0], consts[1],
                  consts[2], consts[3], step, eps_t)
        else:
            _adam(P, G, S1, S2, consts[0], consts[1], consts[2], consts[3], step, eps_t)
    else:
        _sgd(S1, S1, consts[0])
        _sgd(S1, G, lr)
        if consts[2]:
            _sgd(P, S1, consts[1])
            _sgd(P, G, lr)
        else:
            _sgd(P, S1, consts[3])


@jit
def _squares(Ws, mode, dot, out):
    """out[l] = sum of W[l]'s squares, the way ``mode`` (SQUARES_*) says."""
    for l in range(len(Ws)):
        W = Ws[l]
        if mode == SQUARES_PAIRWISE:
            out[l] = pairwise_squares(W.reshape(W.size))
        elif mode == SQUARES_DOT:
            out[l] = dot(W.size, W.ctypes, 1, W.ctypes, 1)


@jit
def minibatch_steps(gemm, dot, XR, YR, order, starts, Ws, bs, dWs, dbs, Xb, Yb, As, Z, dZs,
                    hidden, slope, dz_scale, w_scale, scale, l2_scale,
                    rule, P, G, S1, S2, n_fold, consts, per_step, check, squares_mode,
                    losses, squares):
    """Steps on the batches ``order[starts[s]:starts[s] + b]``: (steps run, STEPS_DONE or
    STEPS_NOT_FINITE); see the wrapper in ``_numba_backend``."""
    b = Xb.shape[0]
    L = len(Ws)
    for s in range(starts.size):
        idx = order[starts[s]:starts[s] + b]
        _rows(XR, idx, Xb)
        gather.permuted_columns(YR, idx, Yb)
        _forward(gemm, Ws, bs, Xb, As, Z, hidden, slope)
        dZ = dZs[L - 1]
        partial = _partials(dZ.shape[0], b)
        _delta(As[L - 1], Yb, dz_scale, dZ, partial)
        reduce.finish_rows(partial, w_scale, dbs[L - 1])
        lpart = _partials(1, b)
        _loss_softmax(Z, Yb, lpart)
        losses[s] = reduce.total(lpart)
        bad_dW = _backward_pass(gemm, Ws, Xb, As, dZs, dWs, dbs, hidden, slope, w_scale, scale,
                                l2_scale)
        if check and not (np.isfinite(losses[s]) and _grads_finite(G, dbs, bad_dW)):
            return s, STEPS_NOT_FINITE
        _squares(Ws, squares_mode, dot, squares[s])
        _update(rule, P, G, S1, S2, n_fold, consts, per_step[s, 0], per_step[s, 1],
                per_step[s, 2])
    return starts.size, STEPS_DONE
