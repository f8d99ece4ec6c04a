"""Compatibility names for :mod:`fastnn.engine` (the engine's former private module).

New code imports :mod:`fastnn.engine`.  Two names differ in meaning there:
``_passes.sgd_loop`` is the kernel-by-kernel loop, :func:`fastnn.engine.sgd_steps`
(not :func:`fastnn.engine.sgd_loop`, which also drives a backend's compiled
loop), and ``_backward``'s ``weights`` mode is one of three public functions.
"""

from .engine import (DUAL_MAX_M, HOST_OUTPUTS, SparseRows, _backward as _backward_mode,
                     cost as _cost,
                     dual_pays, forward as _forward, forward_dropout as _forward_dropout,
                     scales as _scales, sgd_steps as sgd_loop)

__all__ = ["DUAL_MAX_M", "HOST_OUTPUTS", "SparseRows", "_backward", "_cost", "_forward",
           "_forward_dropout", "_scales", "dual_pays", "sgd_loop"]


def _backward(bk, Ws, As, ZL, Y, hidden, output, scaling, output_grad, l2, weights="full",
              sample_weight=None, drop=None, Gs=None):
    """:func:`fastnn.engine.backward` (``weights="full"``), ``backward_products``
    (``"bare"``) or ``backward_deltas`` (``"deltas"``)."""
    return _backward_mode(bk, Ws, As, ZL, Y, hidden, output, scaling, output_grad, l2, weights,
                          sample_weight, drop, Gs)
