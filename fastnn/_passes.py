"""One forward and one backward pass over all layers, written against the
kernel interface (:mod:`fastnn.backends._interface`) of any backend.

``bk`` is a backend module; every array is one of its arrays.
"""

import numpy as np


def _scales(scaling, m, dtype):
    """(dz_scale, w_scale) for the output dZ and for every dW, db."""
    one, inv_m = dtype.type(1), dtype.type(1.0 / m)
    return {"deferred": (one, inv_m), "absorbed": (inv_m, one), "sum": (one, one)}[scaling]


def _forward(bk, Ws, bs, X, hidden, output):
    As = [X]
    for W, b in zip(Ws[:-1], bs[:-1]):
        As.append(bk.forward_hidden(W, As[-1], b, hidden))
    ZL, AL = bk.forward_output(Ws[-1], As[-1], bs[-1], output)
    As.append(AL)
    return As, ZL


def _backward(bk, Ws, As, ZL, Y, hidden, output, scaling, output_grad, l2):
    """Gradient lists (dWs, dbs) and the summed loss, all on the backend."""
    m, dtype = Y.shape[1], Y.dtype
    dz_scale, w_scale = _scales(scaling, m, dtype)
    l2_scale = dtype.type(l2 / m)
    delta = bk.output_delta_chain if output_grad == "chain" else bk.output_delta
    dZ, db, loss_sum = delta(ZL, As[-1], Y, output, dz_scale, w_scale)
    L = len(Ws)
    dWs, dbs = [None] * L, [None] * L
    for l in range(L - 1, -1, -1):
        dWs[l] = bk.weight_grad(dZ, As[l], Ws[l], w_scale, l2_scale)
        dbs[l] = db
        if l:  # dA[0] = W[1].T @ dZ[1] is never used: skip it
            dA = bk.input_grad(Ws[l], dZ)
            dZ, db = bk.backward_hidden(dA, As[l], hidden, w_scale)
    return dWs, dbs, loss_sum


def _cost(bk, loss_sum, Ws, m, l2):
    """J = loss_sum / m + (l2 / (2m)) sum ||W||^2, as a float."""
    J = loss_sum / m
    if l2:
        J += l2 / (2 * m) * sum(float(np.sum(np.square(bk.to_host(W), dtype=np.float64))) for W in Ws)
    return J


def sgd_loop(bk, Ws, bs, X, Y, hidden, output, scaling, l2, lr, iterations):
    """Full-batch SGD for ``iterations`` steps, kernel by kernel (any backend).

    Updates Ws, bs in place.  Returns ``(costs, steps)``: the cost J of each
    iteration before its update (float64 array) and the number of completed
    steps, smaller than ``iterations`` when a cost or gradient was not finite.
    """
    costs = np.full(iterations, np.nan)
    lr = X.dtype.type(lr)
    m = X.shape[1]
    for it in range(iterations):
        As, ZL = _forward(bk, Ws, bs, X, hidden, output)
        dWs, dbs, loss_sum = _backward(bk, Ws, As, ZL, Y, hidden, output, scaling, "fused", l2)
        costs[it] = _cost(bk, loss_sum, Ws, m, l2)
        grads = dWs + dbs
        if not np.isfinite(costs[it]) or not all(bk.all_finite(g) for g in grads):
            return costs, it
        for P, G in zip(Ws + bs, grads):
            bk.sgd_update(P, G, lr)
    return costs, iterations
