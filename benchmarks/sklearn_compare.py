"""fastnn.MLPClassifier against sklearn.neural_network.MLPClassifier.

    python -m benchmarks.sklearn_compare            # MNIST shape: 60000 x 784
    python -m benchmarks.sklearn_compare --quick    # 6000 samples, fewer rounds
    python -m benchmarks.sklearn_compare --backends auto numba numpy

Speed: random data of MNIST's shape (float32, labels from a fixed random linear
teacher so there is something to learn), hidden layers (256, 128), batch 256,
adam, the same settings and ``random_state`` for both.  Every round fits each
contender once for ``--epochs`` epochs, in a shuffled order (interleaved, so
machine noise hits all contenders alike); the table shows the median over
rounds of fit time per epoch (a fit's time divided by its epochs, so one-time
costs -- input validation, fastnn's one transpose -- are included) and the
ratio against scikit-learn.  One warm-up fit per contender on a small slice
comes first (Numba's JIT or cache load, BLAS thread start-up).

Accuracy: both estimators on scikit-learn's digits (hidden (64,), adam,
50 epochs, random_state 0, 80/20 split), test accuracies side by side.
"""

import argparse
import os
import statistics
import time
import warnings

import numpy as np
from fastnn.backends import get_backend

from .step_compare import blas_info

HIDDEN = (256, 128)
BATCH = 256


def threading_layer():
    """Numba's threading layer (known once a parallel kernel has run), or why not."""
    try:
        import numba
        return numba.threading_layer()
    except (ImportError, ValueError) as exc:
        return f"n/a ({exc})"


def mnist_like(n_samples, n_features=784, n_classes=10, seed=0):
    """Standard-normal float32 X (n_samples, n_features) and teacher labels."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features), dtype=np.float32)
    teacher = rng.standard_normal((n_features, n_classes)).astype(np.float32)
    y = (X @ teacher).argmax(axis=1)
    return X, y


def contenders(backends, epochs):
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier

    from fastnn import MLPClassifier

    settings = dict(hidden_layer_sizes=HIDDEN, solver="adam", batch_size=BATCH, max_iter=epochs,
                    random_state=0)
    runs = {"sklearn": lambda: SkMLPClassifier(**settings)}
    for name in backends:
        backend = None if name == "auto" else name
        runs[f"fastnn[{name}]"] = (lambda b=backend: MLPClassifier(**settings, backend=b))
    return runs


def _time_fits(runs, X, y, rounds, seed=0):
    """{name: [seconds per epoch, one per round]}, contenders shuffled every round."""
    rng = np.random.default_rng(seed)
    names = list(runs)
    for name in names:  # warm-up
        runs[name]().set_params(max_iter=1).fit(X[:2 * BATCH], y[:2 * BATCH])
    times = {name: [] for name in names}
    for r in range(rounds):
        for i in rng.permutation(len(names)):
            name = names[i]
            est = runs[name]()
            t0 = time.perf_counter()
            est.fit(X, y)
            elapsed = time.perf_counter() - t0
            times[name].append(elapsed / est.n_iter_)
            print(f"  round {r + 1}/{rounds}  {name:<22} {elapsed / est.n_iter_:8.3f} s/epoch",
                  flush=True)
    return times


def digits_accuracy():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier

    from fastnn import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X / 16.0, y, test_size=0.2, random_state=0)
    settings = dict(hidden_layer_sizes=(64,), solver="adam", max_iter=50, random_state=0)
    ours = MLPClassifier(**settings).fit(X_tr, y_tr).score(X_te, y_te)
    theirs = SkMLPClassifier(**settings).fit(X_tr, y_tr).score(X_te, y_te)
    return ours, theirs


def main(argv=None):
    from sklearn.exceptions import ConvergenceWarning

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="6000 samples, 3 rounds of 1 epoch (default: 60000, 3 rounds of 2)")
    parser.add_argument("--samples", type=int, help="number of samples (overrides --quick)")
    parser.add_argument("--epochs", type=int, help="epochs per timed fit")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median over them)")
    parser.add_argument("--backends", nargs="+", default=["auto"],
                        help="fastnn backends to time ('auto' = fastnn's default choice)")
    args = parser.parse_args(argv)
    n = args.samples or (6000 if args.quick else 60000)
    epochs = args.epochs or (1 if args.quick else 2)
    warnings.simplefilter("ignore", ConvergenceWarning)

    X, y = mnist_like(n)
    auto = get_backend(None, BATCH * max(X.shape[1], *HIDDEN)).NAME
    print(f"data: X {X.shape} {X.dtype}, hidden {HIDDEN}, batch {BATCH}, adam, "
          f"{epochs} epoch(s) per fit, {args.rounds} rounds")
    print(f"BLAS: {blas_info()}")
    print(f"fastnn 'auto' backend for this work: {auto}")
    times = _time_fits(contenders(args.backends, epochs), X, y, args.rounds)

    base = statistics.median(times["sklearn"])
    print()
    print(f"numba threading layer: {threading_layer()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    print(f"{'contender':<22} {'median s/epoch':>15} {'min':>8} {'max':>8} {'speed-up vs sklearn':>20}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<22} {med:15.3f} {min(ts):8.3f} {max(ts):8.3f} {base / med:19.2f}x")

    print()
    ours, theirs = digits_accuracy()
    print(f"digits accuracy (hidden (64,), adam, 50 epochs, random_state 0, 80/20 split): "
          f"fastnn {ours:.4f}, sklearn {theirs:.4f}, difference {100 * (ours - theirs):+.2f} points")


if __name__ == "__main__":
    main()
