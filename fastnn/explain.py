"""Backprop for one small network, written out and checked: :func:`explain`.

For a tiny network on random float64 data, :func:`explain` lays out

1. the forward pass, layer by layer, with concrete shapes;
2. the backward pass under the chosen ``scaling``: every ``dZ``, ``dW``, ``db``
   and ``dA_prev`` with its formula, its shapes, what it is the derivative *of*
   and where the ``1/m`` enters, each compared with central differences of
   that very derivative (perturbing ``W[l]``, ``b[l]``, or the intermediate
   ``Z[l]`` / ``A[l-1]`` and re-running the network from there);
3. the one-example view (``dw = dz a^T``) next to the batch view, and why the
   transpose appears (one entry written as its index sum);
4. where the deferred and absorbed conventions differ, and what ``1/m`` in
   every layer does;
5. the output layer: the course's chain through ``dA[L]`` against the fused
   ``A - Y``, including a saturated float32 output where the chain breaks.

The analytic quantities all come from fastnn itself: the passes of
:mod:`fastnn._passes` run on the NumPy backend through a thin wrapper that
records a copy of what each backward kernel returns.  Only the finite
differences are written here.  :func:`render_text` and
:func:`render_markdown` turn the result into a terminal page or Markdown.

Tolerances
----------
Every threshold used by the checks is set here, and only here.

``FD_STEP = 1e-5``
    Central differences ``(F(v + h) - F(v - h)) / (2h)`` in float64 have a
    truncation error ``h^2 |F'''| / 6`` and a rounding error ``~ eps |F| / h``
    (``eps = 2.2e-16``).  For the O(1) derivatives of these small nets the sum
    is smallest near ``h ~ eps^(1/3) ~ 1e-5``, where both are ``~ 1e-10``.
``TOL_FD = 1e-6``
    Threshold on ``||analytic - numerical|| / (||analytic|| + ||numerical||)``.
    A correct derivative of ordinary size (entries ~1e-3 .. 1) lands at
    ``1e-11 .. 1e-9``, a margin of 1000 or more, while any convention mistake
    (a stray factor ``m``, a missing transpose, a wrong ``g'``) is an O(1)
    relative error.  (Over ~1,800 random nets the worst was ``4e-7``, for a
    ``dW`` of norm ``1e-5``: see the floor below.)  The rounding
    part does not grow with ``m``: a derivative with respect to column ``i``
    of ``Z[l]`` or ``A[l]`` differences ``L_i`` alone (see ``_FiniteDiff``).
``FD_NOISE_C = 100`` (the resolution floor)
    A derivative whose entries are themselves ~1e-5 or smaller can be off by
    more than ``TOL_FD`` relatively just from the rounding noise ``eps |F| / h``
    of the differences (``|F|`` the objective's value).  Such a check also
    passes when ``||analytic - numerical|| <= FD_NOISE_C * sqrt(k) * eps |F| / h``
    (``k`` entries), and says so ("at FD resolution").  The measured ratio of
    error to ``sqrt(k) eps |F| / h`` stayed below 32 over ~1,800 random nets
    (every activation, output and scaling, depth 1..3, widths 1..5, m 1..8),
    truncation included; the floor is ``~2e-9 |F| sqrt(k)``, far below any O(1) mistake
    in a derivative that is not itself that small.
``KINK_MARGIN = 100 h``
    relu and leaky_relu have a kink at 0, where a central difference averages
    two slopes.  Their data are redrawn (from the same seeded generator) until
    every hidden ``|Z|`` is at least ``100 h``; perturbing ``W`` moves ``Z`` by
    ``h |A|``, so no difference crosses the kink.
``TOL_EXACT = 1e-12``
    Two analytic float64 routes to the same number (batch ``dW`` against the
    mean of per-example ``dw``, deferred against absorbed ``dW``, chain against
    fused ``dZ[L]``, an index sum against the matrix product) differ by
    rounding only, ``~ sqrt(n) eps ~ 1e-15`` for sums of ``n`` up to a few
    thousand terms (arrays are compared as norms and a single entry against
    the sum of its terms' magnitudes, never relative to a value that a
    cancelling sum made small).  The worst over the ~1,800
    random nets was ``2e-14``: ``1e-12`` leaves a margin of 50 and is still
    ``10^11`` below an O(1) mistake.
``TOL_F32 = 1000 * eps(float32) ~ 1.2e-4``
    A float32 gradient against the float64 one from the same inputs differs by
    float32 rounding, ``~ sqrt(n) eps32 ~ 1e-7 .. 1e-6`` (worst measured:
    ``1e-7``); a broken route gives inf/NaN or an O(1) error.
"""

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import _passes
from . import _validation as V
from .activations import ACTIVATIONS, LEAKY_SLOPE, OUTPUT_LOSS, check_hidden, check_output
from .backends import numpy_backend as _nb
from .errors import FastnnValueError, SaturationError
from .network import SCALINGS, _check_layer_dims, _objective, cost, gradients, init_params

#: Step of the central differences (module docstring, "Tolerances").
FD_STEP = 1e-5
#: Bound on the relative error of an analytic derivative against central differences.
TOL_FD = 1e-6
#: Bound on the relative difference of two analytic float64 routes to one quantity.
TOL_EXACT = 1e-12
#: Bound on the relative error of a float32 gradient against float64.
TOL_F32 = 1000 * float(np.finfo(np.float32).eps)
#: Safety factor on the rounding noise ``eps |F| / h`` of one central difference (see Check).
FD_NOISE_C = 100.0
_EPS64 = float(np.finfo(np.float64).eps)
#: relu/leaky_relu: data are redrawn until every hidden |Z| is at least this (100 steps) ...
KINK_MARGIN = 100 * FD_STEP
#: ... at most this many times.
KINK_REDRAWS = 50
#: Most entries explain() perturbs in all (each costs two partial forward passes).
MAX_FD_ENTRIES = 20000

CHECK_MARK, CROSS_MARK = "\u2713", "\u2717"

_GPRIME = {
    "identity": "1",
    "sigmoid": "A[{l}] * (1 - A[{l}])",
    "tanh": "1 - A[{l}]**2",
    "relu": "(Z[{l}] > 0)",
    "leaky_relu": f"where(Z[{{l}}] > 0, 1, {LEAKY_SLOPE})",
}
_LOSS_FORMULA = {
    "sigmoid": "L_i = -sum_k [Y[k,i] log A[L][k,i] + (1 - Y[k,i]) log(1 - A[L][k,i])]",
    "softmax": "L_i = -sum_k Y[k,i] log A[L][k,i]",
    "identity": "L_i = (1/2) sum_k (A[L][k,i] - Y[k,i])**2",
}


# ---------------------------------------------------------------------------
# The structured result
# ---------------------------------------------------------------------------

@dataclass
class Check:
    """One numerical comparison.

    Attributes
    ----------
    against : str
        What the analytic value was compared with.
    rel_err : float
        The relative error (``nan`` when the analytic value was not finite).
    tol : float
        The threshold (one of the module's ``TOL_*``).
    abs_err, floor : float
        For checks against central differences: ``||analytic - numerical||``
        and the resolution of the central differences themselves (their
        rounding noise, :data:`FD_NOISE_C` ``* eps |F| / h`` per entry).  A
        derivative so small that ``abs_err <= floor`` cannot be resolved
        further and passes; 0 for the other checks.
    """
    against: str
    rel_err: float
    tol: float
    abs_err: float = 0.0
    floor: float = 0.0

    @property
    def at_resolution(self):
        """True when the check passes only because the error is below the FD noise floor."""
        return bool(self.floor > 0 and not self.rel_err <= self.tol and np.isfinite(self.abs_err)
                    and self.abs_err <= self.floor)

    @property
    def passed(self):
        """True when ``rel_err <= tol`` or ``abs_err <= floor`` (False for NaN)."""
        return bool(self.rel_err <= self.tol) or self.at_resolution

    @property
    def mark(self):
        """The check mark or the cross."""
        return CHECK_MARK if self.passed else CROSS_MARK

    @property
    def summary(self):
        """``"<mark> <rel_err>"``, as both renderers print it."""
        text = f"{self.mark} {_fmt_err(self.rel_err)}"
        return text + " (at FD resolution)" if self.at_resolution else text


@dataclass
class ForwardStep:
    """Layer ``l`` of the forward pass.

    ``z_shapes`` reads ``"(n_l, m) = (n_l, n_{l-1}) @ (n_{l-1}, m) + (n_l, 1)"``,
    taken from the arrays ``W``, ``A_prev``, ``b`` and ``Z`` (``(n_l, m)``).
    """
    layer: int
    activation: str
    z_formula: str
    z_shapes: str
    broadcast: str
    a_formula: str
    a_shapes: str
    W: np.ndarray
    b: np.ndarray
    A_prev: np.ndarray
    Z: np.ndarray
    A: np.ndarray


@dataclass
class Quantity:
    """One backward quantity (``dZ[l]``, ``dW[l]``, ``db[l]`` or ``dA[l-1]``).

    Attributes
    ----------
    name : str
        ``"dZ[2]"`` etc.
    formula : str
        How fastnn computes it, e.g. ``"dW[2] = (1/m) dZ[2] @ A[1].T"``.
    shapes : str
        Result shape first, then the operands' shapes, from the arrays.
    derivative_of : str
        What it is the derivative of, e.g. ``"m * dJ/dZ[2]"``.
    one_over_m : str
        Where the ``1/m`` enters (or does not).
    value : numpy.ndarray
        The analytic value, shape as in ``shapes``.
    numerical : numpy.ndarray
        The central-difference value it is checked against, same shape.
    check : Check
    """
    name: str
    formula: str
    shapes: str
    derivative_of: str
    one_over_m: str
    value: np.ndarray
    numerical: np.ndarray
    check: Check


@dataclass
class BackwardLayer:
    """The four quantities of layer ``layer``, in the order dZ, dW, db, dA_prev."""
    layer: int
    title: str
    quantities: list


@dataclass
class Line:
    """A labelled line: ``label``, a formula or value ``text``, optional ``shapes``,
    ``detail`` (numbers or a comment) and ``check``."""
    label: str
    text: str
    shapes: str = ""
    detail: str = ""
    check: Optional[Check] = None


@dataclass
class IndexSum:
    """One matrix-product entry written out as its index sum, with the numbers."""
    entry: str
    index_form: str
    numbers: str
    value: float
    matrix_value: float
    why: str
    check: Check


@dataclass
class OneExample:
    """Section 3: the per-example ``dw = dz a^T`` next to the batch ``dW``."""
    layer: int
    column: int
    per_example: list      # of Line: dz, a, dw, db for one column
    batch_rule: str
    batch_lines: list      # of Line: batch dZ column, dW[l], db[l] vs mean/sum of per-example
    index_sums: list       # of IndexSum


@dataclass
class EveryLayerRow:
    """Section 4: layer ``layer`` when ``1/m`` is applied in every layer's ``dZ``.

    ``factor`` is ``||dW[l] (absorbed)|| / ||dW[l] (wrong)||`` on the data
    term (``l2 = 0``); ``expected`` is ``m^(L-l)``.  ``check`` compares the two; ``rel_err``
    is the wrong ``dW[l]`` against the numerical ``dJ/dW[l]``, and ``verdict``
    says whether that comparison passes.
    """
    layer: int
    rel_err: float
    verdict: str
    factor: float
    expected_text: str
    expected: float
    check: Optional[Check]


@dataclass
class Conventions:
    """Section 4: deferred against absorbed, and the 1/m-in-every-layer mistake."""
    lines: list            # of Line: ratios dZ, dA (= m) and equal dW, db
    notes: list            # of str
    every_layer: list      # of EveryLayerRow
    every_layer_note: str


@dataclass
class OutputLayer:
    """Section 5: the course's chain route against the fused ``A - Y``."""
    lines: list            # of Line
    saturated: list        # of Line (empty for the identity output)
    notes: list            # of str


@dataclass
class ExplainResult:
    """Everything :func:`explain` computed; render it with :func:`render_text`
    or :func:`render_markdown`.

    ``forward[l-1]`` and ``backward[...]`` (output layer first, as backprop
    runs) hold the arrays of layer ``l``; ``notes`` the method and tolerances.
    """
    layers: list
    hidden: str
    output: str
    m: int
    scaling: str
    seed: int
    l2: float
    header: list
    forward: list
    loss_lines: list
    backward_intro: list
    backward: list
    one_example: OneExample
    conventions: Conventions
    output_layer: OutputLayer
    notes: list
    short_answer: list = field(default_factory=list)   # of str: three sentences, printed first
    X: np.ndarray = field(repr=False, default=None)
    Y: np.ndarray = field(repr=False, default=None)

    def checks(self):
        """Every :class:`Check` in the result, in the order they are printed."""
        out = []
        for bl in self.backward:
            out.extend(q.check for q in bl.quantities)
        ex = self.one_example
        out.extend(ln.check for ln in ex.per_example + ex.batch_lines if ln.check)
        out.extend(s.check for s in ex.index_sums)
        out.extend(ln.check for ln in self.conventions.lines if ln.check)
        out.extend(r.check for r in self.conventions.every_layer if r.check)
        out.extend(ln.check for ln in self.output_layer.lines + self.output_layer.saturated if ln.check)
        return out

    @property
    def all_passed(self):
        """True when every check passed."""
        return all(c.passed for c in self.checks())


# ---------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------

def _fmt_err(x):
    if not np.isfinite(x):
        return "nan" if np.isnan(x) else "inf"
    return "0" if x == 0 else f"{x:.1e}"


def _shape(a):
    return "(" + ", ".join(str(int(d)) for d in np.shape(a)) + ")"


def _num(x, digits=4):
    s = f"{float(x):.{digits}g}"
    return s


def _paren(x):
    s = _num(x)
    return f"({s})" if s.startswith("-") else s


def _matrix(a, digits=4):
    """A small matrix on one line; a column (n, 1) is written as a row with ``.T``."""
    a = np.asarray(a, dtype=np.float64)
    suffix = ""
    if a.ndim == 2 and a.shape[1] == 1 and a.shape[0] > 1:
        a, suffix = a.T, ".T"
    text = np.array2string(a, separator=", ", max_line_width=10 ** 6, threshold=10 ** 6,
                           formatter={"float_kind": lambda v: _num(v, digits)})
    return " ".join(text.split()) + suffix


def _rel(a, b):
    """``||a - b|| / (||a|| + ||b||)`` (0 when both are zero, nan when not finite)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    den = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / den) if den else 0.0


# ---------------------------------------------------------------------------
# Analytic quantities: fastnn's own passes on the NumPy backend, recorded
# ---------------------------------------------------------------------------

class _Recorder:
    """Stands in for the NumPy backend module inside :mod:`fastnn._passes`.

    Every kernel is looked up on :mod:`fastnn.backends.numpy_backend` when
    called (so a monkeypatched kernel is the one that runs); the backward
    kernels also keep a copy of what they return, since the passes reuse
    buffers in place.  ``hidden_extra`` multiplies every hidden ``dZ``, ``db``
    once more (the "1/m in every layer" mistake).
    """

    def __init__(self, hidden_extra=None):
        self.dZ, self.db, self.dW, self.dA = [], [], [], []
        self._extra = hidden_extra

    def __getattr__(self, name):
        return getattr(_nb, name)

    def _delta(self, kernel, args):
        dZ, db, loss = kernel(*args)
        self.dZ.append(np.array(dZ))
        self.db.append(np.array(db))
        return dZ, db, loss

    def output_delta(self, *args):
        return self._delta(_nb.output_delta, args)

    def output_delta_chain(self, *args):
        return self._delta(_nb.output_delta_chain, args)

    def weight_grad(self, *args):
        dW = _nb.weight_grad(*args)
        self.dW.append(np.array(dW))
        return dW

    def input_grad(self, W, dZ):
        dA = _nb.input_grad(W, dZ)
        self.dA.append(np.array(dA))
        return dA

    def backward_hidden(self, dA, A, activation, db_scale):
        dZ, db = _nb.backward_hidden(dA, A, activation, db_scale)
        if self._extra is not None:
            dZ = dZ * self._extra
            db = db * self._extra
        self.dZ.append(np.array(dZ))
        self.db.append(np.array(db))
        return dZ, db


@dataclass
class _Grads:
    """Recorded backward quantities, keyed by layer l = 1..L (dA by l - 1)."""
    dZ: dict
    dW: dict
    db: dict
    dA: dict


def _record_backward(Ws, As, ZL, Y, hidden, output, scaling, l2, output_grad="fused", hidden_extra=None):
    """Run :func:`fastnn._passes._backward` and return every intermediate.

    ``dA[0] = W[1].T @ dZ[1]`` (which training skips) comes from the same
    ``input_grad`` kernel.
    """
    rec = _Recorder(hidden_extra)
    _passes._backward(rec, Ws, As, ZL, Y, hidden, output, scaling, output_grad, l2)
    rec.input_grad(Ws[0], rec.dZ[-1])
    L = len(Ws)
    layers = list(range(L, 0, -1))
    return _Grads(dZ=dict(zip(layers, rec.dZ)), dW=dict(zip(layers, rec.dW)),
                  db=dict(zip(layers, rec.db)), dA=dict(zip([l - 1 for l in layers], rec.dA)))


# ---------------------------------------------------------------------------
# The finite-difference machinery (the only new arithmetic in this module)
# ---------------------------------------------------------------------------

class _FiniteDiff:
    """Central differences, in float64, of ``J`` or ``S`` with respect to
    ``W[l]``, ``b[l]``, ``Z[l]`` or ``A[l]``.

    ``J = (1/m) sum_i L_i + (l2/(2m)) sum ||W||^2`` is the cost and
    ``S = sum_i L_i + (l2/(2m)) sum ||W||^2`` what scaling="sum" differentiates.
    A derivative with respect to an intermediate ``Z[l]`` or ``A[l]`` perturbs
    that array and runs the rest of the network from there with the NumPy
    backend's forward kernels.  An entry of column ``i`` of ``Z[l]`` or
    ``A[l]`` changes only ``L_i``: the other ``m - 1`` losses and the L2 term
    are constant and cancel exactly in ``F(v + h) - F(v - h)``, so only column
    ``i`` is re-run (which also keeps the rounding error from growing with m).
    """

    def __init__(self, Ws, bs, X, Y, Zs, As, hidden, output, l2, h=FD_STEP):
        self.Ws = [W.copy() for W in Ws]
        self.bs = [b.copy() for b in bs]
        self.X, self.Y, self.Zs, self.As = X, Y, Zs, As
        self.hidden, self.output, self.l2, self.h = hidden, output, l2, h
        self.L, self.m = len(Ws), X.shape[1]
        self._memo = {}
        #: (objective, var, l) -> rounding noise of one central difference, ``eps |F| / h``.
        self.noise = {}

    def _loss_from_A(self, k, A, Y):
        """Summed loss of the columns of ``A = A[k]`` when layers k+1..L run from it."""
        for j in range(k, self.L - 1):
            A = _nb.forward_hidden(self.Ws[j], A, self.bs[j], self.hidden)
        Z, AL = _nb.forward_output(self.Ws[-1], A, self.bs[-1], self.output)
        return _nb.output_loss(Z, AL, Y, self.output)

    def _loss_from_Z(self, l, Z, Y):
        """Summed loss of the columns of ``Z = Z[l]`` when g and layers l+1..L run from it."""
        if l < self.L:
            return self._loss_from_A(l, ACTIVATIONS[self.hidden](Z, np.empty_like(Z)), Y)
        AL = ACTIVATIONS[self.output](Z, np.empty_like(Z))
        return _nb.output_loss(Z, AL, Y, self.output)

    def _central(self, V, f):
        """(f(V + h e_j) - f(V - h e_j)) / 2h for every entry j of ``V`` (restored after)."""
        G = np.empty_like(V)
        h = self.h
        for idx in np.ndindex(V.shape):
            saved = V[idx]
            V[idx] = saved + h
            plus = f()
            V[idx] = saved - h
            minus = f()
            V[idx] = saved
            G[idx] = (plus - minus) / (2 * h)
        return G

    def derivative(self, objective, var, l):
        """d(objective)/d(var[l]) for objective in {"J", "S"}, var in {"W", "b", "Z", "A"}."""
        key = (objective, var, l)
        if key in self._memo:
            return self._memo[key]
        if var in ("W", "b"):
            V = (self.Ws if var == "W" else self.bs)[l - 1]
            kind = "deferred" if objective == "J" else "sum"

            def F():
                return _objective(self._loss_from_A(0, self.X, self.Y), self.Ws, self.m, kind, self.l2)

            size = abs(F())
            G = self._central(V, F)
        else:
            full = self.Zs[l] if var == "Z" else self.As[l]
            run = self._loss_from_Z if var == "Z" else self._loss_from_A
            scale = 1.0 / self.m if objective == "J" else 1.0
            G = np.empty_like(full)
            size = 0.0
            for i in range(self.m):
                V = full[:, i:i + 1].copy()
                Yi = self.Y[:, i:i + 1]
                size = max(size, scale * abs(run(l, V, Yi)))
                G[:, i:i + 1] = scale * self._central(V, lambda: run(l, V, Yi))
        self.noise[key] = _EPS64 * size / self.h
        self._memo[key] = G
        return G


# ---------------------------------------------------------------------------
# Building the result
# ---------------------------------------------------------------------------

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
    As, _ = _passes._forward(_nb, Ws, bs, X, hidden, "identity")
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


def _objective_text(scaling, l2):
    reg = " + (l2/(2m)) sum_l ||W[l]||^2" if l2 else ""
    if scaling == "sum":
        return f"S = sum_i L_i{reg}"
    return f"J = (1/m) sum_i L_i{reg}"


def _backward_texts(scaling, l, L, l2, hidden, is_output):
    """(formula, derivative_of, one_over_m) for dZ, dW, db, dA of layer l."""
    reg = f" + (l2/m) W[{l}]" if l2 else ""
    reg_note = f"; the L2 term adds (l2/m) W[{l}]" if l2 else ""
    gp = _GPRIME[hidden].format(l=l)
    if is_output:
        dz = f"dZ[{l}] = (1/m) (A[{l}] - Y)" if scaling == "absorbed" else f"dZ[{l}] = A[{l}] - Y"
    elif hidden == "identity":
        dz = f"dZ[{l}] = dA[{l}] * g'(Z[{l}]), g' = 1"
    else:
        dz = f"dZ[{l}] = dA[{l}] * g'(Z[{l}]), g'(Z[{l}]) = {gp}"
    if scaling == "deferred":
        f_dw = f"dW[{l}] = (1/m) dZ[{l}] @ A[{l - 1}].T{reg}"
        f_db = f"db[{l}] = (1/m) sum(dZ[{l}], axis=1)"
    else:
        f_dw = f"dW[{l}] = dZ[{l}] @ A[{l - 1}].T{reg}"
        f_db = f"db[{l}] = sum(dZ[{l}], axis=1)"
    f_da = f"dA[{l - 1}] = W[{l}].T @ dZ[{l}]"
    if scaling == "deferred":
        of = (f"m * dJ/dZ[{l}] = d(sum_i L_i)/dZ[{l}]", f"dJ/dW[{l}]", f"dJ/db[{l}]",
              f"m * dJ/dA[{l - 1}] = d(sum_i L_i)/dA[{l - 1}]")
        where = ("none: deferred to every dW, db" if is_output else "none: dZ stays m * dJ/dZ",
                 "here: (1/m) times the sum over the m columns" + reg_note,
                 "here: (1/m) times the sum over the m columns",
                 "none: dA stays m * dJ/dA")
    elif scaling == "absorbed":
        of = (f"dJ/dZ[{l}]", f"dJ/dW[{l}]", f"dJ/db[{l}]", f"dJ/dA[{l - 1}]")
        where = ("here, once: (1/m)(A - Y); every earlier quantity inherits it" if is_output
                 else f"inherited from dZ[{L}] through dA[{l}]; none added",
                 f"none added: already inside dZ[{l}]" + reg_note,
                 f"none added: already inside dZ[{l}]",
                 f"inherited from dZ[{l}]; none added")
    else:
        of = (f"dS/dZ[{l}]", f"dS/dW[{l}]", f"dS/db[{l}]", f"dS/dA[{l - 1}]")
        where = ("none (gradient of the summed loss)", "none" + (f"; only the L2 term (l2/m) W[{l}]" if l2 else ""),
                 "none", "none")
    return (dz, f_dw, f_db, f_da), of, where


def _fd_check(fd, value, objective, var, l, factor=1):
    """(numerical, Check): ``value`` against ``factor * d(objective)/d(var[l])`` by central differences."""
    num = factor * fd.derivative(objective, var, l)
    pre = "m * " if factor != 1 else ""
    diff = np.asarray(value, dtype=np.float64) - num
    abs_err = float(np.linalg.norm(diff)) if np.isfinite(diff).all() else float("nan")
    floor = FD_NOISE_C * factor * fd.noise[(objective, var, l)] * math.sqrt(num.size)
    return num, Check(f"{pre}central differences of {objective} w.r.t. {var}[{l}]", _rel(value, num), TOL_FD,
                      abs_err, floor)


def _backward_section(grads, fd, Ws, As, Y, hidden, output, scaling, l2):
    L, m = len(Ws), fd.m
    objective = "S" if scaling == "sum" else "J"
    layers = []
    for l in range(L, 0, -1):
        is_out = l == L
        formulas, of, where = _backward_texts(scaling, l, L, l2, hidden, is_out)
        dZ, dW, db, dA = grads.dZ[l], grads.dW[l], grads.db[l], grads.dA[l - 1]
        A_prev = As[l - 1]
        if is_out:
            z_shapes = f"{_shape(dZ)} = {_shape(As[l])} - {_shape(Y)}"
        else:
            z_shapes = f"{_shape(dZ)} = {_shape(grads.dA[l])} * {_shape(As[l])}"
        shapes = (z_shapes,
                  f"{_shape(dW)} = {_shape(dZ)} @ {_shape(A_prev.T)}",
                  f"{_shape(db)} = sum({_shape(dZ)}, axis=1)",
                  f"{_shape(dA)} = {_shape(Ws[l - 1].T)} @ {_shape(dZ)}")
        zfac = m if scaling == "deferred" else 1
        specs = ((f"dZ[{l}]", dZ, "Z", l, zfac), (f"dW[{l}]", dW, "W", l, 1),
                 (f"db[{l}]", db, "b", l, 1), (f"dA[{l - 1}]", dA, "A", l - 1, zfac))
        qs = []
        for i, (name, value, var, idx, fac) in enumerate(specs):
            num, check = _fd_check(fd, value, objective, var, idx, fac)
            qs.append(Quantity(name, formulas[i], shapes[i], of[i], where[i], value, num, check))
        if is_out:
            title = f"Layer {l} (output: {output} + {OUTPUT_LOSS[output]})"
        else:
            title = f"Layer {l} (hidden: {hidden})"
        if l == 1:
            title += "; dA[0] = d/dX is never used in training, shown for completeness"
        layers.append(BackwardLayer(l, title, qs))
    return layers


def _forward_section(Ws, bs, As, Zs, hidden, output):
    L = len(Ws)
    steps = []
    for l in range(1, L + 1):
        act = output if l == L else hidden
        W, b, A_prev, Z, A = Ws[l - 1], bs[l - 1], As[l - 1], Zs[l], As[l]
        a_formula = f"A[{l}] = {act}(Z[{l}])" + (" (over each column)" if act == "softmax" else "")
        steps.append(ForwardStep(
            l, act, f"Z[{l}] = W[{l}] @ A[{l - 1}] + b[{l}]",
            f"{_shape(Z)} = {_shape(W)} @ {_shape(A_prev)} + {_shape(b)}",
            f"b[{l}] {_shape(b)} broadcast over {Z.shape[1]} columns",
            a_formula, f"{_shape(A)} = {act}({_shape(Z)})", W, b, A_prev, Z, A))
    return steps


def _one_example_section(Ws, bs, X, Y, grads, hidden, output, scaling, l2):
    L, m = len(Ws), X.shape[1]
    col = 0
    # Per-example gradients: the same passes on one column (m = 1: no 1/m anywhere).
    per = []
    for i in range(m):
        Xi, Yi = np.ascontiguousarray(X[:, i:i + 1]), np.ascontiguousarray(Y[:, i:i + 1])
        As_i, ZL_i = _passes._forward(_nb, Ws, bs, Xi, hidden, output)
        per.append((As_i, _record_backward(Ws, As_i, ZL_i, Yi, hidden, output, "sum", 0.0)))
    As0, g0 = per[0]
    dz, a_prev, dw, db = g0.dZ[L], As0[L - 1], g0.dW[L], g0.db[L]
    per_example = [
        Line(f"dz[{L}]", f"dz[{L}] = a[{L}] - y", _shape(dz), _matrix(dz)),
        Line(f"a[{L - 1}]", f"a[{L - 1}] = column {col} of A[{L - 1}]", _shape(a_prev), _matrix(a_prev)),
        Line(f"dw[{L}]", f"dw[{L}] = dz[{L}] @ a[{L - 1}].T",
             f"{_shape(dw)} = {_shape(dz)} @ {_shape(a_prev.T)}", _matrix(dw)),
        Line(f"db[{L}]", f"db[{L}] = dz[{L}]", _shape(db), _matrix(db)),
    ]
    reduce_name = "sum" if scaling == "sum" else "mean"
    rule = {"deferred": "dW[l] = (1/m) dZ[l] @ A[l-1].T = (1/m) sum_i dz_i a_i.T: the mean of the m per-example dw",
            "absorbed": "dW[l] = dZ[l] @ A[l-1].T = sum_i ((1/m) dz_i) a_i.T: the mean of the m per-example dw",
            "sum": "dW[l] = dZ[l] @ A[l-1].T = sum_i dz_i a_i.T: the sum of the m per-example dw"}[scaling]
    if l2:
        rule += " (plus the L2 term (l2/m) W[l], which belongs to no example)"
    zscale = 1.0 / m if scaling == "absorbed" else 1.0
    batch_col = grads.dZ[L][:, col:col + 1]
    ztext = f"dZ[{L}][:, {col}] = (1/m) dz[{L}]" if scaling == "absorbed" else f"dZ[{L}][:, {col}] = dz[{L}]"
    lines = [Line(f"dZ[{L}][:, {col}]", ztext, _shape(batch_col), _matrix(batch_col),
                  Check(f"batch dZ[{L}] column {col} against the per-example dz", _rel(batch_col, zscale * dz),
                        TOL_EXACT))]
    for l in range(L, 0, -1):
        dws = np.stack([g.dW[l] for _, g in per])
        dbs = np.stack([g.db[l] for _, g in per])
        red_w = dws.sum(axis=0) if scaling == "sum" else dws.mean(axis=0)
        red_b = dbs.sum(axis=0) if scaling == "sum" else dbs.mean(axis=0)
        data_w = grads.dW[l] - (l2 / m) * Ws[l - 1] if l2 else grads.dW[l]
        wt = f"dW[{l}] - (l2/m) W[{l}]" if l2 else f"dW[{l}]"
        lines.append(Line(f"dW[{l}]", f"{wt} = {reduce_name}_i dw_i[{l}]",
                          f"{_shape(grads.dW[l])} = {reduce_name} of {m} x {_shape(dws[0])}", "",
                          Check(f"batch dW[{l}] against the {reduce_name} of per-example dw", _rel(data_w, red_w),
                                TOL_EXACT)))
        lines.append(Line(f"db[{l}]", f"db[{l}] = {reduce_name}_i db_i[{l}]",
                          f"{_shape(grads.db[l])} = {reduce_name} of {m} x {_shape(dbs[0])}", "",
                          Check(f"batch db[{l}] against the {reduce_name} of per-example db", _rel(grads.db[l], red_b),
                                TOL_EXACT)))
    sums = [_index_sum_dw(Ws, grads, per, L, scaling, l2, m)]
    lda = max(range(1, L + 1), key=lambda k: (Ws[k - 1].shape[0], k))
    sums.append(_index_sum_da(Ws, grads, lda))
    return OneExample(L, col, per_example, rule, lines, sums)


def _terms_text(pairs):
    parts = [f"{_paren(a)}*{_paren(b)}" for a, b in pairs]
    if len(parts) > 6:
        parts = parts[:3] + ["..."] + parts[-2:]
    return " + ".join(parts)


def _index_sum_dw(Ws, grads, per, l, scaling, l2, m):
    dZ = grads.dZ[l]
    A_prev = np.concatenate([p[0][l - 1] for p in per], axis=1)
    # Row 0, and the column whose entry is largest (an entry whose terms cancel to ~0
    # would hide the point).
    data = grads.dW[l] - (l2 / m) * Ws[l - 1]
    r, c = 0, int(np.argmax(np.abs(data[0])))
    pairs = [(dZ[r, i], A_prev[c, i]) for i in range(m)]
    total = math.fsum(a * b for a, b in pairs)
    entry = f"dW[{l}][{r},{c}]"
    pre, scale = ("(1/m) ", 1.0 / m) if scaling == "deferred" else ("", 1.0)
    index_form = f"{entry} = {pre}sum_i dZ[{l}][{r},i] * A[{l - 1}][{c},i]"
    numbers = (f"({1}/{m}) * " if scaling == "deferred" else "") + f"({_terms_text(pairs)})"
    value = scale * total
    mags = scale * math.fsum(abs(a * b) for a, b in pairs)
    if l2:
        w = Ws[l - 1][r, c]
        index_form += f" + (l2/m) W[{l}][{r},{c}]"
        numbers += f" + ({l2:g}/{m})*{_paren(w)}"
        value += l2 / m * w
        mags += abs(l2 / m * w)
    got = float(grads.dW[l][r, c])
    why = (f"the sum runs over the example index i, the column index of both dZ[{l}] and A[{l - 1}]; "
           f"a matrix product sums over the columns of its left factor and the rows of its right "
           f"factor, so A[{l - 1}] enters transposed: dZ[{l}] @ A[{l - 1}].T, "
           f"{_shape(dZ)} @ {_shape(A_prev.T)} = {_shape(grads.dW[l])}, the shape of W[{l}]")
    err = abs(value - got) / mags if mags else abs(value - got)
    return IndexSum(entry, index_form, numbers, value, got, why,
                    Check(f"the index sum against the matrix entry {entry}", err, TOL_EXACT))


def _index_sum_da(Ws, grads, l):
    W, dZ, dA = Ws[l - 1], grads.dZ[l], grads.dA[l - 1]
    j, i = (1 if W.shape[1] > 1 else 0), 0
    pairs = [(W[k, j], dZ[k, i]) for k in range(W.shape[0])]
    value = math.fsum(a * b for a, b in pairs)
    mags = math.fsum(abs(a * b) for a, b in pairs)
    entry = f"dA[{l - 1}][{j},{i}]"
    got = float(dA[j, i])
    why = (f"here the sum runs over k, the FIRST (row) index of W[{l}] and of dZ[{l}]; as a matrix "
           f"product that is W[{l}].T @ dZ[{l}], {_shape(W.T)} @ {_shape(dZ)} = {_shape(dA)}, "
           f"the shape of A[{l - 1}]")
    err = abs(value - got) / mags if mags else abs(value - got)
    return IndexSum(entry, f"{entry} = sum_k W[{l}][k,{j}] * dZ[{l}][k,{i}]", _terms_text(pairs), value, got,
                    why, Check(f"the index sum against the matrix entry {entry}", err, TOL_EXACT))


def _ratio_range(a, b):
    mask = b != 0
    if not mask.any():
        return None
    r = a[mask] / b[mask]
    return float(r.min()), float(r.max())


def _conventions_section(Ws, As, ZL, Y, fd, hidden, output, l2):
    L, m = len(Ws), fd.m
    runs = {s: _record_backward(Ws, As, ZL, Y, hidden, output, s, l2) for s in ("deferred", "absorbed")}
    d, a = runs["deferred"], runs["absorbed"]
    lines = []
    for l in range(L, 0, -1):
        for name, x, y in ((f"dZ[{l}]", d.dZ[l], a.dZ[l]), (f"dA[{l - 1}]", d.dA[l - 1], a.dA[l - 1])):
            rng = _ratio_range(x, y)
            if rng is None:
                lines.append(Line(name, "deferred / absorbed", _shape(x), "all entries are 0", None))
                continue
            detail = _num(rng[0], 6) if _num(rng[0], 6) == _num(rng[1], 6) else \
                f"{_num(rng[0], 6)} .. {_num(rng[1], 6)}"
            lines.append(Line(name, "deferred = m * absorbed", _shape(x),
                              f"entrywise ratio {detail}, m = {m}",
                              Check(f"{name} deferred against m times {name} absorbed", _rel(x, m * y), TOL_EXACT)))
        for name, x, y in ((f"dW[{l}]", d.dW[l], a.dW[l]), (f"db[{l}]", d.db[l], a.db[l])):
            lines.append(Line(name, "deferred = absorbed", _shape(x), "",
                              Check(f"{name} deferred against absorbed", _rel(x, y), TOL_EXACT)))
    notes = [
        "deferred: dZ[L] = A - Y is d(sum_i L_i)/dZ[L]; every dZ, dA stays m * dJ/d(.), and each dW, db "
        "applies the 1/m itself.",
        "absorbed: dZ[L] = (1/m)(A - Y) = dJ/dZ[L]; the chain rule carries that one 1/m into every "
        "dA and dZ, so dW, db need none.",
        "sum: the same dZ as deferred, with dW, db m times larger (the gradient of sum_i L_i).",
    ]
    wrong = _record_backward(Ws, As, ZL, Y, hidden, output, "absorbed", l2, hidden_extra=1.0 / m)
    # The factor is measured on the data term alone (l2 = 0): subtracting (l2/m) W would cancel.
    a0 = _record_backward(Ws, As, ZL, Y, hidden, output, "absorbed", 0.0)
    wrong0 = _record_backward(Ws, As, ZL, Y, hidden, output, "absorbed", 0.0, hidden_extra=1.0 / m)
    rows = []
    for l in range(L, 0, -1):
        _, vs_fd = _fd_check(fd, wrong.dW[l], "J", "W", l)
        verdict = "right" if vs_fd.passed else "wrong"
        n_true, n_wrong = np.linalg.norm(a0.dW[l]), np.linalg.norm(wrong0.dW[l])
        exp = float(m) ** (L - l)
        text = f"{m}^{L - l} = {_num(exp, 12)}"
        if n_wrong == 0 or n_true == 0:
            rows.append(EveryLayerRow(l, vs_fd.rel_err, verdict, float("nan"), text, exp, None))
            continue
        factor = float(n_true / n_wrong)
        rows.append(EveryLayerRow(
            l, vs_fd.rel_err, verdict, factor, text, exp,
            Check(f"||dW[{l}]|| (absorbed, checked above) / ||dW[{l}] with 1/m in every layer|| against m^(L-l)",
                  abs(factor - exp) / exp, TOL_EXACT)))
    note = ("1/m in every layer: absorbed's dZ[L] = (1/m)(A - Y), then another 1/m in each hidden "
            "dZ[l] = (1/m) dA[l] * g'(Z[l]). Layer l picks up L - l extra factors, so its dW[l] is "
            "too small by m^(L-l): right at the output layer only.")
    return Conventions(lines, notes, rows, note)


def _output_section(Ws, bs, X, Y, As, ZL, hidden, output, scaling, l2):
    L, m = len(Ws), X.shape[1]
    chain = {
        "sigmoid": f"dA[{L}] = -(Y/A[{L}] - (1-Y)/(1-A[{L}])); dZ[{L}] = dA[{L}] * A[{L}] * (1 - A[{L}])",
        "softmax": f"dA[{L}] = -Y/A[{L}]; dZ[{L}] = A[{L}] * (dA[{L}] - sum(A[{L}] * dA[{L}], axis=0))",
        "identity": f"dA[{L}] = A[{L}] - Y; dZ[{L}] = dA[{L}] * 1",
    }[output]
    zs = "(1/m) " if scaling == "absorbed" else ""
    fused = f"dZ[{L}] = {zs}(A[{L}] - Y)" if zs else f"dZ[{L}] = A[{L}] - Y"
    g_f = _record_backward(Ws, As, ZL, Y, hidden, output, scaling, l2, "fused")
    g_c = _record_backward(Ws, As, ZL, Y, hidden, output, scaling, l2, "chain")
    lines = [
        Line("chain", chain, _shape(g_c.dZ[L]), ""),
        Line("fused", fused, _shape(g_f.dZ[L]), ""),
        Line(f"dZ[{L}]", "chain = fused", _shape(g_f.dZ[L]), "on the float64 data above",
             Check(f"dZ[{L}] by the chain route against the fused route", _rel(g_c.dZ[L], g_f.dZ[L]), TOL_EXACT)),
    ]
    notes = []
    saturated = []
    if output == "identity":
        notes.append("The identity output has no division (dA[L] = A - Y, g' = 1): the two routes are "
                     "the same computation and nothing can saturate.")
        return OutputLayer(lines, saturated, notes)
    # Push column 0's output to a confident wrong answer, then run in float32.
    bs_s = [b.copy() for b in bs]
    Y_s = Y.copy()
    Z0 = ZL[:, 0]
    if output == "sigmoid":
        target = 25.0
        bs_s[-1] = bs_s[-1] + (target - Z0).reshape(-1, 1)
        Y_s[:, 0] = 0
        setup = (f"b[{L}] shifted by {target:g} - Z[{L}][:, 0] (every column moves; column 0 lands at "
                 f"Z = {target:g}) and column 0 labelled 0: a confident wrong answer, whose exact dZ is "
                 f"sigmoid({target:g}) - 0, about 1")
    else:
        gap = 110.0
        shift = np.zeros_like(bs_s[-1])
        shift[1, 0] = gap - (Z0[1] - Z0[0])
        bs_s[-1] = bs_s[-1] + shift
        Y_s[:, 0] = 0
        Y_s[0, 0] = 1
        setup = (f"b[{L}][1] raised so that Z[{L}][1,0] - Z[{L}][0,0] = {gap:g}, and column 0 labelled class 0: "
                 f"a confident wrong answer; A[{L}][0,0] = exp(-{gap:g}), about 1.7e-48, is below float32's "
                 "smallest subnormal (1.4e-45) and rounds to 0")
    p32 = {}
    for l in range(1, L + 1):
        p32[f"W{l}"] = Ws[l - 1].astype(np.float32)
        p32[f"b{l}"] = bs_s[l - 1].astype(np.float32)
    p64 = {k: v.astype(np.float64) for k, v in p32.items()}
    X32, Y32 = X.astype(np.float32), Y_s.astype(np.float32)
    W32 = [p32[f"W{l}"] for l in range(1, L + 1)]
    b32 = [p32[f"b{l}"] for l in range(1, L + 1)]
    AL32 = _passes._forward(_nb, W32, b32, X32, hidden, output)[0][-1]
    AL64 = _passes._forward(_nb, [W.astype(np.float64) for W in W32], [b.astype(np.float64) for b in b32],
                            X32.astype(np.float64), hidden, output)[0][-1]
    a32, a64 = AL32[:, 0:1], AL64[:, 0:1]
    saturated.append(Line(f"A[{L}][:, 0]", "float32", _shape(a32),
                          f"{_matrix(a32, 17)}; float64: {_matrix(a64, 17)}"))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if output == "sigmoid":
            dA32 = -(Y32 / AL32 - (1 - Y32) / (1 - AL32))
        else:
            dA32 = -(Y32 / AL32)
    bad = int(np.size(dA32) - np.isfinite(dA32).sum())
    try:
        gradients(p32, X32, Y32, hidden=hidden, output=output, scaling=scaling, output_grad="chain",
                  l2=l2, backend="numpy")
        outcome = "finite (no SaturationError)"
    except SaturationError:
        outcome = "fastnn raises SaturationError"
    saturated.append(Line(f"chain dA[{L}]", "float32", _shape(dA32),
                          f"{bad} of {dA32.size} entries inf/nan; {outcome}"))
    _, g32 = gradients(p32, X32, Y32, hidden=hidden, output=output, scaling=scaling, output_grad="fused",
                       l2=l2, backend="numpy")
    _, g64 = gradients(p64, X32.astype(np.float64), Y32.astype(np.float64), hidden=hidden, output=output,
                       scaling=scaling, output_grad="fused", l2=l2, backend="numpy")
    v32 = np.concatenate([g32[k].ravel().astype(np.float64) for k in sorted(g32)])
    v64 = np.concatenate([g64[k].ravel() for k in sorted(g64)])
    saturated.append(Line("fused", f"{fused} in float32", "", "finite; dW, db against float64",
                          Check("float32 fused dW, db against float64", _rel(v32, v64), TOL_F32)))
    notes.append("Saturated example: " + setup + ".")
    by = "A and 1 - A" if output == "sigmoid" else "A"
    notes.append(f"The chain route divides by {by}: once the output rounds to exactly 0 or 1 in float32 "
                 "that is a division by zero, and inf * 0 = nan. A - Y has no division.")
    return OutputLayer(lines, saturated, notes)


def _short_answer(L, m, scaling):
    """Where the 1/m goes in this network and why, in three sentences (printed first)."""
    mean = f"J = (1/m) sum_i L_i averages the m = {m} examples, so each dJ/dW[l], dJ/db[l] has exactly one 1/m."
    if scaling == "deferred":
        return [mean,
                f"Here (deferred, the course's) it sits in every dW[l] = (1/m) dZ[l] @ A[l-1].T and "
                f"db[l] = (1/m) sum(dZ[l]), l = 1..{L}.",
                "Not in dZ, dA: column i is example i's own gradient, and the 1/m comes with the sum over "
                "the columns (section 4)."]
    if scaling == "absorbed":
        return [mean,
                f"Here (absorbed) it sits once in dZ[{L}] = (1/m)(A[{L}] - Y); the chain rule carries it into "
                "every dA, dZ below.",
                "So dW[l] = dZ[l] @ A[l-1].T and db[l] = sum(dZ[l]) need none: another 1/m would count it "
                "twice (section 4)."]
    return [f"Here (sum) there is no 1/m: the objective is S = sum_i L_i = m J, so each dW[l], db[l] is "
            "m times dJ/dW[l], dJ/db[l].",
            f"The mean J needs exactly one 1/m: deferred puts it in each dW[l], db[l], absorbed once in "
            f"dZ[{L}]; the same dW, db.",
            "Under sum the learning rate takes the factor m: a step lr on S is a step m lr on J."]


def explain(layers=(2, 4, 1), *, hidden="tanh", output="sigmoid", m=5, scaling="deferred", seed=0, l2=0.0):
    """Backprop for one small network, every quantity written out and checked.

    Parameters
    ----------
    layers : sequence of int
        ``[n_0, n_1, ..., n_L]``: input size, hidden sizes, output size.
    hidden : {"identity", "sigmoid", "tanh", "relu", "leaky_relu"}
        Activation of layers ``1..L-1``.
    output : {"sigmoid", "softmax", "identity"}
        Activation of layer ``L`` (with binary cross-entropy, categorical
        cross-entropy, or ``1/2 (a - y)^2``).
    m : int
        Number of examples (columns of ``X``, shape ``(n_0, m)``).
    scaling : {"deferred", "absorbed", "sum"}
        Where the ``1/m`` goes (see :mod:`fastnn.network`).
    seed : int
        Seeds the random weights, biases, ``X`` and ``Y``.
    l2 : float
        L2 strength; adds ``(l2/m) W[l]`` to every ``dW[l]``.

    Returns
    -------
    ExplainResult
        Forward steps, backward quantities (each with its value, a
        central-difference value of the same shape and a :class:`Check`), the
        one-example view, the convention comparison and the output-layer
        comparison.  ``result.all_passed`` is True for a correct fastnn.

    Raises
    ------
    FastnnValueError
        For unknown names, ``m < 1``, softmax with one output unit, or a
        network too large to differentiate numerically (:data:`MAX_FD_ENTRIES`).
    """
    dims, m, l2 = _check_args(layers, hidden, output, m, scaling, seed, l2)
    Ws, bs, X, Y, y_text, redraws = _make_problem(dims, m, output, hidden, seed)
    L = len(Ws)
    As, ZL = _passes._forward(_nb, Ws, bs, X, hidden, output)
    Zs = {l: Ws[l - 1] @ As[l - 1] + bs[l - 1] for l in range(1, L)}
    Zs[L] = ZL
    grads = _record_backward(Ws, As, ZL, Y, hidden, output, scaling, l2)
    fd = _FiniteDiff(Ws, bs, X, Y, Zs, As, hidden, output, l2)
    params = {**{f"W{l}": Ws[l - 1] for l in range(1, L + 1)}, **{f"b{l}": bs[l - 1] for l in range(1, L + 1)}}
    J = cost(As[-1], Y, output=output, params=params, l2=l2, logits=ZL)

    header = [
        f"layers {dims}, hidden {hidden}, output {output} ({OUTPUT_LOSS[output]}), m = {m}, "
        f"scaling {scaling}, seed {seed}" + (f", l2 = {l2:g}" if l2 else ""),
        f"random float64 data: X {_shape(X)} standard normal, Y {_shape(Y)} {y_text}, "
        "W[l] Xavier-normal, b[l] 0.1 * normal",
    ]
    loss_lines = [
        Line("loss", _LOSS_FORMULA[output].replace("[L]", f"[{L}]"), f"({m},)", "one value per example (column)"),
        Line("cost", "J = (1/m) sum_i L_i" + (" + (l2/(2m)) sum_l ||W[l]||^2" if l2 else ""), "()",
             f"J = {_num(J, 10)}"),
    ]
    obj = _objective_text(scaling, l2)
    meaning = {
        "deferred": "under deferred, dZ and dA are m times derivatives of J (derivatives of the summed loss); "
                    "only dW and db are derivatives of J",
        "absorbed": "under absorbed, every dZ, dA, dW, db is a derivative of J",
        "sum": "under sum, every quantity is a derivative of S, the summed loss (m times J's)",
    }[scaling]
    backward_intro = [f"objective: {obj}; {meaning}."]
    notes = [
        f"Each backward check: central differences with h = {FD_STEP:g} in float64 of the objective the "
        "quantity is the derivative of ('of'), perturbing W[l], b[l], or the intermediate Z[l] / A[l-1] "
        "and re-running the network from there; rel err = ||analytic - numerical|| / (||analytic|| + "
        "||numerical||).",
        f"Tolerances: against central differences rel err <= {TOL_FD:g} (their own error is ~ h^2 |f'''| + "
        f"eps |f| / h, about 1e-10), or, for a derivative too small for that, a difference below their "
        f"rounding noise ({FD_NOISE_C:g} sqrt(k) eps |f| / h, marked 'at FD resolution'); between two exact "
        f"float64 routes <= {TOL_EXACT:g} (rounding only, ~ sqrt(n) eps); float32 against float64 <= "
        f"{TOL_F32:.1e} (1000 eps32). A convention mistake is an O(1) error.",
    ]
    if hidden in ("relu", "leaky_relu") and L > 1:
        zmin = min(float(np.abs(Zs[l]).min()) for l in range(1, L))
        redrawn = f" (the random draw was repeated {redraws} times to get there)" if redraws else ""
        if zmin >= KINK_MARGIN:
            notes.append(f"{hidden} has a kink at 0: the smallest hidden |Z[l]| is {_num(zmin)}, at least "
                         f"{KINK_MARGIN:g} = 100 h, so no central difference straddles it{redrawn}.")
        else:
            notes.append(f"{hidden} has a kink at 0: the smallest hidden |Z[l]| is {_num(zmin)}, below "
                         f"{KINK_MARGIN:g} = 100 h even after {KINK_REDRAWS} draws (large m): a check may fail "
                         "from a central difference across the kink, not from backprop.")
    return ExplainResult(
        layers=dims, hidden=hidden, output=output, m=m, scaling=scaling, seed=seed, l2=l2,
        header=header, forward=_forward_section(Ws, bs, As, Zs, hidden, output), loss_lines=loss_lines,
        backward_intro=backward_intro,
        backward=_backward_section(grads, fd, Ws, As, Y, hidden, output, scaling, l2),
        one_example=_one_example_section(Ws, bs, X, Y, grads, hidden, output, scaling, l2),
        conventions=_conventions_section(Ws, As, ZL, Y, fd, hidden, output, l2),
        output_layer=_output_section(Ws, bs, X, Y, As, ZL, hidden, output, scaling, l2),
        notes=notes, short_answer=_short_answer(L, m, scaling), X=X, Y=Y)


# ---------------------------------------------------------------------------
# Renderers
# ---------------------------------------------------------------------------

_ANSI = {"bold": "1", "dim": "2", "ok": "32", "bad": "31", "code": "36", "head": "1;34"}


class _Style:
    """ANSI styling when ``color`` is true, identity otherwise."""

    def __init__(self, color):
        self.color = color

    def __call__(self, text, style):
        if not self.color or not style or not text:
            return text
        return f"\x1b[{_ANSI[style]}m{text}\x1b[0m"

    def check(self, check):
        if check is None:
            return ""
        return self(check.summary, "ok" if check.passed else "bad")


def _table(rows, st, indent="  "):
    """Rows of (text, style) cells, columns padded to a common width (last cell unpadded)."""
    ncol = max(len(r) for r in rows)
    rows = [list(r) + [("", None)] * (ncol - len(r)) for r in rows]
    widths = [max(len(r[c][0]) for r in rows) for c in range(ncol)]
    out = []
    for r in rows:
        cells = []
        last = max((c for c in range(ncol) if r[c][0]), default=0)
        for c in range(last + 1):
            text, style = r[c]
            pad = "" if c == last else " " * (widths[c] - len(text))
            cells.append(st(text, style) + pad)
        out.append((indent + "   ".join(cells)).rstrip())
    return out


def _wrap(text, indent="  ", width=100):
    import textwrap
    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent)


def _heading(title, st, char="-"):
    return ["", st(title, "head"), st(char * len(title), "head")]


def _check_cell(check, st):
    if check is None:
        return ("", None)
    return (check.summary, "ok" if check.passed else "bad")


def _every_layer_cells(row, m):
    factor = "n/a (zero gradient)" if np.isnan(row.factor) else _num(row.factor, 6)
    mark = CHECK_MARK if row.verdict == "right" else CROSS_MARK
    return (str(row.layer), f"{mark} {row.verdict} (rel err {_fmt_err(row.rel_err)})", factor, row.expected_text)


def render_text(result, color=False):
    """The result as a terminal page.

    Parameters
    ----------
    result : ExplainResult
        From :func:`explain`.
    color : bool
        Use ANSI colours (green check marks, red crosses, bold headings).

    Returns
    -------
    str
        Aligned plain text (no escape sequences when ``color`` is false).
    """
    st = _Style(color)
    r = result
    out = [st("fastnn explain", "bold")] + ["  " + h for h in r.header]
    out += ["", st("Short answer: where the 1/m goes", "bold")]
    for sentence in r.short_answer:
        out += _wrap(sentence, width=120)

    out += _heading("1. Forward, layer by layer", st)
    for step in r.forward:
        kind = "output" if step.layer == len(r.forward) else "hidden"
        out.append(st(f"Layer {step.layer} ({kind}: {step.activation})", "bold"))
        out += _table([[(step.z_formula, "code"), (step.z_shapes, None), (step.broadcast, "dim")],
                       [(step.a_formula, "code"), (step.a_shapes, None)]], st)
    out.append(st("Loss and cost", "bold"))
    out += _table([[(ln.text, "code"), (ln.shapes, None), (ln.detail, "dim")] for ln in r.loss_lines], st)

    out += _heading(f"2. Backward, layer by layer (scaling: {r.scaling})", st)
    out += sum((_wrap(t, "") for t in r.backward_intro), [])
    rows = [[(q.formula, "code"), (q.shapes, None), _check_cell(q.check, st)]
            for bl in r.backward for q in bl.quantities]
    heads = iter(_table(rows, st))  # aligned across all layers
    for bl in r.backward:
        out.append(st(bl.title, "bold"))
        for q, line in zip(bl.quantities, heads):
            out.append(line)
            out += _table([[("of", "dim"), (q.derivative_of, None)],
                           [("1/m", "dim"), (q.one_over_m, None)]], st, indent="        ")

    ex = r.one_example
    out += _heading("3. One example next to the batch", st)
    out.append(st(f"One example: column {ex.column}, lower case; m = 1, so no 1/m anywhere", "bold"))
    out += _table([[(ln.text, "code"), (ln.shapes, None), (ln.detail, None)] for ln in ex.per_example], st)
    out.append(st("The batch", "bold"))
    out += _wrap(ex.batch_rule)
    out += _table([[(ln.text, "code"), (ln.shapes, None), (ln.detail, None), _check_cell(ln.check, st)]
                   for ln in ex.batch_lines], st)
    out.append(st("Why the transpose: one entry written as its index sum", "bold"))
    for s in ex.index_sums:
        pad = " " * (len(s.entry) + 1)
        out.append("  " + st(s.index_form, "code"))
        out.append(f"  {pad}= {s.numbers}")
        out.append(f"  {pad}= {_num(s.value, 12)}   (matrix product: {_num(s.matrix_value, 12)})   "
                   + st.check(s.check))
        out += _wrap(s.why, "    ")

    cv = r.conventions
    out += _heading("4. Where the conventions differ", st)
    out.append(st("deferred against absorbed, on the same data", "bold"))
    out += _table([[(ln.label, None), (ln.text, "code"), (ln.shapes, None), (ln.detail, None),
                    _check_cell(ln.check, st)] for ln in cv.lines], st)
    for n in cv.notes:
        out += _wrap(n)
    out.append(st("1/m in every layer (the mistake)", "bold"))
    rows = [[("layer", "dim"), ("dW[l] against numerical dJ/dW[l]", "dim"), ("too small by", "dim"),
             ("m^(L-l)", "dim"), ("too small by = m^(L-l)?", "dim")]]
    for row in cv.every_layer:
        cells = _every_layer_cells(row, r.m)
        rows.append([(cells[0], None), (cells[1], "ok" if row.verdict == "right" else "bad"),
                     (cells[2], None), (cells[3], None), _check_cell(row.check, st)])
    out += _table(rows, st)
    out += _wrap(cv.every_layer_note)

    ol = r.output_layer
    out += _heading("5. The output layer: the course's chain against the fused A - Y", st)
    out += _table([[(ln.label, None), (ln.text, "code"), (ln.shapes, None), (ln.detail, None),
                    _check_cell(ln.check, st)] for ln in ol.lines], st)
    if ol.saturated:
        out.append(st("A saturated output in float32", "bold"))
        out += _table([[(ln.label, None), (ln.text, "code"), (ln.shapes, None), (ln.detail, None),
                        _check_cell(ln.check, st)] for ln in ol.saturated], st)
    for n in ol.notes:
        out += _wrap(n)

    out += _heading("Method and tolerances", st)
    for n in r.notes:
        out += _wrap(n)
    checks = r.checks()
    n_ok = sum(c.passed for c in checks)
    verdict = f"{n_ok} of {len(checks)} checks passed"
    out += ["", st(verdict, "ok" if n_ok == len(checks) else "bad")]
    return "\n".join(out) + "\n"


def _code(text):
    return f"`{text}`" if text else ""


def _md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return out


def _md_check(check):
    return check.summary if check is not None else ""


def render_markdown(result):
    """The result as Markdown (headings, pipe tables, code spans), for notes and docs.

    Parameters
    ----------
    result : ExplainResult
        From :func:`explain`.

    Returns
    -------
    str
        The same formulas, shapes and checks as :func:`render_text`.
    """
    r = result
    out = ["# fastnn explain", ""] + [f"- {h}" for h in r.header]
    out += ["", "## Short answer: where the 1/m goes", ""] + [f"- {t}" for t in r.short_answer]

    out += ["", "## 1. Forward, layer by layer", ""]
    rows = []
    for step in r.forward:
        kind = "output" if step.layer == len(r.forward) else "hidden"
        rows.append([f"{step.layer} ({kind}: {step.activation})", _code(step.z_formula), _code(step.z_shapes),
                     step.broadcast])
        rows.append(["", _code(step.a_formula), _code(step.a_shapes), ""])
    for ln in r.loss_lines:
        rows.append([ln.label, _code(ln.text), _code(ln.shapes), ln.detail])
    out += _md_table(["Layer", "Formula", "Shapes", "Note"], rows)

    out += ["", f"## 2. Backward, layer by layer (scaling: {r.scaling})", ""] + r.backward_intro
    for bl in r.backward:
        out += ["", f"### {bl.title}", ""]
        out += _md_table(["Formula", "Shapes", "Derivative of", "Where 1/m enters", "Check"],
                         [[_code(q.formula), _code(q.shapes), _code(q.derivative_of), q.one_over_m,
                           _md_check(q.check)] for q in bl.quantities])

    ex = r.one_example
    out += ["", "## 3. One example next to the batch", "",
            f"One example: column {ex.column}, lower case; m = 1, so no 1/m anywhere.", ""]
    out += _md_table(["Formula", "Shapes", "Value"],
                     [[_code(ln.text), _code(ln.shapes), _code(ln.detail)] for ln in ex.per_example])
    out += ["", f"The batch: {_code(ex.batch_rule)}", ""]
    out += _md_table(["Formula", "Shapes", "Value", "Check"],
                     [[_code(ln.text), _code(ln.shapes), _code(ln.detail), _md_check(ln.check)]
                      for ln in ex.batch_lines])
    out += ["", "Why the transpose: one entry written as its index sum.", ""]
    for s in ex.index_sums:
        pad = " " * (len(s.entry) + 1)
        out += ["```text", s.index_form, f"{pad}= {s.numbers}",
                f"{pad}= {_num(s.value, 12)}   (matrix product: {_num(s.matrix_value, 12)})   {s.check.summary}",
                "```", "", s.why + ".", ""]

    cv = r.conventions
    out += ["## 4. Where the conventions differ", "", "deferred against absorbed, on the same data:", ""]
    out += _md_table(["Quantity", "Relation", "Shape", "Measured", "Check"],
                     [[ln.label, _code(ln.text), _code(ln.shapes), ln.detail, _md_check(ln.check)]
                      for ln in cv.lines])
    out += [""] + [f"- {n}" for n in cv.notes]
    out += ["", "### 1/m in every layer (the mistake)", ""]
    out += _md_table(["Layer", "dW[l] against numerical dJ/dW[l]", "Too small by", "m^(L-l)",
                      "Too small by = m^(L-l)?"],
                     [list(_every_layer_cells(row, r.m)) + [_md_check(row.check)] for row in cv.every_layer])
    out += ["", cv.every_layer_note]

    ol = r.output_layer
    out += ["", "## 5. The output layer: the course's chain against the fused A - Y", ""]
    out += _md_table(["", "Formula", "Shape", "Note", "Check"],
                     [[ln.label, _code(ln.text), _code(ln.shapes), ln.detail, _md_check(ln.check)]
                      for ln in ol.lines])
    if ol.saturated:
        out += ["", "A saturated output in float32:", ""]
        out += _md_table(["", "Route", "Shape", "Outcome", "Check"],
                         [[_code(ln.label), ln.text, _code(ln.shapes), ln.detail, _md_check(ln.check)]
                          for ln in ol.saturated])
    out += [""] + [f"- {n}" for n in ol.notes]

    out += ["", "## Method and tolerances", ""] + [f"- {n}" for n in r.notes]
    checks = r.checks()
    n_ok = sum(c.passed for c in checks)
    out += ["", f"**{n_ok} of {len(checks)} checks passed**"]
    return "\n".join(out) + "\n"
