"""Drop-in for the Week 4 application's helper file ``dnn_app_utils_v3``.

``from fastnn.compat.dnn_app_utils_v3 import *`` gives that file's names with
its behaviour: ``initialize_parameters_deep`` is the application's (seed 1,
``randn / sqrt(n_{l-1})``) and ``update_parameters`` assigns the new arrays to
the dict it is given.  The other functions are the Step-by-Step ones of
:mod:`fastnn.compat.dnn` (the file defines them the same way); ``load_data``
reads the cat images from a folder you choose.  The notebook's graded
``two_layer_model`` and ``L_layer_model`` are included (with ``backend=``).
"""

from ._data import load_data
from ._plot import print_mislabeled_images
from . import dnn as _dnn
from .dnn import (
    L_layer_model,
    L_model_backward,
    L_model_forward,
    compute_cost,
    initialize_parameters,
    linear_activation_backward,
    linear_activation_forward,
    linear_backward,
    linear_forward,
    predict,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    two_layer_model,
)
from .planar import _updated

__all__ = [
    "sigmoid", "relu", "relu_backward", "sigmoid_backward", "load_data",
    "initialize_parameters", "initialize_parameters_deep", "linear_forward",
    "linear_activation_forward", "L_model_forward", "compute_cost", "linear_backward",
    "linear_activation_backward", "L_model_backward", "update_parameters", "predict",
    "print_mislabeled_images", "two_layer_model", "L_layer_model",
]


def initialize_parameters_deep(layer_dims):
    """The application's L-layer initialisation (``np.random.seed(1)`` inside).

    Parameters
    ----------
    layer_dims : list or tuple of int, ``[n_0, n_1, ..., n_L]``

    Returns
    -------
    parameters : dict
        ``W_l = randn(n_l, n_{l-1}) / sqrt(n_{l-1})``, drawn W1, W2, ... in
        order, and ``b_l = zeros((n_l, 1))``.
    """
    return _dnn.initialize_parameters_deep(layer_dims, variant="app")


def update_parameters(parameters, grads, learning_rate):
    """One gradient-descent step, written into the dict given (as the course's file).

    Arguments as :func:`fastnn.compat.planar.update_parameters`.

    Returns
    -------
    parameters : the same dict, its ``W_l``, ``b_l`` keys bound to the new arrays
        ``W_l - learning_rate * dW_l``, ``b_l - learning_rate * db_l`` (the
        old arrays are not modified).
    """
    return _updated(parameters, grads, learning_rate, copy=False)
