"""fastnn imports and computes with only NumPy present.

A fresh interpreter installs a meta-path finder that makes ``import numba``
(and llvmlite, scipy) raise ImportError *before* fastnn is imported, runs
the public API with the default backend, and reports its numbers and warnings
as JSON on stdout; they must equal the in-process NumPy backend's.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnn
import naive
from fastnn_suite import GRADCHECK_TOL, assert_close, make_problem

BLOCKED = ("numba", "llvmlite", "scipy")

CHILD = textwrap.dedent(r'''
    import importlib.abc, json, sys, warnings

    BLOCKED = set(sys.argv[1].split(","))

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by test_no_numba)", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    for mod in list(sys.modules):
        if mod.partition(".")[0] in BLOCKED:
            del sys.modules[mod]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import numpy as np
        import fastnn

        problem = json.loads(sys.stdin.read())
        params = {k: np.array(v, dtype=problem["dtype"]) for k, v in problem["params"].items()}
        X, Y = np.array(problem["X"]), np.array(problem["Y"])
        kw = problem["kw"]
        status = fastnn.available_backends()
        J, grads = fastnn.gradients(params, X, Y, backend=None, **kw)
        J2, grads2 = fastnn.gradients(params, X, Y, **kw)       # a second call warns no more
        AL, cache = fastnn.forward(params, X, hidden=kw["hidden"], output=kw["output"])
        grads3 = fastnn.backward(params, cache, Y, scaling=kw["scaling"], l2=kw["l2"])
        err = fastnn.gradcheck(params, X, Y, **kw)
        fastnn.set_backend("auto")
        J4, _ = fastnn.gradients(params, X, Y, **kw)
        working = {}
        for name, st in status.items():
            if st.available:   # every backend that claims to work must work
                working[name] = fastnn.gradients(params, X, Y, backend=name, **kw)[0]
            else:
                try:
                    fastnn.get_backend(name)
                    working[name] = "get_backend succeeded for an unavailable backend"
                except fastnn.BackendUnavailableError:
                    pass

    print(json.dumps({
        "J": J, "grads": {k: v.tolist() for k, v in grads.items()},
        "same_again": J2 == J and all((grads2[k] == grads[k]).all() and (grads3[k] == grads[k]).all()
                                      for k in grads) and J4 == J,
        "dtypes": sorted({str(v.dtype) for v in grads.values()}),
        "AL": AL.tolist(), "cache_backend": cache.backend, "gradcheck": err,
        "status": {n: [st.state, st.reason] for n, st in status.items()}, "working": working,
        "blocked_loaded": sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED),
        "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
    }))
''')

KW = dict(hidden="tanh", output="softmax", scaling="deferred", output_grad="fused", l2=0.3)


def _run_child(params, X, Y, kw):
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_BACKEND"}
    problem = json.dumps({"params": {k: v.tolist() for k, v in params.items()},
                          "dtype": str(params["W1"].dtype),
                          "X": X.tolist(), "Y": Y.tolist(), "kw": kw})
    proc = subprocess.run([sys.executable, "-c", CHILD, ",".join(BLOCKED)], input=problem,
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, f"child failed:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def problem():
    return make_problem([4, 5, 3], 6, "softmax", np.float64, seed=41)


@pytest.fixture(scope="module")
def child(problem):
    return _run_child(*problem, KW)


def test_imports_and_runs_without_numba(child):
    assert child["blocked_loaded"] == [], "a blocked module got imported"
    assert child["status"]["numpy"] == ["available", ""]
    assert child["cache_backend"] == "numpy"
    assert child["dtypes"] == ["float64"]
    assert child["same_again"]
    assert child["gradcheck"] < GRADCHECK_TOL
    for name in fastnn.backends.REGISTRY:
        assert name in child["status"]
    # a backend that reports itself available works; an unavailable one raises
    for name, value in child["working"].items():
        assert isinstance(value, float), f"{name}: {value}"


def test_backends_needing_numba_report_why(child):
    needs_numba = [n for n in fastnn.backends.REGISTRY if "numba" in fastnn.backends.REGISTRY[n]]
    for name in needs_numba:
        state, reason = child["status"][name]
        assert state == "not installed", f"backend {name!r}: {state} with numba absent ({reason})"
        assert "numba" in reason.lower() or "llvmlite" in reason.lower(), reason


def test_at_most_one_warning(child):
    assert len(child["warnings"]) <= 1, child["warnings"]


def test_same_numbers_as_in_process_numpy_backend(child, problem):
    params, X, Y = problem
    J, grads = fastnn.gradients(params, X, Y, backend="numpy", **KW)
    J_mag, mags = naive.gradient_magnitudes(params, X, Y, KW["hidden"], KW["output"], KW["scaling"], KW["l2"])
    assert_close(child["J"], J, np.float64, magnitude=J_mag)
    assert set(child["grads"]) == set(grads)
    for k in grads:
        assert_close(np.array(child["grads"][k]), grads[k], np.float64, magnitude=mags[k], err_msg=k)
    AL, _ = fastnn.forward(params, X, hidden=KW["hidden"], output=KW["output"], backend="numpy")
    assert_close(np.array(child["AL"]), AL, np.float64,
                 magnitude=naive.forward_magnitudes(params, X, KW["hidden"], KW["output"])[0])
    for name, value in child["working"].items():
        assert_close(value, J, np.float64, magnitude=J_mag, err_msg=name)


def test_float32_without_numba():
    params, X, Y = make_problem([3, 4, 1], 5, "sigmoid", np.float32, seed=42)
    kw = dict(hidden="relu", output="sigmoid", scaling="absorbed", output_grad="chain", l2=0.0)
    child = _run_child(params, X, Y, kw)  # JSON carries float32 values exactly
    assert child["dtypes"] == ["float32"]
    J, grads = fastnn.gradients(params, X, Y, backend="numpy", **kw)
    J_mag, mags = naive.gradient_magnitudes(params, X, Y, "relu", "sigmoid", "absorbed")
    assert_close(child["J"], J, np.float32, magnitude=J_mag)
    for k in grads:
        assert_close(np.array(child["grads"][k]), grads[k], np.float32, magnitude=mags[k], err_msg=k)
    assert len(child["warnings"]) <= 1, child["warnings"]


def test_import_fastnn_does_not_import_numba():
    """Backends are imported on first use: plain ``import fastnn`` (and the
    NumPy backend) must not pay for Numba even where it is installed."""
    code = ("import sys, fastnn, numpy as np; fastnn.get_backend('numpy'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'llvmlite')))")
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_BACKEND"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
