"""Compile for a GPU every CUDA kernel the simulator ran, with the argument types it ran with.

The simulator runs a kernel's Python source and never compiles it, so a kernel
that numba-cuda cannot type, or NVVM cannot compile, passes every simulated test
and fails at its first launch on a GPU.  ``tests/cuda/conftest.py`` records,
under the simulator, the factory call that built each kernel of the backend and
the Numba types of every launch's arguments (:class:`Recorder`); at the end of
the session :func:`compile_recorded` compiles each pair to PTX for compute
capability 9.0 with ``numba.cuda.compile_ptx`` (NVVM and NVRTC only: no GPU, no
driver) in a child process without the simulator, and returns what failed.

The child needs the CUDA compiler libraries: ``pip install -e ".[test,cuda-test]"``.
"""

import collections
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numba

ROOT = Path(__file__).resolve().parents[2]

#: The compute capability compiled for (the H200 the backend was first run on).
CC = (9, 0)


class Recorder:
    """``(kind, dtype name, factory key) -> {argument types}`` of the launches seen."""

    def __init__(self):
        self.launches = collections.defaultdict(set)

    def built(self, kernel, kind, dtype, key):
        """Remember which factory call built ``kernel`` (the simulator's kernel object)."""
        kernel._fastnn_factory = (kind, dtype.name, tuple(key))

    def launched(self, kernel, args):
        """Record one launch of ``kernel`` (kernels no factory built are not the backend's)."""
        factory = getattr(kernel, "_fastnn_factory", None)
        if factory is not None:
            self.launches[factory].add(tuple(numba.typeof(a) for a in args))


def compile_recorded(recorder, timeout=1200):
    """Compile the recorded kernels in a child process; ``(number compiled, failures)``."""
    if not recorder.launches:
        return 0, []
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "launches.pkl"
        path.write_bytes(pickle.dumps(dict(recorder.launches)))
        out = subprocess.run([sys.executable, __file__, str(path)], env=env, capture_output=True,
                             text=True, timeout=timeout)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return 0, [f"the compiling child process failed (exit {out.returncode}):\n"
                   f"{out.stderr[-3000:]}"]
    result = json.loads(lines[-1])
    return result["compiled"], result["failures"]


def _pretend_a_device():
    """Let the backend import and numba-cuda compile device functions with no GPU.

    The backend refuses to load without a device, and numba-cuda asks the current
    device for its compute capability when it compiles a device function.
    """
    import types

    import numba.cuda
    import numba.cuda.dispatcher

    numba.cuda.is_available = lambda: True
    numba.cuda.dispatcher.get_current_device = (
        lambda: types.SimpleNamespace(compute_capability=CC))


def _compile(launches):
    import numpy as np
    from numba import cuda

    from fastnn.backends import cuda_backend

    compiled, failures = 0, []
    for (kind, dtype, key), signatures in sorted(launches.items(), key=str):
        fn = cuda_backend._FACTORIES[kind](np.dtype(dtype), *key).py_func
        for sig in sorted(signatures, key=str):
            try:
                cuda.compile_ptx(fn, sig, cc=CC)
                compiled += 1
            except Exception as exc:  # typing, lowering or NVVM errors alike
                failures.append(f"{kind} {dtype} {key} {sig}: {type(exc).__name__}: "
                                f"{str(exc)[:2000]}")
    return compiled, failures


def main(path):
    launches = pickle.loads(Path(path).read_bytes())
    _pretend_a_device()
    try:
        from numba.cuda.cudadrv import nvrtc, nvvm

        nvvm.NVVM()                     # loads libnvvm
        nvrtc._get_nvrtc_version()      # loads libnvrtc
    except Exception as exc:
        compiled, failures = 0, [
            f"the CUDA compiler libraries (NVVM, NVRTC) cannot be loaded ({type(exc).__name__}: "
            f"{exc}); pip install -e '.[test,cuda-test]'"]
    else:
        compiled, failures = _compile(launches)
    print(json.dumps({"compiled": compiled, "failures": failures}))


if __name__ == "__main__":
    main(sys.argv[1])
