"""Drop-in for Course 2's ``gc_utils`` (W1A3 Gradient Checking) and the notebook's graded functions.

``from fastnn.compat.gc_utils import *`` gives ``sigmoid``, ``relu``,
``dictionary_to_vector``, ``vector_to_dictionary``, ``gradients_to_vector``
and the notebook's 1-D (``J = theta x``) and n-D gradient checks.
``backward_propagation_n`` keeps the notebook's two planted mistakes unless
``fixed=True``.
"""

import numpy as np

from . import _three_layer as _net
from ._three_layer import relu, sigmoid

__all__ = [
    "sigmoid", "relu", "dictionary_to_vector", "vector_to_dictionary", "gradients_to_vector",
    "forward_propagation", "backward_propagation", "gradient_check", "forward_propagation_n",
    "backward_propagation_n", "gradient_check_n",
]

_NAMES = ("W1", "b1", "W2", "b2", "W3", "b3")
_SHAPES = ((5, 4), (5, 1), (3, 5), (3, 1), (1, 3), (1, 1))


def dictionary_to_vector(parameters):
    """Stack ``W1, b1, W2, b2, W3, b3`` (each flattened row-major) into one column.

    Parameters
    ----------
    parameters : dict with ``W1, b1, W2, b2, W3, b3``

    Returns
    -------
    theta : ndarray, shape (n, 1), n the total number of entries
    keys : list of str, length n, the name of each entry's array
    """
    columns = [np.reshape(parameters[k], (-1, 1)) for k in _NAMES]
    keys = [k for k, c in zip(_NAMES, columns) for _ in range(c.shape[0])]
    return np.concatenate(columns, axis=0), keys


def vector_to_dictionary(theta):
    """Views of ``theta`` as the 4-5-3-1 network's parameters (the inverse of the above).

    Parameters
    ----------
    theta : ndarray, shape (47, 1)

    Returns
    -------
    parameters : dict, ``W1`` (5, 4), ``b1`` (5, 1), ``W2`` (3, 5), ``b2`` (3, 1),
        ``W3`` (1, 3), ``b3`` (1, 1), each a reshaped slice (view) of ``theta``
    """
    parameters, start = {}, 0
    for name, shape in zip(_NAMES, _SHAPES):
        size = shape[0] * shape[1]
        parameters[name] = theta[start:start + size].reshape(shape)
        start += size
    return parameters


def gradients_to_vector(gradients):
    """Stack ``dW1, db1, dW2, db2, dW3, db3`` as :func:`dictionary_to_vector` does (other keys ignored).

    Returns
    -------
    theta : ndarray, shape (n, 1)
    """
    return np.concatenate([np.reshape(gradients["d" + k], (-1, 1)) for k in _NAMES], axis=0)


def forward_propagation(x, theta):
    """The 1-D example's cost ``J = theta * x``."""
    return theta * x


def backward_propagation(x, theta):
    """The 1-D example's gradient ``dJ/dtheta = x``."""
    return x


def _difference(grad, gradapprox, print_msg):
    """``||grad - approx|| / (||grad|| + ||approx||)``, printed in the course's colours."""
    difference = np.linalg.norm(grad - gradapprox) / (np.linalg.norm(grad) + np.linalg.norm(gradapprox))
    if print_msg:
        if difference > 2e-7:
            print("\033[93m" + "There is a mistake in the backward propagation! difference = "
                  + str(difference) + "\033[0m")
        else:
            print("\033[92m" + "Your backward propagation works perfectly fine! difference = "
                  + str(difference) + "\033[0m")
    return difference


def gradient_check(x, theta, epsilon=1e-7, print_msg=False):
    """Central-difference check of :func:`backward_propagation` on ``J = theta x``.

    Parameters
    ----------
    x, theta : float
    epsilon : float
    print_msg : bool, print the verdict (threshold 2e-7)

    Returns
    -------
    difference : numpy.float64, ``||grad - approx|| / (||grad|| + ||approx||)``
    """
    J_plus = forward_propagation(x, theta + epsilon)
    J_minus = forward_propagation(x, theta - epsilon)
    gradapprox = (J_plus - J_minus) / (2 * epsilon)
    return _difference(backward_propagation(x, theta), gradapprox, print_msg)


def forward_propagation_n(X, Y, parameters):
    """Three-layer forward pass and its cost ``(1/m) * sum(losses)`` (``m = X.shape[1]``, plain sum).

    Parameters
    ----------
    X : ndarray, shape (n_x, m)
    Y : array_like, shape (1, m) or (m,) (broadcast against A3)
    parameters : dict with ``W1, b1, W2, b2, W3, b3``

    Returns
    -------
    cost : numpy.float64
    cache : tuple ``(Z1, A1, W1, b1, Z2, A2, W2, b2, Z3, A3, W3, b3)``
    """
    A3, cache = _net.forward(X, parameters)
    m = X.shape[1]
    return 1. / m * np.sum(_net.log_losses(A3, Y)), cache


def backward_propagation_n(X, Y, cache, fixed=False):
    """Gradients of :func:`forward_propagation_n`, with the notebook's mistakes unless ``fixed``.

    The notebook's version doubles ``dW2`` and uses ``4/m`` instead of
    ``1/m`` for ``db1``; ``fixed=True`` gives the correct gradients.

    Parameters
    ----------
    X : ndarray, shape (n_x, m)
    Y : array_like, shape (1, m) or (m,)
    cache : from :func:`forward_propagation_n`
    fixed : bool

    Returns
    -------
    gradients : dict ``dZ3, dW3, db3, dA2, dZ2, dW2, db2, dA1, dZ1, dW1, db1``
    """
    gradients = _net.backward(X, Y, cache, deferred=True, upper=True)
    if not fixed:
        gradients["dW2"] = gradients["dW2"] * 2
        gradients["db1"] = gradients["db1"] * 4
    return gradients


def gradient_check_n(parameters, gradients, X, Y, epsilon=1e-7, print_msg=False):
    """Central-difference check of ``gradients`` against :func:`forward_propagation_n`.

    Each entry i of the stacked parameters is moved by ``+-epsilon`` in a copy,
    and ``(J(+) - J(-)) / (2 epsilon)`` is compared with the stacked gradients.

    Parameters
    ----------
    parameters : dict with ``W1, b1, W2, b2, W3, b3`` (4-5-3-1 shapes)
    gradients : dict with ``dW1, db1, ..., db3``
    X : ndarray, shape (4, m)
    Y : array_like, shape (1, m) or (m,)
    epsilon : float
    print_msg : bool, print the verdict (threshold 2e-7)

    Returns
    -------
    difference : numpy.float64
    """
    theta, _ = dictionary_to_vector(parameters)
    grad = gradients_to_vector(gradients)
    gradapprox = np.zeros((theta.shape[0], 1))
    for i in range(theta.shape[0]):
        J = []
        for step in (epsilon, -epsilon):
            moved = np.copy(theta)
            moved[i] = moved[i] + step
            J.append(forward_propagation_n(X, Y, vector_to_dictionary(moved))[0])
        gradapprox[i] = (J[0] - J[1]) / (2 * epsilon)
    return _difference(grad, gradapprox, print_msg)

