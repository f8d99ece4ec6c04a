"""In-place updates on flat (1-D) views: the dW epilogue and the optimizers.

The operations and their order match the NumPy backend's, so results agree
bitwise.  Each kernel splits the array into BLOCK-sized 1-D slices and hands
them to a helper that indexes from 0: a loop over ``range(k * BLOCK, ...)``
keeps Numba's negative-index wraparound check, which stops LLVM from
vectorising (measured 4x slower than NumPy for an SGD step on 256 x 784
float32; the slice form is as fast as NumPy serially).
"""

import math

from numba import prange

from .._numba_config import BLOCK, jit


@jit(inline="always")
def _nonfinite(v):
    """True when v is inf or NaN (v - v is NaN exactly then)."""
    return (v - v) != 0


@jit
def _scale_add_slice(g, scale, w, l2_scale):
    """g = g * scale + l2_scale * w on 1-D slices; nonzero when a result is inf or NaN."""
    bad = 0
    for j in range(g.size):
        v = g[j] * scale + l2_scale * w[j]
        g[j] = v
        bad |= _nonfinite(v)
    return bad


@jit
def _scale_slice(g, s):
    """g *= s on a 1-D slice; nonzero when a result is inf or NaN."""
    bad = 0
    for j in range(g.size):
        v = g[j] * s
        g[j] = v
        bad |= _nonfinite(v)
    return bad


@jit
def _sgd_slice(p, g, lr):
    """p -= lr * g on 1-D slices."""
    for j in range(p.size):
        p[j] -= lr * g[j]


@jit
def _momentum_slice(p, g, v, lr, beta, one_minus_beta):
    """v = beta v + (1 - beta) g; p -= lr v on 1-D slices."""
    for j in range(p.size):
        v[j] = v[j] * beta + one_minus_beta * g[j]
        p[j] -= lr * v[j]


@jit(inline="always")
def _adam_at(p, mm, v, j, gj, beta1, c1, beta2, c2, step, eps_t):
    """One Adam step of entry j with gradient gj."""
    mm[j] = mm[j] * beta1 + c1 * gj
    v[j] = v[j] * beta2 + c2 * (gj * gj)
    p[j] -= step * mm[j] / (math.sqrt(v[j]) + eps_t)


@jit
def _adam_slice(p, g, mm, v, beta1, c1, beta2, c2, step, eps_t):
    """One Adam step on 1-D slices (see :func:`adam`)."""
    for j in range(p.size):
        _adam_at(p, mm, v, j, g[j], beta1, c1, beta2, c2, step, eps_t)


@jit
def _adam_folded_slice(p, g, mm, v, beta1, c1, beta2, c2, step, eps_t, g_scale, l2):
    """_adam_slice on the gradient g * g_scale + l2 * p (the dW epilogue, as scale_add)."""
    for j in range(p.size):
        _adam_at(p, mm, v, j, g[j] * g_scale + l2 * p[j], beta1, c1, beta2, c2, step, eps_t)


@jit
def _count_nonfinite_slice(x):
    """Nonzero when a 1-D slice holds inf or NaN."""
    bad = 0
    for j in range(x.size):
        bad |= _nonfinite(x[j])
    return bad


def scale_add(G, scale, W, l2_scale):
    """G = G * scale + l2_scale * W (the dW epilogue: 1/m and L2); returns how many blocks
    of the result hold inf or NaN (0: G is finite, as ``all_finite`` would find)."""
    n = G.size
    bad = 0
    for k in prange((n + BLOCK - 1) // BLOCK):
        j0, j1 = k * BLOCK, min(k * BLOCK + BLOCK, n)
        bad += _scale_add_slice(G[j0:j1], scale, W[j0:j1], l2_scale)
    return bad


def scale(G, s):
    """G *= s; returns how many blocks of the result hold inf or NaN (0: G is finite)."""
    n = G.size
    bad = 0
    for k in prange((n + BLOCK - 1) // BLOCK):
        j0, j1 = k * BLOCK, min(k * BLOCK + BLOCK, n)
        bad += _scale_slice(G[j0:j1], s)
    return bad


def sgd(P, G, lr):
    """P -= lr * G."""
    n = P.size
    for k in prange((n + BLOCK - 1) // BLOCK):
        j0, j1 = k * BLOCK, min(k * BLOCK + BLOCK, n)
        _sgd_slice(P[j0:j1], G[j0:j1], lr)


def momentum(P, G, V, lr, beta, one_minus_beta):
    """V = beta V + (1 - beta) G; P -= lr V."""
    n = P.size
    for k in prange((n + BLOCK - 1) // BLOCK):
        j0, j1 = k * BLOCK, min(k * BLOCK + BLOCK, n)
        _momentum_slice(P[j0:j1], G[j0:j1], V[j0:j1], lr, beta, one_minus_beta)


def adam(P, G, M, V, beta1, c1, beta2, c2, step, eps_t):
    """Adam: c = 1 - beta; step, eps_t from numpy_backend.adam_coefficients; all in the array dtype."""
    n = P.size
    for k in prange((n + BLOCK - 1) // BLOCK):
        j0, j1 = k * BLOCK, min(k * BLOCK + BLOCK, n)
        _adam_slice(P[j0:j1], G[j0:j1], M[j0:j1], V[j0:j1], beta1, c1, beta2, c2, step, eps_t)


def adam_folded(P, G, M, V, beta1, c1, beta2, c2, step, eps_t, g_scale, l2):
    """adam on the gradient G * g_scale + l2 * P, computed in place of a scale_add pass."""
    n = P.size
    for k in prange((n + BLOCK - 1) // BLOCK):
        j0, j1 = k * BLOCK, min(k * BLOCK + BLOCK, n)
        _adam_folded_slice(P[j0:j1], G[j0:j1], M[j0:j1], V[j0:j1], beta1, c1, beta2, c2, step,
                           eps_t, g_scale, l2)


def all_finite(x):
    """True when every entry is finite."""
    n = x.size
    bad = 0
    for k in prange((n + BLOCK - 1) // BLOCK):
        bad += _count_nonfinite_slice(x[k * BLOCK:min(k * BLOCK + BLOCK, n)])
    return bad == 0
