"""fastnn.MLPClassifier against sklearn.neural_network.MLPClassifier, each in a process of its own.

    python -m benchmarks.sklearn_compare            # MNIST shape: 60000 x 784
    python -m benchmarks.sklearn_compare --quick    # 6000 samples
    python -m benchmarks.sklearn_compare --backends auto numba numpy --load 1

Speed: random data of MNIST's shape (float32, labels from a fixed random linear
teacher so there is something to learn), hidden layers (256, 128), batch 256,
adam, the same settings and ``random_state`` for both (``benchmarks.run_one``'s
``mnist`` config).  Every fit runs in a fresh process (``python -m
benchmarks.run_one fastnn-mlp|sklearn-mlp mnist``) that first fits once untimed
(Numba's JIT or cache load, BLAS thread start-up), then times one fit; the
parent waits for it to exit before starting the next, alternating the
contenders round-robin.  The table shows the median over rounds of fit time
per epoch (one-time costs of a fit -- input validation, fastnn's one transpose
-- included), min-max, and the ratio against scikit-learn.  ``--load N`` runs
the fits beside N busy processes that the script starts and always stops.

Accuracy: both estimators on scikit-learn's digits (hidden (64,), adam,
50 epochs, random_state 0, 80/20 split), test accuracies side by side (in
this process, after the timings).
"""

import argparse
import os
import statistics

from . import harness

HIDDEN = (256, 128)
BATCH = 256


def make_jobs(backends, n_samples, epochs):
    """``{label: (contender, "mnist", args)}``: scikit-learn and fastnn on each backend."""
    common = ["--m", n_samples, "--epochs", epochs]
    jobs = {"sklearn": ("sklearn-mlp", "mnist", common)}
    for name in backends:
        extra = [] if name == "auto" else ["--backend", name]
        jobs[f"fastnn[{name}]"] = ("fastnn-mlp", "mnist", common + extra)
    return jobs


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
    import warnings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="6000 samples, 1 epoch (default: 60000, 1 epoch)")
    parser.add_argument("--samples", type=int, help="number of samples (overrides --quick)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed fit")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (median over them)")
    parser.add_argument("--load", type=int, default=0, help="busy background processes to run beside")
    parser.add_argument("--backends", nargs="+", default=["auto"],
                        help="fastnn backends to time ('auto' = fastnn's default choice)")
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args(argv)
    n = args.samples or (6000 if args.quick else 60000)
    env, unset = harness.child_env()
    machine = harness.machine_info()
    print(f"data: X ({n}, 784) float32, hidden {HIDDEN}, batch {BATCH}, adam, "
          f"{args.epochs} epoch(s) per fit, {args.rounds} rounds; load average {machine['loadavg']}")
    harness.sigterm_interrupts()
    with harness.BusyLoad(args.load):
        results = harness.run_rounds(make_jobs(args.backends, n, args.epochs), args.rounds, env,
                                     log=lambda s: print(s, flush=True))
    results = harness.completed(results)
    if "sklearn" not in results:
        print("no round of scikit-learn finished: no table")
        return
    print()
    for line in harness.markdown_header(machine, harness.versions_of(results), unset, args.load,
                                        args.rounds):
        print(line)
    base = statistics.median(results["sklearn"]["rounds"]) / args.epochs
    print(f"| contender | s/epoch (median, min-max) | speed-up vs scikit-learn |\n|---|---|---|")
    for name, entry in results.items():
        s = harness.summarize([t / args.epochs for t in entry["rounds"]])
        print(f"| {name} | {harness.fmt_s(s)} | {base / s['median']:.2f}x |")
    print(f"\nload average after: {list(os.getloadavg())}")
    for line, labels in harness.blas_of(results).items():
        print(f"BLAS: {line} -- in {', '.join(labels)}")
    if not args.skip_accuracy:
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours, theirs = digits_accuracy()
        print(f"digits accuracy (hidden (64,), adam, 50 epochs, random_state 0, 80/20 split): "
              f"fastnn {ours:.4f}, sklearn {theirs:.4f}, difference {100 * (ours - theirs):+.2f} points")


if __name__ == "__main__":
    main()
