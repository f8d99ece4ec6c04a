"""The ``"numba"`` backend: the kernels of :mod:`._numba_kernels` compiled with ``@njit``.

Kernel sources: ``_numba_kernels/forward.py`` (bias + activation),
``backward.py`` (the fused backward), ``output.py``, ``reduce.py``,
``update.py``, ``loop.py`` (the whole training loop); wrappers in
``_numba_backend.py``, bound here to the serial compiled variant ``_K``.
"""

from . import _numba_backend as _nb
from ._numba_backend import DTYPES

__all__ = ["NAME", "DTYPES", "to_device", "to_host", "gather_columns", "forward_hidden",
           "forward_hidden_offset", "forward_output", "output_delta",
           "output_delta_chain", "output_loss", "backward_hidden", "weight_grad",
           "input_grad", "dropout_forward", "dropout_backward", "weight_step",
           "sgd_update", "momentum_update", "adam_update", "all_finite", "max_abs",
           "zeros_like", "compiled_loop", "gather_rows_into", "gather_targets_into",
           "forward_hidden_into", "forward_output_into", "output_delta_into",
           "backward_hidden_into", "weight_grad_into", "input_grad_into"]

NAME = "numba"
#: The compiled kernels the wrappers call.
_K = _nb.compile_kernels(parallel=False)

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
