"""The ``"numba-parallel"`` backend: the kernels of :mod:`._numba_kernels`
compiled with ``@njit(parallel=True)``, their ``prange`` loops split over threads.

Work is split into fixed (row, column block) tasks and reductions combine the
block partials in a fixed order, so results are bitwise those of the serial
``"numba"`` backend, whatever ``NUMBA_NUM_THREADS`` is.

In a child forked after this process ran parallel kernels on GNU OpenMP
(which would terminate the child at its first parallel region), the compiled
variant ``_K`` that every wrapper calls is replaced by the serial backend's
(``SERIAL_AFTER_FORK`` is then True): same results, one thread.  See
``_numba_config.FORK_UNSAFE_LAYERS``.
"""

import importlib

from . import _numba_backend as _nb
from ._numba_backend import DTYPES
from ._numba_config import on_unsafe_fork, start_threads

__all__ = ["NAME", "DTYPES", "to_device", "to_host", "gather_columns", "forward_hidden",
           "forward_hidden_offset", "forward_output", "output_delta",
           "output_delta_chain", "output_loss", "backward_hidden", "weight_grad",
           "input_grad", "dropout_forward", "dropout_backward", "weight_step",
           "sgd_update", "momentum_update", "adam_update", "all_finite", "max_abs",
           "zeros_like", "compiled_loop", "gather_rows_into", "gather_targets_into",
           "forward_hidden_into", "forward_output_into", "output_delta_into",
           "backward_hidden_into", "weight_grad_into", "input_grad_into"]

NAME = "numba-parallel"
#: True in a forked child that runs the serial kernels (see the module docstring).
SERIAL_AFTER_FORK = False


class _StartOnFirstUse:
    """The compiled kernels; the first one looked up starts Numba's threads
    (``_numba_config.start_threads``: the threading layer is chosen then, not at
    import, so a library loaded in between is taken into account)."""

    def __init__(self, kernels):
        self._kernels = kernels

    def __getattr__(self, name):  # only until the kernels are copied in
        start_threads()
        vars(self).update(vars(self._kernels))
        return vars(self)[name]


#: The compiled kernels the wrappers call (swapped in place after an unsafe fork).
_K = _StartOnFirstUse(_nb.compile_kernels(parallel=True))

to_device = _nb.to_device
to_host = _nb.to_host
gather_columns = _nb.gather_columns
forward_hidden = _nb.variant(_nb.forward_hidden, _K)
forward_hidden_offset = _nb.variant(_nb.forward_hidden_offset, _K)
forward_output = _nb.variant(_nb.forward_output, _K)
output_delta = _nb.variant(_nb.output_delta, _K)
output_delta_chain = _nb.output_delta_chain
output_loss = _nb.variant(_nb.output_loss, _K)
backward_hidden = _nb.variant(_nb.backward_hidden, _K)
weight_grad = _nb.variant(_nb.weight_grad, _K)
input_grad = _nb.input_grad
dropout_forward = _nb.variant(_nb.dropout_forward, _K)
dropout_backward = _nb.variant(_nb.dropout_backward, _K)
weight_step = _nb.weight_step
sgd_update = _nb.variant(_nb.sgd_update, _K)
momentum_update = _nb.variant(_nb.momentum_update, _K)
adam_update = _nb.variant(_nb.adam_update, _K)
all_finite = _nb.variant(_nb.all_finite, _K)
max_abs = _nb.max_abs
zeros_like = _nb.zeros_like
compiled_loop = _nb.compiled_loop
gather_rows_into = _nb.variant(_nb.gather_rows_into, _K)
gather_targets_into = _nb.variant(_nb.gather_targets_into, _K)
forward_hidden_into = _nb.variant(_nb.forward_hidden_into, _K)
forward_output_into = _nb.variant(_nb.forward_output_into, _K)
output_delta_into = _nb.variant(_nb.output_delta_into, _K)
backward_hidden_into = _nb.variant(_nb.backward_hidden_into, _K)
weight_grad_into = _nb.variant(_nb.weight_grad_into, _K)
input_grad_into = _nb.input_grad_into


def _use_serial_kernels():
    global SERIAL_AFTER_FORK
    SERIAL_AFTER_FORK = True
    serial = importlib.import_module("fastnn.backends.numba_serial")
    vars(_K).update(vars(serial._K))


on_unsafe_fork(_use_serial_kernels)
