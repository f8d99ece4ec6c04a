"""The three-layer network of Course 2's helper files (init_utils, reg_utils, opt_utils, gc_utils).

LINEAR -> RELU -> LINEAR -> RELU -> LINEAR -> SIGMOID, one example per column,
built from the Week 4 pieces of :mod:`fastnn.compat.dnn`.  The files differ in
where the ``1/m`` goes (``deferred``: on dW and db, reg_utils and gc_utils;
absorbed: into dZ3, init_utils and opt_utils), in the case of the gradient
keys, and in the cost's sum; the options below select each file's choice.
"""

import numpy as np

from ._plot import plot_decision_boundary as _plot_boundary
from .dnn import linear_backward, linear_forward, relu_backward
from .dnn import relu as _relu
from .planar import _as_labels, sigmoid

__all__ = ["sigmoid", "relu", "forward_propagation", "compute_cost", "plot_decision_boundary"]


def relu(x):
    """Rectified linear function, elementwise (no cache).

    Parameters
    ----------
    x : ndarray, any shape

    Returns
    -------
    s : ndarray, same shape, ``max(0, x)``
    """
    return _relu(x)[0]


def forward(X, parameters, keep_prob=None):
    """Forward pass; with ``keep_prob``, inverted dropout on the two hidden layers.

    Parameters
    ----------
    X : ndarray, shape (n_x, m)
    parameters : dict with ``W1, b1, W2, b2, W3, b3``
    keep_prob : float or None
        Dropout: ``np.random.seed(1)``, then after each hidden activation
        ``D = int64(rand(*A.shape) < keep_prob)`` and ``A = (A * D) / keep_prob``.

    Returns
    -------
    A3 : ndarray, shape (1, m)
    cache : tuple ``(Z1, A1, W1, b1, Z2, A2, W2, b2, Z3, A3, W3, b3)``; with
        dropout ``(Z1, D1, A1, W1, b1, Z2, D2, A2, W2, b2, Z3, A3, W3, b3)``
    """
    if keep_prob is not None:
        np.random.seed(1)
    A, cache = X, []
    for l in (1, 2, 3):
        W, b = parameters["W" + str(l)], parameters["b" + str(l)]
        Z, _ = linear_forward(A, W, b)
        if l == 3:
            A = sigmoid(Z)
            cache += [Z, A, W, b]
        elif keep_prob is None:
            A = relu(Z)
            cache += [Z, A, W, b]
        else:
            D = (np.random.rand(*Z.shape) < keep_prob).astype(np.int64)
            A = relu(Z) * D / keep_prob
            cache += [Z, D, A, W, b]
    return A, tuple(cache)


def forward_propagation(X, parameters):
    """LINEAR->RELU->LINEAR->RELU->LINEAR->SIGMOID (the files' ``forward_propagation``).

    Parameters
    ----------
    X : ndarray, shape (n_x, m)
    parameters : dict with ``W1, b1, W2, b2, W3, b3``

    Returns
    -------
    A3 : ndarray, shape (1, m)
    cache : tuple ``(Z1, A1, W1, b1, Z2, A2, W2, b2, Z3, A3, W3, b3)`` (lower-case
        ``z1, a1, ...`` in init_utils' and opt_utils' notation)
    """
    return forward(X, parameters)


def plot_decision_boundary(model, X, y):
    """As :func:`fastnn.compat.planar_utils.plot_decision_boundary`, then ``plt.show()``."""
    _plot_boundary(model, X, y, show=True)


def _layers(cache):
    """{l: (Z, A, W, D or None)} from either cache layout."""
    dropout = len(cache) == 14
    out, i = {}, 0
    for l in (1, 2, 3):
        if dropout and l < 3:
            Z, D, A, W = cache[i:i + 4]
            i += 5
        else:
            (Z, A, W), D = cache[i:i + 3], None
            i += 4
        out[l] = (Z, A, W, D)
    return out


def backward(X, Y, cache, *, deferred, upper, lambd=0, keep_prob=None):
    """Gradients of the three-layer network, in each helper file's form.

    Parameters
    ----------
    X : ndarray, shape (n_x, m)
    Y : array_like, shape (1, m)
    cache : as :func:`forward` returns it (with or without dropout masks)
    deferred : bool
        True: ``dZ3 = A3 - Y``, ``dW = (1/m) dZ A_prev.T``, ``db = (1/m)`` row sums.
        False: ``dz3 = (A3 - Y) / m``, ``dW = dz A_prev.T``, ``db`` = row sums.
    upper : bool
        Key case: ``dZ3, dA2, ...`` (True) or ``dz3, da2, ...`` (False).
    lambd : float
        L2 term: ``(lambd * W) / m`` added to each ``dW``.
    keep_prob : float or None
        Dropout: each ``dA`` is multiplied by its mask, then divided by ``keep_prob``.

    Returns
    -------
    gradients : dict, 11 keys in the course's order: ``dZ3, dW3, db3, dA2,
        dZ2, dW2, db2, dA1, dZ1, dW1, db1`` (lower-case z and a unless ``upper``)
    """
    z, a = ("dZ", "dA") if upper else ("dz", "da")
    layers = _layers(cache)
    m = X.shape[1]
    dZ = layers[3][1] - _as_labels(Y)
    if not deferred:
        dZ = 1. / m * dZ
    grads = {}
    for l in (3, 2, 1):
        A_prev = X if l == 1 else layers[l - 1][1]
        W = layers[l][2]
        dA_prev, dW, db = _linear_grads(dZ, A_prev, W, deferred)
        if lambd:
            dW = dW + (lambd * W) / m
        grads.update({z + str(l): dZ, "dW" + str(l): dW, "db" + str(l): db})
        if l > 1:
            _, A, _, D = layers[l - 1]
            if D is not None:
                dA_prev = dA_prev * D / keep_prob
            grads[a + str(l - 1)] = dA_prev
            dZ = relu_backward(dA_prev, A)
    return grads


def _linear_grads(dZ, A_prev, W, deferred):
    if deferred:
        return linear_backward(dZ, (A_prev, W, None))
    return np.dot(W.T, dZ), np.dot(dZ, A_prev.T), np.sum(dZ, axis=1, keepdims=True)


def log_losses(A3, Y):
    """Per-example cross-entropy ``-log(A3) Y - log(1 - A3) (1 - Y)``, shape of ``A3``.

    An output of exactly 0 or 1 gives ``inf`` (wrong label) or ``nan`` (0 * inf,
    right label) without a warning; the course's costs sum these with
    ``nansum`` or ``sum``.
    """
    Y = _as_labels(Y)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.multiply(-np.log(A3), Y) + np.multiply(-np.log(1 - A3), 1 - Y)


def compute_cost(a3, Y):
    """Cross-entropy ``(1/m) * nansum(-log(a3) Y - log(1 - a3)(1 - Y))``, ``m = Y.shape[1]``.

    The ``compute_cost`` of reg_utils and gc_utils and the ``compute_loss`` of init_utils.

    Parameters
    ----------
    a3 : ndarray, shape (1, m)
    Y : ndarray, shape (1, m)

    Returns
    -------
    cost : numpy.float64 (``inf`` when an output is exactly wrong)
    """
    m = Y.shape[1]
    return 1. / m * np.nansum(log_losses(a3, Y))


def predict(X, y, parameters):
    """0/1 predictions and printed accuracy.

    Parameters
    ----------
    X : ndarray, shape (n_x, m)
    y : ndarray, shape (1, m), labels
    parameters : dict with ``W1, b1, W2, b2, W3, b3``

    Returns
    -------
    p : ndarray, int64, shape (1, m), 1 where ``A3 > 0.5`` else 0; prints
        ``"Accuracy: " + str(mean(p[0] == y[0]))``
    """
    a3, _ = forward(X, parameters)
    p = (a3[0:1, :] > 0.5).astype(np.int64)
    print("Accuracy: " + str(np.mean(p[0, :] == y[0, :])))
    return p


def predict_dec(parameters, X):
    """Bool predictions for :func:`plot_decision_boundary` (the notebooks pass ``x.T``).

    Parameters
    ----------
    parameters : dict with ``W1, b1, W2, b2, W3, b3``
    X : ndarray, shape (n_x, m)

    Returns
    -------
    predictions : ndarray of bool, shape (1, m), ``A3 > 0.5``
    """
    a3, _ = forward(X, parameters)
    return a3 > 0.5
