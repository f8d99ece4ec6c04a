"""The ``"numba-parallel"`` backend: the kernels of :mod:`._numba_kernels`
compiled with ``@njit(parallel=True)``, their ``prange`` loops split over threads.

Work is split into fixed (row, column block) tasks and reductions combine the
block partials in a fixed order, so results are bitwise those of the serial
``"numba"`` backend, whatever ``NUMBA_NUM_THREADS`` is.

In a child forked after this process ran parallel kernels on GNU OpenMP
(which would terminate the child at its first parallel region), every kernel
of this module is replaced by the serial backend's (``SERIAL_AFTER_FORK`` is
then True): same results, one thread.  See ``_numba_config.FORK_UNSAFE_LAYERS``.
"""

import functools
import importlib

from ._numba_backend import build
from ._numba_config import on_unsafe_fork

NAME = "numba-parallel"
#: True in a forked child that runs the serial kernels (see the module docstring).
SERIAL_AFTER_FORK = False
_TABLE = build(parallel=True)
globals().update(_TABLE)


def _serial(name):
    """The serial backend's kernel ``name``, imported on first call."""
    @functools.wraps(_TABLE[name])
    def call(*args, **kwargs):
        serial = importlib.import_module("fastnn.backends.numba_serial")
        return getattr(serial, name)(*args, **kwargs)
    return call


def _use_serial_kernels():
    global SERIAL_AFTER_FORK
    SERIAL_AFTER_FORK = True
    globals().update({name: _serial(name) for name, value in _TABLE.items() if callable(value)})


on_unsafe_fork(_use_serial_kernels)
