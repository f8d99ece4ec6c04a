"""The problem explain works on, and fastnn's own analytic quantities for it.

:func:`_make_problem` draws the random float64 network and data;
:func:`_record_backward` runs :func:`fastnn.engine.backward` on the NumPy
backend with a per-layer hook that keeps a copy of every layer's ``dZ``,
``dW``, ``db`` and ``dA_prev`` (the pass reuses buffers in place).
"""

from dataclasses import dataclass

import numpy as np

from .. import _validation as V
from .. import engine
from ..activations import check_hidden, check_output
from ..backends import numpy_backend as _nb
from ..errors import FastnnValueError
from ..network import SCALINGS, _check_layer_dims, init_params
from .checks import KINK_MARGIN, KINK_REDRAWS, MAX_FD_ENTRIES


class _EveryLayerMistake:
    """The NumPy backend with the "1/m in every layer" mistake: every hidden
    ``dZ``, ``db`` that ``backward_hidden`` returns is multiplied once more by
    ``extra``, so the mistake propagates down the pass as it would in code.

    Every other kernel is looked up on :mod:`fastnn.backends.numpy_backend`
    when called (so a monkeypatched kernel is the one that runs).
    """

    def __init__(self, extra):
        self._extra = extra

    def __getattr__(self, name):
        return getattr(_nb, name)

    def backward_hidden(self, dA, A, activation, db_scale):
        dZ, db = _nb.backward_hidden(dA, A, activation, db_scale)
        return dZ * self._extra, db * self._extra


@dataclass
class _Grads:
    """Recorded backward quantities, keyed by layer l = 1..L (dA by l - 1)."""
    dZ: dict
    dW: dict
    db: dict
    dA: dict


def _record_backward(Ws, As, ZL, Y, hidden, output, scaling, l2, output_grad="fused", hidden_extra=None):
    """Run :func:`fastnn.engine.backward` and return every intermediate.

    The NumPy backend's kernels compute everything (:class:`_EveryLayerMistake`
    around them when ``hidden_extra`` is given); a per-layer hook copies what
    each layer produced.  ``dA[0] = W[1].T @ dZ[1]`` (which training skips)
    comes from the same ``input_grad`` kernel.
    """
    grads = _Grads(dZ={}, dW={}, db={}, dA={})

    def hook(l, arrays):
        grads.dZ[l], grads.dW[l], grads.db[l] = (np.array(arrays[k]) for k in ("dZ", "dW", "db"))
        if "dA_prev" in arrays:
            grads.dA[l - 1] = np.array(arrays["dA_prev"])

    bk = _nb if hidden_extra is None else _EveryLayerMistake(hidden_extra)
    engine.backward(bk, Ws, As, ZL, Y, hidden, output, scaling, output_grad, l2, hook=hook)
    grads.dA[0] = np.array(_nb.input_grad(Ws[0], grads.dZ[1]))
    return grads


def _draw_problem(dims, m, output, rng):
    params = init_params(dims, init="xavier", dtype=np.float64, seed=rng)
    Ws = [params[f"W{l}"] for l in range(1, len(dims))]
    bs = [0.1 * rng.standard_normal((n, 1)) for n in dims[1:]]
    X = rng.standard_normal((dims[0], m))
    n_L = dims[-1]
    if output == "sigmoid":
        Y = rng.integers(0, 2, size=(n_L, m)).astype(np.float64)
        y_text = "0/1 labels"
    elif output == "softmax":
        Y = np.zeros((n_L, m))
        Y[rng.integers(0, n_L, size=m), np.arange(m)] = 1
        y_text = "one-hot columns"
    else:
        Y = rng.standard_normal((n_L, m))
        y_text = "standard normal targets"
    return Ws, bs, X, Y, y_text


def _hidden_zmin(Ws, bs, X, hidden):
    """Smallest |Z[l]| over the hidden layers (inf without hidden layers)."""
    As, _ = engine.forward(_nb, Ws, bs, X, hidden, "identity")
    return min((float(np.abs(Ws[l] @ As[l] + bs[l]).min()) for l in range(len(Ws) - 1)), default=float("inf"))


def _make_problem(dims, m, output, hidden, seed):
    """Random float64 ``(Ws, bs, X, Y, y_text, redraws)`` from ``seed``.

    For relu and leaky_relu the draw is repeated (from the same generator, so
    a seed stays reproducible) until every hidden ``|Z[l]|`` is at least
    :data:`KINK_MARGIN`: central differences across the kink at 0 would
    average two slopes and fail for reasons that have nothing to do with
    backprop.  After :data:`KINK_REDRAWS` tries the draw with the largest
    margin is kept (and the result's notes say so).
    """
    rng = np.random.default_rng(seed)
    best, best_z = None, -1.0
    tries = KINK_REDRAWS if hidden in ("relu", "leaky_relu") and len(dims) > 2 else 1
    for k in range(tries):
        problem = _draw_problem(dims, m, output, rng)
        z = _hidden_zmin(problem[0], problem[1], problem[2], hidden) if tries > 1 else float("inf")
        if z > best_z:
            best, best_z = problem + (k,), z
        if z >= KINK_MARGIN:
            break
    return best


def _check_args(layers, hidden, output, m, scaling, seed, l2):
    dims = _check_layer_dims(layers)
    check_hidden(hidden)
    check_output(output)
    m = V.check_positive_int(m, "m")
    V.check_choice(scaling, "scaling", SCALINGS)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise V.FastnnTypeError(f"seed: expected an integer, got {type(seed).__name__}")
    l2 = V.check_nonneg_float(l2, "l2")
    if output == "softmax" and dims[-1] < 2:
        raise FastnnValueError("output: softmax needs at least 2 output units, the last layer has 1")
    entries = sum(dims[l] * dims[l - 1] + dims[l] + dims[l] * m + dims[l - 1] * m
                  for l in range(1, len(dims)))
    if entries > MAX_FD_ENTRIES:
        raise FastnnValueError(
            f"layers: {dims} with m = {m} is too large to check: explain perturbs every weight, bias and "
            f"every entry of every Z[l], A[l], {entries} entries, more than {MAX_FD_ENTRIES}; "
            "use a smaller network or m (it is meant for tiny examples)")
    return dims, m, l2
