"""The thread policy (fastnn/threads.py): one thread for small problems, nothing else changed."""

import os
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

from fastnn import Model, threads
from fastnn.backends import get_backend

threadpoolctl = pytest.importorskip("threadpoolctl")

USER_ENV = threads.BLAS_ENV + ("NUMBA_NUM_THREADS", "FASTNN_THREAD_POLICY")


def _blas_threads():
    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture(autouse=True)
def two_blas_threads(monkeypatch):
    """No user settings, and a BLAS with two threads (whatever the machine), so that
    a limit to one is visible; the process's own limits are put back afterwards."""
    for name in USER_ENV:
        monkeypatch.delenv(name, raising=False)
    if not _blas_threads():
        pytest.skip("threadpoolctl finds no BLAS in this process")
    # A quiet two-core machine, whatever else runs beside the tests.
    monkeypatch.setattr(threads, "busy_cores", lambda: 0)
    monkeypatch.setattr(threads, "_cores", lambda: 2)
    # The limit is exercised on tiny steps here; OpenBLAS would run those on one thread
    # by itself (test_a_step_of_tiny_products_leaves_the_blas_alone).
    monkeypatch.setattr(threads, "BLAS_SERIAL_MULTIPLY_ADDS", 0)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        yield


def _weights(*dims):
    return [np.zeros((dims[l], dims[l - 1]), np.float32) for l in range(1, len(dims))]


def test_step_multiply_adds_counts_forward_weight_and_input_gradient_products():
    dims, batch = [7, 5, 3, 2], 11
    forward = sum(batch * dims[l] * dims[l - 1] for l in range(1, len(dims)))
    weight_grads = forward
    input_grads = sum(batch * dims[l] * dims[l - 1] for l in range(2, len(dims)))
    assert threads.step_multiply_adds(_weights(*dims), batch) == forward + weight_grads + input_grads
    # orientation does not matter (scikit-learn's coefs_ are transposed)
    assert threads.step_multiply_adds([W.T for W in _weights(*dims)], batch) == \
        threads.step_multiply_adds(_weights(*dims), batch)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_small_step_runs_the_blas_on_one_thread_and_restores_it(backend, monkeypatch):
    Ws, batch = _weights(7, 5, 3), 4
    monkeypatch.setattr(threads, "SMALL_GEMM_MULTIPLY_ADDS", threads.step_multiply_adds(Ws, batch) + 1)
    with threads.policy_for(get_backend(backend), Ws, batch):
        assert set(_blas_threads()) == {1}
    assert set(_blas_threads()) == {2}


@pytest.mark.parametrize("backend", ["numpy", "numba", "numba-parallel"])
def test_a_step_of_tiny_products_leaves_the_blas_alone(backend, monkeypatch):
    """A step whose every product has fewer multiply-adds than OpenBLAS's own one-thread
    threshold sets no BLAS limit (setting it cost more than the products); Numba's threads
    are still limited on numba-parallel; one product at the threshold brings the limit back."""
    monkeypatch.setattr(threads, "BLAS_SERIAL_MULTIPLY_ADDS", 2304 * 4)
    entered = []
    enter_blas = threads._enter_blas
    monkeypatch.setattr(threads, "_enter_blas", lambda n=1: entered.append(n) or enter_blas(n))
    bk = get_backend(backend)
    with threads.policy_for(bk, _weights(2, 4, 1), 400):   # 3200 and 1600 multiply-adds
        assert set(_blas_threads()) == {2}
        if backend == "numba-parallel":
            import numba
            assert numba.get_num_threads() == 1
    assert entered == []
    with threads.policy_for(bk, _weights(2, 4, 1), 1152):  # 4 x 2 x 1152 = 9216
        assert set(_blas_threads()) == {1}
    assert entered == [1] and set(_blas_threads()) == {2}


def test_a_step_at_the_threshold_is_left_alone(monkeypatch):
    Ws, batch = _weights(7, 5, 3), 4
    monkeypatch.setattr(threads, "SMALL_GEMM_MULTIPLY_ADDS", threads.step_multiply_adds(Ws, batch))
    with threads.policy_for(get_backend("numpy"), Ws, batch):
        assert set(_blas_threads()) == {2}


def test_a_large_step_beside_a_busy_process_gets_the_free_cores(monkeypatch):
    """Two cores, one kept busy by another process: the BLAS gets one thread, at any size,
    and its two back after the call."""
    Ws, batch = _weights(784, 256, 128, 10), 256
    assert threads.step_multiply_adds(Ws, batch) >= threads.SMALL_GEMM_MULTIPLY_ADDS
    monkeypatch.setattr(threads, "busy_cores", lambda: 1)
    with threads.policy_for(get_backend("numpy"), Ws, batch):
        assert set(_blas_threads()) == {1}
    assert set(_blas_threads()) == {2}


def test_refresh_follows_a_load_that_starts_and_stops_during_a_call(monkeypatch):
    """refresh() (the engine calls it between compiled calls) counts the load again, at most
    every REFRESH_SECONDS, and changes the innermost call's limit when the free cores changed."""
    load = {"busy": 0}
    monkeypatch.setattr(threads, "busy_cores", lambda: load["busy"])
    monkeypatch.setattr(threads, "REFRESH_SECONDS", 0.0)
    Ws, batch = _weights(784, 256, 128, 10), 256
    with threads.policy_for(get_backend("numpy"), Ws, batch):
        assert set(_blas_threads()) == {2}
        load["busy"] = 1
        threads.refresh()
        assert set(_blas_threads()) == {1}
        load["busy"] = 0
        threads.refresh()
        assert set(_blas_threads()) == {2}
        load["busy"] = 1
        threads.refresh()
    assert set(_blas_threads()) == {2}   # put back on the way out
    threads.refresh()                    # outside any call: nothing to do
    assert set(_blas_threads()) == {2}


def test_refresh_is_rate_limited(monkeypatch):
    counts = []
    monkeypatch.setattr(threads, "busy_cores", lambda: counts.append(1) or 0)
    with threads.policy_for(get_backend("numpy"), _weights(784, 256, 128, 10), 256):
        for _ in range(50):
            threads.refresh()
    assert len(counts) == 1   # the count on entry; refresh waits REFRESH_SECONDS


def test_the_size_only_switch_ignores_the_load(monkeypatch):
    monkeypatch.setattr(threads, "busy_cores", lambda: 1)
    monkeypatch.setenv("FASTNN_THREAD_POLICY", "size")
    with threads.policy_for(get_backend("numpy"), _weights(784, 256, 128, 10), 256):
        assert set(_blas_threads()) == {2}
    with threads.policy_for(get_backend("numpy"), _weights(7, 5), 3):
        assert set(_blas_threads()) == {1}


def test_threads_for_leaves_the_free_cores(monkeypatch):
    Ws, batch = _weights(784, 256, 128, 10), 256
    monkeypatch.setattr(threads, "_cores", lambda: 4)
    assert threads.threads_for(Ws, batch, busy=0) is None   # quiet: no limit
    assert threads.threads_for(Ws, batch, busy=1) == 3
    assert threads.threads_for(Ws, batch, busy=9) == 1      # never below one
    assert threads.threads_for(_weights(7, 5), 3, busy=0) == 1  # small: one, quiet or not


def test_busy_cores_sees_a_spinning_process():
    """/proc is read as documented: a process spinning beside this one is counted, and this
    process's own running thread (the caller) is not."""
    if not os.path.exists("/proc/loadavg"):
        pytest.skip("no /proc (not Linux): busy_cores counts nothing")
    assert threads._running_threads("/proc/self/task") >= 1  # the calling thread runs
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        seen = max(_BUSY_CORES() for _ in range(5))
    finally:
        spinner.kill()
        spinner.wait()
    assert seen >= 1


#: The real counter (the autouse fixture replaces threads.busy_cores with a quiet machine's).
_BUSY_CORES = threads.busy_cores


def test_the_default_threshold_splits_small_problems_from_the_benchmark_shapes():
    # digits-size and planar steps: one thread; the cat net and MNIST minibatches: the
    # BLAS's own threads (one thread made them slower on a quiet machine: docs/benchmarks.md).
    assert threads.step_multiply_adds(_weights(64, 100, 10), 200) < threads.SMALL_GEMM_MULTIPLY_ADDS
    assert threads.step_multiply_adds(_weights(2, 4, 1), 400) < threads.SMALL_GEMM_MULTIPLY_ADDS
    assert threads.step_multiply_adds(_weights(12288, 20, 7, 5, 1), 209) >= threads.SMALL_GEMM_MULTIPLY_ADDS
    assert threads.step_multiply_adds(_weights(784, 256, 128, 10), 256) >= threads.SMALL_GEMM_MULTIPLY_ADDS


@pytest.mark.parametrize("name", threads.BLAS_ENV)
def test_a_users_blas_thread_setting_is_respected(name, monkeypatch):
    monkeypatch.setenv(name, "2")
    with threads.policy_for(get_backend("numpy"), _weights(7, 5), 3):
        assert set(_blas_threads()) == {2}


@pytest.mark.parametrize("value", ["off", "OFF", "0"])
def test_the_off_switch(value, monkeypatch):
    monkeypatch.setenv("FASTNN_THREAD_POLICY", value)
    with threads.policy_for(get_backend("numpy"), _weights(7, 5), 3):
        assert set(_blas_threads()) == {2}


def test_the_limit_is_restored_after_an_exception():
    with pytest.raises(KeyError):
        with threads.policy_for(get_backend("numpy"), _weights(7, 5), 3):
            raise KeyError("inside")
    assert set(_blas_threads()) == {2}


def test_nested_and_overlapping_callers_share_one_limit():
    bk, Ws = get_backend("numpy"), _weights(7, 5)
    a, b = threads.policy_for(bk, Ws, 3), threads.policy_for(bk, Ws, 3)
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)  # the first to enter leaves first: b still runs small
    assert set(_blas_threads()) == {1}
    b.__exit__(None, None, None)
    assert set(_blas_threads()) == {2}


def test_a_call_from_another_thread_leaves_the_blas_to_the_main_thread():
    # OpenBLAS ignores a limit set from another thread; counting such a caller in
    # would leave the main thread's own call unlimited.
    bk, Ws = get_backend("numpy"), _weights(7, 5)
    inside, leave = threading.Event(), threading.Event()

    def worker():
        with threads.policy_for(bk, Ws, 3):
            inside.set()
            leave.wait(timeout=60)
    other = threading.Thread(target=worker)
    other.start()
    try:
        assert inside.wait(timeout=60)
        assert set(_blas_threads()) == {2}
        with threads.policy_for(bk, Ws, 3):
            assert set(_blas_threads()) == {1}
    finally:
        leave.set()
        other.join(timeout=60)
    assert set(_blas_threads()) == {2}


def test_entering_the_policy_warns_of_nothing():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with threads.policy_for(get_backend("numpy"), _weights(7, 5), 3):
            pass
    assert caught == []


# ------------------------------------------------------------ Numba's threads

@pytest.fixture
def parallel():
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has one thread here: nothing to limit")
    return get_backend("numba-parallel"), numba


def test_numba_parallel_runs_small_steps_on_one_numba_thread(parallel):
    bk, numba = parallel
    with threads.policy_for(bk, _weights(7, 5), 3):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS


def test_a_users_numba_thread_count_is_respected(parallel, monkeypatch):
    bk, numba = parallel
    monkeypatch.setenv("NUMBA_NUM_THREADS", str(numba.config.NUMBA_NUM_THREADS))
    with threads.policy_for(bk, _weights(7, 5), 3):
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS


@pytest.mark.parametrize("batch_size", [None, 256])
def test_numba_parallel_on_one_thread_is_bitwise_the_serial_backend(batch_size):
    pytest.importorskip("numba")
    rng = np.random.default_rng(3)
    # products large enough for OpenBLAS to split them over threads without the policy
    X = rng.standard_normal((1024, 512)).astype(np.float32)
    Y = (rng.random((1, 512)) < 0.5).astype(np.float32)

    def fit(backend):
        model = Model([1024, 256, 16, 1], hidden="relu", output="sigmoid", dtype=np.float32, seed=0)
        model.fit(X, Y, epochs=3, batch_size=batch_size, optimizer="adam", lr=1e-3,
                  backend=backend, shuffle_seed=1, progress=False)
        return model.params

    serial, parallel, again = fit("numba"), fit("numba-parallel"), fit("numba-parallel")
    for key in serial:
        np.testing.assert_array_equal(parallel[key], serial[key], strict=True)
        np.testing.assert_array_equal(again[key], parallel[key], strict=True)


def test_a_blas_loaded_after_the_first_policy_is_limited_too():
    """An import after the first small step may load another BLAS (SciPy ships its own
    OpenBLAS): the next small step limits it as well."""
    import subprocess
    import sys
    code = (
        "import os, sys\n"
        "assert 'scipy' not in sys.modules\n"
        "import numpy as np, threadpoolctl\n"
        "from fastnn import threads\n"
        "from fastnn.backends import get_backend\n"
        "threads.BLAS_SERIAL_MULTIPLY_ADDS = 0\n"
        "bk, Ws = get_backend('numpy'), [np.zeros((3, 5), np.float32)]\n"
        "with threadpoolctl.threadpool_limits(2, user_api='blas'):\n"
        "    with threads.policy_for(bk, Ws, 4):\n"
        "        pass\n"
        "    import scipy.linalg\n"
        "    with threadpoolctl.threadpool_limits(2, user_api='blas'):\n"
        "        with threads.policy_for(bk, Ws, 4):\n"
        "            info = threadpoolctl.threadpool_info()\n"
        "print(sorted({lib['num_threads'] for lib in info if lib['user_api'] == 'blas'}))\n")
    env = {k: v for k, v in os.environ.items() if k not in USER_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert out.strip() == "[1]"


def _readings(monkeypatch, system, own):
    """Replace /proc with these successive counts of the system's and this process's runnable
    threads (one pair per reading), and return the list of readings taken."""
    taken = []

    def running(path):
        if path == "/proc/loadavg":
            taken.append(path)
            return system[len(taken) - 1]
        return own[len(taken) - 1]
    monkeypatch.setattr(threads, "_running_threads", running)
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    return taken


def test_a_short_lived_process_is_not_counted_as_busy(monkeypatch):
    # Four readings of five see an extra runnable thread (a shell command, a kernel worker):
    # the call keeps its threads.
    _readings(monkeypatch, system=[3, 3, 2, 3, 3], own=[2] * 5)
    assert _BUSY_CORES() == 0


def test_a_process_runnable_at_every_reading_is_busy(monkeypatch):
    taken = _readings(monkeypatch, system=[4, 3, 4, 3, 3], own=[2, 1, 2, 1, 2])
    assert _BUSY_CORES() == 1
    assert len(taken) == 5


def test_a_quiet_machine_is_counted_from_one_reading(monkeypatch):
    taken = _readings(monkeypatch, system=[1] * 5, own=[1] * 5)
    assert _BUSY_CORES() == 0
    assert len(taken) == 1
