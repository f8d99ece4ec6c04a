"""The ``fastnn`` command line.

``fastnn train`` trains a network on a bundled dataset (scikit-learn's digits
by default: no download) and prints one line per epoch.
"""

import argparse
import sys
import time

import numpy as np

from .activations import HIDDEN_ACTIVATIONS, OUTPUT_ACTIVATIONS
from .network import OUTPUT_GRADS, SCALINGS
from .optim import OPTIMIZERS

DATASETS = ("digits", "breast_cancer", "iris", "wine")


def _load_dataset(name, test_fraction, seed):
    """(X_train, y_train, X_test, y_test) with X as (n_features, m), features scaled to [0, 1]."""
    if name.endswith(".npz"):
        with np.load(name, allow_pickle=False) as data:
            X, y = data["X"], data["y"]
    else:
        try:
            from sklearn import datasets
        except ImportError:
            sys.exit("fastnn train: the bundled datasets come with scikit-learn; "
                     "pip install 'fastnn[sklearn]' or pass --data FILE.npz (arrays X (m, n), y (m,))")
        X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    X = np.asarray(X, dtype=np.float64)
    lo, hi = X.min(axis=0), X.max(axis=0)
    X = (X - lo) / np.where(hi > lo, hi - lo, 1)
    classes, y = np.unique(y, return_inverse=True)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    te, tr = perm[:n_test], perm[n_test:]
    return X[tr].T, y[tr], X[te].T, y[te], len(classes)


def _parse_layers(text):
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _add_train(sub):
    p = sub.add_parser("train", help="train a network on a bundled dataset (no download)",
                       description="Train a fully-connected network and report cost and accuracy per epoch.")
    p.add_argument("--data", default="digits",
                   help=f"one of {', '.join(DATASETS)} (scikit-learn's bundled data), or FILE.npz "
                        "with arrays X (m, n_features) and y (m,) (default: digits)")
    p.add_argument("--layers", type=_parse_layers, default=[128, 64],
                   help="hidden layer sizes, comma-separated (default: 128,64)")
    p.add_argument("--hidden", choices=HIDDEN_ACTIVATIONS, default="relu")
    p.add_argument("--output", choices=OUTPUT_ACTIVATIONS, default=None,
                   help="default: sigmoid for 2 classes, softmax otherwise")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--l2", type=float, default=0.0)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--scaling", choices=SCALINGS, default="deferred")
    p.add_argument("--output-grad", choices=OUTPUT_GRADS, default="fused")
    p.add_argument("--backend", default=None, help="numpy, numba, numba-parallel, cuda or auto")
    p.add_argument("--seed", type=int, default=0, help="seeds the split, the weights and the shuffle")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--plot", metavar="FILE.png", help="write the cost and accuracy curves")
    p.add_argument("--save", metavar="FILE.npz", help="save the trained model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _train(args):
    from .backends import get_backend
    from .model import Model

    Xtr, ytr, Xte, yte, n_classes = _load_dataset(args.data, args.test_fraction, args.seed)
    output = args.output or ("sigmoid" if n_classes == 2 else "softmax")
    n_out = 1 if output == "sigmoid" and n_classes == 2 else n_classes
    Ytr, Yte = (ytr.reshape(1, -1), yte.reshape(1, -1)) if n_out == 1 else (ytr, yte)
    dims = [Xtr.shape[0], *args.layers, n_out]
    model = Model(dims, args.hidden, output, dtype=args.dtype, seed=args.seed)
    bk = get_backend(args.backend, min(args.batch_size, Xtr.shape[1]) * max(dims[1:]))
    print(f"fastnn train: {args.data}, {Xtr.shape[1]} train / {Xte.shape[1]} test examples, "
          f"layers {dims}, {args.hidden}/{output}")
    print(f"backend {bk.NAME}, dtype {args.dtype}, optimizer {args.optimizer} lr={args.lr}, "
          f"batch {args.batch_size}, scaling {args.scaling}")
    curves = {"train": [], "test": []}

    def report(epoch, m, history):
        curves["train"].append(m.score(Xtr, Ytr, backend=bk.NAME))
        curves["test"].append(m.score(Xte, Yte, backend=bk.NAME))
        line = (f"epoch {epoch:4d}  cost {history.cost[-1]:.6f}  train acc {curves['train'][-1]:.4f}  "
                f"test acc {curves['test'][-1]:.4f}  {history.time[-1] * 1e3:7.1f} ms")
        try:
            from tqdm.auto import tqdm
            tqdm.write(line)
        except ImportError:
            print(line)

    t0 = time.perf_counter()
    history = model.fit(Xtr, Ytr, epochs=args.epochs, batch_size=args.batch_size,
                        optimizer=args.optimizer, lr=args.lr, l2=args.l2, scaling=args.scaling,
                        output_grad=args.output_grad, backend=bk.NAME, shuffle_seed=args.seed,
                        progress=not args.no_progress, callback=report)
    elapsed = time.perf_counter() - t0
    print(f"done: {args.epochs} epochs in {elapsed:.2f} s ({sum(history.time):.2f} s training), "
          f"final cost {history.cost[-1]:.6f}, test accuracy {curves['test'][-1]:.4f}")
    if args.save:
        model.save(args.save)
        print(f"saved model to {args.save}")
    if args.plot:
        _plot(args.plot, history, curves, f"{args.data} {dims} {bk.NAME} {args.dtype}")
        print(f"wrote {args.plot}")
    return 0


def _plot(path, history, curves, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("--plot needs matplotlib: pip install 'fastnn[plot]'")
    epochs = np.arange(1, len(history.cost) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.semilogy(epochs, history.cost)
    ax1.set(xlabel="epoch", ylabel="cost J (log scale)", title="training cost")
    ax2.plot(epochs, curves["train"], label="train")
    ax2.plot(epochs, curves["test"], label="test")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _add_explain(sub):
    p = sub.add_parser("explain", help="backprop for one tiny network, every quantity written out and checked",
                       description="Forward and backward pass of a tiny network on random data: every dZ, dW, "
                                   "db, dA with its formula, shapes, what it is the derivative of and where the "
                                   "1/m enters, each checked against central differences; then the one-example "
                                   "view, the deferred/absorbed conventions and the output-layer routes.")
    p.add_argument("--layers", type=_parse_layers, default=[2, 4, 1],
                   help="all layer sizes n_0,...,n_L, comma-separated, input and output included (default: 2,4,1)")
    p.add_argument("--hidden", choices=HIDDEN_ACTIVATIONS, default="tanh")
    p.add_argument("--output", choices=OUTPUT_ACTIVATIONS, default="sigmoid")
    p.add_argument("--m", type=int, default=5, help="number of examples (default: 5)")
    p.add_argument("--scaling", choices=SCALINGS, default="deferred")
    p.add_argument("--seed", type=int, default=0, help="seeds the weights, biases, X and Y")
    p.add_argument("--format", choices=("text", "markdown"), default="text",
                   help="text: aligned, coloured on a terminal (NO_COLOR turns colour off); markdown: for notes")
    p.add_argument("--l2", type=float, default=0.0, help="L2 strength (default: 0)")

    def run(args):
        import os

        from .explain import explain, render_markdown, render_text
        result = explain(args.layers, hidden=args.hidden, output=args.output, m=args.m, scaling=args.scaling,
                         seed=args.seed, l2=args.l2)
        if args.format == "markdown":
            text = render_markdown(result)
        else:
            color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
            text = render_text(result, color=color)
        sys.stdout.write(text)
        return 0 if result.all_passed else 1

    p.set_defaults(func=run)


def _add_stability(sub):
    p = sub.add_parser(
        "stability", help="measure where the 1/m goes numerically (sweep, report, plots)",
        description="Sweep the placement of the cost's 1/m (deferred, absorbed, sum) over number formats "
                    "(float16, bfloat16 emulated exactly, float32, float64), mixed-precision recipes, m, "
                    "divide-by-m and micro-batches, training stages and data sets, network, output route, "
                    "summation order and backend; compare every gradient with a higher-precision "
                    "reference; write results.jsonl, summary.md and PNG plots into --out.  Points already "
                    "in --out are skipped.  'fastnn stability report SOURCE' rebuilds the tables and plots "
                    "from saved results (a folder or a .jsonl/.jsonl.gz file).")
    p.add_argument("action", nargs="?", choices=("run", "report"), default="run",
                   help="run (default): sweep into --out; report SOURCE: tables and plots from saved results")
    p.add_argument("source", nargs="?", default=None,
                   help="for report: a results folder or a results .jsonl/.jsonl.gz file")
    p.add_argument("--out", default="stability-results",
                   help="results folder (default: stability-results; for report: stability-report)")
    p.add_argument("--preset", choices=("quick", "medium", "full"), default="medium",
                   help="sweep size (default: medium, a few minutes on two cores)")
    p.add_argument("--quick", action="store_true", help="the quick preset (under a minute)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", default=None,
                   help="run the points on this dask.distributed scheduler (pip install 'dask[distributed]')")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: 2; 1: in-process)")
    p.add_argument("--dtypes", type=lambda t: [v for v in t.split(",") if v], default=None,
                   help="comma-separated subset of float16,bfloat16,float32,float64")
    p.add_argument("--scalings", type=lambda t: [v for v in t.split(",") if v], default=None,
                   help="comma-separated subset of deferred,absorbed,sum")
    p.add_argument("--ms", type=_parse_layers, default=None, metavar="M,M,...",
                   help="keep only these m, in every block of the preset (comma-separated)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds in every block (default: each block's own)")
    p.add_argument("--steps", type=int, default=None, help="SGD steps of the training comparison (0: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="write results.jsonl only")

    def _stability(args):
        from .stability import _cli
        return _cli(args)

    p.set_defaults(func=_stability)


def build_parser():
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="fastnn", description="Fast, verified fully-connected networks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_stability(sub)
    _add_explain(sub)
    return parser


def main(argv=None):
    """Entry point of the ``fastnn`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from .errors import BackendUnavailableError
    try:
        return args.func(args)
    except (ValueError, TypeError, BackendUnavailableError) as exc:
        parser.exit(2, f"fastnn {args.command}: error: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
