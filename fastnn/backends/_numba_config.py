"""Every Numba default used by fastnn, in one place.

- ``cache=True``: compiled kernels are written to disk (``NUMBA_CACHE_DIR`` or
  ``__pycache__``) so a second process loads them instead of compiling.
- no ``fastmath``: it would let LLVM reassociate the float sums (changing the
  reduction order, hence results, with the vector width) and assume no NaN/inf,
  which the divergence checks rely on.
- ``error_model="numpy"``: division by zero gives inf/NaN like NumPy instead of
  raising (and the kernels skip the zero check on every division).
- ``nogil=True``: two threads can train two models at once.
- threads (:func:`start_threads`, at the first kernel of ``numba-parallel``):
  Numba's threading layer is chosen, and its workers started, once per process.
  Where GNU OpenMP is already loaded into the global symbol namespace (PyTorch
  does that at ``import torch``), Numba's ``omp`` layer would run on that
  runtime and an epoch was 10-25x slower; fastnn then asks for the ``workqueue``
  layer (logged at INFO on ``fastnn.backends``).  When the OpenMP runtime is
  loaded by Numba itself, it reads ``OMP_WAIT_POLICY=PASSIVE`` (idle threads
  sleep instead of spinning), set only while the runtime loads and removed
  right after, unless the user set their own; ``os.environ`` is otherwise never
  changed.  ``NUMBA_THREADING_LAYER`` set by the user is always obeyed.
- the first compile (:class:`_FirstCompileMessage`): a WARNING on the
  ``fastnn.compile`` logger, once, when a kernel is compiled because the disk
  cache has none ("compiling kernels, first run only, about N s");
  ``FASTNN_QUIET=1`` silences it.
- fork safety (:data:`FORK_UNSAFE_LAYERS`): a child forked from a process that
  has run parallel kernels on GNU OpenMP would be terminated by libgomp at its
  first parallel region ("fork() called from a process already using GNU
  OpenMP"); in such a child the ``numba-parallel`` backend runs the serial
  kernels (bitwise the same results).

A kernel source is a module-level function in :mod:`._numba_kernels`; it is
compiled once for the serial backend and once, as a separate function object
with its own qualified name, for the parallel one (``prange`` is ``range`` in
the serial compile).  Numba's cache is keyed by module, qualified name and
bytecode but not by the ``parallel`` flag, so one function object compiled both
ways could load the wrong variant from disk; distinct names keep them apart.
"""

import contextlib
import ctypes
import hashlib
import logging
import os
import threading
import types

import numba
import numba.core.event

#: Numba threading layers a forked child must not use once the parent has
#: started them: GNU OpenMP ("omp"; Numba's own docs call only TBB, workqueue
#: and non-GNU OpenMP fork-safe; its "omp" layer is GNU's on Linux, and is
#: treated as unsafe everywhere here).
FORK_UNSAFE_LAYERS = ("omp",)

_fork_callbacks = []


def on_unsafe_fork(callback):
    """Call ``callback()`` in every child forked after this process started a threading
    layer of :data:`FORK_UNSAFE_LAYERS` (registered with ``os.register_at_fork``)."""
    _fork_callbacks.append(callback)


def _running_layer():
    """The threading layer Numba has started in this process, or None."""
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return None


def _after_fork_in_child():
    if _running_layer() in FORK_UNSAFE_LAYERS:
        for callback in _fork_callbacks:
            callback()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

_log = logging.getLogger("fastnn.backends")
_start_lock = threading.Lock()
_started = False


def gnu_openmp_loaded():
    """True when a GNU OpenMP runtime is loaded into the process's global symbol
    namespace (``GOMP_parallel`` resolves from it), as after ``import torch``."""
    try:
        return hasattr(ctypes.CDLL(None), "GOMP_parallel")
    except (OSError, TypeError):  # no global namespace to ask (Windows)
        return False


def threading_layer_choice(configured, gomp_loaded):
    """The threading layer fastnn asks Numba for, or None to leave Numba's choice.

    Parameters
    ----------
    configured : str
        ``numba.config.THREADING_LAYER``: ``"default"`` unless the user chose
        one (``NUMBA_THREADING_LAYER``), which is then always kept.
    gomp_loaded : bool
        :func:`gnu_openmp_loaded` before Numba starts its threads.

    Returns
    -------
    str or None
        ``"workqueue"`` when GNU OpenMP was loaded by another library: Numba's
        ``omp`` layer would share that runtime, and a ``numba-parallel`` epoch
        at MNIST shape took 16.9 s instead of 0.66 s beside PyTorch
        (``python -m benchmarks.numba_beside_torch``).
    """
    if str(configured).lower() != "default" or not gomp_loaded:
        return None
    return "workqueue"


@contextlib.contextmanager
def _passive_wait_while_loading():
    """``OMP_WAIT_POLICY=PASSIVE`` in the environment while the block runs, when unset.

    GNU OpenMP reads the wait policy once, when the runtime is loaded (Numba
    loads it as its threads start), and has no call to change it afterwards;
    spinning idle threads took the cores from the working thread on a busy
    machine (a minibatch epoch of numba-parallel on 2 shared cores: 1.6 s
    spinning, 0.11 s passive).  The variable is removed again on the way out.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        yield
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        yield
    finally:
        os.environ.pop("OMP_WAIT_POLICY", None)


def start_threads():
    """Choose Numba's threading layer and start its workers, once per process.

    Called before the first parallel kernel (``numba_parallel``) and before
    the thread policy reads Numba's thread count.  A layer already running (the
    user's own parallel functions ran first) is left as it is.
    """
    global _started
    if _started:
        return
    with _start_lock:
        if _started:
            return
        if _running_layer() is None:
            layer = threading_layer_choice(numba.config.THREADING_LAYER, gnu_openmp_loaded())
            if layer is not None:
                _log.info("GNU OpenMP is already loaded in this process (by another library, "
                          "e.g. PyTorch); numba-parallel uses Numba's %r threading layer, "
                          "which does not share that runtime", layer)
                numba.config.THREADING_LAYER = layer
            with _passive_wait_while_loading():
                numba.get_num_threads()  # loads the layer and starts its workers
        _started = True


#: The "about N s" of the first-compile message: a cold compile of the default
#: path (``Model.fit`` of ``[784, 256, 128, 10]``, minibatch Adam, then a
#: full-batch fit; fresh ``NUMBA_CACHE_DIR``) took 6-21 s on 2 quiet cores and
#: 25-40 s on the same cores shared with other jobs.
COLD_COMPILE_SECONDS = 20

_compile_log = logging.getLogger("fastnn.compile")


def quiet():
    """Whether ``FASTNN_QUIET`` (anything but empty or ``0``) silences the compile messages."""
    return os.environ.get("FASTNN_QUIET", "").strip() not in ("", "0")


class _FirstCompileMessage(numba.core.event.Listener):
    """Logs, once per process, a WARNING on ``fastnn.compile`` when Numba starts
    compiling one of fastnn's kernels: a kernel compiles only when the on-disk
    cache has no copy of it (``numba:compile`` is not raised for a cache load),
    and the first run then sits silent for seconds.  ``FASTNN_QUIET=1`` silences it."""

    def __init__(self):
        self.said = False

    def on_start(self, event):
        if self.said:
            return
        func = getattr(event.data.get("dispatcher"), "py_func", None)
        if not (getattr(func, "__module__", None) or "").startswith("fastnn."):  # None: exec'd
            return
        self.said = True
        if quiet():
            return
        _compile_log.warning("compiling kernels, first run only, about %d s "
                             "(cached on disk for later runs)", COLD_COMPILE_SECONDS)

    def on_end(self, event):
        pass


numba.core.event.register("numba:compile", _FirstCompileMessage())


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


#: Name of the file, next to the cached kernels, that records which kernel sources they came from.
_DIGEST_FILE = "fastnn-kernels.digest"


def drop_stale_cache(probe, extra_sources=()):
    """Delete cached kernels compiled from other versions of the kernel sources.

    Numba checks a cached function against the timestamp of the file that
    defines it, not of the files whose functions it calls or inlines: after an
    edit of ``vmath.py`` alone, ``loop.sgd_loop`` would load its old machine
    code.  So a digest of every kernel source (and of this file) is kept next
    to the cache; when it differs, the package's ``.nbi``/``.nbc`` files are
    removed before anything loads, and the kernels compile afresh.  ``probe``
    is a plain function defined in the kernel package (it locates the cache);
    ``extra_sources`` are paths of files outside it whose functions the kernels
    compile in (``fastnn/_dropout.py``'s Philox).  Best effort: an unwritable cache directory is left alone.
    """
    src_dir = os.path.dirname(probe.__code__.co_filename)
    sources = sorted(f for f in os.listdir(src_dir) if f.endswith(".py"))
    digest = hashlib.sha256()
    for path in [os.path.join(src_dir, f) for f in sources] + [__file__, *extra_sources]:
        with open(path, "rb") as fh:
            digest.update(fh.read())
    digest = digest.hexdigest()
    try:
        cache_dir = numba.njit(cache=True)(probe)._cache.cache_path
        stamp = os.path.join(cache_dir, _DIGEST_FILE)
        if os.path.exists(stamp):
            with open(stamp) as fh:
                if fh.read().strip() == digest:
                    return
        prefixes = tuple(f[:-3] + "." for f in sources)
        for name in os.listdir(cache_dir) if os.path.isdir(cache_dir) else ():
            if name.endswith((".nbi", ".nbc")) and name.startswith(prefixes):
                os.remove(os.path.join(cache_dir, name))
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{stamp}.{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(digest)
        os.replace(tmp, stamp)
    except (AttributeError, OSError):
        pass
