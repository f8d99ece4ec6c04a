"""The ``"numba"`` backend: the kernels of :mod:`._numba_kernels` compiled with ``@njit``.

Kernel sources: ``_numba_kernels/forward.py`` (bias + activation),
``backward.py`` (the fused backward), ``output.py``, ``reduce.py``,
``update.py``, ``loop.py`` (the whole training loop); wrappers in
``_numba_backend.py``, bound here to the serial compiled variant ``_K``
(:func:`._numba_backend.interface`).
"""

from . import _interface
from . import _numba_backend as _nb
from ._numba_backend import DTYPES  # noqa: F401

__all__ = [*_interface.CONSTANTS, *_interface.KERNELS, *_interface.OPTIONAL_KERNELS]

NAME = "numba"
#: The compiled kernels the wrappers call.
_K = _nb.compile_kernels(parallel=False)

# Every kernel name of __all__, bound to _K.
globals().update(_nb.interface(_K))
