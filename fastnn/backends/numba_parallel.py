"""The ``"numba-parallel"`` backend: the kernels of :mod:`._numba_kernels`
compiled with ``@njit(parallel=True)``, their ``prange`` loops split over threads.

Work is split into fixed (row, column block) tasks and reductions combine the
block partials in a fixed order, so results are bitwise those of the serial
``"numba"`` backend, whatever ``NUMBA_NUM_THREADS`` is.
"""

from ._numba_backend import build

NAME = "numba-parallel"
globals().update(build(parallel=True))
