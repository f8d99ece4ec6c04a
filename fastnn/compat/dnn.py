"""Week-4 helpers (W4A1 step by step, W4A2 ``dnn_app_utils_v3``) with the course's behaviour.

``from fastnn.compat.dnn import *`` provides every Week-4 name plus the Week-3
``layer_sizes``, ``forward_propagation``, ``backward_propagation`` and
``nn_model``. Arrays are float64 with one example per column; randomness uses
the global legacy NumPy RNG so that seeds and later draws match the course.
"""

from collections.abc import Mapping

import numpy as np

from fastnn.compat import _fast
from fastnn.compat import planar as _planar
from fastnn.compat.planar import (
    backward_propagation,
    forward_propagation,
    layer_sizes,
    nn_model,
)

__all__ = [
    "sigmoid",
    "relu",
    "relu_backward",
    "sigmoid_backward",
    "initialize_parameters",
    "initialize_parameters_deep",
    "linear_forward",
    "linear_activation_forward",
    "L_model_forward",
    "compute_cost",
    "linear_backward",
    "linear_activation_backward",
    "L_model_backward",
    "update_parameters",
    "two_layer_model",
    "L_layer_model",
    "predict",
    "layer_sizes",
    "forward_propagation",
    "backward_propagation",
    "nn_model",
]

_as_labels = _planar._as_labels


# ---------------------------------------------------------------- activations

def sigmoid(Z):
    """Logistic activation: :func:`fastnn.compat.planar.sigmoid` of ``Z``, with its cache.

    Returns
    -------
    A : ndarray, same shape as ``Z``, ``1 / (1 + exp(-Z))``
    cache : ndarray, ``Z`` itself
    """
    return _planar.sigmoid(Z), Z


def relu(Z):
    """Rectified linear activation.

    Parameters
    ----------
    Z : ndarray, any shape

    Returns
    -------
    A : ndarray, same shape as ``Z``, ``max(0, Z)``
    cache : ndarray, ``Z`` itself
    """
    A = np.maximum(0, Z)
    return A, Z


def relu_backward(dA, cache):
    """Backward pass of a ReLU unit.

    Parameters
    ----------
    dA : ndarray, shape of ``Z``
    cache : ndarray, ``Z``

    Returns
    -------
    dZ : ndarray, a copy of ``dA`` with 0 where ``Z <= 0`` (zero included)
    """
    Z = cache
    dZ = np.array(dA, copy=True)
    dZ[Z <= 0] = 0
    return dZ


def sigmoid_backward(dA, cache):
    """Backward pass of a sigmoid unit; arguments as :func:`relu_backward`.

    Returns
    -------
    dZ : ndarray, ``dA * s * (1 - s)`` with ``s = sigmoid(Z)``
    """
    Z = cache
    s = _planar.sigmoid(Z)
    return dA * s * (1 - s)


# ------------------------------------------------------------- initialisation

def initialize_parameters(n_x, n_h, n_y):
    """Two-layer initialisation of W4A1/W4A2 (``np.random.seed(1)`` inside).

    Draws ``randn(n_h, n_x) * 0.01`` then ``randn(n_y, n_h) * 0.01``.

    Returns
    -------
    parameters : dict
        ``W1`` (n_h, n_x), ``b1`` (n_h, 1), ``W2`` (n_y, n_h), ``b2`` (n_y, 1).
    """
    np.random.seed(1)
    return _planar.initialize_parameters(n_x, n_h, n_y)


def initialize_parameters_deep(layer_dims, *, variant="step"):
    """L-layer initialisation.

    The course has two functions with this name. The default reproduces the
    W4A1 notebook (``np.random.seed(3)``, ``randn(n_l, n_{l-1}) * 0.01``);
    ``variant="app"`` reproduces ``dnn_app_utils_v3`` (``np.random.seed(1)``,
    ``randn(n_l, n_{l-1}) / sqrt(n_{l-1})``).

    Parameters
    ----------
    layer_dims : list or tuple of int, ``[n_0, n_1, ..., n_L]``
    variant : {"step", "app"}, keyword-only

    Returns
    -------
    parameters : dict
        ``W_l`` (n_l, n_{l-1}) and ``b_l`` (n_l, 1) for l = 1..L.
    """
    if variant == "step":
        return _init_layers(layer_dims, 3, lambda W, n_prev: W * 0.01)
    if variant == "app":
        return _init_layers(layer_dims, 1, lambda W, n_prev: W / np.sqrt(n_prev))
    raise ValueError(f'variant must be "step" or "app", got {variant!r}')


def _init_layers(layer_dims, seed, scale):
    """The course's layer-by-layer initialisation, shared by every helper file.

    Seeds the global legacy RNG with ``seed`` (``None``: no seed), then for
    l = 1..L draws ``W_l = scale(randn(n_l, n_{l-1}), n_{l-1})`` (``scale=None``:
    zeros, nothing drawn) and sets ``b_l = zeros((n_l, 1))``.
    """
    if seed is not None:
        np.random.seed(seed)
    parameters = {}
    for l in range(1, len(layer_dims)):
        shape = (layer_dims[l], layer_dims[l - 1])
        if scale is None:
            W = np.zeros(shape)
        else:
            W = scale(np.random.randn(*shape), layer_dims[l - 1])
        parameters["W" + str(l)] = W
        parameters["b" + str(l)] = np.zeros((layer_dims[l], 1))
    return parameters


# -------------------------------------------------------------------- forward

def linear_forward(A, W, b):
    """Linear part of a layer.

    Parameters
    ----------
    A : ndarray, shape (n_{l-1}, m)
    W : ndarray, shape (n_l, n_{l-1})
    b : ndarray, shape (n_l, 1)

    Returns
    -------
    Z : ndarray, shape (n_l, m), ``W @ A + b``
    cache : tuple ``(A, W, b)``
    """
    Z = W.dot(A) + b
    return Z, (A, W, b)


_ACTIVATIONS = {"sigmoid": sigmoid, "relu": relu}
_BACKWARDS = {"sigmoid": sigmoid_backward, "relu": relu_backward}


def _check_activation(activation):
    # The course silently fails later (UnboundLocalError) on a typo; say why now.
    if activation not in _ACTIVATIONS:
        raise ValueError(f'activation must be "sigmoid" or "relu", got {activation!r}')


def linear_activation_forward(A_prev, W, b, activation):
    """One layer: linear then activation.

    Parameters
    ----------
    A_prev : ndarray, shape (n_{l-1}, m)
    W : ndarray, shape (n_l, n_{l-1})
    b : ndarray, shape (n_l, 1)
    activation : {"sigmoid", "relu"}

    Returns
    -------
    A : ndarray, shape (n_l, m)
    cache : tuple ``((A_prev, W, b), Z)`` with ``Z`` of shape (n_l, m)
    """
    _check_activation(activation)
    Z, linear_cache = linear_forward(A_prev, W, b)
    A, activation_cache = _ACTIVATIONS[activation](Z)
    return A, (linear_cache, activation_cache)


def L_model_forward(X, parameters):
    """Forward pass: ReLU for layers 1..L-1, sigmoid for layer L.

    Parameters
    ----------
    X : ndarray, shape (n_0, m)
    parameters : dict with ``W1, b1, ..., WL, bL``

    Returns
    -------
    AL : ndarray, shape (n_L, m)
    caches : list of L caches ``((A_prev, W, b), Z)``; ``caches[0][0][0] is X``
    """
    caches = []
    A = X
    L = len(parameters) // 2
    for l in range(1, L):
        A, cache = linear_activation_forward(
            A, parameters["W" + str(l)], parameters["b" + str(l)], activation="relu"
        )
        caches.append(cache)
    AL, cache = linear_activation_forward(
        A, parameters["W" + str(L)], parameters["b" + str(L)], activation="sigmoid"
    )
    caches.append(cache)
    return AL, caches


# ----------------------------------------------------------------------- cost

def compute_cost(AL, Y):
    """Cross-entropy cost, as :func:`fastnn.compat.planar.compute_cost` with ``AL`` for ``A2``.

    Returns
    -------
    cost : 0-d ndarray (``shape == ()``), as ``np.squeeze`` of the 1x1 result
    """
    return _planar._cross_entropy(AL, Y)


# ------------------------------------------------------------------- backward

def linear_backward(dZ, cache):
    """Backward pass of the linear part of a layer.

    Parameters
    ----------
    dZ : ndarray, shape (n_l, m)
    cache : ``(A_prev, W, b)`` with shapes (n_{l-1}, m), (n_l, n_{l-1}), (n_l, 1)

    Returns
    -------
    dA_prev : ndarray, shape (n_{l-1}, m), ``W.T @ dZ``
    dW : ndarray, shape (n_l, n_{l-1}), ``(1/m) dZ @ A_prev.T``
    db : ndarray, shape (n_l, 1), ``(1/m)`` times the row sums of ``dZ``
    """
    A_prev, W, b = cache
    m = A_prev.shape[1]
    dW = (1 / m) * np.dot(dZ, A_prev.T)
    db = (1 / m) * np.sum(dZ, axis=1, keepdims=True)
    dA_prev = np.dot(W.T, dZ)
    return dA_prev, dW, db


def linear_activation_backward(dA, cache, activation):
    """Backward pass of one layer.

    Parameters
    ----------
    dA : ndarray, shape (n_l, m)
    cache : ``((A_prev, W, b), Z)``
    activation : {"sigmoid", "relu"}

    Returns
    -------
    dA_prev : ndarray, shape (n_{l-1}, m)
    dW : ndarray, shape (n_l, n_{l-1})
    db : ndarray, shape (n_l, 1)
    """
    _check_activation(activation)
    linear_cache, activation_cache = cache
    dZ = _BACKWARDS[activation](dA, activation_cache)
    return linear_backward(dZ, linear_cache)


def L_model_backward(AL, Y, caches):
    """Backward pass of the ReLU...ReLU-sigmoid network.

    Starts from ``dAL = -(Y/AL - (1-Y)/(1-AL))`` and takes every other value
    from ``caches``, so hand-built caches that do not match ``AL`` work.

    Parameters
    ----------
    AL : ndarray, shape (1, m)
    Y : array_like, reshaped to ``AL.shape`` (int, float or bool)
    caches : list or tuple of L caches ``((A_prev, W, b), Z)`` (tuples or lists)

    Returns
    -------
    grads : dict with exactly ``dA0 .. dA{L-1}``, ``dW1 .. dWL``, ``db1 .. dbL``
    """
    grads = {}
    L = len(caches)
    Y = _as_labels(Y).reshape(AL.shape)
    # The sigmoid/cross-entropy shortcut dZ = AL - Y would ignore the cached Z,
    # which the course's hand-built test caches rely on.
    dAL = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    dA_prev, dW, db = linear_activation_backward(dAL, caches[L - 1], activation="sigmoid")
    grads["dA" + str(L - 1)] = dA_prev
    grads["dW" + str(L)] = dW
    grads["db" + str(L)] = db
    for l in reversed(range(L - 1)):
        dA_prev, dW, db = linear_activation_backward(
            grads["dA" + str(l + 1)], caches[l], activation="relu"
        )
        grads["dA" + str(l)] = dA_prev
        grads["dW" + str(l + 1)] = dW
        grads["db" + str(l + 1)] = db
    return grads


# --------------------------------------------------------------------- update

def update_parameters(parameters=None, grads=None, learning_rate=None, *, params=None):
    """One gradient-descent step.

    The first argument is called ``params`` in W4A1 and ``parameters`` in
    ``dnn_app_utils_v3``; it may be passed positionally or under either name.

    Arguments and result as :func:`fastnn.compat.planar.update_parameters`
    (``dA*`` keys in ``grads`` are ignored too): a new dict, inputs unchanged.
    """
    # Defaults are None only so that either name can be used; all are required.
    if parameters is None and params is None:
        raise TypeError("update_parameters() missing required argument: 'parameters' (or 'params')")
    if parameters is not None and params is not None:
        raise TypeError("update_parameters() got both 'parameters' and 'params'")
    if grads is None:
        raise TypeError("update_parameters() missing required argument: 'grads'")
    if learning_rate is None:
        raise TypeError("update_parameters() missing required argument: 'learning_rate'")
    if parameters is None:
        parameters = params
    return _planar._updated(parameters, grads, learning_rate)


# --------------------------------------------------------------------- models

def _report(i, num_iterations, cost, costs, print_cost):
    # The course's `print_cost and i % 100 == 0 or i == num_iterations - 1`
    # also prints the last iteration when print_cost is False; we only print
    # when asked (the spec makes reproducing that slip optional).
    if print_cost and (i % 100 == 0 or i == num_iterations - 1):
        print("Cost after iteration {}: {}".format(i, np.squeeze(cost)))
    if i % 100 == 0:
        costs.append(cost)


def _fast_model(parameters, X, Y, learning_rate, num_iterations, print_cost, backend):
    costs = []

    def report(i, cost):
        _report(i, num_iterations, np.asarray(cost), costs, print_cost)

    parameters = _fast.run(parameters, X, Y, "relu", learning_rate, num_iterations, backend,
                           report, 100)
    return parameters, costs


def two_layer_model(X, Y, layers_dims, learning_rate=0.0075, num_iterations=3000, print_cost=False,
                    *, backend=None):
    """Train LINEAR->RELU->LINEAR->SIGMOID by batch gradient descent.

    Calls ``np.random.seed(1)`` and :func:`initialize_parameters`; records the
    cost every 100 iterations and, with ``print_cost``, prints
    ``"Cost after iteration {i}: {cost}"`` then and at the last iteration.

    Parameters
    ----------
    X : ndarray, shape (n_x, m)
    Y : array_like, shape (1, m)
    layers_dims : (n_x, n_h, n_y)
    learning_rate : float
    num_iterations : int
    print_cost : bool
    backend : str or None
        ``None`` runs the course's own loop (bit for bit the course's numbers).
        ``"auto"`` or a fastnn backend name runs the same loop on fastnn's
        kernels (compiled on the Numba backends): the same costs and
        parameters to float64 rounding, several times faster.

    Returns
    -------
    parameters : dict with ``W1`` (n_h, n_x), ``b1``, ``W2`` (n_y, n_h), ``b2``
    costs : list of 0-d ndarrays, the costs at iterations 0, 100, 200, ...
    """
    np.random.seed(1)
    costs = []
    Yf = _as_labels(Y)
    (n_x, n_h, n_y) = layers_dims
    parameters = initialize_parameters(n_x, n_h, n_y)
    if backend is not None:
        return _fast_model(parameters, X, Yf, learning_rate, num_iterations, print_cost, backend)
    for i in range(0, num_iterations):
        W1, b1 = parameters["W1"], parameters["b1"]
        W2, b2 = parameters["W2"], parameters["b2"]
        A1, cache1 = linear_activation_forward(X, W1, b1, activation="relu")
        A2, cache2 = linear_activation_forward(A1, W2, b2, activation="sigmoid")
        cost = compute_cost(A2, Yf)
        dA2 = -(np.divide(Yf, A2) - np.divide(1 - Yf, 1 - A2))
        dA1, dW2, db2 = linear_activation_backward(dA2, cache2, activation="sigmoid")
        dA0, dW1, db1 = linear_activation_backward(dA1, cache1, activation="relu")
        grads = {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2}
        parameters = update_parameters(parameters, grads, learning_rate)
        _report(i, num_iterations, cost, costs, print_cost)
    return parameters, costs


def L_layer_model(X, Y, layers_dims, learning_rate=0.0075, num_iterations=3000, print_cost=False,
                  *, backend=None):
    """Train [LINEAR->RELU]*(L-1)->LINEAR->SIGMOID by batch gradient descent.

    Calls ``np.random.seed(1)`` and ``initialize_parameters_deep(layers_dims,
    variant="app")``; records the cost every 100 iterations and, with
    ``print_cost``, prints ``"Cost after iteration {i}: {cost}"`` then and at
    the last iteration.

    Parameters
    ----------
    X : ndarray, shape (n_0, m)
    Y : array_like, shape (1, m)
    layers_dims : list or tuple of int, ``[n_0, ..., n_L]``
    learning_rate : float
    num_iterations : int
    print_cost : bool
    backend : str or None
        As in :func:`two_layer_model`.

    Returns
    -------
    parameters : dict with ``W_l`` (n_l, n_{l-1}) and ``b_l`` (n_l, 1)
    costs : list of 0-d ndarrays, the costs at iterations 0, 100, 200, ...
    """
    np.random.seed(1)
    costs = []
    Yf = _as_labels(Y)
    parameters = initialize_parameters_deep(layers_dims, variant="app")
    if backend is not None:
        return _fast_model(parameters, X, Yf, learning_rate, num_iterations, print_cost, backend)
    for i in range(0, num_iterations):
        AL, caches = L_model_forward(X, parameters)
        cost = compute_cost(AL, Yf)
        grads = L_model_backward(AL, Yf, caches)
        parameters = update_parameters(parameters, grads, learning_rate)
        _report(i, num_iterations, cost, costs, print_cost)
    return parameters, costs


# -------------------------------------------------------------------- predict

def predict(X, y=None, parameters=None):
    """Predictions of a trained network, in either course call form.

    Week 4: ``predict(X, y, parameters)`` runs :func:`L_model_forward`, prints
    ``"Accuracy: " + str(np.sum((p == y)/m))`` and returns ``p``.
    Week 3: ``predict(parameters, X)`` (first argument a dict) returns the bool
    array ``A2 > 0.5`` of the planar :func:`forward_propagation`.

    Parameters
    ----------
    X : ndarray, shape (n_0, m) (or the Week-3 parameters dict)
    y : array_like, shape (1, m) (or, Week-3 form, ``X``)
    parameters : dict with ``W1, b1, ..., WL, bL``

    Returns
    -------
    p : ndarray, float64, shape (1, m), 1.0 where ``AL > 0.5`` else 0.0
        (Week 3: bool ndarray, shape (n_y, m))
    """
    if isinstance(X, Mapping):
        if parameters is not None:
            raise TypeError("predict(parameters, X): got a third argument")
        return _planar.predict(X, y)
    if parameters is None:
        raise TypeError("predict() missing required argument: 'parameters'")
    if y is None:
        raise TypeError("predict() missing required argument: 'y'")
    m = X.shape[1]
    probas, _ = L_model_forward(X, parameters)
    p = np.zeros((1, m))
    p[0, probas[0] > 0.5] = 1
    print("Accuracy: " + str(np.sum((p == y) / m)))
    return p
