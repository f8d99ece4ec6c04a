"""The ``fastnn`` command line.

``fastnn train`` trains a network on one of scikit-learn's bundled datasets (digits by
default: no download) or on an ``.npz`` file and prints one line per epoch; ``fastnn
explain`` writes out backprop for a tiny network; ``fastnn stability`` runs the 1/m
placement experiments.

Every option and path is checked before any work starts.  A bad one ends the command with
one line, ``fastnn COMMAND: error: --OPTION: what is wrong``, and exit status 2.
``--layers`` means the same in ``train`` and ``explain``: every layer size
``n_0,n_1,...,n_L``, input and output included, like ``Model``'s ``layer_dims``.
"""

import argparse
import math
import os
import sys
import time

import numpy as np

from ._validation import all_finite
from .activations import HIDDEN_ACTIVATIONS
from .backends import REGISTRY
from .network import OUTPUT_GRADS, SCALINGS
from .optim import OPTIMIZERS

DATASETS = ("digits", "breast_cancer", "iris", "wine")
#: Hidden sizes of ``train``'s default network, ``n_0,128,64,n_L``.
DEFAULT_HIDDEN = (128, 64)
#: fastnn is installed from its source folder: the hints name the real packages.
SKLEARN_HINT = 'pip install scikit-learn (or, in fastnn\'s source folder, pip install -e ".[sklearn]")'
PLOT_HINT = 'pip install matplotlib (or, in fastnn\'s source folder, pip install -e ".[plot]")'
LAYERS_HELP = ("every layer size n_0,n_1,...,n_L, comma-separated, input and output included "
               "(Model's layer_dims)")


class OptionError(Exception):
    """A command-line option that cannot work; the message starts with the option's name."""

    def __init__(self, option, message):
        super().__init__(f"{option}: {message}")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``PROG: error: --OPTION: ...``, exit 2), no usage block."""

    def error(self, message):
        if message.startswith("argument "):
            message = message[len("argument "):]
        self.exit(2, f"{self.prog}: error: {message}\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none (None, False) or help says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or not action.option_strings):
            return text
        return text + " (default: %(default)s)"

    def _expand_help(self, action):
        if isinstance(action.default, (list, tuple)):
            action = argparse.Action(action.option_strings, action.dest, default=",".join(map(str, action.default)),
                                     help=action.help, choices=action.choices, metavar=action.metavar)
        return super()._expand_help(action)


# ------------------------------------------------------------ option types

def _integer(lo):
    """argparse type: an integer >= ``lo``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {value}")
        return value
    return parse


def _real(lo, *, lo_open=False, hi=None, what=""):
    """argparse type: a finite float >= ``lo`` (> with ``lo_open``), and < ``hi`` when given."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        bad = not math.isfinite(value) or value < lo or (lo_open and value == lo) or (hi is not None and value >= hi)
        if bad:
            rng = (f"strictly between {lo:g} and {hi:g}" if hi is not None else
                   f"a finite number {'>' if lo_open else '>='} {lo:g}")
            raise argparse.ArgumentTypeError(f"must be {rng}{what}, got {text}")
        return value
    return parse


def _comma_ints(text):
    """The integers of ``"a,b,..."`` (empty items skipped); ArgumentTypeError if one is not an integer."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _parse_layers(text):
    """argparse type: ``n_0,...,n_L``, at least two positive integers."""
    sizes = _comma_ints(text)
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected at least two sizes >= 1 (n_0,...,n_L: input, hidden..., "
                                         f"output), got {text!r}")
    return sizes


def _int_list(text):
    """argparse type: one or more comma-separated integers >= 1."""
    values = _comma_ints(text)
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _names(allowed):
    """argparse type: a comma-separated subset of ``allowed``."""
    def parse(text):
        values = [v.strip() for v in text.split(",") if v.strip()]
        unknown = [v for v in values if v not in allowed]
        if not values or unknown:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(allowed)}, "
                                             f"got {text!r}")
        return values
    return parse


# ------------------------------------------------------------ train: data

#: The bundled datasets' files in scikit-learn's ``datasets/data`` folder, which
#: :func:`_bundled_file` reads without importing scikit-learn (the import is most of a
#: ``fastnn train`` run on digits: about 1 s of 2.9 s).
BUNDLED_FILES = {"digits": "digits.csv.gz", "breast_cancer": "breast_cancer.csv",
                 "iris": "iris.csv", "wine": "wine_data.csv"}


def _bundled_file(name):
    """``(X, y)`` of the bundled dataset ``name`` read from scikit-learn's data file, the
    arrays its ``load_<name>(return_X_y=True)`` returns: ``X`` float64 ``(m, n_features)``,
    ``y`` int ``(m,)``; None when scikit-learn or the file is not where expected."""
    import importlib.util
    try:
        spec = importlib.util.find_spec("sklearn")
        path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data",
                            BUNDLED_FILES[name])
        if name == "digits":   # rows of 64 pixel values and the digit, no header
            data, m, n = np.loadtxt(path, delimiter=",", ndmin=2), 1797, 64
        else:                  # a header "m,n_features,class names...", then rows
            with open(path) as f:
                m, n = (int(v) for v in f.readline().split(",")[:2])
                data = np.loadtxt(f, delimiter=",", ndmin=2)
    except (ImportError, AttributeError, TypeError, IndexError, OSError, ValueError):
        return None
    if data.shape != (m, n + 1) or not np.array_equal(data[:, -1], np.round(data[:, -1])):
        return None
    return data[:, :-1], data[:, -1].astype(int)


def _load_bundled(name):
    found = _bundled_file(name)
    if found is not None:
        return found
    try:
        from sklearn import datasets
    except ImportError:
        raise OptionError("--data", f"the bundled datasets come with scikit-learn, which is not installed: "
                                    f"{SKLEARN_HINT}; or pass --data FILE.npz") from None
    return getattr(datasets, f"load_{name}")(return_X_y=True)


def _load_npz(path):
    """(X, y) from ``path``, with clear errors for anything but arrays X (m, n) and y (m,)."""
    import zipfile
    if not os.path.exists(path):
        raise OptionError("--data", f"no such file: {path} (expected one of {', '.join(DATASETS)} or FILE.npz)")
    if os.path.isdir(path):
        raise OptionError("--data", f"{path} is a folder, not a .npz file")
    try:
        with np.load(path, allow_pickle=False) as data:
            files = sorted(data.files)
            if "X" not in files or "y" not in files:
                raise OptionError("--data", f"{path} holds arrays {files}; expected X (m, n_features) and y (m,)")
            return data["X"], data["y"]
    except AttributeError:  # a single .npy array has no .files
        raise OptionError("--data", f"{path} is a .npy array, not a .npz archive of X and y") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise OptionError("--data", f"{path} is not a .npz archive of X and y (NumPy: "
                                    f"{' '.join(str(exc).split())[:120]})") from None


def _check_xy(X, y, source):
    X, y = np.asarray(X), np.asarray(y)
    if X.dtype.kind not in "biuf" or X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 1:
        raise OptionError("--data", f"{source}: X must be a 2-D numeric array (m examples, n_features) with "
                                    f"m >= 2, got shape {X.shape} dtype {X.dtype}")
    if y.ndim == 2 and 1 in y.shape:
        y = y.ravel()
    if y.ndim != 1 or y.dtype.kind not in "biufUS":
        raise OptionError("--data", f"{source}: y must be a 1-D array of labels (m,), got shape {y.shape} "
                                    f"dtype {y.dtype}")
    if len(y) != X.shape[0]:
        hint = " (X looks transposed: one example per row)" if X.shape[1] == len(y) else ""
        raise OptionError("--data", f"{source}: y has {len(y)} labels but X has {X.shape[0]} rows "
                                    f"(one row per example){hint}")
    bad = X.dtype.kind == "f" and not all_finite(X)
    if bad or (y.dtype.kind == "f" and not all_finite(y)):
        raise OptionError("--data", f"{source}: {'X' if bad else 'y'} has nan or inf entries")
    return X, y


def _load_dataset(name, test_fraction, seed):
    """(X_train, y_train, X_test, y_test, n_classes), X as (n_features, m) scaled to [0, 1]."""
    if name in DATASETS:
        X, y = _check_xy(*_load_bundled(name), name)
    elif name.endswith(".npz") or os.path.exists(name):
        X, y = _check_xy(*_load_npz(name), name)
    else:
        raise OptionError("--data", f"{name!r} is neither a bundled dataset ({', '.join(DATASETS)}) "
                                    "nor a .npz file")
    X = np.asarray(X, dtype=np.float64)
    lo, hi = X.min(axis=0), X.max(axis=0)
    X = (X - lo) / np.where(hi > lo, hi - lo, 1)
    classes, y = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise OptionError("--data", f"{name}: y has a single class ({classes[0]!r}); a classifier needs two or more")
    n_test = int(round(test_fraction * len(y)))
    if not 1 <= n_test <= len(y) - 1:
        raise OptionError("--test-fraction", f"{test_fraction:g} of {len(y)} examples leaves "
                                             f"{'no test' if n_test < 1 else 'no training'} example")
    perm = np.random.default_rng(seed).permutation(len(y))
    te, tr = perm[:n_test], perm[n_test:]
    return X[tr].T, y[tr], X[te].T, y[te], len(classes)


# ------------------------------------------------------------ train: checks

def _check_writable(option, path):
    """The folder of ``path`` exists and is writable, and ``path`` is not a folder."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise OptionError(option, f"{path} is a folder; expected a file name")
    if not os.path.isdir(folder):
        raise OptionError(option, f"the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OptionError(option, f"the folder {folder} is not writable")


def _check_plot(path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise OptionError("--plot", f"needs matplotlib, which is not installed: {PLOT_HINT}") from None
    _check_writable("--plot", path)
    kinds = FigureCanvasBase.get_supported_filetypes()
    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    if suffix not in kinds:
        raise OptionError("--plot", f"{path}: unknown image type {suffix or '(no suffix)'!r}; "
                                    f"use one of {', '.join(sorted(kinds))}")


def _network(args, n_features, n_classes):
    """(layer_dims, output) for the data, checking ``--output`` and ``--layers`` against it."""
    output = args.output or ("sigmoid" if n_classes == 2 else "softmax")
    if output == "sigmoid" and n_classes != 2:
        raise OptionError("--output", f"sigmoid needs 2 classes; {args.data} has {n_classes} (use softmax)")
    n_out = 1 if output == "sigmoid" else n_classes
    dims = list(args.layers) if args.layers else [n_features, *DEFAULT_HIDDEN, n_out]
    if dims[0] != n_features or dims[-1] != n_out:
        why = "1 sigmoid unit for 2 classes" if output == "sigmoid" else f"{n_classes} classes, softmax"
        raise OptionError("--layers", f"{','.join(map(str, dims))} must start with n_0 = {n_features} "
                                      f"({args.data}'s features) and end with n_L = {n_out} ({why}), e.g. "
                                      f"{','.join(map(str, [n_features, *DEFAULT_HIDDEN, n_out]))}")
    return dims, output


def _backend(name, work):
    from .backends import get_backend
    from .errors import BackendUnavailableError
    try:
        return get_backend(name, work)
    except BackendUnavailableError as exc:
        raise OptionError("--backend", str(exc)) from None


def _prepare(args):
    """Everything ``_train`` needs, every option and path checked; raises OptionError."""
    if args.save:
        _check_writable("--save", args.save)
    if args.plot:
        _check_plot(args.plot)
    Xtr, ytr, Xte, yte, n_classes = _load_dataset(args.data, args.test_fraction, args.seed)
    dims, output = _network(args, Xtr.shape[0], n_classes)
    bk = _backend(args.backend, min(args.batch_size, Xtr.shape[1]) * max(dims[1:]))
    dtype = np.dtype(args.dtype)
    Xtr, Xte = Xtr.astype(dtype), Xte.astype(dtype)
    if output == "sigmoid":
        ytr, yte = ytr.reshape(1, -1), yte.reshape(1, -1)
    return argparse.Namespace(Xtr=Xtr, Ytr=ytr, Xte=Xte, Yte=yte, dims=dims, output=output, bk=bk)


def _add_train(sub):
    p = sub.add_parser("train", help="train a network on a bundled dataset (no download) or a .npz file",
                       formatter_class=_HelpFormatter,
                       description="Train a fully-connected classifier and report cost and accuracy per epoch. "
                                   "Every option and path is checked before training starts.")
    p.add_argument("--data", default="digits",
                   help=f"one of {', '.join(DATASETS)} (scikit-learn's bundled data, no download; needs "
                        "scikit-learn), or FILE.npz with arrays X (m, n_features) and y (m,) of labels")
    p.add_argument("--layers", type=_parse_layers, default=None, metavar="N0,N1,...,NL",
                   help=f"{LAYERS_HELP}; n_0 must be the data's feature count, n_L its class count (1 for "
                        f"sigmoid on 2 classes) (default: n_0,{','.join(map(str, DEFAULT_HIDDEN))},n_L, e.g. "
                        "64,128,64,10 for digits)")
    p.add_argument("--hidden", choices=HIDDEN_ACTIVATIONS, default="relu", help="hidden activation")
    p.add_argument("--output", choices=("sigmoid", "softmax"), default=None,
                   help="output activation (default: sigmoid for 2 classes, softmax otherwise)")
    p.add_argument("--epochs", type=_integer(1), default=30, help="passes over the training set")
    p.add_argument("--batch-size", type=_integer(1), default=32, help="examples per step")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="update rule")
    p.add_argument("--lr", type=_real(0, lo_open=True), default=1e-3, help="learning rate")
    p.add_argument("--l2", type=_real(0), default=0.0, help="L2 strength")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="floating dtype")
    p.add_argument("--scaling", choices=SCALINGS, default="deferred", help="where the cost's 1/m goes")
    p.add_argument("--output-grad", choices=OUTPUT_GRADS, default="fused", help="output-layer gradient route")
    p.add_argument("--backend", choices=("auto", *REGISTRY), default=None,
                   help="kernels (default: $FASTNN_BACKEND, else auto: the fastest compiled CPU backend)")
    p.add_argument("--seed", type=_integer(0), default=0, help="seeds the split, the weights and the shuffle")
    p.add_argument("--test-fraction", type=_real(0, lo_open=True, hi=1, what=" (the share held out for testing)"),
                   default=0.2, help="share of the examples held out for testing")
    p.add_argument("--plot", metavar="FILE.png", help="write the cost and accuracy curves (needs matplotlib)")
    p.add_argument("--save", metavar="FILE.npz", help="save the trained model (.npz appended when missing)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _train(args):
    from .model import Model

    d = _prepare(args)
    print(f"fastnn train: {args.data}, {d.Xtr.shape[1]} train / {d.Xte.shape[1]} test examples, "
          f"layers {d.dims}, {args.hidden}/{d.output}")
    print(f"backend {d.bk.NAME}, dtype {args.dtype}, optimizer {args.optimizer} lr={args.lr}, "
          f"batch {args.batch_size}, scaling {args.scaling}")
    model = Model(d.dims, args.hidden, d.output, dtype=args.dtype, seed=args.seed)
    curves = {"train": [], "test": []}

    def report(epoch, m, history):
        curves["train"].append(m.score(d.Xtr, d.Ytr, backend=d.bk.NAME))
        curves["test"].append(m.score(d.Xte, d.Yte, backend=d.bk.NAME))
        line = (f"epoch {epoch:4d}  cost {history.cost[-1]:.6f}  train acc {curves['train'][-1]:.4f}  "
                f"test acc {curves['test'][-1]:.4f}  {history.time[-1] * 1e3:7.1f} ms")
        try:
            from tqdm.auto import tqdm
            tqdm.write(line)
        except ImportError:
            print(line)

    t0 = time.perf_counter()
    history = model.fit(d.Xtr, d.Ytr, epochs=args.epochs, batch_size=args.batch_size,
                        optimizer=args.optimizer, lr=args.lr, l2=args.l2, scaling=args.scaling,
                        output_grad=args.output_grad, backend=d.bk.NAME, shuffle_seed=args.seed,
                        progress=not args.no_progress, callback=report)
    elapsed = time.perf_counter() - t0
    print(f"done: {args.epochs} epochs in {elapsed:.2f} s ({sum(history.time):.2f} s training), "
          f"final cost {history.cost[-1]:.6f}, test accuracy {curves['test'][-1]:.4f}")
    if args.save:
        print(f"saved model to {model.save(args.save)}")
    if args.plot:
        _plot(args.plot, history, curves, f"{args.data} {d.dims} {d.bk.NAME} {args.dtype}")
        print(f"wrote {args.plot}")
    return 0


def _plot(path, history, curves, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
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
                       formatter_class=_HelpFormatter,
                       description="A short answer to where the 1/m goes, then the forward and backward pass of "
                                   "a tiny network on random data: every dZ, dW, db, dA with its formula, shapes, "
                                   "what it is the derivative of and where the 1/m enters, each checked against "
                                   "central differences; then the one-example view, the deferred/absorbed "
                                   "conventions and the output-layer routes.")
    p.add_argument("--layers", type=_parse_layers, default=[2, 4, 1], metavar="N0,N1,...,NL", help=LAYERS_HELP)
    p.add_argument("--hidden", choices=HIDDEN_ACTIVATIONS, default="tanh", help="hidden activation")
    p.add_argument("--output", choices=("sigmoid", "softmax", "identity"), default="sigmoid",
                   help="output activation")
    p.add_argument("--m", type=_integer(1), default=5, help="number of examples")
    p.add_argument("--scaling", choices=SCALINGS, default="deferred", help="where the cost's 1/m goes")
    p.add_argument("--seed", type=_integer(0), default=0, help="seeds the weights, biases, X and Y")
    p.add_argument("--format", choices=("text", "markdown"), default="text",
                   help="text: aligned, coloured on a terminal (NO_COLOR turns colour off); markdown: for notes")
    p.add_argument("--l2", type=_real(0), default=0.0, help="L2 strength")

    def run(args):
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
        formatter_class=_HelpFormatter,
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
                   help="sweep size; medium takes a few minutes on two cores")
    p.add_argument("--quick", action="store_true", help="the quick preset (under a minute)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", default=None,
                   help="run the points on this dask.distributed scheduler (pip install 'dask[distributed]')")
    p.add_argument("--workers", type=_integer(1), default=None,
                   help="local worker processes (default: 2; 1: in-process)")
    p.add_argument("--dtypes", type=_names(("float16", "bfloat16", "float32", "float64")), default=None,
                   help="comma-separated subset of float16,bfloat16,float32,float64")
    p.add_argument("--scalings", type=_names(SCALINGS), default=None,
                   help="comma-separated subset of deferred,absorbed,sum")
    p.add_argument("--ms", type=_int_list, default=None, metavar="M,M,...",
                   help="keep only these m, in every block of the preset (comma-separated)")
    p.add_argument("--seeds", type=_integer(1), default=None,
                   help="number of seeds in every block (default: each block's own)")
    p.add_argument("--steps", type=_integer(0), default=None, help="SGD steps of the training comparison (0: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="write results.jsonl only")

    def _stability(args):
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise OptionError("--out", f"{args.out} is a file; expected a folder")
        from .stability import _cli
        return _cli(args)

    p.set_defaults(func=_stability)


def build_parser():
    """The argument parser with every subcommand."""
    parser = _Parser(prog="fastnn", description="Fast, verified fully-connected networks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_stability(sub)
    _add_explain(sub)
    return parser


def _one_line(exc, args):
    """The exception's message on one line, ``name: ...`` turned into ``--name: ...`` for an option."""
    text = " ".join(str(exc).split())
    head, sep, rest = text.partition(":")
    option = "--" + head.strip().replace("_", "-")
    if sep and head.isidentifier() and hasattr(args, head.strip()):
        return f"{option}:{rest}"
    return text


def main(argv=None):
    """Entry point of the ``fastnn`` command: the exit status (0 ok, 1 failed checks, 2 bad usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from .errors import BackendUnavailableError, DivergenceError, SaturationError
    prog = f"fastnn {args.command}"
    try:
        return args.func(args)
    except OptionError as exc:
        parser.exit(2, f"{prog}: error: {exc}\n")
    except (ValueError, TypeError, BackendUnavailableError) as exc:
        parser.exit(2, f"{prog}: error: {_one_line(exc, args)}\n")
    except (DivergenceError, SaturationError) as exc:
        parser.exit(1, f"{prog}: error: {_one_line(exc, args)}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"{prog}: interrupted\n")


if __name__ == "__main__":
    sys.exit(main())
