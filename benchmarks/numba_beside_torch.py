"""``numba-parallel`` with PyTorch imported in the same process, with and without fastnn's fix.

    python -m benchmarks.numba_beside_torch [--rounds 3] [--m 10000]

``import torch`` loads PyTorch's GNU OpenMP runtime into the global symbol
namespace; Numba's ``omp`` threading layer then runs on that runtime, and a
``numba-parallel`` epoch was 10-25x slower.  fastnn detects the loaded runtime
and starts Numba's ``workqueue`` layer instead (``_numba_config.start_threads``).
Each case runs in a fresh process of its own (one after the other, alternated
over rounds): one untimed epoch (compile or cache load, thread start), then one
timed epoch of ``Model.fit`` at MNIST shape (``[784, 256, 128, 10]``, batch
256, Adam, float32, ``m`` random examples).  Cases:

- ``alone``: no PyTorch;
- ``torch, fixed``: ``import torch`` first, fastnn as it is (workqueue);
- ``torch, omp``: ``import torch`` first, ``NUMBA_THREADING_LAYER=omp`` (the
  behaviour before the fix).

These three run with ``FASTNN_THREAD_POLICY=off``: a batch of 256 at this shape
is below the thread policy's threshold, which runs it on one thread and so
hides the pathology (the fourth case, ``torch, omp, thread policy on``, shows
that); larger steps keep all threads and meet it.

Prints one line per case (median and range over rounds, seconds) and the
threading layer each process used.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r'''
import json, sys, time
if sys.argv[1] == "1":
    import torch  # noqa: F401
import numpy as np
import numba
from fastnn import Model
m = int(sys.argv[2])
rng = np.random.default_rng(0)
X = rng.standard_normal((784, m)).astype(np.float32)
Y = np.zeros((10, m), np.float32)
Y[rng.integers(0, 10, m), np.arange(m)] = 1
def fit(Xs, Ys):
    model = Model([784, 256, 128, 10], hidden="relu", output="softmax", dtype=np.float32, seed=0)
    t = time.perf_counter()
    model.fit(Xs, Ys, epochs=1, batch_size=256, optimizer="adam", lr=1e-3,
              backend="numba-parallel", shuffle_seed=0, progress=False)
    return time.perf_counter() - t
fit(X[:, :512], Y[:, :512])
print(json.dumps({"seconds": fit(X, Y), "layer": numba.threading_layer()}))
'''

_OFF = {"FASTNN_THREAD_POLICY": "off"}
CASES = {
    "alone": ("0", _OFF),
    "torch, fixed": ("1", _OFF),
    "torch, omp (before the fix)": ("1", {"NUMBA_THREADING_LAYER": "omp", **_OFF}),
    "torch, omp, thread policy on": ("1", {"NUMBA_THREADING_LAYER": "omp"}),
}


def run_case(name, m):
    """One fresh process for case ``name``: ``{"seconds", "layer"}``."""
    torch_flag, extra = CASES[name]
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_THREADING_LAYER", "FASTNN_THREAD_POLICY")}
    env.update(extra)
    out = subprocess.run([sys.executable, "-c", CHILD, torch_flag, str(m)], env=env,
                         capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--m", type=int, default=10000, help="examples in the timed epoch")
    args = parser.parse_args(argv)
    names = list(CASES)
    results = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            results[name].append(run_case(name, args.m))
    for name in names:
        secs = [x["seconds"] for x in results[name]]
        layers = sorted({x["layer"] for x in results[name]})
        print(f"{name:30s} median {statistics.median(secs):7.3f} s  "
              f"(min {min(secs):.3f}, max {max(secs):.3f})  layer {','.join(layers)}")


if __name__ == "__main__":
    main()
