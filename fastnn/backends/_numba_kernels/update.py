"""In-place updates on flat (1-D) views: the dW epilogue and the optimizers.

The operations and their order match the NumPy backend's, so results agree
bitwise.
"""

import math

from numba import prange

from .._numba_config import BLOCK


def scale_add(G, scale, W, l2_scale):
    """G = G * scale + l2_scale * W (the dW epilogue: 1/m and L2)."""
    n = G.size
    for k in prange((n + BLOCK - 1) // BLOCK):
        for j in range(k * BLOCK, min(k * BLOCK + BLOCK, n)):
            G[j] = G[j] * scale + l2_scale * W[j]


def scale(G, s):
    """G *= s."""
    n = G.size
    for k in prange((n + BLOCK - 1) // BLOCK):
        for j in range(k * BLOCK, min(k * BLOCK + BLOCK, n)):
            G[j] *= s


def sgd(P, G, lr):
    """P -= lr * G."""
    n = P.size
    for k in prange((n + BLOCK - 1) // BLOCK):
        for j in range(k * BLOCK, min(k * BLOCK + BLOCK, n)):
            P[j] -= lr * G[j]


def momentum(P, G, V, lr, beta, one_minus_beta):
    """V = beta V + (1 - beta) G; P -= lr V."""
    n = P.size
    for k in prange((n + BLOCK - 1) // BLOCK):
        for j in range(k * BLOCK, min(k * BLOCK + BLOCK, n)):
            V[j] = V[j] * beta + one_minus_beta * G[j]
            P[j] -= lr * V[j]


def adam(P, G, M, V, lr, beta1, c1, beta2, c2, bc1, bc2, eps):
    """Adam: c = 1 - beta, bc = 1 - beta**t (bias corrections), all in the array dtype."""
    n = P.size
    for k in prange((n + BLOCK - 1) // BLOCK):
        for j in range(k * BLOCK, min(k * BLOCK + BLOCK, n)):
            g = G[j]
            M[j] = M[j] * beta1 + c1 * g
            V[j] = V[j] * beta2 + c2 * (g * g)
            P[j] -= lr * (M[j] / bc1) / (math.sqrt(V[j] / bc2) + eps)


def all_finite(x):
    """True when every entry is finite."""
    n = x.size
    bad = 0
    for k in prange((n + BLOCK - 1) // BLOCK):
        for j in range(k * BLOCK, min(k * BLOCK + BLOCK, n)):
            if not math.isfinite(x[j]):
                bad += 1
    return bad == 0
