"""Backprop for one small network, written out and checked: :func:`explain`.

For a tiny network on random float64 data, :func:`explain` lays out

1. the forward pass, layer by layer, with concrete shapes;
2. the backward pass under the chosen ``scaling``: every ``dZ``, ``dW``, ``db``
   and ``dA_prev`` with its formula, its shapes, what it is the derivative *of*
   and where the ``1/m`` enters, each compared with central differences of
   that very derivative (perturbing ``W[l]``, ``b[l]``, or the intermediate
   ``Z[l]`` / ``A[l-1]`` and re-running the network from there);
3. the one-example view (``dw = dz a^T``) next to the batch view, and why the
   transpose appears (one entry written as its index sum);
4. where the deferred and absorbed conventions differ, and what ``1/m`` in
   every layer does;
5. the output layer: the course's chain through ``dA[L]`` against the fused
   ``A - Y``, including a saturated float32 output where the chain breaks.

The analytic quantities all come from fastnn itself: :mod:`fastnn.engine`'s
passes run on the NumPy backend, with a per-layer hook that records a copy of
what each layer produced.  Only the finite
differences are new arithmetic, and they come from
:func:`fastnn.finite_differences.central_differences`.  :func:`render_text`
and :func:`render_markdown` turn the result into a terminal page or Markdown.

The package is cut by job:

``result``
    the dataclasses of :class:`ExplainResult`, one per section;
``checks``
    :class:`Check`, the tolerances ``TOL_*`` (their derivation is that
    module's docstring) and the finite-difference checker;
``problem``
    the random network and data, and fastnn's own backward pass, recorded;
``sections``
    building each section, and :func:`explain`;
``render``
    one row model of the result, laid out by :func:`render_text` and
    :func:`render_markdown`.

``fastnn.explain`` is the function :func:`explain` once :mod:`fastnn` is
imported; this module is reached with
``importlib.import_module("fastnn.explain")``.
"""

from .checks import (CHECK_MARK, CROSS_MARK, FD_NOISE_C, FD_STEP, KINK_MARGIN, KINK_REDRAWS, MAX_FD_ENTRIES,
                     TOL_EXACT, TOL_F32, TOL_FD, Check, _fd_check, _FiniteDiff, _rel)
from ._format import _fmt_err, _matrix, _num, _shape
from .problem import _EveryLayerMistake, _record_backward
from .render import _every_layer_cells, render_markdown, render_text
from .result import (BackwardLayer, Conventions, EveryLayerRow, ExplainResult, ForwardStep, IndexSum, Line,
                     OneExample, OutputLayer, Quantity)
from .sections import explain

__all__ = [
    "explain", "render_text", "render_markdown",
    "ExplainResult", "ForwardStep", "Quantity", "BackwardLayer", "Line", "IndexSum", "OneExample",
    "EveryLayerRow", "Conventions", "OutputLayer", "Check",
    "CHECK_MARK", "CROSS_MARK", "FD_STEP", "TOL_FD", "TOL_EXACT", "TOL_F32", "FD_NOISE_C", "KINK_MARGIN",
    "KINK_REDRAWS", "MAX_FD_ENTRIES",
]
