"""Speed of each kernel of the backend interface, one class per kernel.

Shapes: a hidden layer ``W`` of ``(N_OUT, N_IN)`` = (1024, 1024) over a batch of
``M`` = 512 columns (between the mnist and wide configs), and a 10-unit softmax
output layer over the same batch.  Axes: backend x dtype.  ``setup`` builds
the arrays once per process (asv re-runs it between samples) and calls the
kernel once, so a Numba compile (or a cache load) is never inside a figure.
"""

import numpy as np

from .common import BACKENDS, DTYPES, require_backend, sync

try:  # imported here so that asv's forkserver children inherit it
    import numba  # noqa: F401
except ImportError:
    pass

N_OUT, N_IN, M, N_CLASSES = 1024, 1024, 512, 10

_arrays = {}
_warm = set()


def _host_arrays(dtype):
    """Seeded inputs of every kernel, one set per dtype and process."""
    if dtype not in _arrays:
        rng = np.random.default_rng(0)
        dt = np.dtype(dtype)

        def randn(*shape, scale=1.0):
            return (rng.standard_normal(shape) * scale).astype(dt)

        logits = randn(N_CLASSES, M, scale=2.0)
        E = np.exp(logits - logits.max(axis=0))
        labels = np.zeros((N_CLASSES, M), dtype=dt)
        labels[rng.integers(0, N_CLASSES, M), np.arange(M)] = 1
        _arrays[dtype] = {
            "W": randn(N_OUT, N_IN, scale=np.sqrt(2.0 / N_IN)),
            "b": randn(N_OUT, 1, scale=0.1),
            "A_prev": np.maximum(randn(N_IN, M), 0),
            "A": np.maximum(randn(N_OUT, M), 0),
            "dA": randn(N_OUT, M),
            "dZ": randn(N_OUT, M),
            "Z_out": logits,
            "A_out": (E / E.sum(axis=0)).astype(dt),
            "Y_out": labels,
            "G": randn(N_OUT, N_IN, scale=1e-3),
        }
    return _arrays[dtype]


class _Kernel:
    """Base: ``setup`` puts the arrays the kernel needs on the backend and runs
    it once; subclasses define ``needs``, ``call`` and a ``time_`` method."""

    params = [BACKENDS, DTYPES]
    param_names = ["backend", "dtype"]
    needs = ()
    number = 1
    repeat = (3, 20, 10.0)
    timeout = 300

    def setup(self, backend, dtype):
        self.bk = require_backend(backend, dtype)
        key = (type(self).__name__, backend, dtype)
        if key not in _arrays:
            host = _host_arrays(dtype)
            # In-place kernels (the updates, the fused backward on Numba)
            # write into these device copies, never into the host arrays.
            _arrays[key] = {k: self.bk.to_device(host[k].copy()) for k in self.needs}
        self.a = _arrays[key]
        self.c = np.dtype(dtype).type
        if key not in _warm:
            self.call()
            sync(self.bk)
            _warm.add(key)

    def call(self):
        raise NotImplementedError


class TimeForwardHidden(_Kernel):
    """``forward_hidden``: A = relu(W @ A_prev + b) (the GEMM plus the fused bias+activation)."""

    needs = ("W", "A_prev", "b")

    def call(self):
        return self.bk.forward_hidden(self.a["W"], self.a["A_prev"], self.a["b"], "relu")

    def time_forward_hidden(self, backend, dtype):
        self.call()
        sync(self.bk)


class TimeBackwardHidden(_Kernel):
    """``backward_hidden``: dZ = dA * relu'(A) and db = (1/m) sum(dZ, axis=1), fused.
    (On Numba dZ overwrites dA; relu' is idempotent, so repeated calls see the same data.)"""

    needs = ("dA", "A")
    number = 10

    def call(self):
        return self.bk.backward_hidden(self.a["dA"], self.a["A"], "relu", self.c(1.0 / M))

    def time_backward_hidden(self, backend, dtype):
        self.call()
        sync(self.bk)


class TimeWeightGrad(_Kernel):
    """``weight_grad``: dW = (1/m) dZ @ A_prev.T (GEMM plus the scaling epilogue)."""

    needs = ("dZ", "A_prev", "W")

    def call(self):
        return self.bk.weight_grad(self.a["dZ"], self.a["A_prev"], self.a["W"], self.c(1.0 / M),
                                   self.c(0))

    def time_weight_grad(self, backend, dtype):
        self.call()
        sync(self.bk)


class TimeInputGrad(_Kernel):
    """``input_grad``: dA_prev = W.T @ dZ."""

    needs = ("W", "dZ")

    def call(self):
        return self.bk.input_grad(self.a["W"], self.a["dZ"])

    def time_input_grad(self, backend, dtype):
        self.call()
        sync(self.bk)


class TimeOutputDelta(_Kernel):
    """``output_delta``: softmax output gradient dZ = A - Y, db and the summed
    cross-entropy, fused, for a (10, 512) output layer."""

    needs = ("Z_out", "A_out", "Y_out")
    number = 50

    def call(self):
        return self.bk.output_delta(self.a["Z_out"], self.a["A_out"], self.a["Y_out"], "softmax",
                                    self.c(1), self.c(1.0 / M))

    def time_output_delta(self, backend, dtype):
        self.call()
        sync(self.bk)


class TimeAdamUpdate(_Kernel):
    """``adam_update`` of a (1024, 1024) weight matrix, in place."""

    needs = ("W", "G")
    number = 5

    def call(self):
        a, c = self.a, self.c
        if "M" not in a:  # first (warm-up) call: the moment buffers
            a["M"] = self.bk.zeros_like(a["W"])
            a["V"] = self.bk.zeros_like(a["W"])
        self.bk.adam_update(a["W"], a["G"], a["M"], a["V"], c(1e-6), c(0.9), c(0.999), c(1e-8), 10)

    def time_adam_update(self, backend, dtype):
        self.call()
        sync(self.bk)


class TimeSgdUpdate(_Kernel):
    """``sgd_update`` of a (1024, 1024) weight matrix, in place."""

    needs = ("W", "G")
    number = 5

    def call(self):
        self.bk.sgd_update(self.a["W"], self.a["G"], self.c(1e-6))

    def time_sgd_update(self, backend, dtype):
        self.call()
        sync(self.bk)


class TimeGatherRows:
    """``gather_rows_into``: 256 shuffled rows of 784 out of 60000 (an MNIST-shape batch,
    the first thing of every minibatch step), a fresh batch each call so that the rows
    come from memory, not cache.  Host backends only (the minibatch kernels)."""

    params = [BACKENDS, DTYPES]
    param_names = ["backend", "dtype"]
    number = 20
    repeat = (3, 20, 10.0)
    timeout = 300
    N, N_X, BATCH = 60000, 784, 256

    def setup(self, backend, dtype):
        self.bk = require_backend(backend, dtype)
        if not hasattr(self.bk, "gather_rows_into"):
            raise NotImplementedError(f"{backend} has no minibatch kernels")
        key = (type(self).__name__, dtype)
        if key not in _arrays:   # 188 MB (float32) built once per process, not per sample
            rng = np.random.default_rng(0)
            XR = rng.standard_normal((self.N, self.N_X)).astype(dtype)
            batches = rng.permutation(self.N)[:self.N // self.BATCH * self.BATCH]
            _arrays[key] = XR, batches.reshape(-1, self.BATCH)
        self.XR, self.batches = _arrays[key]
        self.out = np.empty((self.BATCH, self.N_X), dtype)
        self.k = 0
        self.bk.gather_rows_into(self.XR, self.batches[0], self.out)   # compile / cache load

    def time_gather_rows(self, backend, dtype):
        self.k = (self.k + 1) % len(self.batches)
        self.bk.gather_rows_into(self.XR, self.batches[self.k], self.out)
