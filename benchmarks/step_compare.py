"""fastnn's training step, kernel by kernel and as a compiled loop, against a course-style NumPy step.

    python -m benchmarks.step_compare                 # all configs, float32 and float64
    python -m benchmarks.step_compare --quick         # fewer rounds, planar and mnist only
    python -m benchmarks.step_compare --json out.json

(The comparison with PyTorch and scikit-learn, each contender in a process of its
own, is ``python -m benchmarks.compare``.  This script runs its contenders in one
process, which is fair among fastnn's backends and the NumPy baseline only.)

For every config and dtype it times a training step (forward, cost, backward,
SGD update) of: the course-style NumPy code (``common.course_step``), each
fastnn backend kernel by kernel (``step``) and as a compiled whole loop
(``loop``).  For the
course's full-batch nets (planar, cat) ``loop x100`` times the loop in calls
of 100 steps, as the course runs it (reporting the cost every 100 steps):
there ``sgd_loop`` may run the first layer in its dual form
(``fastnn.engine.sgd_loop``), whose GFLOP/s are effective ones (the
primal step's flops over its time).  Contenders
run interleaved, in a shuffled order each round; the table shows medians over
rounds, the ratio against the baseline and against PyTorch, and the GFLOP/s
achieved against the fastest GEMM rate measured in the same run: a square
GEMM (n = 2048) of NumPy is a contender in every round, so the
rate is a median over the same rounds and the same machine noise as the steps
(on a shared machine the best single GEMM, also printed, can be 1.5-2x the
median of a step taken minutes later).

The process unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for itself (they
pin an older, slower OpenBLAS kernel) and reports which BLAS kernel ran.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import fastnn
from fastnn import engine
from fastnn.backends import available_backends, get_backend

from . import harness
from .common import CONFIGS, course_step, make_data, step_flops

#: Configs the course trains full-batch, and the steps per sgd_loop call timed for them.
FULL_BATCH = ("planar", "cat")
LOOP_CHUNK = 100
#: Configs given as a minibatch ("mnist, batch 256"): judged on their training
#: steps only, since their ``loop`` rows repeat one batch full-batch.  The others
#: are given as the whole training set (planar m = 400, cat m = 209, wide
#: m = 512), where ``sgd_loop`` is how fastnn trains them (``Model.fit`` with
#: full-batch SGD), so its rows count.
MINIBATCH = ("mnist",)

TARGETS = {  # config -> (min ratio vs NumPy baseline, min ratio vs PyTorch)
    "planar": (4.0, 10.0),
    "cat": (None, 2.0),
    "mnist": (None, 1.1),
    "wide": (None, 1.0),
}


def blas_info():
    """The BLAS libraries loaded, with their kernel (architecture) and threads."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return "; ".join(f"{d.get('internal_api')} {d.get('version')} {d.get('architecture')} "
                     f"{d.get('num_threads')} threads" for d in threadpool_info()
                     if d.get("user_api") == "blas")


def gemm_rates(dtype, torch=None, sizes=(1024, 2048), repeats=5):
    """Best GFLOP/s of square GEMMs (n in ``sizes``) with NumPy (and PyTorch, in its worker)."""
    rng = np.random.default_rng(0)
    rates = {"numpy": 0.0}
    for n in sizes:
        a = rng.standard_normal((n, n)).astype(dtype)
        b = rng.standard_normal((n, n)).astype(dtype)
        a @ b
        ts = []
        for _ in range(repeats):
            time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            a @ b
            ts.append(time.perf_counter() - t0)
        rates["numpy"] = max(rates["numpy"], 2 * n ** 3 / min(ts) / 1e9)
    if torch is not None:
        rates["torch"] = max(torch.ask({"gemm": dtype, "n": n})["gflops"] for n in sizes)
    return rates


# ------------------------------------------------------------------ contenders

def _course_runner(params, X, Y, hidden, output):
    state = {"p": {k: v.copy() for k, v in params.items()}}

    def run(k):
        for _ in range(k):
            state["p"], _ = course_step(state["p"], X, Y, hidden, output)
    return run


def _fastnn_step_runner(bk, params, X, Y, hidden, output):
    L = len(params) // 2
    Ws = [bk.to_device(params[f"W{l}"].copy()) for l in range(1, L + 1)]
    bs = [bk.to_device(params[f"b{l}"].copy()) for l in range(1, L + 1)]
    Xd, Yd = bk.to_device(X), bk.to_device(Y)
    lr = X.dtype.type(0.01)

    def run(k):
        for _ in range(k):
            As, ZL = engine.forward(bk, Ws, bs, Xd, hidden, output)
            dWs, dbs, _ = engine.backward(bk, Ws, As, ZL, Yd, hidden, output, "deferred", "fused", 0.0)
            for P, G in zip(Ws + bs, dWs + dbs):
                bk.sgd_update(P, G, lr)
    return run


def _fastnn_loop_runner(bk, params, X, Y, hidden, output, chunk=1):
    """``run(k)``: ``k * chunk`` full-batch steps as ``k`` calls of ``chunk`` steps each."""
    L = len(params) // 2
    Ws = [bk.to_device(params[f"W{l}"].copy()) for l in range(1, L + 1)]
    bs = [bk.to_device(params[f"b{l}"].copy()) for l in range(1, L + 1)]
    Xd, Yd = bk.to_device(X), bk.to_device(Y)

    def run(k):
        if chunk == 1:
            engine.sgd_loop(bk, Ws, bs, Xd, Yd, hidden, output, "deferred", 0.0, 0.01, k)
            return
        for _ in range(k):
            engine.sgd_loop(bk, Ws, bs, Xd, Yd, hidden, output, "deferred", 0.0, 0.01, chunk)
    run.steps_per_call = chunk
    return run


def contenders(config, dtype, backends, torch=None):
    params, X, Y = make_data(config, dtype)
    _, hidden, output, _ = CONFIGS[config]
    runs = {"numpy-course": _course_runner(params, X, Y, hidden, output)}
    for name in backends:
        bk = get_backend(name)
        runs[f"{name} step"] = _fastnn_step_runner(bk, params, X, Y, hidden, output)
        if name != "numpy":
            runs[f"{name} loop"] = _fastnn_loop_runner(bk, params, X, Y, hidden, output)
        if config in FULL_BATCH:
            # The course trains these nets full-batch for thousands of steps:
            # the loop in calls of LOOP_CHUNK steps (the course reports its
            # cost every 100), where sgd_loop may pick the dual first layer.
            runs[f"{name} loop x{LOOP_CHUNK}"] = _fastnn_loop_runner(bk, params, X, Y, hidden,
                                                                   output, LOOP_CHUNK)
    if torch is not None:
        runs["torch"] = torch.runner(config, dtype)
    # The GEMM rate, sampled in the same rounds as the steps (same noise, same statistic).
    runs[GEMM_NUMPY] = _gemm_runner(dtype, GEMM_N)
    if torch is not None:
        runs[GEMM_TORCH] = torch.gemm_runner(dtype, GEMM_N)
    return runs


#: Square GEMM size of the interleaved GEMM contenders, and their names.
GEMM_N = 2048
GEMM_NUMPY, GEMM_TORCH = f"gemm numpy n={GEMM_N}", f"gemm torch n={GEMM_N}"
GEMMS = (GEMM_NUMPY, GEMM_TORCH)


def _gemm_runner(dtype, n):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)

    def run(k):
        for _ in range(k):
            a @ b
    return run


#: Pause before each timed sample: OpenBLAS's threads spin for ~2^28 cycles
#: (~0.1 s) after a product before they sleep, and would take a core from the
#: next contender (from PyTorch's worker process in particular).
SETTLE_S = 0.15


def _time_interleaved(runs, rounds, target_s, seed=0, settle_s=None):
    """Median seconds per step of each runner; runners interleaved, shuffled each round."""
    reps = {}
    for name, run in runs.items():
        run(1)  # JIT warm-up and first-touch
        k = 1
        while True:
            t0 = time.perf_counter()
            run(k)
            if time.perf_counter() - t0 >= target_s / 4 or k >= 1 << 16:
                break
            k *= 2
        reps[name] = k
    samples = {name: [] for name in runs}
    rng = np.random.default_rng(seed)
    names = list(runs)
    for _ in range(rounds):
        for i in rng.permutation(len(names)):
            name = names[i]
            time.sleep(SETTLE_S if settle_s is None else settle_s)
            t0 = time.perf_counter()
            inner = runs[name](reps[name])  # a worker's own timing, without the pipe
            elapsed = inner if isinstance(inner, float) else time.perf_counter() - t0
            steps = reps[name] * getattr(runs[name], "steps_per_call", 1)
            samples[name].append(elapsed / steps)
    return {name: float(np.median(s)) for name, s in samples.items()}


# ------------------------------------------------------------------ kernels

def kernel_table(rounds):
    """Fused backward at (2048, 512) against a tight NumPy version, and
    numba-parallel against numba on elementwise kernels (fused backward, Adam)."""
    rows = []
    names = [n for n in ("numba", "numba-parallel") if available_backends()[n].available]
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(0)
        dA = rng.standard_normal((2048, 512)).astype(dtype)
        A = np.maximum(rng.standard_normal((2048, 512)).astype(dtype), 0)
        P, G = (rng.standard_normal((2048, 2048)).astype(dtype) for _ in range(2))
        M, V = np.zeros_like(P), np.zeros_like(P)
        out = np.empty_like(dA)
        scale = dtype(1 / 512)
        c = dtype

        def tight():
            np.multiply(dA, A > 0, out=out)
            db = out.sum(axis=1, keepdims=True)
            db *= scale

        runs = {"numpy tight backward": tight,
                "numpy adam (2048x2048)": lambda: get_backend("numpy").adam_update(
                    P, G, M, V, c(1e-9), c(0.9), c(0.999), c(1e-8), 1)}
        for name in names:
            bk = get_backend(name)
            runs[f"{name} fused backward"] = (lambda bk=bk: bk.backward_hidden(dA, A, "relu", scale))
            runs[f"{name} adam (2048x2048)"] = (lambda bk=bk: bk.adam_update(
                P, G, M, V, c(1e-9), c(0.9), c(0.999), c(1e-8), 1))
        # No settle pause: no contender here runs BLAS (whose threads spin after a
        # product), and a process that sleeps lets the second core go idle, after
        # which a whole sample of numba-parallel ran at serial speed (measured: 0.29
        # ms per call after a 20 ms sleep, 0.18 ms after 20 ms of other work).  In
        # training the kernels run back to back.
        med = _time_interleaved({k: (lambda n, f=f: [f() for _ in range(n)]) for k, f in runs.items()},
                               rounds, 0.05, settle_s=0.0)
        for k, v in med.items():
            rows.append((np.dtype(dtype).name, k, v))
    return rows


# ------------------------------------------------------------------ start-up

#: Warm start-up samples (fresh processes); the median is reported.
STARTUP_WARM_SAMPLES = 5


def startup_times(backend):
    """(cold compile s, median warm ``import fastnn`` + first step s), each in a fresh process.

    The timed part is the asv benchmark's (:func:`benchmarks.bench_startup.first_step_code`):
    NumPy imported and the data made beforehand.  The first process compiles into an
    empty Numba cache; the warm ones load from it.  The children may write Python
    bytecode (``PYTHONDONTWRITEBYTECODE`` is dropped for them), as an installed
    package has it: otherwise every warm start would recompile fastnn's sources.
    """
    from .bench_startup import first_step_code

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as cache:
        setup, stmt = first_step_code(backend, f"os.environ['NUMBA_CACHE_DIR'] = {cache!r}")
        code = (setup + "import time\n_t0 = time.perf_counter()\n" + stmt
                + "print(time.perf_counter() - _t0)\n")

        def sample():
            out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, check=True,
                                 capture_output=True, text=True).stdout
            return float(out.split()[-1])

        cold = sample()
        warm = sorted(sample() for _ in range(STARTUP_WARM_SAMPLES))
    return cold, warm[len(warm) // 2]


# ------------------------------------------------------------------ main

def _reexec_without_openblas_pins():
    """Re-run this script without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (they pin
    an older, slower OpenBLAS kernel and are read when NumPy loads OpenBLAS)."""
    if os.environ.get("OPENBLAS_CORETYPE") or os.environ.get("OPENBLAS_L2_SIZE"):
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        env["FASTNN_BENCH_UNSET_OPENBLAS"] = "1"
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.step_compare", *sys.argv[1:]], env)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.step_compare", description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--backends", default=None, help="default: every available CPU backend")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--target-ms", type=float, default=60.0, help="time per sample")
    parser.add_argument("--quick", action="store_true", help="3 rounds, planar and mnist, float32")
    parser.add_argument("--skip-kernels", action="store_true")
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--json", help="write all numbers to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.configs, args.dtypes = 3, "planar,mnist", "float32"
    if args.json:
        harness.check_writable(args.json)
    status = available_backends()
    backends = args.backends.split(",") if args.backends else [
        n for n, st in status.items() if st.available and n != "cuda"]
    print(f"fastnn {fastnn.__version__}, numpy {np.__version__}, {os.cpu_count()} cores")
    if os.environ.get("FASTNN_BENCH_UNSET_OPENBLAS"):
        print("OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE were set: unset for this run")
    torch = None  # PyTorch: python -m benchmarks.compare (a process of its own)
    print(f"BLAS: {blas_info()}")
    results = {"steps": [], "gemm": {}, "gemm_interleaved": [], "kernels": [], "startup": {}}
    for dtype in args.dtypes.split(","):
        rates = gemm_rates(dtype, torch)
        results["gemm"][dtype] = rates
        print(f"GEMM {dtype} (best single, n = 1024 / 2048): "
              + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in rates.items()))
    print()
    header = f"{'config':8} {'dtype':8} {'contender':22} {'ms/step':>10} {'x course':>9} {'x torch':>8} {'GFLOP/s':>8} {'% GEMM':>7}"
    print(header)
    print("-" * len(header))
    for config in args.configs.split(","):
        for dtype in args.dtypes.split(","):
            runs = contenders(config, dtype, backends, torch)
            med = _time_interleaved(runs, args.rounds, args.target_ms / 1e3)
            # The fastest GEMM rate of these rounds (medians, like the steps);
            # the best single GEMM of the start-up measurement is reported too.
            rates = {g: 2 * GEMM_N ** 3 / med.pop(g) / 1e9 for g in GEMMS if g in med}
            peak = max(rates.values())
            best_single = max(results["gemm"][dtype].values())
            results["gemm_interleaved"].append({"config": config, "dtype": dtype, **rates})
            base, ref = med["numpy-course"], med.get("torch")
            for name, t in sorted(med.items(), key=lambda kv: kv[1]):
                gflops = step_flops(config) / t / 1e9
                print(f"{config:8} {dtype:8} {name:22} {t * 1e3:10.4f} {base / t:9.2f} "
                      f"{(ref / t if ref else float('nan')):8.2f} {gflops:8.1f} {100 * gflops / peak:6.0f}%")
                results["steps"].append({"config": config, "dtype": dtype, "contender": name,
                                         "seconds": t, "x_course": base / t,
                                         "x_torch": ref / t if ref else None, "gflops": gflops})
            # A minibatch config is judged on training steps: its "loop" rows
            # repeat one batch full-batch (where sgd_loop may go dual), which is
            # not how it is trained.
            best = min((t, n) for n, t in med.items() if n not in ("numpy-course", "torch")
                       and (config not in MINIBATCH or "loop" not in n))
            want_base, want_torch = TARGETS.get(config, (None, None))
            verdict = [f"best fastnn: {best[1]} {base / best[0]:.2f}x course"]
            if want_base:
                verdict.append(f"target >= {want_base}x: {'met' if base / best[0] >= want_base else 'NOT met'}")
            if ref:
                verdict.append(f"{ref / best[0]:.2f}x torch" + (
                    f" (target >= {want_torch}x: {'met' if ref / best[0] >= want_torch else 'NOT met'})"
                    if want_torch else ""))
            if config == "wide":
                achieved = step_flops(config) / best[0] / 1e9
                frac = achieved / peak
                verdict.append(f"{100 * frac:.0f}% of the GEMM rate of these rounds (target >= 90%: "
                               f"{'met' if frac >= 0.9 else 'NOT met'}; "
                               f"{100 * achieved / best_single:.0f}% of the best single GEMM)")
            print("   -> GEMM n=%d in these rounds (median): %s" % (
                GEMM_N, ", ".join(f"{g.split()[1]} {r:.1f} GFLOP/s" for g, r in rates.items())))
            print("   -> " + "; ".join(verdict))
        print()
    if not args.skip_kernels and "numba" in backends:
        print(f"{'dtype':8} {'kernel at (2048, 512)':32} {'ms':>8}")
        for dtype, name, t in kernel_table(args.rounds):
            print(f"{dtype:8} {name:32} {t * 1e3:8.3f}")
            results["kernels"].append({"dtype": dtype, "kernel": name, "seconds": t})
        print()
    if not args.skip_startup:
        for name in backends:
            if name == "numpy":
                continue
            cold, warm = startup_times(name)
            results["startup"][name] = {"cold": cold, "warm": warm}
            print(f"start-up {name}: cold (empty Numba cache, compiles) {cold:.2f} s; "
                  f"warm import fastnn + first step {warm:.2f} s (median of "
                  f"{STARTUP_WARM_SAMPLES})")
    if args.json:
        harness.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    _reexec_without_openblas_pins()
    sys.exit(main())
