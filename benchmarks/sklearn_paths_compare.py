"""fastnn against scikit-learn on the L-BFGS and sparse-X paths.

    python -m benchmarks.sklearn_paths_compare              # 5 rounds
    python -m benchmarks.sklearn_paths_compare --rounds 3 --cases lbfgs

Cases:

``lbfgs``
    digits (1797 x 64, scaled to [0, 1]), ``MLPClassifier((64,), solver="lbfgs",
    max_iter=200, random_state=0)``, float64.
``sparse``
    a TF-IDF-like CSR matrix, 20000 x 5000 at 1% density (non-negative entries,
    rows scaled to unit norm), 3 classes from a fixed random linear teacher,
    ``MLPClassifier((100,), solver="adam", max_iter=5, random_state=0)``, float64.

Every measurement is one fit in a fresh Python process (after a warm-up fit on
a small slice in that process: Numba's JIT or cache load, BLAS start-up), and
the rounds interleave the contenders in a shuffled order; the table shows the
median fit time over the rounds and the ratio.
"""

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

CASES = ("lbfgs", "sparse")
IMPLS = ("sklearn", "fastnn")


def _data(case):
    if case == "lbfgs":
        from sklearn.datasets import load_digits
        X, y = load_digits(return_X_y=True)
        return X / 16.0, y
    import scipy.sparse as sp
    rng = np.random.RandomState(0)
    X = sp.random(20000, 5000, density=0.01, format="csr", random_state=rng,
                  data_rvs=lambda k: rng.exponential(1.0, k))
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1))).ravel()
    X = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ X
    y = np.asarray(X @ rng.standard_normal((5000, 3))).argmax(axis=1)
    return X.tocsr(), y


def _estimator(impl, case):
    if impl == "fastnn":
        from fastnn import MLPClassifier
    else:
        from sklearn.neural_network import MLPClassifier
    if case == "lbfgs":
        return MLPClassifier((64,), solver="lbfgs", max_iter=200, random_state=0)
    return MLPClassifier((100,), solver="adam", max_iter=5, random_state=0)


def worker(impl, case):
    """One timed fit in this process; prints a JSON line."""
    X, y = _data(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _estimator(impl, case).set_params(max_iter=2).fit(X[:300], y[:300])  # warm-up
        start = time.perf_counter()
        est = _estimator(impl, case).fit(X, y)
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "n_iter": int(est.n_iter_), "loss": float(est.loss_),
                      "train_accuracy": float(est.score(X, y))}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(*args.worker)
    results = {(i, c): [] for i in IMPLS for c in args.cases}
    order = [(i, c) for i in IMPLS for c in args.cases]
    for _ in range(args.rounds):
        random.shuffle(order)
        for impl, case in order:
            out = subprocess.run([sys.executable, "-m", "benchmarks.sklearn_paths_compare",
                                  "--worker", impl, case], check=True, capture_output=True,
                                 text=True).stdout
            results[impl, case].append(json.loads(out.strip().splitlines()[-1]))
    print("| case | scikit-learn median fit (s) | fastnn median fit (s) | speed-up | n_iter_ | train accuracy |")
    print("|---|---|---|---|---|---|")
    for case in args.cases:
        sk = statistics.median(r["seconds"] for r in results["sklearn", case])
        fn = statistics.median(r["seconds"] for r in results["fastnn", case])
        it = f"{results['sklearn', case][0]['n_iter']} / {results['fastnn', case][0]['n_iter']}"
        acc = (f"{results['sklearn', case][0]['train_accuracy']:.4f} / "
               f"{results['fastnn', case][0]['train_accuracy']:.4f}")
        print(f"| {case} | {sk:.3f} | {fn:.3f} | {sk / fn:.2f}x | {it} | {acc} |")


if __name__ == "__main__":
    main()
