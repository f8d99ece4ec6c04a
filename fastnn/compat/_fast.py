"""The course's training loops on fastnn's kernels (the ``backend=`` fast path).

Same initialisation (done by the caller, from the global RNG), same full-batch
gradient descent, same learning rate, same recorded iterations; the loop runs
in the backend's ``sgd_loop`` (compiled on the Numba backends), in chunks so
costs can be reported as the course reports them.  The numbers equal the
course's to float64 rounding: the cost is computed from the logits and
``dZ[L] = A - Y`` directly, instead of through ``log(AL)`` and ``dAL``.
"""

import numpy as np

from .. import _validation as V
from ..backends import get_backend
from ..errors import DivergenceError


def run(parameters, X, Y, hidden, learning_rate, num_iterations, backend, report, every):
    """Train ``parameters`` (not modified) for ``num_iterations`` steps; return the new dict.

    Parameters
    ----------
    parameters : dict
        ``W1, b1, ..., WL, bL`` (float64).
    X : ndarray, shape (n_x, m)
    Y : ndarray, shape (1, m), float64 0/1 labels
    hidden : {"relu", "tanh"}
        Hidden activation; the output layer is sigmoid.
    learning_rate : float
    num_iterations : int
    backend : str
        A fastnn backend name or "auto".
    report : callable
        ``report(i, cost)`` for every iteration ``i`` whose cost the caller
        records or prints (``i % every == 0`` and the last one), in order.
    every : int
    """
    Ws, bs, _ = V.check_params(parameters, "parameters")
    X = V.check_X(X, Ws[0].shape[1], np.float64)
    Y = V.check_Y(Y, "sigmoid", Ws[-1].shape[0], X.shape[1], np.float64)
    bk = get_backend(backend, X.shape[1] * max(max(W.shape) for W in Ws))
    Ws = [bk.to_device(W.astype(np.float64, copy=True)) for W in Ws]
    bs = [bk.to_device(b.astype(np.float64, copy=True)) for b in bs]
    Xd, Yd = bk.to_device(X), bk.to_device(Y)
    start = 0
    while start < num_iterations:
        n = min(every, num_iterations - start)
        costs, steps = bk.sgd_loop(Ws, bs, Xd, Yd, hidden, "sigmoid", "deferred", 0.0,
                                   learning_rate, n)
        if steps < n:
            raise DivergenceError(f"iteration {start + steps}: the cost or a gradient is not "
                                  f"finite (learning_rate={learning_rate} too large?)")
        for i in range(start, start + n):
            if i % every == 0 or i == num_iterations - 1:
                report(i, costs[i - start])
        start += n
    out = {}
    for l, (W, b) in enumerate(zip(Ws, bs), start=1):
        out[f"W{l}"] = bk.to_host(W)
        out[f"b{l}"] = bk.to_host(b)
    return out
