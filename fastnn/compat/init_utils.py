"""Drop-in for Course 2's ``init_utils`` (W1A1 Initialization) and the notebook's graded functions.

``from fastnn.compat.init_utils import *`` gives the file's three-layer helpers
(``forward_propagation``, ``backward_propagation`` with the ``1/m`` absorbed in
``dz3``, ``compute_loss``, ``update_parameters`` writing into the dict given,
``predict``, ``predict_dec``, ``plot_decision_boundary``, ``load_dataset``,
``load_cat_dataset``) and the notebook's ``initialize_parameters_zeros``,
``initialize_parameters_random``, ``initialize_parameters_he`` and ``model``.
"""

import numpy as np

from . import _three_layer as _net
from ._data import load_cat_dataset, sklearn_set
from ._plot import plot_costs, scatter_set
from ._three_layer import compute_cost as compute_loss
from ._three_layer import forward_propagation, plot_decision_boundary, predict, predict_dec
from ._three_layer import relu, sigmoid
from .dnn import _init_layers
from .dnn_app_utils_v3 import update_parameters

__all__ = [
    "sigmoid", "relu", "forward_propagation", "backward_propagation", "update_parameters",
    "compute_loss", "load_cat_dataset", "predict", "load_dataset", "plot_decision_boundary",
    "predict_dec", "initialize_parameters_zeros", "initialize_parameters_random",
    "initialize_parameters_he", "model",
]


def backward_propagation(X, Y, cache):
    """Gradients with the ``1/m`` absorbed: ``dz3 = (a3 - Y) / m``, ``dW = dz a_prev.T``.

    Parameters
    ----------
    X : ndarray, shape (n_x, m)
    Y : array_like, shape (1, m)
    cache : from :func:`forward_propagation`

    Returns
    -------
    gradients : dict ``dz3, dW3, db3, da2, dz2, dW2, db2, da1, dz1, dW1, db1``
    """
    return _net.backward(X, Y, cache, deferred=False, upper=False)


def load_dataset():
    """Two noisy circles: ``make_circles(300, noise=.05)`` after seed 1, 100 more after seed 2.

    Scatters the training set (when matplotlib is installed).

    Returns
    -------
    train_X : ndarray, shape (2, 300)
    train_Y : ndarray, int64, shape (1, 300)
    test_X : ndarray, shape (2, 100)
    test_Y : ndarray, int64, shape (1, 100)
    """
    train_X, train_Y = sklearn_set("make_circles", 1, n_samples=300, noise=.05)
    test_X, test_Y = sklearn_set("make_circles", 2, n_samples=100, noise=.05)
    scatter_set(train_X, train_Y)
    return train_X, train_Y, test_X, test_Y


def initialize_parameters_zeros(layers_dims):
    """All-zero weights and biases (draws nothing).

    Parameters
    ----------
    layers_dims : list or tuple of int, ``[n_0, ..., n_L]``

    Returns
    -------
    parameters : dict, ``W_l`` zeros (n_l, n_{l-1}), ``b_l`` zeros (n_l, 1)
    """
    return _init_layers(layers_dims, None, None)


def initialize_parameters_random(layers_dims):
    """Large random weights: ``np.random.seed(3)``, ``W_l = randn(n_l, n_{l-1}) * 10``, zero biases.

    Argument and shapes as :func:`initialize_parameters_zeros`.
    """
    return _init_layers(layers_dims, 3, lambda W, n_prev: W * 10)


def initialize_parameters_he(layers_dims):
    """He initialisation: ``np.random.seed(3)``, ``W_l = randn(n_l, n_{l-1}) * sqrt(2 / n_{l-1})``.

    Argument and shapes as :func:`initialize_parameters_zeros`.
    """
    return _init_layers(layers_dims, 3, lambda W, n_prev: W * np.sqrt(2. / n_prev))


_INITIALIZERS = {"zeros": initialize_parameters_zeros, "random": initialize_parameters_random,
                 "he": initialize_parameters_he}


def model(X, Y, learning_rate=0.01, num_iterations=15000, print_cost=True, initialization="he"):
    """Train the ``[n_x, 10, 5, 1]`` network by batch gradient descent.

    With ``print_cost``, every 1000 iterations prints
    ``"Cost after iteration {i}: {cost}"`` and records the cost, which is
    plotted at the end (``plt.show()``, when matplotlib is installed).

    Parameters
    ----------
    X : ndarray, shape (n_x, m)
    Y : ndarray, shape (1, m)
    learning_rate : float
    num_iterations : int
    print_cost : bool
    initialization : {"zeros", "random", "he"}

    Returns
    -------
    parameters : dict with ``W1`` (10, n_x), ``b1``, ``W2`` (5, 10), ``b2``, ``W3`` (1, 5), ``b3``
    """
    if initialization not in _INITIALIZERS:
        raise ValueError(f'initialization must be "zeros", "random" or "he", got {initialization!r}')
    costs = []
    parameters = _INITIALIZERS[initialization]([X.shape[0], 10, 5, 1])
    for i in range(num_iterations):
        a3, cache = forward_propagation(X, parameters)
        cost = compute_loss(a3, Y)
        grads = backward_propagation(X, Y, cache)
        parameters = update_parameters(parameters, grads, learning_rate)
        if print_cost and i % 1000 == 0:
            print("Cost after iteration {}: {}".format(i, cost))
            costs.append(cost)
    plot_costs(costs, "cost", "iterations (per hundreds)", learning_rate)
    return parameters
