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


def _forward_dropout(bk, Ws, bs, X, hidden, output, drop):
    """:func:`_forward` with inverted dropout after each hidden layer (``drop``: a
    :class:`fastnn._dropout.DropoutStep`).

    Returns ``(As, Gs, ZL)``: ``As[l]`` the dropped activations ``A[l] * D[l] / keep[l]``
    that the next layer reads (and its ``dW`` multiplies), ``Gs[l]`` the undropped
    ``A[l] = g(Z[l])`` that ``g'`` is computed from; the same array where keep is 1.
    """
    As, Gs = [X], [X]
    for l, (W, b) in enumerate(zip(Ws[:-1], bs[:-1]), start=1):
        A = bk.forward_hidden(W, As[-1], b, hidden)
        Gs.append(A)
        keep = drop.keeps[l - 1]
        As.append(A if keep == 1.0 else bk.dropout_forward(A, keep, drop.key(l)))
    ZL, AL = bk.forward_output(Ws[-1], As[-1], bs[-1], output)
    As.append(AL)
    Gs.append(AL)
    return As, Gs, ZL


def _backward(bk, Ws, As, ZL, Y, hidden, output, scaling, output_grad, l2, weights="full",
              drop=None, Gs=None):
    """Gradient lists (dWs, dbs) and the summed loss, all on the backend.

    With dropout (``drop`` and ``Gs`` from :func:`_forward_dropout`) the gradient
    reaching a hidden layer's dropped output is masked and scaled as the forward
    was, ``dA[l] = dA~[l] * D[l] / keep[l]``, before ``dZ[l] = dA[l] * g'(Z[l])``
    (from the undropped ``Gs[l]``).

    ``weights`` says what the dW list holds: ``"full"`` the gradients
    ``w_scale * dZ @ A_prev.T + (l2 / m) W``; ``"bare"`` the products
    ``dZ @ A_prev.T``, for an optimizer that applies the scale and the L2 term
    itself (``adam_update``'s ``g_scale``, ``l2``: one pass over the weights
    less); ``"deltas"`` each layer's ``dZ`` (no product at all), for an update
    that is one GEMM (``weight_step``).
    """
    m, dtype = Y.shape[1], Y.dtype
    dz_scale, w_scale = _scales(scaling, m, dtype)
    l2_scale = dtype.type(l2 / m)
    if weights == "bare":
        w_scale_dW, l2_scale = dtype.type(1), dtype.type(0)
    else:
        w_scale_dW = w_scale
    delta = bk.output_delta_chain if output_grad == "chain" else bk.output_delta
    dZ, db, loss_sum = delta(ZL, As[-1], Y, output, dz_scale, w_scale)
    L = len(Ws)
    dWs, dbs = [None] * L, [None] * L
    for l in range(L - 1, -1, -1):
        dWs[l] = dZ if weights == "deltas" else bk.weight_grad(dZ, As[l], Ws[l], w_scale_dW,
                                                                l2_scale)
        dbs[l] = db
        if l:  # dA[0] = W[1].T @ dZ[1] is never used: skip it
            dA = bk.input_grad(Ws[l], dZ)
            if drop is not None and drop.keeps[l - 1] != 1.0:
                dA = bk.dropout_backward(dA, drop.keeps[l - 1], drop.key(l))
            dZ, db = bk.backward_hidden(dA, As[l] if Gs is None else Gs[l], hidden, w_scale)
    return dWs, dbs, loss_sum


def _cost(bk, loss_sum, Ws, m, l2):
    """J = loss_sum / m + (l2 / (2m)) sum ||W||^2, as a float."""
    J = loss_sum / m
    if l2:
        J += l2 / (2 * m) * sum(float(np.sum(np.square(bk.to_host(W), dtype=np.float64))) for W in Ws)
    return J


#: Largest m for the dual first layer: its Gram matrix X.T @ X is (m, m).
DUAL_MAX_M = 4096


def dual_pays(n1, n0, m, l2, iterations):
    """Whether :func:`sgd_loop` runs the first layer in its dual form (see there).

    Counted in multiply-adds: the primal form does ``W1 @ X`` and ``dZ1 @ X.T``
    every step (``2 n1 n0 m``); the dual one forms ``X.T @ X`` and ``W1 @ X``
    once, ``C @ G`` every step (``n1 m^2``) and ``C @ X.T`` at the end.  It is
    chosen when it needs less than half the work, m is at most
    :data:`DUAL_MAX_M`, and there is no L2 term (whose decay of ``W1`` the
    dual form does not carry).
    """
    primal = 2 * n1 * n0 * m * iterations
    dual = n0 * m * m + 2 * n1 * n0 * m + iterations * n1 * m * m
    return not l2 and m <= DUAL_MAX_M and 2 * dual < primal


def sgd_loop(bk, Ws, bs, X, Y, hidden, output, scaling, l2, lr, iterations, dual=None):
    """Full-batch SGD for ``iterations`` steps, kernel by kernel (any backend).

    Updates Ws, bs in place.  Returns ``(costs, steps)``: the cost J of each
    iteration before its update (float64 array) and the number of completed
    steps, smaller than ``iterations`` when a cost or gradient was not finite.

    Dual first layer (``dual=None``: when :func:`dual_pays`; ``True``/``False``
    to force it).  With full-batch gradient descent every update of ``W1`` is
    ``-lr * w_scale * dZ1 @ X.T``, a combination of the examples, so after t
    steps ``W1 = W1_0 + C @ X.T`` with ``C`` of shape (n1, m), and
    ``W1 @ X = W1_0 @ X + C @ (X.T @ X)``.  The loop keeps ``C`` instead of
    ``W1``: each step costs ``n1 m^2`` multiply-adds instead of ``2 n1 n0 m``
    (the course's cat net, n0 = 12288 and m = 209: 60x fewer), and ``W1`` is
    formed once at the end.  Same iterates in exact arithmetic; in floating
    point the products are summed in a different order (tested against the
    primal loop with the conftest tolerance).  A step counts as non-finite
    when its ``dZ1`` is (``dW1`` is never formed).
    """
    costs = np.full(iterations, np.nan)
    lr = X.dtype.type(lr)
    m = X.shape[1]
    n1, n0 = Ws[0].shape
    if dual is None:
        dual = len(Ws) > 1 and dual_pays(n1, n0, m, l2, iterations)
    if dual and (l2 or len(Ws) < 2):
        raise ValueError("the dual first layer needs a hidden layer and no L2 term")
    if dual and iterations > 0:
        return _sgd_loop_dual(bk, Ws, bs, X, Y, hidden, output, scaling, lr, iterations, costs)
    dtype = X.dtype
    _, w_scale = _scales(scaling, m, dtype)
    l2_scale = dtype.type(l2 / m)
    # Each weight matrix takes its step in one GEMM, W = beta W + alpha dZ @ A_prev.T
    # (weight_step): no dW array, no scaling or update pass over it.
    alpha, beta = dtype.type(-lr * w_scale), dtype.type(1) - lr * l2_scale
    for it in range(iterations):
        As, ZL = _forward(bk, Ws, bs, X, hidden, output)
        dZs, dbs, loss_sum = _backward(bk, Ws, As, ZL, Y, hidden, output, scaling, "fused", l2,
                                       weights="deltas")
        costs[it] = _cost(bk, loss_sum, Ws, m, l2)
        if not np.isfinite(costs[it]) or not all(bk.all_finite(g) for g in dbs):
            return costs, it
        if all(_weight_grad_bounded(bk, dZ, A, W, w_scale, l2_scale)
               for W, dZ, A in zip(Ws, dZs, As)):
            for W, dZ, A in zip(Ws, dZs, As):
                bk.weight_step(W, dZ, A, alpha, beta)
        else:
            # Possibly non-finite: form every dW and check it before any update, as
            # the step-by-step path does (the same step then counts as failed).
            dWs = [bk.weight_grad(dZ, A, W, w_scale, l2_scale) for W, dZ, A in zip(Ws, dZs, As)]
            if not all(bk.all_finite(g) for g in dWs):
                return costs, it
            for W, G in zip(Ws, dWs):
                bk.sgd_update(W, G, lr)
        for b, g in zip(bs, dbs):
            bk.sgd_update(b, g, lr)
    return costs, iterations


def _weight_grad_bounded(bk, dZ, A_prev, W, w_scale, l2_scale):
    """True when ``dW = w_scale dZ @ A_prev.T + l2_scale W`` is certainly finite.

    ``P = m max|dZ| max|A_prev|`` bounds every partial sum of the product (before
    its scaling), and ``|w_scale| P + |l2_scale| max|W|`` the result; below a
    quarter of the dtype's largest value the rounded values are finite too.  A
    non-finite input makes the bound inf or NaN (False).
    """
    product = dZ.shape[1] * bk.max_abs(dZ) * bk.max_abs(A_prev)
    result = abs(float(w_scale)) * product
    if l2_scale:
        result += abs(float(l2_scale)) * bk.max_abs(W)
    limit = float(np.finfo(dZ.dtype).max) / 4
    return product < limit and result < limit


def _sgd_loop_dual(bk, Ws, bs, X, Y, hidden, output, scaling, lr, iterations, costs):
    """:func:`sgd_loop` with the first layer kept as ``C`` (its docstring); no L2."""
    m, dtype = X.shape[1], X.dtype
    dz_scale, w_scale = _scales(scaling, m, dtype)
    G = bk.input_grad(X, X)                                           # (m, m)
    zero_b = bk.zeros_like(bs[0])
    Z0 = bk.forward_hidden(Ws[0], X, zero_b, "identity")              # W1_0 @ X, (n1, m)
    C = bk.zeros_like(Z0)
    L = len(Ws)
    steps = iterations
    for it in range(iterations):
        As = [X, bk.forward_hidden_offset(C, G, bs[0], Z0, hidden)]
        for W, b in zip(Ws[1:-1], bs[1:-1]):
            As.append(bk.forward_hidden(W, As[-1], b, hidden))
        ZL, AL = bk.forward_output(Ws[-1], As[-1], bs[-1], output)
        As.append(AL)
        dZ, db, loss_sum = bk.output_delta(ZL, As[-1], Y, output, dz_scale, w_scale)
        grads, dWs = [], []
        for l in range(L - 1, 0, -1):
            dWs.append(bk.weight_grad(dZ, As[l], Ws[l], w_scale, dtype.type(0)))
            grads.append((bs[l], db))
            dA = bk.input_grad(Ws[l], dZ)
            dZ, db = bk.backward_hidden(dA, As[l], hidden, w_scale)
        grads.append((bs[0], db))
        costs[it] = loss_sum / m
        if not np.isfinite(costs[it]) or not (
                bk.all_finite(dZ) and all(bk.all_finite(g) for g in dWs)
                and all(bk.all_finite(g) for _, g in grads)):
            steps = it
            break
        for l, dW in zip(range(L - 1, 0, -1), dWs):
            bk.sgd_update(Ws[l], dW, lr)
        for b, g in grads:
            bk.sgd_update(b, g, lr)
        bk.sgd_update(C, dZ, lr * w_scale)                           # C -= lr * w_scale * dZ1
    # W1 = W1_0 + C @ X.T, written into W1 in place.
    bk.sgd_update(Ws[0], bk.weight_grad(C, X, Ws[0], dtype.type(1), dtype.type(0)), dtype.type(-1))
    return costs, steps
