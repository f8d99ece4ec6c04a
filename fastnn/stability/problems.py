"""Data sets, networks and training stages of the stability sweep.

A point's gradient is measured on ``m`` examples drawn from a data set, at
the weights a float64 training run has reached after ``stage`` steps (0: the
initialisation).  The training run is the library's own: ``fastnn.gradients``
on the NumPy backend in float64, full-batch Adam (lr 0.01) on
:data:`N_FIT` examples drawn from the same data set (a separate stream), so
the residuals ``A - Y`` shrink as a real run proceeds.

Data sets (``X`` ``(n_in, m)`` standard normal unless said):

- ``"teacher"``: labels from a random linear teacher plus noise of 0.5 (sigmoid
  output: ``(1, m)`` in {0, 1}; softmax: one-hot of 4 classes; identity: real):
  about 20 % of the labels cannot be fitted, so residuals stay large;
- ``"rings"``: label 1 outside the circle of median radius in the first two
  coordinates (noise-free and non-linear: residuals shrink towards 0);
- ``"blobs"``: 4 Gaussian clusters (centres 2.5 apart on random directions,
  unit spread), softmax output with 4 classes.
"""

import functools
import math

import numpy as np

from ..activations import check_hidden, check_output
from ..errors import FastnnValueError
from ..network import init_params

DATASETS = ("teacher", "rings", "blobs")
#: Training-set size of the runs that produce the weights of ``stage`` > 0.
N_FIT = 2048
#: Adam's learning rate in those runs.
FIT_LR = 0.01


def _labels(data, output, X, rng, struct, n_out):
    n_in, m = X.shape
    if data == "teacher":
        T = struct.standard_normal((n_out, n_in)) / math.sqrt(n_in)
        S = T @ X + 0.5 * rng.standard_normal((n_out, m))
        if output == "sigmoid":
            return (S > 0).astype(np.float64)
        if output == "softmax":
            Y = np.zeros_like(S)
            Y[S.argmax(axis=0), np.arange(m)] = 1.0
            return Y
        return S
    if data == "rings":
        if output != "sigmoid" or n_in < 2:
            raise FastnnValueError(f"data='rings' needs output='sigmoid' and n_in >= 2, got {output!r}, {n_in}")
        r2 = X[0] ** 2 + X[1] ** 2
        return (r2 > 2 * math.log(2)).astype(np.float64)[None, :]
    if data == "blobs":
        if output != "softmax":
            raise FastnnValueError(f"data='blobs' needs output='softmax', got {output!r}")
        return None
    raise FastnnValueError(f"data: unknown {data!r}; expected one of {DATASETS}")


def dataset(data, output, n_in, m, seed, stream):
    """``(X, Y)`` of a data set: ``X`` ``(n_in, m)``, ``Y`` ``(n_out, m)`` float64.

    ``stream`` separates the training examples (``"fit"``) from the measured
    ones (``"eval"``); the data set's structure (teacher, centres) depends on
    ``seed`` only.
    """
    n_out = 4 if output == "softmax" else 1
    struct = np.random.default_rng([int(seed), n_in, 77])
    rng = np.random.default_rng([int(seed), int(m), n_in, 20240611 if stream == "eval" else 31])
    if data not in DATASETS:
        raise FastnnValueError(f"data: unknown {data!r}; expected one of {DATASETS}")
    if data == "blobs":
        if output != "softmax":
            raise FastnnValueError(f"data='blobs' needs output='softmax', got {output!r}")
        C = struct.standard_normal((n_in, n_out))
        C *= 1.25 / np.linalg.norm(C, axis=0, keepdims=True)         # centres 2.5 apart (opposite)
        k = rng.integers(0, n_out, m)
        X = C[:, k] + rng.standard_normal((n_in, m))
        Y = np.zeros((n_out, m))
        Y[k, np.arange(m)] = 1.0
        return X, Y
    X = rng.standard_normal((n_in, m))
    return X, _labels(data, output, X, rng, struct, n_out)


def dims_of(pt):
    depth, width, n_in = int(pt["depth"]), int(pt["width"]), int(pt["n_in"])
    if depth < 1 or width < 1 or n_in < 1 or int(pt["m"]) < 1:
        raise FastnnValueError(f"depth, width, n_in, m must be >= 1, got {depth}, {width}, {n_in}, {pt['m']}")
    n_out = 4 if check_output(pt["output"]) == "softmax" else 1
    return (n_in,) + (width,) * (depth - 1) + (n_out,)


@functools.lru_cache(maxsize=64)
def trained_params(data, dims, hidden, output, seed, stage):
    """Weights and biases (float64 lists) after ``stage`` full-batch Adam steps."""
    from ..network import gradients
    init = "he" if hidden in ("relu", "leaky_relu") else "xavier"
    params = init_params(list(dims), init=init, dtype=np.float64, seed=int(seed))
    if stage:
        X, Y = dataset(data, output, dims[0], N_FIT, seed, "fit")
        mom = {k: np.zeros_like(v) for k, v in params.items()}
        vel = {k: np.zeros_like(v) for k, v in params.items()}
        b1, b2, eps = 0.9, 0.999, 1e-8
        for t in range(1, int(stage) + 1):
            _, g = gradients(params, X, Y, hidden=hidden, output=output, backend="numpy")
            for k in params:
                gk = g["d" + k]
                mom[k] = b1 * mom[k] + (1 - b1) * gk
                vel[k] = b2 * vel[k] + (1 - b2) * gk * gk
                step = FIT_LR * (mom[k] / (1 - b1 ** t)) / (np.sqrt(vel[k] / (1 - b2 ** t)) + eps)
                params[k] = params[k] - step
    L = len(dims) - 1
    return ([params[f"W{l}"] for l in range(1, L + 1)], [params[f"b{l}"] for l in range(1, L + 1)])


def problem(pt):
    """``(Ws, bs, X, Y)`` of a point in float64, before rounding to its format."""
    hidden = check_hidden(pt["hidden"])
    output = check_output(pt["output"])
    dims = dims_of(pt)
    stage = int(pt.get("stage", 0))
    if stage < 0:
        raise FastnnValueError(f"stage must be >= 0, got {stage}")
    data = pt.get("data", "teacher")
    Ws, bs = trained_params(data, dims, hidden, output, int(pt["seed"]), stage)
    X, Y = dataset(data, output, dims[0], int(pt["m"]), int(pt["seed"]), "eval")
    return [W.copy() for W in Ws], [b.copy() for b in bs], X, Y
