"""Drop-in for the Week 3 helper file ``planar_utils`` (and the notebook's graded functions).

``from fastnn.compat.planar_utils import *`` gives ``sigmoid`` (no cache),
``load_planar_dataset``, ``load_extra_datasets`` and ``plot_decision_boundary``
as the course's file has them, plus the W3A1 functions of
:mod:`fastnn.compat.planar` (``layer_sizes`` ... ``nn_model``, ``predict``).
"""

from ._data import load_extra_datasets, load_planar_dataset
from ._plot import plot_decision_boundary
from .planar import (
    backward_propagation,
    compute_cost,
    forward_propagation,
    initialize_parameters,
    layer_sizes,
    nn_model,
    predict,
    sigmoid,
    update_parameters,
)

__all__ = [
    "plot_decision_boundary", "sigmoid", "load_planar_dataset", "load_extra_datasets",
    "layer_sizes", "initialize_parameters", "forward_propagation", "compute_cost",
    "backward_propagation", "update_parameters", "nn_model", "predict",
]
