"""The course's training loops on fastnn's kernels (the ``backend=`` fast path).

Same initialisation (done by the caller, from the global RNG), same full-batch
gradient descent, same learning rate, same recorded iterations; the loop runs
in the backend's ``sgd_loop`` (compiled on the Numba backends), in chunks so
costs can be reported as the course reports them.  The numbers equal the
course's to float64 rounding: the cost is computed from the logits and
``dZ[L] = A - Y`` directly, instead of through ``log(AL)`` and ``dAL``.
"""

import numbers

import numpy as np

from .. import _validation as V
from ..backends import get_backend
from ..engine import sgd_loop
from ..errors import DivergenceError
from ..network import backend_lock
from ..threads import policy_for


def run(parameters, X, Y, hidden, learning_rate, num_iterations, backend, report, every):
    """Train ``parameters`` (not modified) for ``num_iterations`` steps; return the new dict.

    Parameters
    ----------
    parameters : dict
        ``W1, b1, ..., WL, bL`` (float64).
    X : ndarray, shape (n_x, m)
    Y : ndarray, shape (1, m) or (m,), float64 labels: any finite real values,
        as the course's loop takes them (its public tests feed ``randn`` labels)
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
    learning_rate = _check_learning_rate(learning_rate)
    if isinstance(num_iterations, bool) or not isinstance(num_iterations, numbers.Integral):
        raise V.FastnnTypeError(f"num_iterations: expected an integer, got {type(num_iterations).__name__}")
    num_iterations = int(num_iterations)  # < 1: no iterations, as the course's range()
    X = V.as_array(X, "X", np.float64)
    if 0 in X.shape:
        raise V.FastnnValueError(f"X: expected a non-empty (n_x, m) array, got shape {X.shape}")
    Ws, bs, _ = V.check_params(parameters, "parameters")
    X = V.check_X(X, Ws[0].shape[1], np.float64, n0_from="parameters['W1'] has n_0 columns")
    # Shape and finiteness only: the logit form of the cost, softplus(z) - y z,
    # and dZ = A - Y equal the course's formulas for every real y, not just 0/1.
    Y = V.check_Y(Y, "identity", Ws[-1].shape[0], X.shape[1], np.float64)
    bk = get_backend(backend, X.shape[1] * max(W.shape[0] for W in Ws))
    Ws = [bk.to_device(W.astype(np.float64, copy=True)) for W in Ws]
    bs = [bk.to_device(b.astype(np.float64, copy=True)) for b in bs]
    Xd, Yd = bk.to_device(X), bk.to_device(Y)
    with backend_lock(bk), policy_for(bk, Ws, X.shape[1]):
        _loop(bk, Ws, bs, Xd, Yd, hidden, learning_rate, num_iterations, report, every)
    out = {}
    for l, (W, b) in enumerate(zip(Ws, bs), start=1):
        out[f"W{l}"] = bk.to_host(W)
        out[f"b{l}"] = bk.to_host(b)
    return out


def _loop(bk, Ws, bs, Xd, Yd, hidden, learning_rate, num_iterations, report, every):
    start = 0
    while start < num_iterations:
        n = min(every, num_iterations - start)
        costs, steps = sgd_loop(bk, Ws, bs, Xd, Yd, hidden, "sigmoid", "deferred", 0.0,
                                   learning_rate, n)
        if steps < n:
            raise DivergenceError(f"iteration {start + steps}: the cost or a gradient is not "
                                  f"finite (learning_rate={learning_rate} too large?)")
        for i in range(start, start + n):
            if i % every == 0 or i == num_iterations - 1:
                report(i, costs[i - start])
        start += n


def _check_learning_rate(learning_rate):
    """A finite real number (any sign, as in the course's loop)."""
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real):
        raise V.FastnnTypeError(f"learning_rate: expected a real number, got {type(learning_rate).__name__}")
    learning_rate = float(learning_rate)
    if not np.isfinite(learning_rate):
        raise V.FastnnValueError(f"learning_rate: expected a finite number, got {learning_rate}")
    return learning_rate
