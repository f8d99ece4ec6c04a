"""The functional core: init, forward, backward, cost, gradients, gradcheck.

Notation is the course's, column-major: ``X`` is ``(n_0, m)`` with one example
per column, ``W[l]`` is ``(n_l, n_{l-1})``, ``b[l]`` is ``(n_l, 1)``.

Where the cost's ``1/m`` goes is chosen by ``scaling``:

``"deferred"`` (the course's)
    ``dZ[L] = A[L] - Y``; ``dW[l] = (1/m) dZ[l] @ A[l-1].T``, ``db[l] = (1/m) sum(dZ[l])``.
``"absorbed"``
    ``dZ[L] = (1/m)(A[L] - Y) = dJ/dZ[L]``; ``dW = dZ @ A.T``, ``db = sum(dZ)``.
``"sum"``
    no ``1/m``: the gradient of the summed loss.

L2 regularisation ``(l2/(2m)) sum ||W||^2`` adds ``(l2/m) W`` to ``dW`` under all three.
"""

import contextlib
import functools
import threading
from dataclasses import dataclass

import numpy as np

from . import _validation as V
from .activations import check_hidden, check_output
from .engine import backward as _backward, forward as _forward
from .backends import get_backend
from .errors import FastnnValueError
from .finite_differences import central_differences
from .threads import policy_for

SCALINGS = ("deferred", "absorbed", "sum")
OUTPUT_GRADS = ("fused", "chain")
INITS = ("he", "xavier", "small")


def init_params(layer_dims, *, init="he", dtype=np.float64, seed=None):
    """Random weights and zero biases for a network of the given layer sizes.

    Parameters
    ----------
    layer_dims : sequence of int
        ``[n_0, n_1, ..., n_L]``: input size, hidden sizes, output size.
    init : {"he", "xavier", "small"}
        ``"he"``: ``randn * sqrt(2 / n_{l-1})`` (for ReLU);
        ``"xavier"``: ``randn * sqrt(2 / (n_{l-1} + n_l))`` (Glorot normal);
        ``"small"``: ``randn * 0.01`` (the course's first examples).
    dtype : float16, float32 or float64
    seed : int, numpy.random.Generator or None
        Draws are made in float64 and then cast, so float32 and float64
        initialisations with the same seed agree to float32 rounding.

    Returns
    -------
    dict
        ``"W1", "b1", ..., "WL", "bL"`` with ``W[l]`` of shape ``(n_l, n_{l-1})``
        and ``b[l]`` of shape ``(n_l, 1)``, all of ``dtype``.
    """
    dims = _check_layer_dims(layer_dims)
    dtype = V.check_dtype(dtype)
    V.check_choice(init, "init", INITS)
    rng = _rng(seed)
    params = {}
    for l in range(1, len(dims)):
        n_in, n_out = dims[l - 1], dims[l]
        scale = {"he": np.sqrt(2.0 / n_in), "xavier": np.sqrt(2.0 / (n_in + n_out)), "small": 0.01}[init]
        params[f"W{l}"] = (rng.standard_normal((n_out, n_in)) * scale).astype(dtype)
        params[f"b{l}"] = np.zeros((n_out, 1), dtype=dtype)
    return params


def _rng(seed, name="seed"):
    """A numpy Generator from None, a non-negative int or a Generator."""
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise V.FastnnTypeError(f"{name}: expected None, an int >= 0 or a numpy.random.Generator, "
                                f"got {type(seed).__name__}")
    if seed < 0:
        raise FastnnValueError(f"{name}: expected an int >= 0, got {seed}")
    return np.random.default_rng(seed)


def _check_layer_dims(layer_dims):
    if isinstance(layer_dims, (str, bytes)) or \
            any(isinstance(d, (bool, np.bool_)) for d in (layer_dims if isinstance(layer_dims, (list, tuple)) else ())):
        raise V.FastnnTypeError(f"layer_dims: expected a sequence of integers, got {layer_dims!r}")
    try:
        dims = [int(d) for d in layer_dims]
    except OverflowError:  # int(inf)
        raise FastnnValueError(f"layer_dims: expected finite positive integers, got {list(layer_dims)!r}") from None
    except (TypeError, ValueError) as exc:
        raise V.FastnnTypeError(f"layer_dims: expected a sequence of integers, got {layer_dims!r}") from exc
    if len(dims) < 2 or any(d < 1 for d in dims) or any(int(d) != d for d in layer_dims):
        raise FastnnValueError(f"layer_dims: expected at least two positive integers [n_0, ..., n_L], got {list(layer_dims)!r}")
    limit = np.iinfo(np.intp).max // 8
    if any(a * b > limit for a, b in zip(dims[:-1], dims[1:])):
        raise FastnnValueError(f"layer_dims: {dims!r} gives a weight matrix with more entries than "
                               "an array can hold on this platform")
    return dims


@dataclass
class ForwardCache:
    """What :func:`forward` keeps for :func:`backward`.

    ``As`` holds ``A[0] = X, A[1], ..., A[L]`` (``(n_l, m)`` each) and ``ZL`` the
    output logits ``(n_L, m)``, as arrays of ``backend``.  Hidden ``Z[l]`` are
    not kept: every derivative is computed from ``A[l]``.
    """
    As: list
    ZL: object
    hidden: str
    output: str
    backend: str

    @property
    def m(self):
        return self.As[0].shape[1]


_PARALLEL_LOCK = threading.RLock()


def backend_lock(bk):
    """A lock around the kernel calls of the numba-parallel backend when Numba's
    threading layer is not thread-safe.

    Numba's ``workqueue`` layer (its fallback where neither OpenMP nor TBB is
    installed) aborts the whole process -- "Concurrent access has been
    detected" -- when two Python threads launch parallel kernels at once.  Until
    the first launch tells which layer Numba picked, and whenever it is
    workqueue, calls are serialised; with ``omp`` or ``tbb`` (thread-safe) there
    is no lock.
    """
    if bk.NAME != "numba-parallel":
        return contextlib.nullcontext()
    import numba
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel launch yet
        layer = None
    return contextlib.nullcontext() if layer in ("omp", "tbb") else _PARALLEL_LOCK


def _quiet(func):
    """Run ``func`` without NumPy's overflow/invalid warnings: every result it
    returns is checked for finiteness, and a non-finite one raises instead."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore"):
            return func(*args, **kwargs)
    return wrapper


def _overflow_error(names, what, dtype):
    """The FastnnValueError for a result that is not finite although every input was."""
    hint = ("scale the inputs or weights down" if dtype == np.float64
            else "scale the inputs or weights down, or use float64")
    return FastnnValueError(f"{names}: {what} not finite in {dtype.name} although every input "
                            f"is finite: the values are too large for {dtype.name} (overflow); {hint}")


def _check_forward_finite(bk, ZL, AL, dtype):
    """Refuse a forward pass that overflowed: no silent inf/NaN leaves forward()."""
    if not (bk.all_finite(ZL) and bk.all_finite(AL)):
        raise _overflow_error("X, params", "the output logits Z[L] are", dtype)


def _check_grads_finite(bk, J, dWs, dbs, names, dtype):
    if (J is not None and not np.isfinite(J)) or not all(bk.all_finite(g) for g in list(dWs) + list(dbs)):
        raise _overflow_error(names, "the cost or a gradient is", dtype)


def _objective(loss_sum, Ws, m, scaling, l2):
    """The scalar whose gradient the chosen scaling computes."""
    reg = 0.0
    if l2:
        reg = l2 / (2 * m) * sum(float(np.sum(np.square(np.asarray(W, dtype=np.float64)))) for W in Ws)
    data = loss_sum if scaling == "sum" else loss_sum / m
    return data + reg


_NO_X = object()


def _resolve(params, hidden, output, backend, X=_NO_X, order="C"):
    """Validated (Ws, bs, dtype, backend module, X); X is checked when passed (None included),
    C-contiguous or, with ``order="any"``, C- or F-contiguous (``order="checked"``: the
    caller validated it so, in the params' dtype)."""
    Ws, bs, dtype = V.check_params(params)
    check_hidden(hidden)
    check_output(output)
    if output == "softmax" and Ws[-1].shape[0] < 2:
        raise FastnnValueError("output: softmax needs at least 2 output units, the last layer has 1")
    if X is _NO_X:
        X = None
    elif order != "checked":
        X = V.check_X(X, Ws[0].shape[1], dtype, order=order)
    work = None if X is None else X.shape[1] * max(W.shape[0] for W in Ws)
    bk = backend_for_dtype(backend, work, dtype, "params")
    return Ws, bs, dtype, bk, X


def backend_for_dtype(backend, work, dtype, name="dtype"):
    """The backend module for ``backend`` (as :func:`fastnn.get_backend`) that runs ``dtype``.

    ``"auto"`` (given, or the default) picks among the backends that support ``dtype``:
    its usual pick, else NumPy (the only backend with float16).  A backend named
    explicitly that lacks ``dtype`` raises FastnnTypeError naming ``name``.
    """
    bk = get_backend(backend, work, dtype)
    if dtype.type in bk.DTYPES:
        return bk
    raise V.FastnnTypeError(f"{name}: {dtype} is not supported by backend {bk.NAME!r} "
                            f"(supported: {[np.dtype(t).name for t in bk.DTYPES]}; backend='auto' or "
                            "'numpy' runs it)")


@_quiet
def forward(params, X, *, hidden="relu", output="sigmoid", backend=None):
    """Forward pass through all L layers.

    Parameters
    ----------
    params : dict
        ``"W1", "b1", ...`` as from :func:`init_params`.
    X : array_like, shape (n_0, m)
        One example per column; converted once to the parameters' dtype.
    hidden : {"identity", "sigmoid", "tanh", "relu", "leaky_relu"}
        Activation of layers 1..L-1.
    output : {"sigmoid", "softmax", "identity"}
        Activation of layer L.
    backend : str or None
        Backend name; ``None`` uses the default (see :func:`fastnn.set_backend`).

    Returns
    -------
    AL : numpy.ndarray, shape (n_L, m)
        Output activations, in the parameters' dtype.
    cache : ForwardCache
        Input of :func:`backward`.
    """
    bk, As, ZL = _forward_of(params, X, hidden, output, backend, "C")
    # A copy: changing the returned array must not change what backward() computes.
    return np.array(bk.to_host(As[-1]), copy=True), ForwardCache(As, ZL, hidden, output, bk.NAME)


def _forward_of(params, X, hidden, output, backend, order):
    """``(bk, As, ZL)`` of the forward pass of validated ``params`` and ``X`` (``order`` as
    :func:`fastnn._validation.check_X`'s).  An F-ordered ``X`` (the course's
    ``reshape(m, -1).T``) reaches the first layer as the backend's ``gather_columns`` of its
    rows: on the host a view, no C copy (that copy was 12 of a 43 ms ``Model.predict`` of
    10000 x 784 float32)."""
    Ws, bs, dtype, bk, X = _resolve(params, hidden, output, backend, X, order)
    A0 = bk.to_device(X) if X.flags.c_contiguous else bk.gather_columns(X.T, slice(0, X.shape[1]))
    Ws = [bk.to_device(W) for W in Ws]
    bs = [bk.to_device(b) for b in bs]
    with backend_lock(bk), policy_for(bk, Ws, X.shape[1]):
        As, ZL = _forward(bk, Ws, bs, A0, hidden, output)
        _check_forward_finite(bk, ZL, As[-1], dtype)
    return bk, As, ZL


@_quiet
def _outputs(params, X, hidden, output, backend=None):
    """``A[L]`` ``(n_L, m)``: :func:`forward`'s output without the cache, for ``X`` ``(n_0, m)``
    that the caller validated, C- or F-contiguous in the params' dtype
    (:meth:`fastnn.Model.predict_proba`, after ``Model._check_data``: one finiteness pass
    over X, 1.3 ms of a 29 ms predict at 10000 x 784, not two)."""
    bk, As, _ = _forward_of(params, X, hidden, output, backend, "checked")
    return np.array(bk.to_host(As[-1]), copy=True)


def _check_options(scaling, output_grad, l2):
    V.check_choice(scaling, "scaling", SCALINGS)
    V.check_choice(output_grad, "output_grad", OUTPUT_GRADS)
    return V.check_nonneg_float(l2, "l2")


@_quiet
def backward(params, cache, Y, *, hidden=None, output=None, scaling="deferred",
             output_grad="fused", l2=0.0, backend=None):
    """Backward pass: gradients of the cost for every layer.

    Parameters
    ----------
    params : dict
        The parameters :func:`forward` was called with.
    cache : ForwardCache
        From :func:`forward`.
    Y : array_like
        Labels: ``(n_L, m)``; for softmax also integer labels ``(m,)``/``(1, m)``.
    hidden, output : str or None
        Must match the cache when given (``None``: taken from the cache).
    scaling : {"deferred", "absorbed", "sum"}
        Where the ``1/m`` goes (module docstring).  deferred and absorbed give
        the same ``dW``, ``db`` up to rounding; sum gives ``m`` times them.
    output_grad : {"fused", "chain"}
        ``"fused"``: ``dZ[L] = A - Y``; ``"chain"``: the course's
        ``dA[L] = -(Y/A - (1-Y)/(1-A))`` times ``g'(Z[L])``, which raises
        :class:`~fastnn.errors.SaturationError` when the output saturates.
    l2 : float
        L2 strength: adds ``(l2/m) W[l]`` to every ``dW[l]``.
    backend : str or None
        Must be the cache's backend when given.

    Returns
    -------
    dict
        ``"dW1", "db1", ..., "dWL", "dbL"``, shapes of ``W[l]``, ``b[l]``, in the parameters' dtype.
    """
    if not isinstance(cache, ForwardCache):
        raise V.FastnnTypeError(f"cache: expected the ForwardCache returned by forward(), got {type(cache).__name__}")
    for name, given, cached in (("hidden", hidden, cache.hidden), ("output", output, cache.output),
                                ("backend", backend, cache.backend)):
        if given is not None and given != cached:
            raise FastnnValueError(f"{name}: {given!r} differs from the forward pass's {cached!r}")
    l2 = _check_options(scaling, output_grad, l2)
    Ws, bs, dtype, bk, _ = _resolve(params, cache.hidden, cache.output, cache.backend)
    As, ZL = _check_cache(bk, cache, Ws, dtype)
    Y = V.check_Y(Y, cache.output, Ws[-1].shape[0], As[0].shape[1], dtype)
    Ws = [bk.to_device(W) for W in Ws]
    with backend_lock(bk), policy_for(bk, Ws, As[0].shape[1]):
        dWs, dbs, _ = _backward(bk, Ws, As, ZL, bk.to_device(Y), cache.hidden, cache.output,
                                scaling, output_grad, l2)
        _check_grads_finite(bk, None, dWs, dbs, "cache (A[0] = X), Y, params" + (", l2" if l2 else ""), dtype)
    return _grads_dict(bk, dWs, dbs)


def _check_cache(bk, cache, Ws, dtype):
    """The cache's arrays, checked against the parameters before any kernel sees them.

    A ForwardCache is a public dataclass: one built or edited by hand must not
    hand a compiled kernel arrays of the wrong shape, dtype or layout.
    """
    bad = "cache: does not come from a forward pass with these params"
    As = cache.As
    if not isinstance(As, (list, tuple)) or len(As) != len(Ws) + 1:
        raise FastnnValueError(f"{bad} (expected {len(Ws) + 1} activations A[0..L])")
    dims = [Ws[0].shape[1]] + [W.shape[0] for W in Ws]
    out = []
    m = None
    for l, A in enumerate(list(As) + [cache.ZL]):
        shape, kind = getattr(A, "shape", None), getattr(A, "dtype", None)
        if shape is None or kind is None or len(shape) != 2:
            raise FastnnValueError(f"{bad} (entry {l} is not a 2-D array)")
        m = shape[1] if m is None else m
        n = dims[min(l, len(dims) - 1)]
        if tuple(shape) != (n, m) or m < 1 or np.dtype(kind) != dtype:
            raise FastnnValueError(f"{bad} (entry {l} has shape {tuple(shape)} and dtype {kind}; "
                                   f"expected ({n}, m) {dtype.name})")
        out.append(bk.to_device(A))
    return out[:-1], out[-1]


def _grads_dict(bk, dWs, dbs):
    grads = {}
    for l, (dW, db) in enumerate(zip(dWs, dbs), start=1):
        grads[f"dW{l}"] = bk.to_host(dW)
        grads[f"db{l}"] = bk.to_host(db)
    return grads


@_quiet
def gradients(params, X, Y, *, hidden="relu", output="sigmoid", scaling="deferred",
              output_grad="fused", l2=0.0, backend=None):
    """Forward pass, cost and backward pass in one call.

    Parameters are those of :func:`forward` and :func:`backward`.  ``X`` is
    ``(n_0, m)`` and ``Y`` the labels for its ``m`` columns.

    Returns
    -------
    cost : float
        ``J = (1/m) sum_i L_i + (l2/(2m)) sum_l ||W[l]||^2``, computed from the
        logits (finite even when the output saturates).  With ``scaling="sum"``
        it is still ``J``, the cost, not the summed loss.
    grads : dict
        As :func:`backward`.
    """
    l2 = _check_options(scaling, output_grad, l2)
    Ws, bs, dtype, bk, X = _resolve(params, hidden, output, backend, X)
    Y = V.check_Y(Y, output, Ws[-1].shape[0], X.shape[1], dtype)
    Wd = [bk.to_device(W) for W in Ws]
    bd = [bk.to_device(b) for b in bs]
    with backend_lock(bk), policy_for(bk, Ws, X.shape[1]):
        As, ZL = _forward(bk, Wd, bd, bk.to_device(X), hidden, output)
        _check_forward_finite(bk, ZL, As[-1], dtype)
        dWs, dbs, loss_sum = _backward(bk, Wd, As, ZL, bk.to_device(Y), hidden, output,
                                       scaling, output_grad, l2)
        J = _objective(loss_sum, Ws, X.shape[1], "deferred", l2)
        _check_grads_finite(bk, J, dWs, dbs, "X, Y, params" + (", l2" if l2 else ""), dtype)
    return J, _grads_dict(bk, dWs, dbs)


def _loss_from_probabilities(AL, Y, output):
    with np.errstate(divide="ignore", invalid="ignore"):
        # A label of 0 contributes nothing, even where log(a) = -inf (0 log 0 = 0).
        if output == "sigmoid":
            return -(np.where(Y > 0, Y * np.log(AL), 0) + np.where(Y < 1, (1 - Y) * np.log1p(-AL), 0))
        if output == "softmax":
            return -np.where(Y > 0, Y * np.log(AL), 0)
    D = AL - Y
    return 0.5 * D * D


def cost(AL, Y, *, output="sigmoid", params=None, l2=0.0, logits=None):
    """The cost ``J = (1/m) sum_i L(a_i, y_i) [+ (l2/(2m)) sum ||W||^2]``.

    Parameters
    ----------
    AL : array_like, shape (n_L, m)
        Output activations.
    Y : array_like
        Labels as in :func:`backward`.
    output : {"sigmoid", "softmax", "identity"}
        Selects the loss: binary cross-entropy, categorical cross-entropy, or
        ``1/2 (a - y)^2`` summed over output units.
    params : dict, optional
        Needed when ``l2 > 0``.
    l2 : float
    logits : array_like, shape (n_L, m), optional
        ``Z[L]``.  When given the loss is computed from it (log-sum-exp,
        ``log1p``), which stays finite when ``AL`` has saturated to 0 or 1;
        from ``AL`` alone a saturated wrong output gives ``inf``.

    Returns
    -------
    float
    """
    check_output(output)
    l2 = V.check_nonneg_float(l2, "l2")
    arr = V._as_numeric(AL, "AL")
    dtype = arr.dtype if arr.dtype in V.FLOAT_DTYPES else np.dtype(np.float64)
    AL = V.as_array(arr, "AL", dtype)
    n_L, m = AL.shape
    if m == 0:
        raise FastnnValueError("AL: has no examples (m == 0)")
    if output != "identity" and AL.size and (AL.min() < 0 or AL.max() > 1):
        raise FastnnValueError(f"AL: {output} outputs are probabilities in [0, 1]; got values from "
                               f"{AL.min()} to {AL.max()}")
    Y = V.check_Y(Y, output, n_L, m, dtype)
    if logits is not None:
        Z = V.as_array(logits, "logits", dtype)
        if Z.shape != AL.shape:
            raise FastnnValueError(f"logits: expected shape {AL.shape} (that of AL), got {Z.shape}")
        with np.errstate(over="ignore"):
            loss_sum = get_backend("numpy").output_loss(Z, AL, Y, output)
    else:
        with np.errstate(over="ignore"):
            loss_sum = get_backend("numpy").sum_terms(_loss_from_probabilities(AL, Y, output))
    Ws = []
    if l2:
        if params is None:
            raise FastnnValueError("params: needed to compute the L2 term when l2 > 0")
        Ws = V.check_params(params)[0]
    J = _objective(loss_sum, Ws, m, "deferred", l2)
    if not np.isfinite(J):
        if logits is None and J == np.inf and _saturated_wrong(AL, Y, output):
            # The documented exception: -log(0) of a saturated wrong output is +inf.
            return J
        names = "AL, Y" + (", logits" if logits is not None else "") + (", params, l2" if l2 else "")
        raise _overflow_error(names, "the cost is", dtype)
    return J


def _saturated_wrong(AL, Y, output):
    """True when some output is exactly 0 (or 1 for sigmoid) where the label says otherwise."""
    wrong = (AL == 0) & (Y > 0)
    if output == "sigmoid":
        wrong |= (AL == 1) & (Y < 1)
    return bool(wrong.any())


@_quiet
def gradcheck(params, X, Y, *, hidden="relu", output="sigmoid", scaling="deferred",
              output_grad="fused", l2=0.0, backend=None, eps=1e-6):
    """Compare analytic gradients with central differences, in float64.

    The analytic gradient comes from :func:`gradients` on ``backend`` with the
    given options (parameters and data cast to float64).  The numerical one
    perturbs every parameter by ``+-eps`` and evaluates the objective the
    chosen ``scaling`` differentiates: ``J`` for deferred/absorbed, the summed
    loss plus ``(l2/(2m)) sum ||W||^2`` for ``"sum"``.

    Returns
    -------
    float
        ``||g - g_num|| / (||g|| + ||g_num||)`` over all parameters; below about
        ``1e-7`` for correct gradients of a smooth network.
    """
    Ws, bs, _ = V.check_params(params)
    eps = V.check_positive_float(eps, "eps")
    p64 = {}
    for l, (W, b) in enumerate(zip(Ws, bs), start=1):
        p64[f"W{l}"] = W.astype(np.float64)
        p64[f"b{l}"] = b.astype(np.float64)
    X = V.check_X(X, Ws[0].shape[1], np.float64)
    Y = V.check_Y(Y, output, Ws[-1].shape[0], X.shape[1], np.float64)
    _, grads = gradients(p64, X, Y, hidden=hidden, output=output, scaling=scaling,
                         output_grad=output_grad, l2=l2, backend=backend)
    l2 = float(l2)
    ref = get_backend("numpy")
    m = X.shape[1]

    def objective():
        Wl = [p64[f"W{l}"] for l in range(1, len(Ws) + 1)]
        bl = [p64[f"b{l}"] for l in range(1, len(Ws) + 1)]
        As, ZL = _forward(ref, Wl, bl, X, hidden, output)
        return _objective(ref.output_loss(ZL, As[-1], Y, output), Wl, m, scaling, l2)

    analytic, numeric = [], []
    for key in p64:
        G = central_differences(p64[key], objective, eps)
        numeric.append(G.ravel())
        analytic.append(grads["d" + key].ravel())
    g, gn = np.concatenate(analytic), np.concatenate(numeric)
    if not np.isfinite(gn).all():
        raise _overflow_error("params, X, Y" + (", l2" if l2 else ""),
                              "the central differences are", np.dtype(np.float64))
    # Norms of scaled vectors: |g| near 1e300 must not overflow the ratio to inf/inf.
    scale = max(float(np.max(np.abs(g), initial=0.0)), float(np.max(np.abs(gn), initial=0.0)))
    if scale == 0:
        return 0.0
    g, gn = g / scale, gn / scale
    return float(np.linalg.norm(g - gn) / (np.linalg.norm(g) + np.linalg.norm(gn)))
