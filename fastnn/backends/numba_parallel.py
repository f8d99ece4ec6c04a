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

from . import _interface
from . import _numba_backend as _nb
from ._numba_backend import DTYPES  # noqa: F401
from ._numba_config import on_unsafe_fork, start_threads

__all__ = [*_interface.CONSTANTS, *_interface.KERNELS, *_interface.OPTIONAL_KERNELS]

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

# Every kernel name of __all__, bound to _K.
globals().update(_nb.interface(_K))


def _use_serial_kernels():
    global SERIAL_AFTER_FORK
    SERIAL_AFTER_FORK = True
    serial = importlib.import_module("fastnn.backends.numba_serial")
    vars(_K).update(vars(serial._K))


on_unsafe_fork(_use_serial_kernels)
