"""Every Numba default used by fastnn, in one place.

- ``cache=True``: compiled kernels are written to disk (``NUMBA_CACHE_DIR`` or
  ``__pycache__``) so a second process loads them instead of compiling.
- no ``fastmath``: it would let LLVM reassociate the float sums (changing the
  reduction order, hence results, with the vector width) and assume no NaN/inf,
  which the divergence checks rely on.
- ``error_model="numpy"``: division by zero gives inf/NaN like NumPy instead of
  raising (and the kernels skip the zero check on every division).
- ``nogil=True``: two threads can train two models at once.
- ``OMP_WAIT_POLICY=PASSIVE`` (unless already set): idle OpenMP threads sleep
  instead of spinning (see below).

A kernel source is a module-level function in :mod:`._numba_kernels`; it is
compiled once for the serial backend and once, as a separate function object
with its own qualified name, for the parallel one (``prange`` is ``range`` in
the serial compile).  Numba's cache is keyed by module, qualified name and
bytecode but not by the ``parallel`` flag, so one function object compiled both
ways could load the wrong variant from disk; distinct names keep them apart.
"""

import os
import types

# OpenMP threads that spin while waiting for work steal the cores from the
# thread doing it when the machine is busy: measured on 2 shared cores under
# load, a minibatch epoch of numba-parallel took 1.6 s spinning and 0.11 s
# passive.  Must be set before Numba starts its OpenMP pool; a user's own
# setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402

JIT_OPTIONS = {"cache": True, "fastmath": False, "error_model": "numpy", "nogil": True}

#: Columns per reduction block.  Row sums are accumulated per (row, block) in a
#: fixed order, then the block partials are added in a fixed order, so the
#: serial and parallel backends give bitwise the same results for any thread count.
BLOCK = 1024


def jit(func=None, **options):
    """``numba.njit`` with fastnn's defaults (serial)."""
    opts = {**JIT_OPTIONS, **options}
    if func is None:
        return lambda f: numba.njit(**opts)(f)
    return numba.njit(**opts)(func)


def compile_variant(func, parallel):
    """Compile a kernel source for the serial (``parallel=False``) or parallel backend."""
    if not parallel:
        return jit(func)
    clone = types.FunctionType(func.__code__, func.__globals__, func.__name__ + "_parallel",
                               func.__defaults__, func.__closure__)
    clone.__qualname__ = func.__qualname__ + "_parallel"
    clone.__module__ = func.__module__
    clone.__doc__ = func.__doc__
    return jit(clone, parallel=True)
