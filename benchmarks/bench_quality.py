"""Training quality: a fixed short training run, so that a change that makes a
step faster but trains worse shows up next to the speed graphs.

Data: scikit-learn's bundled digits (``common.digits_data``; a synthetic
10-class problem of the same shape when scikit-learn is missing), 75/25
split.  Model ``[64, 32, 10]``, ReLU, softmax, seed 0.  Two runs:

- ``adam-minibatch``: Adam, lr 0.01, minibatches of 64, 10 epochs (the
  kernel-by-kernel path, with shuffling seeded);
- ``sgd-fullbatch``: full-batch SGD, lr 0.5, 200 epochs (on Numba the
  compiled whole loop, ``sgd_loop``).

``track_final_cost``: the cost J of the last epoch (unit "cost", lower is
better); ``track_test_accuracy``: accuracy on the held-out quarter (unit
"accuracy", higher is better).  Between backends and dtypes these differ by
rounding only, which over a few hundred steps stays in the last digits.
"""

import numpy as np

import fastnn

from .common import BACKENDS, DTYPES, digits_data, require_backend

try:  # imported here so that asv's forkserver children inherit it
    import numba  # noqa: F401
except ImportError:
    pass

RUNS = {
    "adam-minibatch": dict(epochs=10, batch_size=64, optimizer="adam", lr=0.01, shuffle_seed=0),
    "sgd-fullbatch": dict(epochs=200, optimizer="sgd", lr=0.5),
}


class TrackQuality:
    params = [BACKENDS, DTYPES, list(RUNS)]
    param_names = ["backend", "dtype", "run"]
    rounds = 1
    timeout = 600

    def setup(self, backend, dtype, run):
        require_backend(backend, dtype)
        Xtr, ytr, Xte, yte, _ = digits_data(dtype)
        model = fastnn.Model([64, 32, 10], "relu", "softmax", dtype=dtype, seed=0)
        history = model.fit(Xtr, ytr, backend=backend, progress=False, **RUNS[run])
        self.cost = float(history.cost[-1])
        self.accuracy = float(np.mean(model.predict(Xte, backend=backend) == yte))

    def track_final_cost(self, backend, dtype, run):
        return self.cost

    track_final_cost.unit = "cost"

    def track_test_accuracy(self, backend, dtype, run):
        return self.accuracy

    track_test_accuracy.unit = "accuracy"
