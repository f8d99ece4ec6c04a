"""The course's application runs, plain against fastnn's fast path.

    python -m benchmarks.compat_compare            # 2500 iterations, as the course
    python -m benchmarks.compat_compare --iterations 300

Times ``two_layer_model`` (``[12288, 7, 1]``) and ``L_layer_model``
(``[12288, 20, 7, 5, 1]``) on m = 209 examples in float64, with the course's own
loop (``backend=None``) and on fastnn's kernels (``backend="auto"`` and each
CPU backend), runs interleaved, and prints the end-to-end speed-up and the
largest difference in the recorded costs.  Uses the course's cat/non-cat data
when ``../shared/data/catvnoncat`` and h5py are available, else random data of
the same shape.
"""

import argparse
import os
import sys
import time

import numpy as np

from fastnn import available_backends
from fastnn.compat import dnn

_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "catvnoncat",
                     "train_catvnoncat.h5")


def load_data():
    """(X (12288, 209) in [0, 1], Y (1, 209), description)."""
    try:
        import h5py
        with h5py.File(_DATA, "r") as f:
            x = np.array(f["train_set_x"][:], dtype=np.float64)
            y = np.array(f["train_set_y"][:], dtype=np.float64)
        return x.reshape(x.shape[0], -1).T / 255.0, y.reshape(1, -1), "cat/non-cat training set"
    except (ImportError, OSError, KeyError):
        rng = np.random.default_rng(0)
        X = rng.random((12288, 209))
        Y = (rng.random((1, 209)) > 0.65).astype(np.float64)
        return X, Y, "random data of the cat/non-cat shape"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compat_compare")
    parser.add_argument("--iterations", type=int, default=2500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    X, Y, what = load_data()
    print(f"{what}: X {X.shape}, {args.iterations} iterations, float64")
    backends = [None, "auto"] + [n for n, st in available_backends().items()
                                 if st.available and n not in ("numpy", "cuda")]
    for model, dims in ((dnn.two_layer_model, (12288, 7, 1)), (dnn.L_layer_model, [12288, 20, 7, 5, 1])):
        model(X, Y, dims, num_iterations=2, backend="auto")  # JIT warm-up, outside the timings
        times = {b: [] for b in backends}
        costs = {}
        for _ in range(args.rounds):
            for b in backends:
                t0 = time.perf_counter()
                _, c = model(X, Y, dims, num_iterations=args.iterations, backend=b)
                times[b].append(time.perf_counter() - t0)
                costs[b] = np.array([float(v) for v in c])
        base = np.median(times[None])
        print(f"{model.__name__} {list(dims)}:")
        for b in backends:
            t = np.median(times[b])
            diff = np.max(np.abs(costs[b] - costs[None]) / np.abs(costs[None]))
            print(f"  {'course loop' if b is None else 'backend=' + repr(b):24} {t:8.2f} s  "
                  f"{base / t:6.2f}x   max rel. cost difference {diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
