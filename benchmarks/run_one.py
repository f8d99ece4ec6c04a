"""Time one contender on one config in this process, and print the timings as JSON.

    python -m benchmarks.run_one CONTENDER CONFIG [--samples S] [--backend B] [--m M]

``benchmarks.compare`` and ``benchmarks.sklearn_compare`` start one such
process per contender and round, one at a time (the parent waits for it to
exit before it starts the next), so no contender is ever timed beside another
contender's live thread pool (PyTorch's OpenMP threads, OpenBLAS's spinning
threads, Numba's workers).  The process builds the data (seeded), runs the
work once untimed (JIT compile or cache load, BLAS thread start, first touch
of the memory), then times ``S`` samples, each on a freshly initialised
network, and prints one JSON object on the last line of stdout:

``{"contender", "config", "work", "samples": [seconds, ...], "warmup_s",
"versions": {...}, "blas": [...], "info": {...}}``

Contenders (the heavy libraries are imported only by their own contender):

- ``fastnn-fit``: ``fastnn.Model(...).fit(X, Y, ...)`` with ``X`` ``(n_x, m)``, the
  transposed view of the row-major examples (the course's ``reshape(m, -1).T``);
- ``fastnn-mlp`` / ``sklearn-mlp``: ``MLPClassifier(hidden, batch_size, max_iter,
  solver="adam")`` of fastnn / scikit-learn on row-major ``X`` ``(m, n_x)``;
- ``torch``: PyTorch as its users write it: ``nn.Sequential`` of ``nn.Linear``
  and activations, row-major batches ``(b, n_x)`` drawn with ``torch.randperm``
  each epoch, ``torch.optim``, ``loss.backward()``;
- ``torch-cuda``: the ``torch`` contender on the GPU: model, examples and labels
  moved to ``"cuda"`` once before the timing (the whole dataset fits in GPU
  memory), batches drawn with ``torch.randperm`` on the GPU, and a
  ``torch.cuda.synchronize()`` at the end of the work;
- ``torch-course``: PyTorch in the course layout: ``W @ A + b`` with ``W``
  ``(n_l, n_{l-1})`` and column batches ``(n_x, b)``, same loss and optimizer;
- ``gemm``: NumPy's matrix products of the same work alone (per step: forward
  ``W @ A`` for every layer, ``dZ @ A_prev.T`` for every layer, ``W.T @ dZ`` for
  every layer but the first; fastnn's layout), the floor a trainer's step sits on.
"""

import argparse
import json
import sys
import time
import warnings

import numpy as np

#: name -> the work: layer sizes, activations, examples, batch (None: full
#: batch), optimizer and learning rate, epochs (a full-batch epoch is one step).
CONFIGS = {
    "mnist": dict(dims=[784, 256, 128, 10], hidden="relu", output="softmax", m=60000,
                  batch=256, optimizer="adam", lr=0.001, epochs=1,
                  work="MNIST shape, 60000 x 784, [784,256,128,10], batch 256, Adam, 1 epoch"),
    "cat": dict(dims=[12288, 20, 7, 5, 1], hidden="relu", output="sigmoid", m=209,
                batch=None, optimizer="sgd", lr=0.0075, epochs=100,
                work="cat net [12288,20,7,5,1], m = 209, 100 full-batch SGD steps"),
    # scikit-learn's digits in shape (random data): what a learner's first fits look like,
    # where per-epoch and per-call costs show.
    "small": dict(dims=[64, 64, 10], hidden="relu", output="softmax", m=1797,
                  batch=200, optimizer="adam", lr=0.001, epochs=50,
                  work="digits' shape, 1797 x 64, [64,64,10], batch 200, Adam, 50 epochs"),
    # Small enough for the tests (well under a second of work).
    "tiny": dict(dims=[20, 16, 8, 3], hidden="relu", output="softmax", m=512,
                 batch=64, optimizer="adam", lr=0.001, epochs=1,
                 work="tiny, 512 x 20, [20,16,8,3], batch 64, Adam, 1 epoch"),
}

CONTENDERS = ("fastnn-fit", "fastnn-mlp", "sklearn-mlp", "torch", "torch-cuda", "torch-course",
              "gemm")


def make_data(spec, seed=0):
    """Row-major float32 ``X`` ``(m, n_x)``, standard normal, and integer labels ``(m,)``
    from a fixed random linear teacher (0/1 for a sigmoid output)."""
    rng = np.random.default_rng(seed)
    n_x, n_out = spec["dims"][0], spec["dims"][-1]
    X = rng.standard_normal((spec["m"], n_x), dtype=np.float32)
    teacher = rng.standard_normal((n_x, max(n_out, 2))).astype(np.float32)
    y = (X @ teacher).argmax(axis=1)
    return X, y


def batch_sizes(spec):
    """The sizes of the minibatches of one epoch (the last one may be short)."""
    m, b = spec["m"], spec["batch"] or spec["m"]
    return [min(b, m - i) for i in range(0, m, b)]


# ------------------------------------------------------------------ contenders
# Each ``prepare_*`` returns ``(setup, info)``: ``setup()`` builds a fresh net
# and returns ``work()``, the timed part.

def _picked(spec, backend):
    """The backend fastnn runs this work on (what ``backend=None``, "auto", resolves to)."""
    from fastnn.backends import get_backend

    work = (spec["batch"] or spec["m"]) * max(spec["dims"][1:])
    return get_backend(backend, work, np.float32).NAME


def prepare_fastnn_fit(spec, X, y, backend):
    import fastnn

    # The user's data in fastnn's layout (n_x, m) the way the course builds it,
    # ``X_orig.reshape(m, -1).T``: an F-ordered view of the row-major examples, the
    # same bytes the PyTorch contender batches from (a C-ordered copy costs a fit
    # one transposed copy more: docs/benchmarks.md).
    XT = X.T
    Y = y if spec["output"] == "softmax" else y.reshape(1, -1).astype(np.float32)

    def setup():
        model = fastnn.Model(spec["dims"], spec["hidden"], spec["output"], dtype=np.float32, seed=0)
        return lambda: model.fit(XT, Y, epochs=spec["epochs"], batch_size=spec["batch"],
                                 optimizer=spec["optimizer"], lr=spec["lr"], backend=backend,
                                 shuffle_seed=0, progress=False)
    return setup, {"fastnn": fastnn.__version__, "backend": backend or "auto",
                   "backend_run": _picked(spec, backend)}


def _mlp_settings(spec):
    if spec["output"] != "softmax" or spec["batch"] is None:
        raise SystemExit(f"the MLPClassifier contenders take a minibatch softmax config, "
                         f"not {spec['work']!r}")
    return dict(hidden_layer_sizes=tuple(spec["dims"][1:-1]), activation=spec["hidden"],
                solver="adam", batch_size=spec["batch"], max_iter=spec["epochs"],
                learning_rate_init=spec["lr"], random_state=0,
                n_iter_no_change=spec["epochs"] + 1)  # every epoch runs


def prepare_fastnn_mlp(spec, X, y, backend):
    settings = _mlp_settings(spec)
    import fastnn

    def setup():
        est = fastnn.MLPClassifier(**settings, backend=backend)
        return lambda: est.fit(X, y)
    return setup, {"fastnn": fastnn.__version__, "backend": backend or "auto",
                   "backend_run": _picked(spec, backend)}


def prepare_sklearn_mlp(spec, X, y, backend):
    settings = _mlp_settings(spec)
    import sklearn
    from sklearn.neural_network import MLPClassifier

    def setup():
        est = MLPClassifier(**settings)
        return lambda: est.fit(X, y)
    return setup, {"sklearn": sklearn.__version__}


def _torch_loss(torch, spec, y):
    if spec["output"] == "softmax":
        return torch.nn.CrossEntropyLoss(), torch.from_numpy(y.astype(np.int64))
    return torch.nn.BCEWithLogitsLoss(), torch.from_numpy(y.astype(np.float32))


def _torch_train(torch, spec, params, forward, loss_fn, Xt, yt, take, device="cpu"):
    """``work()``: the epochs of minibatch (or full-batch) training, shuffled per epoch.

    ``take(A, idx)`` picks the examples ``idx`` of ``A`` (rows or columns); on
    ``device="cuda"`` the permutation is drawn there and the work ends with a
    synchronize, so the timing covers the queued kernels.
    """
    opt_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[spec["optimizer"]]
    opt = opt_cls(params, lr=spec["lr"])
    gen = torch.Generator(device=device).manual_seed(0)
    m, b = spec["m"], spec["batch"]

    def work():
        for _ in range(spec["epochs"]):
            if b is None:
                batches = [(Xt, yt)]
            else:
                perm = torch.randperm(m, generator=gen, device=device)
                batches = ((take(Xt, perm[i:i + b]), take(yt, perm[i:i + b]))
                           for i in range(0, m, b))
            for xb, yb in batches:
                opt.zero_grad()
                loss = loss_fn(forward(xb), yb)
                loss.backward()
                opt.step()
        if device != "cpu":
            torch.cuda.synchronize()
    return work


def prepare_torch(spec, X, y, backend, device="cpu"):
    import torch
    from torch import nn

    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[spec["hidden"]]
    dims = spec["dims"]
    loss_fn, yt = _torch_loss(torch, spec, y)
    if spec["output"] != "softmax":
        yt = yt.reshape(-1, 1)
    Xt, yt = torch.from_numpy(X).to(device), yt.to(device)

    def setup():
        torch.manual_seed(0)
        layers = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(act())
        model = nn.Sequential(*layers).to(device)
        return _torch_train(torch, spec, model.parameters(), model, loss_fn, Xt, yt,
                            lambda A, idx: A[idx], device)
    info = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    if device != "cpu":
        info["device"] = torch.cuda.get_device_name()
    return setup, info


def prepare_torch_cuda(spec, X, y, backend):
    return prepare_torch(spec, X, y, backend, device="cuda")


def prepare_torch_course(spec, X, y, backend):
    import torch

    dims = spec["dims"]
    act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[spec["hidden"]]
    loss_fn, yt = _torch_loss(torch, spec, y)
    Xt = torch.from_numpy(np.ascontiguousarray(X.T))  # (n_x, m)
    softmax = spec["output"] == "softmax"
    if softmax:  # cross_entropy wants (b, classes) logits and (b,) labels
        take = (lambda A, idx: A[:, idx] if A.dim() == 2 else A[idx])
    else:
        yt = yt.reshape(1, -1)
        take = (lambda A, idx: A[:, idx])

    def setup():
        gen = np.random.default_rng(0)
        Ws = [torch.nn.Parameter(torch.from_numpy(
            (gen.standard_normal((dims[l], dims[l - 1])) * np.sqrt(2 / dims[l - 1])).astype(np.float32)))
            for l in range(1, len(dims))]
        bs = [torch.nn.Parameter(torch.zeros(dims[l], 1)) for l in range(1, len(dims))]

        def forward(A):
            for l, (W, b) in enumerate(zip(Ws, bs)):
                A = W @ A + b
                if l < len(Ws) - 1:
                    A = act(A)
            return A.T if softmax else A

        return _torch_train(torch, spec, Ws + bs, forward, loss_fn, Xt, yt, take)
    return setup, {"torch": torch.__version__, "threads": torch.get_num_threads()}


def prepare_gemm(spec, X, y, backend):
    """The products of the work's training steps alone, in fastnn's layout."""
    dims, rng = spec["dims"], np.random.default_rng(1)
    Ws = [rng.standard_normal((dims[l], dims[l - 1]), dtype=np.float32) for l in range(1, len(dims))]
    Xc = np.ascontiguousarray(X.T)
    per_size = {}
    for b in set(batch_sizes(spec)):  # buffers for each batch size (a gathered batch is contiguous)
        As = [np.ascontiguousarray(Xc[:, :b])] + [np.empty((n, b), np.float32) for n in dims[1:]]
        dZs = [rng.standard_normal((n, b), dtype=np.float32) for n in dims[1:]]
        dAs = [np.empty((n, b), np.float32) for n in dims[1:-1]]
        per_size[b] = (As, dZs, dAs)
    dWs = [np.empty_like(W) for W in Ws]
    sizes = batch_sizes(spec) * spec["epochs"]

    def step(As, dZs, dAs):
        for l, W in enumerate(Ws):
            np.matmul(W, As[l], out=As[l + 1])
        for l in range(len(Ws) - 1, -1, -1):
            np.matmul(dZs[l], As[l].T, out=dWs[l])
            if l > 0:
                np.matmul(Ws[l].T, dZs[l], out=dAs[l - 1])

    def setup():
        def work():
            for b in sizes:
                step(*per_size[b])
        return work
    return setup, {}


PREPARE = {"fastnn-fit": prepare_fastnn_fit, "fastnn-mlp": prepare_fastnn_mlp,
           "sklearn-mlp": prepare_sklearn_mlp, "torch": prepare_torch,
           "torch-cuda": prepare_torch_cuda,
           "torch-course": prepare_torch_course, "gemm": prepare_gemm}


def blas_libraries():
    """The BLAS libraries loaded in this process (threadpoolctl), as short strings."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl not installed"]
    return [f"{d.get('internal_api')} {d.get('version')} {d.get('architecture')} "
            f"{d.get('num_threads')} threads ({d.get('filepath', '').rsplit('/', 1)[-1]})"
            for d in threadpool_info() if d.get("user_api") == "blas"]


def measure(contender, config, samples=1, backend=None, m=None, epochs=None):
    """The JSON-ready record of one contender on one config (see the module docstring)."""
    spec = dict(CONFIGS[config])
    if m is not None:
        spec["m"] = m
    if epochs is not None:
        spec["epochs"] = epochs
    X, y = make_data(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning after max_iter=1, etc.
        setup, info = PREPARE[contender](spec, X, y, backend)
        t0 = time.perf_counter()
        setup()()  # warm-up: JIT compile or cache load, thread start, first touch
        warmup = time.perf_counter() - t0
        times = []
        for _ in range(samples):
            work = setup()
            t0 = time.perf_counter()
            work()
            times.append(time.perf_counter() - t0)
    return {"contender": contender, "config": config, "work": spec["work"],
            "m": spec["m"], "epochs": spec["epochs"], "samples": times, "warmup_s": warmup,
            "versions": {"python": sys.version.split()[0], "numpy": np.__version__,
                         **{k: v for k, v in info.items() if k in ("fastnn", "sklearn", "torch")}},
            "blas": blas_libraries(), "info": info}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_one",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("contender", choices=CONTENDERS)
    parser.add_argument("config", choices=list(CONFIGS))
    parser.add_argument("--samples", type=int, default=1, help="timed runs after the warm-up")
    parser.add_argument("--backend", default=None, help="fastnn backend (default: auto)")
    parser.add_argument("--m", type=int, default=None, help="number of examples (default: the config's)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the config's)")
    args = parser.parse_args(argv)
    record = measure(args.contender, args.config, args.samples, args.backend, args.m, args.epochs)
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
