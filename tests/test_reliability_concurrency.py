"""Concurrency and determinism (issue 7, part 5).

* Two threads training different models at once give bit for bit the results
  of the same runs made one after the other (every backend; numba-parallel is
  the one with threads of its own).
* Under Numba's ``workqueue`` threading layer -- its fallback without OpenMP or
  TBB, which aborts the process on concurrent parallel launches -- fastnn
  serialises the launches (regression: SIGABRT "Concurrent access has been
  detected"); checked in a subprocess.
* Two runs with the same seeds are bit-identical, on every backend, both fit
  paths, both dtypes.
* The numba-parallel results do not depend on NUMBA_NUM_THREADS (fixed-order
  block reductions): a subprocess with 1 thread and one with 2 train to the same bits.
"""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastnn
from fastnn_suite import BACKEND_PARAMS, requires_backends

CPU = [p for p in BACKEND_PARAMS if p.values[0] != "cuda"]


def _data(seed, n0=20, m=1500, classes=3, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n0, m)).astype(dtype), rng.integers(0, classes, m)


def _train(backend, seed, batch_size, optimizer, dtype=np.float64, epochs=3):
    X, Y = _data(seed, dtype=dtype)
    model = fastnn.Model([20, 48, 3], "relu", "softmax", dtype=dtype, seed=seed)
    h = model.fit(X, Y, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=0.05,
                  shuffle_seed=seed, backend=backend, progress=False)
    return model.params, h.cost


def _same(a, b):
    params_a, cost_a = a
    params_b, cost_b = b
    assert cost_a == cost_b
    for k in params_a:
        np.testing.assert_array_equal(params_a[k], params_b[k], err_msg=k)


def _in_thread(func):
    """``func()`` run in a new thread (not the main one); its result."""
    out = []
    worker = threading.Thread(target=lambda: out.append(func()))
    worker.start()
    worker.join(timeout=300)
    return out[0]


@pytest.mark.parametrize("backend", CPU)
@pytest.mark.parametrize("batch_size, optimizer", [(128, "adam"), (None, "sgd")], ids=["minibatch", "whole-loop"])
def test_two_threads_equal_sequential_runs(backend, batch_size, optimizer):
    # The runs one after the other are made in a thread other than the main one,
    # as the concurrent ones: the thread policy limits the BLAS only for calls
    # from the main thread (fastnn/threads.py), and for some shapes OpenBLAS's
    # result depends on its thread count.
    sequential = _in_thread(lambda: {seed: _train(backend, seed, batch_size, optimizer) for seed in (1, 2)})
    results, errors = {}, []
    barrier = threading.Barrier(2)

    def work(seed):
        try:
            barrier.wait()
            results[seed] = _train(backend, seed, batch_size, optimizer)
            # and the functional API at the same time
            params = fastnn.init_params([20, 48, 3], seed=seed)
            X, Y = _data(seed)
            results[("g", seed)] = fastnn.gradients(params, X, Y, output="softmax", backend=backend)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    for seed in (1, 2):
        _same(results[seed], sequential[seed])
        X, Y = _data(seed)
        J, g = _in_thread(lambda: fastnn.gradients(fastnn.init_params([20, 48, 3], seed=seed), X, Y,
                                                   output="softmax", backend=backend))
        assert results[("g", seed)][0] == J
        for k in g:
            np.testing.assert_array_equal(results[("g", seed)][1][k], g[k])


@pytest.mark.parametrize("backend", CPU)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("batch_size, optimizer", [(100, "momentum"), (None, "sgd"), (None, "adam")],
                         ids=["minibatch", "whole-loop", "full-batch-adam"])
def test_same_seed_same_bits(backend, dtype, batch_size, optimizer):
    _same(_train(backend, 7, batch_size, optimizer, dtype, epochs=2),
          _train(backend, 7, batch_size, optimizer, dtype, epochs=2))


CHILD = r'''
import json, sys, threading
import numpy as np, fastnn
mode = sys.argv[1]
rng = np.random.default_rng(0)
X = rng.standard_normal((30, 3000)).astype(np.float32)
Y = rng.integers(0, 3, 3000)
out = {}

def run(tag, batch_size, optimizer):
    model = fastnn.Model([30, 40, 3], "tanh", "softmax", dtype=np.float32, seed=tag)
    model.fit(X, Y, epochs=2, batch_size=batch_size, optimizer=optimizer, lr=0.05, shuffle_seed=1,
              backend="numba-parallel", progress=False)
    out[tag] = {k: v.tobytes().hex() for k, v in model.params.items()}

jobs = [(1, 256, "adam"), (2, None, "sgd")]
if mode == "threads":
    threads = [threading.Thread(target=run, args=job) for job in jobs]
    [t.start() for t in threads]
    [t.join() for t in threads]
else:  # one after the other, in one thread other than the main one, as the threads
    # (the thread policy limits the BLAS only for calls from the main thread)
    worker = threading.Thread(target=lambda: [run(*job) for job in jobs])
    worker.start()
    worker.join()
import numba
print(json.dumps({"layer": numba.threading_layer(), "threads": numba.get_num_threads(),
                  "params": {str(k): v for k, v in sorted(out.items())}}))
'''


def _child(mode, **env):
    res = subprocess.run([sys.executable, "-c", CHILD, mode], env=dict(os.environ, **env),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"child died ({res.returncode}): {res.stderr[-2000:]}"
    return json.loads(res.stdout.strip().splitlines()[-1])


@requires_backends("numba-parallel")
def test_results_do_not_depend_on_numba_num_threads():
    one = _child("sequential", NUMBA_NUM_THREADS="1")
    two = _child("sequential", NUMBA_NUM_THREADS="2")
    assert (one["threads"], two["threads"]) == (1, 2)
    assert one["params"] == two["params"]


@requires_backends("numba-parallel")
def test_workqueue_layer_two_threads_do_not_abort():
    """Regression: two threads on numba-parallel under the workqueue layer aborted the
    interpreter; now the launches are serialised and the results are the sequential ones."""
    threaded = _child("threads", NUMBA_THREADING_LAYER="workqueue", NUMBA_NUM_THREADS="2")
    assert threaded["layer"] == "workqueue"
    sequential = _child("sequential", NUMBA_NUM_THREADS="1")
    assert threaded["params"] == sequential["params"]


SKLEARN_CHILD = r"""
import threading
import numpy as np
from fastnn.sklearn import MLPClassifier
rng = np.random.default_rng(0)
X, y = rng.standard_normal((600, 20)), rng.integers(0, 3, 600)
def fit(solver):
    MLPClassifier((32,), solver=solver, max_iter=5, tol=0, random_state=0,
                  backend="numba-parallel").fit(X, y)
threads = [threading.Thread(target=fit, args=(s,)) for s in ("adam", "lbfgs", "adam")]
[t.start() for t in threads]
[t.join() for t in threads]
import numba
print(numba.threading_layer())
"""


@requires_backends("numba-parallel")
def test_estimators_in_two_threads_do_not_abort_under_workqueue():
    """The estimators serialise parallel launches too when Numba's layer is workqueue
    (the layer fastnn picks beside PyTorch's OpenMP)."""
    # the thread policy off: these small fits keep Numba's threads
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue", FASTNN_THREAD_POLICY="off")
    res = subprocess.run([sys.executable, "-W", "ignore", "-c", SKLEARN_CHILD], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"child died ({res.returncode}): {res.stderr[-2000:]}"
    assert res.stdout.strip().splitlines()[-1] == "workqueue"
