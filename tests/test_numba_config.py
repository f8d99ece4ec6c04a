"""Numba's threads (fastnn/backends/_numba_config.py): the threading layer chosen at the
first parallel kernel, and the process environment left as the user set it."""

import ctypes.util
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")

from fastnn.backends._numba_config import threading_layer_choice  # noqa: E402

PROBE = r'''
import json, os, sys
import numpy as np
before = os.environ.get("OMP_WAIT_POLICY")
if sys.argv[1] == "gomp":
    import ctypes
    ctypes.CDLL(sys.argv[2], mode=ctypes.RTLD_GLOBAL)  # as `import torch` loads its libgomp
from fastnn.backends import _numba_config, get_backend
gomp = _numba_config.gnu_openmp_loaded()
bk = get_backend("numba-parallel")
at_import = os.environ.get("OMP_WAIT_POLICY")
bk.forward_hidden(np.ones((3, 4)), np.ones((4, 5)), np.zeros((3, 1)), "relu")
import numba
print(json.dumps({"before": before, "at_import": at_import, "after": os.environ.get("OMP_WAIT_POLICY"),
                  "gomp": gomp, "layer": numba.threading_layer()}))
'''


def _probe(wait_policy=None, mode="plain", layer=None):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER", "OMP_DISPLAY_ENV")}
    # GNU OpenMP prints the settings it read when it loads; a passive wait policy
    # shows as GOMP_SPINCOUNT = '0' (unset, it also shows OMP_WAIT_POLICY = 'PASSIVE'
    # but spins 300000 times before it sleeps).
    env["OMP_DISPLAY_ENV"] = "VERBOSE"
    if wait_policy is not None:
        env["OMP_WAIT_POLICY"] = wait_policy
    if layer is not None:
        env["NUMBA_THREADING_LAYER"] = layer
    args = [sys.executable, "-c", PROBE, mode] + ([ctypes.util.find_library("gomp")] if mode == "gomp" else [])
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stdout + out.stderr


@pytest.mark.parametrize("value", [None, "ACTIVE", "passive", ""])
def test_the_environment_is_never_changed(value):
    record, _ = _probe(value)
    assert record["before"] == record["at_import"] == record["after"] == value


def test_openmp_loaded_by_numba_reads_a_passive_wait_policy_when_unset():
    record, text = _probe(None)
    if record["layer"] != "omp":
        assert "GOMP_SPINCOUNT" not in text  # GNU OpenMP was not loaded at all
    else:
        assert "GOMP_SPINCOUNT = '0'" in text


def test_openmp_loaded_by_numba_reads_the_users_own_wait_policy():
    record, text = _probe("ACTIVE")
    if record["layer"] == "omp":
        assert "OMP_WAIT_POLICY = 'ACTIVE'" in text and "GOMP_SPINCOUNT = '0'" not in text


@pytest.mark.parametrize("configured", ["default", "DEFAULT"])
def test_gnu_openmp_loaded_by_another_library_chooses_workqueue(configured):
    assert threading_layer_choice(configured, gomp_loaded=True) == "workqueue"


@pytest.mark.parametrize("configured", ["default", "omp", "tbb", "workqueue", "threadsafe"])
def test_numbas_choice_is_kept_without_gnu_openmp_and_the_users_always(configured):
    assert threading_layer_choice(configured, gomp_loaded=False) is None
    if configured.lower() != "default":
        assert threading_layer_choice(configured, gomp_loaded=True) is None


def test_a_globally_loaded_libgomp_is_detected_and_numba_parallel_avoids_it():
    plain, _ = _probe()
    assert plain["gomp"] is False
    if ctypes.util.find_library("gomp") is None:  # no GNU OpenMP on this machine at all
        return
    record, _ = _probe(mode="gomp")
    assert record["gomp"] is True and record["layer"] == "workqueue"
    forced, _ = _probe(mode="gomp", layer="omp")  # the user's choice wins
    assert forced["layer"] == "omp"


COMPILE_PROBE = r"""
import numpy as np
from fastnn.backends import get_backend
get_backend("numba").forward_hidden(np.ones((3, 4)), np.ones((4, 5)), np.zeros((3, 1)), "relu")
"""


def _compile_messages(cache_dir, quiet=None):
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_QUIET"}
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    if quiet is not None:
        env["FASTNN_QUIET"] = quiet
    out = subprocess.run([sys.executable, "-c", COMPILE_PROBE], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    return [line for line in out.stderr.splitlines() if "compiling kernels" in line]


def test_a_cold_cache_says_once_that_kernels_compile_and_a_warm_one_says_nothing(tmp_path):
    from fastnn.backends._numba_config import COLD_COMPILE_SECONDS
    cold = _compile_messages(tmp_path)
    assert cold == [f"compiling kernels, first run only, about {COLD_COMPILE_SECONDS} s "
                    "(cached on disk for later runs)"]
    assert _compile_messages(tmp_path) == []


USER_COMPILE_PROBE = r"""
import numba
from fastnn.backends import get_backend
get_backend("numba")                            # registers the compile message's listener
ns = {}
exec("def double(x):\n    return 2 * x", ns)   # no __name__ in its globals: __module__ is None
assert ns["double"].__module__ is None
print(numba.njit(ns["double"])(21))
"""


def test_a_users_function_without_a_module_compiles_beside_fastnn(tmp_path):
    """The compile message's listener sees every Numba compile in the process, the
    user's too; a function made by ``exec`` has ``__module__`` None."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", USER_COMPILE_PROBE], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["42"] and "compiling kernels" not in out.stderr


@pytest.mark.parametrize("quiet", ["1", "yes"])
def test_fastnn_quiet_silences_the_compile_message(tmp_path, quiet):
    assert _compile_messages(tmp_path, quiet) == []
