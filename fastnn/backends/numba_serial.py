"""The ``"numba"`` backend: the kernels of :mod:`._numba_kernels` compiled with ``@njit``.

Kernel sources: ``_numba_kernels/forward.py`` (bias + activation),
``backward.py`` (the fused backward), ``output.py``, ``reduce.py``,
``update.py``; wrappers in ``_numba_backend.py``.
"""

from ._numba_backend import build

NAME = "numba"
globals().update(build(parallel=False))
