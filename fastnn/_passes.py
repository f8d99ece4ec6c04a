"""One forward and one backward pass over all layers, written against the
kernel interface (:mod:`fastnn.backends._interface`) of any backend.

``bk`` is a backend module; every array is one of its arrays.
"""


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
