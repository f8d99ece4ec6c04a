"""The engine: one forward pass, one backward pass, the cost and the training
loops of a fully-connected net, written against the kernel interface
(:mod:`fastnn.backends._interface`) of any backend.

Three layers, imports pointing one way: the backends (kernels only) know
nothing of this module; this module drives them; the features (``network``,
``Model``, the scikit-learn estimators, ``compat``, ``explain``,
``stability``) call this module.

``bk`` is a backend module; every array is one of its arrays.  Shapes use the
course's notation: ``W[l]`` is ``(n_l, n_{l-1})``, ``b[l]`` is ``(n_l, 1)``,
``A[l]`` is ``(n_l, m)`` with one example per column; ``Ws[l - 1]`` holds
``W[l]`` (layers count from 1, lists from 0).

Per-layer hook
--------------
:func:`forward`, the three backward functions and :func:`sgd_steps` take
``hook``, a callable ``hook(l, arrays)`` with ``l`` the layer (1 to L) and
``arrays`` a dict of that layer's backend arrays, called as each layer is
done: in the forward pass ``{"A": A[l]}`` for a hidden layer and
``{"Z": Z[L], "A": A[L]}`` for the output layer; in the backward pass
``{"dZ": dZ[l], "db": db[l], "dW": dW[l], "dA_prev": dA[l-1]}`` (``dW``
as the function returns it: the gradient, the bare product, or absent for
:func:`backward_deltas` and :func:`backward_from_delta`; ``dA_prev`` the
product ``W[l].T @ dZ[l]``, ``(n_{l-1}, m)``, before any dropout mask,
absent for ``l = 1``, whose ``dA[0]`` the pass never forms), from ``L``
down to 1.  The arrays are the engine's own: a hook reads them and must
not write to them.
"""

import numpy as np

__all__ = ["SparseRows", "HOST_OUTPUTS", "DUAL_MAX_M", "scales", "forward", "forward_dropout",
           "backward", "backward_products", "backward_deltas", "backward_from_delta", "cost", "dual_pays",
           "sgd_steps", "sgd_loop", "MinibatchWorkspace", "FullBatchLoop", "cost_from_squares",
           "SQUARES_NONE", "SQUARES_PAIRWISE", "SQUARES_DOT"]


def scales(scaling, m, dtype):
    """Where the ``1/m`` of the mean loss is applied.

    Parameters
    ----------
    scaling : {"deferred", "absorbed", "sum"}
        "deferred": on every ``dW``, ``db`` (``dZ[L] = A - Y``); "absorbed":
        in ``dZ[L] = (A - Y) / m`` (the course's placement); "sum": nowhere
        (gradients of the summed loss).
    m : int or float
        The number of examples (the sum of the sample weights when weighted).
    dtype : numpy.dtype

    Returns
    -------
    (dz_scale, w_scale) : scalars of ``dtype``
        The factor on the output ``dZ[L]`` and on every ``dW``, ``db``.
    """
    one, inv_m = dtype.type(1), dtype.type(1.0 / m)
    return {"deferred": (one, inv_m), "absorbed": (inv_m, one), "sum": (one, one)}[scaling]


class SparseRows:
    """Examples as the rows of a SciPy sparse matrix ``(m, n_0)``: ``X`` of the first layer.

    :func:`forward` and the backward functions take it in place of a dense
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



def forward(bk, Ws, bs, X, hidden, output, *, hook=None):
    """The forward pass over all layers.

    Parameters
    ----------
    bk : backend module
    Ws, bs : lists of L backend arrays
        ``W[l]`` ``(n_l, n_{l-1})``, ``b[l]`` ``(n_l, 1)``.
    X : backend array, shape (n_0, m), or :class:`SparseRows`
    hidden, output : str
        Hidden activation and output (``"exp"``: see :data:`HOST_OUTPUTS`).
    hook : callable or None
        ``hook(l, arrays)`` after each layer (module docstring).

    Returns
    -------
    As : list of L + 1 arrays
        ``[X, A[1], ..., A[L]]``, ``A[l]`` of shape ``(n_l, m)``.
    ZL : backend array, shape (n_L, m)
        The output logits, kept for a stable loss.
    """
    As = [X]
    for l, (W, b) in enumerate(zip(Ws[:-1], bs[:-1])):
        As.append(_first_hidden(bk, W, X, b, hidden) if l == 0
                  else bk.forward_hidden(W, As[-1], b, hidden))
        if hook is not None:
            hook(l + 1, {"A": As[-1]})
    ZL, AL = _output_forward(bk, Ws[-1], As[-1], bs[-1], output)
    As.append(AL)
    if hook is not None:
        hook(len(Ws), {"Z": ZL, "A": AL})
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



def forward_dropout(bk, Ws, bs, X, hidden, output, drop):
    """:func:`forward` with inverted dropout after each hidden layer.

    Parameters
    ----------
    bk, Ws, bs, X, hidden, output
        As :func:`forward` (``X`` dense, ``(n_0, m)``; no host output).
    drop : fastnn._dropout.DropoutStep
        The keep probabilities and the step's mask keys.

    Returns
    -------
    As : list of L + 1 arrays
        ``As[l]`` the dropped activations ``A[l] * D[l] / keep[l]``, ``(n_l, m)``,
        that the next layer reads (and its ``dW`` multiplies).
    Gs : list of L + 1 arrays
        The undropped ``A[l] = g(Z[l])`` that ``g'`` is computed from; the same
        array as ``As[l]`` where keep is 1.
    ZL : backend array, shape (n_L, m)
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


_BACKWARD_PARAMETERS = """
    Parameters
    ----------
    bk : backend module
    Ws : list of L backend arrays
        ``W[l]``, ``(n_l, n_{l-1})``.
    As : list of L + 1 arrays
        :func:`forward`'s (``As[0]`` may be a :class:`SparseRows`), or
        :func:`forward_dropout`'s dropped ones.
    ZL : backend array, shape (n_L, m)
    Y : backend array, shape (n_L, m)
    hidden, output : str
    scaling : {"deferred", "absorbed", "sum"}
        See :func:`scales`.
    output_grad : {"fused", "chain"}
        ``dZ[L] = A - Y`` directly, or through the course's ``dA[L]`` and ``g'(Z[L])``.
    l2 : float
        L2 strength; the term is ``(l2 / m) W``.
    sample_weight : numpy.ndarray of float64, shape (m,), or None
        Per-example weights ``s_j``: ``dZ[L]`` gets column j multiplied by
        ``s_j`` (fused output only), the loss sum is ``sum_j s_j loss_j``, and
        ``m`` in every scale (``1/m``, ``l2/m``) is ``sum_j s_j``: the gradient
        of the weighted mean loss.
    drop, Gs : DropoutStep and :func:`forward_dropout`'s ``Gs``, or None
        With dropout the gradient reaching a hidden layer's dropped output is
        masked and scaled as the forward was, ``dA[l] = dA~[l] * D[l] / keep[l]``,
        before ``dZ[l] = dA[l] * g'(Z[l])`` (from the undropped ``Gs[l]``).
    hook : callable or None
        ``hook(l, arrays)`` after each layer, ``L`` down to 1 (module docstring).
"""


def backward(bk, Ws, As, ZL, Y, hidden, output, scaling, output_grad, l2, *,
             sample_weight=None, drop=None, Gs=None, hook=None):
    return _backward(bk, Ws, As, ZL, Y, hidden, output, scaling, output_grad, l2, "full",
                     sample_weight, drop, Gs, hook)


backward.__doc__ = """The backward pass: every layer's gradients and the summed loss.
""" + _BACKWARD_PARAMETERS + """
    Returns
    -------
    dWs : list of L arrays
        ``dW[l] = w_scale * dZ[l] @ A[l-1].T + (l2 / m) W[l]``, ``(n_l, n_{l-1})``.
    dbs : list of L arrays
        ``db[l]``, ``(n_l, 1)``.
    loss_sum : float
        The summed (weighted) loss over the examples.
"""


def backward_products(bk, Ws, As, ZL, Y, hidden, output, scaling, output_grad, l2, *,
                      sample_weight=None, drop=None, Gs=None, hook=None):
    return _backward(bk, Ws, As, ZL, Y, hidden, output, scaling, output_grad, l2, "bare",
                     sample_weight, drop, Gs, hook)


backward_products.__doc__ = """:func:`backward` with the bare weight products.

For an optimizer that applies the scale and the L2 term itself
(``adam_update``'s ``g_scale``, ``l2``): one pass over the weights less.
""" + _BACKWARD_PARAMETERS + """
    Returns
    -------
    products : list of L arrays
        ``dZ[l] @ A[l-1].T``, ``(n_l, n_{l-1})``: no ``w_scale``, no L2 term.
    dbs : list of L arrays
        ``db[l]``, ``(n_l, 1)``, scaled as in :func:`backward`.
    loss_sum : float
"""


def backward_deltas(bk, Ws, As, ZL, Y, hidden, output, scaling, output_grad, l2, *,
                    sample_weight=None, drop=None, Gs=None, hook=None):
    return _backward(bk, Ws, As, ZL, Y, hidden, output, scaling, output_grad, l2, "deltas",
                     sample_weight, drop, Gs, hook)


backward_deltas.__doc__ = """:func:`backward` without any weight product: each layer's ``dZ``.

For an update that is one GEMM (``weight_step``).  ``As[0]`` must be dense.
""" + _BACKWARD_PARAMETERS + """
    Returns
    -------
    dZs : list of L arrays
        ``dZ[l]``, ``(n_l, m)`` (``dZ[L]`` with its ``dz_scale``).
    dbs : list of L arrays
        ``db[l]``, ``(n_l, 1)``, scaled as in :func:`backward`.
    loss_sum : float
"""

#: What :func:`_backward`'s weight list holds, by mode: the public functions above.
_MODES = ("full", "bare", "deltas")


def _output_delta(bk, ZL, AL, Y, output, scaling, output_grad, sample_weight):
    """``(dZ[L], db[L], loss_sum, w_scale, l2_m)``: the output layer of the backward pass."""
    m, dtype = Y.shape[1], Y.dtype
    if sample_weight is not None:
        m = float(np.sum(sample_weight, dtype=np.float64))
    dz_scale, w_scale = scales(scaling, m, dtype)
    if sample_weight is not None or output in HOST_OUTPUTS:
        if output_grad != "fused":
            raise ValueError("sample weights and host outputs need output_grad='fused'")
        dZ, db, loss_sum = _host_output_delta(bk, ZL, AL, Y, output, dz_scale, w_scale,
                                              sample_weight)
    else:
        delta = bk.output_delta_chain if output_grad == "chain" else bk.output_delta
        dZ, db, loss_sum = delta(ZL, AL, Y, output, dz_scale, w_scale)
    return dZ, db, loss_sum, w_scale, m


def _backward(bk, Ws, As, ZL, Y, hidden, output, scaling, output_grad, l2, mode,
              sample_weight=None, drop=None, Gs=None, hook=None):
    """The backward pass of :func:`backward` (mode "full"), :func:`backward_products`
    ("bare") and :func:`backward_deltas` ("deltas")."""
    if mode not in _MODES:
        raise ValueError(f"unknown backward mode {mode!r}")
    dtype = Y.dtype
    dZ, db, loss_sum, w_scale, m = _output_delta(bk, ZL, As[-1], Y, output, scaling, output_grad,
                                                 sample_weight)
    l2_scale = dtype.type(l2 / m)
    if mode == "bare":
        w_scale_dW, l2_scale = dtype.type(1), dtype.type(0)
    else:
        w_scale_dW = w_scale
    dWs, dbs = _backward_layers(bk, Ws, As, dZ, db, hidden, w_scale, w_scale_dW, l2_scale, mode,
                                drop, Gs, hook)
    return dWs, dbs, loss_sum


def _backward_layers(bk, Ws, As, dZ, db, hidden, db_scale, w_scale, l2_scale, mode, drop, Gs,
                     hook):
    """Layers ``L`` down to 1 from the output layer's ``dZ``, ``db``: ``(dWs, dbs)``.

    ``dWs[l]`` is ``weight_grad(dZ, A_prev, W, w_scale, l2_scale)`` (mode "full"
    and "bare", the caller choosing the scales) or ``dZ`` itself ("deltas").
    """
    L = len(Ws)
    dWs, dbs = [None] * L, [None] * L
    for l in range(L - 1, -1, -1):
        if l == 0 and isinstance(As[0], SparseRows):
            dWs[l] = _first_weight_grad(bk, dZ, As[0], Ws[0], w_scale, l2_scale,
                                        mode == "bare")
        else:
            dWs[l] = dZ if mode == "deltas" else bk.weight_grad(dZ, As[l], Ws[l], w_scale,
                                                                 l2_scale)
        dbs[l] = db
        # dA[0] = W[1].T @ dZ[1] is never used: skipped.
        dA = bk.input_grad(Ws[l], dZ) if l else None
        if hook is not None:
            arrays = {"dZ": dZ, "db": db} if mode == "deltas" else {"dZ": dZ, "db": db,
                                                                    "dW": dWs[l]}
            if dA is not None:
                arrays["dA_prev"] = dA
            hook(l + 1, arrays)
        if l:
            if drop is not None and drop.keeps[l - 1] != 1.0:
                dA = bk.dropout_backward(dA, drop.keeps[l - 1], drop.key(l))
            dZ, db = bk.backward_hidden(dA, As[l] if Gs is None else Gs[l], hidden, db_scale)
    return dWs, dbs


def backward_from_delta(bk, Ws, As, dZ, db, hidden, db_scale, *, hook=None):
    """The hidden layers of the backward pass, from a given output delta.

    For a caller that forms the output layer's ``dZ[L]`` itself (its own
    scaling or rounding of ``A - Y``): the rest is the engine's pass, as in
    :func:`backward_deltas`.

    Parameters
    ----------
    bk : backend module (or an object with its kernels)
    Ws : list of L backend arrays
        ``W[l]``, ``(n_l, n_{l-1})``.
    As : list of L + 1 arrays
        :func:`forward`'s ``[X, A[1], ..., A[L]]`` (``As[0]`` dense).
    dZ : backend array, shape (n_L, m)
        ``dZ[L]``.
    db : backend array, shape (n_L, 1), or None
        ``db[L]``: returned and handed to the hook as given.
    hidden : str
    db_scale : scalar
        The factor on every hidden ``db[l] = db_scale * sum(dZ[l], axis=1)``.
    hook : callable or None
        ``hook(l, arrays)``, ``L`` down to 1 (module docstring; no ``dW``).

    Returns
    -------
    dZs : list of L arrays
        ``dZ[l]``, ``(n_l, m)``; ``dZs[L - 1]`` is the ``dZ`` given.
    dbs : list of L arrays
        ``db[l]``, ``(n_l, 1)``.
    """
    return _backward_layers(bk, Ws, As, dZ, db, hidden, db_scale, None, None, "deltas", None,
                            None, hook)


def cost(bk, loss_sum, Ws, m, l2):
    """The cost ``J = loss_sum / m + (l2 / (2m)) sum_l ||W[l]||_F^2``.

    Parameters
    ----------
    bk : backend module
    loss_sum : float
        The summed loss (from the backward functions or ``bk.output_loss``).
    Ws : list of backend arrays
        ``W[l]``, ``(n_l, n_{l-1})``; read only when ``l2`` is nonzero.
    m : int or float
    l2 : float

    Returns
    -------
    float
        The squares are summed in float64.
    """
    squares = [float(np.sum(np.square(bk.to_host(W), dtype=np.float64))) for W in Ws] if l2 else ()
    return cost_from_squares(loss_sum, squares, m, l2)


def cost_from_squares(loss_sum, squares, m, l2):
    """:func:`cost` from each ``W[l]``'s sum of squares (``squares``, length L; read only
    when ``l2`` is nonzero): how the compiled minibatch steps' costs are formed
    (:meth:`MinibatchWorkspace.run_steps` with ``SQUARES_PAIRWISE``)."""
    J = loss_sum / m
    if l2:
        J += l2 / (2 * m) * sum(float(q) for q in squares)
    return J


DUAL_MAX_M = 4096


def dual_pays(n1, n0, m, l2, iterations):
    """Whether :func:`sgd_steps` runs the first layer in its dual form (see there).

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


def sgd_steps(bk, Ws, bs, X, Y, hidden, output, scaling, l2, lr, iterations, dual=None,
              hook=None):
    """Full-batch SGD for ``iterations`` steps, kernel by kernel (any backend).

    Parameters
    ----------
    bk, Ws, bs, X, Y, hidden, output, scaling, l2, lr, iterations
        As :func:`sgd_loop` (``Ws``, ``bs`` updated in place).
    dual : bool or None
        The dual first layer (below); None: when :func:`dual_pays`.
    hook : callable or None
        Per-layer hook of :func:`forward` and :func:`backward_deltas`, called
        every step (the primal loop only: ``dual=None`` then means False).

    Returns
    -------
    costs : numpy.ndarray, shape (iterations,)
        The cost J of each step before its update (float64; NaN after a stop).
    steps : int
        Completed steps; fewer than ``iterations`` when a cost or gradient was not finite.

    Dual first layer.  With full-batch gradient descent every update of ``W1`` is
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
        dual = hook is None and len(Ws) > 1 and dual_pays(n1, n0, m, l2, iterations)
    if dual and hook is not None:
        raise ValueError("the dual first layer runs no per-layer hook")
    if dual and (l2 or len(Ws) < 2):
        raise ValueError("the dual first layer needs a hidden layer and no L2 term")
    if dual and iterations > 0:
        return _sgd_loop_dual(bk, Ws, bs, X, Y, hidden, output, scaling, lr, iterations, costs)
    dtype = X.dtype
    _, w_scale = scales(scaling, m, dtype)
    l2_scale = dtype.type(l2 / m)
    # Each weight matrix takes its step in one GEMM, W = beta W + alpha dZ @ A_prev.T
    # (weight_step): no dW array, no scaling or update pass over it.
    alpha, beta = dtype.type(-lr * w_scale), dtype.type(1) - lr * l2_scale
    for it in range(iterations):
        As, ZL = forward(bk, Ws, bs, X, hidden, output, hook=hook)
        dZs, dbs, loss_sum = backward_deltas(bk, Ws, As, ZL, Y, hidden, output, scaling, "fused",
                                             l2, hook=hook)
        costs[it] = cost(bk, loss_sum, Ws, m, l2)
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



def sgd_loop(bk, Ws, bs, X, Y, hidden, output, scaling, l2, lr, iterations, *, hook=None,
             dual=None):
    """Full-batch SGD for ``iterations`` steps, as fast as the backend allows.

    Where the backend has a whole-loop kernel (the optional ``compiled_loop``
    of :mod:`fastnn.backends._interface`) and no hook is given, the loop runs
    in it; where it has none, or it declines the problem (returns None), the
    loop runs kernel by kernel (:func:`sgd_steps`, dual first layer when
    :func:`dual_pays`).

    Parameters
    ----------
    bk : backend module
    Ws, bs : lists of backend arrays
        ``W[l]`` ``(n_l, n_{l-1})`` and ``b[l]`` ``(n_l, 1)``, updated in place.
    X : backend array, shape (n_0, m)
    Y : backend array, shape (n_L, m)
    hidden, output, scaling : str
    l2, lr : float
    iterations : int
    hook : callable or None
        Per-layer hook (module docstring); forces the kernel-by-kernel loop.
    dual : bool or None
        :func:`sgd_steps`' ``dual`` for the kernel-by-kernel loop.

    Returns
    -------
    costs : numpy.ndarray, shape (iterations,)
        The cost ``J`` of each step before its update (float64; NaN after a stop).
    steps : int
        Completed steps; fewer than ``iterations`` when a cost or gradient was
        not finite (that step's update is not applied).
    """
    compiled = getattr(bk, "compiled_loop", None)
    if compiled is not None and hook is None:
        dz_scale, w_scale = scales(scaling, X.shape[1], X.dtype)
        run = compiled(Ws, bs, X, Y, hidden, output, dz_scale, w_scale, l2, lr, iterations)
        if run is not None:
            return run
    return sgd_steps(bk, Ws, bs, X, Y, hidden, output, scaling, l2, lr, iterations, dual=dual,
                     hook=hook)


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
    """:func:`sgd_steps` with the first layer kept as ``C`` (its docstring); no L2."""
    loop = FullBatchLoop(bk, Ws, bs, X, Y, hidden, output, scaling, 0.0, dual=True)
    costs[:], steps = loop.run(lr, iterations)
    loop.params()                                   # W1 = W1_0 + C @ X.T, into Ws[0] in place
    return costs, steps


# The minibatch workspace (its own module: a step's preallocated arrays and kernel sequence).
from ._workspace import MinibatchWorkspace  # noqa: E402
# What MinibatchWorkspace.run_steps reports of the weights for each step's L2 term.
from .backends._interface import SQUARES_DOT, SQUARES_NONE, SQUARES_PAIRWISE  # noqa: E402
# The full-batch loop of many epochs per call (its own module: the dual form's state).
from ._fullbatch import FullBatchLoop  # noqa: E402
