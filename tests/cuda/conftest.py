"""Fixtures for the CUDA backend tests.

These tests need numba.cuda to be able to run kernels: a CUDA GPU, or Numba's
simulator, which is switched on by ``NUMBA_ENABLE_CUDASIM=1`` in the
environment *before* numba is imported (so it is set by whoever starts pytest,
never here)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cuda tests/cuda    # no GPU
    python -m pytest -m cuda tests/cuda                           # on a GPU

When neither is usable every test in this folder is skipped, with the reason.
Under the simulator the fixture ``_simulator_as_strict_as_a_gpu`` makes it warn
and refuse where numba-cuda does on a GPU (small grids, host arrays handed to a
kernel, host-side item assignment, NumPy methods a device array lacks), and at
the end of the session compile every kernel it ran for a GPU (``ptx_check.py``;
``pip install -e ".[test,cuda-test]"`` brings NVVM and NVRTC, no GPU needed).

Tolerances come from ``tests/conftest.py`` (``tol`` / ``assert_close``, whose
docstring derives them); the copy below is used only if that file does not
provide them.
"""

import contextlib
import importlib.util
import inspect
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT_CONFTEST = HERE.parent / "conftest.py"

_HOW = ("run them under the simulator with NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cuda "
        "tests/cuda (the variable must be set before numba is imported), or on a machine "
        "with a CUDA GPU")


def _cuda_status():
    """(usable, text): whether numba.cuda can run kernels here, and on what or why not."""
    try:
        from numba import config, cuda
    except Exception as exc:  # numba-cuda missing or broken
        return False, (f"numba.cuda cannot be imported ({type(exc).__name__}: {exc}); "
                       f"pip install -e '.[test,cuda]', then {_HOW}")
    simulating = bool(getattr(config, "ENABLE_CUDASIM", 0))
    try:
        usable = cuda.is_available()
    except Exception as exc:
        return False, f"numba.cuda.is_available() failed ({type(exc).__name__}: {exc}); {_HOW}"
    if usable:
        return True, "numba.cuda simulator" if simulating else "CUDA GPU"
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" and not simulating:
        return False, ("NUMBA_ENABLE_CUDASIM=1 was set after numba had been imported, so the "
                       f"simulator is off and there is no GPU; {_HOW}")
    return False, ("no CUDA GPU and NUMBA_ENABLE_CUDASIM is not set: the CUDA tests are "
                   f"skipped; {_HOW}")


CUDA_USABLE, CUDA_STATUS = _cuda_status()
if not CUDA_USABLE:
    # The suite's allow-list admits skips for missing CUDA hardware only.
    CUDA_STATUS = f"CUDA hardware: {CUDA_STATUS}"
#: The run requires the cuda backend (``FASTNN_REQUIRE_BACKENDS`` names it, as
#: .ci/run does for the simulator process): it fails instead of skipping.
CUDA_REQUIRED = "cuda" in {n.strip() for n in os.environ.get("FASTNN_REQUIRE_BACKENDS", "").split(",")}
SIMULATING = CUDA_USABLE and CUDA_STATUS.startswith("numba.cuda simulator")


def pytest_report_header(config):
    return f"fastnn CUDA tests: {CUDA_STATUS}"


def pytest_collection_modifyitems(config, items):
    if CUDA_USABLE:
        return
    if CUDA_REQUIRED and any(HERE in Path(item.path).resolve().parents for item in items):
        pytest.exit(f"FASTNN_REQUIRE_BACKENDS requires cuda, which cannot run here: {CUDA_STATUS}",
                    returncode=1)
    skip = pytest.mark.skip(reason=CUDA_STATUS)
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(skip)


def _pin_to_one_cpu():
    """Pin the calling thread, and so the threads it starts, to one of its CPUs.

    Returns the CPUs it was allowed before, or None where affinity cannot be set.
    The CPU is chosen by process id, so that simulator runs side by side spread out.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {allowed[os.getpid() % len(allowed)]})
    except OSError:
        return None
    return set(allowed)


@pytest.fixture(scope="session", autouse=True)
def _fast_simulator():
    """Under the simulator, make syncthreads cheap.

    The simulator runs one Python thread per CUDA thread, and its block manager
    busy-polls them for ``syncthreads``; with the default 5 ms GIL switch
    interval every barrier costs milliseconds.  A shorter interval makes the
    suite about 10 times faster.  Results do not depend on it: the kernels
    keep their shared memory in the launch's dynamic buffer, which the
    simulator allocates before any thread starts (cuda_backend's docstring).

    The session also runs on one CPU.  The GIL changes hands between the
    simulator's threads thousands of times per launch; with the threads free to
    run on any core, each hand-over waits for another core to wake a thread,
    which on a machine busy with other work costs milliseconds.  On the 2-core
    reference machine a ``gradients`` call of a 5-5-5-3 net took 0.65 s idle,
    2 s beside one busy process and 3 s beside two; pinned, 0.7 s in all three
    (tests/cuda/test_cuda_reliability.py: 23 s idle, 95 s and 136 s unpinned;
    ~35 s pinned, ~85 s when a busy process is pinned to each core as well).
    """
    if not SIMULATING:
        yield
        return
    old = sys.getswitchinterval()
    sys.setswitchinterval(5e-5)
    cpus = _pin_to_one_cpu()
    yield
    sys.setswitchinterval(old)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)


def _load(path, name):
    """The module at ``path``, imported by path as ``name`` (the test folders are no packages)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session", autouse=True)
def _simulator_as_strict_as_a_gpu():
    """Under the simulator, do what numba-cuda does on a GPU where the simulator is lenient.

    On an H200 the suite first failed almost everywhere although it passed under
    the simulator: numba-cuda warns (``NumbaPerformanceWarning``, an error here)
    when a launch has fewer than 128 blocks, when a kernel gets a host array
    (an implicit copy), and when a device array's item is assigned from the host
    (a one-block kernel); and a device array has no ``astype`` or ``tolist``,
    which the simulator's stand-in forwards to NumPy.  This fixture makes the
    simulator warn and refuse the same way, so CI sees those mistakes.

    The simulator also never compiles a kernel: the fixture records each kernel
    the backend builds and the argument types of its launches, and when the
    session ends compiles them all for a GPU (``ptx_check``, no GPU needed); a
    kernel that does not compile fails the run.
    """
    if not SIMULATING:
        yield
        return
    strict = _load(HERE / "strict_simulator.py", "_fastnn_cuda_strict_simulator")
    ptx = _load(HERE / "ptx_check.py", "_fastnn_cuda_ptx_check")
    recorder = ptx.Recorder()
    with pytest.MonkeyPatch.context() as mp:
        for target, name, value in strict.patches(recorder):
            mp.setattr(target, name, value)
        yield
    compiled, failures = ptx.compile_recorded(recorder)
    if failures:
        raise AssertionError(
            f"{len(failures)} of the kernel launches the simulator ran do not compile for a "
            f"GPU ({compiled} did):\n" + "\n".join(failures[:20]))


@pytest.fixture(scope="session")
def cb():
    """The CUDA backend module (skips when numba.cuda cannot run here)."""
    if not CUDA_USABLE:
        pytest.skip(CUDA_STATUS)
    from fastnn.backends import cuda_backend
    return cuda_backend


@pytest.fixture
def registered(cb, monkeypatch):
    """Make ``backend="cuda"`` resolve to the CUDA backend for one test."""
    import fastnn.backends as backends

    monkeypatch.setitem(backends.REGISTRY, "cuda", cb.__name__)
    monkeypatch.setitem(backends._loaded, "cuda", cb)
    return "cuda"


@pytest.fixture(scope="session")
def launch(cb):
    """``with launch(tpb, tile):`` sets the backend's TPB and TILE for the block.

    A context manager rather than monkeypatch, so that hypothesis tests (which
    must not use function-scoped fixtures) can vary them per example.
    """
    @contextlib.contextmanager
    def config(tpb, tile):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(cb, "TPB", tpb)
            mp.setattr(cb, "TILE", tile)
            yield
    return config


@pytest.fixture
def small_launch(cb, monkeypatch):
    """TPB = 4 and TILE = 2: tiny arrays already span several blocks and tiles."""
    monkeypatch.setattr(cb, "TPB", 4)
    monkeypatch.setattr(cb, "TILE", 2)


# ------------------------------------------------------------------ tolerances

def _local_tol(dtype, n_terms=16):
    """Fallback copy of tests/conftest.py's ``tol``: (16 * eps * sqrt(n_terms), tiny).

    A length-n dot product errs by at most n*u*sum|terms| (Higham eq. 3.5) and
    typically by sqrt(n)*u*sum|terms| for random data; ``rtol`` multiplies that
    sum of |terms| (the *magnitude*), and 16 covers the chain of rounded
    operations of a gradient.  ``atol`` is the smallest normal number.
    """
    info = np.finfo(dtype)
    return 16.0 * float(info.eps) * math.sqrt(max(int(n_terms), 1)), float(info.tiny)


def _local_assert_close(actual, expected, dtype, n_terms=16, magnitude=None, err_msg=""):
    """``|actual - expected| <= rtol * magnitude + atol`` elementwise."""
    rtol, atol = _local_tol(dtype, n_terms)
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    assert actual.shape == expected.shape, f"{err_msg}: shape {actual.shape} != {expected.shape}"
    mag = np.abs(expected) if magnitude is None else np.asarray(magnitude, dtype=np.float64)
    err = np.abs(actual - expected)
    bound = rtol * mag + atol
    assert (err <= bound).all(), (f"{err_msg}: max error/bound {float(np.max(err / bound)):.3g} "
                                  f"(dtype {np.dtype(dtype).name}, rtol {rtol:.3g})")


class Tolerances:
    """Holds ``tol(dtype, n_terms)`` and ``assert_close(..., n_terms, magnitude, err_msg)``."""

    def __init__(self, tol, assert_close, source):
        self.tol = tol
        self.assert_close = assert_close
        self.source = source


def _takes_magnitude(fn):
    try:
        return "magnitude" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@pytest.fixture(scope="session")
def tols(request):
    """The suite's tolerance helpers from tests/conftest.py, else the local copy."""
    for plugin in request.config.pluginmanager.get_plugins():
        path = getattr(plugin, "__file__", None)
        if path and Path(path).resolve() == ROOT_CONFTEST.resolve():
            tol, close = getattr(plugin, "tol", None), getattr(plugin, "assert_close", None)
            if tol is not None and close is not None and _takes_magnitude(close):
                return Tolerances(tol, close, str(ROOT_CONFTEST))
    return Tolerances(_local_tol, _local_assert_close, __file__)


@pytest.fixture(scope="session")
def naive():
    """tests/naive.py, the per-example float64 reference (for its error magnitudes)."""
    return _load(HERE.parent / "naive.py", "_fastnn_tests_naive")
