"""Shared, seeded data builders and the lists of backends, dtypes and configs.

The lists are append-only: asv keys its history by parameter values, so
removing or renaming an entry breaks the graphs.
"""

import numpy as np

#: Backends benchmarked (those that do not import are skipped by ``setup``).
BACKENDS = ["numpy", "numba", "numba-parallel", "cuda"]
DTYPES = ["float32", "float64"]
SCALINGS = ["deferred", "absorbed"]

#: name -> (layer_dims, hidden, output, m)
CONFIGS = {
    "planar": ([2, 4, 1], "tanh", "sigmoid", 400),
    "cat": ([12288, 20, 7, 5, 1], "relu", "sigmoid", 209),
    "mnist": ([784, 256, 128, 10], "relu", "softmax", 256),
    "wide": ([2048, 2048, 2048, 10], "relu", "softmax", 512),
}


def make_data(config, dtype, seed=0):
    """(params, X, Y) for a config: Xavier-scaled weights, standard-normal X,
    labels from a fixed random teacher so the task is learnable.

    Y is ``(n_L, m)``: 0/1 for sigmoid, one-hot for softmax.
    """
    dims, hidden, output, m = CONFIGS[config]
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    params = {}
    for l in range(1, len(dims)):
        params[f"W{l}"] = (rng.standard_normal((dims[l], dims[l - 1]))
                           * np.sqrt(2.0 / (dims[l] + dims[l - 1]))).astype(dtype)
        params[f"b{l}"] = np.zeros((dims[l], 1), dtype=dtype)
    X = rng.standard_normal((dims[0], m)).astype(dtype)
    teacher = rng.standard_normal((dims[-1], dims[0]))
    scores = teacher @ X.astype(np.float64)
    Y = np.zeros((dims[-1], m), dtype=dtype)
    if output == "softmax":
        Y[scores.argmax(axis=0), np.arange(m)] = 1
    else:
        Y[...] = scores > 0
    return params, X, Y


def step_flops(config):
    """Multiply-adds x 2 of one training step: forward, dW for every layer,
    dA for every layer but the first (nothing uses dA[0])."""
    dims, _, _, m = CONFIGS[config]
    layers = [dims[l] * dims[l - 1] for l in range(1, len(dims))]
    return 2 * m * (2 * sum(layers) + sum(layers[1:]))


# --------------------------------------------------------------- the baseline

def _act(Z, name):
    if name == "relu":
        return np.maximum(0, Z)
    if name == "tanh":
        return np.tanh(Z)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-Z))
    E = np.exp(Z - Z.max(axis=0, keepdims=True))
    return E / E.sum(axis=0, keepdims=True)


def _dact(dA, Z, name):
    if name == "relu":
        dZ = np.array(dA, copy=True)
        dZ[Z <= 0] = 0
        return dZ
    if name == "tanh":
        return dA * (1 - np.tanh(Z) ** 2)
    s = 1 / (1 + np.exp(-Z))
    return dA * s * (1 - s)


def course_step(params, X, Y, hidden, output, lr=0.01):
    """One training step written the way the course writes it (plain NumPy):
    caches of (A_prev, W, b, Z), dA[L] from the loss for sigmoid, dZ = A - Y
    for softmax, 1/m in every dW and db, dA computed for every layer (dA[0]
    included), a new array for every parameter.  Returns (params, cost)."""
    L = len(params) // 2
    m = X.shape[1]
    caches = []
    A = X
    for l in range(1, L + 1):
        W, b = params[f"W{l}"], params[f"b{l}"]
        Z = W @ A + b
        caches.append((A, W, b, Z))
        A = _act(Z, hidden if l < L else output)
    AL = A
    if output == "softmax":
        cost = -np.sum(Y * np.log(AL)) / m
        dZ = AL - Y
    else:
        cost = -np.sum(Y * np.log(AL) + (1 - Y) * np.log(1 - AL)) / m
        dAL = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
        dZ = _dact(dAL, caches[-1][3], "sigmoid")
    grads = {}
    for l in range(L, 0, -1):
        A_prev, W, b, Z = caches[l - 1]
        if l < L:
            dZ = _dact(dA, Z, hidden)
        grads[f"dW{l}"] = 1. / m * np.dot(dZ, A_prev.T)
        grads[f"db{l}"] = 1. / m * np.sum(dZ, axis=1, keepdims=True)
        dA = np.dot(W.T, dZ)
    new = {}
    for l in range(1, L + 1):
        new[f"W{l}"] = params[f"W{l}"] - lr * grads[f"dW{l}"]
        new[f"b{l}"] = params[f"b{l}"] - lr * grads[f"db{l}"]
    return new, cost
