"""The kernel interface every backend module implements.

The engine (:mod:`fastnn.engine`) calls only these names, through the module
that the registry returns, and never branches on which backend it is; no
backend imports the engine.  Arrays passed in are C-contiguous, of one
floating dtype listed in the module's ``DTYPES``, already validated at the
public boundary; kernels may assume so.  The one exception is the batch that
``gather_columns`` returns: it may be a transposed (F-ordered) view, and is
only ever passed as ``A_prev`` of the first layer (``forward_hidden``,
``forward_output``, ``weight_grad``), whose products go to BLAS, which takes
either order without a copy.

Shapes use the course's notation: ``W`` is ``(n_l, n_{l-1})``, ``b`` is
``(n_l, 1)``, activations ``A`` are ``(n_l, m)`` with one example per column.
Scalars (``scale``, ``lr``, ``alpha``...) are of the arrays' dtype; a
``loss_sum`` is a Python float.  Every module lists the names below in its
``__all__`` (with ``NAME``, ``DTYPES`` and the optional kernels it has).

Signatures and shapes
---------------------
Moving data:

- ``to_device(x) -> X``: any array, as a backend array of the same shape (no copy when usable).
- ``to_host(X) -> ndarray``: the same shape and dtype.
- ``gather_columns(XR, idx) -> (n_x, b)``: ``XR`` ``(N, n_x)`` row-major, ``idx`` ``(b,)`` ints or a slice.

Forward (``A_prev`` ``(n_{l-1}, m)``; results ``(n_l, m)``):

- ``forward_hidden(W, A_prev, b, activation) -> A = g(W @ A_prev + b)``.
- ``forward_hidden_offset(W, A_prev, b, Z0, activation) -> A = g(W @ A_prev + Z0 + b)``;
  ``Z0`` ``(n_l, m)`` (the dual first layer's fixed part; ``W`` may be ``(n_l, 0)``).
- ``forward_output(W, A_prev, b, output) -> (Z, A)``: logits and output, both ``(n_L, m)``.

Output layer (``Z``, ``A``, ``Y`` all ``(n_L, m)``):

- ``output_delta(Z, A, Y, output, dz_scale, db_scale) -> (dZ, db, loss_sum)``:
  ``dZ = dz_scale (A - Y)`` ``(n_L, m)``, ``db = db_scale sum(dZ, axis=1)`` ``(n_L, 1)``,
  the summed loss from the logits.
- ``output_delta_chain(...)``: the same, through the course's ``dA[L]`` and ``g'(Z[L])``;
  raises ``SaturationError`` when that route is not finite.
- ``output_loss(Z, A, Y, output) -> loss_sum``.

Backward:

- ``backward_hidden(dA, A, activation, db_scale) -> (dZ, db)``: ``dA``, ``A`` ``(n_l, m)``;
  ``dZ = dA * g'(Z)`` ``(n_l, m)`` (may be ``dA``'s buffer), ``db`` ``(n_l, 1)``.
- ``weight_grad(dZ, A_prev, W, scale, l2_scale) -> dW``: ``dZ`` ``(n_l, m)``, ``A_prev``
  ``(n_{l-1}, m)``; ``dW = scale dZ @ A_prev.T + l2_scale W``, ``(n_l, n_{l-1})``.
- ``input_grad(W, dZ) -> W.T @ dZ``, ``(n_{l-1}, m)``.
- ``dropout_forward(A, keep, key) -> A * mask / keep``, a new ``(n_l, m)`` array; ``keep``
  in (0, 1], ``key`` :func:`fastnn._dropout.step_key`'s tuple.
- ``dropout_backward(dA, keep, key) -> dA``: ``dA * mask / keep`` in place, the same mask.
- ``weight_step(W, dZ, A_prev, alpha, beta)``: ``W = beta W + alpha dZ @ A_prev.T`` in place.

Optimizers, in place (``P``, ``G``, ``V``, ``M`` of one shape, any):

- ``sgd_update(P, G, lr)``: ``P -= lr G``.
- ``momentum_update(P, G, V, lr, beta)``: ``V = beta V + (1 - beta) G; P -= lr V``.
- ``adam_update(P, G, M, V, lr, beta1, beta2, eps, t, g_scale=1, l2=0)``: Adam step ``t``
  on the gradient ``g_scale G + l2 P``.

Utilities (``x`` any backend array):

- ``all_finite(x) -> bool``; ``max_abs(x) -> float`` (inf or nan when an entry is not
  finite, 0.0 when empty); ``zeros_like(x) -> array`` of ``x``'s shape and dtype.

Optional (:data:`OPTIONAL_KERNELS`; the engine looks them up with ``getattr``):

- ``compiled_loop(Ws, bs, X, Y, hidden, output, dz_scale, w_scale, l2, lr, iterations)
  -> (costs, steps) or None``: ``iterations`` steps of full-batch SGD in one call,
  ``Ws``/``bs`` lists of ``(n_l, n_{l-1})``/``(n_l, 1)`` arrays updated in place, ``X``
  ``(n_0, m)``, ``Y`` ``(n_L, m)``, ``(dz_scale, w_scale)`` from
  :func:`fastnn.engine.scales`; ``costs`` float64 ``(iterations,)``, ``steps`` the
  completed steps, as :func:`fastnn.engine.sgd_steps`.  None: declined (nothing done);
  the engine then runs the loop kernel by kernel.

Minibatch kernels (:data:`MINIBATCH_KERNELS`, optional all together): the same
computations as the kernels above, written into arrays the caller preallocated
(``out``, ``Z``, ``A``, ``dZ``, ``db``, ``dW``: C-contiguous, of the shapes the
results have; ``db`` and ``dW`` may be views into one flat gradient array), so
that a minibatch epoch allocates nothing per batch
(:class:`fastnn.engine.MinibatchWorkspace`).  Results are bitwise those of the
allocating kernels.  A backend without them (CUDA) trains kernel by kernel.

- ``gather_rows_into(XR, idx, out)``: ``out = XR[idx]``, ``(b, n_x)`` from ``XR`` ``(N, n_x)``.
- ``gather_targets_into(YR, idx, out)``: ``out = YR[idx].T``, ``(n_y, b)`` from ``YR`` ``(N, n_y)``.
- ``forward_hidden_into(W, A_prev, b, activation, out)``: ``out = g(W @ A_prev + b)``.
- ``forward_output_into(W, A_prev, b, output, Z, A)``: as ``forward_output``.
- ``output_delta_into(Z, A, Y, output, dz_scale, db_scale, dZ, db) -> loss_sum``.
- ``backward_hidden_into(dA, A, activation, db_scale, db)``: ``dZ`` into ``dA``.
- ``weight_grad_into(dZ, A_prev, W, scale, l2_scale, dW)``.
- ``input_grad_into(W, dZ, out)``: ``out = W.T @ dZ``.

- ``minibatch_steps(XR, YR, order, starts, layers, bufs, hidden, output, scales, update,
  check, squares_mode, losses, squares) -> (steps, status) or None``: the steps of
  :meth:`fastnn.engine.MinibatchWorkspace.step` followed by an optimizer update, for
  the batches ``order[starts[s]:starts[s] + b]`` (all of size ``b``), in one call
  (Numba backends: no Python between steps).  ``layers`` is ``(Ws, bs, dWs, dbs, P,
  G)`` (the workspace's views and flat arrays), ``bufs`` ``(Xb (b, n_0), Yb (n_L, b),
  As, Z, dZs)``, ``scales`` ``(dz_scale, w_scale, scale, l2_scale)``, ``update``
  ``(rule, S1, S2, n_fold, consts, per_step)`` (``_numba_kernels/steps.py``; built by
  the optimizers' ``flat_program``).  ``losses`` float64 ``(n,)`` gets each step's
  summed loss, ``squares`` float64 ``(n, L)`` each weight matrix's sum of squares
  before the update (``squares_mode``).  With ``check``, a step whose loss or gradient
  is not finite stops the call before its update (status 1); the number of steps run
  is returned with the status.  None: declined, nothing done; the engine then steps
  from Python.

``idx`` is a 1-D array of ints in ``[0, N)``; ``A_prev`` of the first layer may
be the transposed view ``Xrows.T`` of a gathered ``(b, n_x)`` batch, as above.
"""

#: Kernel names every backend module must export.
KERNELS = (
    # moving data
    "to_device",          # (x) -> backend array (no copy when already usable)
    "to_host",            # (x) -> numpy.ndarray
    "gather_columns",     # (XR, idx) -> batch (n_x, b): rows idx of row-major XR (N, n_x), as columns
    # forward
    "forward_hidden",     # (W, A_prev, b, activation) -> A = g(W @ A_prev + b)
    "forward_hidden_offset",  # (W, A_prev, b, Z0, activation) -> A = g(W @ A_prev + Z0 + b)
    "forward_output",     # (W, A_prev, b, output) -> (Z, A)
    # output layer: gradient and summed loss, fused
    "output_delta",       # (Z, A, Y, output, dz_scale, db_scale) -> (dZ, db, loss_sum)
    "output_delta_chain", # same, through the course's dA[L] and g'(Z[L])
    "output_loss",        # (Z, A, Y, output) -> loss_sum
    # backward
    "backward_hidden",    # (dA, A, activation, db_scale) -> (dZ, db); may reuse dA
    "weight_grad",        # (dZ, A_prev, W, scale, l2_scale) -> scale*dZ@A_prev.T + l2_scale*W
    "input_grad",         # (W, dZ) -> W.T @ dZ
    "dropout_forward",    # (A, keep, key) -> new array A * mask / keep, mask from _dropout (key:
                          # step_key's tuple); one fused pass: hash, compare, scale
    "dropout_backward",   # (dA, keep, key) -> dA * mask / keep in place (the same mask, recomputed)
    "weight_step",        # (W, dZ, A_prev, alpha, beta): W = beta*W + alpha*dZ@A_prev.T in
                          # place, no dW array (sgd_loop's update of a weight matrix)
    # optimizers, in place
    "sgd_update",         # (P, G, lr)
    "momentum_update",    # (P, G, V, lr, beta)
    "adam_update",        # (P, G, M, V, lr, beta1, beta2, eps, t, g_scale=1, l2=0); gradient
                          # g_scale*G + l2*P: weight_grad's epilogue folded into the update
    # utilities
    "all_finite",         # (x) -> bool
    "max_abs",            # (x) -> float: largest |entry|; inf or nan when one is not finite
    "zeros_like",         # (x) -> backend array of zeros
)

#: Module-level constants every backend module must define.
CONSTANTS = ("NAME", "DTYPES")

#: The minibatch kernels: the engine's MinibatchWorkspace runs where a backend has them all.
MINIBATCH_KERNELS = (
    "gather_rows_into",       # (XR, idx, out): out (b, n_x) = XR[idx]
    "gather_targets_into",    # (YR, idx, out): out (n_y, b) = YR[idx].T
    "forward_hidden_into",    # (W, A_prev, b, activation, out): out = g(W @ A_prev + b)
    "forward_output_into",    # (W, A_prev, b, output, Z, A)
    "output_delta_into",      # (Z, A, Y, output, dz_scale, db_scale, dZ, db) -> loss_sum
    "backward_hidden_into",   # (dA, A, activation, db_scale, db): dZ written into dA
    "weight_grad_into",       # (dZ, A_prev, W, scale, l2_scale, dW)
    "input_grad_into",        # (W, dZ, out): out = W.T @ dZ
)

#: ``minibatch_steps``' update rules (``_numba_kernels/steps.py`` says what each runs), what its
#: ``squares`` hold (none; NumPy's float64 pairwise sum of the squares, as
#: ``fastnn.engine.cost``; the BLAS dot, as ``np.vdot``), and its statuses.
RULE_SGD, RULE_MOMENTUM, RULE_ADAM, RULE_VELOCITY = range(4)
SQUARES_NONE, SQUARES_PAIRWISE, SQUARES_DOT = range(3)
STEPS_DONE, STEPS_NOT_FINITE = range(2)

#: Optional kernels: the engine looks them up with ``getattr`` and does without.
OPTIONAL_KERNELS = (
    "compiled_loop",      # (Ws, bs, X, Y, hidden, output, dz_scale, w_scale, l2, lr, iterations)
                          # -> (costs, steps), or None to decline: fastnn.engine.sgd_loop's whole
                          # full-batch SGD loop in one call (Numba backends)
    "minibatch_steps",    # (XR, YR, order, starts, layers, bufs, hidden, output, scales, update,
                          # check, squares_mode, losses, squares) -> (steps, status) or None:
                          # workspace steps and optimizer updates of one batch size in one call
) + MINIBATCH_KERNELS
