"""Kernel sources shared by the ``numba`` and ``numba-parallel`` backends.

Each kernel is a module-level function whose outer loop is a ``prange`` over
independent tasks (a row, or a row and a block of ``BLOCK`` columns); the
backends compile them with :func:`fastnn.backends._numba_config.compile_variant`.
Small scalar helpers are compiled once with ``jit`` and inlined into both.

- ``activation``: activation codes, g(z) and g'(z) from a = g(z)
- ``forward``: bias + activation, in place
- ``backward``: the fused hidden-layer backward, dZ = dA * g'(Z) and db partial sums in one pass
- ``output``: output-layer dZ = scale (A - Y), db partials, loss partials
- ``reduce``: block partials -> row sums, pairwise
- ``update``: dW epilogue and the optimizer updates, in place
- ``dropout``: the fused dropout mask (Philox of ``fastnn/_dropout.py``), compare and scale
"""

import os

from .._numba_config import drop_stale_cache


def _probe():
    """Locates this package's kernel cache (never called)."""


#: Kernel sources outside this package: the dropout hash (dropout.py compiles it in) and the
#: CBLAS constants the compiled minibatch steps pass (steps.py).
EXTRA_SOURCES = (os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                              "_dropout.py"),
                 os.path.join(os.path.dirname(os.path.dirname(__file__)), "_blas.py"))

drop_stale_cache(_probe, EXTRA_SOURCES)
