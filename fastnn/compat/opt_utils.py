"""Drop-in for Course 2's ``opt_utils_v1a`` (W2A1 Optimization) and the notebook's graded functions.

``from fastnn.compat.opt_utils import *`` (or ``opt_utils_v1a``) gives the
file's helpers (three-layer ``forward_propagation``, ``backward_propagation``
with the ``1/m`` absorbed in ``dz3``, ``compute_cost`` as a plain sum,
``initialize_parameters`` with He scaling and seed 3, ``load_params_and_grads``,
loaders, ``predict``, ``predict_dec``, ``plot_decision_boundary``) and the
notebook's mini-batches, momentum, Adam, learning-rate decay and ``model``.
Every update assigns new arrays to the keys of the dicts it is given.
"""

import numpy as np

from . import _three_layer as _net
from ._data import sklearn_set
from ._plot import plot_costs, scatter_set
from ._three_layer import plot_decision_boundary, predict, predict_dec, relu, sigmoid
from ..backends.numpy_backend import momentum_update
from .init_utils import backward_propagation, forward_propagation
from .init_utils import initialize_parameters_he as initialize_parameters
from .planar import _updated
from .reg_utils import load_2D_dataset

__all__ = [
    "sigmoid", "relu", "load_params_and_grads", "initialize_parameters", "compute_cost",
    "forward_propagation", "backward_propagation", "predict", "load_2D_dataset",
    "plot_decision_boundary", "predict_dec", "load_dataset", "update_parameters_with_gd",
    "random_mini_batches", "initialize_velocity", "update_parameters_with_momentum",
    "initialize_adam", "update_parameters_with_adam", "update_lr", "schedule_lr_decay", "model",
]


def compute_cost(a3, Y):
    """Summed cross-entropy ``sum(-log(a3) Y - log(1 - a3)(1 - Y))`` (no ``1/m``: the model divides).

    Parameters
    ----------
    a3 : ndarray, shape (1, m)
    Y : array_like, shape (1, m)

    Returns
    -------
    cost_total : numpy.float64
    """
    return np.sum(_net.log_losses(a3, Y))


def load_params_and_grads(seed=1):
    """Seeded test arrays: ``W1`` (2, 3), ``b1`` (2, 1), ``W2`` (3, 3), ``b2`` (3, 1), then dW1 ... db2.

    Returns
    -------
    W1, b1, W2, b2, dW1, db1, dW2, db2 : ndarrays, ``randn`` draws in that order
    """
    np.random.seed(seed)
    shapes = ((2, 3), (2, 1), (3, 3), (3, 1)) * 2
    return tuple(np.random.randn(*shape) for shape in shapes)


def load_dataset():
    """``make_moons(n_samples=300, noise=.2)`` after ``np.random.seed(3)``, scattered.

    Returns
    -------
    train_X : ndarray, shape (2, 300)
    train_Y : ndarray, int64, shape (1, 300)
    """
    train_X, train_Y = sklearn_set("make_moons", 3, n_samples=300, noise=.2)
    scatter_set(train_X, train_Y)
    return train_X, train_Y


def update_parameters_with_gd(parameters, grads, learning_rate):
    """``W_l -= lr dW_l``, ``b_l -= lr db_l``, new arrays bound into the dict given.

    Parameters
    ----------
    parameters : dict with ``W1, b1, ..., WL, bL``
    grads : dict with ``dW1, db1, ..., dWL, dbL``
    learning_rate : float

    Returns
    -------
    parameters : the same dict
    """
    return _updated(parameters, grads, learning_rate, copy=False)


def random_mini_batches(X, Y, mini_batch_size=64, seed=0):
    """Shuffle the columns (``np.random.seed(seed)``, one permutation) and cut them into batches.

    Parameters
    ----------
    X : ndarray, shape (n_x, m)
    Y : ndarray, shape (1, m) (dtype kept)
    mini_batch_size : int
    seed : int

    Returns
    -------
    mini_batches : list of ``(X_b, Y_b)``, ``X_b`` (n_x, size), ``Y_b`` (1, size):
        floor(m / size) full batches, then the remaining columns if any
    """
    np.random.seed(seed)
    m = X.shape[1]
    permutation = list(np.random.permutation(m))
    shuffled_X = X[:, permutation]
    shuffled_Y = Y[:, permutation].reshape((1, m))
    starts = range(0, m, mini_batch_size)
    return [(shuffled_X[:, k:k + mini_batch_size], shuffled_Y[:, k:k + mini_batch_size])
            for k in starts]


def _zeros_like_params(parameters):
    L = len(parameters) // 2
    out = {}
    for l in range(1, L + 1):
        out["dW" + str(l)] = np.zeros(parameters["W" + str(l)].shape)
        out["db" + str(l)] = np.zeros(parameters["b" + str(l)].shape)
    return out


def initialize_velocity(parameters):
    """Momentum's velocity: float64 zeros shaped like each parameter.

    Parameters
    ----------
    parameters : dict with ``W1, b1, ..., WL, bL``

    Returns
    -------
    v : dict with ``dW1, db1, ..., dWL, dbL``
    """
    return _zeros_like_params(parameters)


def update_parameters_with_momentum(parameters, grads, v, beta, learning_rate):
    """Momentum step: ``v = beta v + (1 - beta) g``, then ``param -= lr v`` (W then b, per layer).

    New arrays are bound into ``parameters`` and ``v``; no array is changed in place.

    Parameters
    ----------
    parameters : dict with ``W1, b1, ..., WL, bL``
    grads : dict with ``dW1, db1, ...``
    v : dict with ``dW1, db1, ...``, shapes of the parameters
    beta : float
    learning_rate : float

    Returns
    -------
    parameters, v : the same dicts
    """
    L = len(parameters) // 2
    for l in range(1, L + 1):
        for p in ("W", "b"):
            key, dkey = p + str(l), "d" + p + str(l)
            P, V = np.array(parameters[key], dtype=np.float64), np.array(v[dkey], dtype=np.float64)
            momentum_update(P, grads[dkey], V, learning_rate, beta)
            parameters[key], v[dkey] = P, V
    return parameters, v


def initialize_adam(parameters):
    """Adam's first and second moments: float64 zeros shaped like each parameter.

    Returns
    -------
    v, s : dicts with ``dW1, db1, ..., dWL, dbL``
    """
    return _zeros_like_params(parameters), _zeros_like_params(parameters)


def update_parameters_with_adam(parameters, grads, v, s, t, learning_rate=0.01,
                                beta1=0.9, beta2=0.999, epsilon=1e-8):
    """Adam step ``t`` (from 1) with bias correction, in the course's form.

    ``v = beta1 v + (1 - beta1) g``; ``v_hat = v / (1 - beta1^t)``;
    ``s = beta2 s + (1 - beta2) g^2``; ``s_hat = s / (1 - beta2^t)``;
    ``param -= lr v_hat / (sqrt(s_hat) + epsilon)``.  New arrays are bound into
    ``parameters``, ``v`` and ``s``.

    Parameters
    ----------
    parameters : dict with ``W1, b1, ..., WL, bL``
    grads, v, s : dicts with ``dW1, db1, ..., dWL, dbL``
    t : int, step counter (1 for the first step)
    learning_rate, beta1, beta2, epsilon : float

    Returns
    -------
    parameters, v, s : the same dicts
    v_corrected, s_corrected : new dicts with the bias-corrected moments
    """
    L = len(parameters) // 2
    v_corrected, s_corrected = {}, {}
    for l in range(1, L + 1):
        for p in ("W", "b"):
            key, dkey = p + str(l), "d" + p + str(l)
            g = grads[dkey]
            v[dkey] = beta1 * v[dkey] + (1 - beta1) * g
            v_corrected[dkey] = v[dkey] / (1 - beta1 ** t)
            s[dkey] = beta2 * s[dkey] + (1 - beta2) * (g ** 2)
            s_corrected[dkey] = s[dkey] / (1 - beta2 ** t)
            parameters[key] = parameters[key] - learning_rate * v_corrected[dkey] / (
                np.sqrt(s_corrected[dkey]) + epsilon)
    return parameters, v, s, v_corrected, s_corrected


def update_lr(learning_rate0, epoch_num, decay_rate):
    """Learning-rate decay ``learning_rate0 / (1 + decay_rate * epoch_num)``.

    Returns
    -------
    learning_rate : float
    """
    return learning_rate0 / (1 + decay_rate * epoch_num)


def schedule_lr_decay(learning_rate0, epoch_num, decay_rate, time_interval=1000):
    """Stepwise decay ``learning_rate0 / (1 + decay_rate * floor(epoch_num / time_interval))``.

    Returns
    -------
    learning_rate : numpy.float64
    """
    return learning_rate0 / (1 + decay_rate * np.floor(epoch_num / time_interval))


def _optimizer_step(optimizer, parameters, grads, state, learning_rate, beta, beta1, beta2,
                    epsilon):
    """One update of the chosen optimizer; ``state`` holds ``v``, ``s`` and Adam's ``t``."""
    if optimizer == "gd":
        return update_parameters_with_gd(parameters, grads, learning_rate)
    if optimizer == "momentum":
        return update_parameters_with_momentum(parameters, grads, state["v"], beta, learning_rate)[0]
    state["t"] += 1
    return update_parameters_with_adam(parameters, grads, state["v"], state["s"], state["t"],
                                       learning_rate, beta1, beta2, epsilon)[0]


def model(X, Y, layers_dims, optimizer, learning_rate=0.0007, mini_batch_size=64, beta=0.9,
          beta1=0.9, beta2=0.999, epsilon=1e-8, num_epochs=5000, print_cost=True,
          decay=None, decay_rate=1):
    """Train a ReLU...sigmoid network on mini-batches with gd, momentum or Adam.

    He initialisation (:func:`initialize_parameters`); epoch i shuffles with
    seed ``11 + i``; Adam's step counter runs over all batches of all epochs.
    The epoch cost is the summed cost of its batches divided by m.  With
    ``decay``, ``learning_rate = decay(learning_rate0, i, decay_rate)`` after
    each epoch.  With ``print_cost``: every 1000 epochs prints
    ``"Cost after epoch %i: %f"`` (and ``"learning rate after epoch %i: %f"``
    with decay); every 100 records the cost; the costs are plotted at the end.

    Parameters
    ----------
    X : ndarray, shape (n_x, m)
    Y : ndarray, shape (1, m)
    layers_dims : list of int, ``[n_x, ..., 1]`` (three layers, as the helpers)
    optimizer : {"gd", "momentum", "adam"}
    learning_rate, beta, beta1, beta2, epsilon : float
    mini_batch_size, num_epochs : int
    print_cost : bool
    decay : callable or None, e.g. :func:`update_lr` or :func:`schedule_lr_decay`
    decay_rate : float

    Returns
    -------
    parameters : dict with ``W_l`` (n_l, n_{l-1}), ``b_l`` (n_l, 1)
    """
    if optimizer not in ("gd", "momentum", "adam"):
        raise ValueError(f'optimizer must be "gd", "momentum" or "adam", got {optimizer!r}')
    costs, m, learning_rate0 = [], X.shape[1], learning_rate
    parameters = initialize_parameters(layers_dims)
    v, s = initialize_adam(parameters)
    state = {"v": v, "s": s, "t": 0}
    for i in range(num_epochs):
        cost_total = 0
        for batch_X, batch_Y in random_mini_batches(X, Y, mini_batch_size, 11 + i):
            a3, caches = forward_propagation(batch_X, parameters)
            cost_total += compute_cost(a3, batch_Y)
            grads = backward_propagation(batch_X, batch_Y, caches)
            parameters = _optimizer_step(optimizer, parameters, grads, state, learning_rate,
                                         beta, beta1, beta2, epsilon)
        cost_avg = cost_total / m
        if decay:
            learning_rate = decay(learning_rate0, i, decay_rate)
        if print_cost and i % 1000 == 0:
            print("Cost after epoch %i: %f" % (i, cost_avg))
            if decay:
                print("learning rate after epoch %i: %f" % (i, learning_rate))
        if print_cost and i % 100 == 0:
            costs.append(cost_avg)
    plot_costs(costs, "cost", "epochs (per 100)", learning_rate)
    return parameters
