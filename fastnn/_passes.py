"""One forward and one backward pass over all layers, written against the
kernel interface (:mod:`fastnn.backends._interface`) of any backend.

``bk`` is a backend module; every array is one of its arrays.
"""

import numpy as np


def _scales(scaling, m, dtype):
    """(dz_scale, w_scale) for the output dZ and for every dW, db."""
    one, inv_m = dtype.type(1), dtype.type(1.0 / m)
    return {"deferred": (one, inv_m), "absorbed": (inv_m, one), "sum": (one, one)}[scaling]


class SparseRows:
    """Examples as the rows of a SciPy sparse matrix ``(m, n_0)``: ``X`` of the first layer.

    :func:`_forward` and :func:`_backward` take it in place of a dense
    ``(n_0, m)`` ``X``: the first layer's two products (``W[1] @ X`` and
    ``dZ[1] @ X.T``) run on the sparse matrix (SciPy), and only their dense
    ``(n_1, m)`` and ``(n_1, n_0)`` results reach the backend's kernels.
    ``X`` is never densified.
    """

    def __init__(self, rows):
        self.rows = rows

    @property
    def shape(self):
        """``(n_0, m)``, as a dense ``X``."""
        return self.rows.shape[::-1]


#: Output "exp" (Poisson regression): the kernels compute the identity output
#: ``Z[L]``; ``A[L] = exp(Z[L])``, its delta ``A - Y`` and the half Poisson
#: deviance are formed from host copies (:func:`_host_output_delta`).
HOST_OUTPUTS = ("exp",)


def _host(bk, A):
    return np.asarray(bk.to_host(A))


def _sparse_product(bk, W, X, dtype):
    """``W @ X`` for ``X`` a :class:`SparseRows`: ``(n_l, m)`` on the backend, C-contiguous."""
    Z = X.rows @ _host(bk, W).T                                       # (m, n_l), dense
    return bk.to_device(np.ascontiguousarray(np.asarray(Z).T, dtype=dtype))


def _first_hidden(bk, W, X, b, hidden):
    """``g(W @ X + b)`` of the first layer; ``X`` dense or :class:`SparseRows`."""
    if not isinstance(X, SparseRows):
        return bk.forward_hidden(W, X, b, hidden)
    dtype = _host(bk, W).dtype
    Z0 = _sparse_product(bk, W, X, dtype)
    n1, m = Z0.shape
    # The bias and activation kernel on a product made elsewhere: W' @ A' is empty.
    return bk.forward_hidden_offset(bk.to_device(np.zeros((n1, 0), dtype)),
                                    bk.to_device(np.zeros((0, m), dtype)), b, Z0, hidden)


def _output_forward(bk, W, A_prev, b, output):
    """``(Z[L], A[L])`` of the output layer (``A_prev`` dense or :class:`SparseRows`)."""
    kernel_output = "identity" if output in HOST_OUTPUTS else output
    if isinstance(A_prev, SparseRows):
        dtype = _host(bk, W).dtype
        Z0 = _sparse_product(bk, W, A_prev, dtype)
        # n_L is small: the bias and output kernel on Z0 through an identity matrix.
        ZL, AL = bk.forward_output(bk.to_device(np.eye(Z0.shape[0], dtype=dtype)), Z0, b,
                                   kernel_output)
    else:
        ZL, AL = bk.forward_output(W, A_prev, b, kernel_output)
    if output == "exp":
        with np.errstate(over="ignore"):
            AL = bk.to_device(np.exp(_host(bk, ZL)))
    return ZL, AL


def _forward(bk, Ws, bs, X, hidden, output):
    As = [X]
    for l, (W, b) in enumerate(zip(Ws[:-1], bs[:-1])):
        As.append(_first_hidden(bk, W, X, b, hidden) if l == 0
                  else bk.forward_hidden(W, As[-1], b, hidden))
    ZL, AL = _output_forward(bk, Ws[-1], As[-1], bs[-1], output)
    As.append(AL)
    return As, ZL


def _loss_terms(Z, A, Y, output):
    """Per-entry losses ``(n_L, m)`` from host arrays (the NumPy backend's, and the
    half Poisson deviance ``y log y - y z - y + exp(z)`` for output "exp")."""
    if output == "exp":
        from scipy.special import xlogy
        return xlogy(Y, Y) - Y * Z - Y + A
    from .backends import numpy_backend
    return numpy_backend._loss_terms(Z, A, Y, output)


def _host_output_delta(bk, ZL, AL, Y, output, dz_scale, db_scale, weights):
    """The fused output delta with per-example weights and/or a host output.

    ``dZ = dz_scale * weights * (A - Y)`` (``weights`` a float64 ``(m,)`` array
    or None), ``db = db_scale * sum(dZ, axis=1)`` and the weighted loss sum
    ``sum_j weights_j * loss_j``.  Computed in NumPy on host views of the
    backend's arrays (no copy on the NumPy and Numba backends; ``(n_L, m)``
    each way on a GPU), so the weighting is the same on every backend.
    """
    Z, A, Yh = _host(bk, ZL), _host(bk, AL), _host(bk, Y)
    with np.errstate(over="ignore", invalid="ignore"):
        dZ = A - Yh
        terms = _loss_terms(Z, A, Yh, output)
        if weights is None:
            loss_sum = float(np.sum(terms))
        else:
            dZ *= weights.astype(dZ.dtype, copy=False)
            loss_sum = float(np.dot(np.sum(terms, axis=0, dtype=np.float64), weights))
    if dz_scale != 1:
        dZ *= dz_scale
    db = dZ.sum(axis=1, keepdims=True)
    if db_scale != 1:
        db *= db_scale
    return bk.to_device(dZ), bk.to_device(db), loss_sum


def _first_weight_grad(bk, dZ, X, W, scale, l2_scale, bare):
    """``scale * dZ @ X.T + l2_scale * W`` (or the bare product) for a :class:`SparseRows` X."""
    P = np.asarray(X.rows.T @ _host(bk, dZ).T).T                     # (n_1, n_0)
    P = np.ascontiguousarray(P, dtype=dZ.dtype)
    if not bare:
        if scale != 1:
            P *= scale
        if l2_scale:
            P += l2_scale * _host(bk, W)
    return bk.to_device(P)


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
              sample_weight=None, drop=None, Gs=None):
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

    ``sample_weight`` (host float64 ``(m,)``, or None): per-example weights
    ``s_j``.  ``dZ[L]`` gets column j multiplied by ``s_j`` (fused output
    only), the loss sum is ``sum_j s_j loss_j``, and ``m`` in every scale
    (``1/m``, ``l2/m``) is ``sum_j s_j``: the gradient of the weighted mean
    loss.  ``As[0]`` may be a :class:`SparseRows`.
    """
    m, dtype = Y.shape[1], Y.dtype
    if sample_weight is not None:
        m = float(np.sum(sample_weight, dtype=np.float64))
    dz_scale, w_scale = _scales(scaling, m, dtype)
    l2_scale = dtype.type(l2 / m)
    if weights == "bare":
        w_scale_dW, l2_scale = dtype.type(1), dtype.type(0)
    else:
        w_scale_dW = w_scale
    if sample_weight is not None or output in HOST_OUTPUTS:
        if output_grad != "fused":
            raise ValueError("sample weights and host outputs need output_grad='fused'")
        dZ, db, loss_sum = _host_output_delta(bk, ZL, As[-1], Y, output, dz_scale, w_scale,
                                              sample_weight)
    else:
        delta = bk.output_delta_chain if output_grad == "chain" else bk.output_delta
        dZ, db, loss_sum = delta(ZL, As[-1], Y, output, dz_scale, w_scale)
    L = len(Ws)
    dWs, dbs = [None] * L, [None] * L
    for l in range(L - 1, -1, -1):
        if l == 0 and isinstance(As[0], SparseRows):
            dWs[l] = _first_weight_grad(bk, dZ, As[0], Ws[0], w_scale_dW, l2_scale,
                                        weights == "bare")
        else:
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
