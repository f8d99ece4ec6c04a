"""Week-3 (planar data, one hidden tanh layer) helpers with the course's behaviour.

These reproduce DLS Course 1 W3A1: ``layer_sizes``, ``initialize_parameters``
(no seed inside), ``forward_propagation``, ``compute_cost`` (Python float),
``backward_propagation``, ``update_parameters``, ``nn_model``, ``predict`` and a
cache-less ``sigmoid``. Arrays hold one example per column.
"""

import numpy as np

__all__ = [
    "sigmoid",
    "layer_sizes",
    "initialize_parameters",
    "forward_propagation",
    "compute_cost",
    "backward_propagation",
    "update_parameters",
    "nn_model",
    "predict",
]


def _as_labels(Y):
    # Labels may arrive as int, uint8 or bool; bool arrays reject `1 - Y`, so
    # every formula works on a float64 view instead (never on the caller's array).
    return np.asarray(Y, dtype=np.float64)


def _updated(parameters, grads, learning_rate, copy=True):
    # The one gradient-descent step of every course helper: new arrays, only W/b
    # touched. copy=True returns a new dict (Weeks 3 and 4, like the W4A1
    # notebook); copy=False assigns the new arrays to the keys of the dict given
    # and returns it (dnn_app_utils_v3 and Course 2). No array is changed in place.
    L = len(parameters) // 2
    new = dict(parameters) if copy else parameters
    for l in range(1, L + 1):
        new["W" + str(l)] = parameters["W" + str(l)] - learning_rate * grads["dW" + str(l)]
        new["b" + str(l)] = parameters["b" + str(l)] - learning_rate * grads["db" + str(l)]
    return new


def sigmoid(x):
    """Logistic function, elementwise.

    Parameters
    ----------
    x : ndarray, any shape

    Returns
    -------
    s : ndarray, same shape as ``x``, ``1 / (1 + exp(-x))``
    """
    return 1 / (1 + np.exp(-x))


def layer_sizes(X, Y):
    """Sizes of the planar network.

    Parameters
    ----------
    X : ndarray, shape (n_x, m)
    Y : ndarray, shape (n_y, m)

    Returns
    -------
    (n_x, n_h, n_y) : tuple of int, with ``n_h = 4``
    """
    return (X.shape[0], 4, Y.shape[0])


def initialize_parameters(n_x, n_h, n_y):
    """Small random weights and zero biases, drawn from the caller's RNG state.

    No seed is set here (the course's Week-3 test seeds 2 before calling).
    Draws ``randn(n_h, n_x) * 0.01`` then ``randn(n_y, n_h) * 0.01`` from the
    global legacy NumPy RNG.

    Returns
    -------
    parameters : dict
        ``W1`` (n_h, n_x), ``b1`` (n_h, 1), ``W2`` (n_y, n_h), ``b2`` (n_y, 1).
    """
    W1 = np.random.randn(n_h, n_x) * 0.01
    b1 = np.zeros((n_h, 1))
    W2 = np.random.randn(n_y, n_h) * 0.01
    b2 = np.zeros((n_y, 1))
    return {"W1": W1, "b1": b1, "W2": W2, "b2": b2}


def forward_propagation(X, parameters):
    """Forward pass: tanh hidden layer, sigmoid output.

    Parameters
    ----------
    X : ndarray, shape (n_x, m)
    parameters : dict with ``W1`` (n_h, n_x), ``b1`` (n_h, 1), ``W2`` (n_y, n_h),
        ``b2`` (n_y, 1)

    Returns
    -------
    A2 : ndarray, shape (n_y, m)
    cache : dict with ``Z1``, ``A1`` (n_h, m) and ``Z2``, ``A2`` (n_y, m)
    """
    W1 = parameters["W1"]
    b1 = parameters["b1"]
    W2 = parameters["W2"]
    b2 = parameters["b2"]
    Z1 = np.dot(W1, X) + b1
    A1 = np.tanh(Z1)
    Z2 = np.dot(W2, A1) + b2
    A2 = sigmoid(Z2)
    cache = {"Z1": Z1, "A1": A1, "Z2": Z2, "A2": A2}
    return A2, cache


def compute_cost(A2, Y):
    """Cross-entropy cost.

    Parameters
    ----------
    A2 : ndarray, shape (1, m), predicted probabilities
    Y : array_like, shape (1, m), labels (int, float or bool)

    Returns
    -------
    cost : float (a Python float, as in the course's Week 3)
    """
    return float(_cross_entropy(A2, Y))


def _cross_entropy(AL, Y):
    """The course's cost formula, as the 0-d array ``np.squeeze`` gives (Week 4's return type)."""
    Y = _as_labels(Y).reshape(AL.shape)
    m = AL.shape[1]
    cost = -(1 / m) * (np.dot(Y, np.log(AL).T) + np.dot(1 - Y, np.log(1 - AL).T))
    return np.squeeze(cost)


def backward_propagation(parameters, cache, X, Y):
    """Gradients of the cost for the tanh/sigmoid network.

    ``A1`` and ``A2`` are taken from ``cache``; only ``W2`` is read from
    ``parameters``.

    Parameters
    ----------
    parameters : dict with ``W1``, ``b1``, ``W2``, ``b2``
    cache : dict with ``A1`` (n_h, m) and ``A2`` (n_y, m)
    X : ndarray, shape (n_x, m)
    Y : array_like, shape (n_y, m)

    Returns
    -------
    grads : dict
        ``dW1`` (n_h, n_x), ``db1`` (n_h, 1), ``dW2`` (n_y, n_h), ``db2`` (n_y, 1).
    """
    m = X.shape[1]
    W2 = parameters["W2"]
    A1 = cache["A1"]
    A2 = cache["A2"]
    Y = _as_labels(Y).reshape(A2.shape)
    dZ2 = A2 - Y
    dW2 = (1 / m) * np.dot(dZ2, A1.T)
    db2 = (1 / m) * np.sum(dZ2, axis=1, keepdims=True)
    dZ1 = np.dot(W2.T, dZ2) * (1 - np.power(A1, 2))
    dW1 = (1 / m) * np.dot(dZ1, X.T)
    db1 = (1 / m) * np.sum(dZ1, axis=1, keepdims=True)
    return {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2}


def update_parameters(parameters, grads, learning_rate=1.2):
    """One gradient-descent step.

    Parameters
    ----------
    parameters : dict with ``W1, b1, ..., WL, bL``
    grads : dict with ``dW1, db1, ..., dWL, dbL`` (other keys ignored)
    learning_rate : float

    Returns
    -------
    parameters : dict
        New dict with new arrays ``W_l - learning_rate * dW_l`` and
        ``b_l - learning_rate * db_l``; the inputs are left unchanged.
    """
    return _updated(parameters, grads, learning_rate)


def nn_model(X, Y, n_h, num_iterations=10000, print_cost=False, *, backend=None):
    """Train the planar network by batch gradient descent (learning rate 1.2).

    Calls ``np.random.seed(3)`` then :func:`initialize_parameters`. With
    ``print_cost`` prints ``"Cost after iteration %i: %f"`` every 1000 iterations.

    Parameters
    ----------
    X : ndarray, shape (n_x, m)
    Y : array_like, shape (n_y, m)
    n_h : int, hidden-layer size
    num_iterations : int
    print_cost : bool
    backend : str or None
        ``None`` runs the course's own loop; ``"auto"`` or a fastnn backend
        name runs it on fastnn's kernels (same numbers to float64 rounding).

    Returns
    -------
    parameters : dict with ``W1`` (n_h, n_x), ``b1`` (n_h, 1), ``W2`` (n_y, n_h),
        ``b2`` (n_y, 1)
    """
    np.random.seed(3)
    n_x = layer_sizes(X, Y)[0]
    n_y = layer_sizes(X, Y)[2]
    parameters = initialize_parameters(n_x, n_h, n_y)
    if backend is not None:
        from fastnn.compat import _fast

        def report(i, cost):
            if print_cost and i % 1000 == 0:
                print("Cost after iteration %i: %f" % (i, cost))

        return _fast.run(parameters, X, _as_labels(Y), "tanh", 1.2, num_iterations, backend,
                         report, 1000)
    for i in range(0, num_iterations):
        A2, cache = forward_propagation(X, parameters)
        cost = compute_cost(A2, Y)
        grads = backward_propagation(parameters, cache, X, Y)
        parameters = update_parameters(parameters, grads, learning_rate=1.2)
        if print_cost and i % 1000 == 0:
            print("Cost after iteration %i: %f" % (i, cost))
    return parameters


def predict(parameters, X):
    """Class predictions of the planar network.

    Parameters
    ----------
    parameters : dict with ``W1``, ``b1``, ``W2``, ``b2``
    X : ndarray, shape (n_x, m)

    Returns
    -------
    predictions : ndarray of bool, shape (n_y, m), ``A2 > 0.5``
    """
    A2, _ = forward_propagation(X, parameters)
    return A2 > 0.5
