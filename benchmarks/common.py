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


# ------------------------------------------------- helpers for the asv suite (bench_*.py)

import functools  # noqa: E402
import os  # noqa: E402

#: The stability tracks' m: 10^2, 10^4, 10^6, and 2^14 as a control (1/m is a
#: power of two, so deferred and absorbed scaling round identically).
STABILITY_MS = [100, 10_000, 16_384, 1_000_000]
STABILITY_DEPTHS = [2, 5]
#: 1 - A of a sigmoid output for the output-route tracks: float32 rounds A to
#: exactly 1 from about 3e-8 down, float64 from about 6e-17.
SATURATION_LEVELS = [1e-3, 1e-6, 1e-8, 1e-12, 1e-17]


def require_backend(name, dtype=None):
    """The backend module ``name``, or NotImplementedError (asv's "skip") when
    it does not run here: what ``not fastnn.available_backends()[name].available``
    says, checked for this one backend only (so a CPU benchmark never
    initialises a CUDA driver), also when this version of fastnn does not
    register the name at all, and when the backend does not support ``dtype``
    (if given)."""
    from fastnn.backends import get_backend
    from fastnn.errors import BackendUnavailableError, FastnnValueError
    try:
        bk = get_backend(name)
    except (BackendUnavailableError, FastnnValueError) as exc:
        raise NotImplementedError(f"backend {name!r} is not available here: {exc}") from None
    if dtype is not None and np.dtype(dtype).type not in bk.DTYPES:
        raise NotImplementedError(f"{name} does not support {dtype}")
    return bk


def sync(bk):
    """Wait for the backend's queued work: CUDA launches are asynchronous, so a
    timing must end with a synchronize.  No-op on the CPU backends."""
    if getattr(bk, "NAME", None) == "cuda":
        from numba import cuda
        cuda.synchronize()


@functools.lru_cache(maxsize=None)
def cached_data(config, dtype, seed=0):
    """``make_data(config, dtype, seed)`` built once per process (asv re-runs
    ``setup`` between samples).  The arrays are shared: copy what you modify.
    (They are not flagged read-only: Numba compiles a separate specialisation
    for read-only arrays, which is not what users run.)"""
    return make_data(config, dtype, seed)


#: Minibatch fits (``bench_training.TimeFitEpoch``): name -> (layer_dims, m, batch); ReLU
#: hidden layers, softmax output, Adam.  "digits" is scikit-learn's digits in shape, where
#: the costs around an epoch's arithmetic show; "mnist" the compare script's MNIST epoch.
FITS = {
    "digits": ([64, 64, 10], 1797, 200),
    "mnist": ([784, 256, 128, 10], 60000, 256),
}


@functools.lru_cache(maxsize=2)
def fit_data(fit, dtype, seed=0):
    """``(X, y)`` for a minibatch fit, built once per process: ``X`` ``(n_x, m)`` standard
    normal, as ``data.T`` of row-major examples (the course's layout), integer labels
    from a fixed random linear teacher.  Shared: do not modify them."""
    dims, m, _ = FITS[fit]
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((m, dims[0])).astype(dtype)
    teacher = rng.standard_normal((dims[0], dims[-1]))
    return data.T, (data.astype(np.float64) @ teacher).argmax(axis=1)


def stability_dims(depth):
    """Layer sizes of the stability network with ``depth`` layers: 8 inputs,
    hidden layers of 16 units, one sigmoid output."""
    return [8] + [16] * (depth - 1) + [1]


@functools.lru_cache(maxsize=4)
def stability_data(m, depth, dtype, seed=0):
    """(params, X, Y) for the stability tracks: tanh hidden layers, sigmoid output.

    Weights (Xavier), ``X`` (standard normal) and the teacher are drawn in
    float64 and then cast, so the float32 inputs are the float64 ones rounded;
    the labels come from a fixed random tanh teacher, so the gradient carries
    signal instead of averaging to noise.  The hidden activation is tanh, not
    ReLU: ReLU's kink makes a Z within rounding of 0 flip its mask, a rare
    discontinuity that would swamp the rounding errors being measured.
    The arrays are shared: do not modify them.
    """
    dims = stability_dims(depth)
    dtype = np.dtype(dtype)
    rng = np.random.default_rng([seed, m, depth])
    params = {}
    for l in range(1, len(dims)):
        params[f"W{l}"] = (rng.standard_normal((dims[l], dims[l - 1]))
                           * np.sqrt(2.0 / (dims[l] + dims[l - 1]))).astype(dtype)
        params[f"b{l}"] = (0.1 * rng.standard_normal((dims[l], 1))).astype(dtype)
    X = rng.standard_normal((dims[0], m)).astype(dtype)
    T1 = rng.standard_normal((16, dims[0])) / np.sqrt(dims[0])
    T2 = rng.standard_normal((1, 16)) / 4.0
    scores = T2 @ np.tanh(T1 @ X.astype(np.float64))
    Y = (scores > 0).astype(dtype)
    return params, X, Y


def digits_data(dtype, seed=0):
    """(X_train, y_train, X_test, y_test, source) for the quality tracks.

    scikit-learn's bundled digits (64 features scaled to [0, 1], 10 classes,
    1797 examples, no download) split 75/25 with a fixed permutation; when
    scikit-learn is missing, a synthetic 10-class problem of the same shape from
    a fixed random teacher (``source`` says which).  X is ``(64, m)``, labels
    are integer class indices ``(m,)``.
    """
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        X = rng.standard_normal((64, 1797))
        teacher = rng.standard_normal((10, 64))
        y = (teacher @ X).argmax(axis=0)
        X = (X - X.min()) / (X.max() - X.min())
        source = "synthetic"
    else:
        digits = load_digits()
        X = digits.data.T / 16.0
        y = digits.target
        source = "sklearn digits"
    order = rng.permutation(X.shape[1])
    cut = (3 * X.shape[1]) // 4
    tr, te = order[:cut], order[cut:]
    return (np.ascontiguousarray(X[:, tr], dtype=dtype), y[tr],
            np.ascontiguousarray(X[:, te], dtype=dtype), y[te], source)


def reset_peak_rss():
    """Make the process's peak resident set size (``ru_maxrss``, what asv's
    ``peakmem_`` reads) restart from the current RSS, so a ``peakmem_`` figure
    measures the benchmark body on top of what ``setup`` left resident, and not
    the one-off peaks of setup (a Numba compile, data building).  Linux
    (``/proc/self/clear_refs``) only; a silent no-op elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def bench_cache_dir(*parts):
    """A folder for files the benchmarks keep between runs (reference
    gradients, a warm Numba cache): ``$FASTNN_BENCH_CACHE``, else ``.asv/``
    next to ``asv.conf.json`` (git-ignored).  Created when missing."""
    root = os.environ.get("FASTNN_BENCH_CACHE") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".asv", "bench-cache")
    path = os.path.join(root, *parts)
    os.makedirs(path, exist_ok=True)
    return path
