"""Drop-in for Course 2's ``reg_utils`` (W1A2 Regularization) and the notebook's graded functions.

``from fastnn.compat.reg_utils import *`` gives the file's helpers (three-layer
``forward_propagation``, ``backward_propagation`` with the ``1/m`` on dW and
db and keys ``dZ3, dA2, ...``, ``compute_cost``, ``initialize_parameters``
(seed 3, ``randn / sqrt(n_{l-1})``), ``update_parameters`` writing into the
dict given, loaders, ``predict``, ``predict_dec``, ``plot_decision_boundary``)
and the notebook's L2 and dropout functions and ``model``.
"""

import numpy as np

from . import _three_layer as _net
from ._data import load_2D_dataset as _load_2D
from ._data import load_cat_dataset as load_dataset
from ._data import load_spiral_dataset as load_planar_dataset
from ._plot import plot_costs, scatter_set
from ._three_layer import compute_cost, forward_propagation, plot_decision_boundary, predict
from ._three_layer import predict_dec, relu, sigmoid
from .dnn import _init_layers
from .dnn_app_utils_v3 import update_parameters

__all__ = [
    "sigmoid", "relu", "load_planar_dataset", "initialize_parameters", "compute_cost",
    "forward_propagation", "backward_propagation", "update_parameters", "predict",
    "load_dataset", "plot_decision_boundary", "predict_dec", "load_2D_dataset",
    "compute_cost_with_regularization", "backward_propagation_with_regularization",
    "forward_propagation_with_dropout", "backward_propagation_with_dropout", "model",
]


def initialize_parameters(layer_dims):
    """``np.random.seed(3)``; ``W_l = randn(n_l, n_{l-1}) / sqrt(n_{l-1})``, zero biases.

    Argument and shapes as :func:`fastnn.compat.init_utils.initialize_parameters_zeros`.
    """
    return _init_layers(layer_dims, 3, lambda W, n_prev: W / np.sqrt(n_prev))


def backward_propagation(X, Y, cache):
    """Gradients: ``dZ3 = A3 - Y``, ``dW = (1/m) dZ A_prev.T``, ``db = (1/m)`` row sums.

    Arguments and shapes as :func:`fastnn.compat.init_utils.backward_propagation`;
    returns the dict ``dZ3, dW3, db3, dA2, dZ2, dW2, db2, dA1, dZ1, dW1, db1``.
    """
    return _net.backward(X, Y, cache, deferred=True, upper=True)


def load_2D_dataset(path=None):
    """The football-field data (``data.mat``), scattered when matplotlib is installed.

    See :func:`fastnn.compat._data.load_2D_dataset` for ``path``.

    Returns
    -------
    train_X (2, 211), train_Y (1, 211), test_X (2, 200), test_Y (1, 200) : float64 ndarrays
    """
    train_X, train_Y, test_X, test_Y = _load_2D(path)
    scatter_set(train_X, train_Y)
    return train_X, train_Y, test_X, test_Y


def compute_cost_with_regularization(A3, Y, parameters, lambd):
    """Cross-entropy plus ``lambd / (2m) * (sum W1^2 + sum W2^2 + sum W3^2)``.

    Parameters
    ----------
    A3 : ndarray, shape (1, m)
    Y : ndarray, shape (1, m)
    parameters : dict with ``W1, W2, W3``
    lambd : float

    Returns
    -------
    cost : numpy.float64
    """
    m = Y.shape[1]
    squares = sum(np.sum(np.square(parameters["W" + str(l)])) for l in (1, 2, 3))
    return compute_cost(A3, Y) + (1 / m) * (lambd / 2) * squares


def backward_propagation_with_regularization(X, Y, cache, lambd):
    """:func:`backward_propagation` with ``(lambd * W_l) / m`` added to each ``dW_l``.

    Returns
    -------
    gradients : dict, the same 11 keys
    """
    return _net.backward(X, Y, cache, deferred=True, upper=True, lambd=lambd)


def forward_propagation_with_dropout(X, parameters, keep_prob=0.5):
    """Forward pass with inverted dropout on both hidden layers (``np.random.seed(1)`` inside).

    ``D = int64(rand(*A.shape) < keep_prob)``, ``A = (A * D) / keep_prob`` for
    A1 then A2, so every call draws the same masks; X and A3 are not dropped.

    Parameters
    ----------
    X : ndarray, shape (n_x, m)
    parameters : dict with ``W1, b1, W2, b2, W3, b3``
    keep_prob : float

    Returns
    -------
    A3 : ndarray, shape (1, m)
    cache : tuple ``(Z1, D1, A1, W1, b1, Z2, D2, A2, W2, b2, Z3, A3, W3, b3)``;
        D1 (n_1, m) and D2 (n_2, m) int64 masks, A1 and A2 dropped and rescaled
    """
    return _net.forward(X, parameters, keep_prob=keep_prob)


def backward_propagation_with_dropout(X, Y, cache, keep_prob):
    """:func:`backward_propagation` through the dropout masks: ``dA_l = dA_l * D_l / keep_prob``.

    Parameters
    ----------
    cache : from :func:`forward_propagation_with_dropout`

    Returns
    -------
    gradients : dict, the same 11 keys (``dA1``, ``dA2`` masked and rescaled)
    """
    return _net.backward(X, Y, cache, deferred=True, upper=True, keep_prob=keep_prob)


def model(X, Y, learning_rate=0.3, num_iterations=30000, print_cost=True, lambd=0, keep_prob=1):
    """Train the ``[n_x, 20, 3, 1]`` network, with L2 (``lambd``) or dropout (``keep_prob < 1``).

    Prints ``"Cost after iteration {i}: {cost}"`` every 10000 iterations and
    records the cost every 1000 (with ``print_cost``); plots the costs at the
    end (``plt.show()``, when matplotlib is installed).

    Arguments as :func:`fastnn.compat.init_utils.model`, with, in place of ``initialization``:

    Parameters
    ----------
    lambd : float, L2 strength (0: none)
    keep_prob : float, dropout keep probability (1: none); not together with ``lambd``

    Returns
    -------
    parameters : dict with ``W1`` (20, n_x), ``b1``, ``W2`` (3, 20), ``b2``, ``W3`` (1, 3), ``b3``
    """
    if lambd != 0 and keep_prob != 1:
        raise ValueError(f"lambd and keep_prob: use L2 (lambd={lambd}) or dropout "
                         f"(keep_prob={keep_prob}), not both")
    costs = []
    parameters = initialize_parameters([X.shape[0], 20, 3, 1])
    for i in range(num_iterations):
        if keep_prob == 1:
            a3, cache = forward_propagation(X, parameters)
            grads = backward_propagation_with_regularization(X, Y, cache, lambd)
        else:
            a3, cache = forward_propagation_with_dropout(X, parameters, keep_prob)
            grads = backward_propagation_with_dropout(X, Y, cache, keep_prob)
        cost = compute_cost_with_regularization(a3, Y, parameters, lambd) if lambd \
            else compute_cost(a3, Y)
        parameters = update_parameters(parameters, grads, learning_rate)
        if print_cost and i % 10000 == 0:
            print("Cost after iteration {}: {}".format(i, cost))
        if print_cost and i % 1000 == 0:
            costs.append(cost)
    plot_costs(costs, "cost", "iterations (x1,000)", learning_rate)
    return parameters
