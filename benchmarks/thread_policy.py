"""Small problems with the thread policy on and off, alone and beside busy processes.

    python -m benchmarks.thread_policy [--rounds 3] [--load 0 1]

The thread policy (``fastnn/threads.py``) runs the BLAS and ``numba-parallel``'s
kernels on one thread when a training step has fewer than
``SMALL_GEMM_MULTIPLY_ADDS`` multiply-adds.  Each work item below runs in a fresh
process of its own (``FASTNN_THREAD_POLICY`` unset, or ``off``), one after the
other, alternated over rounds; the work runs once untimed (compile or cache
load, thread start), then once timed.  ``--load N`` repeats everything beside
``N`` busy background processes (``benchmarks.harness.BusyLoad``).  Work:

- ``course-cat``: ``compat.dnn.L_layer_model``, ``[12288, 20, 7, 5, 1]``, m = 209,
  300 iterations, ``backend="auto"``, random data, float64;
- ``mlp-digits``: fastnn's ``MLPClassifier((100,), max_iter=20)``, 1797 x 64
  random data, 10 classes (the shape of scikit-learn's digits);
- ``fit-mnist``: ``Model.fit``, ``[784, 256, 128, 10]``, 10000 examples, batch
  256, Adam, one epoch, float32, ``backend="auto"``.

Prints the median (min-max) seconds of each, and the ratio off / on.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from .harness import BusyLoad

CHILD = r'''
import json, sys, time, warnings
import numpy as np
work = sys.argv[1]
rng = np.random.default_rng(0)
if work == "course-cat":
    from fastnn.compat import dnn
    X = rng.random((12288, 209))
    Y = (rng.random((1, 209)) < 0.5).astype(float)
    run = lambda: dnn.L_layer_model(X, Y, [12288, 20, 7, 5, 1], num_iterations=300, backend="auto")
elif work == "mlp-digits":
    from fastnn.sklearn import MLPClassifier
    X = rng.random((1797, 64))
    y = rng.integers(0, 10, 1797)
    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter
            MLPClassifier((100,), max_iter=20, random_state=0).fit(X, y)
else:
    from fastnn import Model
    X = rng.standard_normal((784, 10000)).astype(np.float32)
    Y = np.zeros((10, 10000), np.float32)
    Y[rng.integers(0, 10, 10000), np.arange(10000)] = 1
    run = lambda: Model([784, 256, 128, 10], hidden="relu", output="softmax", dtype=np.float32,
                        seed=0).fit(X, Y, epochs=1, batch_size=256, optimizer="adam", lr=1e-3,
                                    progress=False)
run()
t = time.perf_counter()
run()
print(json.dumps({"seconds": time.perf_counter() - t}))
'''

WORK = ("course-cat", "mlp-digits", "fit-mnist")
POLICIES = ("on", "off")


def run_one(work, policy):
    """Seconds of one timed run of ``work`` in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_THREAD_POLICY"}
    if policy == "off":
        env["FASTNN_THREAD_POLICY"] = "off"
    out = subprocess.run([sys.executable, "-c", CHILD, work], env=env, capture_output=True,
                         text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def measure(rounds):
    """``{(work, policy): [seconds, ...]}``, the contenders alternated round by round."""
    cases = [(w, p) for w in WORK for p in POLICIES]
    times = {case: [] for case in cases}
    for r in range(rounds):
        for case in cases[r % len(cases):] + cases[:r % len(cases)]:
            times[case].append(run_one(*case))
    return times


def report(times, load):
    print(f"\n{'beside ' + str(load) + ' busy process(es)' if load else 'no background load'}")
    for work in WORK:
        on, off = times[(work, "on")], times[(work, "off")]
        print(f"  {work:11s} policy on  {statistics.median(on):7.3f} s ({min(on):.3f}-{max(on):.3f})"
              f"   off {statistics.median(off):7.3f} s ({min(off):.3f}-{max(off):.3f})"
              f"   off/on {statistics.median(off) / statistics.median(on):5.2f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", type=int, nargs="+", default=[0, 1],
                        help="busy background processes for each pass (default: 0 then 1)")
    args = parser.parse_args(argv)
    for load in args.load:
        with BusyLoad(load):
            report(measure(args.rounds), load)


if __name__ == "__main__":
    main()
