"""The whole training loop compiled: full-batch gradient descent for many
iterations in one call, for networks so small that per-call overhead would
dominate a step (the course's ``[2, 4, 1]`` and ``[12288, 20, 7, 5, 1]`` nets).

Same operations as one step of the kernel-by-kernel path: forward, cost from
the logits, backward with the chosen 1/m placement, ``P -= lr * G``.
"""

import math

import numpy as np

from .._numba_config import jit
from .activation import LEAKY_RELU, RELU, SIGMOID, SOFTMAX, TANH, dact_slice, sum_slice
from .matmul import mm, mm_nt, mm_tn
from .output import softmax_ce_column
from .vmath import exp_nonpos, log1p_unit, sigmoid, tanh


@jit
def _activate(z, code, one, slope):
    """z = g(z) in place on a 1-D row, any activation but softmax."""
    if code == RELU:
        for j in range(z.size):
            z[j] = z[j] * (z[j] > 0)
    elif code == LEAKY_RELU:
        for j in range(z.size):
            v = z[j]
            z[j] = v * (v > 0) + (v * slope) * (v <= 0)
    elif code == TANH:
        for j in range(z.size):
            z[j] = tanh(z[j])
    elif code == SIGMOID:
        for j in range(z.size):
            z[j] = sigmoid(z[j])


@jit
def _softmax_columns(Z, A):
    """A = softmax(Z) column by column (max subtracted)."""
    n, m = Z.shape
    for j in range(m):
        zmax = Z[0, j]
        for i in range(1, n):
            zmax = max(zmax, Z[i, j])
        s = Z[0, j] - Z[0, j]
        for i in range(n):
            e = exp_nonpos(Z[i, j] - zmax)
            A[i, j] = e
            s += A[i, j]
        for i in range(n):
            A[i, j] /= s


@jit
def _loss_sum(Z, A, Y, code, buf, one):
    """Summed loss from the logits, in float64; buf is float64 scratch of length m.

    The per-example terms go to ``buf`` first and are then summed with
    :func:`sum_slice`: a loop that adds each term into one scalar as it is
    computed cannot be vectorised (float addition is not reassociated), which
    made the loss 40% of the course's [2, 4, 1] step.
    """
    n, m = Z.shape
    s = 0.0
    if code == SOFTMAX:
        for j in range(m):
            s += softmax_ce_column(Z, Y, j, one)
        return s
    for i in range(n):
        z, a, y = Z[i], A[i], Y[i]
        if code == SIGMOID:
            for j in range(m):
                zj = float(z[j])
                buf[j] = max(zj, 0.0) - float(y[j]) * zj + log1p_unit(exp_nonpos(-abs(zj)))
        else:
            for j in range(m):
                d = float(a[j]) - float(y[j])
                buf[j] = 0.5 * d * d
        s += sum_slice(buf)
    return s


@jit
def _finite(x):
    for v in x.ravel():
        if not math.isfinite(v):
            return False
    return True


@jit
def sgd_loop(Ws, bs, X, Y, hcode, ocode, dz_scale, w_scale, l2_scale, l2, lr, iterations, costs,
             one, slope):
    """Run ``iterations`` full-batch SGD steps on the lists Ws, bs in place.

    costs[it] receives the cost J of iteration it (before its update), in float64.
    Returns the number of completed steps: fewer than ``iterations`` when a
    loss or gradient was not finite (that step's update is not applied).
    """
    L = len(Ws)
    m = X.shape[1]
    dtype = X.dtype
    As = [np.empty((Ws[l].shape[0], m), dtype) for l in range(L)]
    ZL = np.empty((Ws[L - 1].shape[0], m), dtype)
    dZs = [np.empty((Ws[l].shape[0], m), dtype) for l in range(L)]
    dWs = [np.empty_like(Ws[l]) for l in range(L)]
    dbs = [np.empty_like(bs[l]) for l in range(L)]
    loss_buf = np.empty(m, np.float64)
    for it in range(iterations):
        for l in range(L):
            A_in = X if l == 0 else As[l - 1]
            Z = ZL if l == L - 1 else As[l]
            mm(Ws[l], A_in, Z)
            for i in range(Z.shape[0]):
                z = Z[i]
                bi = bs[l][i, 0]
                for j in range(m):
                    z[j] += bi
            if l < L - 1:
                for i in range(Z.shape[0]):
                    _activate(Z[i], hcode, one, slope)
            elif ocode == SOFTMAX:
                _softmax_columns(ZL, As[l])
            else:
                As[l][:] = ZL
                for i in range(Z.shape[0]):
                    _activate(As[l][i], ocode, one, slope)
        cost = _loss_sum(ZL, As[L - 1], Y, ocode, loss_buf, one) / m
        if l2:
            sq = 0.0
            for l in range(L):
                for v in Ws[l].ravel():
                    sq += float(v) * float(v)
            cost += l2 / (2 * m) * sq
        costs[it] = cost
        if not math.isfinite(cost):
            return it
        dZ = dZs[L - 1]
        AL = As[L - 1]
        for i in range(dZ.shape[0]):
            d, a, y = dZ[i], AL[i], Y[i]
            for j in range(m):
                d[j] = (a[j] - y[j]) * dz_scale
        for l in range(L - 1, -1, -1):
            dZ = dZs[l]
            A_in = X if l == 0 else As[l - 1]
            mm_nt(dZ, A_in, dWs[l])
            W = Ws[l]
            dW = dWs[l]
            for i in range(dW.shape[0]):
                for p in range(dW.shape[1]):
                    dW[i, p] = dW[i, p] * w_scale + l2_scale * W[i, p]
                dbs[l][i, 0] = sum_slice(dZ[i])
                dbs[l][i, 0] *= w_scale
            if l:
                dA = dZs[l - 1]
                mm_tn(W, dZ, dA)
                for i in range(dA.shape[0]):
                    dact_slice(dA[i], As[l - 1][i], hcode, one, slope)
        for l in range(L):
            if not (_finite(dWs[l]) and _finite(dbs[l])):
                return it
        for l in range(L):
            W, dW, b, db = Ws[l], dWs[l], bs[l], dbs[l]
            for i in range(W.shape[0]):
                for p in range(W.shape[1]):
                    W[i, p] -= lr * dW[i, p]
                b[i, 0] -= lr * db[i, 0]
    return iterations
