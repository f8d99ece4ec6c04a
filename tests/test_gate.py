"""The test gate itself: an installed backend that fails to load fails the run,
and a skip whose reason is not on the allow-list fails the run.

The registry tells "not installed" (a package it needs is absent) from
"broken" (everything is installed, yet loading failed); the suite's conftest
turns a broken or required backend into failures, never skips.  Each property
is checked in a fresh interpreter or a fresh pytest run with the fault planted.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fastnn
from fastnn.backends import REGISTRY
from fastnn_suite import BACKEND_STATUS, REQUIRED_BACKENDS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: A meta-path finder that makes importing the modules named in FASTNN_TEST_BREAK
#: fail: as if absent (ModuleNotFoundError naming the module) for a third-party
#: package, as a bug (ImportError of a name) for one of fastnn's own modules.
BREAKER = textwrap.dedent('''
    import importlib.abc, os, sys

    BROKEN = set(filter(None, os.environ.get("FASTNN_TEST_BREAK", "").split(",")))

    class Breaker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            for broken in BROKEN:
                if name == broken or name.startswith(broken + "."):
                    if broken.startswith("fastnn"):
                        raise ImportError(f"cannot import name 'renamed' from {name!r}", name=name)
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Breaker())
''')


def _env(tmp_path, broken):
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BREAKER)
    path = os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path, FASTNN_TEST_BREAK=",".join(broken))
    env.pop("FASTNN_REQUIRE_BACKENDS", None)
    return env


def _status_in_child(tmp_path, broken):
    code = ("import json, warnings, fastnn\n"
            "st = fastnn.available_backends()\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    picked = fastnn.get_backend('auto').NAME\n"
            "print(json.dumps({'status': {n: [s.state, s.reason] for n, s in st.items()},\n"
            "                  'picked': picked, 'warnings': [str(x.message) for x in w]}))")
    res = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path, broken),
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_required_backends_load():
    """Where Numba is installed both Numba backends must load (FASTNN_REQUIRE_BACKENDS
    can name others, as .ci/run does for cuda under the simulator)."""
    failing = {n: str(BACKEND_STATUS[n]) for n in REQUIRED_BACKENDS if not BACKEND_STATUS[n]}
    assert not failing, f"required backends do not load: {failing}"


def test_status_reads_as_its_state():
    for name, status in fastnn.available_backends().items():
        assert status.name == name and bool(status) == status.available == (status.state == "available")
        assert str(status).startswith(status.state)


def test_a_broken_backend_is_not_reported_as_missing(tmp_path):
    """An import error inside fastnn's Numba backend: "broken", naming the error; auto
    falls back to NumPy with a warning that says broken (the gate then fails the run)."""
    child = _status_in_child(tmp_path, ["fastnn.backends._numba_kernels.reduce"])
    for name in ("numba", "numba-parallel"):
        state, reason = child["status"][name]
        assert state == "broken", (name, state, reason)
        assert "installed but failed to load" in reason and "renamed" in reason
    assert child["status"]["numpy"][0] == "available"
    assert child["picked"] == "numpy"
    assert any("broken" in w for w in child["warnings"]), child["warnings"]


def test_a_missing_package_is_not_installed(tmp_path):
    child = _status_in_child(tmp_path, ["numba", "llvmlite"])
    for name in ("numba", "numba-parallel", "cuda"):
        state, reason = child["status"][name]
        assert state == "not installed", (name, state, reason)
        assert "pip install numba" in reason


def test_unknown_backend_in_the_environment_names_the_variable(tmp_path):
    res = subprocess.run([sys.executable, "-c", "import fastnn; fastnn.get_backend()"],
                         env=dict(_env(tmp_path, []), FASTNN_BACKEND="bogus"),
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode != 0 and "FASTNN_BACKEND" in res.stderr and "'bogus'" in res.stderr


# -------------------------------------------------------- the gate, end to end

GATE_TESTS = textwrap.dedent('''
    import pytest
    from fastnn.backends import get_backend
    from conftest import backend_params

    @pytest.mark.parametrize("name", backend_params(["numpy", "numba"]))
    def test_backend_runs(name):
        assert get_backend(name).NAME == name

    def test_skips(request):
        pytest.skip(request.config.getoption("--skip-reason"))
''')


def _run_gate(tmp_path, broken=(), skip_reason="CUDA hardware: none here", extra_env=None):
    tests = tmp_path / "suite"
    tests.mkdir()
    shutil.copy(HERE / "conftest.py", tests / "conftest.py")
    (tests / "test_gate_child.py").write_text(GATE_TESTS)
    (tests / "conftest_options.py").write_text(
        "def pytest_addoption(parser):\n    parser.addoption('--skip-reason')\n")
    env = dict(_env(tmp_path, list(broken)), **(extra_env or {}))
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                          "conftest_options", "--skip-reason", skip_reason, "-rs", str(tests)],
                         env=dict(env, PYTHONPATH=os.pathsep.join([str(tests), env["PYTHONPATH"]])),
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    return res.returncode, res.stdout + res.stderr


def test_gate_passes_a_clean_run_with_an_allowed_skip(tmp_path):
    rc, out = _run_gate(tmp_path)
    assert rc == 0, out[-3000:]
    assert "2 passed, 1 skipped" in out


def test_gate_fails_a_skip_not_on_the_allow_list(tmp_path):
    rc, out = _run_gate(tmp_path, skip_reason="pandas is not installed")
    assert rc == 1, out[-3000:]
    assert "skips not on the allow-list" in out and "pandas is not installed" in out


def test_gate_fails_when_the_numba_backend_is_broken(tmp_path):
    """The issue's scenario: one import inside the Numba backend renamed.  Its tests fail
    (no skip), so the run exits non-zero."""
    rc, out = _run_gate(tmp_path, broken=["fastnn.backends._numba_kernels.reduce"])
    assert rc == 1, out[-3000:]
    assert "1 failed" in out and "broken" in out


def test_every_registered_backend_has_a_status():
    assert set(BACKEND_STATUS) == set(REGISTRY)
