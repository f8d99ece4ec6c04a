"""fastnn.backends._cuda_probe: numba-cuda's typing registries load when the CUDA
backend loads on a GPU, and a failure to load them is reported with both versions.

The probe runs in a child process without the simulator (under the simulator
``numba.cuda`` is the simulator's package and nothing compiles); it needs no GPU.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cuda

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import sys
from fastnn.backends import _cuda_probe
if sys.argv[1] == "failing":
    from numba.cuda.descriptor import cuda_target
    def refresh():
        raise AttributeError("module 'numpy' has no attribute 'row_stack'")
    cuda_target.typing_context.refresh = refresh
try:
    _cuda_probe.check_compiler()
except RuntimeError as exc:
    print("RuntimeError:", exc)
else:
    print("OK")
"""


def _probe(case):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", PROBE, case], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_the_registries_load_with_the_numpy_installed_here(cb):
    assert _probe("real") == "OK"


def test_registries_that_fail_to_load_name_both_versions(cb):
    import numpy as np
    from importlib.metadata import version

    said = _probe("failing")
    assert said.startswith(f"RuntimeError: numba-cuda {version('numba-cuda')} cannot compile "
                           f"kernels with NumPy {np.__version__} (AttributeError: "), said
    assert "row_stack" in said and "'cuda' extra" in said
