"""Thread policy: small problems run their BLAS and parallel kernels on one thread.

A training step of a small network is a few small matrix products and a few
element-wise kernels, each a fraction of a millisecond.  Splitting such a
product over threads saves little on a quiet machine, and on a busy one it
costs a great deal: OpenBLAS's workers spin after every product while the main
thread runs the next kernel, and Numba's workers wait beside them, so the
pools take turns on the cores instead of working (measured on 2 shared cores
with other jobs running: ``L_layer_model`` at the course's cat shape took
0.4-8.4 s with OpenBLAS's two threads and 0.15-0.27 s with one).

:func:`policy_for` is entered around every training call (``Model.fit``, the
estimators' fits, the course's fast path, ``network.forward/backward/gradients``):
when a step's multiply-adds are below :data:`SMALL_GEMM_MULTIPLY_ADDS` it limits
the BLAS NumPy loaded (threadpoolctl) and, on ``numba-parallel``, Numba's
threads of the calling thread to one for the duration of the call, then puts
them back (a step whose every product is below :data:`BLAS_SERIAL_MULTIPLY_ADDS`,
which OpenBLAS runs on one thread by itself, leaves the BLAS alone).  The parallel
kernels reduce in a fixed order whatever the thread count, so Numba's limit leaves
results bitwise the same; OpenBLAS's products
are not always so: for some shapes (a long inner dimension, e.g. ``dZ @ X.T``
of a narrow layer over many examples) its result depends on the thread count
in the last bits, so a limited run can differ from an unlimited one there
(each is deterministic).

The BLAS limit is process-wide and OpenBLAS ignores a limit set from any thread
but the main one, so it is applied only to calls from the main thread; a fit
in another thread runs the BLAS's own thread count (and, while a main-thread
call holds the limit, one thread).

A machine that other work keeps busy gets the same treatment at any size
(:func:`busy_cores`): when a training call starts, the running threads of
other processes are counted, and the BLAS (and Numba) get at most the cores
left over, at least one.  OpenBLAS's threads synchronise after every product,
so one of two threads sharing its core with another process holds the other
back: an MNIST-shape epoch took 5-12 s with two threads beside one busy
process against 0.35 s quiet (``python -m benchmarks.compare --load 1``).
The count is taken from ``/proc`` (Linux; elsewhere nothing is counted) when
the call starts and again at most every :data:`REFRESH_SECONDS` where the
engine calls :func:`refresh` (between the compiled calls of a minibatch
epoch), so a load that starts during a long fit is seen within about a second.

``FASTNN_THREAD_POLICY=size`` keeps the size rule and drops the count (the
thread counts, hence the last bits of some products, then depend on the
problem alone; the test suite runs so).

It does nothing when

- ``FASTNN_THREAD_POLICY=off`` is set;
- the user chose the thread counts: ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
  ``MKL_NUM_THREADS``, ``BLIS_NUM_THREADS`` or ``FLEXIBLAS_NUM_THREADS`` set leaves
  the BLAS alone, ``NUMBA_NUM_THREADS`` set (or a ``numba.set_num_threads`` call
  in effect) leaves Numba alone;
- threadpoolctl is not installed (BLAS only).

Nested calls share one limit: the first to enter sets it, the last to leave
restores the previous value.
"""

import contextlib
import os
import sys
import threading
import time

__all__ = ["SMALL_GEMM_MULTIPLY_ADDS", "step_multiply_adds", "policy_for", "policy_enabled",
           "busy_cores", "threads_for", "refresh"]

#: A step with fewer multiply-adds than this runs on one thread.  Measured on 2
#: cores (``python -m benchmarks.thread_policy``): see docs/benchmarks.md.
SMALL_GEMM_MULTIPLY_ADDS = 1 << 24

#: A product of fewer multiply-adds than this runs on one thread in OpenBLAS by itself:
#: its matrix-vector threshold, ``m * n < 2304 * GEMM_MULTITHREAD_THRESHOLD`` (4) in
#: ``interface/gemv.c`` (NumPy's ``matmul`` calls gemv for a one-row operand; gemm's own
#: threshold is 65536 * 4, the dot product's 10000 entries).  A step whose every product
#: is this small needs no BLAS limit, whose setting and restoring cost more than the
#: products (~12 of a policy's 16 us; a planar-data step is ~0.1 ms).
BLAS_SERIAL_MULTIPLY_ADDS = 2304 * 4

#: Environment variables by which a user sets the BLAS's thread count.
BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
            "FLEXIBLAS_NUM_THREADS")

_lock = threading.Lock()
_active = 0          # callers inside a BLAS limit
_blas_limit = None   # the threadpoolctl limit those callers share
_controller = None   # threadpoolctl.ThreadpoolController (it scans the loaded libraries)
_scanned_at = -1     # len(sys.modules) when it was built: an import may load another BLAS


def step_multiply_adds(weights, batch):
    """Multiply-adds of one training step: a forward product per layer, a
    weight-gradient product per layer, an input-gradient product per layer but
    the first.

    Parameters
    ----------
    weights : sequence of arrays
        The weight matrices (any orientation: only their sizes count).
    batch : int
        Examples per step.
    """
    sizes = [int(W.size) for W in weights]
    return int(batch) * (2 * sum(sizes) + sum(sizes[1:]))


def policy_enabled():
    """False when ``FASTNN_THREAD_POLICY`` is ``off`` (or ``0``/``false``/``no``)."""
    return os.environ.get("FASTNN_THREAD_POLICY", "").strip().lower() not in ("off", "0", "false", "no")


def _running_threads(path):
    """Runnable threads: the first number of /proc/loadavg's fourth field (system-wide), or
    the tasks of /proc/self/task in state R."""
    if path == "/proc/loadavg":
        with open(path) as fh:
            return int(fh.read().split()[3].split("/")[0])
    count = 0
    for task in os.listdir(path):
        try:
            with open(os.path.join(path, task, "stat")) as fh:
                count += fh.read().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            pass  # the thread ended meanwhile
    return count


def busy_cores(samples=5, interval=0.001):
    """Threads of other processes that keep running: the fewest, over ``samples``
    readings ``interval`` seconds apart, of the system's runnable threads less this
    process's.

    A busy process (a compile, another training job) is runnable at every reading; a
    short-lived one (a shell command, a kernel worker) is not, and counting it would
    halve a whole training call's threads for nothing (one such reading of three, at
    the start of a one-epoch MNIST fit, made it 1.7x slower), so the least count is
    taken, not the median.  Returns 0 where ``/proc`` cannot be read (not Linux).
    """
    fewest = None
    for i in range(samples):
        try:
            busy = max(0, _running_threads("/proc/loadavg") - _running_threads("/proc/self/task"))
        except (OSError, ValueError, IndexError):
            return 0
        fewest = busy if fewest is None else min(fewest, busy)
        if fewest == 0:
            return 0
        if i + 1 < samples:
            time.sleep(interval)
    return fewest


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_for(weights, batch, busy=None):
    """The thread count a training call gets: 1 below :data:`SMALL_GEMM_MULTIPLY_ADDS`
    multiply-adds per step, else the cores that other processes leave free (at least
    one; ``busy``: :func:`busy_cores`, counted when not given), or None for no limit."""
    if step_multiply_adds(weights, batch) < SMALL_GEMM_MULTIPLY_ADDS:
        return 1
    if busy is None:
        by_size = os.environ.get("FASTNN_THREAD_POLICY", "").strip().lower() == "size"
        busy = 0 if by_size else busy_cores()
    free = _cores() - busy
    return max(1, free) if free < _cores() else None


def policy_for(bk, weights, batch):
    """A context manager that runs small problems on one thread.

    Parameters
    ----------
    bk : module
        The backend the call runs on.
    weights : sequence of arrays
        The weight matrices, each ``(n_l, n_{l-1})`` (or transposed).
    batch : int
        Examples per step (``m`` for full batch).

    Returns
    -------
    context manager
        Limits the BLAS (and on ``numba-parallel`` the calling thread's Numba
        threads) to :func:`threads_for`'s count while inside: one thread when a
        step has fewer than :data:`SMALL_GEMM_MULTIPLY_ADDS` multiply-adds, the
        cores other processes leave free otherwise; when the user chose thread
        counts or set ``FASTNN_THREAD_POLICY=off``, does nothing.
    """
    if bk.NAME == "cuda" or not policy_enabled():
        return contextlib.nullcontext()
    return _Policy(weights, batch, bk.NAME == "numba-parallel")


#: :func:`refresh` counts the load again at most this often (a count takes ~3 ms).
REFRESH_SECONDS = 1.0

_local = threading.local()   # .stack: the policies this thread is inside, innermost last


class _Policy:
    """The limits of one training call (:func:`policy_for`), made on entry, undone on exit,
    and made again by :func:`refresh` when the count of free cores has changed."""

    def __init__(self, weights, batch, numba_too):
        self.args, self.numba_too = (weights, batch), numba_too
        self.n = threads_for(weights, batch)
        self.serial_blas = (self.n == 1 and max((int(W.size) for W in weights), default=0)
                            * int(batch) < BLAS_SERIAL_MULTIPLY_ADDS)
        self.blas, self.undo_numba, self.counted_at = False, None, time.monotonic()

    def __enter__(self):
        self._apply()
        stack = getattr(_local, "stack", None)
        _local.stack = (stack or []) + [self]
        return self

    def __exit__(self, *exc):
        _local.stack = [p for p in getattr(_local, "stack", []) if p is not self]
        self._release()

    def _apply(self):
        if self.n is not None:
            self.blas = False if self.serial_blas else _enter_blas(self.n)
            self.undo_numba = _enter_numba(self.n) if self.numba_too else None

    def _release(self):
        if self.undo_numba is not None:
            self.undo_numba()
        if self.blas:
            _exit_blas()
        self.blas, self.undo_numba = False, None

    def refresh(self):
        n = threads_for(*self.args)
        self.counted_at = time.monotonic()
        if n != self.n:
            self._release()
            self.n = n
            self._apply()


def refresh():
    """Count the load again for the training call in progress in this thread (the innermost
    :func:`policy_for`), at most every :data:`REFRESH_SECONDS`, and change its limits if
    the free cores changed: the engine calls it between the compiled calls of an epoch, so
    a load that starts during a long fit is seen within about a second."""
    stack = getattr(_local, "stack", None)
    if stack and time.monotonic() - stack[-1].counted_at >= REFRESH_SECONDS:
        stack[-1].refresh()


def _user_set(names):
    return any(os.environ.get(name, "").strip() for name in names)


def _enter_blas(n=1):
    """Limit the BLAS to ``n`` threads (the first caller's limit is shared by concurrent
    callers); True if counted in."""
    global _active, _blas_limit, _controller, _scanned_at
    if _user_set(BLAS_ENV) or threading.current_thread() is not threading.main_thread():
        return False
    with _lock:
        if _active == 0:
            if _controller is None or _scanned_at != len(sys.modules):
                try:
                    from threadpoolctl import ThreadpoolController
                except ImportError:
                    return False
                _scanned_at = len(sys.modules)   # before the scan, which may import
                _controller = ThreadpoolController().select(user_api="blas")
            if all(lib.num_threads <= n for lib in _controller.lib_controllers):
                return False  # n threads or fewer already: nothing to limit, nothing to restore
            _blas_limit = _controller.limit(limits=n)
        _active += 1
    return True


def _exit_blas():
    global _active, _blas_limit
    with _lock:
        _active -= 1
        if _active == 0:
            _blas_limit.restore_original_limits()
            _blas_limit = None


def _enter_numba(n=1):
    """Set the calling thread's Numba threads to at most ``n``; returns the undo, or None."""
    if _user_set(("NUMBA_NUM_THREADS",)):
        return None
    import numba

    from .backends import _numba_config
    _numba_config.start_threads()
    before = numba.get_num_threads()
    if before != numba.config.NUMBA_NUM_THREADS or before <= n:
        return None  # the user's own numba.set_num_threads is in effect, or n or fewer already
    numba.set_num_threads(n)
    return lambda: numba.set_num_threads(before)
