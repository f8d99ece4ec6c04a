"""The simulator made as strict as numba-cuda on a GPU where it is lenient.

Used by ``tests/cuda/conftest.py::_simulator_as_strict_as_a_gpu`` (its docstring
says why): :func:`patches` lists the attributes to replace on the simulator's
kernel and device-array classes and on the backend, so that a launch under 128
blocks, a host array handed to a kernel and a host-side item assignment warn as
numba-cuda does (``NumbaPerformanceWarning``, unless its config turns the warning
off), an attribute that numba-cuda's real device array lacks raises, and every
kernel the backend builds and launches is recorded for ``ptx_check``.
"""

import json
import math
import os
import subprocess
import sys
import warnings

import numpy as np

#: Lists, in a process without the simulator, the attributes of numba-cuda's real
#: device array: its class's, and those its methods assign on ``self``.
_DEVICE_ARRAY_ATTRIBUTES = r"""
import ast, inspect, json, textwrap
from numba.cuda.cudadrv.devicearray import DeviceNDArray
names = {n for n in dir(DeviceNDArray) if not n.startswith("__")}
for cls in DeviceNDArray.__mro__:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        continue
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
              and isinstance(node.ctx, ast.Store) and isinstance(node.value, ast.Name)
              and node.value.id == "self"}
print(json.dumps(sorted(names)))
"""


def _real_device_array_attributes():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-c", _DEVICE_ARRAY_ATTRIBUTES], env=env, check=True,
                         capture_output=True, text=True, timeout=300)
    return frozenset(json.loads(out.stdout.strip().splitlines()[-1]))


def _performance_warning(message, setting):
    """Warn as numba-cuda does on a GPU, where ``setting`` of its config is on."""
    from numba.cuda.core import config
    from numba.cuda.core.errors import NumbaPerformanceWarning

    if getattr(config, setting, 0) and not getattr(config, "DISABLE_PERFORMANCE_WARNINGS", 0):
        warnings.warn(NumbaPerformanceWarning(message), stacklevel=3)


def patches(recorder):
    """``[(target, name, replacement), ...]`` for ``MonkeyPatch.setattr``; ``recorder`` is a
    ``ptx_check.Recorder``.  Call under the simulator only."""
    from numba.cuda.simulator import kernel as sim_kernel
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    from fastnn.backends import cuda_backend

    real_kernel = cuda_backend._kernel

    def recording_kernel(kind, dtype, *key):
        quiet = real_kernel(kind, dtype, *key)
        recorder.built(quiet.kernel, kind, np.dtype(dtype), key)
        return quiet

    real = _real_device_array_attributes()
    configure, launch = sim_kernel.FakeCUDAKernel.__getitem__, sim_kernel.FakeCUDAKernel.__call__
    forward, assign = FakeCUDAArray.__getattr__, FakeCUDAArray.__setitem__

    def strict_configure(self, configuration):
        kernel = configure(self, configuration)
        blocks = math.prod(self.grid_dim)
        if blocks < 128:
            _performance_warning(f"Grid size {blocks} will likely result in GPU "
                                 "under-utilization due to low occupancy.",
                                 "CUDA_LOW_OCCUPANCY_WARNINGS")
        return kernel

    def strict_launch(self, *args):
        if not self._device and host_side():
            recorder.launched(self, args)
            if any(isinstance(a, np.ndarray) and a.ndim > 0 for a in args):
                _performance_warning("Host array used in CUDA kernel will incur copy "
                                     "overhead to/from device.", "CUDA_WARN_ON_IMPLICIT_COPY")
        return launch(self, *args)

    def host_side():
        return not sim_kernel._kernel_context  # inside a kernel the simulator is the GPU

    def strict_forward(self, name):
        if host_side() and not name.startswith("__") and name not in real:
            raise AttributeError(f"a CUDA device array has no attribute {name!r} (the "
                                 "simulator's stand-in would forward it to NumPy)")
        return forward(self, name)

    def strict_assign(self, idx, val):
        if host_side():
            _performance_warning("Grid size 1 will likely result in GPU under-utilization due "
                                 "to low occupancy (a device array's item assignment "
                                 "launches a kernel).", "CUDA_LOW_OCCUPANCY_WARNINGS")
        return assign(self, idx, val)

    return [(sim_kernel.FakeCUDAKernel, "__getitem__", strict_configure),
            (sim_kernel.FakeCUDAKernel, "__call__", strict_launch),
            (FakeCUDAArray, "__getattr__", strict_forward),
            (FakeCUDAArray, "__setitem__", strict_assign),
            (cuda_backend, "_kernel", recording_kernel)]
